"""Connected components by union-find: one huge graph, or many small graphs in one call.

Union-find with union by size and path halving: each edge costs near-constant amortised time
(inverse Ackermann), without the CSR construction and traversal a graph library needs. Edges are
undirected; self-loops and repeated edges are allowed.
"""

from __future__ import annotations

import numpy as np
from numba import int64, njit, prange, types, void

from kernels._batch import dynamic_schedule, parallel_chunks
from kernels._inputs import as_offsets
from kernels._types import READONLY_I64, READONLY_I64_2D


@njit(inline="always")
def _find_root(parent, node):
    """Root of ``node``'s tree, halving the path on the way (each node skips to its grandparent)."""
    while parent[node] != node:
        parent[node] = parent[parent[node]]
        node = parent[node]
    return node


@njit(inline="always")
def _union_edges(parent, size, edges, first_edge, stop_edge, n_nodes):
    """Union the endpoints of ``edges[first_edge:stop_edge]``; returns how many unions merged two
    different trees, or -1 at the first edge naming a node outside ``0 .. n_nodes - 1`` (checked here,
    in the pass that reads the edges anyway, rather than in extra NumPy passes)."""
    n_merges = 0
    for edge in range(first_edge, stop_edge):
        u, v = edges[edge, 0], edges[edge, 1]
        if u < 0 or v < 0 or u >= n_nodes or v >= n_nodes:
            return -1
        root_u = _find_root(parent, u)
        root_v = _find_root(parent, v)
        if root_u == root_v:
            continue
        if size[root_u] < size[root_v]:
            root_u, root_v = root_v, root_u
        parent[root_v] = root_u
        size[root_u] += size[root_v]
        n_merges += 1
    return n_merges


@njit(inline="always")
def _canonical_labels(parent, first_node, stop_node, labels, root_labels):
    """Label nodes ``first_node .. stop_node - 1`` 0, 1, … in order of each component's smallest node."""
    next_label = 0
    for node in range(first_node, stop_node):
        root_labels[node] = -1
    for node in range(first_node, stop_node):
        root = _find_root(parent, node)
        if root_labels[root] < 0:
            root_labels[root] = next_label
            next_label += 1
        labels[node] = root_labels[root]


@njit(types.Tuple((int64, int64[::1]))(int64, READONLY_I64_2D), cache=True)
def _components_kernel(n_nodes, edges):
    parent = np.arange(n_nodes, dtype=np.int64)
    size = np.ones(n_nodes, dtype=np.int64)
    n_merges = _union_edges(parent, size, edges, 0, edges.shape[0], n_nodes)
    if n_merges < 0:
        return -1, np.empty(0, dtype=np.int64)
    labels = np.empty(n_nodes, dtype=np.int64)
    _canonical_labels(parent, 0, n_nodes, labels, size)  # size is no longer needed: reuse it
    return n_nodes - n_merges, labels


@njit(
    void(READONLY_I64, READONLY_I64, READONLY_I64, READONLY_I64_2D, int64[::1], int64[::1], int64, int64),
    cache=True,
)
def _components_groups(node_offsets, edge_offsets, group_sizes, edges, counts, labels, first_group, stop_group):
    """For graphs ``first_group .. stop_group - 1``: union the edges over a scratch forest sized to the
    largest graph, count the merges, and (when ``labels`` is not empty) write canonical labels. A graph
    with an edge outside it gets count -1."""
    largest = 0
    for group in range(first_group, stop_group):
        largest = max(largest, group_sizes[group])
    parent = np.empty(largest, dtype=np.int64)
    size = np.empty(largest, dtype=np.int64)
    local_labels = np.empty(largest, dtype=np.int64)
    write_labels = labels.size > 0
    for group in range(first_group, stop_group):
        n = group_sizes[group]
        for node in range(n):
            parent[node] = node
            size[node] = 1
        n_merges = _union_edges(parent, size, edges, edge_offsets[group], edge_offsets[group + 1], n)
        if n_merges < 0:
            counts[group] = -1
            continue
        counts[group] = n - n_merges
        if write_labels:
            _canonical_labels(parent, 0, n, local_labels, size)
            first_node = node_offsets[group]
            for node in range(n):
                labels[first_node + node] = local_labels[node]


@njit(
    void(READONLY_I64, READONLY_I64, READONLY_I64, READONLY_I64_2D, int64[::1], int64[::1], int64),
    parallel=True,
    cache=True,
)
def _batched_components_kernel(node_offsets, edge_offsets, group_sizes, edges, counts, labels, n_chunks):
    """All graphs of a batch, ``prange`` over contiguous chunks of graphs."""
    n_groups = len(group_sizes)
    for chunk in prange(n_chunks):
        first_group, stop_group = chunk * n_groups // n_chunks, (chunk + 1) * n_groups // n_chunks
        _components_groups(node_offsets, edge_offsets, group_sizes, edges, counts, labels, first_group, stop_group)


def _as_edges(edges) -> np.ndarray:
    edges = np.asarray(edges)
    if edges.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise ValueError(f"edges must have shape (m, 2), got {edges.shape}")
    if not np.issubdtype(edges.dtype, np.integer):
        raise TypeError(f"edges must be integers, got {edges.dtype}")
    return np.ascontiguousarray(edges, dtype=np.int64)


def count_components(n_nodes: int, edges) -> tuple[int, np.ndarray]:
    """Connected components of one undirected graph.

    Args:
        n_nodes: number of nodes, labelled ``0 .. n_nodes - 1``; isolated nodes are components.
        edges: ``(m, 2)`` integer array of node pairs (copied only if not int64 C-contiguous).

    Returns:
        ``(n_components, labels)``: ``labels`` int64 of length ``n_nodes``, numbering components
        0, 1, … in order of their smallest node, so two nodes share a label iff they are connected.
        A graph with no nodes has 0 components.

    Raises:
        ValueError: if ``n_nodes`` is negative, an edge names a node outside ``0 .. n_nodes - 1``, or
            ``edges`` is not ``(m, 2)``.
    """
    if n_nodes < 0:
        raise ValueError("n_nodes must be non-negative")
    n_components, labels = _components_kernel(int(n_nodes), _as_edges(edges))
    if n_components < 0:
        raise ValueError(f"edges must name nodes in 0 .. {n_nodes - 1}")
    return int(n_components), labels


def count_components_batched(group_sizes, edge_offsets, edges, *, return_labels: bool = False):
    """Connected components of many small graphs in one call (e.g. one similarity graph per prompt).

    Args:
        group_sizes: int array, ``n_groups``; graph ``g`` has nodes ``0 .. group_sizes[g] - 1``.
        edge_offsets: int64 array, ``n_groups + 1``; graph ``g``'s edges are
            ``edges[edge_offsets[g]:edge_offsets[g + 1]]``.
        edges: ``(m, 2)`` integer array of node pairs, local to each graph.
        return_labels: also return each node's component label.

    Returns:
        ``counts``: int64, ``n_groups``, the number of components per graph (0 for an empty graph);
        with ``return_labels``, ``(counts, labels)``: ``labels`` int64 of length ``sum(group_sizes)``
        holding graph ``g``'s labels (numbered as in :func:`count_components`) at
        ``labels[node_offsets[g]:node_offsets[g + 1]]``, ``node_offsets`` being the running sum of
        ``group_sizes`` from 0.

    Raises:
        ValueError: on negative sizes, offsets that do not cover ``edges``, or an edge naming a
            node outside its graph.
    """
    group_sizes = np.ascontiguousarray(group_sizes, dtype=np.int64)
    if np.any(group_sizes < 0):
        raise ValueError("group_sizes must be non-negative")
    edges = _as_edges(edges)
    edge_offsets = as_offsets(edge_offsets, len(edges), "edge_offsets")
    if len(edge_offsets) != len(group_sizes) + 1:
        raise ValueError("edge_offsets must have length len(group_sizes) + 1")
    node_offsets = np.zeros(len(group_sizes) + 1, dtype=np.int64)
    np.cumsum(group_sizes, out=node_offsets[1:])
    counts = np.empty(len(group_sizes), dtype=np.int64)
    labels = np.empty(node_offsets[-1] if return_labels else 0, dtype=np.int64)
    n_chunks = parallel_chunks(len(group_sizes))
    with dynamic_schedule():
        _batched_components_kernel(node_offsets, edge_offsets, group_sizes, edges, counts, labels, n_chunks)
    if len(counts) and counts.min() < 0:
        raise ValueError(f"every edge must name nodes of its own graph (first bad graph: {int(np.argmax(counts < 0))})")
    return (counts, labels) if return_labels else counts


# --- networkx reference ----------------------------------------------------------------------------


def count_components_reference(n_nodes: int, edges) -> tuple[int, np.ndarray]:
    """:func:`count_components` through networkx, labels numbered the same way."""
    import networkx as nx  # only tests and benchmarks need it; keep it out of `import kernels`

    graph = nx.Graph()
    graph.add_nodes_from(range(n_nodes))
    graph.add_edges_from(map(tuple, np.asarray(edges).reshape(-1, 2).tolist()))
    labels = np.empty(n_nodes, dtype=np.int64)
    components = sorted(nx.connected_components(graph), key=min)
    for label, component in enumerate(components):
        labels[list(component)] = label
    return len(components), labels


def count_components_batched_reference(group_sizes, edge_offsets, edges) -> np.ndarray:
    """:func:`count_components_batched` counts through networkx, one graph at a time."""
    import networkx as nx

    edges = np.asarray(edges).reshape(-1, 2)
    counts = []
    for group, n in enumerate(group_sizes):
        graph = nx.Graph()
        graph.add_nodes_from(range(int(n)))
        graph.add_edges_from(map(tuple, edges[edge_offsets[group] : edge_offsets[group + 1]].tolist()))
        counts.append(nx.number_connected_components(graph))
    return np.array(counts, dtype=np.int64)
