"""The `paper` preset: the paper's 344-prompt mix, sampled from the six benchmark files with a recorded seed.

Composition (the paper's table of datasets): SimpleQA 50, MATH-500 50 (10 from each level 1–5),
MacGyver 50 (from the problems that are solvable AND need an unconventional solution), NoveltyBench 100 (all of
NB-Curated), Community Alignment 50 (English first turns), WildBench 44 (from its single-turn rows: the last turn of
a longer conversation is no prompt on its own). The paper's own draws are not public; this preset draws the same
shape.

Determinism: each source draws with its own ``random.Random(f"paper/{seed}/{source}")`` (string seeds are hashed
with SHA-512, so this does not depend on PYTHONHASHSEED), so adding or dropping one source leaves the others'
draws unchanged. Within a source the drawn prompts keep file order. Every drawn prompt carries
``meta["preset"] = {"name": "paper", "version": v, "seed": seed, "pool": n, "stratum": s}``: v is PRESET_VERSION
(bumped when the same seed draws other prompts), n the number of prompts it was drawn from (within its level for
MATH-500), s "level 1" … "level 5" for MATH-500 and None elsewhere.

Missing sources and short pools: a source without a path (Community Alignment and WildBench are not stored here) is
skipped with a warning, and a pool smaller than asked is taken whole with the shortfall noted. Both go into a
`PresetReport` when the caller passes one (it is a LoadReport, so skipped rows collect there as usual), and are
logged at WARNING either way.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from engine.errors import ConfigError
from engine.inputs.loaders import LOADERS, macgyver
from engine.inputs.prompts import LoadReport, Prompt

logger = logging.getLogger(__name__)

NAME = "paper"
# Prompts per source, in the order the preset lists them.
COUNTS: dict[str, int] = {
    "simpleqa": 50,
    "math500": 50,
    "macgyver": 50,
    "noveltybench": 100,
    "community_alignment": 50,
    "wildbench": 44,
}
MATH_LEVELS = (1, 2, 3, 4, 5)


@dataclass
class SourceSelection:
    """What the preset drew from one source.

    Attributes:
        path: the file, or None when the source was not given.
        asked: prompts the paper's composition asks for.
        pool: prompts eligible for the draw (after the source's filter).
        taken: prompts drawn.
        note: the shortfall or the reason for skipping, if any.
    """

    path: str | None
    asked: int
    pool: int = 0
    taken: int = 0
    note: str | None = None


@dataclass
class PresetReport(LoadReport):
    """A LoadReport that also records what a preset drew.

    Attributes:
        warnings: sources skipped and shortfalls, one sentence each.
        selections: per source, what was asked, available and taken.
    """

    selections: dict[str, SourceSelection] = field(default_factory=dict)


def limit_across_sources(prompts: list[Prompt], limit: int, seed: int) -> list[Prompt]:
    """`prompts.limit` on the preset: `limit` prompts drawn across its sources in proportion to each one's share
    (largest remainders; each source with its own seeded draw, kept in order). The first `limit` of the mix were
    whole sources in the order of COUNTS: `limit: 100` audited SimpleQA and MATH-500 alone, categories A and D."""
    if limit >= len(prompts):
        return list(prompts)
    by_source: dict[str, list[Prompt]] = {}
    for p in prompts:
        by_source.setdefault(p.source, []).append(p)
    exact = {s: limit * len(ps) / len(prompts) for s, ps in by_source.items()}
    quota = {s: int(q) for s, q in exact.items()}
    # the seats left go to the largest remainders (ties: the source first in the mix; sorted() keeps that order)
    for s in sorted(exact, key=lambda s: quota[s] - exact[s])[:limit - sum(quota.values())]:
        quota[s] += 1
    out: list[Prompt] = []
    for s, ps in by_source.items():
        out += _draw(random.Random(f"{NAME}/{seed}/limit/{s}"), ps, quota[s])
    return out


def _draw(rng: random.Random, pool: list[Prompt], k: int) -> list[Prompt]:
    """k prompts of the pool at random (all of it when it is smaller), in pool order."""
    if len(pool) <= k:
        return list(pool)
    chosen = set(rng.sample(range(len(pool)), k))
    return [p for i, p in enumerate(pool) if i in chosen]


# Bumped when the same seed draws other prompts: 2 (2026-12-02) draws WildBench from its single-turn rows, leaves
# prompts over prompts.max_prompt_chars out of the pools, and spreads prompts.limit across the sources.
PRESET_VERSION = 2


def _tag(prompts: list[Prompt], seed: int, pool: int, stratum: str | None) -> list[Prompt]:
    preset = {"name": NAME, "version": PRESET_VERSION, "seed": seed, "pool": pool, "stratum": stratum}
    return [dataclasses.replace(p, meta={**p.meta, "preset": preset}) for p in prompts]


def _single_turn(p: Prompt) -> bool:
    """A WildBench row that is one user turn: the last turn of a longer conversation ("make it shorter") is no
    prompt on its own, and each strategy starts a fresh conversation with it."""
    return (p.meta or {}).get("n_turns", 1) == 1


# The filter that makes each source's pool; sources not listed use every loaded prompt.
POOL_FILTERS: dict[str, Callable[[Prompt], bool]] = {"macgyver": macgyver.paper_subset, "wildbench": _single_turn}
# What a source loaded on its own says of the prompts it keeps that its preset pool would leave out.
OUTSIDE_POOL = {
    "wildbench": "{outside} of {total} prompts are the last user turn of a longer conversation; the generator sees "
                 "that turn alone, without the turns before it",
    "macgyver": "{outside} of {total} problems are unsolvable or need no unconventional solution; the paper drew from "
                "the others (prompts.options: {{solvable_unconventional: true}} keeps only those)",
}


def outside_pool_warning(source: str, path: str | Path, prompts: list[Prompt]) -> str | None:
    """For a benchmark loaded as a source of its own: how many of its prompts the paper's pool leaves out, or None."""
    keep = POOL_FILTERS.get(source)
    outside = sum(1 for p in prompts if not keep(p)) if keep is not None else 0
    return f"{path}: " + OUTSIDE_POOL[source].format(outside=outside, total=len(prompts)) if outside else None


def load_paper(
    paths: Mapping[str, str | Path | None],
    *,
    seed: int = 0,
    on_error: str = "fail",
    report: LoadReport | None = None,
    reasons: Mapping[str, str] | None = None,
    max_prompt_chars: int = 0,
) -> list[Prompt]:
    """Sample the paper's prompt mix from the benchmark files given.

    Args:
        paths: source name (simpleqa, math500, macgyver, noveltybench, community_alignment, wildbench) → file.
            Sources left out, or given as None, are skipped with a warning.
        seed: the draw's seed, recorded in every prompt's meta.
        on_error: passed to each loader: "fail" raises the first bad row; "skip" records it and goes on.
        report: collects skipped rows; a `PresetReport` also receives the warnings and per-source selections.
        reasons: source → why it has no file (a fetch that failed), said in that source's warning.
        max_prompt_chars: prompts longer than this are left out of each source's pool (0: none), so the draw is
            made of prompts the run takes: cut after the draw, they left MATH-500's levels unbalanced and a source
            short (the paper left out 6 WildBench prompts and still drew 44). Said per source.

    Returns:
        The drawn prompts, source by source in the order of `COUNTS` (344 when every source is given and large
        enough).

    Raises:
        ConfigError: a key of `paths` is not a known source.
        InputError: a bad file or row (see the loaders), unless on_error is "skip" for rows.
    """
    unknown = sorted(set(paths) - set(COUNTS))
    if unknown:
        raise ConfigError(f"prompts.paths: unknown source {unknown[0]!r}; known: {', '.join(COUNTS)}")
    report = report if report is not None else PresetReport()
    selected: list[Prompt] = []
    for source, asked in COUNTS.items():
        path = paths.get(source)
        selection = SourceSelection(path=str(path) if path is not None else None, asked=asked)
        if isinstance(report, PresetReport):
            report.selections[source] = selection
        if path is None:
            why = (reasons or {}).get(source) or "neither given nor fetched"
            _warn(report, selection, f"{source}: no file ({why}), skipped ({asked} prompts of the paper's mix "
                                     "missing)")
            continue
        loaded = LOADERS[source](path, on_error=on_error, report=report)
        keep = POOL_FILTERS.get(source)
        pool = [p for p in loaded if keep is None or keep(p)]
        if max_prompt_chars:
            fitting = [p for p in pool if len(p.text) <= max_prompt_chars]
            if len(fitting) < len(pool):
                _warn(report, selection, f"{source}: {len(pool) - len(fitting)} prompts over prompts.max_prompt_chars "
                                         f"({max_prompt_chars}) left out of the pool of {len(pool)}")
            pool = fitting
        selection.pool = len(pool)
        rng = random.Random(f"{NAME}/{seed}/{source}")
        if source == "math500":
            drawn, shortfalls = _draw_math_levels(rng, pool, asked // len(MATH_LEVELS), seed)
        else:
            drawn = _tag(_draw(rng, pool, asked), seed, len(pool), None)
            shortfalls = [f"{len(pool)} of {asked}"] if len(pool) < asked else []
        selection.taken = len(drawn)
        if shortfalls:
            _warn(report, selection, f"{source}: pool too small, took all: {'; '.join(shortfalls)}")
        selected.extend(drawn)
    return selected


def _draw_math_levels(
    rng: random.Random, pool: list[Prompt], per_level: int, seed: int
) -> tuple[list[Prompt], list[str]]:
    """`per_level` problems from each difficulty level, in file order; shortfalls as "level N: k of m"."""
    chosen_ids: set[str] = set()
    stratum: dict[str, str] = {}
    level_pool: dict[str, int] = {}
    shortfalls = []
    for level in MATH_LEVELS:
        at_level = [p for p in pool if p.meta.get("level") == level]
        if len(at_level) < per_level:
            shortfalls.append(f"level {level}: {len(at_level)} of {per_level}")
        for p in _draw(rng, at_level, per_level):
            chosen_ids.add(p.prompt_id)
            stratum[p.prompt_id] = f"level {level}"
            level_pool[p.prompt_id] = len(at_level)
    drawn = []
    for p in pool:
        if p.prompt_id in chosen_ids:
            drawn.extend(_tag([p], seed, level_pool[p.prompt_id], stratum[p.prompt_id]))
    return drawn, shortfalls


def _warn(report: LoadReport, selection: SourceSelection, message: str) -> None:
    selection.note = message
    if isinstance(report, PresetReport):
        report.warnings.append(message)
    logger.warning("paper preset: %s", message)
