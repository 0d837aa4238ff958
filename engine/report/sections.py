"""The report as a small document model — sections of paragraphs, tables, lists and figure references — built
from report.json's numbers; `engine.report.markdown` and `engine.report.html` both render it, so the two formats
always show the same numbers."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from engine.method.metrics import GENERAL_METRICS
from engine.report.data import (ALL_BUT_A, SMALL_MODEL_LEAD, SMALL_MODEL_TEXT, category_name, finite,
                                ordered_categories)
from engine.report.stats import FEW_CLUSTERS

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
class Link:
    """A link to a file the run wrote beside the report (our own fixed name, never input text), with a sentence."""

    text: str
    href: str
    after: str = ""


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
    sections = [_overview(data, ci, resamples), _deviations_view(data), _unique_view(data, ci),
                _tradeoff_view(data, ci), _spearman_view(data, ci), _class_view(data, ci), *_sweep_view(data, ci),
                *_trace_view(data, ci),
                _strategy_view(data),
                _classification_view(data, ci), _judging_view(data, ci), _accuracy_view(data, ci),
                _throughput_view(data)]
    problems = Section("problems", "Failures and skipped inputs")
    if data["failed_shards"]:
        problems.blocks += [Sub("Failed shards (rerun the same command to compute them)"),
                            Items([f"{f['stage']}: {f['shards']} shards — {f['reason']}"
                                   for f in data["failed_shards"]], literal=True)]
    if data.get("retry_failed"):
        problems.blocks += [Sub("Rows retried in vain (their shards' other rows stand; rerun to try them again)"),
                            Items([f"{f['stage']}: {f['shards']} shards — {f['reason']}"
                                   for f in data["retry_failed"]], literal=True)]
    if data.get("failed_rows"):
        problems.blocks += [Sub("Rows whose backend call failed"), Items(
            [f"{f['stage']}: " + "; ".join(part for part in (
                f"{f['to_retry']} to send again (rerun the same command: it sends them, and only them)"
                if f["to_retry"] else "",
                f"{f['gave_up']} failed for good (out of execution.row_retries)" if f["gave_up"] else "") if part)
             for f in data["failed_rows"]], literal=True)]
    if data["load_warnings"]:
        problems.blocks += [Sub("Prompt source warnings"), Items(list(data["load_warnings"]), literal=True)]
    if data["skipped_inputs"]:
        problems.blocks += [Sub(f"Skipped input rows ({len(data['skipped_inputs'])})"),
                            Items(list(data["skipped_inputs"]), literal=True)]
    if not problems.blocks:
        problems.blocks.append(Para("No failed shards or rows, no prompt source warnings, no skipped input rows."))
    sections.append(problems)
    return sections


def _overview(data: dict[str, Any], ci: str, resamples: int) -> Section:
    s = Section("overview", "Run")
    tp = data["throughput"]
    s.blocks.append(Items([
        # Names from the run (a path, model names) are never put in code spans: md_text escapes &, < and | before
        # the spans are read, and inside a span Markdown shows the escapes themselves ("Q&amp;A").
        f"run directory: {data['run_dir']}",
        f"generators: {', '.join(data['models'])}; judges: {', '.join(data['judges'])}",
        f"prompts: {data['prompts']}; groups: {data['groups']}; n = {data['n']} responses per group"
        f"{' (the audited file’s group size)' if data.get('n_from_file') else ''}; "
        f"strategies: {', '.join(data['strategies'])}",
        f"intervals: {ci} percentile bootstrap over prompts, {resamples} resamples, seed {data['settings']['seed']}"
        # A table cell shows its interval alone: where a cell rests on few prompts the interval is coarse (with 2,
        # the "95%" interval is their minimum and maximum), said once here.
        f"; a cell resting on fewer than {FEW_CLUSTERS} prompts has a coarse interval (on 2, their minimum and "
        "maximum)",
        (f"wall time {tp['wall_s']:.1f} s; peak memory {_bytes(tp['peak_rss_bytes'])}" if tp["stages"]
         else "wall time and memory not recorded (report rendered from the run directory)"),
    ]))
    s.blocks.append(Link("explore.html", "explore.html", " — every group: its prompt, its responses coloured by each "
                         "judge's equivalence classes, the pairwise verdicts with the judges' raw answers, metrics, "
                         "quality and accuracy, with filters and search."))
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
        f"{ci} bootstrap interval over prompts. Category: gold label where known, else the reference classification "
        f"(never the generator's own). Only complete groups enter ({u['complete_total']} of {data['groups']}); "
        f"{u['excluded_total']} groups with fewer than n responses or no count are left out and counted below. The "
        "strategies are compared on the same prompts: for each model, only prompts complete under every strategy "
        "enter the figure and the first table (paired); the second table keeps every complete group (unpaired)."))
    if data.get("judge_target") == "trace":
        s.blocks.append(Para("This run judged reasoning traces only (judge.target: trace): no answer was judged, so no "
                             "group has an answer count here — the traces' counts are in \"Reasoning traces\".",
                             lead="Answers not judged.", note=True))
    s.blocks.append(FigureRef("figure2_unique", f"Figure 2: unique responses per category and strategy, paired "
                                                f"({ci} CI)."))

    def estimate(c: dict) -> str:
        return f"{fmt_estimate(c['estimate'])} ({c['groups']})"

    def table(cells: list[dict], model: str, caption: str, text=estimate, categories=None) -> Table:
        """Categories × strategies of one model's cells, each cell as `text` writes it."""
        cell = {(c["model"], c["category"], c["strategy"]): c for c in cells}
        rows = []
        for cat in (u["categories"] if categories is None else categories) + ["all", ALL_BUT_A]:
            if not any((model, cat, st) in cell for st in data["strategies"]):
                continue
            rows.append([category_name(cat)] + [text(cell[(model, cat, st)]) if (model, cat, st) in cell else "–"
                                                for st in data["strategies"]])
        return Table(["category"] + data["strategies"], rows, caption)

    for model in data["models"]:
        s.blocks.append(Sub(model))
        left = u.get("unpaired_strategies", {}).get(model)
        s.blocks.append(table(u["cells"], model, f"Paired: mean [{ci} CI] (prompts), over the "
                                                 f"{u.get('paired_prompts', {}).get(model, 0)} prompts complete under "
                                                 "every strategy" + (f" with a complete group (not {', '.join(left)}: "
                                                                     "none complete)" if left else "") + "."))
        s.blocks.append(table(u.get("unpaired_cells", u["cells"]), model,
                              f"Unpaired: mean [{ci} CI] (complete groups) — each strategy over its own complete "
                              "groups."))
        if u.get("bounds_unresolved"):
            # Its own categories: one whose groups none resolved has no row in the tables above.
            s.blocks.append(table(
                u["bounds"], model,
                "Bounds: the mean of the groups' lower – upper bounds, over every group with all n responses and a "
                "count or bounds (groups; of them unresolved, left out of the tables above). An unreadable verdict "
                "leaves a diverse group unresolved sooner than a homogeneous one, so the means above may lean low: "
                "these bounds say how far the groups left out could move them.",
                text=lambda b: f"{b['low']:.2f} – {b['high']:.2f} ({b['groups']}; {b['unresolved']} unresolved)",
                categories=ordered_categories({b["category"] for b in u["bounds"]} - {"all"})))
    if u["excluded"]:
        s.blocks.append(Table(["model", "strategy", "left out because", "groups"],
                              [[e["model"], e["strategy"], e["reason"], str(e["groups"])] for e in u["excluded"]],
                              "Groups left out of the means."))
    for judge, cells in (u.get("per_judge") or {}).items():
        for model in data["models"]:
            if any(c["model"] == model for c in cells):
                # Its own categories: one that only some judges resolved has no row in Figure 2's tables.
                s.blocks.append(table(cells, model, f"Judge {judge} alone, {model}: mean [{ci} CI] (groups) over the "
                                                    "whole groups this judge's count resolved — one panel per table, "
                                                    "so compare strategies within it, not across judges.",
                                      categories=ordered_categories({c["category"] for c in cells}
                                                                    - {"all", ALL_BUT_A})))
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
        f"strategy, {ci} bootstrap intervals over prompts on both axes. Figure 3a plots no count: its means are over "
        "every group with all n responses, a group whose unique count did not resolve included; Figure 3b's are "
        "over the groups with all n responses and a resolved count."))
    if not t["reward_available"]:
        why = ("The reward model scored no response" if t.get("reward_ran")
               else "No reward model ran in this run")
        s.blocks.append(Para(f"{why}: Figure 3a uses checklist quality on its y axis, so 3a and 3b differ in the "
                             "diversity measure and in 3a's groups whose count did not resolve.", lead="Note."))
    rewards = t.get("rewards")
    if rewards and rewards["unrewarded"]:
        s.blocks.append(Para(
            f"{rewards['rewarded']} of {rewards['responses']} responses of the groups with all n responses (Figure "
            f"3a's) have a reward model score; {rewards['unrewarded']} have none (the conversation is longer than "
            "the reward model reads: "
            f"quality.reward_model.options.max_length, or the model's context): unknown, out of the means. "
            f"{rewards['groups_without_reward']} groups have no score at all.", lead="Unscored."))
    if rewards and rewards.get("groups_not_scored"):
        s.blocks.append(Para(f"{rewards['groups_not_scored']} groups with all n responses were not scored by the "
                             "reward model (its shard failed: see Failures; a rerun scores them).", lead="Not scored."))
    s.blocks += _ungraded_blocks(t.get("grades") or {})
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


# The groups each trade-off figure's means are over (data._tradeoff_section).
TRADEOFF_GROUPS = {"3a": "every group with all n responses",
                   "3b": "the groups with all n responses and a resolved count"}


def _ungraded_blocks(grades: dict[str, dict[str, int]]) -> list[Any]:
    """The responses without a checklist grade, per figure over the groups that figure uses (`grades`: figure → its
    counts; 3a's only where it plots checklist quality). One paragraph where both figures use the same groups."""
    shown = {fig: g for fig, g in grades.items() if g["ungraded"]}
    if not shown:
        return []
    if len(shown) == 2 and len({tuple(sorted(g.items())) for g in shown.values()}) == 1:
        # The same counts over the same number of groups: complete ⊆ full, so the same groups.
        where, g = "Figures 3a and 3b (every group with all n responses, each with a resolved count)", shown["3b"]
        parts = [(where, g)]
    else:
        parts = [(f"Figure {fig} ({TRADEOFF_GROUPS[fig]})", g) for fig, g in shown.items()]
    text = " ".join(
        f"{where}: {g['graded']} of {g['responses']} responses have a checklist grade; {g['ungraded']} have none "
        "(a grade that could not be read twice, or a prompt whose checklist could not be read): unknown, out of the "
        f"means. {g['groups_without_quality']} of the {g['groups']} groups have no grade at all and are left out of "
        "its quality points." for where, g in parts)
    return [Para(text, lead="Ungraded.")]


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
    rows, notes = _spearman_rows(est, sp["categories"], sp["metrics"]), []
    for cat in sp["categories"]:
        # One line per distinct note: a constant unique count makes every metric undefined for the same reason.
        by_note: dict[str, list[str]] = defaultdict(list)
        for m in sp["metrics"]:
            if est[(cat, m)]["note"]:
                by_note[est[(cat, m)]["note"]].append(m)
        notes += [f"{category_name(cat)} ({', '.join(ms)}): {note}" for note, ms in by_note.items()]
    s.blocks.append(Table(["category", "groups"] + list(sp["metrics"]), rows, f"ρ [{ci} CI]."))
    if notes:
        s.blocks += [Sub("Undefined or partly defined correlations"), Items(notes)]
    if sp.get("calibrated_judges"):
        who = ", ".join(sp["calibrated_judges"])
        s.blocks.append(Para(
            f"The calibrated judge ({who}) decides every pair from features that include cosine, Jaccard and NCD — "
            "the general metrics compared here — and its counts are in each group's mean, so the correlations above "
            "are partly built in. "
            + (f"With the other judges' counts alone ({sp.get('other_judges_groups', 0)} groups):"
               if sp.get("rows_other_judges") else "No other judge resolved a complete group."),
            lead="Calibrated judge."))
        if sp.get("rows_other_judges"):
            est3 = {(r["category"], r["metric"]): r["estimate"] for r in sp["rows_other_judges"]}
            cats3 = list(dict.fromkeys(r["category"] for r in sp["rows_other_judges"]))
            s.blocks.append(Table(["category", "groups"] + list(sp["metrics"]),
                                  _spearman_rows(est3, cats3, sp["metrics"]),
                                  f"ρ [{ci} CI], unique counts of the judges other than the calibrated one."))
    if sp.get("cascade"):
        s.blocks.append(Para(
            f"The cascade's cheap judge decides pairs from features that include cosine, Jaccard and NCD — the "
            f"general metrics compared here — so the correlations above are partly built in: it decided "
            f"{sp.get('cheap_pairs', 0)} pairs "
            f"({_pct(sp.get('cheap_share'))} of the judged pairs). Over the {sp.get('llm_only_groups', 0)} groups "
            "judged by the LLM judges alone:", lead="Cascade on."))
        est2 = {(r["category"], r["metric"]): r["estimate"] for r in sp.get("rows_llm_only", [])}
        cats2 = list(dict.fromkeys(r["category"] for r in sp.get("rows_llm_only", [])))
        s.blocks.append(Table(["category", "groups"] + list(sp["metrics"]), _spearman_rows(est2, cats2, sp["metrics"]),
                              f"ρ [{ci} CI], groups judged by LLM judges only."))
    return s


def _spearman_rows(est: dict[tuple[str, str], dict[str, Any]], categories: list[str],
                   metrics: list[str]) -> list[list[str]]:
    """A Spearman table's rows: category, groups, each metric's ρ. Each metric leaves out the groups it has no value
    for: where they differ, each cell says its own number (the first metric's number headed every column; in the
    other-judges and LLM-only tables it still did)."""
    rows = []
    for cat in categories:
        ns = [est[(cat, m)]["n"] for m in metrics]
        if len(set(ns)) == 1:
            rows.append([category_name(cat), str(ns[0])] + [fmt_estimate(est[(cat, m)]) for m in metrics])
        else:
            rows.append([category_name(cat), f"{min(ns)}–{max(ns)}"]
                        + [f"{fmt_estimate(est[(cat, m)])} ({n} groups)" for m, n in zip(metrics, ns)])
    return rows


def _sweep_view(data: dict[str, Any], ci: str) -> list[Section]:
    sweep = data.get("sweep")
    if not sweep:
        return []
    x = sweep["x"]
    s = Section("sweep", f"Unique responses and quality against {x} (a sweep)")
    s.blocks.append(Para(
        f"Each value of the swept {x} is its own set of groups for every generator and strategy (the generators are "
        f"named <model>@t=… / @p=…). Mean [{ci} interval over prompts] over whole groups (all n responses); a "
        "measure leaves out the groups where it is unknown (a count no judge resolved, an ungraded group) and "
        "says on how many of them it rests where fewer (\"k of m\"): unresolved counts lean diverse, so a value "
        "resting on fewer groups may read lower than it is. Quality is the checklist grade (1–5)."))
    s.blocks.append(FigureRef("sweep", f"Unique responses against {x} (and, in the row below, quality where graded), "
                                       "per category, one line per strategy; a value without an estimate breaks its "
                                       "line."))
    # Both settings, always: where both are swept, or models sweep different ones, one alone leaves rows that read
    # the same with different numbers.
    traces = any((c.get("unique_traces") or {}).get("value") is not None for c in sweep["cells"])
    if sweep["cells"] and not any(c["unique"]["value"] is not None for c in sweep["cells"]):
        s.blocks.append(Para("No group's answer count is resolved (answers not judged, as with judge.target: "
                             "trace, or every count unresolved), so the figure has no line; "
                             + ("the unique traces and " if traces else "") + "the quality are in the table."))
    rows = [[c["base"], c["category"], c["strategy"], _g(c["temperature"]), _g(c["top_p"]), str(c["groups"]),
             _resting(c["unique"], c["groups"]), *([_resting(c["unique_traces"], c["groups"])] if traces else []),
             _resting(c["quality"], c["groups"])] for c in sweep["cells"]]
    s.blocks.append(Table(["model", "category", "strategy", "temperature", "top_p", "groups", "unique",
                           *(["unique traces"] if traces else []), "quality (1–5)"], rows))
    return [s]


def _resting(est: dict[str, Any], groups: int) -> str:
    """An estimate, with the groups it rests on where a measure unknown for some left them out (never a mean
    over fewer groups shown beside the cell's count of all)."""
    text = fmt_estimate(est)
    return text if est.get("value") is None or est["n"] >= groups else f"{text} ({est['n']} of {groups})"


def _g(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def _trace_view(data: dict[str, Any], ci: str) -> list[Section]:
    traces = data.get("traces")
    if not traces:
        return []
    s = Section("traces", "Reasoning traces: unique answers and unique strategies")
    s.blocks.append(Para(
        "A reasoning model's thinking is kept apart from its answer (a server's reasoning field, or a <think> block) "
        "and never judged as part of it. Here the judges also compared the traces of each group, asking whether two "
        "follow the same problem-solving strategy (the criterion of categories D and E, whatever the category): "
        "answers that agree can still come from different strategies, and the other way round. Unique answers and "
        f"unique traces are each a mean [{ci} interval over prompts] over the groups with all n responses that have "
        "that count, both over the judges of traces (an answer-only judge, such as the calibrated one, is left out "
        "of the answers here); the difference (traces − answers) is over the groups that have both. A group has no "
        "trace count when not every response has a trace of its own (counted in the last column), or when a trace "
        "judge's verdicts could not be read or its shard failed."))
    gaps = traces["gaps"]
    rows = []
    for c in traces["cells"]:
        without = "; ".join(f"{v} {gaps[k]}" for k, v in c["gaps"].items() if v) or "—"
        rows.append([c["model"], c["category"], c["strategy"], str(c["groups"]), fmt_estimate(c["answers"]),
                     fmt_estimate(c["traces"]), f"{fmt_estimate(c['difference'])} ({c['paired']})", without])
    if rows:
        s.blocks.append(Table(["model", "category", "strategy", "groups", "unique answers", "unique traces",
                               "traces − answers (groups)", "groups without a (full) trace count"], rows))
    else:
        s.blocks.append(Para("No groups with all n responses."))
    return [s]


def _class_view(data: dict[str, Any], ci: str) -> Section:
    s = Section("class-measures", "Measures from the equivalence classes")
    section = data.get("class_measures") or {"cells": [], "measures": {}}
    s.blocks.append(Para(
        "From the classes the judges already built (no further model calls), averaged over the judges, where every "
        "judge's count is resolved (as unique responses): the semantic entropy of the class distribution (0 when "
        "every response is in one class, 1 when each is its own), NoveltyBench's utility (the patience-discounted "
        "quality, 1 is a checklist grade of 5, of the responses that open a new class; NoveltyBench's `distinct` is "
        "the unique count above), and for "
        f"contrast the Vendi score of the embeddings (1 to n). Mean [{ci} interval over prompts]; in brackets after "
        "a value, groups without one (classes unknown, or a response without a grade)."))
    measures = section["measures"]
    rows = []
    for c in section["cells"]:
        row = [c["model"], c["category"], c["strategy"], str(c["groups"])]
        for column in measures:
            missing = c[f"{column}_missing"]
            row.append(fmt_estimate(c[column]) + (f" ({missing} without)" if missing else ""))
        rows.append(row)
    if rows:
        s.blocks.append(Table(["model", "category", "strategy", "groups", *measures.values()], rows,
                              "Complete groups only, as in Figure 2 (unpaired)."))
    else:
        s.blocks.append(Para("No complete groups."))
    return s


def _strategy_view(data: dict[str, Any]) -> Section:
    s = Section("by-strategy", "General metrics and quality by strategy")
    reward = any(r["reward_mean"] is not None for r in data["by_strategy"])
    accuracy = any(r["accuracy"] is not None for r in data["by_strategy"])
    headers = ["model", "strategy", "unique", *(m.column for m in GENERAL_METRICS.values()), "quality (1–5)"]
    headers += (["reward"] if reward else []) + (["accuracy"] if accuracy else [])
    headers += ["groups", "short", "failed", "cut off"]
    silent = any(r.get("no_answer") for r in data["by_strategy"])
    headers += ["no answer"] if silent else []
    rows = []
    for r in data["by_strategy"]:
        row = [r["model"], r["strategy"], _f(r["unique_mean"]),
               *(_f(r.get(column), 3) for column in GENERAL_METRICS), _f(r["quality_mean"])]
        row += ([_f(r["reward_mean"])] if reward else []) + ([_f(r["accuracy"])] if accuracy else [])
        rows.append(row + [str(r["groups"]), str(r["short_groups"]), str(r["failed_groups"]),
                           f"{r.get('cut_off', 0)} of {r.get('completions', 0)}"]
                    + ([str(r.get("no_answer", 0))] if silent else []))
    s.blocks.append(Table(headers, rows,
                          "Means over the groups with all n responses, every column over the same groups (the "
                          "unique count: those whose count resolved; accuracy: those with a checked response). "
                          + " ".join(f"{m.column}: {m.description}." for m in GENERAL_METRICS.values())
                          + " Groups: those with all n responses (a responses file's groups of another size are "
                            "not among them). Short: system-prompt groups that parsed into fewer than n responses. "
                            "Cut off: of the completions behind the groups that came back (short ones too), those "
                            "that reached the token limit (finish reason length), judged as they are: raise "
                            "sampling.max_tokens where a strategy's are many. A system-prompt group is one "
                            "completion (limit n × max_tokens), any other strategy's response one."
                          + (" No answer: responses of these groups that give none (empty, filtered, cut off while "
                             "thinking) — not judged, graded or scored; their group's pairwise metrics, quality and "
                             "Vendi are over its answering responses, its compression ratio (which grows with the "
                             "texts compressed) unknown, and its accuracy counts them not correct, as the benchmarks "
                             "do." if silent else "")))
    s.blocks += _graders_blocks(data)
    s.blocks += _parsing_blocks(data)
    return s


def _deviations_view(data: dict[str, Any]) -> Section:
    s = Section("deviations", "Deviations from the paper")
    s.blocks.append(Para("How this run's setup differs from the paper's (Jain et al., arXiv 2509.21267), from the "
                         "run's own settings:"))
    s.blocks.append(Items(list(data.get("deviations") or ["None found in the settings."])))
    return s


def _graders_blocks(data: dict[str, Any]) -> list[Any]:
    g = data.get("graders")
    if not g or len(g["graders"]) < 2:
        return []
    out = [Sub("Quality by grader"),
           Table(["model", "strategy"] + g["graders"],
                 [[r["model"], r["strategy"]] + [_f(r.get(x)) for x in g["graders"]] for r in g["means"]],
                 "Mean checklist grade (1–5) per grader, over the groups with all n responses as the quality by "
                 "strategy above: each group's mean grade, then the mean over groups. A response's quality is the "
                 "mean over its graders."
                 + ("".join(f" {x}: {k} responses of these groups without a grade (unread), out of its means."
                            for x, k in (g.get("ungraded") or {}).items() if k)))]
    ci = f"{100 * data['settings']['ci']:.0f}%"
    out.append(Table(["grader A", "grader B", "responses", "same grade", f"Spearman ρ [{ci} CI]"],
                     [[a["a"], a["b"], str(a["responses"]), _pct(a["exact"]), fmt_estimate(a["spearman"])]
                      for a in g["agreement"]], "Agreement between graders on the responses both graded."))
    return out


def _parsing_blocks(data: dict[str, Any]) -> list[Any]:
    p = data.get("parsing")
    if not p or not p["rows"]:
        return []
    modes = ["headers", "inline", "numbered", "none"]
    rows = [[r["model"], r["strategy"]] + [str(r.get(f"mode:{m}", 0)) for m in modes]
            + [str(r.get(f"status:{st}", 0)) for st in ("ok", "short", "error")] for r in p["rows"]]
    return [Sub("System-prompt groups: how their responses were found"),
            Table(["model", "strategy", "### headers", "inline", "numbered list", "nothing", "ok", "short", "error"],
                  rows, f"Setting sampling.system_parse: {p['setting']} — strict splits on the asked-for headers "
                        "(or \"Response k:\" inline) only; lenient also on a bare numbered list, which also splits "
                        "one answer written as numbered steps. Short groups have fewer than n responses and stay "
                        "out of the unique-response means.")]


def _classification_view(data: dict[str, Any], ci: str) -> Section:
    s = Section("classification", "Task classification: the yardstick, and each generator against gold labels")
    y = data.get("yardstick")
    if y:
        who = (", ".join(y["voters"]) if y["voters"] else "no classifier")
        s.blocks.append(Para(
            f"Every group is judged under the category of its prompt, never under the generator's own "
            f"classification (which drives anchored sampling only): {y['gold']} prompts under their gold label, "
            f"{y['reference']} under the reference classification (the majority letter of {who}; ties go to the "
            f"first), {y['uncategorised']} uncategorised (judged with the generic criterion)"
            + (f", {y['pending']} pending (a classifier's answer is missing: not judged until a rerun classifies "
               "them)" if y.get("pending") else "") + " — the same for every generator."))
        if y["agreement"]:
            s.blocks.append(Table(["generator", "prompts with a reference category", "own classification agrees",
                                   "share", "failed (left out)"],
                                  [[a["model"], str(a["prompts"]), str(a["agree"]),
                                    _pct(a["agree"] / a["prompts"]) if a["prompts"] else "–",
                                    str(a.get("failed", 0))] for a in y["agreement"]],
                                  "How often each generator's own classification (what its anchored strategies "
                                  "were told) matches the reference; a request that failed is no answer and left "
                                  "out (an unread answer counts: those strategies were told no category)."))
    if not data["classification"]:
        s.blocks.append(Para("No prompt was classified in this run (every prompt came with its category)."))
        return s
    s.blocks.append(Table(["model", "prompts", "labelled", f"accuracy [{ci} CI]", "none of these", "unparsed",
                           "failed"],
                          [[c["model"], str(c["prompts"]), str(c["labelled"]), fmt_estimate(c["accuracy"]),
                            str(c.get("none_of_these", 0)), str(c["unparsed"]), str(c.get("failed", 0))]
                           for c in data["classification"]],
                          "None of these: the model placed the prompt outside the taxonomy (sampled with the general "
                          "wording, judged with the generic criterion); unparsed: no category could be read (counted "
                          "wrong where labelled); failed: the request failed (a rerun asks again), left out of the "
                          "accuracy, as no answer."))
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
    headers = ["judge", "complete groups counted", "mean unique (resolved)", "pairs judged", "equivalent",
               "unresolved pairs",
               "groups unresolved", "groups missing", "verdicts from log-probs / text", "calls made", "calls saved",
               "both-order disagreement"] + (["cheap-decided"] if cheap else [])
    rows = []
    for r in j["per_judge"]:
        o = r["order"]
        order = (f"{o['disagreements']}/{o['pairs']} ({_pct(o['rate'])})"
                 + (f"; {o['one_order']} decided by one order alone" if o.get("one_order") else "")
                 if o["measured"] else "not measured")
        src = r["read_from"]
        rows.append([r["judge"], str(r["groups"]), _f(r["unique_mean"]), str(r["pairs_judged"]), str(r["equivalent"]),
                     f"{r['unresolved_pairs']} ({r['unparsed_pairs']} unparsed, {r['error_pairs']} errors"
                     + (f", {r['no_answer_pairs']} without an answer" if r.get("no_answer_pairs") else "")
                     + (f", {r['order_split_pairs']} split by the orders" if r.get("order_split_pairs") else "")
                     + ") in "
                     f"{r['groups_with_unresolved']} groups", str(r["groups_unresolved"]), str(r["groups_missing"]),
                     f"{src['logprobs']} / {src['text']}" + (f" ({src['mixed']} mixed)" if src["mixed"] else ""),
                     str(r["calls_made"]), str(r["calls_saved"]), order]
                    + ([str(r["cheap_decided"] or 0)] if cheap else []))
    s.blocks.append(Table(headers, rows, "Complete groups counted: the groups with all n responses whose count the "
                                         "judge resolved, those its mean is over; the pairs, calls and unresolved "
                                         "columns cover every group it judged, short ones included. "
                                         "Calls saved: pairs union-find already connected (pruning). An unresolved "
                                         "pair (its verdict unparsed twice, a backend error, a response without "
                                         "an answer, or both orders one each way, their mean on the threshold) is "
                                         "never read as \"different\" or \"equivalent\": a group's count is resolved "
                                         "only when no reading of its unresolved pairs could change it; otherwise "
                                         "only bounds are known and the judge stays out of that group's mean. Groups "
                                         "missing: the judge's shard failed (rerun to fill it). Verdicts from text "
                                         "read P(yes) as 1 or 0."))
    for note in j.get("notes", []):
        s.blocks.append(Para(note, lead="Verdicts from text."))
    for b in j.get("calibrated_blind", []):
        s.blocks.append(Para(
            f"{b['judge']} was fitted on labelled pairs of categories {', '.join(b['labelled']) or 'none'} only: on "
            f"{', '.join(b['categories'])} ({b['groups']} groups here) it never saw the category's criterion (A: the "
            "same final answer; D: the same strategy, whatever the answer), so its counts there measure how similar "
            "the responses are, not whether they are functionally different; read that category's counts from the "
            "LLM judges.", lead="A category-blind judge."))
    audits = [r for r in j["per_judge"] if r.get("cascade_audit")]
    if audits:
        s.blocks.append(Table(
            ["judge", "cheap-decided pairs audited (LLM verdict read)", "audited, LLM verdict unresolved",
             "LLM agrees", f"share [{ci} CI]",
             "cheap equivalent, LLM different", "cheap different, LLM equivalent"],
            [[r["judge"], str(a["pairs"]), str(a.get("unresolved", 0)), str(a["agree"]), fmt_estimate(a["share"]),
              str(a["cheap_equivalent_llm_different"]), str(a["cheap_different_llm_equivalent"])]
             for r in audits for a in [r["cascade_audit"]]],
            "The cascade's audit (judge.cascade.audit_rate): pairs the calibrated judge decided that were also sent to "
            "the LLM judge, to measure how often the cascade's verdict is the one all-LLM judging would give; the "
            "cheap verdict stands in the counts. An audit whose LLM verdict could not be read is unresolved, out of "
            "the share. The interval resamples prompts."))
    if not j["both_orders"]:
        s.blocks.append(Para("Both-order disagreement is not measured: `judge.both_orders` is off, so each pair was "
                             "judged in one order only."))
    if j["single_judge"]:
        s.blocks.append(Para(f"A single judge ({j['judges'][0] if j['judges'] else 'none'}): judge-judge agreement "
                             "needs at least two judges."))
    else:
        s.blocks.append(FigureRef("judge_agreement", "Judge agreement: same unique count per complete group, and "
                                                      "Cohen's κ on the agreement sample."))
        s.blocks.append(Table(
            ["judge A", "judge B", "groups both counted", "same unique count", f"Spearman ρ of counts [{ci} CI]",
             "same count, per category"],
            [[a["a"], a["b"], str(a["groups_both"]), _pct(a["unique_exact"]),
              fmt_estimate(a["unique_spearman"])
              + (f" ({a['unique_spearman']['note']})" if a["unique_spearman"]["note"] else ""),
              "; ".join(f"{cat} {_pct(v['exact'])} ({v['groups']})"
                        for cat, v in a.get("unique_exact_by_category", {}).items())]
             for a in j["agreement"]],
            "The primary agreement figure: over the complete groups (all n responses) both judges counted "
            "(resolved counts)."
            + "".join(f" {a['a']} / {a['b']}: {a['groups_left_out']} groups both counted without all n responses "
                      "(short or failed: a group of 0 or 1 responses gets the same count from every judge) left out, "
                      "as from the means." for a in j["agreement"] if a.get("groups_left_out"))))
        sample = j.get("agreement_sample", {})
        s.blocks.append(Table(
            ["judge A", "judge B", "agreement-sample groups", "pairs both judged", "of those, unresolved by either",
             "verdicts agree", "Cohen's κ"],
            [[a["a"], a["b"], str(a.get("sample_groups", 0)), str(a["pairs_both"] + a.get("pairs_unresolved", 0)),
              str(a.get("pairs_unresolved", 0)), _pct(a["verdict_agreement"]),
              _f(a["kappa"]) + (f" ({a['kappa_note']})" if a["kappa_note"] else "")] for a in j["agreement"]],
            f"Pairwise agreement only on the agreement sample: {sample.get('groups', 0)} groups (a deterministic "
            f"draw at rate {sample.get('rate', 0):g}) that every judge judged in full, without pruning or cascade, "
            f"at a cost of {sample.get('calls', 0)} calls counted in the judges' totals. Under pruning, the pairs a "
            "judge judges depend on its own verdicts, so κ over them would not be comparable. A pair either judge "
            "left unresolved is out of κ and the agreement share, and counted."))
    return s


def _accuracy_view(data: dict[str, Any], ci: str) -> Section:
    a = data["accuracy"]
    s = Section("accuracy", "Accuracy on verifiable sources")
    if not a["present"]:
        s.blocks.append(Para(a["note"] + ".", lead="Not measured in this run:"))
        return s
    s.blocks.append(Para(f"From the {a['origin']}. Accuracy per prompt (share of its responses that are correct), "
                         f"averaged over prompts; {ci} bootstrap interval over prompts. As the benchmarks count them, "
                         "a MATH-500 response with no final answer and a SimpleQA answer graded \"not attempted\" "
                         "are not correct; their share is given beside accuracy (no answer / not attempted). "
                         "Unchecked: an answer whose correctness could not be decided (rejected by the math screen, "
                         "a timeout, an unread grade) — left out, never guessed. Methods: math-verify for MATH-500 / "
                         "category D, the LLM grader for SimpleQA / category A."))
    if a["note"]:
        s.blocks.append(Para(a["note"] + "."))
    s.blocks.append(Table(["model", "strategy", "source", "method", "prompts", "checked", f"accuracy [{ci} CI]",
                           "no answer / not attempted", "unchecked"],
                          [[r["model"], r["strategy"], r["source"], r["method"], str(r["prompts"]), str(r["checked"]),
                            fmt_estimate(r["accuracy"]),
                            f"{r.get('unanswered', 0)} ({_pct(r.get('unanswered_rate'))})", str(r["unchecked"])]
                           for r in a["rows"]]))
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
    s.blocks.append(FigureRef("throughput", "Each stage's span on the run's clock: from sampling on, stages stream "
                                            "into each other (execution.stream), so their bars overlap."))
    loads = tp.get("model_load_s") or {}
    if loads:
        s.blocks.append(Table(["model", "loads", "load s"],
                              [[k, str(len(v)), f"{sum(v):.1f}"] for k, v in loads.items()],
                              "Each model loads once per worker for the whole run and is shared by every stage "
                              "that uses it (more loads: a worker restarted, or stopped to make room for another "
                              "model); seconds summed over its loads (role:backend:model)."))
    no_usage = sum(st.get("usage_missing") or 0 for st in tp["stages"])
    has_cost = any(st["cost_usd"] is not None for st in tp["stages"]) or no_usage > 0
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
                                         "Calls: conversations sent to the backend." + (
                              f" Cost –: {no_usage} replies carried no token usage, so that stage's cost (and the "
                              "run's) is unknown." if no_usage else "")))
    if has_cost:  # the figure a user looks for first: it was only in report.json
        total = tp["totals"]["cost_usd"]
        s.blocks.append(Para(
            f"Cost of this run, as the backends reported it: ${total:,.4f} (priced models only; shards reused from "
            "an earlier run cost nothing here)." if total is not None else
            f"Cost of this run: unknown — {no_usage} priced replies carried no token usage."))
    rerun = [st for st in tp["stages"] if any(st.get(k) for k in ("rows_reused", "rows_retried", "rows_transient",
                                                                  "rows_gave_up"))]
    if rerun:
        s.blocks.append(Table(
            ["stage", "rows reused", "rows sent again", "rows failed transiently", "rows gave up"],
            [[st["stage"], str(st.get("rows_reused", 0)), str(st.get("rows_retried", 0)),
              str(st.get("rows_transient", 0)), str(st.get("rows_gave_up", 0))] for st in rerun],
            "Rows reused: finished in an earlier shard of this run directory, never computed twice. Rows sent "
            "again: an earlier run's backend call for them failed in a way that may not recur. Rows failed "
            "transiently: kept as failed, and sent again by the next reruns (execution.row_retries). Rows gave up: "
            "still failed after those reruns; their failure is kept."))
    return s
