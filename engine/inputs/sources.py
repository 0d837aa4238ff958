"""Prompt sources by name: the built-in set, our JSONL format, and the public benchmarks — from a file the config
names (`path`), or else from the cache of fetched sources (engine.inputs.fetch), fetched first when the run may
reach the network."""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from typing import Any, Callable

from engine.config import PromptsConfig
from engine.errors import ConfigError
from engine.inputs import fetch
from engine.inputs.loaders import LOADERS
from engine.inputs.loaders.paper import COUNTS, limit_across_sources, load_paper, outside_pool_warning
from engine.inputs.prompts import BUILTIN_PATH, LoadReport, Prompt, load_jsonl_prompts, select, within_prompt_cap

# How a source's file is found: (the prompts config, the report, whether the run is offline, whether a source
# missing offline is skipped rather than an error).
Loader = Callable[[PromptsConfig, LoadReport, bool, bool], list[Prompt]]


def _no_options(cfg: PromptsConfig) -> None:
    if cfg.options:
        key = sorted(cfg.options)[0]
        raise ConfigError(f"prompts.options.{key}: the {cfg.source} source takes no options")


def _builtin(cfg: PromptsConfig, report: LoadReport, offline: bool, skip_missing: bool) -> list[Prompt]:
    _no_options(cfg)
    return load_jsonl_prompts(cfg.path or BUILTIN_PATH, source="builtin", on_error=cfg.on_error, report=report)


def _jsonl(cfg: PromptsConfig, report: LoadReport, offline: bool, skip_missing: bool) -> list[Prompt]:
    _no_options(cfg)
    if not cfg.path:
        raise ConfigError("prompts.path: the jsonl source needs a file path")
    return load_jsonl_prompts(cfg.path, on_error=cfg.on_error, report=report)


# The loader's own arguments, which the run sets; every other keyword-only parameter is an option.
_RUN_ARGS = {"path", "on_error", "report"}


def loader_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """`prompts.options`, checked against the benchmark loader's signature: each name is one of its parameters and
    each value of the type it declares, so a misspelt or mistyped option is a ConfigError naming the key rather
    than a TypeError from deep inside the loader (or, for a wrong type, a wrong result)."""
    loader = LOADERS[name]
    params = inspect.signature(loader).parameters
    accepted = [p.name for p in params.values() if p.kind is p.KEYWORD_ONLY and p.name not in _RUN_ARGS]
    hints = typing.get_type_hints(loader)
    for key, value in options.items():
        if key not in accepted:
            raise ConfigError(f"prompts.options.{key}: not an option of the {name} source; accepted: "
                              f"{', '.join(accepted) or 'none'}")
        expected = hints.get(key)
        if expected is not None and not _is_a(value, expected):
            raise ConfigError(f"prompts.options.{key}: expected {_type_name(expected)}, got "
                              f"{type(value).__name__} ({value!r:.80})")
    return dict(options)


def _is_a(value: Any, hint: Any) -> bool:
    """Whether a config value fits a loader's annotation (str, None, unions, Mapping[K, V], list[T]); an
    annotation this does not know accepts anything, the loader checking it."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_is_a(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is Any:
        return True
    if origin in (collections.abc.Mapping, dict):
        return isinstance(value, dict) and all(_is_a(k, args[0]) and _is_a(v, args[1]) for k, v in value.items()) \
            if args else isinstance(value, dict)
    if origin in (list, collections.abc.Sequence):
        return isinstance(value, list) and (not args or all(_is_a(v, args[0]) for v in value))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if hint is type(None):
        return "null"
    if origin in (collections.abc.Mapping, dict):
        return "a mapping" + (f" of {_plural(args[0])} to {_plural(args[1])}" if args else "")
    if origin in (list, collections.abc.Sequence):
        return "a list" + (f" of {_plural(args[0])}" if args else "")
    return {str: "a string", bool: "true or false", int: "an integer", float: "a number"}.get(hint, str(hint))


def _plural(hint: Any) -> str:
    return {str: "strings", bool: "booleans", int: "integers", float: "numbers"}.get(hint, _type_name(hint))


def _benchmark(name: str) -> Loader:
    def load(cfg: PromptsConfig, report: LoadReport, offline: bool, skip_missing: bool) -> list[Prompt]:
        options = loader_options(name, cfg.options)  # before any fetch: a config mistake costs no download
        path = cfg.path or fetch.ensure(name, offline=offline)
        prompts = LOADERS[name](path, on_error=cfg.on_error, report=report, **options)
        warning = outside_pool_warning(name, path, prompts)
        if warning:
            report.warnings.append(warning)
        return prompts

    return load


def _paper(cfg: PromptsConfig, report: LoadReport, offline: bool, skip_missing: bool) -> list[Prompt]:
    """The paper's mix: files from `paths` where given, else every benchmark from the cache. Sources that are
    neither given nor cached (nor fetchable) stop the run with why each could not be had and the command that
    fetches it — unless `missing_sources: skip`, which draws from what there is and reports the shortfall with
    those reasons."""
    if cfg.options:
        key = sorted(cfg.options)[0]
        raise ConfigError(f"prompts.options.{key}: the paper source takes no loader options (its mix reads every "
                          "benchmark with the loaders' defaults, as the paper did); remove prompts.options, or "
                          "name one benchmark as the source to pass it options")
    paths = dict(cfg.paths)
    reasons: dict[str, str] = {}
    for name in COUNTS:
        if paths.get(name):
            continue
        try:
            paths[name] = str(fetch.ensure(name, offline=offline))
        except fetch.FetchError as exc:  # kept: a 401, a lost network or a bad hash each need their own fix
            reasons[name] = str(exc).removeprefix(f"source {name}: ")  # the name opens the line it is put in
            paths[name] = None
    if reasons and not (skip_missing or cfg.missing_sources == "skip"):
        names = " ".join(reasons)
        skip = ("or set prompts.missing_sources: skip to draw from the sources there are (the composition then "
                "differs from the paper's)")
        if offline:
            raise ConfigError(f"prompts: the paper's mix needs {', '.join(reasons)}, which are not in the cache "
                              f"({fetch.cache_root()}) and cannot be fetched (this run is offline): run `python "
                              f"engine/run.py fetch {names}` where there is network, or `python engine/run.py "
                              f"fetch {names} --from DIR` with files you have; {skip}")
        why = "; ".join(f"{name}: {reason}" for name, reason in reasons.items())
        raise ConfigError(f"prompts: the paper's mix needs {', '.join(reasons)}, which could not be fetched — "
                          f"{why}. Fix the cause and rerun (or `python engine/run.py fetch {names}`), or run "
                          f"`python engine/run.py fetch {names} --from DIR` with files you have; {skip}")
    return load_paper(paths, seed=cfg.seed, on_error=cfg.on_error, report=report, reasons=reasons,
                      max_prompt_chars=cfg.max_prompt_chars)


SOURCES: dict[str, Loader] = {
    "builtin": _builtin,
    "jsonl": _jsonl,
    **{name: _benchmark(name) for name in LOADERS},
    "paper": _paper,
}


def load_prompts(cfg: PromptsConfig, report: LoadReport | None = None, *, offline: bool = True,
                 skip_missing: bool = False) -> list[Prompt]:
    """Load, validate and select the prompts a config names.

    Raises:
        ConfigError: unknown source or missing path.
        InputError: a bad row (file, line, field), unless on_error is "skip".
    """
    if cfg.source not in SOURCES:
        raise ConfigError(f"prompts.source: unknown source {cfg.source!r}; known: {', '.join(SOURCES)}")
    report = report if report is not None else LoadReport()
    prompts = SOURCES[cfg.source](cfg, report, offline, skip_missing)
    # Over-long prompts go before per_category and limit choose (the preset leaves them out of its pools): after,
    # `limit: 20` with a cap audited 9 prompts.
    prompts = within_prompt_cap(prompts, cfg.max_prompt_chars, cfg.on_error, report, cfg.path or cfg.source)
    if cfg.source == "paper" and cfg.limit is not None:
        prompts = select(prompts, per_category=cfg.per_category)
        return limit_across_sources(prompts, cfg.limit, cfg.seed)
    return select(prompts, per_category=cfg.per_category, limit=cfg.limit)
