"""Every number the report shows, computed from a run's tables as plain (JSON-serialisable) data: report.json.

Sections (each a view of the paper, measured on this run, with bootstrap intervals over prompts):
  - functionally unique responses per category × strategy, per model (the paper's Figure 2);
  - diversity vs quality: a general metric vs reward/checklist quality, and functional diversity vs checklist
    quality, per strategy (Figure 3a / 3b);
  - rank correlation of each general metric with functional diversity, per category;
  - general metrics and quality by strategy;
  - task classification against gold labels: accuracy, per-category recall, confusion matrix;
  - judges: per-judge counts, judge-judge agreement, both-order disagreement, calls made and saved;
  - accuracy on verifiable sources per strategy (when the run has an accuracy table);
  - run throughput per stage (engine.report.run_stats).
"""

from __future__ import annotations

import math
from collections import defaultdict
from functools import partial
from typing import Any, Callable, Iterable

from engine.config import ReportConfig
from engine.method.metrics import GENERAL_METRICS
from engine.method.taxonomy import CATEGORIES, LETTERS
from engine.report.run_stats import run_stats
from engine.report.stats import (
    bootstrap_mean_ci,
    cohen_kappa,
    confusion_matrix,
    paired_bootstrap_diff_ci,
    per_class_recall,
    spearman_with_ci,
)

SMALL_MODEL_LEAD = "The judgments in this run are not meaningful."
SMALL_MODEL_TEXT = (
    "The embedded default judge is SmolLM2-135M-Instruct, a 135M-parameter model whose YES/NO equivalence verdicts "
    "carry no signal (AUC ≈ 0.5, measured); it exists so that every stage runs anywhere. For a real audit, "
    "configure real judges (`judges:` with `backend: vllm` on GPUs or `backend: http` for an OpenAI-compatible "
    "API, e.g. the paper's GPT-4o, Claude and Gemini judges) — see the README, \"Running a real audit\"."
)
SMALL_MODEL_NOTE = f"**{SMALL_MODEL_LEAD}** {SMALL_MODEL_TEXT}"

# General metrics correlated with functional diversity (engine.method.metrics). Each enters with its direction, so
# the gzip ratio (higher for *more repetitive* groups) is negated and every rho reads "positive = agrees".
CORRELATED = [m for m in GENERAL_METRICS.values() if m.correlate]


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
    """Whether a groups row counts toward unique-response means: status ok, all n responses, and at least one
    judge's count resolved."""
    return g["status"] == "ok" and g["n_responses"] == n and finite(g["unique_mean"])


def _exclusion_reason(g: dict[str, Any], n: int) -> str:
    if g["status"] == "error":
        return "failed"
    if g["status"] == "short" or g["n_responses"] != n:
        return "short (fewer than n responses)"
    if g.get("unresolved_judges"):
        return "unresolved: no judge's count could be read"
    if g.get("missing_judges"):
        return "no judge count: the judges' shards failed"
    return "no judge count"


def _partial_reasons(g: dict[str, Any]) -> list[str]:
    """Why a counted group's mean rests on fewer than all judges (empty when every judge entered)."""
    out = []
    if g.get("unresolved_judges"):
        out.append("a judge's count unresolved (unreadable verdicts)")
    if g.get("missing_judges"):
        out.append("a judge's shard failed")
    return out


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
    data["yardstick"] = _yardstick_section(t, models, config)
    data["judging"] = _judging_section(t, config, n, rc, result.stages)
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
                    "groups": len(gs), "partial": sum(1 for g in gs if _partial_reasons(g))})
    partial: dict[str, int] = defaultdict(int)
    for g in groups:
        if is_complete(g, n):
            for reason in _partial_reasons(g):
                partial[reason] += 1
    return {
        "cells": out,
        "categories": ordered_categories(c for (_, c, _) in cells if c != "all"),
        "excluded": [{"model": m, "strategy": s, "reason": r, "groups": k}
                     for (m, s, r), k in sorted(excluded.items())],
        "excluded_total": sum(excluded.values()),
        "complete_total": sum(1 for g in groups if is_complete(g, n)),
        "partial": [{"reason": r, "groups": k} for r, k in sorted(partial.items())],
        "partial_total": sum(1 for g in groups if is_complete(g, n) and _partial_reasons(g)),
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
        for metric in CORRELATED:
            name, col, sign = metric.label, metric.column, metric.direction
            pairs = [(sign * g[col], g["unique_mean"], g["prompt_id"]) for g in gs if finite(g.get(col))]
            est = spearman_with_ci([p[0] for p in pairs], [p[1] for p in pairs], clusters=[p[2] for p in pairs],
                                   resamples=rc.bootstrap_resamples, seed=rc.seed, ci=rc.ci,
                                   names=(f"{name} diversity", "the unique count"), unit="groups")
            rows.append({"category": cat, "metric": name, "estimate": est.to_dict()})
    return {"rows": rows, "categories": cats + ["all"], "metrics": [m.label for m in CORRELATED]}


def _by_strategy(groups: list[dict], n: int) -> list[dict[str, Any]]:
    per: dict[tuple, list[dict]] = defaultdict(list)
    for g in groups:
        per[(g["model"], g["strategy"])].append(g)
    return [
        {
            "model": m,
            "strategy": s,
            "unique_mean": _mean(g["unique_mean"] for g in gs if is_complete(g, n)),
            **{column: _mean(g.get(column) for g in gs) for column in GENERAL_METRICS},
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
    rows = [r for r in _rows(t, "classifications") if r.get("role", "own") == "own"]
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


def _yardstick_section(t: dict, models: list[str], config) -> dict[str, Any]:
    """Under which category each prompt was judged (gold or the reference classification), and how often each
    generator's own classification agrees with the reference."""
    prompts = _rows(t, "prompts")
    rows = _rows(t, "classifications")
    reference = {r["prompt_id"]: r["category"] for r in rows if r.get("role") == "reference"}
    own = [r for r in rows if r.get("role", "own") == "own"]
    voters = list(dict.fromkeys(r["model"] for r in rows if r.get("role") == "vote"))
    agreement = []
    for model in models:
        pairs = [(r["category"], reference[r["prompt_id"]]) for r in own
                 if r["model"] == model and reference.get(r["prompt_id"])]
        if pairs:
            agreement.append({"model": model, "prompts": len(pairs), "agree": sum(1 for a, b in pairs if a == b)})
    return {
        "gold": sum(1 for p in prompts if p["gold_category"]),
        "reference": sum(1 for p in prompts if not p["gold_category"] and reference.get(p["prompt_id"])),
        "uncategorised": sum(1 for p in prompts if not p["gold_category"] and not reference.get(p["prompt_id"])),
        "voters": voters,
        "agreement": agreement,
    }


def _judging_section(t: dict, config, n: int, rc: ReportConfig, stages: list | None = None) -> dict[str, Any]:
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
                    and is_complete(g, n) and c["resolved"]]
        expected = [g for g in groups.values() if g["n_responses"]]
        js = [j for j in judgments if j["judge"] == judge]
        row = {
            "judge": judge,
            "groups": len(cs),
            "unique_mean": _mean(c["unique"] for c in complete),
            "complete_groups": len(complete),
            "pairs_judged": sum(c["n_pairs_judged"] for c in cs),
            "equivalent": sum(c["n_equivalent"] for c in cs),
            "unresolved_pairs": sum(c["n_unresolved"] for c in cs),
            "unparsed_pairs": sum(1 for j in js if j["verdict"] == "unparsed"),
            "error_pairs": sum(1 for j in js if j["verdict"] == "error"),
            "groups_with_unresolved": sum(1 for c in cs if c["n_unresolved"]),
            "groups_unresolved": sum(1 for c in cs if not c["resolved"]),
            "groups_missing": sum(1 for g in expected if judge in (g.get("missing_judges") or [])),
            "read_from": {k: sum(1 for j in js if (j.get("read_from") or "unresolved") == k)
                          for k in ("logprobs", "text", "mixed", "calibrated", "unresolved")},
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
    # How each judge's verdicts were read: its `verdict` setting, and whether its endpoint gave up log-probs.
    modes = {j.name: getattr(j, "verdict", "auto") for j in config.judges}
    downgraded = defaultdict(int)
    for r in stages or []:
        kind, _, rest = r.stage.partition("[")
        if kind == "judge":
            downgraded[rest.rstrip("]")] += int((r.backend or {}).get("logprobs_downgraded") or 0)
    notes = []
    for row in per_judge:
        row["verdict_mode"] = modes.get(row["judge"], "auto")
        row["downgraded"] = downgraded.get(row["judge"], 0)
        if row["verdict_mode"] == "text":
            notes.append(f"{row['judge']}: `verdict: text` — every verdict was read from text, so "
                         "P(yes) is 1 or 0 (no probability).")
        elif row["downgraded"]:
            notes.append(f"{row['judge']}: its endpoint gave no log-probs (it rejected the parameters or returned "
                         f"none; in {row['downgraded']} worker(s)), so from then on its verdicts were read from text "
                         f"(P(yes) 1 or 0): {row['read_from']['text']} from text, {row['read_from']['logprobs']} "
                         "from log-probs.")
    agreement = []
    for a_idx, a in enumerate(names):
        for b in names[a_idx + 1:]:
            agreement.append(_judge_pair_agreement(a, b, judgments, comps, rc))
    return {
        "judges": names,
        "single_judge": len(names) < 2,
        "notes": notes,
        "both_orders": both_orders,
        "per_judge": per_judge,
        "agreement": agreement,
        "pairs_judged": sum(r["pairs_judged"] for r in per_judge),
        "calls_made": sum(r["calls_made"] for r in per_judge),
        "calls_saved": sum(r["calls_saved"] for r in per_judge),
        "unresolved_pairs": sum(r["unresolved_pairs"] for r in per_judge),
        "groups_unresolved": sum(r["groups_unresolved"] for r in per_judge),
        "groups_missing": sum(r["groups_missing"] for r in per_judge),
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
