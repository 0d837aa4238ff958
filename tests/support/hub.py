"""A Hugging Face cache laid out as huggingface_hub writes it, holding tiny models the tests build themselves:
models--ORG--NAME/refs/main (the commit) and models--ORG--NAME/snapshots/COMMIT/… (the files)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def cache_folder(cache: Path, repo_id: str, files_from: Path, commit: str | None = None,
                 ref: str | None = "main") -> Path:
    """Put the files of `files_from` into `cache` as the snapshot of `repo_id`'s `ref` revision (at `commit`, default
    one made from the id; another commit is a push: main moves to it); return the snapshot folder. `ref` None: no
    refs file, as huggingface_hub leaves a download of a commit ("org/name@<commit>": what a pinned run's workers
    download)."""
    commit = commit or hashlib.sha1(repo_id.encode()).hexdigest()
    root = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for f in files_from.iterdir():
        if f.is_file():
            (snapshot / f.name).write_bytes(f.read_bytes())
    if ref is not None:
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / ref).write_text(commit)
    return snapshot


def tiny_chat_model(folder: Path, seed: int = 0) -> Path:
    """A two-layer Llama with SmolLM2's tokenizer and chat template, random weights (from `seed`): a real
    architecture that loads and generates in well under a second."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from actors.local import resolve_model_dir

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir("smollm2-135m"))
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
