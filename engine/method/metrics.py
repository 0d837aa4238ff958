"""The general (task-agnostic) diversity metrics the paper contrasts with functional diversity, by name.

Each metric is one per-group number computed from a batch of groups with the kernels (one kernel call per batch,
never a Python loop per pair), registered in `GENERAL_METRICS`. The metrics stage computes every registered
metric, the groups table carries a column per metric, and the report's tables and rank correlations read this
registry, so a new metric is a kernel (with its reference), its line in kernels.KERNELS, and its registration
here.

- vocab_div: mean over pairs of 1 − Jaccard similarity of word sets (the paper's vocabulary diversity).
- embed_div: mean over pairs of 1 − cosine similarity of sentence embeddings (the paper's embedding diversity).
- compression_ratio: bytes of the concatenated group over its gzip size (Shaib et al. 2024); higher means more
  repetitive, i.e. *less* diverse.
- ncd_div: mean pairwise normalised compression distance.

Imports: kernels, engine.method.features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

import kernels

# A batch's inputs to every metric: the groups' responses and the pairwise matrices of engine.method.features
# ("cosine", "jaccard", "ncd": one n × n matrix per group).
Batch = tuple[list[list[str]], dict[str, "kernels.SquareMatrixBatch"]]


@dataclass(frozen=True)
class GeneralMetric:
    """One general metric.

    Attributes:
        column: its column in the metrics and groups tables.
        label: its name in the report ("vocabulary").
        description: one line for the report's tables.
        direction: +1 where higher means more diverse, −1 where higher means more repetitive (the report orients
            every metric so that higher reads "more diverse" before correlating).
        compute: per-group values (NaN where a group has no pairs) from a batch.
        correlate: whether the report's rank-correlation section includes it (the paper's three).
        per_pair: whether it is a mean over pairs, the same scale whatever the group's size. One that is not (the
            compression ratio grows with the texts compressed together) is unknown in the groups table for a group
            with a response that gives no answer: computed over the answering ones, it was on another scale than
            the whole groups beside it (three empty responses of five read as less repetitive).
    """

    column: str
    label: str
    description: str
    direction: float
    compute: Callable[[list[list[str]], dict], np.ndarray]
    correlate: bool = True
    per_pair: bool = True


GENERAL_METRICS: dict[str, GeneralMetric] = {}


def register(metric: GeneralMetric) -> GeneralMetric:
    if metric.column in GENERAL_METRICS:
        raise ValueError(f"general metric {metric.column!r} is registered twice")
    GENERAL_METRICS[metric.column] = metric
    return metric


register(GeneralMetric("vocab_div", "vocabulary", "mean over pairs of 1 − Jaccard similarity of word sets", 1.0,
                       lambda groups, mats: kernels.mean_pairwise_distance(mats["jaccard"])))
# Clipped to [0, 2]: float32 unit vectors give a cosine a few ulps above 1, and identical responses a diversity of
# −2e-16 (NaN stays NaN).
register(GeneralMetric("embed_div", "embedding", "mean over pairs of 1 − cosine similarity of embeddings", 1.0,
                       lambda groups, mats: np.clip(kernels.mean_pairwise_distance(mats["cosine"]), 0.0, 2.0)))
register(GeneralMetric("compression_ratio", "compression",
                       "bytes of the concatenated group over its gzip size (higher is more repetitive)", -1.0,
                       lambda groups, mats: kernels.compression_ratio(groups), per_pair=False))
register(GeneralMetric("ncd_div", "NCD", "mean pairwise normalised compression distance", 1.0,
                       lambda groups, mats: kernels.mean_pairwise(mats["ncd"]), correlate=False))
