"""How many judge calls union-find pruning saves: synthetic equivalence structures and a real run's responses.

    .venv/bin/python benchmarks/judging.py                       # synthetic structures + runs/demo if present
    .venv/bin/python benchmarks/judging.py --groups 50           # 50 synthetic groups per row (the README's table)
    .venv/bin/python benchmarks/judging.py --run-dir runs/demo   # per judge and category, on a run's responses

Synthetic: for n responses split into k classes (random sizes, seeded), a judge consistent with the partition is
driven through the real judging program (engine.method.judges.judge_group) with pruning on and off. With pruning
the calls must equal the certificate minimum (n − k) + Σ_{a<b} |C_a||C_b|; the table prints calls, the share saved,
and checks the minimum.

On a run: (1) what the run's own judges made and saved (components table), per judge and category; (2) the same
responses re-judged by the calibrated judge (its features from the responses and their embeddings, no LLM), pruned vs
all pairs, per category — a judge with real structure, where the demo's 135M judge says "equivalent" to nearly
everything. A pair the calibrated judge gives no probability (a response outside the Latin script it reads, a
non-finite feature) is counted unresolved, as a calibrated judge alone leaves it.

Prints the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.base import ChatOutput, SamplingParams  # noqa: E402
from engine.config import JudgeConfig  # noqa: E402
from engine.method.judges import judge_group  # noqa: E402
from engine.method.programs import drive  # noqa: E402

SAMPLING = SamplingParams(temperature=0.0, max_tokens=1, logprobs=20)


class PartitionJudge:
    """YES iff the two responses (named "r<class>-<k>") are in the same class; log-probs like a real judge."""

    name = "partition"

    def __init__(self) -> None:
        self.calls = 0

    def chat(self, conversations, sampling):
        outs = []
        for conv in conversations:
            self.calls += 1
            text = conv[1]["content"]
            a = text.split('Response 1:\n"""')[1].split("-")[0]
            b = text.split('Response 2:\n"""')[1].split("-")[0]
            same = a == b
            outs.append(ChatOutput(texts=["YES" if same else "NO"],
                                   first_token_logprobs=[{"YES": -0.01, "NO": -5.0} if same else
                                                         {"YES": -5.0, "NO": -0.01}]))
        return outs

    def close(self) -> None:
        pass


@dataclass
class SyntheticRow:
    n: int
    k: int
    groups: int
    all_pairs: int
    pruned: int
    minimum: int
    seconds: float

    @property
    def saved(self) -> float:
        return 1 - self.pruned / self.all_pairs if self.all_pairs else 0.0


def synthetic(n: int, k: int, groups: int, seed: int) -> SyntheticRow:
    rng = random.Random(f"{seed}/{n}/{k}")
    programs, minimum = [], 0
    for _ in range(groups):
        labels = list(range(k)) + [rng.randrange(k) for _ in range(n - k)]  # every class non-empty
        rng.shuffle(labels)
        responses = [f"r{c}-{i}" for i, c in enumerate(labels)]
        sizes = [labels.count(c) for c in range(k)]
        minimum += (n - k) + sum(a * b for a, b in itertools.combinations(sizes, 2))
        programs.append(judge_group("G", "p", responses, JudgeConfig(), SAMPLING))
    judge = PartitionJudge()
    start = time.perf_counter()
    drive(judge, programs)
    seconds = time.perf_counter() - start
    return SyntheticRow(n, k, groups, groups * n * (n - 1) // 2, judge.calls, minimum, seconds)


def synthetic_table(groups: int, seed: int) -> str:
    lines = ["| n | k | groups | all pairs | pruned calls | saved | = minimum | s |",
             "|---|---|---|---|---|---|---|---|"]
    for n in (5, 10, 20, 50):
        for k in sorted({1, 2, max(1, n // 4), max(1, n // 2), n}):
            r = synthetic(n, k, groups, seed)
            lines.append(f"| {n} | {k} | {r.groups} | {r.all_pairs} | {r.pruned} | {r.saved:.0%} | "
                         f"{'yes' if r.pruned == r.minimum else 'NO'} | {r.seconds:.2f} |")
    return "\n".join(lines)


class NoProbability:
    """The "LLM" behind the calibrated judge's empty cascade band: asked only about the pairs the calibrated judge gives
    no probability (NaN: a response outside the Latin script it reads, a non-finite feature), which it answers with
    a row error, so that such a pair stays unresolved, as the calibrated judge alone leaves it."""

    name = "no-llm"

    def __init__(self) -> None:
        self.calls = 0

    def chat(self, conversations, sampling):
        self.calls += len(conversations)
        return [ChatOutput(error="no probability from the calibrated judge") for _ in conversations]

    def close(self) -> None:
        pass


def own_judges_table(comps: list[dict]) -> list[str]:
    """The run's own judges (components rows), one row per (judge, category): every judge of a run judges every
    group, so grouping by category alone would add the judges' groups and pairs together."""
    by_judge_cat: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for c in comps:
        by_judge_cat[(c["judge"] or "?", c["judge_category"] or "?")].append(c)
    lines = ["| judge | category | groups | pairs | calls made | calls saved | saved |",
             "|---|---|---|---|---|---|---|"]
    for (judge, cat), cs in sorted(by_judge_cat.items()):
        pairs = sum(c["n_responses"] * (c["n_responses"] - 1) // 2 for c in cs)
        made, saved = sum(c["calls_made"] for c in cs), sum(c["calls_saved"] for c in cs)
        lines.append(f"| {judge} | {cat} | {len(cs)} | {pairs} | {made} | {saved} | "
                     f"{saved / max(1, made + saved):.0%} |")
    return lines


def calibrated_alone() -> JudgeConfig:
    """Judge settings under which the calibrated judge alone decides, through the judging program: a cascade band
    empty between its ends decides every pair with a probability (p < 0.5 "different", p >= 0.5 "equivalent", at
    the threshold 0.5); the config needs low < threshold <= high, hence low just below 0.5."""
    from engine.config import from_dict

    return from_dict(JudgeConfig, {"cascade": {"enabled": True, "low": math.nextafter(0.5, 0.0), "high": 0.5,
                                               "audit_rate": 0.0}})


def rejudged_table(groups: list[tuple[str | None, list[str], Any]]) -> list[str]:
    """(category, responses, P(equivalent) per pair as CalibratedJudge.score_groups gives it) per group → the
    calibrated judge's pruned judgments per category; pairs without a probability are counted unresolved."""
    from engine.method.calibrated import pair_lookup

    settings, no_llm = calibrated_alone(), NoProbability()
    per_cat = defaultdict(lambda: [0, 0, 0, 0])  # pairs, pruned judgments, unresolved, groups
    for cat, texts, scores in groups:
        n = len(texts)
        (g,) = drive(no_llm, [judge_group(cat, "p", texts, settings, SAMPLING, cheap=pair_lookup(scores, n))])
        row = per_cat[cat or "?"]
        row[0] += n * (n - 1) // 2
        row[1] += len(g.pairs)
        row[2] += g.n_unresolved
        row[3] += 1
    lines = ["| category | groups | all pairs | pruned judgments | unresolved | saved |", "|---|---|---|---|---|---|"]
    for cat, (pairs, pruned, unresolved, n_groups) in sorted(per_cat.items()):
        lines.append(f"| {cat} | {n_groups} | {pairs} | {pruned} | {unresolved} | {1 - pruned / max(1, pairs):.0%} |")
    return lines


def run_tables(run_dir: Path) -> str:
    import pyarrow.parquet as pq

    from actors.registry import make_embedder
    from engine.method.calibrated import CalibratedJudge

    comps = pq.read_table(run_dir / "components.parquet").to_pylist()
    lines = [f"Run {run_dir}: the run's own judges", "", *own_judges_table(comps)]
    groups = {(g["prompt_id"], g["model"], g["strategy"]): g
              for g in pq.read_table(run_dir / "groups.parquet").to_pylist()}
    prompts = {p["prompt_id"]: p["text"] for p in pq.read_table(run_dir / "prompts.parquet").to_pylist()}
    responses = defaultdict(list)
    for r in pq.read_table(run_dir / "responses.parquet").to_pylist():
        responses[(r["prompt_id"], r["model"], r["strategy"])].append(r["text"])
    cheap = CalibratedJudge.load()
    keys = [k for k, texts in responses.items() if len(texts) >= 2 and k in groups]
    cats = [groups[k]["category"] for k in keys]
    scored = cheap.score_groups(make_embedder("local", cheap.embedder).embed, [prompts[k[0]] for k in keys],
                                [responses[k] for k in keys], cats)
    lines += ["", "The same responses re-judged by the calibrated judge (no LLM), pruned vs all pairs; unresolved: "
              "pairs it gives no probability (or without an answer)", "",
              *rejudged_table([(cat, responses[k], scores) for k, cat, scores in zip(keys, cats, scored)])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/demo"), help="a finished run (default runs/demo)")
    parser.add_argument("--groups", type=int, default=200, help="synthetic groups per (n, k)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs; load average {load_before[0]:.2f} at start\n")
    print("Synthetic structures: a judge consistent with k classes among n responses\n")
    print(synthetic_table(args.groups, args.seed))
    if (args.run_dir / "components.parquet").is_file():
        print()
        print(run_tables(args.run_dir))
    else:
        print(f"\n(no finished run at {args.run_dir}: run `make demo` for the per-category table)")
    print(f"\nload average {load_before[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
