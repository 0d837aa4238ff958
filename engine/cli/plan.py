"""`python engine/run.py plan --config FILE`: what a run will cost, before it runs (engine.execution.plan).

Prints prompts, groups, model calls and token ranges per role and model, and a cost range in USD where a model's
options give prices. Loads the prompts only: no model is loaded and no network is reached.
"""

from __future__ import annotations

import argparse
import json

from engine.cli.common import add_config_arguments, load_run_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="calls, tokens and cost of a run, before it runs")
    add_config_arguments(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def cmd_plan(args: argparse.Namespace) -> int:
    from engine.execution.pipeline import load_run_prompts
    from engine.execution.plan import make_plan, render_plan
    from engine.inputs.loaders.paper import PresetReport

    config = load_run_config(args.config, args.set)
    report = PresetReport()
    prompts, groups = load_run_prompts(config, report)
    plan = make_plan(config, prompts, None if groups is None else len(groups))
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    else:
        for warning in report.warnings:
            print(f"note: {warning}")
        if report.skipped:
            print(f"note: {len(report.skipped)} input rows skipped (on_error: skip)")
        print(render_plan(plan))
        cap = config.execution.max_cost_usd
        if cap is not None:
            high = plan.cost_high
            verdict = ("unknown: some models have no prices" if high is None
                       else "within" if high <= cap else "ABOVE — the run would refuse to start")
            print(f"execution.max_cost_usd: ${cap:,.2f} — {verdict}")
    return 0
