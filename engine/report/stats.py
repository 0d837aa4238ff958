"""Statistics of the report and of run comparisons: bootstrap intervals, Spearman, Cohen's kappa, confusion.

Every interval here is a percentile bootstrap over *clusters*, by default one cluster per observation. The report
clusters by prompt: the groups of one prompt (its strategies, its models) share the prompt's difficulty and are
not independent, so they are resampled together. Resampling clusters with replacement is the same as giving each
observation the weight "how many times its cluster was drawn", so every resample is one row of a weight matrix and
the statistics are weighted sums over it: no Python loop per resample.

Undefined statistics (too few observations, a constant input) come back as NaN with a reason in `Estimate.note`,
never as an exception: a report over a small or degenerate run still renders.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

# Below this many clusters a percentile interval moves in coarse steps (few distinct resamples): said in the note.
FEW_CLUSTERS = 10
# Largest weight matrix (resamples × observations) built at once; bigger bootstraps run in chunks of resamples.
MAX_CELLS = 4_000_000


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap percentile interval.

    Attributes:
        value: the statistic on the data (NaN when undefined).
        low, high: interval bounds (NaN when there is no interval: fewer than two clusters, or undefined).
        n: observations that entered the statistic.
        clusters: independent units resampled by the bootstrap (prompts, where the caller says so).
        note: why the value or the interval is missing or partly defined; empty when all is well.
    """

    value: float
    low: float
    high: float
    n: int
    clusters: int
    note: str = ""

    @property
    def defined(self) -> bool:
        return not math.isnan(self.value)

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def to_dict(self) -> dict[str, Any]:
        """Plain data, NaN as None (JSON has no NaN)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


NAN = float("nan")


def empty_estimate(note: str) -> Estimate:
    return Estimate(NAN, NAN, NAN, 0, 0, note)


def _as_float(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Float array with None as NaN."""
    if isinstance(values, np.ndarray) and values.dtype != object:
        return values.astype(np.float64, copy=False).reshape(-1)
    return np.asarray([NAN if v is None else v for v in values], dtype=np.float64)


def _cluster_index(clusters: Sequence[Any] | None, n: int) -> tuple[np.ndarray, int]:
    """Cluster number of each observation (0..k-1) and k."""
    if clusters is None:
        return np.arange(n), n
    _, inverse = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    return inverse.reshape(-1), int(inverse.max()) + 1 if n else 0


def bootstrap_weights(clusters: np.ndarray, k: int, resamples: int, rng: np.random.Generator):
    """Yield weight matrices (chunk × observations): how often each observation's cluster was drawn.

    Args:
        clusters: cluster number of each observation, in 0..k-1.
        k: number of clusters.
        resamples: total resamples, split into chunks that fit `MAX_CELLS`.
        rng: the seeded generator.
    """
    per_chunk = max(1, MAX_CELLS // max(k, len(clusters), 1))
    done = 0
    while done < resamples:
        m = min(per_chunk, resamples - done)
        draws = rng.integers(0, k, size=(m, k))
        # Count draws per cluster per resample with one bincount over offset indices.
        counts = np.bincount((draws + (np.arange(m) * k)[:, None]).ravel(), minlength=m * k).reshape(m, k)
        yield counts[:, clusters].astype(np.float64)
        done += m


def _few(k: int) -> str:
    return f"only {k} prompts: the interval is coarse" if k < FEW_CLUSTERS else ""


def _percentile_interval(samples: np.ndarray, ci: float) -> tuple[float, float, int]:
    """Percentile bounds over the defined resamples, and how many resamples were undefined."""
    ok = samples[~np.isnan(samples)]
    if ok.size == 0:
        return NAN, NAN, samples.size
    tail = (1.0 - ci) / 2.0 * 100.0
    low, high = np.percentile(ok, [tail, 100.0 - tail])
    return float(low), float(high), int(samples.size - ok.size)


def bootstrap_mean_ci(values: Sequence[float] | np.ndarray, *, clusters: Sequence[Any] | None = None,
                      resamples: int = 1000, seed: int = 0, ci: float = 0.95) -> Estimate:
    """Mean with a percentile bootstrap interval, resampling clusters (default: each value on its own).

    Args:
        values: the observations; None and NaN are dropped (with their cluster labels).
        clusters: a label per value (e.g. its prompt id); values sharing a label are resampled together.
        resamples: bootstrap resamples.
        seed: seed of the numpy Generator (same inputs and seed, same interval).
        ci: interval coverage, e.g. 0.95.

    Returns:
        Estimate of the mean; the interval is NaN with a note when there are fewer than two clusters.
    """
    x = _as_float(values)
    keep = ~np.isnan(x)
    labels = None if clusters is None else [c for c, k in zip(clusters, keep) if k]
    x = x[keep]
    if x.size == 0:
        return empty_estimate("no observations")
    idx, k = _cluster_index(labels, x.size)
    mean = float(x.mean())
    if k < 2:
        return Estimate(mean, NAN, NAN, int(x.size), k, "a single prompt: no interval")
    rng = np.random.default_rng(seed)
    parts = []
    for w in bootstrap_weights(idx, k, resamples, rng):
        # Every cluster holds at least one observation, so each resample's total weight is positive.
        parts.append((w @ x) / w.sum(axis=1))
    low, high, _ = _percentile_interval(np.concatenate(parts), ci)
    return Estimate(mean, low, high, int(x.size), k, _few(k))


def paired_bootstrap_diff_ci(a: Sequence[float], b: Sequence[float], *, clusters: Sequence[Any] | None = None,
                             resamples: int = 1000, seed: int = 0, ci: float = 0.95) -> Estimate:
    """Mean paired difference b − a with a bootstrap interval over pairs (or over clusters of pairs).

    Args:
        a, b: paired observations (same length); a pair with a missing side is dropped.
        clusters: a label per pair (e.g. the prompt id), resampled together.
        resamples, seed, ci: as in `bootstrap_mean_ci`.

    Returns:
        Estimate of mean(b − a).
    """
    xa, xb = _as_float(a), _as_float(b)
    if xa.shape != xb.shape:
        raise ValueError(f"paired samples differ in length: {xa.size} and {xb.size}")
    return bootstrap_mean_ci(xb - xa, clusters=clusters, resamples=resamples, seed=seed, ci=ci)


def _weighted_ranks(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties averaged) each observation would have in each resample's expanded sample.

    An observation drawn w times stands for w tied copies; its rank is the mean rank of those copies.
    """
    uniq, inv = np.unique(x, return_inverse=True)
    inv = inv.reshape(-1)
    m, u = w.shape[0], uniq.size
    # Copies of each distinct value per resample: one weighted bincount over row-offset value indices.
    per_value = np.bincount((inv[None, :] + (np.arange(m) * u)[:, None]).ravel(), weights=w.ravel(),
                            minlength=m * u).reshape(m, u)
    before = np.cumsum(per_value, axis=1) - per_value
    return (before + (per_value + 1.0) / 2.0)[:, inv]


def _weighted_pearson(rx: np.ndarray, ry: np.ndarray, w: np.ndarray) -> np.ndarray:
    total = w.sum(axis=1, keepdims=True)
    mx = (w * rx).sum(axis=1, keepdims=True) / total
    my = (w * ry).sum(axis=1, keepdims=True) / total
    dx, dy = rx - mx, ry - my
    cov = (w * dx * dy).sum(axis=1)
    var = (w * dx * dx).sum(axis=1) * (w * dy * dy).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # A resample where either side is constant has no rank correlation: NaN, counted in the note.
        r = np.where(var > 1e-12, cov / np.sqrt(np.where(var > 0, var, 1.0)), NAN)
    return np.clip(r, -1.0, 1.0)


def spearman_with_ci(x: Sequence[float], y: Sequence[float], *, clusters: Sequence[Any] | None = None,
                     resamples: int = 1000, seed: int = 0, ci: float = 0.95,
                     names: tuple[str, str] = ("x", "y"), unit: str = "pairs") -> Estimate:
    """Spearman's rank correlation with a bootstrap interval over observations (or clusters of them).

    Args:
        x, y: paired observations; a pair with a missing side is dropped.
        clusters: a label per pair (e.g. the prompt id), resampled together.
        resamples, seed, ci: as in `bootstrap_mean_ci`.
        names: what x and y are, for the notes ("x constant over all 12 pairs").
        unit: what one observation is, for the notes ("groups" in the report).

    Returns:
        Estimate of rho (scipy.stats.spearmanr on the data). NaN with a note when fewer than three pairs remain or
        either side is constant (rank correlation is undefined); the note also counts resamples that were
        undefined (constant within the resample) and left out of the interval.
    """
    xa, ya = _as_float(x), _as_float(y)
    if xa.shape != ya.shape:
        raise ValueError(f"paired samples differ in length: {xa.size} and {ya.size}")
    keep = ~(np.isnan(xa) | np.isnan(ya))
    labels = None if clusters is None else [c for c, k in zip(clusters, keep) if k]
    xa, ya = xa[keep], ya[keep]
    idx, k = _cluster_index(labels, xa.size)
    if xa.size < 3:
        return Estimate(NAN, NAN, NAN, int(xa.size), k, f"{xa.size} {unit}: too few for a rank correlation")
    constant = [name for name, v in zip(names, (xa, ya)) if np.all(v == v[0])]
    if constant:
        side = " and ".join(constant)
        return Estimate(NAN, NAN, NAN, int(xa.size), k, f"undefined: {side} constant over all {xa.size} {unit}")
    from scipy import stats as sps  # here: importing the report's settings should not cost a SciPy import

    rho = float(sps.spearmanr(xa, ya).statistic)
    if k < 2:
        return Estimate(rho, NAN, NAN, int(xa.size), k, "a single prompt: no interval")
    rng = np.random.default_rng(seed)
    parts = []
    for w in bootstrap_weights(idx, k, resamples, rng):
        parts.append(_weighted_pearson(_weighted_ranks(xa, w), _weighted_ranks(ya, w), w))
    low, high, undefined = _percentile_interval(np.concatenate(parts), ci)
    notes = [_few(k), f"{undefined} of {resamples} resamples constant, left out of the interval" if undefined else ""]
    return Estimate(rho, low, high, int(xa.size), k, "; ".join(n for n in notes if n))


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> tuple[float, str]:
    """Cohen's kappa of two raters' labels on the same items.

    Args:
        a, b: labels, one per item, same length.

    Returns:
        (kappa, note): kappa is NaN when there are no items or chance agreement is 1 (both raters gave one and
        the same label to everything), with the reason in note.
    """
    if len(a) != len(b):
        raise ValueError(f"raters labelled different numbers of items: {len(a)} and {len(b)}")
    if not a:
        return NAN, "no items rated by both"
    labels = sorted({*a, *b}, key=str)
    m = confusion_matrix(a, b, labels)
    n = m.sum()
    observed = np.trace(m) / n
    expected = float((m.sum(axis=1) @ m.sum(axis=0)) / (n * n))
    if expected >= 1.0 - 1e-12:
        return NAN, "undefined: both raters gave every item the same single label"
    return float((observed - expected) / (1.0 - expected)), ""


def confusion_matrix(truth: Sequence[Any], predicted: Sequence[Any], labels: Sequence[Any]) -> np.ndarray:
    """Counts: rows are `labels` of truth, columns `labels` of predicted. Items with a label outside `labels` on
    either side are not counted (list a catch-all label such as None to count them)."""
    pos = {label: k for k, label in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(truth, predicted):
        if t in pos and p in pos:
            m[pos[t], pos[p]] += 1
    return m


def per_class_recall(matrix: np.ndarray) -> np.ndarray:
    """Recall of each row class (diagonal over row total); NaN for a class with no items."""
    support = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(matrix) / np.where(support > 0, support, 1), NAN)
