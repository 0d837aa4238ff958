"""Compare two runs on the same prompts — or two values of a sweep within one run: is B more homogeneous than A,
where, and by how much?

    python engine/run.py compare RUN_A RUN_B [--intersect] [--out DIR] [--resamples N] [--seed S]   (engine.cli.compare)
    python engine/run.py compare RUN --values 0.5 1.0      (two values of the run's sweep: A at 0.5, B at 1.0)

Two runs are paired group by group — same prompt, same strategy, and the same generator (or, when each run has
exactly one generator, that one against the other: two models, two dates, two settings of one model). For each
category the mean of the per-prompt differences B − A of functionally unique responses (and of checklist quality
and accuracy where both runs measured them) gets a bootstrap interval that resamples prompts, and a verdict line.

Within a run (`--values`), each swept generator `<model>@t=0.5` is paired with `<model>@t=1` on the same prompts and
strategies; a value is the swept setting's number when one setting is swept, or the generator's suffix
("t=0.5,p=0.8") when both are.

Runs whose prompt sets differ are refused unless `--intersect` asks to compare the prompts both share; runs with
different n are always refused (a count out of 4 and a count out of 6 are not on one scale).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson

from engine.config import load_yaml, redacted
from engine.errors import TaskdivError
from engine.execution.results import read_run
from engine.execution.store import atomic_write_bytes
from engine.report.escape import md_text
from engine.report.data import (ALL_BUT_A, SMALL_MODEL_NOTE, category_name, finite, is_complete, is_whole,
                                ordered_categories, run_models, small_model_judges)
from engine.report.run_shape import run_group_size, run_strategies
from engine.report.stats import FEW_CLUSTERS, paired_bootstrap_diff_ci
from engine.method.taxonomy import CATEGORIES

TABLES = ("prompts", "groups", "accuracy")
MEASURES = (("unique", "unique responses"), ("quality", "checklist quality"), ("accuracy", "accuracy"))


# A group pair left out: the prompt was judged under one category in A and another in B (or pending in one).
CATEGORY_DIFFERS = "judged under another category in B than in A (their reference classifications differ)"
# A paired group whose difference cannot be taken over the judges both runs share: one of them is unresolved on a side.
NO_SHARED_COUNT = "a shared judge's count unresolved in A or B (left out of unique responses only)"


class CompareError(TaskdivError):
    """Two runs cannot be compared as asked (different prompts, n or generators); the message says what differs."""


def _signed(x: float, digits: int = 2) -> str:
    # A real minus sign: verdict lines are read, and "-0.10" next to "0.30" is easy to misread.
    return f"{x:.{digits}f}".replace("-", "−")


def _interval(est: dict[str, Any], digits: int = 2) -> str:
    if est["low"] is None:
        return "(no interval)"
    return f"[{_signed(est['low'], digits)}, {_signed(est['high'], digits)}]"


def verdict(category: str, est: dict[str, Any], *, what: str = "unique responses", prefix: str = "",
            paired: int | None = None) -> str:
    """One line saying whether B is more or less homogeneous than A on a category.

    Args:
        category: the category letter (or "all").
        est: the estimate of mean(B − A) of unique responses (Estimate.to_dict()).
        what: the unit, for the line.
        prefix: put before the line (e.g. the model pair when a comparison has several).
        paired: how many groups were paired on the category (None: not known); where some were but none has a
            count on both sides, the line says so rather than "no paired groups".

    Returns:
        "B is more homogeneous on G (creative writing) by 0.80 unique responses [0.40, 1.20]" when the interval
        lies below 0, "B is more diverse on …" when above, "no clear difference on G (creative writing): −0.10
        [−0.50, 0.30]" when it spans 0 or there is no interval; with a caveat when the interval rests on fewer
        than `engine.report.stats.FEW_CLUSTERS` prompts.
    """
    # "on A" would read as run A: the category's name goes with its letter.
    where = {"all": "all categories", ALL_BUT_A: "all categories but A and the uncategorised"}.get(category) or (
        f"{category} ({CATEGORIES[category].name.lower()})" if category in CATEGORIES else category)
    if est["value"] is None:
        if paired:
            return (f"{prefix}no count to compare on {where}: {paired} paired groups, none with a unique count on "
                    "both sides (fewer than n responses, or no judge's count resolved)")
        return f"{prefix}no paired groups on {where}"
    v, lo, hi = est["value"], est["low"], est["high"]
    k = est.get("clusters")
    caveat = f" — only {k} prompts, a coarse interval" if k and k < FEW_CLUSTERS and lo is not None else ""
    # In A one answer is right and homogeneity is desired (the paper): more unique answers there is inconsistency.
    desired = {"A": (" — in A homogeneity is desired: B is the more consistent",
                     " — in A homogeneity is desired: B is the less consistent")}.get(category, ("", ""))
    # A verdict needs an interval that holds its own estimate: with very few resamples (--resamples 1) the interval
    # may miss it, and "more homogeneous by −0.12 [0.38, 0.38]" was said.
    if lo is not None and not lo <= v <= hi:
        lo = None
    if lo is not None and hi < 0:
        return (f"{prefix}B is more homogeneous on {where} by {_signed(-v)} {what} "
                f"[{_signed(-hi)}, {_signed(-lo)}]{desired[0]}{caveat}")
    if lo is not None and lo > 0:
        return (f"{prefix}B is more diverse on {where} by {_signed(v)} {what} [{_signed(lo)}, {_signed(hi)}]"
                f"{desired[1]}{caveat}")
    return f"{prefix}no clear difference on {where}: {_signed(v)} {_interval(est)}{caveat}"


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(d, list) and d and all(isinstance(x, dict) for x in d):
        out = {}
        for i, v in enumerate(d):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: d}


def config_differences(dir_a: str | Path, dir_b: str | Path) -> list[dict[str, Any]]:
    """Settings that differ between two runs' resolved configs (run_dir left out).

    Args:
        dir_a, dir_b: the run directories.

    Returns:
        [{"key": dotted key, "a": value in A, "b": value in B}], sorted by key.
    """
    # Redacted here too: a run written before its config was (or a config.yaml edited by hand) may hold a base URL
    # with a key in it or an option named as a secret, and compare.md would have printed both runs' values.
    a = _flatten(redacted(load_yaml((Path(dir_a) / "config.yaml").read_text(encoding="utf-8")) or {}))
    b = _flatten(redacted(load_yaml((Path(dir_b) / "config.yaml").read_text(encoding="utf-8")) or {}))
    keys = sorted((set(a) | set(b)) - {"run_dir"})
    return [{"key": k, "a": a.get(k), "b": b.get(k)} for k in keys if a.get(k) != b.get(k)]


def _group_accuracy(tables: dict) -> dict[tuple, float]:
    """Per-group accuracy: the share of a group's checked responses that are correct."""
    if "accuracy" in tables:
        verdicts: dict[tuple, list[bool]] = defaultdict(list)
        for r in tables["accuracy"].to_pylist():
            if r["correct"] is not None:
                verdicts[(r["prompt_id"], r["model"], r["strategy"])].append(bool(r["correct"]))
        return {k: sum(v) / len(v) for k, v in verdicts.items()}
    groups = tables["groups"]
    if "accuracy" in groups.column_names:
        return {(g["prompt_id"], g["model"], g["strategy"]): g["accuracy"] for g in groups.to_pylist()
                if finite(g["accuracy"])}
    return {}


def _same_text_ids(prompts_a: dict[str, dict], prompts_b: dict[str, dict]) -> dict[str, str]:
    """B's prompt id → A's, for each prompt of B whose id A lacks and whose text (stripped) is one prompt of A's that
    B does not hold under its own id. A text two prompts of A share (two sources) is left unmatched."""
    by_text: dict[str, list[str]] = defaultdict(list)
    for pid, p in prompts_a.items():
        by_text[(p["text"] or "").strip()].append(pid)
    alias = {}
    for pid, p in prompts_b.items():
        found = by_text.get((p["text"] or "").strip(), [])
        if pid not in prompts_a and len(found) == 1 and found[0] not in prompts_b:
            alias[pid] = found[0]
    taken = Counter(alias.values())  # two prompts of B with A's one text: ambiguous, neither matched
    return {b: a for b, a in alias.items() if taken[a] == 1}


def _model_pairs(models_a: list[str], models_b: list[str], intersect: bool) -> list[tuple[str, str]]:
    if set(models_a) == set(models_b):
        return [(m, m) for m in models_a]
    if len(models_a) == 1 and len(models_b) == 1:
        return [(models_a[0], models_b[0])]
    common = [m for m in models_a if m in models_b]
    if intersect and common:
        return [(m, m) for m in common]
    raise CompareError(
        f"the runs' generators differ: A has {models_a}, B has {models_b}. Compare runs with the same generators, "
        "or with one generator each"
        + (", or pass --intersect to compare the generators both have" if common else "") + ".")


def _swept_value(name: str, sweep: dict[str, Any]) -> str:
    """The part of a swept generator's name after `<base>@`: "t=0.5" or "t=0.5,p=0.8"."""
    return name[len(sweep["base"]) + 1:]


_SWEEP_KEYS = {"t": "temperature", "temperature": "temperature", "p": "top_p", "top_p": "top_p"}


def _settings(value: str) -> dict[str, float] | None:
    """{setting: number} of a value written as a generator's suffix ("t=0.5", "t=1.0, p=0.8", "temperature=.5"), or
    None where it is not one. Read as numbers: the suffix's own text ("t=1" for 1.0) need not be matched."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in value.split(",")):
        key, sep, number = part.partition("=")
        setting = _SWEEP_KEYS.get(key.strip().lower())
        if not sep or setting is None or setting in out:
            return None
        try:
            out[setting] = float(number)
        except ValueError:
            return None
    return out


def sweep_pairs(config: Any, value_a: str, value_b: str) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """(generator at value_a, generator at value_b) for every swept base model of a run that has both values, and
    the swept models left out, each with why. Models may sweep different values (a model's own temperature list
    beside sampling.temperature) or different settings: those without both values are left out and said, not an
    error, as long as one model pairs.

    Args:
        config: the run's RunConfig.
        value_a, value_b: a number of the swept setting (when one setting is swept), or settings as a generator's
            suffix names them, "t=0.5" / "t=0.5,p=0.8" (read as numbers: "t=1.0" is the generator "…@t=1"; a
            setting left out may take any value, as long as one generator matches).

    Raises:
        CompareError: the run has no sweep, no swept model has both values (the message lists each one's values),
            or the two values are the same.
    """
    swept: dict[str, list[Any]] = defaultdict(list)
    for g in config.generators:
        if g.sweep:
            swept[g.sweep["base"]].append(g)
    if not swept:
        raise CompareError("this run has no sweep (sampling.temperature or top_p as a list): --values compares "
                           "two values of a run's sweep; compare two runs instead")

    def pick(base: str, gens: list[Any], value: str) -> str:
        varies = [k for k in ("temperature", "top_p") if len({g.sweep[k] for g in gens}) > 1]
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is not None and len(varies) > 1:
            raise CompareError(f"--values {value}: both temperature and top_p are swept; name a generator's value "
                               f"such as {_swept_value(gens[0].name, gens[0].sweep)!r}")
        settings = _settings(value)
        found = [g.name for g in gens if _swept_value(g.name, g.sweep) == value.strip()
                 or (number is not None and varies and g.sweep[varies[0]] == number)
                 or (settings is not None and all(g.sweep.get(k) == v for k, v in settings.items()))]
        if len(found) > 1:
            raise CompareError(f"--values {value}: names several generators of {base!r} ("
                               + ", ".join(_swept_value(g.name, g.sweep) for g in gens if g.name in found)
                               + "); name each swept setting, such as "
                               + repr(_swept_value(gens[0].name, gens[0].sweep)))
        if not found:
            raise CompareError(f"--values {value}: no generator of {base!r} has that value; its values are "
                               + ", ".join(_swept_value(g.name, g.sweep) for g in gens))
        return found[0]

    pairs, left_out = [], {}
    for base, gens in swept.items():
        try:
            pairs.append((pick(base, gens, value_a), pick(base, gens, value_b)))
        except CompareError as exc:
            left_out[base] = str(exc)
    if not pairs:
        raise CompareError("; ".join(left_out.values()))
    if any(a == b for a, b in pairs):
        raise CompareError(f"--values {value_a} {value_b}: the two values name the same generators")
    return pairs, left_out


def compare_runs(dir_a: str | Path, dir_b: str | Path | None = None, *, intersect: bool = False,
                 resamples: int = 1000, seed: int = 0, ci: float = 0.95,
                 values: tuple[str, str] | None = None) -> dict[str, Any]:
    """Paired comparison of two finished runs, or of two sweep values within one run, per category and per strategy.

    Args:
        dir_a, dir_b: the run directories (A is the baseline; differences are B − A); dir_b None (or the same
            directory) with `values`: within run A.
        intersect: compare the prompts (and generators) both runs have instead of refusing runs that differ.
        resamples: bootstrap resamples (prompts are resampled).
        seed: bootstrap seed.
        ci: interval coverage.
        values: (A's value, B's value) of the run's sweep (see `sweep_pairs`).

    Returns:
        Plain data: the runs, what was paired and left out, config differences, per-category and per-strategy
        estimates of B − A for unique responses, quality and accuracy, and the verdict lines.

    Raises:
        CompareError: the runs differ in n, in prompts (without intersect), or in generators in a way that cannot
            be paired; or nothing is left to pair.
        RunDirError: a directory is not a finished run.
    """
    within = values is not None and (dir_b is None or Path(dir_b).resolve() == Path(dir_a).resolve())
    if dir_b is None and not within:
        raise CompareError("compare needs two runs (RUN_A RUN_B), or one run and --values A B (two sweep values)")
    if values is not None and not within:
        raise CompareError("--values compares two values of one run's sweep: give one run directory")
    dir_b = dir_a if dir_b is None else dir_b
    ra, ca = read_run(dir_a, TABLES)
    rb, cb = (ra, ca) if within else read_run(dir_b, TABLES)
    label_a, label_b = Path(dir_a).resolve().name, Path(dir_b).resolve().name
    if within:
        label_a, label_b = f"{label_a} @ {values[0]}", f"{label_b} @ {values[1]}"
    elif label_a == label_b:
        label_a, label_b = str(Path(dir_a).resolve()), str(Path(dir_b).resolve())
    ta, tb = ra.tables, rb.tables
    # Audited responses: n is each file's group size, and the strategies are the files' own.
    rows_a, rows_b = ta["groups"].to_pylist(), tb["groups"].to_pylist()
    n_a, n_b = run_group_size(ca, rows_a), run_group_size(cb, rows_b)
    strategies_a, strategies_b = run_strategies(ca, rows_a), run_strategies(cb, rows_b)
    if n_a != n_b:
        raise CompareError(f"the runs have different n (A: {n_a} responses per group, B: {n_b}); unique counts "
                           "out of different n are not comparable, and --intersect cannot change that")
    prompts_a = {p["prompt_id"]: p for p in ta["prompts"].to_pylist()}
    prompts_b = {p["prompt_id"]: p for p in tb["prompts"].to_pylist()}
    acc_a, acc_b = _group_accuracy(ta), _group_accuracy(tb)
    # A prompt read from a file is identified by the file's name and its text: the same prompt audited from
    # llama.jsonl and from mistral.jsonl (one file per model) had two ids, and the runs "shared no prompts". A prompt
    # of B whose id A lacks is A's where their texts are the same (whitespace at the ends aside).
    alias = {} if within else _same_text_ids(prompts_a, prompts_b)
    if alias:
        def renamed(pid: str) -> str:
            return alias.get(pid, pid)

        prompts_b = {renamed(pid): {**p, "prompt_id": renamed(pid), "text": prompts_a[renamed(pid)]["text"]}
                     if pid in alias else p for pid, p in prompts_b.items()}
        rows_b = [{**g, "prompt_id": renamed(g["prompt_id"])} for g in rows_b]
        acc_b = {(renamed(p), m, s): v for (p, m, s), v in acc_b.items()}
    only_a = sorted(set(prompts_a) - set(prompts_b))
    only_b = sorted(set(prompts_b) - set(prompts_a))
    changed = sorted(p for p in set(prompts_a) & set(prompts_b) if prompts_a[p]["text"] != prompts_b[p]["text"])
    shared = sorted(p for p in set(prompts_a) & set(prompts_b) if p not in changed)
    if (only_a or only_b or changed) and not intersect:
        raise CompareError(
            f"the runs' prompt sets differ: {len(only_a)} prompts only in A, {len(only_b)} only in B, "
            f"{len(changed)} with the same id but a different text ({len(shared)} shared). Compare runs on the same "
            "prompts, or pass --intersect to compare the shared ones")
    if not shared:
        raise CompareError("the runs share no prompts (same id and text): nothing to compare")
    models_a = run_models(ca, ta["groups"].select(["model"]).to_pylist())
    models_b = run_models(cb, tb["groups"].select(["model"]).to_pylist())
    missing = defaultdict(int)
    if within:
        pairs, unpaired = sweep_pairs(ca, *values)
        models_a, models_b = [a for a, _ in pairs], [b for _, b in pairs]
        for why in unpaired.values():  # a swept model without both values: left out, and said
            missing[f"swept model left out ({why})"] += 1
    else:
        pairs = _model_pairs(models_a, models_b, intersect)
    strategies = [s for s in strategies_a if s in strategies_b]
    if not strategies:
        raise CompareError(f"the runs share no strategy (A: {strategies_a}, B: {strategies_b})")

    groups_a = {(g["prompt_id"], g["model"], g["strategy"]): g for g in rows_a}
    groups_b = {(g["prompt_id"], g["model"], g["strategy"]): g for g in rows_b}
    # A paired group's difference of unique responses is over the judges both runs share, each resolved on both
    # sides: a judge of one run alone would make B − A measure the change of panel, not of the models, and its
    # unreadable count must not leave out a group whose shared counts are known (each side's unique_mean needs its
    # whole panel). Runs that share no judge compare each side's own panel, and say so.
    common = sorted({j.name for j in ca.judges} & {j.name for j in cb.judges})
    # Groups whose difference is over fewer judges than a side's panel: the runs' panels differ.
    panels_differ = set(common) != {j.name for j in ca.judges} or set(common) != {j.name for j in cb.judges}
    narrowed = 0
    units = []  # one per paired group: its category and the A/B values of each measure
    for ma, mb in pairs:
        for s in strategies:
            for p in shared:
                ga, gb = groups_a.get((p, ma, s)), groups_b.get((p, mb, s))
                if ga is None or gb is None:
                    missing["group missing in " + ("A" if ga is None else "B")] += 1
                    continue
                # The category each group was judged under (gold, else its run's reference classification): two
                # runs' judges may classify a prompt differently, and counts judged under two criteria ("same final
                # answer" against "same plot and tone") differ by the yardstick, not by the models.
                if ga["category"] != gb["category"]:
                    missing[CATEGORY_DIFFERS] += 1
                    continue
                unit = {"prompt_id": p, "pair": f"{ma} vs {mb}", "strategy": s, "category": ga["category"] or "?"}
                # Every measure is over whole groups (status ok, all n responses), as the report's means are: a
                # short group's quality and accuracy were paired here while the page said it was left out.
                both_whole = all(is_whole(g, n_a) for g in (ga, gb))
                if not both_whole:
                    missing["short or failed group in A or B (left out of every measure)"] += 1
                unit["unique"] = None
                if both_whole and not common:
                    if is_complete(ga, n_a) and is_complete(gb, n_b):
                        unit["unique"] = (ga["unique_mean"], gb["unique_mean"])
                    else:
                        missing["no resolved count in A or B (left out of unique responses only)"] += 1
                elif both_whole:
                    per_a, per_b = dict(ga["unique_per_judge"] or []), dict(gb["unique_per_judge"] or [])
                    if all(j in per_a and j in per_b for j in common):
                        unit["unique"] = (sum(per_a[j] for j in common) / len(common),
                                          sum(per_b[j] for j in common) / len(common))
                        narrowed += panels_differ
                    else:
                        missing[NO_SHARED_COUNT] += 1
                unit["quality"] = ((ga["quality_mean"], gb["quality_mean"]) if both_whole
                                   and finite(ga["quality_mean"]) and finite(gb["quality_mean"]) else None)
                key_a, key_b = (p, ma, s), (p, mb, s)
                unit["accuracy"] = ((acc_a[key_a], acc_b[key_b])
                                    if both_whole and key_a in acc_a and key_b in acc_b else None)
                units.append(unit)

    def estimate(selected: list[dict], measure: str) -> dict[str, Any]:
        vals = [u for u in selected if u[measure] is not None]
        est = paired_bootstrap_diff_ci([u[measure][0] for u in vals], [u[measure][1] for u in vals],
                                       clusters=[u["prompt_id"] for u in vals], resamples=resamples, seed=seed, ci=ci)
        out = est.to_dict()
        out["mean_a"] = sum(u[measure][0] for u in vals) / len(vals) if vals else None
        out["mean_b"] = sum(u[measure][1] for u in vals) / len(vals) if vals else None
        return out

    pair_labels = list(dict.fromkeys(u["pair"] for u in units))
    categories = ordered_categories(u["category"] for u in units)
    if "A" in categories and set(categories) - {"A", "?"}:  # "?" is left out of it too: no row of nothing
        categories.append(ALL_BUT_A)  # pooled where diversity is wanted, without A's opposite direction
    categories.append("all")
    by_category, by_strategy, verdicts = [], [], []
    for pair in pair_labels:
        mine = [u for u in units if u["pair"] == pair]
        prefix = f"[{pair}] " if len(pair_labels) > 1 else ""
        for cat in categories:
            sel = [u for u in mine if cat == "all" or u["category"] == cat
                   or cat == ALL_BUT_A and u["category"] not in ("A", "?")]  # "?" may be A: left out
            row = {"pair": pair, "category": cat, **{m: estimate(sel, m) for m, _ in MEASURES}}
            row["verdict"] = verdict(cat, row["unique"], prefix=prefix, paired=len(sel))
            by_category.append(row)
            verdicts.append(row["verdict"])
            for s in strategies:
                sub = [u for u in sel if u["strategy"] == s]
                if sub:
                    by_strategy.append({"pair": pair, "category": cat, "strategy": s,
                                        **{m: estimate(sub, m) for m, _ in MEASURES}})
    return {
        "a": {"dir": str(dir_a), "label": label_a, "generators": models_a, "strategies": strategies_a},
        "b": {"dir": str(dir_b), "label": label_b, "generators": models_b, "strategies": strategies_b},
        "n": n_a,
        "intersect": intersect,
        "settings": {"resamples": resamples, "seed": seed, "ci": ci},
        "prompts": {"shared": len(shared), "only_a": len(only_a), "only_b": len(only_b), "changed": len(changed),
                    "matched_by_text": len(alias)},
        "pairs": pair_labels,
        "strategies": strategies,
        "strategies_skipped": sorted(set(strategies_a) ^ set(strategies_b)),
        "paired_groups": len(units),
        "left_out": dict(missing),
        # Judges of both runs, and the paired groups whose difference left out a judge resolved on one side only.
        "unique_judges": {"common": common, "narrowed": narrowed},
        "config_differences": ([{"key": "generators", "a": ", ".join(models_a), "b": ", ".join(models_b)}]
                               if within else config_differences(dir_a, dir_b)),
        "within_run": within,
        "small_model_judges": {"a": small_model_judges(ca), "b": small_model_judges(cb)},
        "by_category": by_category,
        "by_strategy": by_strategy,
        "verdicts": verdicts,
    }


def _cell(est: dict[str, Any]) -> str:
    if est["value"] is None:
        return "–"
    return f"{_signed(est['value'])} {_interval(est)} (n={est['clusters']})"


def render_comparison(c: dict[str, Any], figure: str | None = None) -> str:
    """The comparison as Markdown.

    Args:
        c: from `compare_runs`.
        figure: file name of the forest plot beside the Markdown file, if drawn.

    Returns:
        The Markdown text.
    """
    E = md_text  # every interpolated text: run labels, directories, models, strategies, config values
    ci = f"{100 * c['settings']['ci']:.0f}%"
    a, b = c["a"], c["b"]
    out = [f"# taskdiv comparison: B = {E(b['label'])} vs A = {E(a['label'])}", "",
           f"- A: {E(a['dir'])} (generators: {E(', '.join(a['generators']))})",
           f"- B: {E(b['dir'])} (generators: {E(', '.join(b['generators']))})",
           f"- n = {c['n']}; prompts compared: {c['prompts']['shared']}"
           + (f" (intersection: {c['prompts']['only_a']} only in A, {c['prompts']['only_b']} only in B, "
              f"{c['prompts']['changed']} with changed text left out)" if c["intersect"] else "")
           + (f"; {c['prompts']['matched_by_text']} of them matched by their text (their ids differ: the runs read "
              "them from files of different names)" if c["prompts"].get("matched_by_text") else ""),
           f"- paired groups: {c['paired_groups']} (model pairs: {E(', '.join(c['pairs']))}; strategies: "
           f"{E(', '.join(c['strategies']))})",
           f"- differences are B − A, averaged over the paired groups (each of a prompt's strategies and model pairs "
           f"counts); {ci} percentile bootstrap intervals resample prompts, each with all its groups "
           f"({c['settings']['resamples']} resamples, seed {c['settings']['seed']})", ""]
    small = c.get("small_model_judges", {})
    if small.get("a") or small.get("b"):
        out += [SMALL_MODEL_NOTE, ""]
    if c["strategies_skipped"]:
        out += [f"Strategies in only one run (not compared): {E(', '.join(c['strategies_skipped']))}.", ""]
    if c["left_out"]:
        left = "; ".join(f"{E(k)}: {E(v)}" for k, v in c["left_out"].items())
        out += [f"Left out of some measures: {left}.", ""]
    judges = c.get("unique_judges") or {}
    if judges and not judges["common"]:
        out += ["The runs share no judge: each side's unique responses are the mean of its own judges, so a "
                "difference includes the change of judges.", ""]
    elif judges.get("narrowed"):
        out += [f"Unique responses: the runs' judges differ; the difference of each of the {judges['narrowed']} "
                f"paired groups is over the judges they share ({E(', '.join(judges['common']))}).", ""]
    out += ["## Verdicts (functionally unique responses)", ""] + [f"- {E(v)}" for v in c["verdicts"]] + [""]
    if figure:
        out += [f"![Paired differences of unique responses]({figure})", ""]
    out += ["## What differs between the runs' configs", ""]
    if c["config_differences"]:
        out += ["| setting | A | B |", "|---|---|---|"]
        out += [f"| {E(d['key'])} | {E(d['a'])} | {E(d['b'])} |" for d in c["config_differences"]]
    else:
        out.append("Nothing but the run directory.")
    out += ["", "## Per category", "",
            "Cells: mean of B − A over paired groups [CI] (n = prompts resampled). Means of each run are in "
            "compare.json.", "",
            "| model pair | category | unique responses | checklist quality | accuracy |", "|---|---|---|---|---|"]
    out += [f"| {E(r['pair'])} | {E(category_name(r['category']))} | {_cell(r['unique'])} | {_cell(r['quality'])} | "
            f"{_cell(r['accuracy'])} |" for r in c["by_category"]]
    out += ["", "## Per category and strategy", "",
            "| model pair | category | strategy | unique responses | checklist quality | accuracy |",
            "|---|---|---|---|---|---|"]
    out += [f"| {E(r['pair'])} | {E(category_name(r['category']))} | {E(r['strategy'])} | {_cell(r['unique'])} | "
            f"{_cell(r['quality'])} | {_cell(r['accuracy'])} |" for r in c["by_strategy"]]
    if all(r["accuracy"]["value"] is None for r in c["by_category"]):
        out += ["", "Accuracy: not measured in both runs (no accuracy table), so no difference is reported."]
    return "\n".join(out) + "\n"


def write_comparison(c: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write compare.md, compare.json and compare.png (forest plot) into `out_dir`.

    Args:
        c: from `compare_runs`.
        out_dir: the folder (created).

    Returns:
        Paths by name: "markdown", "json", "figure".
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"category": (f"{r['pair']}: " if len(c["pairs"]) > 1 else "") + r["category"], "estimate": r["unique"]}
            for r in c["by_category"]]
    paths = {"figure": out / "compare.png", "markdown": out / "compare.md", "json": out / "compare.json"}
    from engine.report.figures import compare_forest  # matplotlib: loaded when a figure is drawn

    atomic_write_bytes(paths["figure"], compare_forest(rows, label_a=c["a"]["label"], label_b=c["b"]["label"]))
    atomic_write_bytes(paths["markdown"], render_comparison(c, figure="compare.png").encode())
    atomic_write_bytes(paths["json"], orjson.dumps(c, option=orjson.OPT_INDENT_2))
    return paths
