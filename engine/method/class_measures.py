"""Measures from a group's equivalence classes (no model calls): semantic entropy, NoveltyBench's distinct and
utility, and — for contrast, from the embeddings rather than the classes — the Vendi score.

The classes are the judge's: the connected components of a group's "equivalent" graph (engine.method.components,
through the union-find kernel), each response labelled by its class, numbered by first appearance.
A group whose count is unresolved (some unreadable verdict could change it) has no classes, so none of the class
measures: they are None there and counted apart, as the counts are.

- semantic entropy (Kuhn et al. 2023, over the judge's classes instead of NLI clusters): H = −Σ_c p_c ln p_c with
  p_c = |c| / n, in nats; normalised by ln n (0: one class, 1: every response its own class).
- distinct (NoveltyBench, Zhang et al. 2025): the number of classes.
- utility (NoveltyBench): Σ_i p^i · q_i · [response i opens a new class] / Σ_i p^i over responses in generation
  order (i = 0 … n−1), patience p = 0.8; q_i the response's quality in [0, 1]. Ours is the checklist grade
  (1–5, the mean over graders) mapped to (g − 1) / 4; NoveltyBench uses a reward model's score, so the value is
  comparable in shape, not in scale.
- Vendi score (Friedman & Dieng 2023): exp of the Shannon entropy of the eigenvalues of K / n, K the cosine
  similarity matrix of the group's embeddings (the metrics stage's); between 1 (identical) and n (orthogonal).

Each function has its plain definition beside it in the tests (tests/engine/method/test_class_measures.py), with
hand-computed values.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

PATIENCE = 0.8


def semantic_entropy(classes: Sequence[int]) -> float:
    """Entropy of the class distribution in nats."""
    n = len(classes)
    if n == 0:
        return 0.0
    counts = np.bincount(np.asarray(classes, dtype=np.int64))
    p = counts[counts > 0] / n
    return float(-(p * np.log(p)).sum()) + 0.0  # + 0.0: never -0.0


def normalised_entropy(classes: Sequence[int]) -> float | None:
    """Semantic entropy / ln n (None for a single response)."""
    n = len(classes)
    return semantic_entropy(classes) / math.log(n) if n > 1 else None


def distinct(classes: Sequence[int]) -> int:
    return len(set(classes))


def utility(classes: Sequence[int], quality: Sequence[float | None], patience: float = PATIENCE) -> float | None:
    """NoveltyBench's utility: patience-discounted quality of the responses that open a new class. None when a
    response's quality is unknown (an unknown is never 0)."""
    if not classes or any(q is None for q in quality) or len(quality) != len(classes):
        return None
    seen: set[int] = set()
    num = den = 0.0
    for i, (c, q) in enumerate(zip(classes, quality)):
        w = patience ** i
        den += w
        if c not in seen:
            seen.add(c)
            num += w * float(q)  # type: ignore[arg-type]
    return num / den


def grade_quality(grade: float | None) -> float | None:
    """A 1–5 checklist grade as a quality in [0, 1]."""
    return None if grade is None else (float(grade) - 1.0) / 4.0


def vendi_score(similarity: np.ndarray) -> float | None:
    """Vendi score of an n×n similarity matrix with ones on the diagonal (None for an empty one)."""
    k = np.asarray(similarity, dtype=np.float64)
    n = k.shape[0]
    if n == 0 or not np.isfinite(k).all():
        return None
    eig = np.linalg.eigvalsh((k + k.T) / 2.0 / n)
    eig = eig[eig > 1e-12]
    return float(math.exp(-(eig * np.log(eig)).sum()))
