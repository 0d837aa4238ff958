"""The whole run against the raw engine on the identical requests, on vLLM (its CPU build here, any build elsewhere).

1. A run of the demo's strategies (n = 5, the demo's sampling, quality and accuracy on) with the generator, the judge
   and the graders all served by one vLLM engine (they are one model, so one host loads it once), through the
   pipeline with the local executor (vLLM in this process). Every call the pipeline makes to the engine is
   recorded: the conversations and sampling parameters exactly as sent, and what vLLM reports per request (prompt
   tokens, prompt tokens served from its prefix cache).
2. The engine is closed; in a fresh process (the same first-use costs as the run's engine) a `vllm.LLM` with the same
   settings starts (its start-up is timed) and replays the recorded requests: the raw engine's time on the run's
   requests. The pipeline drives vLLM continuously by default (actors.vllm: each request submitted on its own, a
   conversation's next turn as soon as its previous one ends), so the replay is vLLM's own add-request / step loop
   submitting each request once as many requests have finished as had when the run submitted it — the run's
   pacing without the pipeline. With `--lockstep` (the backend's `continuous: false`) the run makes one
   `LLM.chat` call per round, and the replay makes the same calls in the same grouping. Also shown: the same
   requests in one call (the engine batching everything at once, ignoring that regeneration turns and judging
   depend on earlier answers: a bound no pipeline can reach).

Goal: run wall ≤ 1.15 × (raw engine time + one start-up per distinct model: the vLLM engine and the embedder).
Prefix reuse: prompt tokens computed / total for the judge's requests and for regeneration turns, as vLLM reported
them in the run (prefix caching on, the default); without prefix caching every prompt token is computed (1.0).

    VLLM_CPU_KVCACHE_SPACE=1 OMP_NUM_THREADS=1 NUMBA_CACHE_DIR=.venv-vllm/numba-cache \
        .venv-vllm/bin/python benchmarks/engine_efficiency.py                    # 8 prompts (--prompts 16)

On a GPU machine: the same with `--device cuda` (and `--model` a hub id or folder). Prints a table and the machine's
load.
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


class Recorder:
    """Wraps VLLMChatModel's engine calls: every call's (lockstep) or request's (continuous) conversations,
    parameters and token counts; for a continuous request, how many requests had finished when it was submitted."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []  # continuous mode, in submission order
        self.continuous_s = 0.0  # time inside submit and collect

    def install(self) -> None:
        from actors.vllm import VLLMChatModel

        original, render = VLLMChatModel._generate_ids, VLLMChatModel.render
        recorder = self
        rendered: dict[tuple[int, ...], list] = {}  # token ids → the conversation they render (lockstep calls)
        submit, collect, to_output = VLLMChatModel.submit, VLLMChatModel.collect, VLLMChatModel._to_output
        by_key: dict[int, dict[str, Any]] = {}
        cached: dict[int, int] = {}
        finished = [0]

        def recording_submit(model: Any, key: int, conversation: list, sampling: Any) -> None:
            start = time.perf_counter()
            entry = {"conversation": list(conversation), "params": _params(model.sampling_params(sampling)),
                     "after": finished[0], "prompt_tokens": 0, "cached_tokens": 0}
            recorder.requests.append(entry)
            by_key[key] = entry
            submit(model, key, conversation, sampling)
            recorder.continuous_s += time.perf_counter() - start

        def recording_to_output(model: Any, result: Any, p: Any) -> Any:
            out = to_output(model, result, p)
            cached[id(out)] = getattr(result, "num_cached_tokens", None) or 0
            return out

        def recording_collect(model: Any) -> list:
            start = time.perf_counter()
            done = collect(model)
            recorder.continuous_s += time.perf_counter() - start
            for key, out in done:
                finished[0] += 1
                entry = by_key.pop(key)
                entry["prompt_tokens"], entry["cached_tokens"] = out.prompt_tokens, cached.pop(id(out), 0)
            return done

        VLLMChatModel.submit, VLLMChatModel.collect = recording_submit, recording_collect
        VLLMChatModel._to_output = recording_to_output

        def recording_render(model: Any, conversation: list) -> list[int]:
            ids = render(model, conversation)
            rendered[tuple(ids)] = list(conversation)
            return ids

        def recording_generate_ids(model: Any, prompts: list, vparams: list) -> list:
            start = time.perf_counter()
            results = original(model, prompts, vparams)
            recorder.calls.append({
                "conversations": [rendered[tuple(ids)] for ids in prompts], "params": list(vparams),
                "prompt_tokens": [len(r.prompt_token_ids or []) for r in results],
                "cached_tokens": [getattr(r, "num_cached_tokens", None) or 0 for r in results],
                "seconds": time.perf_counter() - start,
            })
            return results

        VLLMChatModel.render, VLLMChatModel._generate_ids = recording_render, recording_generate_ids


def kind_of(conversation: list[dict[str, str]]) -> str:
    """judge (the judge's system prompt opens it), regeneration (sampling with earlier turns), or other
    (classification, sampling's first turn, checklists, grades, accuracy)."""
    from engine.method import taxonomy

    if conversation and conversation[0]["role"] == "system" and conversation[0]["content"] == taxonomy.JUDGE_SYSTEM:
        return "judge"
    reminders = {taxonomy.CLASSIFY_REMINDER, taxonomy.JUDGE_REMINDER, taxonomy.CHECKLIST_REMINDER,
                 taxonomy.GRADE_REMINDER, taxonomy.SHORT_ANSWER_REMINDER}
    later_turns = [m["content"] for m in conversation[1:] if m["role"] == "user"]
    if later_turns and not any(text in reminders for text in later_turns):
        return "regeneration"  # the regeneration strategies' follow-ups (general or anchored to the category)
    return "other"


def _params(p: Any) -> dict[str, Any]:
    """The fields of a vllm.SamplingParams the backend sets (actors.vllm.VLLMChatModel.sampling_params)."""
    return {"n": p.n, "temperature": p.temperature, "top_p": p.top_p, "max_tokens": p.max_tokens, "seed": p.seed,
            "stop": p.stop or None, "logprobs": p.logprobs}


def replay(path: str) -> int:
    """In a fresh process: start vLLM (timed), replay the recorded calls as made (or the recorded requests at the run's
    pacing through vLLM's own loop), then all requests in one call."""
    import vllm

    from actors.vllm import resolve_vllm_model

    recorded = json.loads(Path(path).read_text())
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    start = time.perf_counter()
    llm = vllm.LLM(model=resolve_vllm_model(recorded["model"]), seed=0, **recorded["engine"])
    start_s = time.perf_counter() - start
    calls = [([c for c in call["conversations"]], [vllm.SamplingParams(**p) for p in call["params"]])
             for call in recorded["calls"]]
    requests = [(r["conversation"], vllm.SamplingParams(**r["params"]), r["after"]) for r in recorded["requests"]]
    start = time.perf_counter()
    for conversations, params in calls:
        llm.chat(conversations, params, use_tqdm=False, add_generation_prompt=True)
    # Continuous: request i goes in once `after` requests have finished, as it did in the run.
    engine, running, finished, i = llm.llm_engine, set(), 0, 0
    while i < len(requests) or running:
        while i < len(requests) and requests[i][2] <= finished:
            (rid,) = llm.enqueue_chat([requests[i][0]], [requests[i][1]], use_tqdm=False, add_generation_prompt=True)
            running.add(str(rid).split("-", 1)[0])
            i += 1
        for result in engine.step():
            if result.finished and str(result.request_id).split("-", 1)[0] in running:
                running.discard(str(result.request_id).split("-", 1)[0])
                finished += 1
    replay_s = time.perf_counter() - start
    calls += [([c], [p]) for c, p, _ in requests]
    every_c = [c for conversations, _ in calls for c in conversations]
    every_p = [p for _, params in calls for p in params]
    start = time.perf_counter()
    llm.chat(every_c, every_p, use_tqdm=False, add_generation_prompt=True)
    one_call_s = time.perf_counter() - start
    print(json.dumps({"start_s": start_s, "replay_s": replay_s, "one_call_s": one_call_s}))
    return 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--replay":
        return replay(sys.argv[2])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=8, help="built-in prompts (one per category: 8)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-tokens", type=int, default=40, help="as the demo")
    parser.add_argument("--no-stream", action="store_true", help="run stage after stage (execution.stream: false)")
    parser.add_argument("--lockstep", action="store_true",
                        help="drive vLLM in lockstep rounds, one LLM.chat call each (the backend's continuous: false)")
    parser.add_argument("--block-size", type=int, default=None,
                        help="KV cache block size: the prefix cache reuses whole blocks only (vLLM's CPU default is "
                             "128 tokens, its GPU default 16); 32 on CPU here")
    args = parser.parse_args()

    from engine.config import config_from_dict
    from engine.execution.executor import LocalExecutor
    from engine.execution.pipeline import Pipeline

    options: dict[str, Any] = {"device": args.device, "enable_prefix_caching": True, "continuous": not args.lockstep}
    if args.device == "cpu":
        options.update(dtype="float32", enforce_eager=True, max_model_len=2048, in_process=True)
    if args.block_size:
        options["block_size"] = args.block_size
    model = {"name": "vllm", "backend": "vllm", "model": args.model, "batch_size": 80, "options": options}
    recorder = Recorder()
    recorder.install()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="taskdiv-efficiency-") as tmp:
        cfg = config_from_dict({
            "run_dir": str(Path(tmp) / "run"), "prompts": {"source": "builtin", "limit": args.prompts}, "n": 5,
            "strategies": ["temperature", "system_general", "system_anchored", "regen_general", "regen_anchored"],
            "sampling": {"temperature": 1.0, "top_p": 0.9, "max_tokens": args.max_tokens, "seed": 0},
            "generators": [model], "judges": [model], "judge": {"max_response_chars": 600},
            "quality": {"checklist_max_tokens": 120}, "models": {"offline": True},
            "execution": {"executor": "local", "shard_size": 8, "stream": not args.no_stream},
        })
        pipeline = Pipeline(cfg, executor=LocalExecutor(), progress=False)
        try:
            result = pipeline.run()
        finally:
            pipeline.close()
    run_wall = result.wall_s
    loads = result.model_load_s
    vllm_load = sum(sum(v) for k, v in loads.items() if ":vllm:" in k)
    embed_load = sum(sum(v) for k, v in loads.items() if k.startswith("embed:"))
    calls = recorder.calls

    # The raw engine: a fresh vllm.LLM with the run's settings in a fresh process (so that it pays the same
    # first-use costs — a second engine in this process starts in 5 s instead of 24 and runs its first shapes
    # faster), the recorded calls replayed as they were made.
    engine_kwargs = {k: v for k, v in options.items() if k not in ("device", "in_process", "continuous")}
    everything = [(c, p) for call in calls for c, p in zip(call["conversations"], call["params"])]
    everything += [(r["conversation"], r["params"]) for r in recorder.requests]
    with tempfile.TemporaryDirectory(prefix="taskdiv-replay-") as tmp:
        recorded = Path(tmp) / "calls.json"
        recorded.write_text(json.dumps({"model": args.model, "engine": engine_kwargs, "calls": [
            {"conversations": c["conversations"], "params": [_params(p) for p in c["params"]]} for c in calls],
            "requests": [{"conversation": r["conversation"], "params": r["params"], "after": r["after"]}
                         for r in recorder.requests]}))
        out = subprocess.run([sys.executable, __file__, "--replay", str(recorded)], capture_output=True, text=True,
                             check=False)
        if out.returncode != 0:
            print(out.stderr[-4000:], file=sys.stderr)
            return 1
        replayed = json.loads(out.stdout.strip().splitlines()[-1])
    raw_start, raw, raw_one_call = replayed["start_s"], replayed["replay_s"], replayed["one_call_s"]
    load_after = os.getloadavg()

    by_kind: dict[str, list[int]] = {}
    per_request = [(conv, total, cached) for call in calls for conv, total, cached in
                   zip(call["conversations"], call["prompt_tokens"], call["cached_tokens"])]
    per_request += [(r["conversation"], r["prompt_tokens"], r["cached_tokens"]) for r in recorder.requests]
    for conv, total, cached in per_request:
        k = by_kind.setdefault(kind_of(conv), [0, 0, 0])
        k[0] += 1
        k[1] += total
        k[2] += cached
    in_engine = sum(c["seconds"] for c in calls) + recorder.continuous_s
    budget = raw + raw_start + embed_load
    print(f"machine: {os.cpu_count()} CPUs; load average {load_before[0]:.2f} at start, {load_after[0]:.2f} at end")
    print(f"run: {args.prompts} built-in prompts x 5 strategies, n = 5, max_tokens {args.max_tokens}; one vLLM engine "
          f"({args.model}, {args.device}, KV block size {args.block_size or 'default'}) as generator, judge and "
          f"grader; packaged embedder; local executor; {'stage after stage' if args.no_stream else 'streaming'}; "
          f"{'lockstep rounds' if args.lockstep else 'continuous'}\n")
    print("| measure | seconds |")
    print("|---|---:|")
    for label, value in (
            ("run wall (whole pipeline, loads included)", run_wall),
            ("  of which inside the engine's calls", in_engine),
            ("  model loads in the run (vLLM + embedder)", vllm_load + embed_load),
            ("raw engine: the run's calls replayed as made" if args.lockstep
             else "raw engine: the run's requests replayed at its pacing (vLLM's own loop)", raw),
            ("raw engine: the same requests in one call (bound)", raw_one_call),
            ("raw engine start-up (vLLM, a fresh process)", raw_start),
            ("vLLM start-up in the run", vllm_load),
            ("embedder start-up in the run", embed_load),
            ("raw + one start-up per model (raw vLLM's, the run's embedder's)", budget)):
        print(f"| {label} | {value:.1f} |")
    print(f"\nlockstep calls {len(calls)}, requests {len(everything)}")
    print("\n| requests | count | prompt tokens | served from the prefix cache | computed / total |")
    print("|---|---:|---:|---:|---:|")
    for kind, (count, total, cached) in sorted(by_kind.items()):
        print(f"| {kind} | {count} | {total} | {cached} | {(total - cached) / total if total else 0:.2f} |")
    print("(without prefix caching every prompt token is computed: 1.00)")
    print(f"\nengine calls in the run / the same calls replayed: {in_engine / raw:.2f}")
    print(f"run / (raw + one start-up per model): {run_wall / budget:.2f} (goal <= 1.15)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
