"""The report of one run: the numbers first (report.json), then their rendering (report.md)."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from engine.config import RunConfig
from engine.store import Store
from engine.taxonomy import CATEGORIES, LETTERS

SMALL_MODEL_NOTE = (
    "**The judgments in this run are not meaningful.** The embedded default judge is SmolLM2-135M-Instruct, a "
    "135M-parameter model whose YES/NO equivalence verdicts carry no signal (AUC ≈ 0.5, measured); it exists so "
    "that every stage runs anywhere. For a real audit, configure real judges (`judges:` with `backend: vllm` on GPUs "
    "or `backend: http` for an OpenAI-compatible API, e.g. the paper's GPT-4o, Claude and Gemini judges) — see the "
    "README, \"Running a real audit\"."
)


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else None


def _fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def report_data(result, config: RunConfig) -> dict[str, Any]:
    """Everything the report shows, as plain data."""
    t = result.tables
    groups = t["groups"].to_pylist()
    strategies = list(config.strategies)
    data: dict[str, Any] = {"run_dir": result.run_dir, "n": config.n, "strategies": strategies}
    # Mean unique responses (mean over judges) per model × category × strategy.
    # Only complete groups (all n responses) enter the means: a short group's count is out of fewer than n.
    cells: dict[tuple, list[float]] = defaultdict(list)
    for g in groups:
        if g["status"] == "ok" and g["n_responses"] == config.n:
            cells[(g["model"], g["category"] or "?", g["strategy"])].append(g["unique_mean"])
    data["unique"] = [
        {"model": m, "category": c, "strategy": s, "mean": _mean(v), "groups": len(v)}
        for (m, c, s), v in sorted(cells.items())
    ]
    # Classification accuracy against gold labels.
    cls = []
    for model in config.generators:
        rows = [r for r in t["classifications"].to_pylist() if r["model"] == model.name]
        gold = {p["prompt_id"]: p["gold_category"] for p in t["prompts"].to_pylist()}
        labelled = [r for r in rows if gold.get(r["prompt_id"])]
        correct = sum(1 for r in labelled if r["category"] == gold[r["prompt_id"]])
        cls.append({
            "model": model.name,
            "prompts": len(rows),
            "labelled": len(labelled),
            "accuracy": correct / len(labelled) if labelled else None,
            "unparsed": sum(1 for r in rows if r["category"] is None),
        })
    data["classification"] = cls
    # General metrics and quality per model × strategy.
    per_strategy: dict[tuple, list[dict]] = defaultdict(list)
    for g in groups:
        per_strategy[(g["model"], g["strategy"])].append(g)
    data["by_strategy"] = [
        {
            "model": m,
            "strategy": s,
            "unique_mean": _mean(g["unique_mean"] for g in gs if g["status"] == "ok"),
            "vocab_div": _mean(g["vocab_div"] for g in gs),
            "embed_div": _mean(g["embed_div"] for g in gs),
            "compression_ratio": _mean(g["compression_ratio"] for g in gs),
            "quality_mean": _mean(g["quality_mean"] for g in gs),
            "short_groups": sum(1 for g in gs if g["status"] == "short"),
            "failed_groups": sum(1 for g in gs if g["status"] == "error"),
        }
        for (m, s), gs in sorted(per_strategy.items())
    ]
    comps = t["components"].to_pylist()
    data["judging"] = {
        "pairs_judged": sum(c["n_pairs_judged"] for c in comps),
        "calls_made": sum(c["calls_made"] for c in comps),
        "calls_saved": sum(c["calls_saved"] for c in comps),
        "unparsed_pairs": sum(c["n_unparsed"] for c in comps),
        "groups_with_unparsed": sum(1 for c in comps if c["n_unparsed"]),
    }
    data["stages"] = [
        {"stage": r.stage, "units": r.units, "units_reused": r.units_reused, "rows": r.rows, "wall_s": r.wall_s}
        for r in result.stages
    ]
    data["failed_shards"] = [
        {"stage": r.stage, "shards": len(r.failed), "reason": next(iter(r.failed.values()))}
        for r in result.stages if r.failed
    ]
    data["skipped_inputs"] = list(result.skipped_inputs)
    data["load_warnings"] = list(result.load_warnings)
    data["small_model_judges"] = [j.name for j in config.judges if j.backend == "local" and "135m" in j.model.lower()]
    return data


def render_markdown(data: dict[str, Any]) -> str:
    out = ["# taskdiv report", "", f"Run directory: `{data['run_dir']}` — n = {data['n']} responses per group.", ""]
    if data["small_model_judges"]:
        out += [SMALL_MODEL_NOTE, ""]
    out += ["## Functionally unique responses (mean over judges, out of n)", ""]
    models = sorted({u["model"] for u in data["unique"]})
    strategies = data["strategies"]
    for model in models:
        out += [f"### {model}", "", "| category | " + " | ".join(strategies) + " |",
                "|---|" + "---|" * len(strategies)]
        cell = {(u["category"], u["strategy"]): u for u in data["unique"] if u["model"] == model}
        for letter in list(LETTERS) + ["?"]:
            if not any((letter, s) in cell for s in strategies):
                continue
            name = f"{letter}. {CATEGORIES[letter].name}" if letter in CATEGORIES else "? (uncategorised)"
            values = [
                f"{_fmt(cell[(letter, s)]['mean'])} ({cell[(letter, s)]['groups']})" if (letter, s) in cell else "–"
                for s in strategies
            ]
            out.append(f"| {name} | " + " | ".join(values) + " |")
        out += ["", "Cells: mean unique responses (number of complete groups). Category: gold label where known, else "
                "the model's own. Groups with fewer than n responses (short or failed, counted in the next table) "
                "are left out.", ""]
    out += ["## Task classification against gold labels", "", "| model | prompts | labelled | accuracy | unparsed |",
            "|---|---|---|---|---|"]
    for c in data["classification"]:
        out.append(f"| {c['model']} | {c['prompts']} | {c['labelled']} | {_fmt(c['accuracy'])} | {c['unparsed']} |")
    out += ["", "## General metrics and quality by strategy", "",
            "| model | strategy | unique | vocab div | embed div | gzip ratio | quality (1–5) | short | failed |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in data["by_strategy"]:
        out.append(
            f"| {r['model']} | {r['strategy']} | {_fmt(r['unique_mean'])} | {_fmt(r['vocab_div'], 3)} | "
            f"{_fmt(r['embed_div'], 3)} | {_fmt(r['compression_ratio'], 3)} | {_fmt(r['quality_mean'])} | "
            f"{r['short_groups']} | {r['failed_groups']} |"
        )
    out += ["", "Vocabulary and embedding diversity: mean over pairs of 1 − similarity (higher is more diverse). "
            "Gzip ratio: bytes of the concatenated group over its compressed size (higher is more repetitive). "
            "Short: system-prompt groups that parsed into fewer than n responses.", ""]
    j = data["judging"]
    out += ["## Judging", "",
            f"- pairs judged: {j['pairs_judged']}; backend calls: {j['calls_made']}; calls saved by union-find "
            f"pruning: {j['calls_saved']}",
            f"- unparsed verdicts (after one retry): {j['unparsed_pairs']}, in {j['groups_with_unparsed']} groups "
            "(their counts are upper bounds)", ""]
    out += ["## Stages", "", "| stage | shards | reused | rows | wall s |", "|---|---|---|---|---|"]
    for s in data["stages"]:
        out.append(f"| {s['stage']} | {s['units']} | {s['units_reused']} | {s['rows']} | {s['wall_s']:.1f} |")
    if data["failed_shards"]:
        out += ["", "## Failed shards (rerun the same command to compute them)", ""]
        out += [f"- {f['stage']}: {f['shards']} shards — {f['reason']}" for f in data["failed_shards"]]
    if data["load_warnings"]:
        out += ["", "## Prompt source warnings", ""]
        out += [f"- {w}" for w in data["load_warnings"]]
    if data["skipped_inputs"]:
        out += ["", f"## Skipped input rows ({len(data['skipped_inputs'])})", ""]
        out += [f"- {s}" for s in data["skipped_inputs"]]
    return "\n".join(out) + "\n"


def write_report(result, config: RunConfig) -> dict[str, Path]:
    store = Store(result.run_dir)
    data = report_data(result, config)
    return {
        "json": store.write_text("report.json", orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()),
        "markdown": store.write_text("report.md", render_markdown(data)),
    }
