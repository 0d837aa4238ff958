"""The report of one run: the numbers first (report.json, run_stats.json), then their renderings (report.md with
PNG files under figures/, and a self-contained report.html with the same figures embedded).

Sections (each is a view of the paper, measured on this run, with bootstrap intervals over prompts):
  - functionally unique responses per category × strategy, per model (the paper's Figure 2);
  - diversity vs quality: a general metric vs reward/checklist quality, and functional diversity vs checklist
    quality, per strategy (Figure 3a / 3b);
  - rank correlation of each general metric with functional diversity, per category;
  - general metrics and quality by strategy;
  - task classification against gold labels: accuracy, per-category recall, confusion matrix;
  - judges: per-judge counts, judge-judge agreement, both-order disagreement, calls made and saved;
  - accuracy on verifiable sources per strategy (when the run has an accuracy table);
  - run throughput per stage (also written as run_stats.json for benchmarks/collect_runs.py).

`report_data` computes every number as plain data; `build_sections` turns it into a small document model
(sections of paragraphs, tables and figure references) that `render_markdown` and `engine.report_html` both
render, so the two formats always show the same numbers.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import orjson

from engine.config import ReportConfig
from engine.stats import (
    bootstrap_mean_ci,
    cohen_kappa,
    confusion_matrix,
    paired_bootstrap_diff_ci,
    per_class_recall,
    spearman_with_ci,
)
from engine.store import Store, atomic_write_bytes
from engine.taxonomy import CATEGORIES, LETTERS

SMALL_MODEL_LEAD = "The judgments in this run are not meaningful."
SMALL_MODEL_TEXT = (
    "The embedded default judge is SmolLM2-135M-Instruct, a 135M-parameter model whose YES/NO equivalence verdicts "
    "carry no signal (AUC ≈ 0.5, measured); it exists so that every stage runs anywhere. For a real audit, "
    "configure real judges (`judges:` with `backend: vllm` on GPUs or `backend: http` for an OpenAI-compatible "
    "API, e.g. the paper's GPT-4o, Claude and Gemini judges) — see the README, \"Running a real audit\"."
)
SMALL_MODEL_NOTE = f"**{SMALL_MODEL_LEAD}** {SMALL_MODEL_TEXT}"

RUN_STATS_SCHEMA = 1

# General metrics against functional diversity. Sign: +1 where higher means more diverse; the gzip ratio is
# higher for *more repetitive* groups, so it enters negated and every rho reads "positive = agrees".
GENERAL_METRICS = (
    ("vocabulary", "vocab_div", 1.0),
    ("embedding", "embed_div", 1.0),
    ("compression", "compression_ratio", -1.0),
)


def report_settings(config: Any) -> ReportConfig:
    """The config's report settings (`config.report`), or the defaults where the config has none.

    Args:
        config: a RunConfig, or anything with a `report` attribute holding bootstrap_resamples / seed / ci.

    Returns:
        A ReportConfig.
    """
    settings = getattr(config, "report", None)
    if settings is None or isinstance(settings, ReportConfig):
        return settings or ReportConfig()
    names = ("bootstrap_resamples", "seed", "ci")
    return ReportConfig(**{k: getattr(settings, k) for k in names if hasattr(settings, k)})


# ---------------------------------------------------------------------------------------------------------------
# Numbers.


def _rows(tables: dict, name: str) -> list[dict[str, Any]]:
    table = tables.get(name)
    return table.to_pylist() if table is not None else []



def finite(x: Any) -> bool:
    """Whether x is a number that is neither None nor NaN."""
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _mean(values: Iterable[Any]) -> float | None:
    vals = [v for v in values if finite(v)]
    return sum(vals) / len(vals) if vals else None


def category_name(letter: str) -> str:
    """"G. Creative writing" for "G"; "all categories" for "all"; "? (uncategorised)" otherwise."""
    return f"{letter}. {CATEGORIES[letter].name}" if letter in CATEGORIES else (
        "all categories" if letter == "all" else "? (uncategorised)")


def ordered_categories(present: Iterable[str]) -> list[str]:
    """The categories present, in taxonomy order, with "?" (no category) last."""
    present = set(present)
    return [c for c in LETTERS if c in present] + (["?"] if "?" in present else [])


def run_models(config: Any, groups: list[dict[str, Any]]) -> list[str]:
    """The generators whose groups the run has, in config order (audited external responses carry model names
    of their own, listed after)."""
    present = list(dict.fromkeys(g["model"] for g in groups))
    if not present:
        return [m.name for m in config.generators]
    named = [m.name for m in config.generators if m.name in present]
    return named + [m for m in present if m not in named]


def is_complete(g: dict[str, Any], n: int) -> bool:
    """Whether a groups row counts toward unique-response means: status ok, all n responses, a judge count."""
    return g["status"] == "ok" and g["n_responses"] == n and finite(g["unique_mean"])


def _exclusion_reason(g: dict[str, Any], n: int) -> str:
    if g["status"] == "error":
        return "failed"
    if g["status"] == "short" or g["n_responses"] != n:
        return "short (fewer than n responses)"
    return "no judge count"


def small_model_judges(config: Any) -> list[str]:
    """The run's judges that are the 135M model, which says "equivalent" to almost every pair whatever serves it
    (local, vLLM or HTTP): their counts say nothing about the generator."""
    return [j.name for j in config.judges if "135m" in str(j.model).lower()]


def report_data(result, config) -> dict[str, Any]:
    """Every number the report shows, as plain (JSON-serialisable) data.

    Args:
        result: the run's RunResult (tables, stage records, peak memory).
        config: its RunConfig.

    Returns:
        A dict with one key per section (see the module docstring); estimates are {"value", "low", "high", "n",
        "clusters", "note"} with None where undefined.
    """
    t = result.tables
    rc = report_settings(config)
    boot = partial(bootstrap_mean_ci, resamples=rc.bootstrap_resamples, seed=rc.seed, ci=rc.ci)
    n = config.n
    groups = _rows(t, "groups")
    strategies = list(config.strategies)
    models = run_models(config, groups)
    data: dict[str, Any] = {
        "run_dir": str(result.run_dir),
        "n": n,
        "strategies": strategies,
        "models": models,
        "judges": [j.name for j in config.judges],
        "prompts": t["prompts"].num_rows if "prompts" in t else 0,
        "groups": len(groups),
        "settings": {"bootstrap_resamples": rc.bootstrap_resamples, "seed": rc.seed, "ci": rc.ci},
        "small_model_judges": small_model_judges(config),
    }
    data["unique"] = _unique_section(groups, n, boot)
    data["tradeoff"] = _tradeoff_section(groups, n, models, strategies, boot, rc, "quality" in t)
    data["spearman"] = _spearman_section(groups, n, rc)
    data["by_strategy"] = _by_strategy(groups, n)
    data["classification"] = _classification_section(t, models, boot)
    data["judging"] = _judging_section(t, config, n, rc)
    data["accuracy"] = _accuracy_section(t, groups, strategies, boot)
    data["throughput"] = run_stats(result, config)
    data["failed_shards"] = [
        {"stage": r.stage, "shards": len(r.failed), "reason": next(iter(r.failed.values()))}
        for r in result.stages if r.failed
    ]
    data["skipped_inputs"] = list(result.skipped_inputs)
    data["load_warnings"] = list(result.load_warnings)
    return data


def _unique_section(groups: list[dict], n: int, boot: Callable) -> dict[str, Any]:
    cells: dict[tuple, list[dict]] = defaultdict(list)
    excluded: dict[tuple, int] = defaultdict(int)
    for g in groups:
        if is_complete(g, n):
            cells[(g["model"], g["category"] or "?", g["strategy"])].append(g)
            cells[(g["model"], "all", g["strategy"])].append(g)
        else:
            excluded[(g["model"], g["strategy"], _exclusion_reason(g, n))] += 1
    out = []
    for (model, cat, strategy), gs in sorted(cells.items()):
        est = boot([g["unique_mean"] for g in gs], clusters=[g["prompt_id"] for g in gs])
        out.append({"model": model, "category": cat, "strategy": strategy, "estimate": est.to_dict(),
                    "groups": len(gs), "upper_bounds": sum(1 for g in gs if g.get("incomplete_judges"))})
    return {
        "cells": out,
        "categories": ordered_categories(c for (_, c, _) in cells if c != "all"),
        "excluded": [{"model": m, "strategy": s, "reason": r, "groups": k}
                     for (m, s, r), k in sorted(excluded.items())],
        "excluded_total": sum(excluded.values()),
        "complete_total": sum(1 for g in groups if is_complete(g, n)),
    }


def _tradeoff_section(groups: list[dict], n: int, models: list[str], strategies: list[str], boot: Callable,
                      rc: ReportConfig, has_quality: bool) -> dict[str, Any]:
    reward = any(finite(g.get("reward_mean")) for g in groups)
    out: dict[str, Any] = {"quality_run": has_quality, "reward_available": reward,
                           "quality_3a": "reward model score" if reward else "checklist quality (1–5)"}
    if not has_quality and not reward:
        out["note"] = "quality was not measured in this run (quality.enabled: false), so there is no trade-off to plot"
        out["points_3a"], out["points_3b"], out["contrasts"] = [], [], []
        return out
    y3a = "reward_mean" if reward else "quality_mean"
    complete = [g for g in groups if is_complete(g, n)]
    points = {"points_3a": [], "points_3b": []}
    for model in models:
        for strategy in strategies:
            gs = [g for g in complete if g["model"] == model and g["strategy"] == strategy]
            for key, xcol, ycol in (("points_3a", "vocab_div", y3a), ("points_3b", "unique_mean", "quality_mean")):
                both = [g for g in gs if finite(g[xcol]) and finite(g.get(ycol))]
                if not both:
                    continue
                ids = [g["prompt_id"] for g in both]
                points[key].append({
                    "model": model, "strategy": strategy, "groups": len(both),
                    "x": boot([g[xcol] for g in both], clusters=ids).to_dict(),
                    "y": boot([g[ycol] for g in both], clusters=ids).to_dict(),
                })
    out.update(points)
    # The trade-off claim, measured: quality of the most diverse strategy minus that of the least diverse,
    # paired over the prompts both strategies answered in full.
    contrasts = []
    for key, label, ycol in (("points_3a", "vocabulary diversity", y3a),
                             ("points_3b", "functional diversity", "quality_mean")):
        xcol = "vocab_div" if key == "points_3a" else "unique_mean"
        for model in models:
            pts = [p for p in points[key] if p["model"] == model and p["x"]["value"] is not None]
            if len(pts) < 2:
                continue
            hi = max(pts, key=lambda p: p["x"]["value"])
            lo = min(pts, key=lambda p: p["x"]["value"])
            if hi["x"]["value"] == lo["x"]["value"]:
                continue  # every strategy equally diverse: no "most" and "least" to contrast
            by_prompt = {s: {g["prompt_id"]: g for g in complete if g["model"] == model and g["strategy"] == s
                             and finite(g[xcol]) and finite(g.get(ycol))}
                         for s in (hi["strategy"], lo["strategy"])}
            common = sorted(set(by_prompt[hi["strategy"]]) & set(by_prompt[lo["strategy"]]))
            est = paired_bootstrap_diff_ci([by_prompt[lo["strategy"]][p][ycol] for p in common],
                                           [by_prompt[hi["strategy"]][p][ycol] for p in common],
                                           resamples=rc.bootstrap_resamples, seed=rc.seed, ci=rc.ci)
            contrasts.append({"figure": "3a" if key == "points_3a" else "3b", "diversity": label, "model": model,
                              "most_diverse": hi["strategy"], "least_diverse": lo["strategy"],
                              "quality_difference": est.to_dict()})
    out["contrasts"] = contrasts
    return out


def _spearman_section(groups: list[dict], n: int, rc: ReportConfig) -> dict[str, Any]:
    complete = [g for g in groups if is_complete(g, n)]
    cats = ordered_categories(g["category"] or "?" for g in complete)
    rows = []
    for cat in cats + ["all"]:
        gs = [g for g in complete if cat == "all" or (g["category"] or "?") == cat]
        for name, col, sign in GENERAL_METRICS:
            pairs = [(sign * g[col], g["unique_mean"], g["prompt_id"]) for g in gs if finite(g.get(col))]
            est = spearman_with_ci([p[0] for p in pairs], [p[1] for p in pairs], clusters=[p[2] for p in pairs],
                                   resamples=rc.bootstrap_resamples, seed=rc.seed, ci=rc.ci,
                                   names=(f"{name} diversity", "the unique count"), unit="groups")
            rows.append({"category": cat, "metric": name, "estimate": est.to_dict()})
    return {"rows": rows, "categories": cats + ["all"], "metrics": [m[0] for m in GENERAL_METRICS]}


def _by_strategy(groups: list[dict], n: int) -> list[dict[str, Any]]:
    per: dict[tuple, list[dict]] = defaultdict(list)
    for g in groups:
        per[(g["model"], g["strategy"])].append(g)
    return [
        {
            "model": m,
            "strategy": s,
            "unique_mean": _mean(g["unique_mean"] for g in gs if is_complete(g, n)),
            "vocab_div": _mean(g["vocab_div"] for g in gs),
            "embed_div": _mean(g["embed_div"] for g in gs),
            "compression_ratio": _mean(g["compression_ratio"] for g in gs),
            "ncd_div": _mean(g.get("ncd_div") for g in gs),
            "quality_mean": _mean(g["quality_mean"] for g in gs),
            "reward_mean": _mean(g.get("reward_mean") for g in gs),
            "accuracy": _mean(g.get("accuracy") for g in gs),
            "short_groups": sum(1 for g in gs if g["status"] == "short"),
            "failed_groups": sum(1 for g in gs if g["status"] == "error"),
        }
        for (m, s), gs in sorted(per.items())
    ]


def _classification_section(t: dict, models: list[str], boot: Callable) -> list[dict[str, Any]]:
    gold = {p["prompt_id"]: p["gold_category"] for p in _rows(t, "prompts")}
    rows = _rows(t, "classifications")
    columns = list(LETTERS) + [None]
    out = []
    for model in [m for m in models if any(r["model"] == m for r in rows)]:
        mine = [r for r in rows if r["model"] == model]
        labelled = [r for r in mine if gold.get(r["prompt_id"])]
        correct = [1.0 if r["category"] == gold[r["prompt_id"]] else 0.0 for r in labelled]
        matrix = confusion_matrix([gold[r["prompt_id"]] for r in labelled],
                                  [r["category"] if r["category"] in LETTERS else None for r in labelled],
                                  columns)
        recall = per_class_recall(matrix)
        out.append({
            "model": model,
            "prompts": len(mine),
            "labelled": len(labelled),
            "accuracy": boot(correct, clusters=[r["prompt_id"] for r in labelled]).to_dict(),
            "unparsed": sum(1 for r in mine if r["category"] is None),
            "recall": [
                {"category": c, "support": int(matrix[k].sum()), "correct": int(matrix[k, k]),
                 "recall": None if math.isnan(recall[k]) else float(recall[k])}
                for k, c in enumerate(LETTERS) if matrix[k].sum()
            ],
            "confusion": {"rows": list(LETTERS), "columns": list(LETTERS) + ["unparsed"],
                          "counts": matrix[: len(LETTERS)].tolist()},
        })
    return out


def _judging_section(t: dict, config, n: int, rc: ReportConfig) -> dict[str, Any]:
    comps = _rows(t, "components")
    judgments = _rows(t, "judgments")
    groups = {(g["prompt_id"], g["model"], g["strategy"]): g for g in _rows(t, "groups")}
    names = [j.name for j in config.judges]
    names += sorted({c["judge"] for c in comps} - set(names))
    both_orders = bool(getattr(config.judge, "both_orders", False))
    per_judge = []
    for judge in names:
        cs = [c for c in comps if c["judge"] == judge]
        complete = [c for c in cs if (g := groups.get((c["prompt_id"], c["model"], c["strategy"])))
                    and is_complete(g, n)]
        js = [j for j in judgments if j["judge"] == judge]
        row = {
            "judge": judge,
            "groups": len(cs),
            "unique_mean": _mean(c["unique"] for c in complete),
            "complete_groups": len(complete),
            "pairs_judged": sum(c["n_pairs_judged"] for c in cs),
            "equivalent": sum(c["n_equivalent"] for c in cs),
            "unparsed_pairs": sum(c["n_unparsed"] for c in cs),
            "groups_with_unparsed": sum(1 for c in cs if c["n_unparsed"]),
            "calls_made": sum(c["calls_made"] for c in cs),
            "calls_saved": sum(c["calls_saved"] for c in cs),
            # Pairs a cascade's calibrated judge decided (a column of newer runs only).
            "cheap_decided": (sum(c.get("cheap_decided") or 0 for c in cs)
                              if cs and "cheap_decided" in cs[0] else None),
        }
        if both_orders:
            measured = sum(1 for j in js if j["p_forward"] is not None and j["p_reverse"] is not None)
            disagreements = sum(c["order_disagreements"] for c in cs)
            row["order"] = {"measured": True, "pairs": measured, "disagreements": disagreements,
                            "rate": disagreements / measured if measured else None}
        else:
            row["order"] = {"measured": False, "pairs": 0, "disagreements": 0, "rate": None}
        per_judge.append(row)
    agreement = []
    for a_idx, a in enumerate(names):
        for b in names[a_idx + 1:]:
            agreement.append(_judge_pair_agreement(a, b, judgments, comps, rc))
    return {
        "judges": names,
        "single_judge": len(names) < 2,
        "both_orders": both_orders,
        "per_judge": per_judge,
        "agreement": agreement,
        "pairs_judged": sum(r["pairs_judged"] for r in per_judge),
        "calls_made": sum(r["calls_made"] for r in per_judge),
        "calls_saved": sum(r["calls_saved"] for r in per_judge),
        "unparsed_pairs": sum(r["unparsed_pairs"] for r in per_judge),
        "groups_with_unparsed": sum(r["groups_with_unparsed"] for r in per_judge),
    }


def _judge_pair_agreement(a: str, b: str, judgments: list[dict], comps: list[dict], rc: ReportConfig) -> dict:
    def verdicts(judge: str) -> dict[tuple, str]:
        # Only the judge's own verdicts: unparsed ones say nothing, and pairs a cascade's cheap judge decided are
        # the same verdict for every judge by construction.
        return {(j["prompt_id"], j["model"], j["strategy"], j["i"], j["j"]): j["verdict"] for j in judgments
                if j["judge"] == judge and j["verdict"] in ("equivalent", "different")
                and j.get("decided_by") != "cheap"}

    va, vb = verdicts(a), verdicts(b)
    common = sorted(set(va) & set(vb))
    la, lb = [va[k] for k in common], [vb[k] for k in common]
    kappa, kappa_note = cohen_kappa(la, lb)
    ua = {(c["prompt_id"], c["model"], c["strategy"]): c["unique"] for c in comps if c["judge"] == a}
    ub = {(c["prompt_id"], c["model"], c["strategy"]): c["unique"] for c in comps if c["judge"] == b}
    groups = sorted(set(ua) & set(ub))
    rho = spearman_with_ci([ua[g] for g in groups], [ub[g] for g in groups], clusters=[g[0] for g in groups],
                           resamples=rc.bootstrap_resamples, seed=rc.seed, ci=rc.ci,
                           names=(f"{a}'s count", f"{b}'s count"), unit="groups")
    return {
        "a": a,
        "b": b,
        "pairs_both": len(common),
        "verdict_agreement": (sum(x == y for x, y in zip(la, lb)) / len(common)) if common else None,
        "kappa": None if math.isnan(kappa) else kappa,
        "kappa_note": kappa_note,
        "groups_both": len(groups),
        "unique_exact": (sum(ua[g] == ub[g] for g in groups) / len(groups)) if groups else None,
        "unique_spearman": rho.to_dict(),
    }


def _accuracy_section(t: dict, groups: list[dict], strategies: list[str], boot: Callable) -> dict[str, Any]:
    source = {p["prompt_id"]: p["source"] for p in _rows(t, "prompts")}
    # (model, strategy, source, method, prompt) → per-response verdicts (or a group's accuracy), prompts weigh equally.
    per_prompt: dict[tuple, list[float]] = defaultdict(list)
    unchecked: dict[tuple, int] = defaultdict(int)
    if "accuracy" in t:
        origin = "accuracy table (one verdict per response)"
        for r in _rows(t, "accuracy"):
            key = (r["model"], r["strategy"], source.get(r["prompt_id"], "?"), r.get("method") or "–")
            if r["correct"] is None:
                unchecked[key] += 1
            else:
                per_prompt[key + (r["prompt_id"],)].append(1.0 if r["correct"] else 0.0)
    elif any(finite(g.get("accuracy")) for g in groups):
        # Only a per-group accuracy column: each group counts as one checked unit.
        origin = "groups' accuracy column (share of a group's responses that are correct)"
        for g in groups:
            key = (g["model"], g["strategy"], source.get(g["prompt_id"], "?"), "–")
            if finite(g.get("accuracy")):
                per_prompt[key + (g["prompt_id"],)].append(float(g["accuracy"]))
    else:
        return {"present": False, "rows": [],
                "note": "this run has no accuracy table: accuracy is measured only where the accuracy stage ran on "
                        "prompts with a gold answer (SimpleQA / category A, MATH-500 / category D)"}
    cells: dict[tuple, dict[str, Any]] = defaultdict(lambda: {"values": [], "prompts": [], "checked": 0})
    for (*key, prompt), verdicts in per_prompt.items():
        cell = cells[tuple(key)]
        cell["values"].append(sum(verdicts) / len(verdicts))
        cell["prompts"].append(prompt)
        cell["checked"] += len(verdicts)
    order = {s: k for k, s in enumerate(strategies)}
    rows = []
    for key in sorted(set(cells) | set(unchecked), key=lambda k: (k[0], order.get(k[1], 99), k[1], k[2], k[3])):
        model, strategy, src, method = key
        cell = cells.get(key, {"values": [], "prompts": [], "checked": 0})
        rows.append({"model": model, "strategy": strategy, "source": src, "method": method,
                     "prompts": len(cell["prompts"]), "checked": cell["checked"], "unchecked": unchecked.get(key, 0),
                     "accuracy": boot(cell["values"], clusters=cell["prompts"]).to_dict()})
    return {"present": True, "origin": origin, "rows": rows,
            "note": "" if rows else "the accuracy table is empty: no prompt in this run has a gold answer to check"}


# ---------------------------------------------------------------------------------------------------------------
# Throughput (run_stats.json).


def _rate(amount: float | None, wall_s: float, computed: bool) -> float | None:
    return amount / wall_s if computed and amount and wall_s > 0 else None


def run_stats(result, config) -> dict[str, Any]:
    """The run's throughput as a stable, versioned record (written as run_stats.json).

    Args:
        result: the RunResult (stage records carry wall time, rows and summed backend counters).
        config: its RunConfig.

    Returns:
        {"schema": 1, "run_dir", "written_at", "wall_s", "peak_rss_bytes", "n", "strategies", "generators",
        "judges", "executor", "counts", "stages": [...], "totals"}. Per stage: rows computed in this run and the
        rates over its wall time; rates are None for a stage whose every shard was reused (nothing computed) or
        whose amount is unknown.
    """
    t = result.tables
    comps = _rows(t, "components")
    responses = t.get("responses")
    stages = []
    for r in result.stages:
        kind, _, rest = r.stage.partition("[")
        model = rest.rstrip("]") or None
        b = dict(r.backend or {})
        computed = r.rows > 0
        tokens = b.get("completion_tokens")
        if tokens is None and kind == "sample" and r.units_reused == 0 and responses is not None:
            # Backends without token counters: the responses' own token counts (all computed in this run).
            tokens = sum(x["n_tokens"] or 0 for x in responses.select(["model", "n_tokens"]).to_pylist()
                         if x["model"] == model)
        pairs = None
        if kind == "judge":
            pairs = sum(c["n_pairs_judged"] for c in comps if c["judge"] == model)
        # Pairs per second only when every shard ran now: a partly reused stage judged an unknown share of them.
        pairs_rate = _rate(pairs, r.wall_s, computed and r.units_reused == 0)
        stages.append({
            "stage": r.stage,
            "kind": kind,
            "model": model,
            "units": r.units,
            "units_reused": r.units_reused,
            "rows": r.rows,
            "wall_s": r.wall_s,
            "rows_per_s": _rate(r.rows, r.wall_s, computed),
            "calls": b.get("calls", b.get("requests")),
            "requests": b.get("requests"),
            "retries": b.get("retries", 0) if b else None,
            "row_errors": b.get("row_errors"),
            "prompt_tokens": b.get("prompt_tokens"),
            "completion_tokens": tokens,
            "completion_tokens_per_s": _rate(tokens, r.wall_s, computed),
            "pairs_judged": pairs,
            "pairs_per_s": pairs_rate,
            "cost_usd": b.get("cost_usd"),
            "failed_shards": len(r.failed),
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
        "n": config.n,
        "strategies": list(config.strategies),
        "generators": [{"name": m.name, "backend": m.backend, "model": m.model} for m in config.generators],
        "judges": [{"name": m.name, "backend": m.backend, "model": m.model} for m in config.judges],
        "executor": config.execution.executor,
        "counts": {name: (t[name].num_rows if name in t else 0)
                   for name in ("prompts", "groups", "responses", "judgments")},
        "stages": stages,
        "totals": {"calls": total("calls"), "retries": total("retries"),
                   "completion_tokens": total("completion_tokens"), "cost_usd": total("cost_usd"),
                   "stage_wall_s": sum(s["wall_s"] for s in stages)},
    }


# ---------------------------------------------------------------------------------------------------------------
# The document model both renderers share.


@dataclass
class Para:
    """A paragraph of our own text (inline `code` allowed); `lead` is set in bold before it."""

    text: str
    lead: str = ""
    note: bool = False  # a call-out box in HTML


@dataclass
class Table:
    """A table of plain-text cells (escaped by each renderer)."""

    headers: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class FigureRef:
    """A figure: `name` is its key in the figures dict (figures/<name>.png)."""

    name: str
    caption: str


@dataclass
class Items:
    """A bulleted list of plain-text items; `literal` items may carry untrusted text (input rows, backend errors)
    and are shown exactly, with no Markdown formatting applied."""

    items: list[str]
    literal: bool = False


@dataclass
class Sub:
    """A sub-heading."""

    title: str


@dataclass
class Section:
    """One section: an anchor id, a title and its blocks in order."""

    id: str
    title: str
    blocks: list[Any] = field(default_factory=list)


def _f(x: Any, digits: int = 2) -> str:
    return "–" if not finite(x) else f"{x:.{digits}f}"


def fmt_estimate(est: dict[str, Any] | None, digits: int = 2) -> str:
    """"1.23 [0.98, 1.50]"; "1.23 (no CI)" where there is no interval; "n/a" where undefined."""
    if not est or est.get("value") is None:
        return "n/a"
    v = f"{est['value']:.{digits}f}"
    if est.get("low") is None or est.get("high") is None:
        return f"{v} (no CI)"
    return f"{v} [{est['low']:.{digits}f}, {est['high']:.{digits}f}]"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _bytes(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n else "not measured"


def build_sections(data: dict[str, Any]) -> list[Section]:
    """The report as sections of paragraphs, tables and figure references (shared by Markdown and HTML)."""
    ci = f"{100 * data['settings']['ci']:.0f}%"
    resamples = data["settings"]["bootstrap_resamples"]
    sections = [_overview(data, ci, resamples), _unique_view(data, ci), _tradeoff_view(data, ci),
                _spearman_view(data, ci), _strategy_view(data), _classification_view(data, ci),
                _judging_view(data, ci), _accuracy_view(data, ci), _throughput_view(data)]
    problems = Section("problems", "Failures and skipped inputs")
    if data["failed_shards"]:
        problems.blocks += [Sub("Failed shards (rerun the same command to compute them)"),
                            Items([f"{f['stage']}: {f['shards']} shards — {f['reason']}"
                                   for f in data["failed_shards"]], literal=True)]
    if data["load_warnings"]:
        problems.blocks += [Sub("Prompt source warnings"), Items(list(data["load_warnings"]), literal=True)]
    if data["skipped_inputs"]:
        problems.blocks += [Sub(f"Skipped input rows ({len(data['skipped_inputs'])})"),
                            Items(list(data["skipped_inputs"]), literal=True)]
    if not problems.blocks:
        problems.blocks.append(Para("No failed shards, no prompt source warnings, no skipped input rows."))
    sections.append(problems)
    return sections


def _overview(data: dict[str, Any], ci: str, resamples: int) -> Section:
    s = Section("overview", "Run")
    tp = data["throughput"]
    s.blocks.append(Items([
        f"run directory: `{data['run_dir']}`",
        f"generators: {', '.join(data['models'])}; judges: {', '.join(data['judges'])}",
        f"prompts: {data['prompts']}; groups: {data['groups']}; n = {data['n']} responses per group; "
        f"strategies: {', '.join(data['strategies'])}",
        f"intervals: {ci} percentile bootstrap over prompts, {resamples} resamples, seed {data['settings']['seed']}",
        (f"wall time {tp['wall_s']:.1f} s; peak memory {_bytes(tp['peak_rss_bytes'])}" if tp["stages"]
         else "wall time and memory not recorded (report rendered from the run directory)"),
    ]))
    if data["small_model_judges"]:
        s.blocks.append(Para(SMALL_MODEL_TEXT, lead=SMALL_MODEL_LEAD, note=True))
    if data["failed_shards"]:
        k = sum(f["shards"] for f in data["failed_shards"])
        s.blocks.append(Para(f"{k} shards failed and their rows are missing (see Failures); rerun the same command "
                             "to compute them.", lead="Incomplete run.", note=True))
    return s


def _unique_view(data: dict[str, Any], ci: str) -> Section:
    u = data["unique"]
    s = Section("unique", "Functionally unique responses (mean over judges, out of n) — Figure 2")
    s.blocks.append(Para(
        f"Connected components of each group's \"equivalent\" graph, averaged over judges, then over prompts; "
        f"{ci} bootstrap interval over prompts. Category: gold label where known, else the model's own. Only complete "
        f"groups enter ({u['complete_total']} of {data['groups']}); {u['excluded_total']} groups with fewer than n "
        "responses or no count are left out and counted below."))
    s.blocks.append(FigureRef("figure2_unique", f"Figure 2: unique responses per category and strategy ({ci} CI)."))
    cell = {(c["model"], c["category"], c["strategy"]): c for c in u["cells"]}
    for model in data["models"]:
        s.blocks.append(Sub(model))
        rows = []
        for cat in u["categories"] + ["all"]:
            if not any((model, cat, st) in cell for st in data["strategies"]):
                continue
            rows.append([category_name(cat)] + [
                f"{fmt_estimate(cell[(model, cat, st)]['estimate'])} ({cell[(model, cat, st)]['groups']})"
                if (model, cat, st) in cell else "–" for st in data["strategies"]])
        s.blocks.append(Table(["category"] + data["strategies"], rows,
                              f"Cells: mean [{ci} CI] (complete groups)."))
    upper = sum(c["upper_bounds"] for c in u["cells"] if c["category"] != "all")
    if upper:
        s.blocks.append(Para(f"{upper} of the counted groups had unparsed verdicts from at least one judge: their "
                             "counts are upper bounds."))
    if u["excluded"]:
        s.blocks.append(Table(["model", "strategy", "left out because", "groups"],
                              [[e["model"], e["strategy"], e["reason"], str(e["groups"])] for e in u["excluded"]],
                              "Groups left out of the means."))
    return s


def _tradeoff_view(data: dict[str, Any], ci: str) -> Section:
    t = data["tradeoff"]
    s = Section("tradeoff", "Diversity vs quality — Figure 3a / 3b")
    if t.get("note"):
        s.blocks.append(Para(t["note"] + "."))
        return s
    s.blocks.append(Para(
        "The paper's claim: a general metric against a reward score shows a diversity–quality trade-off that mostly "
        "disappears when diversity is functional (task-anchored) and quality is checklist-based. One point per "
        f"strategy: mean over complete groups, {ci} bootstrap intervals over prompts on both axes."))
    if not t["reward_available"]:
        s.blocks.append(Para("No reward model ran in this run: Figure 3a uses checklist quality on its y axis, so "
                             "3a and 3b differ only in the diversity measure.", lead="Note."))
    s.blocks.append(FigureRef("figure3a_general", f"Figure 3a: vocabulary diversity vs {t['quality_3a']}."))
    s.blocks.append(FigureRef("figure3b_functional", "Figure 3b: functional diversity vs checklist quality."))
    for key, fig, xname, yname, digits in (("points_3a", "3a", "vocabulary diversity", t["quality_3a"], 3),
                                           ("points_3b", "3b", "unique responses", "checklist quality", 2)):
        s.blocks.append(Table(["model", "strategy", "groups", xname, yname],
                              [[p["model"], p["strategy"], str(p["groups"]), fmt_estimate(p["x"], digits),
                                fmt_estimate(p["y"])] for p in t[key]],
                              f"Figure {fig} points."))
    if t["contrasts"]:
        s.blocks.append(Sub("The trade-off, measured"))
        s.blocks.append(Table(
            ["figure", "model", "most diverse strategy", "least diverse strategy",
             "quality difference (most − least)"],
            [[c["figure"], c["model"], c["most_diverse"], c["least_diverse"], fmt_estimate(c["quality_difference"])]
             for c in t["contrasts"]],
            "Paired over prompts both strategies answered in full; a negative difference is a quality cost of "
            "diversity."))
    return s


def _spearman_view(data: dict[str, Any], ci: str) -> Section:
    sp = data["spearman"]
    s = Section("spearman", "Do general metrics track functional diversity? (Spearman ρ per category)")
    s.blocks.append(Para(
        "Spearman's rank correlation, over complete groups, between each general metric and the number of "
        f"functionally unique responses; {ci} bootstrap intervals resample prompts (a prompt's groups together). "
        "All metrics are oriented so that higher means more diverse (the gzip ratio enters negated), so ρ near 1 "
        "means the general metric ranks groups as functional diversity does; the paper reports that it does not. "
        "n/a: undefined (fewer than three groups, or one side constant — e.g. every group has the same count)."))
    s.blocks.append(FigureRef("spearman", f"Spearman ρ per category with {ci} CI."))
    est = {(r["category"], r["metric"]): r["estimate"] for r in sp["rows"]}
    rows, notes = [], []
    for cat in sp["categories"]:
        first = est[(cat, sp["metrics"][0])]
        rows.append([category_name(cat), str(first["n"])] + [fmt_estimate(est[(cat, m)]) for m in sp["metrics"]])
        # One line per distinct note: a constant unique count makes every metric undefined for the same reason.
        by_note: dict[str, list[str]] = defaultdict(list)
        for m in sp["metrics"]:
            if est[(cat, m)]["note"]:
                by_note[est[(cat, m)]["note"]].append(m)
        notes += [f"{category_name(cat)} ({', '.join(ms)}): {note}" for note, ms in by_note.items()]
    s.blocks.append(Table(["category", "groups"] + list(sp["metrics"]), rows, f"ρ [{ci} CI]."))
    if notes:
        s.blocks += [Sub("Undefined or partly defined correlations"), Items(notes)]
    return s


def _strategy_view(data: dict[str, Any]) -> Section:
    s = Section("by-strategy", "General metrics and quality by strategy")
    reward = any(r["reward_mean"] is not None for r in data["by_strategy"])
    accuracy = any(r["accuracy"] is not None for r in data["by_strategy"])
    headers = ["model", "strategy", "unique", "vocab div", "embed div", "gzip ratio", "NCD div", "quality (1–5)"]
    headers += (["reward"] if reward else []) + (["accuracy"] if accuracy else [])
    headers += ["short", "failed"]
    rows = []
    for r in data["by_strategy"]:
        row = [r["model"], r["strategy"], _f(r["unique_mean"]), _f(r["vocab_div"], 3), _f(r["embed_div"], 3),
               _f(r["compression_ratio"], 3), _f(r["ncd_div"], 3), _f(r["quality_mean"])]
        row += ([_f(r["reward_mean"])] if reward else []) + ([_f(r["accuracy"])] if accuracy else [])
        rows.append(row + [str(r["short_groups"]), str(r["failed_groups"])])
    s.blocks.append(Table(headers, rows,
                          "Means over groups (accuracy: over groups with a checked response). Vocabulary and embedding diversity: mean over pairs of 1 − similarity "
                          "(higher is more diverse). Gzip ratio: bytes of the concatenated group over its compressed "
                          "size (higher is more repetitive). Short: system-prompt groups that parsed into fewer than "
                          "n responses."))
    return s


def _classification_view(data: dict[str, Any], ci: str) -> Section:
    s = Section("classification", "Task classification against gold labels")
    if not data["classification"]:
        s.blocks.append(Para("No prompt was classified in this run (every prompt came with its category)."))
        return s
    s.blocks.append(Table(["model", "prompts", "labelled", f"accuracy [{ci} CI]", "unparsed"],
                          [[c["model"], str(c["prompts"]), str(c["labelled"]), fmt_estimate(c["accuracy"]),
                            str(c["unparsed"])] for c in data["classification"]]))
    s.blocks.append(FigureRef("confusion", "Confusion matrices (rows: gold category; columns: the model's label)."))
    for c in data["classification"]:
        s.blocks.append(Sub(f"{c['model']}: per-category recall and confusion"))
        s.blocks.append(Table(["gold category", "prompts", "correct", "recall"],
                              [[category_name(r["category"]), str(r["support"]), str(r["correct"]),
                                _f(r["recall"])] for r in c["recall"]]))
        conf = c["confusion"]
        s.blocks.append(Table(["gold \\ predicted"] + conf["columns"],
                              [[label] + [str(x) for x in row] for label, row in zip(conf["rows"], conf["counts"])
                               if sum(row)]))
    return s


def _judging_view(data: dict[str, Any], ci: str) -> Section:
    j = data["judging"]
    s = Section("judges", "Judging")
    cheap = any(r["cheap_decided"] for r in j["per_judge"])
    headers = ["judge", "groups", "mean unique (complete)", "pairs judged", "equivalent", "unparsed pairs",
               "calls made", "calls saved", "both-order disagreement"] + (["cheap-decided"] if cheap else [])
    rows = []
    for r in j["per_judge"]:
        o = r["order"]
        order = (f"{o['disagreements']}/{o['pairs']} ({_pct(o['rate'])})" if o["measured"] else "not measured")
        rows.append([r["judge"], str(r["groups"]), _f(r["unique_mean"]), str(r["pairs_judged"]), str(r["equivalent"]),
                     f"{r['unparsed_pairs']} in {r['groups_with_unparsed']} groups", str(r["calls_made"]),
                     str(r["calls_saved"]), order] + ([str(r["cheap_decided"] or 0)] if cheap else []))
    s.blocks.append(Table(headers, rows, "Calls saved: pairs union-find already connected (pruning). Unparsed "
                                         "pairs are not edges, so those groups' counts are upper bounds."))
    if not j["both_orders"]:
        s.blocks.append(Para("Both-order disagreement is not measured: `judge.both_orders` is off, so each pair was "
                             "judged in one order only."))
    if j["single_judge"]:
        s.blocks.append(Para(f"A single judge ({j['judges'][0] if j['judges'] else 'none'}): judge-judge agreement "
                             "needs at least two judges."))
    else:
        s.blocks.append(FigureRef("judge_agreement", "Judge agreement: verdict agreement and Cohen's κ."))
        s.blocks.append(Table(
            ["judge A", "judge B", "pairs both judged", "verdicts agree", "Cohen's κ", "groups both counted",
             "same unique count", f"Spearman ρ of counts [{ci} CI]"],
            [[a["a"], a["b"], str(a["pairs_both"]), _pct(a["verdict_agreement"]),
              _f(a["kappa"]) + (f" ({a['kappa_note']})" if a["kappa_note"] else ""), str(a["groups_both"]),
              _pct(a["unique_exact"]), fmt_estimate(a["unique_spearman"])
              + (f" ({a['unique_spearman']['note']})" if a["unique_spearman"]["note"] else "")]
             for a in j["agreement"]],
            "With pruning, judges may judge different pairs: verdicts are compared on the pairs both judged (their "
            "parsed, LLM-decided verdicts)."))
    return s


def _accuracy_view(data: dict[str, Any], ci: str) -> Section:
    a = data["accuracy"]
    s = Section("accuracy", "Accuracy on verifiable sources")
    if not a["present"]:
        s.blocks.append(Para(a["note"] + ".", lead="Not measured in this run:"))
        return s
    s.blocks.append(Para(f"From the {a['origin']}. Accuracy per prompt (share of its checked responses that are "
                         f"correct), averaged over prompts; {ci} bootstrap interval over prompts. Unchecked: responses "
                         "whose correctness could not be decided (no answer found, unparsed grade, timeout) — left "
                         "out, never guessed. Methods: math-verify for MATH-500 / category D, the LLM grader for "
                         "SimpleQA / category A."))
    if a["note"]:
        s.blocks.append(Para(a["note"] + "."))
    s.blocks.append(Table(["model", "strategy", "source", "method", "prompts", "checked", "unchecked",
                           f"accuracy [{ci} CI]"],
                          [[r["model"], r["strategy"], r["source"], r["method"], str(r["prompts"]), str(r["checked"]),
                            str(r["unchecked"]), fmt_estimate(r["accuracy"])] for r in a["rows"]]))
    return s


def _throughput_view(data: dict[str, Any]) -> Section:
    tp = data["throughput"]
    s = Section("throughput", "Run throughput")
    if not tp["stages"]:
        s.blocks.append(Para("No stage records: this report was rendered from the run directory without a "
                             "run_stats.json written by the run itself, so wall times and rates are unknown."))
        return s
    s.blocks.append(Para(
        f"Wall time {tp['wall_s']:.1f} s; peak memory {_bytes(tp['peak_rss_bytes'])} (resident memory of the driver "
        "and the processes it started, summed). Rates are over each stage's wall time and only over what it "
        "computed in this run (a stage whose shards were all reused shows –). The same numbers are in "
        "`run_stats.json` for `benchmarks/collect_runs.py`."))
    s.blocks.append(FigureRef("throughput", "Wall time per stage."))
    has_cost = any(st["cost_usd"] is not None for st in tp["stages"])
    headers = ["stage", "shards", "reused", "rows", "wall s", "rows/s", "generated tok/s", "judge pairs/s", "calls",
               "retries"] + (["cost USD"] if has_cost else [])
    rows = []
    for st in tp["stages"]:
        row = [st["stage"], str(st["units"]), str(st["units_reused"]), str(st["rows"]), f"{st['wall_s']:.1f}",
               _f(st["rows_per_s"]), _f(st["completion_tokens_per_s"], 1), _f(st["pairs_per_s"]),
               "–" if st["calls"] is None else str(int(st["calls"])),
               "–" if st["retries"] is None else str(int(st["retries"]))]
        rows.append(row + ([_f(st["cost_usd"], 4)] if has_cost else []))
    s.blocks.append(Table(headers, rows, "Generated tok/s: completion tokens the backend reported over wall time. "
                                         "Calls: conversations sent to the backend."))
    return s


# ---------------------------------------------------------------------------------------------------------------
# Renderings.


def _md_cell(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


_MD_ACTIVE = re.compile(r"([\\`*_{}\[\]()<>#+!|~&])")


def _md_literal(text: str) -> str:
    """Untrusted text as Markdown that shows it exactly: no links, images, HTML or emphasis can come of it."""
    return _MD_ACTIVE.sub(r"\\\1", str(text)).replace("\n", " ")


def render_markdown(data: dict[str, Any], figure_dir: str = "figures") -> str:
    """The report as Markdown: the same sections as the HTML, figures linked as PNG files.

    Args:
        data: from `report_data`.
        figure_dir: folder of the PNG files, relative to the Markdown file.

    Returns:
        The Markdown text.
    """
    sections = build_sections(data)
    out = ["# taskdiv report", "", "Contents: " + " · ".join(f"[{s.title.split(' — ')[0]}](#{s.id})"
                                                            for s in sections), ""]
    for sec in sections:
        out += [f'<a id="{sec.id}"></a>', "", f"## {sec.title}", ""]
        for b in sec.blocks:
            if isinstance(b, Para):
                out += [(f"**{b.lead}** " if b.lead else "") + b.text, ""]
            elif isinstance(b, Sub):
                out += [f"### {b.title}", ""]
            elif isinstance(b, Items):
                out += [f"- {_md_literal(x) if b.literal else _md_cell(x)}" for x in b.items] + [""]
            elif isinstance(b, FigureRef):
                out += [f"![{b.caption}]({figure_dir}/{b.name}.png)", "", f"*{b.caption}*", ""]
            elif isinstance(b, Table):
                if not b.rows:
                    out += ["(no rows)", ""]
                    continue
                out += ["| " + " | ".join(_md_cell(h) for h in b.headers) + " |",
                        "|" + "---|" * len(b.headers)]
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
                out += ([""] + [b.caption] if b.caption else []) + [""]
    return "\n".join(out).rstrip() + "\n"


def build_figures(data: dict[str, Any]) -> dict[str, bytes]:
    """Every figure the sections reference, as PNG bytes by name (see engine.figures)."""
    # Imported here: matplotlib is only needed to draw, not to read settings or compute numbers.
    from engine import figures as F

    u, t, sp, j = data["unique"], data["tradeoff"], data["spearman"], data["judging"]
    figs = {
        "figure2_unique": F.figure2_unique([c for c in u["cells"] if c["category"] != "all"], models=data["models"],
                                           strategies=data["strategies"], categories=u["categories"], n=data["n"]),
        "spearman": F.spearman_bars(sp["rows"], metrics=sp["metrics"], categories=sp["categories"]),
    }
    if data["classification"]:
        figs["confusion"] = F.confusion_heatmap([{"model": c["model"], **c["confusion"]}
                                                 for c in data["classification"]])
    if data["throughput"]["stages"]:
        figs["throughput"] = F.stage_throughput(data["throughput"]["stages"])
    if not t.get("note"):
        figs["figure3a_general"] = F.figure3a_general(t["points_3a"], strategies=data["strategies"],
                                                      quality_label=t["quality_3a"],
                                                      likert=not t["reward_available"])
        figs["figure3b_functional"] = F.figure3b_functional(t["points_3b"], strategies=data["strategies"],
                                                            n=data["n"])
    if not j["single_judge"]:
        figs["judge_agreement"] = F.judge_agreement(j["judges"], j["agreement"])
    return figs


def write_report(result, config) -> dict[str, Path]:
    """Write the report into the run directory.

    Args:
        result: the RunResult.
        config: its RunConfig.

    Returns:
        Paths by name: "markdown" (report.md), "html" (report.html, self-contained), "json" (report.json, every
        number), "figures" (the folder of PNG files), and "run_stats" (run_stats.json, throughput) when the result
        has stage records.
    """
    from engine.report_html import render_html

    store = Store(result.run_dir)
    data = report_data(result, config)
    figs = build_figures(data)
    figure_dir = Path(result.run_dir) / "figures"
    figure_dir.mkdir(parents=True, exist_ok=True)
    for stale in figure_dir.glob("*.png"):
        if stale.stem not in figs:  # e.g. judge_agreement.png of an earlier report with two judges
            stale.unlink()
    for name, png in figs.items():
        atomic_write_bytes(figure_dir / f"{name}.png", png)
    paths = {
        "json": store.write_text("report.json", orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()),
        "markdown": store.write_text("report.md", render_markdown(data)),
        "html": store.write_text("report.html", render_html(build_sections(data), figs,
                                                            title=f"taskdiv report — {Path(result.run_dir).name}")),
        "figures": figure_dir,
    }
    # Without stage records (a report re-rendered from a directory that had none) there is no throughput to
    # record, and an empty run_stats.json would read as a run that took no time.
    if result.stages:
        paths["run_stats"] = store.write_text("run_stats.json",
                                              orjson.dumps(data["throughput"], option=orjson.OPT_INDENT_2).decode())
    return paths


# ---------------------------------------------------------------------------------------------------------------
# Reading a finished run back (for `compare`, and to re-render a report).


def read_run(run_dir: str | Path, tables: Sequence[str] | None = None) -> tuple[Any, Any]:
    """A finished run's RunResult and RunConfig, read from its directory.

    Tables come from <run_dir>/<name>.parquet, the config from config.yaml; stage records (for throughput) from
    run_stats.json when a report was written before, else none.

    Args:
        run_dir: the run directory.
        tables: read only these tables (those present); None reads all.

    Returns:
        (RunResult, RunConfig).

    Raises:
        RunDirError: the directory is not a finished run (no config.yaml or no groups table).
    """
    import pyarrow.parquet as pq
    import yaml

    from engine.config import config_from_dict
    from engine.errors import RunDirError
    from engine.pipeline import RunResult, StageRecord

    root = Path(run_dir)
    if not (root / "config.yaml").is_file():
        raise RunDirError(f"{root}: not a run directory (no config.yaml)")
    if not (root / "groups.parquet").is_file():
        raise RunDirError(f"{root}: the run has not finished (no groups.parquet)")
    config = config_from_dict(yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8")) or {},
                              source=str(root / "config.yaml"))
    found = {p.stem: p for p in sorted(root.glob("*.parquet"))}
    wanted = found if tables is None else {k: found[k] for k in tables if k in found}
    loaded = {name: pq.read_table(path) for name, path in wanted.items()}
    stages, wall_s, peak = [], 0.0, 0
    stats_path = root / "run_stats.json"
    if stats_path.is_file():
        stats = orjson.loads(stats_path.read_bytes())
        wall_s, peak = stats.get("wall_s") or 0.0, stats.get("peak_rss_bytes") or 0
        for st in stats.get("stages", []):
            backend = {k: st[src] for k, src in (("calls", "calls"), ("requests", "requests"),
                                                 ("retries", "retries"), ("row_errors", "row_errors"),
                                                 ("prompt_tokens", "prompt_tokens"),
                                                 ("completion_tokens", "completion_tokens"),
                                                 ("cost_usd", "cost_usd")) if st.get(src) is not None}
            stages.append(StageRecord(st["stage"], units=st["units"], units_reused=st["units_reused"],
                                      rows=st["rows"], wall_s=st["wall_s"], backend=backend))
    return RunResult(str(root), loaded, stages, [], wall_s, peak_rss_bytes=peak), config
