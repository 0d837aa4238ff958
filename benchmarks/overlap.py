"""Streaming measured: generation and judging on different resources overlap instead of running one after the other.

The generator is the embedded default's model (SmolLM2-135M on transformers, this machine's CPUs); the judge is an
API model: the loopback OpenAI-compatible server (tests/support/serve.py, a real HTTP server in another process)
answering with the scripted backend after an injected per-request latency, as a provider's round trip. The same
config runs twice, one run after the other, each in a fresh process (imports, model load and first use paid alike by
both; in one process the first run paid them inside its sampling span, inflating "generation alone") and a fresh
run directory:

- stage after stage (`execution.stream: false`): its sampling span is *generation alone* and its judging span
  *judging alone* (on the same responses: sampling is seeded and cut into the same batches in both runs);
- streaming (the default): judging starts as soon as the first groups are sampled.

Spans come from the runs' stage records (start_s, wall_s): the flow is sampling, metrics and judging (quality and
accuracy are off; classification runs before both and is left out). The goal is full ≤ 1.15 × max(alone).

    .venv/bin/python benchmarks/overlap.py --quick        # 5 prompts, under 90 s on 2 cores
    .venv/bin/python benchmarks/overlap.py                # 16 prompts, 24 tokens, 400 ms per judge request
    .venv/bin/python benchmarks/overlap.py --strategies temperature,system_general --max-tokens 32 --latency-ms 250

Prints a table, the machine's load, and as its last line `overlap ratio R` (R = streaming span / max(alone)).
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

FLOW = ("sample", "metrics", "judge")


def start_judge_server(latency_ms: float) -> tuple[subprocess.Popen, str]:
    """The loopback server in front of the scripted backend, answering after `latency_ms` per request."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TASKDIV_ALLOW_PYTHON_BACKENDS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.serve", "--backend", "python:tests.support.doubles:ScriptedChat",
         "--model", "api-judge", "--port", "0", "--latency-ms", str(latency_ms), "--max-batch", "256"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = proc.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise SystemExit(f"the judge server did not start (printed {url!r})")
    return proc, url


def run_once(run_dir: Path, url: str, args: argparse.Namespace, stream: bool) -> dict[str, tuple[float, float]]:
    """One run; the span (start, end) of each flow stage, in seconds since the run started."""
    from engine.config import config_from_dict
    from engine.execution.executor import LocalExecutor
    from engine.execution.pipeline import Pipeline

    cfg = config_from_dict({
        "run_dir": str(run_dir), "prompts": {"source": "builtin", "limit": args.prompts}, "n": args.n,
        "strategies": args.strategies, "sampling": {"max_tokens": args.max_tokens, "seed": 0},
        "generators": [{"name": "smollm2-135m", "backend": "local", "model": "smollm2-135m",
                        "batch_size": args.batch}],
        "judges": [{"name": "api-judge", "backend": "http", "model": "api-judge", "batch_size": args.batch,
                    "options": {"base_url": url, "max_concurrency": 64}}],
        "quality": {"enabled": False}, "accuracy": {"enabled": False},
        "models": {"offline": True},
        "execution": {"executor": "local", "shard_size": args.batch, "stream": stream},
    })
    pipeline = Pipeline(cfg, executor=LocalExecutor(), progress=False)
    try:
        result = pipeline.run()
    finally:
        pipeline.close()
    spans = {}
    for r in result.stages:
        kind = r.stage.split("[", 1)[0]
        if kind in FLOW and r.start_s is not None:
            spans[kind] = (r.start_s, r.start_s + r.wall_s)
    return spans


def run_in_fresh_process(run_dir: Path, url: str, args: argparse.Namespace, stream: bool) -> dict:
    """run_once in a new Python process (this script with --one): its spans, as {stage: (start, end)}."""
    command = [sys.executable, __file__, "--one", "streamed" if stream else "staged", "--url", url,
               "--run-dir", str(run_dir), "--prompts", str(args.prompts), "--n", str(args.n),
               "--max-tokens", str(args.max_tokens), "--batch", str(args.batch),
               "--strategies", ",".join(args.strategies)]
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the {'streaming' if stream else 'stage-after-stage'} run failed (exit {done.returncode})")
    return {k: tuple(v) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def span(spans: dict[str, tuple[float, float]]) -> float:
    return max(e for _, e in spans.values()) - min(s for s, _ in spans.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 prompts, one strategy, 12 tokens (under 90 s here)")
    parser.add_argument("--prompts", type=int, default=None)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--batch", type=int, default=1, help="groups per batch, generator and judge")
    parser.add_argument("--latency-ms", type=float, default=None, help="the API judge's per-request latency")
    parser.add_argument("--strategies", default="temperature",
                        help="comma-separated sampling strategies (default temperature)")
    parser.add_argument("--one", choices=("staged", "streamed"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.prompts = args.prompts or (5 if args.quick else 16)
    args.max_tokens = args.max_tokens or (12 if args.quick else 24)
    args.strategies = [name.strip() for name in args.strategies.split(",") if name.strip()]
    if not args.strategies:
        parser.error("--strategies names none")
    if args.one is not None:  # one variant, in this (fresh) process: its spans as JSON on the last line
        spans = run_once(args.run_dir, args.url, args, stream=args.one == "streamed")
        print(json.dumps(spans))
        return 0
    # The judge asks one pair per round (pruning), so a group takes about n(n-1)/2 round trips: the latency is set
    # so that judging alone takes about as long as generation alone, the case where overlap matters most.
    args.latency_ms = args.latency_ms if args.latency_ms is not None else (200.0 if args.quick else 400.0)
    start = time.perf_counter()
    load_before = os.getloadavg()
    server, url = start_judge_server(args.latency_ms)
    try:
        with tempfile.TemporaryDirectory(prefix="taskdiv-overlap-") as tmp:
            staged = run_in_fresh_process(Path(tmp) / "staged", url, args, stream=False)
            streamed = run_in_fresh_process(Path(tmp) / "streamed", url, args, stream=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    load_after = os.getloadavg()
    gen_alone = staged["sample"][1] - staged["sample"][0]
    judge_alone = staged["judge"][1] - staged["judge"][0]
    full, barrier = span(streamed), span(staged)
    alone = max(gen_alone, judge_alone)
    print(f"machine: {os.cpu_count()} CPUs; load average {load_before[0]:.2f} at start, {load_after[0]:.2f} at end; "
          f"benchmark wall {time.perf_counter() - start:.1f} s")
    print(f"run: {args.prompts} built-in prompts x {', '.join(args.strategies)}, n = {args.n}, max_tokens "
          f"{args.max_tokens}; generator SmolLM2-135M (transformers, CPU); judge over HTTP (loopback server, "
          f"{args.latency_ms:.0f} ms per request); {args.batch} groups per batch; local executor; each variant "
          "in a fresh process\n")
    print("| measure | seconds | / max(alone) |")
    print("|---|---:|---:|")
    for label, value in (("generation alone (sampling, stage after stage)", gen_alone),
                         ("judging alone (same responses, stage after stage)", judge_alone),
                         ("stage after stage: sampling + metrics + judging", barrier),
                         ("streaming: sampling + metrics + judging", full)):
        print(f"| {label} | {value:.1f} | {value / alone:.2f} |")
    for name, spans in (("stage after stage", staged), ("streaming", streamed)):
        print(f"\n{name}: " + "; ".join(f"{k} {s:.1f}–{e:.1f} s" for k, (s, e) in sorted(spans.items(),
                                                                                     key=lambda kv: kv[1])))
    print(f"\ngoal: streaming <= 1.15 x max(alone); stage after stage is {barrier / alone:.2f} x")
    print(f"overlap ratio {full / alone:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
