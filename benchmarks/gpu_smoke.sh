#!/usr/bin/env bash
# Run benchmarks/gpu_smoke.py with the environment vLLM needs, in the vLLM venv (.venv-vllm, or $VLLM_PYTHON).
#   benchmarks/gpu_smoke.sh --model /models/llama-3.1-8b-instruct --tensor-parallel-size 2
#   benchmarks/gpu_smoke.sh --device cpu --prompts 4 --n 3 --gen-tokens 32 --judge-pairs 12 --max-model-len 2048
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${VLLM_PYTHON:-$ROOT/.venv-vllm/bin/python}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=false
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"   # GiB of KV cache, CPU build only
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$(dirname "$(dirname "$PY")")/numba-cache}"
export VLLM_LOGGING_LEVEL="${VLLM_LOGGING_LEVEL:-WARNING}"
export VLLM_CACHE_ROOT="${VLLM_CACHE_ROOT:-$(dirname "$(dirname "$PY")")/vllm-cache}"
exec "$PY" "$ROOT/benchmarks/gpu_smoke.py" "$@"
