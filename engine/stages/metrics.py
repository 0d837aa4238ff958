"""Metrics: every registered general metric (engine.method.metrics) of each group, over a whole batch per kernel
call.

The pairwise matrices behind them (pair_cosine, pair_jaccard, pair_ncd: n × n, row-major) are kept too: they are
the calibrated judge's features, and pairwise rates for whoever wants them.
A group with fewer than two responses has no pairs: its pairwise metrics are NaN (stored as null).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import pyarrow as pa

from engine.method.features import group_matrices
from engine.method.metrics import GENERAL_METRICS
from engine.stages.base import GROUP_INPUTS, GROUP_KEY, IDX, Stage


def _nullable(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


class MetricsStage(Stage):
    """General diversity metrics; holds the embedding model.

    Args:
        embedder: {"backend", "model", "options"} as in engine.config.EmbedderConfig.spec().
    """

    name = "metrics"
    # Metric shards are keyed by it: bump when a metric's definition changes (the pipeline keys them by the names of
    # the registered metrics too, so adding one needs no bump).
    version = "3"
    required_inputs = {
        **GROUP_INPUTS,
        "responses": "the group's responses",
    }
    output_schema = pa.schema(
        [
            *GROUP_KEY,
            *((column, pa.float64()) for column in GENERAL_METRICS),
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
        values = {column: m.compute(groups, mats) for column, m in GENERAL_METRICS.items()}
        for k, r in enumerate(rows):
            yield {
                IDX: k,
                "prompt_id": r["prompt_id"],
                "model": r["model"],
                "strategy": r["strategy"],
                **{column: _nullable(v[k]) for column, v in values.items()},
                "pair_cosine": mats["cosine"][k].ravel().tolist(),
                "pair_jaccard": mats["jaccard"][k].ravel().tolist(),
                "pair_ncd": mats["ncd"][k].ravel().tolist(),
            }
