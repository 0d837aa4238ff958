"""Functionally unique responses: connected components of each group's "equivalent" graph, per judge.

An edge joins responses i and j when the judge's p_equivalent >= threshold. Unparsed pairs are not edges, so a
group with unparsed pairs has an upper bound, not a count: `n_unparsed` says so and the report counts them. With
pruning, skipped pairs were already connected, so the judged edges give exactly the components of all pairs.
The count runs as one batched union-find kernel call over every group of the run (kernels.components).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import kernels

def count_components(rows: list[dict[str, Any]], threshold: float) -> list[dict[str, Any]]:
    """One row per (group, judge) — the judge stage's rows — with its number of functionally unique responses
    (columns of engine.execution.tables.COMPONENTS)."""
    sizes = np.array([r["n_responses"] for r in rows], dtype=np.int64)
    edge_counts = np.zeros(len(rows), dtype=np.int64)
    edges: list[tuple[int, int]] = []
    for k, r in enumerate(rows):
        for p in r["pairs"]:
            if p["p_equivalent"] is not None and p["p_equivalent"] >= threshold:
                edges.append((p["i"], p["j"]))
                edge_counts[k] += 1
    edge_offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(edge_counts, out=edge_offsets[1:])
    edge_array = np.array(edges, dtype=np.int64).reshape(-1, 2)
    counts = kernels.count_components_batched(sizes, edge_offsets, edge_array)
    out = []
    for k, r in enumerate(rows):
        out.append(
            {
                "prompt_id": r["prompt_id"],
                "model": r["model"],
                "strategy": r["strategy"],
                "judge": r["judge"],
                "judge_category": r["judge_category"],
                "n_responses": r["n_responses"],
                "unique": int(counts[k]),
                "n_pairs_judged": len(r["pairs"]),
                "n_equivalent": int(edge_counts[k]),
                "n_unparsed": r["n_unparsed"],
                "calls_made": r["calls_made"],
                "calls_saved": r["calls_saved"],
                "order_disagreements": r["order_disagreements"],
                "cheap_decided": r["cheap_decided"],
            }
        )
    return out
