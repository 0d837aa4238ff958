"""Functionally unique responses: connected components of each group's "equivalent" graph, per judge — and what
is known when some verdicts could not be read.

An edge joins responses i and j when the judge's p_equivalent >= threshold. A pair whose verdict could not be read
(unparsed twice, or a backend error) is *unresolved*: it is neither an edge nor a "different". With pruning, pairs
the judge skipped were already connected by equivalent verdicts, and the judge kept asking around unresolved pairs
(a later verdict may still connect them), so the judged edges give exactly the components of all pairs:

- unique_high: components with every unresolved pair read as "different" (the equivalent edges alone);
- unique_low: components with every unresolved pair read as "equivalent";
- the count is *resolved* when the two agree — every unresolved pair joins responses that other verdicts already
  connect, so no reading of it could change the count — and then `unique` is that count; otherwise `unique` is
  None and only the bounds are known. An unknown is never a value: it is never counted as "different".

Both counts run as one batched union-find kernel call each over every group of the run (kernels.components).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import kernels
from engine.method.class_measures import normalised_entropy, semantic_entropy

RESOLVED = ("equivalent", "different")


def _batched_counts(sizes: np.ndarray, edge_lists: list[list[tuple[int, int]]], labels: bool = False) -> Any:
    counts = np.array([len(e) for e in edge_lists], dtype=np.int64)
    offsets = np.zeros(len(edge_lists) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    edges = np.array([e for group in edge_lists for e in group], dtype=np.int64).reshape(-1, 2)
    return kernels.count_components_batched(sizes, offsets, edges, return_labels=labels)


def count_components(rows: list[dict[str, Any]], threshold: float) -> list[dict[str, Any]]:
    """One row per (group, judge) — the judge stage's rows — with its functionally unique responses, their bounds
    and the unresolved pairs (columns of engine.execution.tables.COMPONENTS)."""
    sizes = np.array([r["n_responses"] for r in rows], dtype=np.int64)
    equivalent: list[list[tuple[int, int]]] = []
    unresolved: list[list[tuple[int, int]]] = []
    for r in rows:
        eq, un = [], []
        for p in r["pairs"]:
            if p["verdict"] in RESOLVED:
                if p["p_equivalent"] >= threshold:
                    eq.append((p["i"], p["j"]))
            else:
                un.append((p["i"], p["j"]))
        equivalent.append(eq)
        unresolved.append(un)
    # Each response's class: its component, numbered by the smallest response in it (so by first appearance).
    high, labels = _batched_counts(sizes, equivalent, labels=True)
    low = _batched_counts(sizes, [eq + un for eq, un in zip(equivalent, unresolved)])
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    out = []
    for k, r in enumerate(rows):
        resolved = bool(low[k] == high[k])
        # The classes (and what is measured from them) only where the count is resolved: an unreadable verdict
        # that could still join two classes leaves them unknown.
        classes = labels[starts[k]:starts[k + 1]].tolist() if resolved else None
        out.append(
            {
                "prompt_id": r["prompt_id"],
                "model": r["model"],
                "strategy": r["strategy"],
                "judge": r["judge"],
                "judge_category": r["judge_category"],
                "n_responses": r["n_responses"],
                "unique": int(high[k]) if resolved else None,
                "resolved": resolved,
                "unique_low": int(low[k]),
                "unique_high": int(high[k]),
                "n_pairs_judged": len(r["pairs"]),
                "n_equivalent": len(equivalent[k]),
                "n_unresolved": len(unresolved[k]),
                "calls_made": r["calls_made"],
                "calls_saved": r["calls_saved"],
                "order_disagreements": r["order_disagreements"],
                "cheap_decided": r["cheap_decided"],
                "agreement_sample": bool(r.get("agreement_sample")),
                "classes": classes,
                "semantic_entropy": semantic_entropy(classes) if classes is not None else None,
                "semantic_entropy_norm": normalised_entropy(classes) if classes is not None else None,
                "utility": None,  # filled from the grades once quality is known (engine.execution.tables)
            }
        )
    return out
