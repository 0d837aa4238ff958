"""The run's throughput as a stable, versioned record: run_stats.json (also the report's throughput section, and
what benchmarks/collect_runs.py tabulates)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from engine.execution.results import ROW_COUNTS
from engine.report.run_shape import run_group_size, run_strategies

RUN_STATS_SCHEMA = 1


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
        b = dict(r.backend or {})
        # Rows a backend computed in this run: a shard re-cut (another shard_size) reads every row back by its key
        # (rows_reused) in a unit that was not itself reused, and reported a throughput for no work at all.
        reused_rows = getattr(r, "rows_reused", 0) or 0
        rows_computed = r.rows - reused_rows - (getattr(r, "rows_gave_up", 0) or 0)
        computed = rows_computed > 0
        everything_now = r.units_reused == 0 and reused_rows == 0  # every row of the stage computed in this run
        # An endpoint that answered without token counts: the stage's generated tokens are unknown, not the part
        # that was counted (tok/s shows –).
        tokens = None if b.get("tokens_missing") else b.get("completion_tokens")
        if tokens is None and not b.get("tokens_missing") and kind == "sample" and everything_now \
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
            "stage": r.stage,
            "kind": kind,
            "model": model,
            "units": r.units,
            "units_reused": r.units_reused,
            "rows": r.rows,
            "wall_s": r.wall_s,
            "start_s": r.start_s,  # stages from sampling on overlap (streaming): start_s + wall_s is when it ended
            "rows_per_s": _rate(rows_computed, r.wall_s, computed),
            "calls": b.get("calls", b.get("requests")),
            "requests": b.get("requests"),
            "retries": b.get("retries", 0) if b else None,
            "row_errors": b.get("row_errors"),
            "prompt_tokens": b.get("prompt_tokens"),
            # served from vLLM's prefix cache, or a provider's prompt cache (prompt_tokens_details.cached_tokens)
            "cached_prompt_tokens": b.get("cached_prompt_tokens"),
            "completion_tokens": tokens,
            "completion_tokens_per_s": _rate(tokens, r.wall_s, computed),
            "pairs_judged": pairs,
            "pairs_per_s": pairs_rate,
            # Replies without token usage make the stage's cost unknown, not the priced share that was reported.
            "cost_usd": None if b.get("usage_missing") else b.get("cost_usd"),
            "usage_missing": int(b.get("usage_missing") or 0),
            "failed_shards": len(r.failed),
            # Why, by shard: a report rendered again from the directory (read_run) says what failed, not "nothing".
            "failed": {k: why[:500] for k, why in r.failed.items()},
            "retry_failed": {k: why[:500] for k, why in getattr(r, "retry_failed", {}).items()},
            **{k: getattr(r, k, 0) for k in ROW_COUNTS},
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
        "generators": [{"name": m.name, "backend": m.backend, "model": m.model} for m in config.generators],
        "judges": [{"name": m.name, "backend": m.backend, "model": m.model} for m in config.judges],
        "executor": config.execution.executor,
        "counts": {name: (t[name].num_rows if name in t else 0)
                   for name in ("prompts", "groups", "responses", "judgments")},
        "stages": stages,
        "skipped_inputs": list(getattr(result, "skipped_inputs", [])),
        "load_warnings": list(getattr(result, "load_warnings", [])),
        "totals": {"calls": total("calls"), "retries": total("retries"),
                   "completion_tokens": total("completion_tokens"),
                   "cost_usd": None if any(s["usage_missing"] for s in stages) else total("cost_usd"),
                   "stage_wall_s": sum(s["wall_s"] for s in stages)},
    }
