"""`python engine/run.py agreement`: how often a judge agrees with human labels on response pairs.

    python engine/run.py agreement --pairs ../shared/datasets/darling_equivalence_pairs/val.jsonl \
        --noveltybench ../shared/datasets/noveltybench/curated.jsonl --judge calibrated    # as calibrate scores val
    python engine/run.py agreement --pairs val.jsonl --judge smollm2-135m            # a judge of the demo config
    python engine/run.py agreement --pairs val.jsonl --config run.yaml --judge gpt-4o
    python engine/run.py agreement --pairs val.jsonl --config run.yaml --judge cascade:gpt-4o

Reports accuracy, Cohen's κ and AUC (with percentile bootstrap 95% intervals: --resamples, default 1000), the
confusion matrix and a per-category breakdown (engine.method.agreement).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from engine.cli.common import add_config_arguments, file_digest, load_run_config, output_path
from engine.config import MAX_BOOTSTRAP_RESAMPLES
from engine.errors import ConfigError
from engine.execution.preflight import check_role
from engine.inputs.labelled_pairs import load_pairs, noveltybench_categories
from engine.method.agreement import agreement_report, calibrated_probabilities, llm_probabilities, non_latin


def fitted_on_these(coefficients: str | None, pairs_file: str) -> bool:
    """Whether the calibrated judge's coefficients were fitted on this very file (its sha256, as `calibrate` records
    it): a score there is in-sample (the shipped judge's κ is 0.53 on its train pairs, 0.44 on val)."""
    from engine.method.calibrated import CalibratedJudge

    fitted = (CalibratedJudge.load(coefficients).provenance or {}).get("fitted_on") or {}
    return fitted.get("sha256") == file_digest(pairs_file)


def _split(report: dict[str, Any]) -> str:
    split = report.get("order_split", 0)
    return (f" ({split} of them split by the two orders — one each way, no verdict — and left out of the scores)"
            if split else "")


def _no_answer(report: dict[str, Any]) -> str:
    empty = report.get("no_answer", 0)
    return f", {empty} with an empty response (not judged, as in a run)" if empty else ""


def _non_latin(report: dict[str, Any]) -> str:
    unread = report.get("non_latin", 0)
    return (f", {unread} with a response outside the Latin script (the calibrated judge does not score them, as in a "
            "run) — left out of the scores" if unread else "")


def _bootstrap(report: dict[str, Any]) -> list[str]:
    """A line when the bootstrap kept fewer resamples than asked (one holding one class has no κ or AUC)."""
    asked, used = report.get("resamples"), report.get("resamples_used")
    if asked is None or used is None or (used == asked and not report.get("ci95_note")):
        return []
    return [f"  bootstrap: {used} of {asked} resamples held both classes"
            + (f"; {report['ci95_note']}" if report.get("ci95_note") else "")]


def render(report: dict[str, Any], judge: str) -> str:
    def fmt(x):
        return "–" if x is None else f"{x:.3f}"

    if not report["n"]:  # no pair's verdict could be read: nothing to score, the calls still counted
        lines = [f"judge {judge}: {report['pairs']} pairs, {report['unparsed']} unparsed{_split(report)}"
                 f"{_no_answer(report)}{_non_latin(report)} — no verdict to score"]
        if "llm_calls" in report:
            lines.append(f"  LLM calls: {report['llm_calls']} for {report['llm_pairs']} pairs{_cost(report)}")
        return "\n".join(lines)

    def interval(key):
        ci = report.get(f"{key}_ci95")
        return f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""

    (tn, fp), (fn, tp) = report["confusion"]
    lines = ([f"IN-SAMPLE: the calibrated judge was fitted on these very pairs ({report['pairs_file']}); these "
              "numbers overstate it — score held-out pairs (the DARLING val.jsonl) instead"]
             if report.get("in_sample") else []) + [
        f"judge {judge}: {report['pairs']} pairs, {report['unparsed']} unparsed{_split(report)}{_no_answer(report)}"
        f"{_non_latin(report)}",
        f"  accuracy {fmt(report['accuracy'])}   Cohen's κ {fmt(report['kappa'])}{interval('kappa')}   "
        f"AUC {fmt(report['auc'])}{interval('auc')}",
        *_bootstrap(report),
        "  confusion (rows: human, columns: judge)      judge different   judge equivalent",
        f"    human different                         {tn:>15}   {fp:>16}",
        f"    human equivalent                        {fn:>15}   {tp:>16}",
        "  by category:",
    ]
    lines += [f"    {cat:<5} n={v['n']:<4} accuracy {fmt(v['accuracy'])}  (humans: {v['human_equivalent_rate']:.0%} "
              "equivalent)" for cat, v in report["by_category"].items()]
    if "llm_calls" in report:
        cascade = report["judge"].startswith("cascade:")
        unread = report.get("cheap_non_latin", 0)
        cheap = (f"; the calibrated judge decided {report['cheap_pairs']}"
                 + (f" ({unread} outside the Latin script went to the LLM, as in a run)" if unread else "")
                 if cascade else "")
        lines.append(f"  LLM calls: {report['llm_calls']} for {report['llm_pairs']} pairs{cheap}{_cost(report)}")
    return "\n".join(lines)


def _cost(report: dict[str, Any]) -> str:
    """The judge's spending, where its endpoint's options.prices price it (a lower bound where replies came without
    token counts, as in a run)."""
    cost = report.get("cost_usd")
    return "" if cost is None else f"; cost ${cost:,.4f}"


def check_agreement_cost(config: Any, judge: Any, pairs: list) -> None:
    """Refuse before the first call where execution.max_cost_usd is set and the judge may spend more on these pairs
    (engine.execution.plan.agreement_plan: every answered pair, both orders where asked, each verdict asked twice),
    or its cost is unknown (an API judge without options.prices) — as a run's preflight does."""
    from engine.execution.plan import agreement_plan

    cap = config.execution.max_cost_usd
    if cap is None:
        return
    bound = agreement_plan(config, judge, pairs)
    high = bound.cost(True)
    if high is None:
        raise ConfigError(f"execution.max_cost_usd: judge {judge.name}'s cost is unknown (no options.prices), so "
                          f"its {bound.calls_high} calls at most cannot be held under ${cap:,.2f}; give it "
                          "options.prices, or set execution.max_cost_usd to null")
    if high > cap:
        raise ConfigError(f"execution.max_cost_usd: judging these {len(pairs)} pairs with {judge.name} may cost up to "
                          f"${high:,.2f} ({bound.calls_high} calls, {bound.input_tokens_high:,} input tokens at "
                          f"most), over the cap ${cap:,.2f}; nothing was judged. --limit N judges the first N pairs")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agreement", help="agreement of a judge with human labels on response pairs")
    p.add_argument("--pairs", required=True, help="labelled pairs (ours or the DARLING format)")
    p.add_argument("--judge", default="calibrated",
                   help="'calibrated', a judge name from --config, or 'cascade:NAME' (default: calibrated)")
    add_config_arguments(p, help_config="run config holding the judges (default: the demo)")
    p.add_argument("--noveltybench", default=None, help="NoveltyBench curated.jsonl, for categories of curated ids")
    p.add_argument("--coefficients", default=None, help="calibrated-judge coefficients (default: the shipped ones)")
    p.add_argument("--limit", type=int, default=None, help="only the first N pairs (N >= 1)")
    p.add_argument("--out", default=None, help="write the report as JSON here")
    p.add_argument("--resamples", type=int, default=1000,
                   help="bootstrap resamples for the 95%% intervals of κ and AUC (0: none; default 1000)")


def cmd_agreement(args: argparse.Namespace) -> int:
    # Every argument is checked before a judge is asked: a mistake found after judging would lose the calls.
    if not 0 <= args.resamples <= MAX_BOOTSTRAP_RESAMPLES:  # a huge count stalled after the paid calls
        raise ConfigError(f"--resamples must be between 0 and {MAX_BOOTSTRAP_RESAMPLES:,}, got {args.resamples}")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be 1 or more, got {args.limit}")
    if args.out:
        output_path(args.out)
    config = load_run_config(args.config, args.set, allow_python_backends=args.allow_python_backends)
    categories = noveltybench_categories(args.noveltybench) if args.noveltybench else None
    pairs = load_pairs(args.pairs, categories=categories)[: args.limit]
    if not pairs:
        raise ConfigError(f"--pairs {args.pairs}: no labelled pairs in the file")
    extra: dict[str, int] = {}
    unscored = None
    if args.judge == "calibrated":
        p = calibrated_probabilities(pairs, args.coefficients, config.embedder.model)
        unscored = non_latin(pairs)  # NaN in p: not scored, counted apart (not "unparsed")
    else:
        name = args.judge.removeprefix("cascade:")
        judges = {j.name: j for j in config.judges}
        if name not in judges:
            raise ConfigError(f"--judge {name!r}: not a judge of the config (judges: {', '.join(judges)}; "
                              "or use 'calibrated')")
        if judges[name].backend == "calibrated":
            raise ConfigError(f"--judge {name!r} is the calibrated judge: use --judge calibrated "
                              f"(--coefficients {judges[name].model} for its file)")
        # The judge's preflight, as a run's (its model resolvable, its key set, its options known): a bad one is a
        # message naming the config key, not a traceback from the backend's constructor.
        k = [j.name for j in config.judges].index(name)
        check_role(f"judges[{k}]", "chat", judges[name].backend, judges[name].model, judges[name].options,
                   config.models.resolved_offline())
        check_agreement_cost(config, judges[name], pairs)
        cheap = None
        if args.judge.startswith("cascade:"):
            cheap = calibrated_probabilities(pairs, args.coefficients or config.judge.cascade.coefficients,
                                             config.embedder.model, cascade=True)
        p, extra = llm_probabilities(pairs, judges[name].spec(), config.judge, judges[name].batch_size, cheap)
        if cheap is not None:  # NaN in `cheap`, so the LLM judged them (their verdicts are in the scores)
            extra["cheap_non_latin"] = int(non_latin(pairs).sum())
    report = {**agreement_report(pairs, p, config.judge.threshold, args.resamples, unscored), **extra,
              "judge": args.judge, "pairs_file": str(args.pairs)}
    if args.judge == "calibrated" or args.judge.startswith("cascade:"):
        coefficients = args.coefficients or (config.judge.cascade.coefficients if args.judge != "calibrated" else None)
        report["in_sample"] = fitted_on_these(coefficients, args.pairs)
    print(render(report, args.judge))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0
