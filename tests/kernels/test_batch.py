"""kernels._batch: the flat matrix container and the matrix-to-diversity reduction."""

from __future__ import annotations

import math

import numpy as np

from kernels._batch import SquareMatrixBatch, mean_pairwise, mean_pairwise_distance, square_matrix_offsets


def batch_of(*matrices: np.ndarray) -> SquareMatrixBatch:
    sizes = np.array([len(matrix) for matrix in matrices], dtype=np.int64)
    values = np.concatenate([np.asarray(matrix, dtype=np.float64).ravel() for matrix in matrices] or [np.zeros(0)])
    return SquareMatrixBatch(values, square_matrix_offsets(sizes), sizes)


def test_indexing_returns_each_group_matrix():
    first, second = np.eye(2), np.arange(9.0).reshape(3, 3)
    batch = batch_of(first, np.zeros((0, 0)), second)
    assert len(batch) == 3
    np.testing.assert_array_equal(batch[0], first)
    assert batch[1].shape == (0, 0)
    np.testing.assert_array_equal(batch[2], second)
    assert [matrix.shape for matrix in batch] == [(2, 2), (0, 0), (3, 3)]


def test_negative_index_counts_from_the_end():
    second = np.arange(9.0).reshape(3, 3)
    np.testing.assert_array_equal(batch_of(np.eye(2), second)[-1], second)


def test_mean_pairwise_distance_averages_the_upper_triangle():
    similarities = np.array([[1.0, 0.5, 0.0], [0.9, 1.0, 0.25], [0.9, 0.9, 1.0]])  # lower triangle ignored
    assert mean_pairwise_distance(batch_of(similarities))[0] == (0.5 + 1.0 + 0.75) / 3


def test_mean_pairwise_distance_is_nan_without_pairs():
    distances = mean_pairwise_distance(batch_of(np.zeros((0, 0)), np.ones((1, 1))))
    assert all(math.isnan(value) for value in distances)


def test_mean_pairwise_averages_the_upper_triangle_itself():
    distances = np.array([[0.0, 0.5, 1.0], [9.0, 0.0, 0.25], [9.0, 9.0, 0.0]])
    assert mean_pairwise(batch_of(distances))[0] == (0.5 + 1.0 + 0.25) / 3
