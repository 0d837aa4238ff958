"""Backends by name, so a config says which runtime serves each role and the saved config says exactly what ran.

Heavy runtimes are imported only when chosen: a CPU laptop never imports vLLM, a GPU worker never loads the
embedded model.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from actors.base import BackendError, ChatBackend


def _local(model: str, **options: Any) -> ChatBackend:
    from actors.local import LocalChatModel

    return LocalChatModel(model, **options)


def _vllm(model: str, **options: Any) -> ChatBackend:
    from actors.vllm import VLLMChatModel

    return VLLMChatModel(model, **options)


def _http(model: str, **options: Any) -> ChatBackend:
    from actors.http import OpenAIChatClient

    return OpenAIChatClient(model, **options)


CHAT_BACKENDS: dict[str, Callable[..., ChatBackend]] = {"local": _local, "vllm": _vllm, "http": _http}


def make_chat_backend(backend: str, model: str, options: dict[str, Any] | None = None) -> ChatBackend:
    """Build a chat backend.

    Args:
        backend: a registered name ("local", "vllm", "http") or "python:module:Class" for a class of your own,
            called as Class(model, **options).
        model: what the backend loads or asks for.
        options: keyword arguments for the backend.
    """
    options = dict(options or {})
    if backend.startswith("python:"):
        target = backend[len("python:"):]
        module_name, _, attr = target.partition(":")
        if not module_name or not attr:
            raise BackendError(f"backend {backend!r}: expected python:module:Class")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise BackendError(f"backend {backend!r}: cannot import {target} ({exc})") from exc
        return factory(model, **options)
    if backend not in CHAT_BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; known: {', '.join(CHAT_BACKENDS)} or python:module:Class")
    return CHAT_BACKENDS[backend](model, **options)
