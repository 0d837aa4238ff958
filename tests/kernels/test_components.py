"""kernels.components against networkx, for one graph and for batches of small graphs."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.components import (
    count_components,
    count_components_batched,
    count_components_batched_reference,
    count_components_reference,
)


def random_graph(seed: int, n_nodes: int, n_edges: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, max(n_nodes, 1), size=(n_edges, 2))


def random_batch(seed: int, n_groups: int = 60):
    """Graphs of 0–12 nodes with up to ~1.2 edges per node, edges local to each graph."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 13, size=n_groups)
    edge_counts = np.where(sizes > 0, rng.integers(0, 2 * sizes + 1), 0)
    edges = np.concatenate([rng.integers(0, max(n, 1), size=(m, 2)) for n, m in zip(sizes, edge_counts, strict=True)])
    edge_offsets = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(edge_counts, out=edge_offsets[1:])
    return sizes, edge_offsets, edges


@pytest.mark.parametrize("n_nodes, n_edges", [(50, 20), (200, 150), (1000, 1200)])
def test_single_graph_agrees_with_networkx(n_nodes, n_edges):
    edges = random_graph(n_nodes, n_nodes, n_edges)
    n_components, labels = count_components(n_nodes, edges)
    expected_count, expected_labels = count_components_reference(n_nodes, edges)
    assert n_components == expected_count, "component count"
    np.testing.assert_array_equal(labels, expected_labels, err_msg="component labels")


@pytest.mark.parametrize("seed", range(3))
def test_batched_counts_agree_with_networkx(seed):
    sizes, edge_offsets, edges = random_batch(seed)
    np.testing.assert_array_equal(
        count_components_batched(sizes, edge_offsets, edges),
        count_components_batched_reference(sizes, edge_offsets, edges),
        err_msg="batched component counts",
    )


def test_batched_labels_match_single_graph_labels():
    sizes, edge_offsets, edges = random_batch(7)
    counts, labels = count_components_batched(sizes, edge_offsets, edges, return_labels=True)
    node_offsets = np.concatenate([[0], np.cumsum(sizes)])
    for group, n in enumerate(sizes):
        n_components, expected = count_components(int(n), edges[edge_offsets[group] : edge_offsets[group + 1]])
        assert counts[group] == n_components
        np.testing.assert_array_equal(labels[node_offsets[group] : node_offsets[group + 1]], expected)


def test_labels_number_components_by_smallest_node():
    _, labels = count_components(5, np.array([[3, 4], [1, 3]]))
    np.testing.assert_array_equal(labels, [0, 1, 2, 1, 1])


def test_graph_without_nodes_has_no_components():
    n_components, labels = count_components(0, np.zeros((0, 2), dtype=np.int64))
    assert n_components == 0 and labels.size == 0


def test_nodes_without_edges_are_their_own_components():
    assert count_components(4, [])[0] == 4


def test_self_loops_and_repeated_edges_change_nothing():
    assert count_components(3, np.array([[0, 0], [1, 2], [2, 1], [1, 2]]))[0] == 2


def test_int32_edges_are_accepted():
    assert count_components(3, np.array([[0, 1]], dtype=np.int32))[0] == 2


def test_empty_graphs_in_a_batch_count_zero():
    counts = count_components_batched([0, 3, 0], [0, 0, 1, 1], np.array([[0, 2]]))
    np.testing.assert_array_equal(counts, [0, 2, 0])


def test_empty_batch():
    assert count_components_batched([], [0], np.zeros((0, 2), dtype=np.int64)).shape == (0,)


@pytest.mark.parametrize("edges", [np.array([[0, 3]]), np.array([[-1, 0]])], ids=["too-large", "negative"])
def test_out_of_range_edges_are_rejected(edges):
    with pytest.raises(ValueError):
        count_components(3, edges)


def test_batched_edge_outside_its_graph_is_rejected():
    with pytest.raises(ValueError, match="own graph"):
        count_components_batched([2, 5], [0, 1, 1], np.array([[0, 4]]))
