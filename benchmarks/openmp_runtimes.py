"""The metrics stage with torch on its own OpenMP runtime (as shipped) and on the system's (as before kernels._openmp).

The metrics stage embeds its groups' responses (torch) and computes the metric matrices (numba's parallel kernels)
in one process. Numba's OpenMP layer loads the system's libgomp; torch, imported after it, used to bind that runtime
instead of its own (both answer to the soname libgomp.so.1) and ran several times slower. kernels._openmp loads
torch's runtime first. Each variant runs in a fresh process, one after the other: the same groups (DARLING train
responses, 5 to a group), the same batches as a run's shards; the "system runtime" variant loads the system's libgomp
by hand before anything else, which recreates the old order exactly.

    .venv/bin/python benchmarks/openmp_runtimes.py                # 80 groups of 5, 8 batches
    .venv/bin/python benchmarks/openmp_runtimes.py --groups 40

Prints a table (seconds in the stage, start-up), the ratio and the machine's load. (Which runtime torch holds is
tested in tests/kernels/test_openmp.py.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT.parent / "shared" / "datasets" / "darling_equivalence_pairs" / "train.jsonl"

CHILD = r"""
import ctypes, json, sys, time
system = sys.argv[1]
if system:
    ctypes.CDLL(system, mode=ctypes.RTLD_GLOBAL)
t0 = time.perf_counter()
from engine.stages.metrics import MetricsStage
from engine.inputs.labelled_pairs import load_pairs
groups_n, per_batch = int(sys.argv[3]), int(sys.argv[4])
texts = [t for p in load_pairs(sys.argv[2]) for t in (p.response_a, p.response_b)][: groups_n * 5]
groups = [texts[i:i + 5] for i in range(0, len(texts), 5)]
stage = MetricsStage({"backend": "local", "model": "all-minilm-l6-v2", "options": {}})
t1 = time.perf_counter()
for b in range(0, len(groups), per_batch):
    rows = [{"responses": g, "prompt_id": f"p{b + i}", "model": "m", "strategy": "s"}
            for i, g in enumerate(groups[b:b + per_batch])]
    list(stage.process(rows))
t2 = time.perf_counter()
print(json.dumps({"stage_s": t2 - t1, "start_s": t1 - t0, "groups": len(groups)}))
"""


def run(system: str, groups: int, per_batch: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, system, str(PAIRS), str(groups), str(per_batch)], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the benchmark's child process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=80)
    parser.add_argument("--per-batch", type=int, default=10, help="groups per stage call (a shard)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from kernels._openmp import system_openmp_path, torch_openmp_path

    system = system_openmp_path()
    if torch_openmp_path() is None or system is None:
        print("nothing to compare here: torch carries no libgomp.so.1 of its own, or there is no system libgomp")
        return 0
    if not PAIRS.is_file():
        raise SystemExit(f"needs the DARLING pairs at {PAIRS}")
    load_before = os.getloadavg()
    shipped = run("", args.groups, args.per_batch)
    old = run(str(system), args.groups, args.per_batch)
    load_after = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs; load average {load_before[0]:.2f} at start, {load_after[0]:.2f} at end")
    print(f"{shipped['groups']} groups of 5 responses, {args.per_batch} groups per call\n")
    print(f"{'variant':<44}{'stage s':>10}{'start s':>10}")
    for name, r in (("shipped (torch's runtime loaded first)", shipped), ("system runtime first (before the fix)", old)):
        print(f"{name:<44}{r['stage_s']:>10.1f}{r['start_s']:>10.1f}")
    print(f"\nratio system-first / shipped: {old['stage_s'] / shipped['stage_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
