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
from typing import Any, Callable, Iterable, Sequence

from engine.config import CALIBRATED, ReportConfig
from engine.errors import ConfigError
from engine.method.classification import PENDING, PENDING_PREFIX
from engine.method.judges import has_answer
from engine.method.metrics import GENERAL_METRICS
from engine.method.parsing import NONE_OF_THESE
from engine.method.programs import request_failed
from engine.method.taxonomy import CATEGORIES, LETTERS
from engine.report.run_shape import audits_responses, run_group_size, run_strategies
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


ALL_BUT_A = "all but A"  # the pooled row without category A, where homogeneity is desired (more unique is worse)


def category_name(letter: str) -> str:
    """"G. Creative writing" for "G"; "all categories" for "all"; "none of these" for a prompt classified outside
    the taxonomy; "? (uncategorised)" otherwise (no gold label and no readable classification)."""
    if letter in CATEGORIES:
        return f"{letter}. {CATEGORIES[letter].name}"
    return {"all": "all categories", ALL_BUT_A: "all categories but A (A: homogeneity desired; uncategorised left out)",
            NONE_OF_THESE: "none of these"}.get(letter, "? (uncategorised)")


def ordered_categories(present: Iterable[str]) -> list[str]:
    """The categories present, in taxonomy order, then "none" (none of these), then "?" (no category)."""
    present = set(present)
    return [c for c in (*LETTERS, NONE_OF_THESE, "?") if c in present]


def run_models(config: Any, groups: list[dict[str, Any]]) -> list[str]:
    """The generators whose groups the run has, in config order (audited external responses carry model names
    of their own, listed after)."""
    present = list(dict.fromkeys(g["model"] for g in groups))
    if not present:
        return [m.name for m in config.generators]
    named = [m.name for m in config.generators if m.name in present]
    return named + [m for m in present if m not in named]


def is_whole(g: dict[str, Any], n: int) -> bool:
    """Whether a groups row holds all n responses (status ok): the groups every measure is read over (one judge's
    own count too; the mean over the judges also needs every judge's: is_complete)."""
    return g["status"] == "ok" and g["n_responses"] == n


def is_complete(g: dict[str, Any], n: int) -> bool:
    """Whether a groups row counts toward unique-response means: status ok, all n responses, and every judge's
    count resolved (engine.execution.tables.groups_table)."""
    return is_whole(g, n) and finite(g["unique_mean"])


def _exclusion_reason(g: dict[str, Any], n: int) -> str:
    if g["status"] == "error":
        return "failed"
    if g["status"] == "short" or g["n_responses"] < n:
        return "short (fewer than n responses)"
    if g["n_responses"] != n:
        return "another group size than n"
    if g.get("category_source") == PENDING:
        return "not judged: its prompt's reference classification is missing a classifier's answer"
    if g.get("n_no_answer"):
        # Its pairs with an unanswered response are not judged (no_answer): no judge can resolve its count.
        return "unresolved: a response gives no answer (empty, cut off while thinking)"
    if g.get("unresolved_judges"):
        return "unresolved: a judge's count could not be read (unreadable verdicts)"
    if g.get("missing_judges"):
        return "no count from every judge: a judge's shard failed (a rerun fills it)"
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
    groups = _rows(t, "groups")
    n = run_group_size(config, groups)
    strategies = run_strategies(config, groups)
    models = run_models(config, groups)
    data: dict[str, Any] = {
        "run_dir": str(result.run_dir),
        "n": n,
        # Audited responses: n is the file's group size; other sizes are counted among the excluded groups.
        "n_from_file": audits_responses(config),
        "strategies": strategies,
        "models": models,
        "judges": [j.name for j in config.judges],
        "prompts": t["prompts"].num_rows if "prompts" in t else 0,
        "groups": len(groups),
        "settings": {"bootstrap_resamples": rc.bootstrap_resamples, "seed": rc.seed, "ci": rc.ci},
        "small_model_judges": small_model_judges(config),
        "judge_target": getattr(getattr(config, "judge", None), "target", "answer"),
    }
    data["unique"] = _unique_section(groups, n, boot, strategies)
    data["unique"]["per_judge"] = _per_judge_cells(groups, n, boot, data["judges"])
    data["tradeoff"] = _tradeoff_section(groups, n, models, strategies, boot, rc, "quality" in t, "rewards" in t)
    data["spearman"] = _spearman_section(groups, n, rc, t, bool(getattr(getattr(config, "judge", None), "cascade", None)
                                                                and config.judge.cascade.enabled),
                                         calibrated=[j.name for j in getattr(config, "judges", [])
                                                     if j.backend == CALIBRATED])
    data["graders"] = _graders_section(t, models, strategies, rc, groups, n)
    data["deviations"] = deviations(config, t.get("prompts"))
    data["by_strategy"] = _by_strategy(groups, n, _rows(t, "responses"))
    data["class_measures"] = _class_section(groups, n, boot)
    data["sweep"] = _sweep_section(groups, n, config, boot)
    data["traces"] = _trace_section(groups, n, config, boot)
    data["parsing"] = _parsing_section(t, config)
    sweep_base = {g.name: g.sweep["base"] for g in getattr(config, "generators", []) if getattr(g, "sweep", None)}
    data["classification"] = [{**c, "model": sweep_base.get(c["model"], c["model"])}
                              for c in _classification_section(t, _one_per_sweep(models, sweep_base), boot)]
    data["yardstick"] = _yardstick_section(t, models, config, sweep_base)
    data["judging"] = _judging_section(t, config, n, rc, result.stages)
    # `verdict: text` is a deviation said from the config; `auto` reads text where an endpoint gives no log-probs
    # (Claude's never does), which the run alone knows: said from the verdicts.
    from_text = [(r["judge"], r["read_from"]["text"], r["read_from"]["text"] + r["read_from"]["logprobs"])
                 for r in data["judging"]["per_judge"] if r["verdict_mode"] != "text" and r["read_from"]["text"]]
    if from_text:
        data["deviations"].append(
            "Verdicts read from text (P(yes) 1 or 0) where the endpoint gave no log-probs: "
            + "; ".join(f"{judge}, {k} of {total}" for judge, k, total in from_text) + " (`verdict: auto`).")
    data["accuracy"] = _accuracy_section(t, groups, strategies, boot)
    data["throughput"] = run_stats(result, config)
    data["failed_shards"] = [
        {"stage": r.stage, "shards": len(r.failed), "reason": next(iter(r.failed.values()))}
        for r in result.stages if r.failed
    ]
    data["retry_failed"] = [
        {"stage": r.stage, "shards": len(r.retry_failed), "reason": next(iter(r.retry_failed.values()))}
        for r in result.stages if getattr(r, "retry_failed", None)
    ]
    # Rows whose backend call failed in a way that may not recur (a rerun sends them, and only them, again), and rows
    # still failed after their reruns: in no failed shard, so "Failures" said there were none.
    data["failed_rows"] = [
        {"stage": r.stage, "to_retry": int(getattr(r, "rows_to_retry", 0) or 0),
         "gave_up": int(getattr(r, "rows_gave_up", 0) or 0)}
        for r in result.stages if getattr(r, "rows_to_retry", 0) or getattr(r, "rows_gave_up", 0)
    ]
    data["skipped_inputs"] = list(result.skipped_inputs)
    data["load_warnings"] = list(result.load_warnings)
    return data


def _cells(groups: list[dict], boot: Callable) -> tuple[list[dict], dict[tuple, list[dict]]]:
    """Per model, category and strategy; pooled over all categories, and over all but A where a model's groups hold A
    and another category: in A one answer is right and more unique responses are worse, so the "all" mean mixes
    two directions (compare's pooled row leaves A out the same way)."""
    cells: dict[tuple, list[dict]] = defaultdict(list)
    with_a = {g["model"] for g in groups if g["category"] == "A"}
    # An uncategorised group (no gold label, classification unread) may be an A prompt: pooled with the others
    # whose direction is "more unique is more diverse", it could pull the wrong way. It stays in "all" and "?".
    mixed = {g["model"] for g in groups if g["category"] not in ("A", None)} & with_a
    for g in groups:
        cells[(g["model"], g["category"] or "?", g["strategy"])].append(g)
        cells[(g["model"], "all", g["strategy"])].append(g)
        if g["model"] in mixed and g["category"] not in ("A", None):
            cells[(g["model"], ALL_BUT_A, g["strategy"])].append(g)
    out = []
    for (model, cat, strategy), gs in sorted(cells.items()):
        est = boot([g["unique_mean"] for g in gs], clusters=[g["prompt_id"] for g in gs])
        out.append({"model": model, "category": cat, "strategy": strategy, "estimate": est.to_dict(),
                    "groups": len(gs)})
    return out, cells


def _per_judge_cells(groups: list[dict], n: int, boot: Callable, judges: list[str]) -> dict[str, list[dict]]:
    """With several judges, each judge's own cells (unpaired): its count over the whole groups it resolved. A group's
    mean needs every judge's count, so a judge that leaves many unresolved (the demo's 135M one) leaves few groups in
    Figure 2; each judge's own table is one panel throughout, comparable across strategies within it."""
    if len(judges) < 2:
        return {}
    out = {}
    for judge in judges:
        mine = [dict(g, unique_mean=dict(g.get("unique_per_judge") or []).get(judge)) for g in groups
                if is_whole(g, n)]
        mine = [g for g in mine if finite(g["unique_mean"])]
        out[judge] = _cells(mine, boot)[0]
    return out


def _unique_section(groups: list[dict], n: int, boot: Callable, strategies: list[str] | None = None) -> dict[str, Any]:
    """Figure 2's cells, paired and unpaired. Paired (the main figure): per model, only the prompts whose groups are
    complete under every strategy shown, so each category compares the strategies on the same prompts; unpaired:
    every complete group of each strategy (each cell may then rest on another subset of prompts)."""
    excluded: dict[tuple, int] = defaultdict(int)
    complete = []
    for g in groups:
        if is_complete(g, n):
            complete.append(g)
        else:
            excluded[(g["model"], g["strategy"], _exclusion_reason(g, n))] += 1
    out, cells = _cells(complete, boot)
    # Paired over the strategies with at least one complete group: one that never completed (a small model that
    # never writes the asked-for headers, a failed backend) would leave no prompt complete under every strategy and
    # empty the model's paired figure; it is named instead (unpaired_strategies).
    ran: dict[str, set] = defaultdict(set)
    shown: dict[str, set] = defaultdict(set)
    for g in groups:
        ran[g["model"]].add(g["strategy"])
    for g in complete:
        shown[g["model"]].add(g["strategy"])
    if strategies:
        shown = {m: {s for s in strategies if s in shown[m]} for m in ran}
    else:
        shown = {m: set(shown[m]) for m in ran}
    by_prompt: dict[tuple, set] = defaultdict(set)
    for g in complete:
        by_prompt[(g["model"], g["prompt_id"])].add(g["strategy"])
    paired = [g for g in complete if by_prompt[(g["model"], g["prompt_id"])] >= shown[g["model"]]]
    paired_out, _ = _cells(paired, boot)
    # What the groups left out for an unresolved count still bound: the means of every group's lower and upper
    # bounds. One unreadable verdict leaves a diverse group unresolved sooner than a homogeneous one (a pair it could
    # join is there to change the count), so the resolved-only means lean low; these show by how much they could.
    bounded: dict[tuple, list[dict]] = defaultdict(list)
    for g in groups:
        if is_whole(g, n) and finite(g.get("unique_low_mean")) \
                and finite(g.get("unique_high_mean")):
            for cat in (g["category"] or "?", "all"):
                bounded[(g["model"], cat, g["strategy"])].append(g)
    bounds = [{"model": m, "category": c, "strategy": s, "groups": len(gs),
               "unresolved": sum(1 for g in gs if not finite(g["unique_mean"])),
               "low": _mean(g["unique_low_mean"] for g in gs), "high": _mean(g["unique_high_mean"] for g in gs)}
              for (m, c, s), gs in sorted(bounded.items())]
    return {
        "bounds": bounds,
        "bounds_unresolved": sum(1 for g in groups if is_whole(g, n)
                                 and not finite(g["unique_mean"]) and finite(g.get("unique_low_mean"))),
        "cells": paired_out,
        "unpaired_cells": out,
        "paired_prompts": {m: len({g["prompt_id"] for g in paired if g["model"] == m}) for m in shown},
        "unpaired_strategies": {m: [s for s in (strategies or sorted(ran[m])) if s in ran[m] and s not in shown[m]]
                                for m in ran if ran[m] - shown[m]},
        "categories": ordered_categories(c for (_, c, _) in cells if c not in ("all", ALL_BUT_A)),
        "excluded": [{"model": m, "strategy": s, "reason": r, "groups": k}
                     for (m, s, r), k in sorted(excluded.items())],
        "excluded_total": sum(excluded.values()),
        "complete_total": sum(1 for g in groups if is_complete(g, n)),
    }


def _tradeoff_section(groups: list[dict], n: int, models: list[str], strategies: list[str], boot: Callable,
                      rc: ReportConfig, has_quality: bool, reward_ran: bool = False) -> dict[str, Any]:
    reward = any(finite(g.get("reward_mean")) for g in groups)
    out: dict[str, Any] = {"quality_run": has_quality, "reward_available": reward, "reward_ran": reward_ran,
                           "quality_3a": "reward model score" if reward else "checklist quality (1–5)"}
    complete = [g for g in groups if is_complete(g, n)]
    # Figure 3a plots no count: every group with its n responses is in it, whether or not a judge's count resolved
    # (a trace-only run has no answer count at all, and 3a was empty); 3b plots the count, so complete groups only.
    full = [g for g in groups if is_whole(g, n)]
    if reward_ran:
        # A response the reward model could not read whole has no score: unknown, out of the means, and counted.
        # Groups with no reward rows at all (the stage's shard failed; a run written before n_rewarded) are not
        # put down to length: they are counted apart. Over Figure 3a's groups, the only figure the score is in
        # (counted over complete groups, 3a's unresolved groups' missing scores went unsaid).
        scored = [g for g in full if g.get("n_rewarded") is not None]
        responses = sum(g["n_responses"] or 0 for g in scored)
        rewarded = sum(g["n_rewarded"] for g in scored)
        out["rewards"] = {"responses": responses, "rewarded": rewarded, "unrewarded": responses - rewarded,
                          "groups_without_reward": sum(1 for g in scored if not finite(g.get("reward_mean"))),
                          "groups_not_scored": len(full) - len(scored)}
    if not has_quality and not reward:
        out["note"] = "quality was not measured in this run (quality.enabled: false), so there is no trade-off to plot"
        out["points_3a"], out["points_3b"], out["contrasts"] = [], [], []
        return out
    y3a = "reward_mean" if reward else "quality_mean"
    if has_quality:
        # An unread grade (or a prompt whose checklist was never read) is unknown: out of the means, and counted —
        # per figure, over the groups its quality points are over: 3a's (where it plots checklist quality) hold the
        # groups whose count did not resolve, whose missing grades a count over complete groups never said.
        pools = {"3b": complete} if reward else {"3a": full, "3b": complete}
        out["grades"] = {}
        for figure, pool in pools.items():
            responses = sum(g["n_responses"] or 0 for g in pool)
            graded = sum(g.get("n_graded") or 0 for g in pool)
            out["grades"][figure] = {
                "groups": len(pool), "responses": responses, "graded": graded, "ungraded": responses - graded,
                "groups_without_quality": sum(1 for g in pool if not finite(g.get("quality_mean")))}
    points = {"points_3a": [], "points_3b": []}
    for model in models:
        for strategy in strategies:
            for key, xcol, ycol, pool in (("points_3a", "vocab_div", y3a, full),
                                          ("points_3b", "unique_mean", "quality_mean", complete)):
                gs = [g for g in pool if g["model"] == model and g["strategy"] == strategy]
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
        # Paired over the groups its points came from: 3a's need no count (its contrast drew on complete groups only,
        # a subset tilted toward the homogeneous groups whose counts resolve, and empty in a trace-only run).
        pool = full if key == "points_3a" else complete
        for model in models:
            pts = [p for p in points[key] if p["model"] == model and p["x"]["value"] is not None]
            if len(pts) < 2:
                continue
            by_prompt = {p["strategy"]: {g["prompt_id"]: g for g in pool if g["model"] == model
                                         and g["strategy"] == p["strategy"] and finite(g[xcol]) and finite(g.get(ycol))}
                         for p in pts}
            # Most and least diverse over the prompts every strategy answered, as the difference beside them is
            # paired: picked from the unpaired means, a strategy that lost one group was named most diverse where,
            # over the shared prompts, it was the least.
            shared = set.intersection(*(set(v) for v in by_prompt.values()))
            unpaired = {q["strategy"]: q["x"]["value"] for q in pts}
            diversity = {s: sum(v[p][xcol] for p in shared) / len(shared) if shared else unpaired[s]
                         for s, v in by_prompt.items()}
            hi, lo = max(diversity, key=diversity.get), min(diversity, key=diversity.get)
            if diversity[hi] == diversity[lo]:
                continue  # every strategy equally diverse: no "most" and "least" to contrast
            common = sorted(set(by_prompt[hi]) & set(by_prompt[lo]))
            est = paired_bootstrap_diff_ci([by_prompt[lo][p][ycol] for p in common],
                                           [by_prompt[hi][p][ycol] for p in common],
                                           resamples=rc.bootstrap_resamples, seed=rc.seed, ci=rc.ci)
            contrasts.append({"figure": "3a" if key == "points_3a" else "3b", "diversity": label, "model": model,
                              "most_diverse": hi, "least_diverse": lo,
                              "quality_difference": est.to_dict()})
    out["contrasts"] = contrasts
    return out


def _spearman_rows(complete: list[dict], cats: list[str], rc: ReportConfig) -> list[dict[str, Any]]:
    rows = []
    for cat in cats:
        gs = [g for g in complete if cat == "all" or (g["category"] or "?") == cat]
        for metric in CORRELATED:
            name, col, sign = metric.label, metric.column, metric.direction
            pairs = [(sign * g[col], g["unique_mean"], g["prompt_id"]) for g in gs if finite(g.get(col))]
            est = spearman_with_ci([p[0] for p in pairs], [p[1] for p in pairs], clusters=[p[2] for p in pairs],
                                   resamples=rc.bootstrap_resamples, seed=rc.seed, ci=rc.ci,
                                   names=(f"{name} diversity", "the unique count"), unit="groups")
            rows.append({"category": cat, "metric": name, "estimate": est.to_dict()})
    return rows


def _spearman_section(groups: list[dict], n: int, rc: ReportConfig, t: dict | None = None,
                      cascade: bool = False, calibrated: Sequence[str] = ()) -> dict[str, Any]:
    """Spearman ρ of each general metric with functional diversity, per category. With the cascade on, the cheap
    judge decided some pairs from features that include cosine, Jaccard and NCD — the general metrics — so the section
    also gives the share of pairs it decided and ρ over the groups judged by LLM judges only. A calibrated judge
    among the run's judges (`calibrated`: their names) decides every pair from those features, and its count is in
    each group's mean: the section then also gives ρ with the mean of the other judges' counts alone."""
    complete = [g for g in groups if is_complete(g, n)]
    cats = ordered_categories(g["category"] or "?" for g in complete) + ["all"]
    out = {"rows": _spearman_rows(complete, cats, rc), "categories": cats,
           "metrics": [m.label for m in CORRELATED], "cascade": cascade, "calibrated_judges": list(calibrated)}
    if calibrated:
        others = [dict(g, unique_mean=_mean(u for j, u in (g.get("unique_per_judge") or []) if j not in calibrated))
                  for g in complete]
        others = [g for g in others if g["unique_mean"] is not None]
        out.update(other_judges_groups=len(others), rows_other_judges=_spearman_rows(
            others, ordered_categories(g["category"] or "?" for g in others) + ["all"], rc) if others else [])
    if cascade and t is not None:
        judgments = _rows(t, "judgments")
        cheap = sum(1 for j in judgments if j.get("decided_by") == "cheap")
        touched = {(c["prompt_id"], c["model"], c["strategy"]) for c in _rows(t, "components")
                   if c.get("cheap_decided")}
        llm_only = [g for g in complete if (g["prompt_id"], g["model"], g["strategy"]) not in touched]
        out.update(cheap_share=cheap / len(judgments) if judgments else None, cheap_pairs=cheap,
                   llm_only_groups=len(llm_only),
                   rows_llm_only=_spearman_rows(llm_only, ordered_categories(
                       g["category"] or "?" for g in llm_only) + ["all"], rc))
    return out


def _graders_section(t: dict, models: list[str], strategies: list[str], rc: ReportConfig, groups: list[dict],
                     n: int) -> dict[str, Any]:
    """With several graders: each one's mean grade per model and strategy, over the groups with all n responses
    (`groups`: the groups table's rows) and as a mean of group means, as the quality by strategy beside it is; and
    how well they agree per response (over every response both graded)."""
    rows = _rows(t, "quality")
    graders = list(dict.fromkeys(r["grader"] for r in rows))
    if len(graders) < 2:
        return {"graders": graders, "means": [], "agreement": [], "ungraded": {}}
    # A mean over every response let short and failed groups in, and weighed a group by its responses, where the
    # strategy's quality weighs each group with all n responses once: the two columns did not compare.
    full = {(g["prompt_id"], g["model"], g["strategy"]) for g in groups
            if is_whole(g, n)}
    per_group: dict[tuple, list[float]] = defaultdict(list)
    ungraded: dict[str, int] = {g: 0 for g in graders}
    for r in rows:
        key = (r["prompt_id"], r["model"], r["strategy"])
        if key not in full:
            continue
        if finite(r["grade"]):
            per_group[key + (r["grader"],)].append(r["grade"])
        else:  # unknown: out of the grader's means, and counted
            ungraded[r["grader"]] += 1
    means = []
    for model in models:
        for strategy in strategies:
            row = {"model": model, "strategy": strategy}
            for g in graders:
                row[g] = _mean(sum(v) / len(v) for (_, m, s, grader), v in per_group.items()
                               if m == model and s == strategy and grader == g)
            means.append(row)
    by_response: dict[tuple, dict[str, int]] = defaultdict(dict)
    for r in rows:
        if r["grade"] is not None:
            by_response[(r["prompt_id"], r["model"], r["strategy"], r["sample_idx"])][r["grader"]] = r["grade"]
    agreement = []
    for k, a in enumerate(graders):
        for b in graders[k + 1:]:
            both = [(v[a], v[b], key[0]) for key, v in by_response.items() if a in v and b in v]
            est = spearman_with_ci([x for x, _, _ in both], [y for _, y, _ in both], clusters=[c for _, _, c in both],
                                   resamples=rc.bootstrap_resamples, seed=rc.seed, ci=rc.ci,
                                   names=(f"{a}'s grade", f"{b}'s grade"),
                                   unit="responses")
            agreement.append({"a": a, "b": b, "responses": len(both),
                              "exact": sum(x == y for x, y, _ in both) / len(both) if both else None,
                              "spearman": est.to_dict()})
    return {"graders": graders, "means": means, "agreement": agreement, "ungraded": ungraded}


# The paper's setup, for the deviations section.
PAPER_JUDGES = ("gpt-4o", "claude", "gemini")
PAPER_EMBEDDER = "gemini-embedding-001"
PAPER_REWARD = "Athene-RM-8B"


def deviations(config, prompts: Any = None) -> list[str]:
    """How this run's setup differs from the paper's, one sentence each, from the run's own settings (and its
    prompts table, a pyarrow Table, where given)."""
    out = []
    judges = [f"{j.name} ({j.model})" for j in config.judges]
    models = " ".join(str(j.model).lower() for j in config.judges)
    if not all(k in models for k in PAPER_JUDGES):
        out.append(f"Judges: {', '.join(judges)}; the paper averaged GPT-4o, Claude-4-Sonnet and Gemini-2.5-Flash.")
    text_judges = [j.name for j in config.judges if getattr(j, "verdict", "auto") == "text"]
    if text_judges:
        out.append(f"Verdicts read from text (P(yes) 1 or 0) for {', '.join(text_judges)} (`verdict: text`).")
    if config.embedder.model != PAPER_EMBEDDER:
        out.append(f"Embedding diversity uses {config.embedder.model} ({config.embedder.backend}); the paper used "
                   f"{PAPER_EMBEDDER}.")
    rm = config.quality.reward_model
    if rm is None:
        out.append(f"No reward model: Figure 3a plots checklist quality; the paper used {PAPER_REWARD}.")
    elif "athene" not in rm.model.lower():
        out.append(f"Reward model {rm.model} (kind {rm.kind}); the paper used {PAPER_REWARD}.")
    generated = not audits_responses(config)  # a file's responses were sampled elsewhere, however they were
    if generated and ("system_general" in config.strategies or "system_anchored" in config.strategies):
        out.append(f"System-prompt sampling asks for n = {config.n} responses in one completion of up to "
                   f"{config.n} × {config.sampling.max_tokens} tokens, split with sampling.system_parse: "
                   f"{config.sampling.system_parse} (strict: the asked-for headers only).")
    if generated and config.sampling.max_tokens != 1024:
        out.append(f"At most {config.sampling.max_tokens} tokens per response; the paper used 1024.")
    if not generated:
        out.append("Responses audited from a file (prompts.source: responses): how they were sampled is the file's; "
                   "n is its group size, and groups of another size are left out of the means and counted.")
    if config.judge.max_response_chars:
        out.append(f"Responses are cut to {config.judge.max_response_chars} characters inside judge prompts.")
    calibrated = [j.name for j in config.judges if j.backend == CALIBRATED]
    if calibrated:
        out.append(f"Judged by the calibrated judge ({', '.join(calibrated)}), a logistic regression over the "
                   "pairs' text and embedding features (cosine, Jaccard and NCD among them), not an LLM; its counts "
                   "are in the means, so ρ with the general metrics is partly built in (the Spearman section also "
                   "gives ρ without it).")
    if config.judge.cascade.enabled:
        out.append(f"The cascade is on: a calibrated judge over the pairs' text and embedding features decides pairs "
                   f"it is confident about (p ≤ {config.judge.cascade.low:g} or ≥ {config.judge.cascade.high:g}); the "
                   "paper judged every needed pair with LLMs.")
    graders = [g.name for g in config.graders]
    if config.quality.enabled and graders:
        out.append(f"Checklist quality graded by {', '.join(graders)}; the paper's quality scores came from its LLM "
                   "judges.")
    out.append("Categories without a gold label are judged under a reference classification by the judges' "
               "majority (or `classifier`); the paper labelled its prompts by hand.")
    # The judge is asked whether two answers differ, never whether either is right (engine.method.taxonomy).
    out.append("In category B two different answers count as different whether or not each is correct; the paper's "
               "B counts different correct answers.")
    mapped = 0
    if prompts is not None and {"source", "gold_category"} <= set(prompts.column_names):
        mapped = sum(1 for s, c in zip(prompts["source"].to_pylist(), prompts["gold_category"].to_pylist())
                     if s == "noveltybench" and c)
    if mapped:
        out.append(f"The {mapped} NoveltyBench prompts' gold categories are mapped from NoveltyBench's own "
                   "categories (engine/inputs/loaders/noveltybench.py, or the noveltybench source's "
                   "prompts.options.category_map), not labelled one by one as the paper did (its B holds 16 prompts "
                   "across all sources; the default mapping puts 35 of NoveltyBench's in B): their judging criteria "
                   "and classification accuracy follow the mapping.")
    return out


def _parsing_section(t: dict, config) -> dict[str, Any]:
    """How the system-prompt groups were split into their n responses (per model and strategy: parse mode, and
    status), under which setting."""
    counts: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for g in _rows(t, "samples"):
        if g["strategy"].startswith("system"):
            key = (g["model"], g["strategy"])
            counts[key][f"mode:{g.get('parse_mode') or 'none'}"] += 1
            counts[key][f"status:{g['status']}"] += 1
    return {"setting": getattr(getattr(config, "sampling", None), "system_parse", "strict"),
            "rows": [{"model": m, "strategy": s, **dict(c)} for (m, s), c in sorted(counts.items())]}


def _cut_off(strategy: str, groups: list[dict], cut: dict[tuple, int]) -> dict[str, int]:
    """_by_strategy's cut_off and completions for one model × strategy's groups."""
    keys = [(g["prompt_id"], g["model"], g["strategy"]) for g in groups]
    if strategy.startswith("system_"):
        return {"cut_off": sum(1 for k in keys if cut[k]), "completions": len(groups)}
    return {"cut_off": sum(cut[k] for k in keys), "completions": sum(g["n_responses"] for g in groups)}


def _by_strategy(groups: list[dict], n: int, responses: list[dict] | None = None) -> list[dict[str, Any]]:
    """Per model × strategy, every column over the same groups — those with all n responses (the unique count: those
    of them whose count resolved) — so that a row's columns compare: the unique count was over complete groups and
    quality, accuracy and the general metrics over every group, short ones included (a system-prompt strategy's
    short groups then weighed in its quality and not in its count). Short and failed groups are counted apart.

    `cut_off` / `completions`: of the completions behind the groups that came back (short ones too), those cut off
    by the token limit (finish reason "length"): their responses are judged as they are, and a strategy that runs to
    the limit more often is judged on more truncated text. A system-prompt group is one completion (its limit n ×
    max_tokens; only its last response carries the finish reason, and one cut before response n is a short group);
    any other strategy's response is one. Counted per completion, the two kinds compare.

    `no_answer`: responses of the row's groups that give no answer (empty, filtered, cut off while thinking): not
    judged, graded or scored, and their group's pairwise metrics, quality and Vendi are over its answering ones (its
    compression ratio unknown) — in the means with the other groups, which the row says by this count."""
    per: dict[tuple, list[dict]] = defaultdict(list)
    for g in groups:
        per[(g["model"], g["strategy"])].append(g)
    cut: dict[tuple, int] = defaultdict(int)
    silent: dict[tuple, int] = defaultdict(int)
    for r in responses or []:
        key = (r["prompt_id"], r["model"], r["strategy"])
        if r.get("finish_reason") == "length":
            cut[key] += 1
        if not has_answer(r.get("text")):
            silent[key] += 1
    rows = []
    for (m, s), gs in sorted(per.items()):
        full = [g for g in gs if is_whole(g, n)]
        rows.append({
            "model": m,
            "strategy": s,
            "unique_mean": _mean(g["unique_mean"] for g in full if is_complete(g, n)),
            **{column: _mean(g.get(column) for g in full) for column in GENERAL_METRICS},
            "quality_mean": _mean(g["quality_mean"] for g in full),
            "reward_mean": _mean(g.get("reward_mean") for g in full),
            "accuracy": _mean(g.get("accuracy") for g in full),
            "groups": len(full),
            "no_answer": sum(silent[(g["prompt_id"], g["model"], g["strategy"])] for g in full),
            **_cut_off(s, [g for g in gs if g["status"] in ("ok", "short")], cut),
            "short_groups": sum(1 for g in gs if g["status"] == "short"),
            "failed_groups": sum(1 for g in gs if g["status"] == "error"),
        })
    return rows


# Measures from the equivalence classes (engine.method.class_measures) and the Vendi score, per group.
CLASS_MEASURES = {
    "semantic_entropy_norm_mean": "semantic entropy / ln n",
    "utility_mean": "utility (NoveltyBench, patience 0.8)",
    "vendi": "Vendi score (embeddings)",
}


def _class_section(groups: list[dict], n: int, boot: Callable) -> dict[str, Any]:
    """Per model × category × strategy, over complete groups: each class measure with its bootstrap interval over
    prompts, and how many groups have no value (classes unknown: no judge's count resolved; utility: a response
    without a grade)."""
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for g in groups:
        if is_complete(g, n):
            cells[(g["model"], g["category"] or "?", g["strategy"])].append(g)
            cells[(g["model"], "all", g["strategy"])].append(g)
    rows = []
    for (model, cat, strategy), gs in sorted(cells.items()):
        row: dict[str, Any] = {"model": model, "category": cat, "strategy": strategy, "groups": len(gs)}
        for column in CLASS_MEASURES:
            have = [g for g in gs if finite(g.get(column))]  # a stored NaN is no value either
            row[column] = boot([g[column] for g in have], clusters=[g["prompt_id"] for g in have]).to_dict()
            row[f"{column}_missing"] = len(gs) - len(have)
        rows.append(row)
    return {"cells": rows, "measures": dict(CLASS_MEASURES)}


TRACE_GAPS = {
    "none": "no response has a trace",
    "partial": "some responses have no trace",
    "shared": "one trace split over all responses (system-prompt strategy)",
    "unresolved": "traces judged, count unresolved",
    "missing": "traces not judged: the trace judges' shards failed (rerun to fill them)",
    "pending": "not judged: the prompt's reference classification is missing a classifier's answer",
}


def _trace_section(groups: list[dict], n: int, config: Any, boot: Callable) -> dict[str, Any] | None:
    """Unique answers and unique reasoning traces side by side (judge.target trace / both), per model × category ×
    strategy over groups with all n responses: each mean over the groups that have that count, the paired
    difference over those with both, and why groups have no trace count. None when traces were not judged."""
    if getattr(getattr(config, "judge", None), "target", "answer") == "answer":
        return None
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for g in groups:
        if is_whole(g, n):
            for cat in (g["category"] or "?", "all"):
                cells[(g["model"], cat, g["strategy"])].append(g)
    rows = []
    for (model, cat, strategy), gs in sorted(cells.items()):
        # Answers over the trace judges (an answer-only judge, the calibrated one, judges no trace): the difference
        # of two panels would measure the panels, not the traces.
        answers = [g for g in gs if finite(g.get("unique_mean_trace_judges"))]
        traces = [g for g in gs if finite(g.get("unique_trace_mean"))]
        both = [g for g in answers if finite(g.get("unique_trace_mean"))]
        gaps = {k: 0 for k in TRACE_GAPS}
        for g in gs:
            status = g.get("trace_status") or "none"
            if not finite(g.get("unique_trace_mean")):
                if g.get("category_source") == PENDING:
                    gaps["pending"] += 1
                elif status != "traced":
                    gaps[status] += 1
                else:  # no judge's trace count: unreadable verdicts, or no count at all
                    gaps["unresolved" if g.get("trace_unresolved_judges") else
                         "missing" if g.get("trace_missing_judges") else "unresolved"] += 1
        rows.append({
            "model": model, "category": cat, "strategy": strategy, "groups": len(gs), "traced": len(traces),
            "answers": boot([g["unique_mean_trace_judges"] for g in answers],
                            clusters=[g["prompt_id"] for g in answers]).to_dict(),
            "traces": boot([g["unique_trace_mean"] for g in traces],
                           clusters=[g["prompt_id"] for g in traces]).to_dict(),
            "paired": len(both),
            "difference": boot([g["unique_trace_mean"] - g["unique_mean_trace_judges"] for g in both],
                               clusters=[g["prompt_id"] for g in both]).to_dict(),
            "gaps": gaps,
        })
    return {"target": config.judge.target, "cells": rows, "gaps": dict(TRACE_GAPS)}


def _sweep_section(groups: list[dict], n: int, config: Any, boot: Callable) -> dict[str, Any] | None:
    """Unique responses and quality against a swept sampling setting (sampling.temperature / top_p as lists): per
    base model × category × strategy × value, over complete groups (every value of the sweep, one without a whole
    group as 0 groups). None when nothing was swept."""
    sweeps = {g.name: g.sweep for g in getattr(config, "generators", []) if getattr(g, "sweep", None)}
    if not sweeps:
        return None
    # Each base model's own swept setting: models may sweep different ones (one temperature, another top_p at its
    # own fixed temperature), and a setting that differs between models is no sweep of either.
    temps: dict[str, set] = defaultdict(set)
    tops: dict[str, set] = defaultdict(set)
    listed: dict[str, set] = defaultdict(set)  # the settings given as lists, from the names the sweep made
    for name, s in sweeps.items():
        temps[s["base"]].add(s["temperature"])
        tops[s["base"]].add(s["top_p"])
        listed[s["base"]] |= {{"t": "temperature", "p": "top_p"}.get(part.split("=")[0])
                              for part in name.rpartition("@")[2].split(",")} - {None}

    def axis(base: str) -> str:
        # The setting whose values differ; a list of one value (the README's way to start a sweep that keeps its
        # groups) is read from the setting that was listed: `temperature: [1.0]` is no sweep of top_p.
        if len(temps[base]) > 1 or len(tops[base]) > 1:
            return "temperature" if len(temps[base]) > 1 else "top_p"
        return "top_p" if listed[base] == {"top_p"} else "temperature"

    x_of = {base: axis(base) for base in temps}
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for g in groups:
        s = sweeps.get(g["model"])
        # Every whole group, whether or not a judge resolved its answer count: its quality is known without it, and
        # each measure's mean leaves out its own unknowns (a sweep judged on traces alone resolved no answer count,
        # and the section was empty while its traces' counts and its grades were there).
        if s is None or not is_whole(g, n):
            continue
        for cat in (g["category"] or "?", "all"):
            cells[(s["base"], cat, g["strategy"], s["temperature"], s["top_p"])].append(g)
    # Every swept value of a line, those without a whole group too: left out, the table did not say the value was
    # swept and gave nothing (a provider failing at one temperature), and the figure's line joined its neighbours
    # straight across it, as if measured there.
    values: dict[str, set] = defaultdict(set)
    for s in sweeps.values():
        values[s["base"]].add((s["temperature"], s["top_p"]))
    for base, cat, strategy in {key[:3] for key in cells}:
        for t, p in values[base]:
            cells.setdefault((base, cat, strategy, t, p), [])
    out = []

    def order(item: tuple) -> tuple:  # by model, category, strategy, then the values as numbers
        base, cat, strategy, t, p = item[0]
        return base, cat, strategy, -1.0 if t is None else t, -1.0 if p is None else p

    for (base, cat, strategy, t, p), gs in sorted(cells.items(), key=order):
        clusters = [g["prompt_id"] for g in gs]
        out.append({"base": base, "category": cat, "strategy": strategy, "temperature": t, "top_p": p,
                    "x": x_of[base], "groups": len(gs),
                    "unique": boot([g["unique_mean"] for g in gs], clusters=clusters).to_dict(),
                    "unique_traces": boot([g.get("unique_trace_mean") for g in gs], clusters=clusters).to_dict(),
                    "quality": boot([g["quality_mean"] for g in gs], clusters=clusters).to_dict()})
    # Temperature first ("top_p" sorts after "temperature" backwards, and came first under reverse=True).
    swept = [x for x in ("temperature", "top_p") if x in set(x_of.values())]
    return {"x": " / ".join(swept), "cells": out,
            "categories": ordered_categories({c["category"] for c in out} - {"all"})}


def _one_per_sweep(models: list[str], base: dict[str, str]) -> list[str]:
    """The models with one generator per sweep (`base`: a swept generator's name → the configured one): a sweep's
    values classify once, alike, so its first value stands for all."""
    seen: set[str] = set()
    out = []
    for m in models:
        if base.get(m, m) not in seen:
            seen.add(base.get(m, m))
            out.append(m)
    return out


def _classification_section(t: dict, models: list[str], boot: Callable) -> list[dict[str, Any]]:
    gold = {p["prompt_id"]: p["gold_category"] for p in _rows(t, "prompts")}
    rows = [r for r in _rows(t, "classifications") if r.get("role", "own") == "own"]
    columns = list(LETTERS) + [NONE_OF_THESE, None]
    out = []
    for model in [m for m in models if any(r["model"] == m for r in rows)]:
        mine = [r for r in rows if r["model"] == model]
        # A request that failed (the backend's error, or a budget spent thinking) is no answer, right or wrong: it is
        # left out of the accuracy and the matrices and counted apart (a rerun asks again).
        failed = {id(r) for r in mine if request_failed(r.get("raw"))}
        labelled = [r for r in mine if gold.get(r["prompt_id"]) and id(r) not in failed]
        correct = [1.0 if r["category"] == gold[r["prompt_id"]] else 0.0 for r in labelled]
        matrix = confusion_matrix([gold[r["prompt_id"]] for r in labelled],
                                  [r["category"] if r["category"] in columns else None for r in labelled],
                                  columns)
        recall = per_class_recall(matrix)
        out.append({
            "model": model,
            "prompts": len(mine),
            "labelled": len(labelled),
            "accuracy": boot(correct, clusters=[r["prompt_id"] for r in labelled]).to_dict(),
            "unparsed": sum(1 for r in mine if r["category"] is None and id(r) not in failed),
            "failed": len(failed),
            "none_of_these": sum(1 for r in mine if r["category"] == NONE_OF_THESE),
            "recall": [
                {"category": c, "support": int(matrix[k].sum()), "correct": int(matrix[k, k]),
                 "recall": None if math.isnan(recall[k]) else float(recall[k])}
                for k, c in enumerate(LETTERS) if matrix[k].sum()
            ],
            "confusion": {"rows": list(LETTERS), "columns": list(LETTERS) + ["none of these", "unparsed"],
                          "counts": matrix[: len(LETTERS)].tolist()},
        })
    return out


def _yardstick_section(t: dict, models: list[str], config, sweep_base: dict[str, str] | None = None
                       ) -> dict[str, Any]:
    """Under which category each prompt was judged (gold or the reference classification), and how often each
    generator's own classification agrees with the reference: a sweep's generators once, under the configured name
    (`sweep_base`: a swept generator's name → its configured one; they classify once, alike — one row per value
    repeated the same figures)."""
    sweep_base = sweep_base or {}
    prompts = _rows(t, "prompts")
    rows = _rows(t, "classifications")
    reference = {r["prompt_id"]: r["category"] for r in rows if r.get("role") == "reference"}
    pending = {r["prompt_id"] for r in rows
               if r.get("role") == "reference" and (r.get("raw") or "").startswith(PENDING_PREFIX)}
    own = [r for r in rows if r.get("role", "own") == "own"]
    voters = list(dict.fromkeys(r["model"] for r in rows if r.get("role") == "vote"))
    agreement = []
    for model in _one_per_sweep(models, sweep_base):
        mine = [r for r in own if r["model"] == model and reference.get(r["prompt_id"])]
        # A failed request told the anchored strategies nothing (its groups wait for a rerun): no answer, left out
        # and counted, as in the classification section. An unread answer stays: those strategies got no category.
        failed = sum(1 for r in mine if request_failed(r.get("raw")))
        pairs = [(r["category"], reference[r["prompt_id"]]) for r in mine if not request_failed(r.get("raw"))]
        if pairs or failed:
            agreement.append({"model": sweep_base.get(model, model), "prompts": len(pairs),
                              "agree": sum(1 for a, b in pairs if a == b), "failed": failed})
    return {
        "gold": sum(1 for p in prompts if p["gold_category"]),
        "reference": sum(1 for p in prompts if not p["gold_category"] and reference.get(p["prompt_id"])),
        "uncategorised": sum(1 for p in prompts if not p["gold_category"] and not reference.get(p["prompt_id"])
                             and p["prompt_id"] not in pending),
        "pending": sum(1 for p in prompts if not p["gold_category"] and p["prompt_id"] in pending),
        "voters": voters,
        "agreement": agreement,
    }


def _calibrated_blind(config, comps: list[dict], groups: dict[tuple, dict]) -> list[dict[str, Any]]:
    """Per calibrated judge, the run's categories its labelled pairs held none (or too few) of, and how many of its
    groups are of them: there its verdicts measure similarity, not the category's criterion (the DARLING pairs hold
    B, C, G and H; A's "same final answer" and D's "same strategy" it never saw)."""
    from engine.method.calibrated import CalibratedJudge

    out = []
    for j in getattr(config, "judges", []):
        if j.backend != CALIBRATED:
            continue
        try:
            judge = CalibratedJudge.load(None if j.model == "default" else j.model)
        except ConfigError:  # the coefficients are gone since the run: nothing to say about them
            continue
        counted: dict[str, int] = defaultdict(int)
        for c in comps:
            g = groups.get((c["prompt_id"], c["model"], c["strategy"]))
            if c["judge"] == j.name and g is not None and g.get("category") and not judge.decides(g["category"]):
                counted[g["category"]] += 1
        if counted:
            out.append({"judge": j.name, "categories": sorted(counted), "groups": sum(counted.values()),
                        "labelled": sorted(k for k in (judge.provenance or {}).get("category_pairs", {})
                                           if k != "none" and judge.decides(k))})
    return out


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
        # Whole groups the judge itself resolved: is_complete also needs every other judge's count (a group's mean
        # does), which set each judge's row over the groups the least able judge could count.
        complete = [c for c in cs if (g := groups.get((c["prompt_id"], c["model"], c["strategy"])))
                    and is_whole(g, n) and c["resolved"]]
        expected = [g for g in groups.values() if g["n_responses"]]
        js = [j for j in judgments if j["judge"] == judge]
        row = {
            "judge": judge,
            # The groups its mean is over: a short or failed group's count (0 or 1 of 1) says nothing of diversity,
            # and len(cs) counted every group the judge stage wrote a row for, empty ones included.
            "groups": len(complete),
            "unique_mean": _mean(c["unique"] for c in complete),
            "complete_groups": len(complete),
            "pairs_judged": sum(c["n_pairs_judged"] for c in cs),
            "equivalent": sum(c["n_equivalent"] for c in cs),
            "unresolved_pairs": sum(c["n_unresolved"] for c in cs),
            "unparsed_pairs": sum(1 for j in js if j["verdict"] == "unparsed"),
            "error_pairs": sum(1 for j in js if j["verdict"] == "error"),
            "no_answer_pairs": sum(1 for j in js if j["verdict"] == "no_answer"),
            "order_split_pairs": sum(1 for j in js if j["verdict"] == "order_split"),
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
            "cascade_audit": _cascade_audit(js, config.judge.threshold, rc),
        }
        if both_orders:
            measured = sum(1 for j in js if j["p_forward"] is not None and j["p_reverse"] is not None)
            disagreements = sum(c["order_disagreements"] for c in cs)
            # Decided by one order alone: the other could not be read (or its request failed).
            one_order = sum(1 for j in js if (j["p_forward"] is None) != (j["p_reverse"] is None)
                            and j["verdict"] in ("equivalent", "different"))
            row["order"] = {"measured": True, "pairs": measured, "disagreements": disagreements,
                            "rate": disagreements / measured if measured else None, "one_order": one_order}
        else:
            row["order"] = {"measured": False, "pairs": 0, "disagreements": 0, "rate": None, "one_order": 0}
        per_judge.append(row)
    # How each judge's verdicts were read: its `verdict` setting, and whether its endpoint gave up log-probs.
    modes = {j.name: getattr(j, "verdict", "auto") for j in config.judges}
    downgraded, capped = defaultdict(int), defaultdict(int)
    for r in stages or []:
        kind, _, rest = r.stage.partition("[")
        if kind == "judge":
            downgraded[rest.rstrip("]")] += int((r.backend or {}).get("logprobs_downgraded") or 0)
            capped[rest.rstrip("]")] += int((r.backend or {}).get("logprobs_capped") or 0)
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
        if row["verdict_mode"] != "text" and capped.get(row["judge"]):
            notes.append(f"{row['judge']}: its endpoint serves fewer top log-probs than the 20 asked (in "
                         f"{capped[row['judge']]} worker(s)); P(yes) was read from as many as it serves, and is 1 or 0 "
                         "where only one of YES and NO was among them.")
    blind = _calibrated_blind(config, comps, groups)
    sample_groups = [c for c in comps if c.get("agreement_sample")]
    agreement = []
    for a_idx, a in enumerate(names):
        for b in names[a_idx + 1:]:
            agreement.append(_judge_pair_agreement(a, b, judgments, comps, rc, groups, n))
    return {
        "judges": names,
        "single_judge": len(names) < 2,
        "agreement_sample": {"rate": float(getattr(config.judge, "agreement_sample_rate", 0.0)),
                             "groups": len({(c["prompt_id"], c["model"], c["strategy"]) for c in sample_groups}),
                             "calls": sum(c["calls_made"] for c in sample_groups)},
        "notes": notes,
        "calibrated_blind": blind,
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


def _cascade_audit(judgments: list[dict], threshold: float, rc: ReportConfig) -> dict[str, Any] | None:
    """The cascade's audit of one judge (judge.cascade.audit_rate): of the pairs the calibrated judge decided, those
    also sent to the LLM judge (`p_audit`, kept beside the cheap verdict, which stands) — how often the LLM's verdict
    at the run's threshold is the cheap one, with an interval over prompts. An audit whose LLM verdict could not be
    read (or whose request failed) is counted as unresolved, out of the share. None where nothing was audited."""
    # Audited: sent to the LLM (calls made, or its raw answer kept); a cheap decision alone has neither.
    sent = [j for j in judgments if j.get("decided_by") == "cheap" and (j.get("calls") or j.get("raw"))]
    if not sent:
        return None
    audited = [j for j in sent if finite(j.get("p_audit"))]
    same = [1.0 if (j["p_audit"] >= threshold) == (j["verdict"] == "equivalent") else 0.0 for j in audited]
    est = bootstrap_mean_ci(same, clusters=[j["prompt_id"] for j in audited], resamples=rc.bootstrap_resamples,
                            seed=rc.seed, ci=rc.ci)
    return {"pairs": len(audited), "unresolved": len(sent) - len(audited), "agree": int(sum(same)),
            "share": est.to_dict(),
            "cheap_equivalent_llm_different": sum(1 for j in audited if j["verdict"] == "equivalent"
                                                  and j["p_audit"] < threshold),
            "cheap_different_llm_equivalent": sum(1 for j in audited if j["verdict"] != "equivalent"
                                                  and j["p_audit"] >= threshold)}


def _judge_pair_agreement(a: str, b: str, judgments: list[dict], comps: list[dict], rc: ReportConfig,
                          group_rows: dict[tuple, dict], n: int) -> dict:
    """Agreement of two judges. Primary, over the whole groups both resolved (`group_rows`: the groups table by key;
    is_whole under group size n; a third judge's count is not needed): how often their resolved unique counts are
    equal (overall and per category) and the rank correlation of the counts. Over pairs (Cohen's κ), only on the
    agreement sample: groups every judge judged in full (judge.agreement_sample_rate), so that the pairs compared do
    not depend on either judge's own verdicts, as they do under pruning."""
    sample = {(c["prompt_id"], c["model"], c["strategy"]) for c in comps if c.get("agreement_sample")}

    def verdicts(judge: str) -> dict[tuple, str]:
        # The judge's own, readable verdicts on the agreement sample's pairs.
        return {(j["prompt_id"], j["model"], j["strategy"], j["i"], j["j"]): j["verdict"] for j in judgments
                if j["judge"] == judge and j["verdict"] in ("equivalent", "different")
                and j.get("decided_by") != "cheap" and (j["prompt_id"], j["model"], j["strategy"]) in sample}

    va, vb = verdicts(a), verdicts(b)
    common = sorted(set(va) & set(vb))

    def judged(judge: str) -> set[tuple]:
        # Every sample pair the judge (not the cascade) judged, its verdict read or not.
        return {(j["prompt_id"], j["model"], j["strategy"], j["i"], j["j"]) for j in judgments
                if j["judge"] == judge and j.get("decided_by") != "cheap"
                and (j["prompt_id"], j["model"], j["strategy"]) in sample}

    # Pairs both judged whose verdict either could not read: out of κ, counted.
    unresolved_pairs = len(judged(a) & judged(b)) - len(common)
    la, lb = [va[k] for k in common], [vb[k] for k in common]
    kappa, kappa_note = cohen_kappa(la, lb) if common else (float("nan"), "no agreement sample "
                                                            "(judge.agreement_sample_rate is 0, or no group drawn)")

    def counts(judge: str) -> dict[tuple, dict]:
        return {(c["prompt_id"], c["model"], c["strategy"]): c for c in comps
                if c["judge"] == judge and c.get("resolved", True) and c["unique"] is not None}

    ua, ub = counts(a), counts(b)
    both = set(ua) & set(ub)
    # Complete groups only, as in the means: the judge stage writes a count for every group, and a group with no
    # response (a system-prompt group that did not parse) or a single one has the same count from every judge,
    # whatever they would say of n responses — agreement that measures nothing. Those left out are counted.
    groups = sorted(k for k in both if (g := group_rows.get(k)) is not None and is_whole(g, n))
    rho = spearman_with_ci([ua[g]["unique"] for g in groups], [ub[g]["unique"] for g in groups],
                           clusters=[g[0] for g in groups], resamples=rc.bootstrap_resamples, seed=rc.seed, ci=rc.ci,
                           names=(f"{a}'s count", f"{b}'s count"), unit="groups")
    by_category: dict[str, list[bool]] = defaultdict(list)
    for g in groups:
        by_category[ua[g]["judge_category"] or "?"].append(ua[g]["unique"] == ub[g]["unique"])
    return {
        "a": a,
        "b": b,
        "groups_both": len(groups),
        "groups_left_out": len(both) - len(groups),
        "unique_exact": (sum(ua[g]["unique"] == ub[g]["unique"] for g in groups) / len(groups)) if groups else None,
        "unique_exact_by_category": {cat: {"groups": len(v), "exact": sum(v) / len(v)}
                                     for cat, v in sorted(by_category.items())},
        "unique_spearman": rho.to_dict(),
        "sample_groups": len(sample),
        "pairs_both": len(common),
        "pairs_unresolved": unresolved_pairs,
        "verdict_agreement": (sum(x == y for x, y in zip(la, lb)) / len(common)) if common else None,
        "kappa": None if math.isnan(kappa) else kappa,
        "kappa_note": kappa_note,
    }


def _accuracy_section(t: dict, groups: list[dict], strategies: list[str], boot: Callable) -> dict[str, Any]:
    source = {p["prompt_id"]: p["source"] for p in _rows(t, "prompts")}
    # (model, strategy, source, method, prompt) → per-response verdicts (or a group's accuracy), prompts weigh equally.
    per_prompt: dict[tuple, list[float]] = defaultdict(list)
    unchecked: dict[tuple, int] = defaultdict(int)
    unanswered: dict[tuple, int] = defaultdict(int)
    if "accuracy" in t:
        origin = "accuracy table (one verdict per response)"
        for r in _rows(t, "accuracy"):
            key = (r["model"], r["strategy"], source.get(r["prompt_id"], "?"), r.get("method") or "–")
            if r["correct"] is None:
                unchecked[key] += 1
            else:
                per_prompt[key + (r["prompt_id"],)].append(1.0 if r["correct"] else 0.0)
                # No final answer (MATH) and "not attempted" (SimpleQA) count as not correct, and as their own rate.
                unanswered[key] += r.get("answered") is False
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
                     "unanswered": unanswered.get(key, 0),
                     "unanswered_rate": unanswered.get(key, 0) / cell["checked"] if cell["checked"] else None,
                     "accuracy": boot(cell["values"], clusters=cell["prompts"]).to_dict()})
    return {"present": True, "origin": origin, "rows": rows,
            "note": "" if rows else "the accuracy table is empty: no prompt in this run has a gold answer to check"}
