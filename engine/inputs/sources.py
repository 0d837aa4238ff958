"""Prompt sources by name: the built-in set, our JSONL format, and the public benchmarks' loaders."""

from __future__ import annotations

from typing import Callable

from engine.config import PromptsConfig
from engine.errors import ConfigError
from engine.inputs.loaders import LOADERS
from engine.inputs.loaders.paper import load_paper
from engine.inputs.prompts import BUILTIN_PATH, LoadReport, Prompt, load_jsonl_prompts, select


def _builtin(cfg: PromptsConfig, report: LoadReport) -> list[Prompt]:
    return load_jsonl_prompts(cfg.path or BUILTIN_PATH, source="builtin", on_error=cfg.on_error, report=report)


def _jsonl(cfg: PromptsConfig, report: LoadReport) -> list[Prompt]:
    if not cfg.path:
        raise ConfigError("prompts.path: the jsonl source needs a file path")
    return load_jsonl_prompts(cfg.path, on_error=cfg.on_error, report=report)


def _benchmark(name: str) -> Callable[[PromptsConfig, LoadReport], list[Prompt]]:
    def load(cfg: PromptsConfig, report: LoadReport) -> list[Prompt]:
        if not cfg.path:
            raise ConfigError(f"prompts.path: the {name} source needs the benchmark's file")
        return LOADERS[name](cfg.path, on_error=cfg.on_error, report=report, **cfg.options)

    return load


def _paper(cfg: PromptsConfig, report: LoadReport) -> list[Prompt]:
    if not cfg.paths:
        raise ConfigError("prompts.paths: the paper source needs benchmark files (name → path)")
    return load_paper(cfg.paths, seed=cfg.seed, on_error=cfg.on_error, report=report)


SOURCES: dict[str, Callable[[PromptsConfig, LoadReport], list[Prompt]]] = {
    "builtin": _builtin,
    "jsonl": _jsonl,
    **{name: _benchmark(name) for name in LOADERS},
    "paper": _paper,
}


def load_prompts(cfg: PromptsConfig, report: LoadReport | None = None) -> list[Prompt]:
    """Load, validate and select the prompts a config names.

    Raises:
        ConfigError: unknown source or missing path.
        InputError: a bad row (file, line, field), unless on_error is "skip".
    """
    if cfg.source not in SOURCES:
        raise ConfigError(f"prompts.source: unknown source {cfg.source!r}; known: {', '.join(SOURCES)}")
    prompts = SOURCES[cfg.source](cfg, report if report is not None else LoadReport())
    return select(prompts, per_category=cfg.per_category, limit=cfg.limit)
