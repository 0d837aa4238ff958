"""Prompt sources by name: the built-in set, our JSONL format, and the public benchmarks — from a file the config
names (`path`), or else from the cache of fetched sources (engine.inputs.fetch), fetched first when the run may
reach the network."""

from __future__ import annotations

from typing import Callable

from engine.config import PromptsConfig
from engine.errors import ConfigError
from engine.inputs import fetch
from engine.inputs.loaders import LOADERS
from engine.inputs.loaders.paper import COUNTS, load_paper
from engine.inputs.prompts import BUILTIN_PATH, LoadReport, Prompt, load_jsonl_prompts, select

# How a source's file is found: (the prompts config, the report, whether the run is offline, whether a source
# missing offline is skipped rather than an error).
Loader = Callable[[PromptsConfig, LoadReport, bool, bool], list[Prompt]]


def _builtin(cfg: PromptsConfig, report: LoadReport, offline: bool, skip_missing: bool) -> list[Prompt]:
    return load_jsonl_prompts(cfg.path or BUILTIN_PATH, source="builtin", on_error=cfg.on_error, report=report)


def _jsonl(cfg: PromptsConfig, report: LoadReport, offline: bool, skip_missing: bool) -> list[Prompt]:
    if not cfg.path:
        raise ConfigError("prompts.path: the jsonl source needs a file path")
    return load_jsonl_prompts(cfg.path, on_error=cfg.on_error, report=report)


def _benchmark(name: str) -> Loader:
    def load(cfg: PromptsConfig, report: LoadReport, offline: bool, skip_missing: bool) -> list[Prompt]:
        path = cfg.path or fetch.ensure(name, offline=offline)
        return LOADERS[name](path, on_error=cfg.on_error, report=report, **cfg.options)

    return load


def _paper(cfg: PromptsConfig, report: LoadReport, offline: bool, skip_missing: bool) -> list[Prompt]:
    """The paper's mix: files from `paths` where given, else every benchmark from the cache. Sources that are
    neither given nor cached (nor fetchable offline) stop the run with the command that fetches them — unless
    `missing_sources: skip`, which draws from what there is and reports the shortfall."""
    paths = dict(cfg.paths)
    missing = []
    for name in COUNTS:
        if paths.get(name):
            continue
        try:
            paths[name] = str(fetch.ensure(name, offline=offline))
        except fetch.FetchError:
            missing.append(name)
            paths[name] = None
    if missing and not (skip_missing or cfg.missing_sources == "skip"):
        names = " ".join(missing)
        raise ConfigError(f"prompts: the paper's mix needs {', '.join(missing)}, which are not in the cache "
                          f"({fetch.cache_root()}) and cannot be fetched (this run is offline): run `python "
                          f"engine/run.py fetch {names}` where there is network, or `python engine/run.py fetch "
                          f"{names} --from DIR` with files you have; or set prompts.missing_sources: skip to draw "
                          "from the sources there are (the composition then differs from the paper's)")
    return load_paper(paths, seed=cfg.seed, on_error=cfg.on_error, report=report)


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
    prompts = SOURCES[cfg.source](cfg, report if report is not None else LoadReport(), offline, skip_missing)
    return select(prompts, per_category=cfg.per_category, limit=cfg.limit)
