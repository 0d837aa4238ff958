"""`python engine/run.py plan --config FILE`: what a run will cost, before it runs (engine.execution.plan).

Prints prompts, groups, model calls and token ranges per role and model, and a cost range in USD where a model's
options give prices. Loads the prompts only: no model is loaded and no network is reached. The paper's mix counts
the prompts of benchmarks not fetched yet from the preset's composition (their tokens estimated from the others')
and names the command that fetches them.
"""

from __future__ import annotations

import argparse
import json

from engine.errors import TaskdivError

from engine.cli.common import add_config_arguments, load_run_config


# The length assumed for a prompt not fetched yet when none is there to average (a typical benchmark prompt).
PLACEHOLDER_CHARS = 400
# What a prompt of each benchmark carries once fetched (its loader in engine/inputs/loaders): its gold category, and
# a stand-in gold answer where the benchmark has one, so that a prompt not fetched yet is counted as it will run —
# not classified, and checked for accuracy (SimpleQA by the grader, MATH-500 by math-verify). NoveltyBench's are B,
# C, G or H, one per prompt: the placeholders take them in turn (prompts.per_category keeps some of each). Other
# sources have none (classified, not checked).
PLACEHOLDER_GOLD: dict[str, tuple[tuple[str | None, ...], str | None]] = {
    "simpleqa": (("A",), "?"), "math500": (("D",), "?"), "macgyver": (("E",), None),
    "noveltybench": (("B", "C", "G", "H"), None)}


def _placeholder(name: str, k: int, chars: int):
    """The k-th prompt of benchmark `name` not fetched yet: `chars` long, its own text (a prompt's id is its source
    and text: equal texts would be one prompt to whatever counts by id), the benchmark's gold as it will load."""
    from engine.inputs.prompts import make_prompt

    letters, answer = PLACEHOLDER_GOLD.get(name, ((None,), None))
    tag = f" {k}"
    return make_prompt("x" * max(1, chars - len(tag)) + tag, source=name, gold_category=letters[k % len(letters)],
                       gold_answer=answer, meta={"k": k, "not_fetched": True})


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="calls, tokens and cost of a run, before it runs")
    add_config_arguments(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def cmd_plan(args: argparse.Namespace) -> int:
    from engine.execution.pipeline import load_run_prompts, refuse_groups_of_one, refuse_unclassifiable
    from engine.execution.plan import less_stored, make_plan, render_plan
    from engine.execution.results import finished_groups
    from engine.execution.preflight import check_written_config
    from engine.inputs.loaders.paper import PresetReport
    from engine.inputs.prompts import select

    config = load_run_config(args.config, args.set, allow_python_backends=args.allow_python_backends)
    # What the run would refuse in the config itself (a misspelt option, a bad price): refused here too, not planned
    # and priced as "unknown"; what this machine lacks (a key not set here) is a note.
    environment_notes = check_written_config(config)
    report = PresetReport()
    # Any error in what is there (a bad row, a prompt over max_prompt_chars) stops the plan as it would the run; only
    # sources not fetched yet are counted from the preset's composition.
    from engine.inputs.fetch import NotCached

    try:
        prompts, groups = load_run_prompts(config, report, offline=True, skip_missing=True, empty_ok=True)
    except NotCached as exc:  # offline here because plan never downloads, whatever models.offline says
        later = ("" if config.models.resolved_offline()
                 else "; the run itself would fetch it (models.offline is false)")
        raise TaskdivError(f"source {exc.name} is not fetched yet, and plan reads only what is cached (it never "
                           f"downloads){later}: run `python engine/run.py fetch {exc.name}` (or `… fetch "
                           f"{exc.name} --from DIR`) and plan again") from None
    refuse_groups_of_one(config, groups)
    refuse_unclassifiable(config, prompts)
    missing = {name: sel.asked for name, sel in report.selections.items() if sel.path is None and sel.asked}
    if missing and groups is None:
        # Not fetched yet: counted from the preset's composition, each as long as the mean prompt here (or, with
        # nothing fetched, PLACEHOLDER_CHARS).
        mean = sum(len(p.text) for p in prompts) // len(prompts) if prompts else PLACEHOLDER_CHARS
        prompts = prompts + [_placeholder(name, k, mean) for name, count in missing.items() for k in range(count)]
        prompts = select(prompts, per_category=config.prompts.per_category, limit=config.prompts.limit)
    if not prompts:
        raise TaskdivError(f"no prompts to plan for (source {config.prompts.source!r}: empty, all rows skipped or "
                           "none selected)")
    plan = make_plan(config, prompts, groups)
    stored = finished_groups(config.run_dir) if groups is None and not missing else None
    if stored is not None:  # as the run's cap check: groups stored by the last finished run are not paid again
        plan = less_stored(plan, config, prompts, *stored)
    notes = []
    if missing:
        notes.append(f"{sum(missing.values())} prompts of the paper's mix come from benchmarks not fetched yet "
                     f"({', '.join(f'{k} {v}' for k, v in missing.items())}): counted, their tokens estimated from "
                     f"the others; fetch them with `python engine/run.py fetch {' '.join(missing)}`")
    else:
        notes += report.warnings
    if report.skipped:
        notes.append(f"{len(report.skipped)} input rows skipped (on_error: skip)")
    notes += environment_notes
    cap = config.execution.max_cost_usd
    # The run refuses to start above its cap, and where a cap is set and the cost is unknown (no prices): so does
    # plan's exit code (2, as the run's), for a script or CI job that gates on it.
    within = None if cap is None or plan.cost_high is None else plan.cost_high <= cap
    refuses = cap is not None and within is not True
    if args.json:
        print(json.dumps({**plan.to_dict(), "max_cost_usd": cap, "within_cap": within, "notes": notes}, indent=2))
        return 2 if refuses else 0
    for note in notes:
        print(f"note: {note}")
    print(render_plan(plan))
    if cap is not None:
        verdict = ("unknown: some models have no prices — the run would refuse to start" if within is None
                   else "within" if within else "ABOVE — the run would refuse to start")
        print(f"execution.max_cost_usd: ${cap:,.2f} — {verdict}")
    elif any(r.prices for r in plan.roles):
        # Priced models and no cap: neither the check before the run nor the stop during it happens.
        print("execution.max_cost_usd: not set — nothing refuses this run before it starts, nor stops it when "
              "what the providers report reaches a sum; set it to your budget")
    return 2 if refuses else 0
