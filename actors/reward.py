"""Reward models: a scalar score of (prompt, response), loaded with the head the model really has.

The two kinds users run (shared/notes/reward-models.md):
- "sequence-classification" — Skywork-Reward-style models: `AutoModelForSequenceClassification` with one output;
  the score is that output at the last token of the chat-formatted conversation. A checkpoint that ships its own
  model code for it (ArmoRM's gating and multi-objective head, `auto_map` in its config) is refused: transformers
  would load the stock class without that code, silently, and score with another function than the model's.
- "athene" — Athene-RM-8B/70B (the paper's reward model): a Llama decoder (weights under `model.`) plus a value
  head `v_head` (hidden → 1, no bias) read at a special scoring token (id 128003 for Athene) appended after the
  chat-formatted conversation. Loading it as sequence classification would build a fresh random `score` head and
  ignore `v_head`: the scores would be noise.
`kind: auto` tells them apart by the checkpoint's weight names (`v_head.*` → athene) and its architecture.

Every load asks transformers for its loading info and refuses any missing head weight, naming it — a random head is
never scored with. Both kinds pool the hidden state of the last real token (by attention mask), so padding never
moves the read-out.

Two runtimes: LocalRewardModel (transformers, CPU or one GPU) and VLLMRewardModel (vLLM's pooling runner, sequence
classification only: vLLM itself refuses a checkpoint whose weights do not cover the model).

A conversation longer than the model reads (its context, or `max_length`) gets no score (None): cut at the end it
would score a response the model never saw whole — a cut-off answer reads as a worse one — and a run's rewards
would fall with its response lengths for that reason alone. The report counts responses left unscored.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from actors import hub
from actors.base import BackendError

KINDS = ("auto", "sequence-classification", "athene")
DTYPES = ("auto", "float32", "bfloat16", "float16")
ATHENE_SCORE_TOKEN_ID = 128003


def _conversation(prompt: str, response: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


def reward_folder(model: str) -> Path:
    """A local folder for a reward model: a folder, or a Hugging Face id (from the cache, or downloaded)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if hub.looks_like_hub_id(model):
        return hub.resolve(model)
    raise BackendError(f"reward model {model!r}: neither a folder nor a Hugging Face id (org/name)")


def weight_names(folder: Path) -> set[str]:
    """The tensor names of a checkpoint's safetensors files (from the index, or the files' headers)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text())["weight_map"])
    names: set[str] = set()
    for f in folder.glob("*.safetensors"):
        with open(f, "rb") as fh:  # the safetensors header: 8-byte length, then a JSON table of tensors
            size = int.from_bytes(fh.read(8), "little")
            names.update(k for k in json.loads(fh.read(size)) if k != "__metadata__")
    return names


def detect_kind(folder: Path) -> str:
    """"athene" when the checkpoint holds a value head (v_head.*), "sequence-classification" when its architecture
    is one; else a BackendError saying to set reward.kind."""
    if any(n.startswith("v_head.") for n in weight_names(folder)):
        return "athene"
    config = _config(folder)
    if any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or []):
        return "sequence-classification"
    raise BackendError(f"reward model {folder}: cannot tell its head (no v_head weights, architectures "
                       f"{config.get('architectures')}); set quality.reward_model.kind to sequence-classification or "
                       "athene")


# Where the heads of transformers' sequence-classification models keep their weights: `score` (Llama, Mistral, Qwen,
# Gemma, GPT-2 and the other decoders), `classifier` (BERT, RoBERTa, DeBERTa, ELECTRA; DistilBERT's beside
# `pre_classifier`), `classification_head` (BART, mBART, T5, LED), `logits_proj` / `sequence_summary` (XLNet, XLM).
CLASSIFICATION_HEADS = ("score.", "classifier.", "classification_head.", "logits_proj.", "sequence_summary.")


def head_problem(model: str, kind: str, backend: str = "local") -> str | None:
    """What a reward model's files say is wrong before it loads (preflight; the load checks again): a packaged chat
    model, a checkpoint with its own model code, a head `kind: auto` cannot tell, or weights without the head `kind`
    reads — which the load found only after every paid stage before the reward model's. None: nothing wrong, or its
    files are not here to read (a hub id not in the cache: checked when it loads)."""
    from actors.local import PACKAGED_MODELS

    if model in PACKAGED_MODELS:
        return (f"{model!r} is a packaged chat model, not a reward model: give a reward model's folder or Hugging "
                "Face id (e.g. Skywork/Skywork-Reward-Llama-3.1-8B-v0.2, Nexusflow/Athene-RM-8B)")
    path = Path(model).expanduser()
    folder = path if path.is_dir() else (hub.cached_snapshot(model) if hub.looks_like_hub_id(model) else None)
    if folder is None:
        return None
    try:
        if kind != "athene":
            refuse_custom_code(model, folder)
        found = detect_kind(folder) if kind == "auto" else kind
        names = weight_names(folder)
    except BackendError as exc:
        return str(exc)
    except (OSError, ValueError, KeyError):  # files that do not read as a checkpoint: the load says what is wrong
        return None
    if backend == "vllm" and found == "athene":
        return f"reward model {model!r}: vLLM has no Athene value head; use backend: local"
    if not names:  # PyTorch .bin weights: no table of names to read without loading them
        return None
    if found == "athene" and "v_head.weight" not in names:
        return (f"reward model {model!r}: its weights hold no value head (v_head.weight) for kind athene: it would be "
                "freshly initialised and every score random. Check quality.reward_model.kind and model")
    if found == "sequence-classification" and not any(n.startswith(CLASSIFICATION_HEADS) for n in names):
        hint = " (it holds a value head, v_head: kind athene)" if any(n.startswith("v_head.") for n in names) else ""
        return (f"reward model {model!r}: its weights hold no classification head (score.*, classifier.*, "
                f"classification_head.*, logits_proj.*){hint}: "
                "loaded as sequence-classification, the head would be freshly initialised and every score random. "
                "Check quality.reward_model.kind and model")
    return None


def _config(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}


def refuse_custom_code(model: str, folder: Path) -> None:
    """A sequence-classification checkpoint whose config maps that class to its own code (`auto_map`) scores with that
    code (ArmoRM: a gating network over 19 objectives). Without trust_remote_code transformers loads the stock class
    instead, with no warning, and drops the custom head's weights unused: refused, naming the code."""
    custom = (_config(folder).get("auto_map") or {}).get("AutoModelForSequenceClassification")
    if custom:
        raise BackendError(f"reward model {model!r} ships its own model code ({custom}): taskdiv does not run a "
                           "checkpoint's code, and the stock class would score it with another head. Use a "
                           "sequence-classification reward model without custom code (e.g. Skywork-Reward) or an "
                           "Athene-style one")


def finite_or_none(value: float) -> float | None:
    """A score that is no number (an fp16 overflow in a long conversation) is no score: None, counted unscored."""
    return value if math.isfinite(value) else None


def refuse_many_outputs(model: str, outputs: int) -> None:
    """A sequence-classification reward model's head gives one score: one of several outputs (a classifier's
    labels) is no reward, and reading its first would be a silent wrong value."""
    if outputs != 1:
        raise BackendError(f"reward model {model!r}: a sequence-classification reward model has one output, this one "
                           f"has {outputs}")


def _refuse_missing(model: str, kind: str, info: dict[str, Any]) -> None:
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(str(k[0]) if isinstance(k, tuple) else str(k) for k in info.get("mismatched_keys") or [])
    if missing or mismatched:
        raise BackendError(f"reward model {model!r} ({kind}): the checkpoint lacks weights the model needs — "
                           f"missing {missing[:8]}{' mismatched ' + str(mismatched[:8]) if mismatched else ''}; they "
                           "would be freshly initialised and every score random. Check quality.reward_model.kind and "
                           "the folder")


def _athene_class():
    """Athene's architecture: LlamaModel under `model`, a bias-free `v_head` (hidden → 1). Built on first use so that
    importing this module needs no torch."""
    import torch
    from transformers import LlamaModel, LlamaPreTrainedModel

    class AtheneRewardModel(LlamaPreTrainedModel):
        def __init__(self, config) -> None:
            super().__init__(config)
            self.model = LlamaModel(config)
            self.v_head = torch.nn.Linear(config.hidden_size, 1, bias=False)
            self.post_init()

    return AtheneRewardModel


def model_context(config: Any) -> int | None:
    """The longest input a model's config says it reads (None where it names none)."""
    for key in ("max_position_embeddings", "n_positions", "max_seq_len"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class LocalRewardModel:
    """A reward model through transformers.

    Args:
        model: a folder or Hugging Face id holding the model and its tokenizer.
        kind: "auto", "sequence-classification" or "athene" (see the module docstring).
        score_token_id: for athene, the token appended after the conversation whose hidden state the head reads
            (Athene's 128003 by default).
        device: "cpu" or "cuda".
        batch_size: pairs per forward pass.
        max_length: the longest conversation scored, in tokens (the scoring token included); a longer one gets no
            score (None). Default: the model's context (its config's max_position_embeddings).
        threads: torch threads (default: the machine's share).
        dtype: the weights' type: "auto" (bfloat16 on a GPU — Athene-RM-8B is 32 GB in float32, past a 24 GB
            card — float32 on the CPU), "float32", "bfloat16" or "float16".
    """

    def __init__(self, model: str, *, kind: str = "auto", score_token_id: int | None = None, device: str = "cpu",
                 batch_size: int = 8, max_length: int | None = None, threads: int | None = None,
                 dtype: str = "auto") -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from actors.local import default_threads

        if kind not in KINDS:
            raise BackendError(f"reward model kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if dtype not in DTYPES:
            raise BackendError(f"reward model {model!r}: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        weights = getattr(torch, dtype) if dtype != "auto" else (
            torch.bfloat16 if str(device).startswith("cuda") else torch.float32)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            # -1 scored nothing (an empty range: every reward None, no shard failed); 0 raised inside the stage
            raise BackendError(f"reward model {model!r}: batch_size must be a whole number >= 1, got {batch_size!r}")
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or max_length < 2):
            raise BackendError(f"reward model {model!r}: max_length must be a whole number of tokens >= 2, got "
                               f"{max_length!r}")
        folder = reward_folder(model)
        torch.set_num_threads(threads or default_threads())
        self.name = model
        if kind != "athene":  # before detecting: ArmoRM's architecture is its own class, which detection cannot name
            refuse_custom_code(model, folder)
        self.kind = detect_kind(folder) if kind == "auto" else kind
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"
        if self.kind == "athene":
            net, info = _athene_class().from_pretrained(folder, dtype=weights, output_loading_info=True)
            self.base, self.head = net.model, net.v_head
            self.score_token_id = ATHENE_SCORE_TOKEN_ID if score_token_id is None else score_token_id
            if not 0 <= self.score_token_id < net.config.vocab_size:
                raise BackendError(f"reward model {model!r}: scoring token id {self.score_token_id} is outside its "
                                   f"vocabulary of {net.config.vocab_size} (set options.score_token_id)")
        else:
            net, info = AutoModelForSequenceClassification.from_pretrained(folder, dtype=weights,
                                                                            output_loading_info=True)
            _refuse_missing(model, self.kind, info)
            refuse_many_outputs(model, net.config.num_labels)
            head = getattr(net, "score", None)
            if head is None:
                raise BackendError(f"reward model {model!r}: no `score` head on {type(net).__name__}")
            self.base, self.head = net.base_model, head
            self.score_token_id = None
        _refuse_missing(model, self.kind, info)
        self.net = net.to(device).eval()
        context = model_context(net.config)
        if max_length is not None and context is not None and max_length > context:
            raise BackendError(f"reward model {model!r}: max_length {max_length} is beyond the model's context of "
                               f"{context} tokens (its config's max_position_embeddings)")
        self.max_length = max_length or context
        self.device, self.batch_size = device, batch_size
        self._torch = torch

    def encode(self, prompt: str, response: str) -> list[int]:
        """The token ids the head reads: the chat-formatted conversation (and, for athene, the scoring token)."""
        ids = self.tokenizer.apply_chat_template(_conversation(prompt, response), tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids) + ([self.score_token_id] if self.score_token_id is not None else [])

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float | None]:
        """The reward of each (prompt, response) pair, in input order; None for a conversation longer than
        max_length (never scored cut)."""
        encoded = [self.encode(p, r) for p, r in pairs]
        fits = [i for i, ids in enumerate(encoded) if self.max_length is None or len(ids) <= self.max_length]
        scores: list[float | None] = [None] * len(encoded)
        for i, value in zip(fits, self._forward([encoded[i] for i in fits])):
            scores[i] = finite_or_none(value)
        return scores

    def _forward(self, encoded: list[list[int]]) -> list[float]:
        torch = self._torch
        pad = self.tokenizer.pad_token_id
        scores: list[float] = []
        for start in range(0, len(encoded), self.batch_size):
            batch = encoded[start:start + self.batch_size]
            width = max(len(ids) for ids in batch)
            input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in batch], device=self.device)
            mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch], device=self.device)
            with torch.inference_mode():
                hidden = self.base(input_ids=input_ids, attention_mask=mask).last_hidden_state
                last = hidden[torch.arange(len(batch), device=self.device), mask.sum(dim=1) - 1]
                scores.extend(float(x) for x in self.head(last)[:, 0].tolist())
        return scores

    def close(self) -> None:
        self.net = self.base = self.head = None


class VLLMRewardModel:
    """A sequence-classification reward model on vLLM's pooling runner (GPU clusters).

    vLLM loads what the model's config names; an Athene-style value head is not a vLLM architecture, so that kind
    is refused here (run it with the local backend). vLLM's loader itself refuses a checkpoint that leaves weights
    uninitialised.

    Args:
        model: a folder or hub id of a sequence-classification reward model.
        kind: "auto" or "sequence-classification".
        **engine_kwargs: passed to vllm.LLM (tensor_parallel_size, dtype, max_model_len, …).
    """

    def __init__(self, model: str, *, kind: str = "auto", **engine_kwargs) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:
            raise BackendError("the vllm reward backend needs vLLM (scripts/setup-vllm-venv.sh builds its venv)") \
                from exc
        # A hub id is resolved here as for the local backend (the cache, or a download of the weights it needs), so
        # that its head is detected before vLLM loads it and a pinned "org/name@rev" reaches vLLM as that folder.
        folder = reward_folder(model)
        if kind != "athene":
            refuse_custom_code(model, folder)
        if kind == "auto":
            kind = detect_kind(folder)
        if kind == "athene":
            raise BackendError(f"reward model {model!r}: vLLM has no Athene value head; use backend: local "
                               "(transformers, CPU or one GPU)")
        from transformers import AutoConfig

        # Before the engine loads: a head of several outputs was read by its first (as the local backend refuses).
        refuse_many_outputs(model, AutoConfig.from_pretrained(folder).num_labels)
        from actors.vllm import without_llvmlite_ffi

        self.name = model
        # As for the chat engine: numba (our kernels) loaded first in this process breaks vLLM 0.32's kernel scan.
        with without_llvmlite_ffi():
            self.llm = LLM(model=str(folder), runner="pooling", **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_length = int(self.llm.model_config.max_model_len)

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float | None]:
        """The head's raw score of each (prompt, response) conversation, as transformers' forward gives it; None for
        a conversation longer than the engine's max_model_len (vLLM would refuse the whole batch for it).

        vLLM's pooling runner has no `reward` call any more (0.32: `encode`, `embed`, `classify`, `score`); a
        sequence-classification reward model is its `classify` task, with the head's activation off (a one-label
        head would go through a sigmoid: a probability, not the model's reward). The conversation goes in as token
        ids from the chat template, so no second BOS is added."""
        from vllm import PoolingParams

        ids = []
        for p, r in pairs:
            encoded = self.tokenizer.apply_chat_template(_conversation(p, r), tokenize=True)
            ids.append(list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded))
        fits = [i for i, x in enumerate(ids) if len(x) <= self.max_length]
        scores: list[float | None] = [None] * len(ids)
        if fits:
            outputs = self.llm.classify([{"prompt_token_ids": ids[i]} for i in fits],
                                        pooling_params=PoolingParams(use_activation=False), use_tqdm=False)
            for i, o in zip(fits, outputs):
                scores[i] = finite_or_none(float(o.outputs.probs[0]))  # one output: checked before the engine loaded
        return scores

    def close(self) -> None:
        from actors.vllm import shutdown_engine

        llm, self.llm = self.llm, None
        shutdown_engine(llm)
