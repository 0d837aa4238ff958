#!/usr/bin/env bash
# Run benchmarks/gpu_smoke.py with the environment vLLM needs, in the vLLM venv (.venv-vllm, or $VLLM_PYTHON).
#   benchmarks/gpu_smoke.sh --model /models/llama-3.1-8b-instruct --tensor-parallel-size 2
#   benchmarks/gpu_smoke.sh --device cpu --prompts 4 --n 3 --gen-tokens 32 --judge-pairs 12 --max-model-len 2048
# With --efficiency it then prints the throughput figures of the whole engine on the same machine: the run against
# the raw engine on identical requests with one start-up per model, and prefix-cache reuse (engine_efficiency.py),
# and generation/judging overlap (overlap.py, --quick):
#   benchmarks/gpu_smoke.sh --model /models/llama-3.1-8b-instruct --efficiency
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${VLLM_PYTHON:-$ROOT/.venv-vllm/bin/python}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=false
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"   # GiB of KV cache, CPU build only
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$(dirname "$(dirname "$PY")")/numba-cache}"
export VLLM_LOGGING_LEVEL="${VLLM_LOGGING_LEVEL:-WARNING}"
export VLLM_CACHE_ROOT="${VLLM_CACHE_ROOT:-$(dirname "$(dirname "$PY")")/vllm-cache}"

efficiency=0 model=smollm2-135m device=cuda args=()
while (( $# )); do
  case "$1" in
    --efficiency) efficiency=1 ;;
    --model) model="$2"; args+=("$1" "$2"); shift ;;
    --device) device="$2"; args+=("$1" "$2"); shift ;;
    *) args+=("$1") ;;
  esac
  shift
done
"$PY" "$ROOT/benchmarks/gpu_smoke.py" "${args[@]}"
if (( efficiency )); then
  extra=()
  [[ "$device" == cpu ]] && extra=(--block-size 32)  # vLLM's CPU default (128) caches few prefixes this short
  "$PY" "$ROOT/benchmarks/engine_efficiency.py" --model "$model" --device "$device" "${extra[@]}"
  "$PY" "$ROOT/benchmarks/overlap.py" --quick
fi
