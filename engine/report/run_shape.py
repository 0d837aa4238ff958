"""What a run's groups hold, for the report, its throughput record and compare: the group size its means are over
and the strategies it shows (a generated run's come from its config; an audited file's from the file).

Imports nothing of the project: engine.report.data, engine.report.run_stats and engine.report.compare use it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any


def audits_responses(config: Any) -> bool:
    """Whether the run audited a file of responses (prompts.source: responses) rather than generating them."""
    return getattr(getattr(config, "prompts", None), "source", None) == "responses"


def run_group_size(config: Any, groups: list[dict[str, Any]]) -> int:
    """The responses per group that the run's means are over: config.n for generated groups; for audited responses,
    the file's own group size (NoveltyBench writes 10, lm-eval its `repeats`, the example file 2) — its most common
    one, ties to the larger — since config.n says nothing about a file's groups."""
    if not audits_responses(config):
        return config.n
    sizes = Counter(g["n_responses"] for g in groups if g["status"] == "ok" and (g["n_responses"] or 0) >= 2)
    return max(sizes, key=lambda k: (sizes[k], k)) if sizes else config.n


def run_strategies(config: Any, groups: list[dict[str, Any]]) -> list[str]:
    """The strategies the report shows: the config's for generated groups; for audited responses, those the file's
    groups carry ("external", "lm-eval:<task>", "inspect:<task>", "noveltybench", or the file's own), config order
    first."""
    present = list(dict.fromkeys(g["strategy"] for g in groups))
    if not audits_responses(config) or not present:
        return list(config.strategies)
    named = [s for s in config.strategies if s in present]
    return named + [s for s in present if s not in named]
