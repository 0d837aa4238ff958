"""Pairwise similarity features of responses, from the kernels: the inputs of the calibrated judge.

For responses a and b: embedding cosine, Jaccard similarity of word sets, normalised compression distance, and the
length ratio min(|a|, |b|) / max(|a|, |b|) in characters (1 for two empty strings). The same matrices give the
general diversity metrics (mean over pairs of 1 − similarity), so the metrics stage computes them once per shard
and hands them to the judge stage when the cascade is on.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

import kernels

FEATURES = ("cosine", "jaccard", "ncd", "length_ratio")


def length_ratio_matrix(texts: Sequence[str]) -> np.ndarray:
    lengths = np.array([len(t or "") for t in texts], dtype=np.float64)
    lo = np.minimum.outer(lengths, lengths)
    hi = np.maximum.outer(lengths, lengths)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(hi > 0, lo / np.where(hi > 0, hi, 1.0), 1.0)


def group_matrices(groups: list[list[str]], embeddings: np.ndarray) -> dict[str, kernels.SquareMatrixBatch]:
    """Per-group cosine, Jaccard and NCD matrices for a batch of groups (one kernel call each).

    Args:
        groups: the responses of each group.
        embeddings: L2-normalised embeddings of all responses, group after group.
    """
    offsets = np.zeros(len(groups) + 1, dtype=np.int64)
    np.cumsum([len(g) for g in groups], out=offsets[1:])
    return {
        "cosine": kernels.cosine_matrices(embeddings, offsets),
        "jaccard": kernels.jaccard_matrices(groups),
        "ncd": kernels.ncd_matrices(groups),
    }


def pair_features(pairs: Sequence[tuple[str, str]], embed) -> np.ndarray:
    """Feature rows (len(pairs) × len(FEATURES)) for labelled or ad-hoc pairs.

    Args:
        pairs: (response_a, response_b) pairs.
        embed: a callable mapping a list of texts to L2-normalised embeddings (e.g. LocalEmbedder.embed).
    """
    groups = [[a, b] for a, b in pairs]
    embeddings = embed([t for g in groups for t in g]) if groups else np.zeros((0, 1), np.float32)
    mats = group_matrices(groups, embeddings)
    out = np.empty((len(pairs), len(FEATURES)), dtype=np.float64)
    for k, (a, b) in enumerate(pairs):
        out[k, 0] = mats["cosine"][k][0, 1]
        out[k, 1] = mats["jaccard"][k][0, 1]
        out[k, 2] = mats["ncd"][k][0, 1]
        out[k, 3] = length_ratio_matrix([a, b])[0, 1]
    return out

