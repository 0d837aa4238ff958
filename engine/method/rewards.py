"""Functional diversity as a per-response training reward, from the judges' equivalence classes (DARLING-style,
Li et al. 2025, with the task-anchored classes of this method instead of a fixed partition).

For a group of n responses to one prompt, a response in class C gets (n − |C|) / (n − 1): 1 when no other response
is equivalent to it, 0 when all are. Where homogeneity is desired — category A, one right answer — the reward is
inverted, (|C| − 1) / (n − 1): agreeing with the others is what is rewarded. Several judges: the mean over the judges
whose count is resolved; none resolved (an unreadable verdict could still join two classes): the reward is None,
never a number, and counted. A group of one response has no other response to differ from: (n − 1) = 0, its reward
is None too (not 0, which would read "all equivalent").
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

# Categories where homogeneity is desired (the paper's A: a well-specified objective with one right answer).
HOMOGENEOUS = frozenset({"A"})


def diversity_rewards(classes: Sequence[int], category: str | None) -> list[float | None]:
    """Each response's reward from its group's classes (class of each response, by position); None for the one
    response of a group of one."""
    n = len(classes)
    if n < 2:
        return [None] * n
    size = Counter(classes)
    if category in HOMOGENEOUS:
        return [(size[c] - 1) / (n - 1) for c in classes]
    return [(n - size[c]) / (n - 1) for c in classes]


def group_rewards(judged: Sequence[dict[str, Any]], n: int, category: str | None) -> tuple[list[float | None], list[str]]:
    """Rewards of one group's n responses from its components rows (one per judge: `classes`, `judge`), the mean
    over the judges whose classes are known, and the judges that entered. None for every response when none did."""
    known = [r for r in judged if r.get("classes") is not None and len(r["classes"]) == n]
    if not known or n < 2:
        return [None] * n, []
    per_judge = [diversity_rewards(r["classes"], category) for r in known]
    return [sum(v[i] for v in per_judge) / len(per_judge) for i in range(n)], [r["judge"] for r in known]
