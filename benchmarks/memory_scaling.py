"""Memory flat in prompt count: the peak memory of a run with 10x the prompts, against the 1x run.

Each size runs in a fresh process (`--one N`), so its peak resident memory (getrusage's ru_maxrss: the driver with
every model it holds, the local executor running the stages in-process) is its own. The generator and the judge are
an API model: the loopback OpenAI-compatible server (tests/support/serve.py, started by this script, so its memory
is not counted) with the scripted backend; the embedder is the packaged MiniLM, in-process. Prompts are distinct
texts drawn from the built-in set with a numbered suffix; all five strategies' machinery runs on two of them
(temperature and in-context regeneration), n = 5, with checklists, grades and accuracy.

    .venv/bin/python benchmarks/memory_scaling.py                 # 100 and 1,000 prompts
    .venv/bin/python benchmarks/memory_scaling.py --base 40       # 40 and 400

Prints a table (prompts, groups, responses, judge pairs, wall s, peak RSS), the ratio of the peaks (goal ≤ 1.15)
and the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def write_prompts(path: Path, count: int) -> None:
    import orjson

    from engine.inputs.prompts import BUILTIN_PATH

    base = [orjson.loads(line) for line in Path(BUILTIN_PATH).read_text().splitlines() if line.strip()]
    with path.open("wb") as f:
        for k in range(count):
            p = dict(base[k % len(base)])
            p.pop("id", None)
            p.pop("prompt_id", None)
            p["text"] = f"{p['text']} (variant {k})"
            f.write(orjson.dumps(p) + b"\n")


def one(count: int, url: str, tmp: Path) -> dict:
    """Run `count` prompts in this process; its peak RSS and the run's sizes."""
    from engine.config import config_from_dict
    from engine.execution.executor import LocalExecutor
    from engine.execution.pipeline import Pipeline

    prompts = tmp / f"prompts-{count}.jsonl"
    write_prompts(prompts, count)
    model = {"name": "api", "backend": "http", "model": "api-judge", "batch_size": 32,  # the name the server serves
             "options": {"base_url": url, "max_concurrency": 32}}
    cfg = config_from_dict({
        "run_dir": str(tmp / f"run-{count}"), "prompts": {"source": "jsonl", "path": str(prompts)}, "n": 5,
        "strategies": ["temperature", "regen_general"], "generators": [model], "judges": [model],
        "models": {"offline": True}, "execution": {"executor": "local", "shard_size": 16},
    })
    pipeline = Pipeline(cfg, executor=LocalExecutor(), progress=False)
    start = time.perf_counter()
    try:
        result = pipeline.run()
    finally:
        pipeline.close()
    failed = result.failed_shards()
    if failed:
        raise SystemExit(f"the {count}-prompt run left failed shards: {failed}")
    t = result.tables
    return {"prompts": count, "groups": t["samples"].num_rows, "responses": t["responses"].num_rows,
            "pairs": t["judgments"].num_rows, "wall_s": time.perf_counter() - start,
            "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=int, default=100, help="prompts of the 1x run (the other has 10x)")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.url, Path(args.tmp))))
        return 0

    from benchmarks.overlap import start_judge_server

    load_before = os.getloadavg()
    server, url = start_judge_server(0.0)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="taskdiv-memory-") as tmp:
            for count in (args.base, 10 * args.base):
                out = subprocess.run([sys.executable, __file__, "--one", str(count), "--url", url, "--tmp", tmp],
                                     cwd=ROOT, capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    print(out.stderr[-3000:], file=sys.stderr)
                    return 1
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        server.terminate()
        server.wait(timeout=30)
    load_after = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs; load average {load_before[0]:.2f} at start, {load_after[0]:.2f} at end")
    print("run: generator and judge over HTTP (loopback server, scripted backend), packaged embedder in-process, "
          "local executor; strategies temperature + regen_general, n = 5, checklists, grades, accuracy\n")
    print("| prompts | groups | responses | judge pairs | wall s | peak RSS MiB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['prompts']} | {r['groups']} | {r['responses']} | {r['pairs']} | {r['wall_s']:.1f} | "
              f"{r['peak_bytes'] / 2**20:.0f} |")
    ratio = rows[1]["peak_bytes"] / rows[0]["peak_bytes"]
    print(f"\npeak memory ratio 10x / 1x: {ratio:.2f} (goal <= 1.15)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
