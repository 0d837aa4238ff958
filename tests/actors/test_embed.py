import numpy as np
import pytest

from actors.base import BackendError
from actors.embed import LocalEmbedder
from actors.registry import make_embedder


@pytest.fixture(scope="module")
def embedder():
    return LocalEmbedder()


def test_packaged_embedder_is_offline_and_normalised(embedder):
    vectors = embedder.embed(["a cat sat on the mat", "a kitten sat on a rug", "tax law in the 1990s", ""])
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_a_texts_vector_on_cpu_does_not_depend_on_the_texts_beside_it(embedder):
    # CPU matrix kernels are picked by shape: batched, the same text came out up to 2e-7 apart beside three copies of
    # itself (an AVX-512 Xeon), so a streamed or resumed run's metrics differed from an uninterrupted run's.
    text = "The quick brown fox jumps over the lazy dog near the river bank."
    alone = embedder.embed([text])[0]
    for beside in ([text] * 4, [text, "word " * 200], [text] + ["A slow green turtle walks under the bridge."] * 9):
        assert np.array_equal(embedder.embed(beside)[0], alone)
    assert embedder.batch_size == 1
    with pytest.raises(BackendError, match="batch_size must be an integer >= 1"):
        LocalEmbedder(batch_size=0)


def test_empty_input(embedder):
    assert embedder.embed([]).shape == (0, 384)


def test_registry():
    assert isinstance(make_embedder("local", "all-minilm-l6-v2"), LocalEmbedder)
    with pytest.raises(BackendError, match="unknown embed backend"):
        make_embedder("grpc", "x")
    with pytest.raises(BackendError, match="neither a packaged model"):
        make_embedder("local", "/no/such/folder")


class CountingEmbedder:
    """A test double: a deterministic vector per text, recording every batch it is asked for."""

    def __init__(self, dim=4):
        self.dim = dim
        self.batches = []
        self.closed = False
        self.name = "counting"

    def embed(self, texts):
        self.batches.append(list(texts))
        rows = [np.random.default_rng(sum(map(ord, t)) + len(t)).normal(size=self.dim) for t in texts]
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)

    def close(self):
        self.closed = True


def test_the_memo_embeds_each_text_once_and_keeps_order():
    from actors.embed import EmbeddingMemo

    inner = CountingEmbedder()
    memo = EmbeddingMemo(inner)
    first = memo.embed(["a", "b", "a", "c"])
    np.testing.assert_array_equal(first, inner.embed(["a", "b", "a", "c"]))
    assert inner.batches[0] == ["a", "b", "c"]  # a duplicate within a call is embedded once
    inner.batches.clear()
    again = memo.embed(["c", "d", "b"])
    assert inner.batches == [["d"]]  # only the new text reaches the embedder
    np.testing.assert_array_equal(again, np.stack([first[3], inner.embed(["d"])[0], first[1]]))
    assert memo.texts_embedded == 4
    assert memo.embed([]).shape == (0, 4)
    assert memo.name == "counting"  # everything but embed is the embedder's
    memo.close()
    assert inner.closed


def test_the_memo_forgets_the_oldest_texts_beyond_its_budget():
    from actors.embed import EmbeddingMemo

    inner = CountingEmbedder(dim=4)
    memo = EmbeddingMemo(inner, max_bytes=3 * (16 + 1))  # three one-letter texts of four float32s
    memo.embed(["a", "b", "c"])
    memo.embed(["a"])  # a is now the newest
    memo.embed(["d"])  # b, the oldest, goes
    inner.batches.clear()
    memo.embed(["a", "c", "d"])
    assert inner.batches == []
    memo.embed(["b"])
    assert inner.batches == [["b"]]


def test_the_memo_refuses_a_short_answer():
    from actors.embed import EmbeddingMemo

    class Short(CountingEmbedder):
        def embed(self, texts):
            return super().embed(texts)[:-1]

    with pytest.raises(BackendError, match="1 vectors for 2 texts"):
        EmbeddingMemo(Short()).embed(["a", "b"])


def test_stages_sharing_a_worker_share_one_embedder_memo():
    from actors.embed import EmbeddingMemo
    from actors.registry import SharedBackends, sharing

    backends = SharedBackends()
    with sharing(backends):
        metrics = make_embedder("local", "all-minilm-l6-v2")
        judge = make_embedder("local", "all-minilm-l6-v2")
    assert metrics is judge and isinstance(metrics, EmbeddingMemo) and isinstance(metrics.embedder, LocalEmbedder)
    backends.close()
    assert metrics.embedder.model is None  # closed through the memo
