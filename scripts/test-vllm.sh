#!/usr/bin/env bash
# Run the tests marked `vllm` in the vLLM venv (.venv-vllm, built by scripts/setup-vllm-venv.sh), on CPU.
#
#   scripts/test-vllm.sh                 # all tests marked vllm (~10 min on 2 cores)
#   scripts/test-vllm.sh -k TestEngine   # extra pytest arguments are passed on
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLLM_VENV:-$ROOT/.venv-vllm}"
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "no vLLM venv at $VENV: run scripts/setup-vllm-venv.sh first" >&2
  exit 1
fi
cd "$ROOT"

# vLLM on CPU: KV cache size in GiB (its default reserves far more than this machine should give).
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
# One OpenMP thread per engine: on 2 cores vLLM keeps one for itself; two threads decode ~10x slower (measured).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# vLLM writes compiled artefacts and model info here (not into the user's ~/.cache/vllm).
export VLLM_CACHE_ROOT="${VLLM_CACHE_ROOT:-$VENV/vllm-cache}"
# The two venvs have different numba versions; sharing kernels/__pycache__ makes each invalidate the other's
# compiled kernels (94 s to import `kernels` instead of 4 s), so this venv keeps its own cache.
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$VENV/numba-cache}"
# Loopback only, no model hub, no torch.compile of transformers' decode loop (the comparison with actors.local).
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TORCHDYNAMO_DISABLE=1 TOKENIZERS_PARALLELISM=false
export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
export VLLM_LOGGING_LEVEL="${VLLM_LOGGING_LEVEL:-WARNING}"

exec "$VENV/bin/python" -m pytest -m vllm -p no:cacheprovider --durations=10 "${@:-tests}"
