"""kernels.cosine against a per-group NumPy loop, and the zero-vector rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kernels.cosine import (
    cosine_matrices,
    cosine_matrices_reference,
    embedding_diversity,
    embedding_diversity_reference,
)


def random_embeddings(seed: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Groups of 0–8 random vectors, some rows zero and some rows repeated."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 9, size=40)
    embeddings = rng.normal(size=(int(sizes.sum()), 24)).astype(dtype)
    embeddings[rng.random(len(embeddings)) < 0.1] = 0.0
    repeated = np.flatnonzero(rng.random(len(embeddings)) < 0.1)
    embeddings[repeated] = embeddings[repeated - 1] * 3.0  # same direction, other length
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return embeddings, offsets


@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-12), (np.float32, 1e-6)], ids=["float64", "float32"])
@pytest.mark.parametrize("seed", range(2))
def test_matrices_agree_with_reference(seed, dtype, tolerance):
    embeddings, offsets = random_embeddings(seed, dtype)
    matrices = cosine_matrices(embeddings, offsets)
    for group, (matrix, reference) in enumerate(
        zip(matrices, cosine_matrices_reference(embeddings, offsets), strict=True)
    ):
        np.testing.assert_allclose(matrix, reference, rtol=0, atol=tolerance, err_msg=f"cosine, group {group}")


@pytest.mark.parametrize("seed", range(2))
def test_embedding_diversity_agrees_with_reference(seed):
    embeddings, offsets = random_embeddings(seed, np.float64)
    np.testing.assert_allclose(
        embedding_diversity(embeddings, offsets),
        embedding_diversity_reference(embeddings, offsets),
        rtol=0,
        atol=1e-12,
        err_msg="embedding_diversity",
    )


def test_two_zero_vectors_are_identical():
    np.testing.assert_array_equal(cosine_matrices(np.zeros((2, 3)), [0, 2])[0], np.ones((2, 2)))


def test_zero_vector_is_orthogonal_to_any_other():
    matrix = cosine_matrices(np.array([[0.0, 0.0], [1.0, 2.0]]), [0, 2])[0]
    np.testing.assert_array_equal(matrix, [[1.0, 0.0], [0.0, 1.0]])


def test_cosine_ignores_length():
    matrix = cosine_matrices(np.array([[1.0, 1.0], [5.0, 5.0], [1.0, -1.0]]), [0, 3])[0]
    assert matrix[0, 1] == pytest.approx(1.0)
    assert matrix[0, 2] == pytest.approx(0.0)


def test_empty_and_single_groups():
    matrices = cosine_matrices(np.ones((1, 4), dtype=np.float32), [0, 0, 1])
    assert matrices[0].shape == (0, 0)
    np.testing.assert_array_equal(matrices[1], [[1.0]])
    assert all(math.isnan(value) for value in embedding_diversity(np.ones((1, 4)), [0, 0, 1]))


def test_integer_and_non_contiguous_input_is_accepted():
    embeddings = np.arange(24).reshape(4, 6)[:, ::2]
    np.testing.assert_allclose(
        cosine_matrices(embeddings, [0, 4])[0], cosine_matrices_reference(embeddings, np.array([0, 4]))[0], atol=1e-12
    )


def test_offsets_must_cover_the_rows():
    with pytest.raises(ValueError, match="offsets"):
        cosine_matrices(np.ones((3, 2)), [0, 2])


def test_a_nan_embedding_is_nan_beside_a_zero_one_as_in_the_reference():
    # The zero-vector rule ran first: NaN beside a zero row gave 0.0 (orthogonal), a NaN embedding lost unseen.
    embeddings = np.array([[np.nan, 1.0], [0.0, 0.0], [1.0, 0.0]])
    offsets = np.array([0, 3])
    (matrix,) = cosine_matrices(embeddings, offsets)
    (reference,) = cosine_matrices_reference(embeddings, offsets)
    assert np.isnan(matrix[0, 1]) and np.isnan(matrix[0, 2]) and np.isnan(reference[0, 1])
    assert matrix[1, 2] == reference[1, 2] == 0.0


def test_an_infinite_embedding_is_nan_beside_a_zero_one_as_in_the_reference():
    # Its norm is infinite, not NaN: beside a zero row it fell into the "orthogonal" branch (0.0; the reference NaN).
    embeddings = np.array([[np.inf, 1.0], [0.0, 0.0], [1.0, 0.0], [-np.inf, np.inf]])
    offsets = np.array([0, 4])
    (matrix,) = cosine_matrices(embeddings, offsets)
    (reference,) = cosine_matrices_reference(embeddings, offsets)
    for a, b in [(0, 1), (0, 2), (3, 1), (3, 2), (0, 3)]:
        assert np.isnan(matrix[a, b]) and np.isnan(matrix[b, a]) and np.isnan(reference[a, b]), (a, b)
    assert matrix[1, 2] == reference[1, 2] == 0.0
    np.testing.assert_array_equal(np.diag(matrix), 1.0)


@pytest.mark.parametrize("magnitude", [1e200, 1e300, 1e-200, 1e-300, 1e-310], ids=lambda m: f"{m:g}")
def test_huge_and_tiny_embeddings_keep_their_cosines(magnitude):
    # Rows of 1e200 overflowed the dot products (kernel NaN, reference 0.0) and rows of 1e-200 underflowed to zero
    # vectors (cosine 1): cosine ignores length, however large or small.
    rng = np.random.default_rng(3)
    embeddings = rng.normal(size=(5, 16))
    embeddings[4] = embeddings[3] * 7.0
    offsets = np.array([0, 5])
    (expected,) = cosine_matrices(embeddings, offsets)
    for scaled in (embeddings * magnitude, np.vstack([embeddings[:2], embeddings[2:] * magnitude])):
        (matrix,) = cosine_matrices(scaled, offsets)
        (reference,) = cosine_matrices_reference(scaled, offsets)
        # Subnormal rows keep fewer significant bits: 1e-310 about 44.
        np.testing.assert_allclose(matrix, expected, rtol=0, atol=1e-12 if magnitude >= 1e-300 else 1e-10)
        np.testing.assert_allclose(reference, matrix, rtol=0, atol=1e-12)
    assert matrix[3, 4] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(3))
def test_matrices_agree_with_reference_on_extreme_rows(seed):
    """Random groups whose rows are scaled by 1e±300 or hold NaN or infinities, beside zero rows."""
    embeddings, offsets = random_embeddings(seed, np.float64)
    rng = np.random.default_rng(100 + seed)
    scales = 10.0 ** rng.choice([0, 0, 200, 300, -200, -300, -310], size=len(embeddings))
    embeddings *= scales[:, None]
    odd = rng.random(len(embeddings))
    embeddings[odd < 0.05, 0] = np.inf
    embeddings[(odd >= 0.05) & (odd < 0.08), 1] = np.nan
    matrices = cosine_matrices(embeddings, offsets)
    for group, (matrix, reference) in enumerate(
        zip(matrices, cosine_matrices_reference(embeddings, offsets), strict=True)
    ):
        np.testing.assert_allclose(matrix, reference, rtol=0, atol=1e-12, err_msg=f"cosine, group {group}")
    np.testing.assert_allclose(
        embedding_diversity(embeddings, offsets), embedding_diversity_reference(embeddings, offsets), rtol=0,
        atol=1e-12,
    )
