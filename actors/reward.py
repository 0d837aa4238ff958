"""Reward models: a scalar score of (prompt, response) from a sequence-classification model given by path.

The paper used Athene-RM-8B. Two runtimes:
- LocalRewardModel: transformers' AutoModelForSequenceClassification on CPU (or one GPU);
- VLLMRewardModel: vLLM's pooling runner ("reward" task) on GPUs.
Both render the pair with the model's own chat template (user: prompt, assistant: response) and return the first
logit of the classification head, the convention of single-output reward models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from actors.base import BackendError



def _conversation(prompt: str, response: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


class LocalRewardModel:
    """A sequence-classification reward model through transformers.

    Args:
        model: a folder holding the model and its tokenizer.
        device: "cpu" or "cuda".
        batch_size: pairs per forward pass.
        max_length: tokens kept per pair; longer pairs are truncated at the end (the response's tail).
        threads: torch threads (default: the machine's share).
    """

    def __init__(self, model: str, *, device: str = "cpu", batch_size: int = 8, max_length: int = 2048,
                 threads: int | None = None) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from actors.local import default_threads

        path = Path(model).expanduser()
        if not path.is_dir():
            raise BackendError(f"reward model {model!r}: not a folder (give the path of a sequence-classification model)")
        torch.set_num_threads(threads or default_threads())
        self.name = model
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).to(device).eval()
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.device, self.batch_size, self.max_length = device, batch_size, max_length
        self._torch = torch

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """The reward of each (prompt, response) pair, in input order."""
        torch = self._torch
        texts = [self.tokenizer.apply_chat_template(_conversation(p, r), tokenize=False) for p, r in pairs]
        scores: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(texts[start:start + self.batch_size], return_tensors="pt", padding=True,
                                   truncation=True, max_length=self.max_length).to(self.device)
            with torch.inference_mode():
                logits = self.model(**batch).logits
            scores.extend(float(x) for x in logits[:, 0].tolist())
        return scores

    def close(self) -> None:
        self.model = None


class VLLMRewardModel:
    """A reward model on vLLM's pooling runner (GPU clusters).

    Args:
        model: a folder or hub id of a sequence-classification / reward model.
        **engine_kwargs: passed to vllm.LLM (tensor_parallel_size, dtype, max_model_len, …).
    """

    def __init__(self, model: str, **engine_kwargs) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:
            raise BackendError("the vllm reward backend needs vLLM (pip install 'taskdiv[gpu]')") from exc
        self.name = model
        self.llm = LLM(model=model, runner="pooling", **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        texts = [self.tokenizer.apply_chat_template(_conversation(p, r), tokenize=False) for p, r in pairs]
        outputs = self.llm.reward(texts, use_tqdm=False)
        return [float(o.outputs.data.flatten()[0]) for o in outputs]

    def close(self) -> None:
        self.llm = None
