"""Per-group cosine similarity matrices of response embeddings, and embedding diversity.

For embeddings ``x`` and ``y``: ``cos(x, y) = x·y / (‖x‖ ‖y‖)``, i.e. the dot product of the
L2-normalised vectors. Zero vectors have no direction; following pynndescent's cosine distance, two
zero vectors count as identical (cos = 1) and a zero vector is orthogonal to any other (cos = 0). An
embedding holding a NaN or an infinity has no known direction: its cosine with any other is NaN, even beside a
zero vector. The diagonal is 1. Sums accumulate in float64 whatever the input dtype, over each row scaled by the
power of two that brings its largest magnitude just under 1 (:func:`_row_scale`): rows of 1e200 overflowed the dot
products (NaN) and rows of 1e-200 underflowed to zero vectors. A power of two scales exactly, so the cosines of
other rows are those of the rows as they are.
"""

from __future__ import annotations

import math

import numpy as np
from numba import float64, njit, prange, void

from kernels._batch import SquareMatrixBatch, dynamic_schedule, mean_pairwise_distance, square_matrix_offsets
from kernels._inputs import as_offsets
from kernels._types import READONLY_F32_2D, READONLY_F64_2D, READONLY_I64

# Groups are small (a Gram matrix of a few rows): threads take them a few hundred at a time.
_GROUPS_PER_GRAB = 256


# Scales are at most 2**1000 (a subnormal row would need up to 2**1074, which is no float), so scaled rows have their
# largest magnitude in [2**-75, 1): neither their squares nor their sums overflow, and their largest squares do not
# underflow.
_MAX_SCALE_EXPONENT = 1000
# A row whose sum of squares is finite and at least this needs no scaling: its largest square is a normal number far
# above the underflow threshold, and by Cauchy–Schwarz no dot product with another such row overflows.
_SMALLEST_UNSCALED_SQUARES = 2.0**-900


@njit(inline="always")
def _row_scale(largest):
    """Power of two bringing a row whose largest magnitude is ``largest`` to just under 1: 1 for a zero row and
    for a NaN or infinite ``largest`` (left unscaled, the row's norm is not finite: its direction is unknown)."""
    if largest == 0.0 or not np.isfinite(largest):
        return 1.0
    return math.ldexp(1.0, min(-math.frexp(largest)[1], _MAX_SCALE_EXPONENT))


@njit(inline="always")
def _upper_gram(rows, first, n, out, base):
    """Dot products of rows ``first .. first + n - 1`` of ``rows`` into the upper triangle of ``out[base:]``."""
    for a in range(n):
        row_a = rows[first + a]
        for b in range(a, n):
            row_b = rows[first + b]
            dot = 0.0
            for k in range(rows.shape[1]):
                dot += float64(row_a[k]) * float64(row_b[k])
            out[base + a * n + b] = dot


@njit(
    [
        void(READONLY_F32_2D, READONLY_I64, READONLY_I64, float64[::1]),
        void(READONLY_F64_2D, READONLY_I64, READONLY_I64, float64[::1]),
    ],
    parallel=True,
    cache=True,
    # Reassociation lets LLVM vectorise the dot-product sums; NaN and infinity semantics are kept.
    fastmath={"reassoc", "contract"},
)
def _cosine_kernel(embeddings, offsets, matrix_offsets, out):
    """Fill ``out`` with each group's row-major cosine matrix: the group's Gram matrix scaled by the norms on its
    diagonal (zero-vector and unknown-direction rules in the module docstring).

    The Gram matrix is taken over the rows as they are, and again over the rows scaled by :func:`_row_scale` only
    in a group with a zero, NaN, infinite, huge or tiny row (a diagonal that is not finite or is under
    _SMALLEST_UNSCALED_SQUARES): scaling by powers of two is exact, so both give the same cosines, and ordinary
    groups pay nothing for it.
    """
    dim = embeddings.shape[1]
    for group in prange(len(offsets) - 1):
        first = offsets[group]
        n = offsets[group + 1] - first
        base = matrix_offsets[group]
        _upper_gram(embeddings, first, n, out, base)
        unscaled = True
        for a in range(n):
            squares = out[base + a * n + a]
            unscaled &= np.isfinite(squares) and squares >= _SMALLEST_UNSCALED_SQUARES
        if not unscaled:
            scaled = np.empty((n, dim), dtype=np.float64)
            for a in range(n):
                row = embeddings[first + a]
                largest = 0.0
                for k in range(dim):
                    largest = max(largest, abs(float64(row[k])))
                scale = _row_scale(largest)
                for k in range(dim):
                    scaled[a, k] = float64(row[k]) * scale
            _upper_gram(scaled, 0, n, out, base)
        for a in range(n):
            norm_a = np.sqrt(out[base + a * n + a])
            for b in range(a + 1, n):
                norm_b = np.sqrt(out[base + b * n + b])
                # A NaN or infinite embedding: unknown, never "orthogonal" to a zero one (an infinite norm was).
                if not (np.isfinite(norm_a) and np.isfinite(norm_b)):
                    similarity = np.nan
                elif norm_a == 0.0 and norm_b == 0.0:
                    similarity = 1.0
                elif norm_a == 0.0 or norm_b == 0.0:
                    similarity = 0.0
                else:
                    similarity = out[base + a * n + b] / (norm_a * norm_b)
                out[base + a * n + b] = similarity
                out[base + b * n + a] = similarity
        for a in range(n):
            out[base + a * n + a] = 1.0


def _as_embeddings(embeddings) -> np.ndarray:
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n_responses, dim), got shape {embeddings.shape}")
    dtype = np.float32 if embeddings.dtype == np.float32 else np.float64
    return np.ascontiguousarray(embeddings, dtype=dtype)


def cosine_matrices(embeddings, offsets) -> SquareMatrixBatch:
    """Cosine similarity between the embeddings of the responses in each group.

    Args:
        embeddings: ``(n_responses, dim)`` float32 or float64 array (other dtypes are converted to
            float64), rows in group order; not modified and copied only if not C-contiguous.
        offsets: int64 array of length ``n_groups + 1``; group ``g`` is rows ``offsets[g]:offsets[g + 1]``.

    Returns:
        One ``n_g × n_g`` float64 matrix per group (a :class:`SquareMatrixBatch`), diagonal 1, zero
        vectors handled as in the module docstring.
    """
    embeddings = _as_embeddings(embeddings)
    offsets = as_offsets(offsets, len(embeddings), "offsets")
    sizes = np.diff(offsets)
    matrix_offsets = square_matrix_offsets(sizes)
    values = np.empty(matrix_offsets[-1], dtype=np.float64)
    with dynamic_schedule(_GROUPS_PER_GRAB):
        _cosine_kernel(embeddings, offsets, matrix_offsets, values)
    return SquareMatrixBatch(values, matrix_offsets, sizes)


def embedding_diversity(embeddings, offsets) -> np.ndarray:
    """Embedding diversity per group: the mean over response pairs of ``1 − cos(a, b)``.

    Args:
        embeddings: as for :func:`cosine_matrices`.
        offsets: as for :func:`cosine_matrices`.

    Returns:
        float64 array of length ``n_groups``; NaN for a group of 0 or 1 responses (no pairs: undefined).
    """
    return mean_pairwise_distance(cosine_matrices(embeddings, offsets))


# --- NumPy reference -------------------------------------------------------------------------------


def _row_scales(group: np.ndarray) -> np.ndarray:
    """Per row, the power of two bringing its largest magnitude to just under 1 (1 for zero and NaN or infinite
    rows): scaled rows neither overflow nor underflow in the dot products, and scaling by it is exact."""
    largest = np.max(np.abs(group), axis=1, initial=0.0)
    scalable = np.isfinite(largest) & (largest > 0.0)
    exponents = np.minimum(-np.frexp(np.where(scalable, largest, 1.0))[1], _MAX_SCALE_EXPONENT)
    return np.ldexp(1.0, np.where(scalable, exponents, 0))


def cosine_matrices_reference(embeddings: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Per-group NumPy :func:`cosine_matrices`: scale and normalise the rows, then one matrix product."""
    matrices = []
    for first, stop in zip(offsets[:-1], offsets[1:], strict=True):
        group = np.asarray(embeddings[first:stop], dtype=np.float64)
        group = group * _row_scales(group)[:, None]
        with np.errstate(invalid="ignore", over="ignore"):
            norms = np.linalg.norm(group, axis=1)
        unknown = ~np.isfinite(norms)
        zero = norms == 0.0
        unit = np.where(unknown[:, None], 0.0, group) / np.where(zero | unknown, 1.0, norms)[:, None]
        matrix = unit @ unit.T
        matrix[np.ix_(zero, zero)] = 1.0
        matrix[unknown, :] = np.nan
        matrix[:, unknown] = np.nan
        np.fill_diagonal(matrix, 1.0)
        matrices.append(matrix)
    return matrices


def embedding_diversity_reference(embeddings: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per-group NumPy :func:`embedding_diversity`."""
    diversities = []
    for matrix in cosine_matrices_reference(embeddings, offsets):
        upper = matrix[np.triu_indices(len(matrix), k=1)]
        diversities.append(float(np.mean(1.0 - upper)) if upper.size else float("nan"))
    return np.array(diversities, dtype=np.float64)
