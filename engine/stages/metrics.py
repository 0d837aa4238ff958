"""Metrics: the general (task-agnostic) diversity metrics of each group, over a whole batch per kernel call.

- vocab_div: mean over pairs of 1 − Jaccard similarity of word sets (the paper's vocabulary diversity).
- embed_div: mean over pairs of 1 − cosine similarity of sentence embeddings (the paper's embedding diversity).
- compression_ratio: bytes of the concatenated group over its gzip size (Shaib et al. 2024); higher means more
  repetitive, i.e. *less* diverse.
- ncd_div: mean pairwise normalised compression distance.
The pairwise matrices behind them (pair_cosine, pair_jaccard, pair_ncd: n × n, row-major) are kept too: they are
the calibrated judge's features, and pairwise rates for whoever wants them.
A group with fewer than two responses has no pairs: its pairwise metrics are NaN (stored as null).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import pyarrow as pa

import kernels
from engine.method.features import group_matrices
from engine.stages.base import GROUP_INPUTS, GROUP_KEY, IDX, Stage


def _nullable(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


class MetricsStage(Stage):
    """General diversity metrics; holds the embedding model.

    Args:
        embedder: {"backend", "model", "options"} as in engine.config.EmbedderConfig.spec().
    """

    name = "metrics"
    version = "3"  # bump when a metric's definition changes: metric shards are keyed by it
    required_inputs = {
        **GROUP_INPUTS,
        "responses": "the group's responses",
    }
    output_schema = pa.schema(
        [
            *GROUP_KEY,
            ("vocab_div", pa.float64()),
            ("embed_div", pa.float64()),
            ("compression_ratio", pa.float64()),
            ("ncd_div", pa.float64()),
            ("pair_cosine", pa.list_(pa.float64())),
            ("pair_jaccard", pa.list_(pa.float64())),
            ("pair_ncd", pa.list_(pa.float64())),
        ]
    )

    def __init__(self, embedder: dict[str, Any]) -> None:
        from actors.registry import make_embedder

        self.embedder = make_embedder(embedder["backend"], embedder["model"], embedder.get("options"))

    def process(self, rows: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        groups = [list(r["responses"]) for r in rows]
        mats = group_matrices(groups, self.embedder.embed([t for g in groups for t in g]))
        vocab = kernels.mean_pairwise_distance(mats["jaccard"])
        embed = kernels.mean_pairwise_distance(mats["cosine"])
        ncd = kernels.mean_pairwise(mats["ncd"])
        ratio = kernels.compression_ratio(groups)
        for k, r in enumerate(rows):
            yield {
                IDX: k,
                "prompt_id": r["prompt_id"],
                "model": r["model"],
                "strategy": r["strategy"],
                "vocab_div": _nullable(vocab[k]),
                "embed_div": _nullable(embed[k]),
                "compression_ratio": _nullable(ratio[k]),
                "ncd_div": _nullable(ncd[k]),
                "pair_cosine": mats["cosine"][k].ravel().tolist(),
                "pair_jaccard": mats["jaccard"][k].ravel().tolist(),
                "pair_ncd": mats["ncd"][k].ravel().tolist(),
            }
