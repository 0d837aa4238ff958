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


def test_empty_input(embedder):
    assert embedder.embed([]).shape == (0, 384)


def test_registry():
    assert isinstance(make_embedder("local", "all-minilm-l6-v2"), LocalEmbedder)
    with pytest.raises(BackendError, match="unknown embed backend"):
        make_embedder("grpc", "x")
    with pytest.raises(BackendError, match="neither a packaged model"):
        make_embedder("local", "/no/such/folder")
