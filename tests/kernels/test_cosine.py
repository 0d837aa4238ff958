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
