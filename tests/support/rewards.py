"""Tiny reward models with the real heads, built and saved by the tests (random weights, two layers, SmolLM2's
tokenizer and chat template): a sequence-classification model (`score`), an Athene-style checkpoint (a Llama decoder
under `model.` plus `v_head`, written tensor by tensor as such a checkpoint is on the hub), and one without a head."""

from __future__ import annotations

from pathlib import Path

TINY = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
            max_position_embeddings=2048)


def _tokenizer():
    from transformers import AutoTokenizer

    from actors.local import resolve_model_dir

    return AutoTokenizer.from_pretrained(resolve_model_dir("smollm2-135m"))


def _config(tokenizer, **extra):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, **{**TINY, **extra})


def sequence_classifier(folder: Path, seed: int = 0, num_labels: int = 1, **shape) -> Path:
    """`shape`: config values over TINY's (vLLM's CPU attention needs a head size of 32 or more); `num_labels`: 2
    makes a classifier, no reward model."""
    import torch
    from transformers import LlamaForSequenceClassification

    tokenizer = _tokenizer()
    torch.manual_seed(seed)
    config = _config(tokenizer, num_labels=num_labels, pad_token_id=tokenizer.eos_token_id, **shape)
    model = LlamaForSequenceClassification(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def athene_like(folder: Path, seed: int = 0, with_head: bool = True) -> Path:
    """A Llama decoder's tensors under `model.` and, unless `with_head` is False, `v_head.weight` (1 × hidden);
    config.json says LlamaForCausalLM, as nothing in the config announces the value head."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaModel

    tokenizer = _tokenizer()
    config = _config(tokenizer)
    torch.manual_seed(seed)
    decoder = LlamaModel(config)
    tensors = {f"model.{k}": v.contiguous() for k, v in decoder.state_dict().items()}
    if with_head:
        tensors["v_head.weight"] = torch.randn(1, config.hidden_size)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
