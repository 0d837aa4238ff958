"""What the pairwise kernels share: the flat matrix container, the matrix-to-diversity reduction, and
how their ``prange`` loops split and schedule a shard."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numba
import numpy as np
from numba import boolean, float64, njit, void

from kernels._types import READONLY_F64, READONLY_I64


@dataclass(frozen=True)
class SquareMatrixBatch:
    """One square matrix per group, stored flat so a whole shard is one allocation.

    Group ``g``'s ``n × n`` matrix (``n = sizes[g]``) is ``values[offsets[g]:offsets[g + 1]]`` in
    row-major order. Indexing returns that matrix as a reshaped view; ``len`` is the number of groups;
    iterating yields the matrices in group order, so the batch can stand in for a list of arrays.

    Attributes:
        values: float64, ``sum(sizes ** 2)``.
        offsets: int64, ``n_groups + 1``.
        sizes: int64, ``n_groups``.
    """

    values: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, group: int) -> np.ndarray:
        group = range(len(self))[group]  # negative indices count from the end; out of range raises
        n = int(self.sizes[group])
        return self.values[self.offsets[group] : self.offsets[group] + n * n].reshape(n, n)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[group] for group in range(len(self)))


def parallel_chunks(n_items: int) -> int:
    """How many contiguous chunks a ``prange`` over ``n_items`` groups should use: several per thread,
    so uneven groups still balance, and each chunk reuses its scratch arrays across its groups."""
    return max(1, min(n_items, 8 * numba.get_num_threads()))


def dynamic_schedule(iterations_per_grab: int = 1):
    """Context manager making ``prange`` hand out iterations as threads free up, instead of splitting
    the range evenly up front: on a shared machine one slowed thread then no longer holds up the call."""
    return numba.parallel_chunksize(iterations_per_grab)


def square_matrix_offsets(sizes: np.ndarray) -> np.ndarray:
    """Return the int64 ``indptr`` of a flat batch of ``sizes[g] × sizes[g]`` matrices."""
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(np.asarray(sizes, dtype=np.int64) ** 2, out=offsets[1:])
    return offsets


@njit(void(READONLY_F64, READONLY_I64, READONLY_I64, boolean, float64[::1]), cache=True)
def _mean_upper_triangle_kernel(values, offsets, sizes, complement, out):
    """out[g] = mean over pairs a < b of M_g[a, b], or of 1 − M_g[a, b] with ``complement``; NaN when
    the group has fewer than two members."""
    for group in range(len(sizes)):
        n = sizes[group]
        if n < 2:
            out[group] = np.nan
            continue
        base = offsets[group]
        total = 0.0
        for a in range(n):
            for b in range(a + 1, n):
                total += values[base + a * n + b]
        mean = total / (n * (n - 1) // 2)
        out[group] = 1.0 - mean if complement else mean


def mean_pairwise(matrices: SquareMatrixBatch) -> np.ndarray:
    """Mean entry over the unordered pairs of each group (the upper triangle), e.g. the mean NCD.

    Args:
        matrices: per-group square matrices.

    Returns:
        float64 array of length ``n_groups``; NaN for groups of 0 or 1 members (no pairs: undefined).
    """
    out = np.empty(len(matrices), dtype=np.float64)
    _mean_upper_triangle_kernel(matrices.values, matrices.offsets, matrices.sizes, False, out)
    return out


def mean_pairwise_distance(similarities: SquareMatrixBatch) -> np.ndarray:
    """Mean of ``1 − similarity`` over the unordered pairs of each group (the upper triangle).

    Args:
        similarities: per-group similarity matrices.

    Returns:
        float64 array of length ``n_groups``; NaN for groups of 0 or 1 members (no pairs: undefined).
    """
    out = np.empty(len(similarities), dtype=np.float64)
    _mean_upper_triangle_kernel(similarities.values, similarities.offsets, similarities.sizes, True, out)
    return out
