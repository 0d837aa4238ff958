"""The run's throughput as a stable, versioned record: run_stats.json (also the report's throughput section, and
what benchmarks/collect_runs.py tabulates)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from engine.report.run_shape import run_group_size, run_strategies

RUN_STATS_SCHEMA = 1


def _model_entry(m) -> dict[str, Any]:
    return {"name": m.name, "backend": m.backend, "model": m.model, **({"weights": m.weights} if m.weights else {})}


def _rows(tables: dict, name: str) -> list[dict[str, Any]]:
    table = tables.get(name)
    return table.to_pylist() if table is not None else []


def _rate(amount: float | None, wall_s: float, computed: bool) -> float | None:
    return amount / wall_s if computed and amount and wall_s > 0 else None


def run_stats(result, config) -> dict[str, Any]:
    """The run's throughput as a stable, versioned record (written as run_stats.json).

    Args:
        result: the RunResult (stage records carry wall time, rows and summed backend counters).
        config: its RunConfig.

    Returns:
        {"schema": 1, "run_dir", "written_at", "wall_s", "peak_rss_bytes", "model_load_s", "n", "strategies",
        "generators", "judges", "executor", "counts", "stages": [...], "totals"}. Per stage: rows computed in
        this run and the rates over its wall time; rates are None for a stage whose every shard was reused
        (nothing computed) or whose amount is unknown.
    """
    t = result.tables
    groups = _rows(t, "groups")
    comps = _rows(t, "components")
    responses = t.get("responses")
    stages = []
    for r in result.stages:
        kind, _, rest = r.stage.partition("[")
        model = rest.rstrip("]") or None
        # Rows a backend computed in this run: a shard re-cut (another shard_size) reads every row back by its key
        # (rows_reused) in a unit that was not itself reused, and reported a throughput for no work at all.
        reused_rows = getattr(r, "rows_reused", 0) or 0
        rows_computed = r.rows - reused_rows - (getattr(r, "rows_gave_up", 0) or 0)
        computed = rows_computed > 0
        everything_now = r.units_reused == 0 and reused_rows == 0  # every row of the stage computed in this run
        recorded = r.recorded()  # tokens unknown where an endpoint answered without counts (tok/s shows –)
        tokens = recorded["completion_tokens"]
        if tokens is None and not (r.backend or {}).get("tokens_missing") and kind == "sample" and everything_now \
                and responses is not None:
            # Backends without token counters: the responses' own token counts (all computed in this run), where
            # each is known.
            counts = [x["n_tokens"] for x in responses.select(["model", "n_tokens"]).to_pylist() if x["model"] == model]
            tokens = None if any(c is None for c in counts) else sum(counts)
        pairs = None
        if kind == "judge":
            pairs = sum(c["n_pairs_judged"] for c in comps if c["judge"] == model)
        # Pairs per second only when every shard ran now: a partly reused stage judged an unknown share of them.
        pairs_rate = _rate(pairs, r.wall_s, computed and everything_now)
        stages.append({
            **recorded,
            "kind": kind,
            "model": model,
            "rows_per_s": _rate(rows_computed, r.wall_s, computed),
            "completion_tokens": tokens,
            "completion_tokens_per_s": _rate(tokens, r.wall_s, computed),
            "pairs_judged": pairs,
            "pairs_per_s": pairs_rate,
        })

    def total(key: str) -> float | None:
        vals = [s[key] for s in stages if s[key] is not None]
        return sum(vals) if vals else None

    return {
        "schema": RUN_STATS_SCHEMA,
        "run_dir": str(result.run_dir),
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_s": result.wall_s,
        "peak_rss_bytes": result.peak_rss_bytes,
        "model_load_s": {k: [round(x, 3) for x in v] for k, v in sorted(getattr(result, "model_load_s", {}).items())},
        "n": run_group_size(config, groups),
        "strategies": run_strategies(config, groups),
        # The models as run: hub ids pinned to their commit, local folders with their weights' digest.
        "generators": [_model_entry(m) for m in config.generators],
        "judges": [_model_entry(m) for m in config.judges],
        "executor": config.execution.executor,
        "counts": {name: (t[name].num_rows if name in t else 0)
                   for name in ("prompts", "groups", "responses", "judgments")},
        "stages": stages,
        "skipped_inputs": list(getattr(result, "skipped_inputs", [])),
        "load_warnings": list(getattr(result, "load_warnings", [])),
        "work_versions": dict(getattr(result, "work_versions", {}) or {}),
        "totals": {"calls": total("calls"), "retries": total("retries"),
                   "completion_tokens": total("completion_tokens"),
                   "cost_usd": None if any(s["usage_missing"] for s in stages) else total("cost_usd"),
                   "stage_wall_s": sum(s["wall_s"] for s in stages)},
    }
