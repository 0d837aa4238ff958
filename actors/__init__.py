"""Model runtimes behind one interface (actors.base): chat(conversations, sampling) -> outputs, in input order.

- `base`: the interface (SamplingParams, ChatOutput, ChatBackend, BackendError);
- `registry`: backends by name for every role, python:module:Class loading, preflight checks, transport options,
  scheduling — the only module here that engine/ imports besides `base`;
- `local` (transformers on CPU or one GPU; the embedded SmolLM2), `vllm` (vLLM engines), `placement` (GPUs and
  placement groups per actor), `http` (OpenAI-compatible servers), `embed` (sentence-transformers), `reward`
  (reward models).

Imports: nothing from engine/ or kernels/ (a backend knows nothing of the method that drives it).
"""
