"""Metrics: every registered general metric (engine.method.metrics) of each group, over a whole batch per kernel
call.

The pairwise matrices behind them (pair_cosine, pair_jaccard, pair_ncd: n × n, row-major) are kept too: they are
the calibrated judge's features, and pairwise rates for whoever wants them.
A group with fewer than two responses has no pairs: its pairwise metrics are NaN (stored as null).

The metrics are over the responses that answer (engine.method.judges.has_answer): an empty one (a reasoning model cut
off while thinking, a provider's empty reply) is no text to compare, as it is no answer to judge. Counted in, two
empty responses were identical (Jaccard 1) and an empty against any text wholly different, so a group whose
generations were all cut off read as perfectly homogeneous. A group with fewer than two answers has every metric
null. The pairwise matrices keep every response, at its position (the calibrated judge reads its pairs from them and
leaves pairs without an answer unjudged).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pyarrow as pa

from engine.method.features import group_matrices
from engine.method.judges import has_answer
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
    version = "7"  # 4: over the responses that answer; 5: full-width punctuation separates, joiners do not;
    # 6: each Chinese or Japanese character a token; 7: Thai, Lao, Khmer, Myanmar per character (marks with their
    # character), every script's punctuation and math/currency symbols separate, cosine of huge/tiny/inf rows
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
        texts = [t for g in groups for t in g]
        vectors = self.embedder.embed(texts)
        mats = group_matrices(groups, vectors)
        answered = [has_answer(t) for t in texts]
        if all(answered):
            used, used_mats = groups, mats
        else:
            used = [[t for t in g if has_answer(t)] for g in groups]
            used_mats = group_matrices(used, np.asarray(vectors)[np.asarray(answered, dtype=bool)])
        values = {column: m.compute(used, used_mats) for column, m in GENERAL_METRICS.items()}
        for k, r in enumerate(rows):
            yield {
                IDX: k,
                "prompt_id": r["prompt_id"],
                "model": r["model"],
                "strategy": r["strategy"],
                **{column: _nullable(v[k]) if len(used[k]) >= 2 else None for column, v in values.items()},
                "pair_cosine": mats["cosine"][k].ravel().tolist(),
                "pair_jaccard": mats["jaccard"][k].ravel().tolist(),
                "pair_ncd": mats["ncd"][k].ravel().tolist(),
            }
