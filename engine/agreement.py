"""`python engine/run.py agreement`: how often a judge agrees with human labels on response pairs.

    python engine/run.py agreement --pairs ../shared/datasets/darling_equivalence_pairs/val.jsonl --judge calibrated
    python engine/run.py agreement --pairs val.jsonl --judge smollm2-135m            # a judge of the demo config
    python engine/run.py agreement --pairs val.jsonl --config run.yaml --judge gpt-4o
    python engine/run.py agreement --pairs val.jsonl --config run.yaml --judge cascade:gpt-4o

Reports accuracy, Cohen's κ, the confusion matrix and a per-category breakdown (pairs without a category are
counted under "none"). An LLM judge's unparseable verdicts are counted and left out of accuracy and κ, never
counted as "different". The LLM judge runs in this process with the run config's judge settings (both orders,
response cut, cascade thresholds); use `--limit` for a quick look.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from engine.calibrate import scores
from engine.errors import ConfigError
from engine.labelled_pairs import LabelledPair, load_pairs, noveltybench_categories


def calibrated_probabilities(pairs: list[LabelledPair], coefficients: str | None, embedder: str) -> np.ndarray:
    from engine.calibrate import featurize
    from engine.calibrated import CalibratedJudge

    judge = CalibratedJudge.load(coefficients)
    if judge.embedder != embedder:
        raise ConfigError(f"the coefficients were fitted with embedder {judge.embedder!r}, not {embedder!r}")
    return judge.predict(featurize(pairs, embedder), [p.category for p in pairs])


def llm_probabilities(pairs: list[LabelledPair], model_spec: dict[str, Any], settings: dict[str, Any],
                      batch_size: int, cheap: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """P(equivalent) from an LLM judge (NaN where unparsed); with `cheap`, the cascade decides confident pairs."""
    from actors.base import SamplingParams
    from actors.registry import make_chat_backend
    from engine.judges import JudgeSettings, judge_pair
    from engine.stages.base import DriveStats, drive

    judge_settings = JudgeSettings(**settings)
    sampling = SamplingParams(temperature=0.0, max_tokens=judge_settings.max_tokens, logprobs=20)
    backend = make_chat_backend(model_spec["backend"], model_spec["model"], model_spec.get("options"))
    out = np.full(len(pairs), np.nan)
    todo = list(range(len(pairs)))
    if cheap is not None:
        c = judge_settings.cascade
        confident = [k for k in todo if cheap[k] <= c.low or cheap[k] >= c.high]
        out[confident] = cheap[confident]
        todo = [k for k in todo if k not in set(confident)]
    stats = DriveStats()
    try:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            programs = [judge_pair(pairs[k].category, pairs[k].prompt, pairs[k].response_a, pairs[k].response_b,
                                   judge_settings, sampling) for k in chunk]
            for k, verdict in zip(chunk, drive(backend, programs, stats)):
                out[k] = np.nan if verdict.p_equivalent is None else verdict.p_equivalent
    finally:
        backend.close()
    return out, {"llm_pairs": len(todo), "cheap_pairs": len(pairs) - len(todo), "llm_calls": stats.calls}


def agreement_report(pairs: list[LabelledPair], p: np.ndarray, threshold: float) -> dict[str, Any]:
    labels = np.array([int(x.equivalent) for x in pairs])
    parsed = ~np.isnan(p)
    report = {"pairs": len(pairs), "unparsed": int((~parsed).sum()), "threshold": threshold,
              **scores(labels[parsed], p[parsed], threshold)}
    by_category: dict[str, list[int]] = defaultdict(list)
    for k, pair in enumerate(pairs):
        if parsed[k]:
            by_category[pair.category or "none"].append(k)
    report["by_category"] = {
        cat: {"n": len(ks), "accuracy": float(((p[ks] >= threshold).astype(int) == labels[ks]).mean()),
              "human_equivalent_rate": float(labels[ks].mean())}
        for cat, ks in sorted(by_category.items())
    }
    return report


def render(report: dict[str, Any], judge: str) -> str:
    def fmt(x):
        return "–" if x is None else f"{x:.3f}"

    (tn, fp), (fn, tp) = report["confusion"]
    lines = [
        f"judge {judge}: {report['pairs']} pairs, {report['unparsed']} unparsed",
        f"  accuracy {fmt(report['accuracy'])}   Cohen's κ {fmt(report['kappa'])}   AUC {fmt(report['auc'])}",
        "  confusion (rows: human, columns: judge)      judge different   judge equivalent",
        f"    human different                         {tn:>15}   {fp:>16}",
        f"    human equivalent                        {fn:>15}   {tp:>16}",
        "  by category:",
    ]
    lines += [f"    {cat:<5} n={v['n']:<4} accuracy {fmt(v['accuracy'])}  (humans: {v['human_equivalent_rate']:.0%} "
              "equivalent)" for cat, v in report["by_category"].items()]
    if "llm_calls" in report:
        cheap = f"; the calibrated judge decided {report['cheap_pairs']}" if report["judge"].startswith("cascade:") else ""
        lines.append(f"  LLM calls: {report['llm_calls']} for {report['llm_pairs']} pairs{cheap}")
    return "\n".join(lines)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agreement", help="agreement of a judge with human labels on response pairs")
    p.add_argument("--pairs", required=True, help="labelled pairs (ours or the DARLING format)")
    p.add_argument("--judge", default="calibrated",
                   help="'calibrated', a judge name from --config, or 'cascade:NAME' (default: calibrated)")
    p.add_argument("--config", type=Path, default=None, help="run config holding the judges (default: the demo)")
    p.add_argument("--noveltybench", default=None, help="NoveltyBench curated.jsonl, for categories of curated ids")
    p.add_argument("--coefficients", default=None, help="calibrated-judge coefficients (default: the shipped ones)")
    p.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    p.add_argument("--out", default=None, help="write the report as JSON here")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")


def cmd_agreement(args: argparse.Namespace) -> int:
    from engine.cli import DEMO_CONFIG, _parse_set
    from engine.config import load_config

    config = load_config(args.config or DEMO_CONFIG, _parse_set(args.set))
    categories = noveltybench_categories(args.noveltybench) if args.noveltybench else None
    pairs = load_pairs(args.pairs, categories=categories)[: args.limit]
    settings = {**_asdict(config.judge)}
    extra: dict[str, int] = {}
    if args.judge == "calibrated":
        p = calibrated_probabilities(pairs, args.coefficients, config.embedder.model)
    else:
        name = args.judge.removeprefix("cascade:")
        judges = {j.name: j for j in config.judges}
        if name not in judges:
            raise ConfigError(f"--judge {name!r}: not a judge of the config (judges: {', '.join(judges)}; "
                              "or use 'calibrated')")
        cheap = None
        if args.judge.startswith("cascade:"):
            cheap = calibrated_probabilities(pairs, args.coefficients or config.judge.cascade.coefficients,
                                             config.embedder.model)
        p, extra = llm_probabilities(pairs, judges[name].spec(), settings, judges[name].batch_size, cheap)
    report = {**agreement_report(pairs, p, config.judge.threshold), **extra, "judge": args.judge,
              "pairs_file": str(args.pairs)}
    print(render(report, args.judge))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _asdict(obj) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(obj)
