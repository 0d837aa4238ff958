"""One load per model per run, measured: the same run with models shared across stages (the default) and with one
set of workers per stage (how the executor ran before: each stage's Ray Data actor pool loaded its model again).

Both runs use the embedded default's model (SmolLM2-135M on transformers) as generator and judge and the packaged
embedder, on an embedded Ray, with the same prompts, strategies and seeds, one after the other, each in a fresh
process (imports and first use paid alike by both: in one process the first run paid them) and a fresh run
directory. The per-stage run is the current engine with `StagePlan.host_key` returning the stage's
label, so every stage starts (and stops) its own hosts — the old behaviour, not a model of it.

    .venv/bin/python benchmarks/model_loads.py                 # 2 built-in prompts, n = 3, all strategies
    .venv/bin/python benchmarks/model_loads.py --prompts 4 --n 5

Prints a table (loads, seconds spent loading, wall time per run), the ratio of wall times, and the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def run_once(run_dir: Path, prompts: int, n: int, per_stage: bool) -> tuple[float, dict[str, float], int]:
    from engine.config import config_from_dict
    from engine.execution.executor import RayExecutor, StagePlan
    from engine.execution.pipeline import Pipeline

    model = {"name": "smollm2-135m", "backend": "local", "model": "smollm2-135m", "batch_size": 64}
    cfg = config_from_dict({
        "run_dir": str(run_dir), "prompts": {"source": "builtin", "limit": prompts}, "n": n,
        "generators": [model], "judges": [model], "sampling": {"max_tokens": 12},
        "judge": {"max_response_chars": 200}, "quality": {"checklist_max_tokens": 40},
        "execution": {"executor": "ray", "shard_size": 1},
    })
    original = StagePlan.host_key
    if per_stage:
        StagePlan.host_key = lambda self: f"{self.label}"  # one set of hosts per stage, released after it
    pipeline = Pipeline(cfg, executor=RayExecutor(), progress=False)
    try:
        start = time.perf_counter()
        result = pipeline.run()
        wall = time.perf_counter() - start
    finally:
        pipeline.close()
        StagePlan.host_key = original
    stages = sum(1 for r in result.stages if r.rows)
    return wall, result.model_load_s, stages


def run_in_fresh_process(run_dir: Path, prompts: int, n: int, per_stage: bool) -> tuple[float, dict, int]:
    """run_once in a new Python process (this script with --one)."""
    command = [sys.executable, __file__, "--one", "per-stage" if per_stage else "shared", "--run-dir", str(run_dir),
               "--prompts", str(prompts), "--n", str(n)]
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the {'per-stage' if per_stage else 'shared'} run failed (exit {done.returncode})")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["wall"], out["loads"], out["stages"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--one", choices=("shared", "per-stage"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:  # one variant, in this (fresh) process: its figures as JSON on the last line
        wall, loads, stages = run_once(args.run_dir, args.prompts, args.n, args.one == "per-stage")
        print(json.dumps({"wall": wall, "loads": loads, "stages": stages}))
        return 0
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="taskdiv-loads-") as tmp:
        for label, per_stage in (("shared (default)", False), ("per stage (before)", True)):
            wall, loads, stages = run_in_fresh_process(Path(tmp) / label.split()[0], args.prompts, args.n, per_stage)
            rows.append((label, stages, loads, wall))
    load_after = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs; load average {load_before[0]:.2f} at start, {load_after[0]:.2f} at end")
    print(f"run: {args.prompts} built-in prompts, n = {args.n}, all strategies, SmolLM2-135M (transformers) as "
          "generator and judge, packaged embedder, embedded Ray; each variant in a fresh process\n")
    print("| workers | stages that ran | model loads | seconds loading | wall s |")
    print("|---|---:|---:|---:|---:|")
    for label, stages, loads, wall in rows:
        each = "; ".join(f"{k.split(':')[0]} x{len(v)}" for k, v in sorted(loads.items()))
        print(f"| {label} | {stages} | {sum(len(v) for v in loads.values())} ({each}) | "
              f"{sum(sum(v) for v in loads.values()):.1f} | {wall:.1f} |")
    shared, per_stage = rows[0][3], rows[1][3]
    print(f"\nwall time ratio shared / per stage: {shared / per_stage:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
