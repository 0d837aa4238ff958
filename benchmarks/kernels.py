"""Benchmark the kernels against their peers: same process, same data, best of ``--repeat`` runs.

Usage (from the repository root):

    .venv/bin/python benchmarks/kernels.py [--scale 1.0] [--only jaccard,components,cosine,gzip,scaling]

``--scale`` multiplies every data size. The gzip peer is the ``diversity`` package, which this project
does not install (its pins conflict with ours, see benchmarks/README.md); put it on ``PYTHONPATH`` to
run that row, e.g. ``pip install --no-deps --target /tmp/diversity-peer diversity==0.3.1`` and
``PYTHONPATH=/tmp/diversity-peer``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

REPO_ROOT = Path(__file__).resolve().parents[1]
# This script is itself named kernels.py: put the repository ahead of its own folder so that
# `import kernels` finds the package, not this file.
sys.path[:] = [str(REPO_ROOT)] + [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).parent]

import kernels  # noqa: E402
from kernels.jaccard import jaccard_matrices_reference  # noqa: E402

# --- results -----------------------------------------------------------------------------------------


@dataclass
class Row:
    """One kernel-versus-peer measurement."""

    name: str
    data: str
    kernel_s: float
    peer: str
    peer_s: float
    target: float  # required peer_s / kernel_s
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.peer_s / self.kernel_s

    @property
    def met(self) -> bool:
        return self.ratio >= self.target


@dataclass
class ScalingRow:
    """Time and peak memory of a run of 1×, 4×, 16× shards."""

    name: str
    shard: str
    shard_mb: float  # input size of one shard
    seconds: list[float]
    peak_mb: list[float]

    @property
    def exponent(self) -> float:
        return float(np.polyfit(np.log(SCALING_FACTORS), np.log(self.seconds), 1)[0])


SCALING_FACTORS = (1, 4, 16)


def best_of(function: Callable[[], object], repeat: int) -> float:
    """Fastest of ``repeat`` timed calls (the machine is shared; the minimum is the least disturbed)."""
    best = math.inf
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


# --- data --------------------------------------------------------------------------------------------

VOCABULARY_SIZE = 50_000
ZIPF_EXPONENT = 1.05
# English letter frequencies (a..z), so the text compresses like text.
LETTER_WEIGHTS = np.array(
    [8.2, 1.5, 2.8, 4.3, 12.7, 2.2, 2.0, 6.1, 7.0, 0.15, 0.77, 4.0, 2.4, 6.7, 7.5, 1.9, 0.095, 6.0, 6.3, 9.1, 2.8,
     0.98, 2.4, 0.15, 2.0, 0.074]
)  # fmt: skip
SEPARATORS = (b" ", b", ", b". ", b".")  # within a sentence, comma, sentence end, end of response


def vocabulary(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed vocabulary, word ``r`` being the ``r``-th most frequent: frequent words are short."""
    rng = np.random.default_rng(seed)
    ranks = np.arange(VOCABULARY_SIZE)
    lengths = 1 + rng.poisson(2.0 + 5.5 * (1 - np.exp(-ranks / 3000)))
    offsets = np.zeros(VOCABULARY_SIZE + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    letters = rng.choice(
        np.arange(ord("a"), ord("z") + 1, dtype=np.uint8), size=offsets[-1], p=LETTER_WEIGHTS / LETTER_WEIGHTS.sum()
    )
    return letters, offsets


VOCABULARY = vocabulary()
ZIPF_CDF = np.cumsum(1.0 / np.arange(1, VOCABULARY_SIZE + 1) ** ZIPF_EXPONENT)
ZIPF_CDF /= ZIPF_CDF[-1]


def exclusive_cumsum(values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values), dtype=np.int64)
    np.cumsum(values[:-1], out=out[1:])
    return out


def _response_chunk(rng: np.random.Generator, n_groups: int, per_group: int, mean_words: int):
    """UTF-8 bytes and text lengths for ``n_groups`` groups: Zipf words, a quarter of them drawn from the
    group's own 40 topic words (so responses to one prompt overlap), sentences of ~15 words with
    commas and capitals, ~``mean_words`` words per response."""
    letters, word_offsets = VOCABULARY
    n_texts = n_groups * per_group
    n_words = np.clip(rng.normal(mean_words, 30, n_texts), 20, 400).astype(np.int64)
    total = int(n_words.sum())
    words = np.minimum(np.searchsorted(ZIPF_CDF, rng.random(total)), VOCABULARY_SIZE - 1)
    topical = rng.random(total) < 0.25
    topics = rng.integers(500, VOCABULARY_SIZE, size=(n_groups, 40))
    group_of_word = np.repeat(np.arange(n_texts) // per_group, n_words)
    words[topical] = topics[group_of_word[topical], rng.integers(0, 40, int(topical.sum()))]

    draw = rng.random(total)
    separator = np.where(draw < 1 / 15, 2, np.where(draw < 1 / 15 + 1 / 12, 1, 0))
    last_words = np.cumsum(n_words) - 1
    separator[last_words] = 3
    capital = np.zeros(total, dtype=bool)
    capital[np.concatenate([[0], last_words[:-1] + 1])] = True
    capital[1:] |= separator[:-1] == 2

    separator_lengths = np.array([len(s) for s in SEPARATORS])[separator]
    word_lengths = word_offsets[words + 1] - word_offsets[words]
    word_starts = exclusive_cumsum(word_lengths + separator_lengths)
    buffer = np.empty(int((word_lengths + separator_lengths).sum()), dtype=np.uint8)
    within_word = np.arange(int(word_lengths.sum())) - np.repeat(exclusive_cumsum(word_lengths), word_lengths)
    buffer[np.repeat(word_starts, word_lengths) + within_word] = letters[
        np.repeat(word_offsets[words], word_lengths) + within_word
    ]
    buffer[word_starts + word_lengths] = np.array([s[0] for s in SEPARATORS], dtype=np.uint8)[separator]
    two_bytes = separator_lengths == 2
    buffer[(word_starts + word_lengths + 1)[two_bytes]] = ord(" ")
    buffer[word_starts[capital]] -= 32
    text_lengths = np.add.reduceat(word_lengths + separator_lengths, np.concatenate([[0], last_words[:-1] + 1]))
    return buffer, text_lengths


def make_responses(n_groups: int, seed: int, per_group: int = 5, mean_words: int = 150) -> tuple[pa.Array, np.ndarray]:
    """The pipeline's form of ``n_groups`` prompts × ``per_group`` responses: an Arrow large_string array
    built straight from NumPy buffers, and int64 group offsets."""
    rng = np.random.default_rng(seed)
    buffers, lengths = [], []
    for first in range(0, n_groups, 2000):
        buffer, text_lengths = _response_chunk(rng, min(2000, n_groups - first), per_group, mean_words)
        buffers.append(buffer)
        lengths.append(text_lengths)
    text_lengths = np.concatenate(lengths)
    text_offsets = np.zeros(len(text_lengths) + 1, dtype=np.int64)
    np.cumsum(text_lengths, out=text_offsets[1:])
    texts = pa.LargeStringArray.from_buffers(
        len(text_lengths), pa.py_buffer(text_offsets), pa.py_buffer(np.concatenate(buffers))
    )
    return texts, np.arange(0, len(text_lengths) + 1, per_group, dtype=np.int64)


def as_lists(texts: pa.Array, group_offsets: np.ndarray) -> list[list[str]]:
    flat = texts.to_pylist()
    return [flat[first:stop] for first, stop in zip(group_offsets[:-1], group_offsets[1:], strict=True)]


def make_graph_batch(n_groups: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n_groups`` graphs of 5–50 nodes with 0–2 edges per node, edges local to each graph."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(5, 51, size=n_groups)
    edge_counts = rng.integers(0, 2 * sizes + 1)
    edge_offsets = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(edge_counts, out=edge_offsets[1:])
    limits = np.repeat(sizes, edge_counts)
    edges = (rng.random((len(limits), 2)) * limits[:, None]).astype(np.int64)
    return sizes, edge_offsets, edges


def make_embeddings(n_groups: int, seed: int, per_group: int = 5, dim: int = 384) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    embeddings = rng.standard_normal((n_groups * per_group, dim), dtype=np.float32)
    return embeddings, np.arange(0, n_groups * per_group + 1, per_group, dtype=np.int64)


def describe_text(texts: pa.Array, group_offsets: np.ndarray) -> str:
    text_offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64)
    n_bytes = int(text_offsets[len(texts)] - text_offsets[0])
    per_group = len(texts) // max(len(group_offsets) - 1, 1)
    return f"{len(group_offsets) - 1:,} groups × {per_group}, {n_bytes / 1e6:.0f} MB"


# --- peers -------------------------------------------------------------------------------------------


def networkx_component_count(n_nodes: int, edges: np.ndarray) -> int:
    import networkx as nx

    graph = nx.Graph()
    graph.add_nodes_from(range(n_nodes))
    graph.add_edges_from(edges.tolist())
    return sum(1 for _ in nx.connected_components(graph))


def networkx_batched_counts(sizes: np.ndarray, edge_offsets: np.ndarray, edges: np.ndarray) -> np.ndarray:
    import networkx as nx

    counts = np.empty(len(sizes), dtype=np.int64)
    edge_list = edges.tolist()
    for group, n in enumerate(sizes.tolist()):
        graph = nx.Graph()
        graph.add_nodes_from(range(n))
        graph.add_edges_from(edge_list[edge_offsets[group] : edge_offsets[group + 1]])
        counts[group] = nx.number_connected_components(graph)
    return counts


def scipy_component_count(n_nodes: int, edges: np.ndarray) -> int:
    """scipy from the same edge list: build the sparse adjacency, then label."""
    from scipy.sparse import coo_array
    from scipy.sparse.csgraph import connected_components

    adjacency = coo_array(
        (np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n_nodes, n_nodes)
    ).tocsr()
    return connected_components(adjacency, directed=False)[0]


def scipy_batched_counts(sizes: np.ndarray, edge_offsets: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """scipy at its best on a batch: one block-diagonal graph, one labelling, counts per block."""
    from scipy.sparse import coo_array
    from scipy.sparse.csgraph import connected_components

    node_offsets = exclusive_cumsum(np.append(sizes, 0))
    shift = np.repeat(node_offsets[:-1], np.diff(edge_offsets))
    n_nodes = int(sizes.sum())
    adjacency = coo_array(
        (np.ones(len(edges), dtype=np.int8), (edges[:, 0] + shift, edges[:, 1] + shift)), shape=(n_nodes, n_nodes)
    ).tocsr()
    _, labels = connected_components(adjacency, directed=False)
    _, first_nodes = np.unique(labels, return_index=True)
    return np.bincount(np.searchsorted(node_offsets, first_nodes, side="right") - 1, minlength=len(sizes))


def numpy_cosine_loop(embeddings: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """The plain per-group NumPy way, in the embeddings' own dtype."""
    matrices = []
    for first, stop in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
        group = embeddings[first:stop]
        norms = np.linalg.norm(group, axis=1)
        unit = group / np.where(norms == 0, 1, norms)[:, None]
        matrices.append(unit @ unit.T)
    return matrices


def load_diversity_compression_ratio():
    """``diversity.compression_ratio`` loaded from its own file: the package ``__init__`` imports spaCy
    and downloads NLTK data, and the function needs neither. None when the package is not importable."""
    spec = importlib.util.find_spec("diversity")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "compression.py"
    module_spec = importlib.util.spec_from_file_location("diversity_compression", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.compression_ratio


# --- benchmarks --------------------------------------------------------------------------------------


def bench_jaccard(scale: float, repeat: int) -> list[Row]:
    texts, group_offsets = make_responses(int(20_000 * scale), seed=1)
    groups = as_lists(texts, group_offsets)
    data = describe_text(texts, group_offsets)
    kernels.jaccard_matrices((texts, group_offsets))  # load compiled code before timing
    # Untimed: the first list input makes pyarrow import pandas (0.2-0.4 s, once per process), which --repeat 1
    # would otherwise time.
    by_lists = kernels.jaccard_matrices(groups)

    reference = jaccard_matrices_reference(groups)
    peer_s = best_of(lambda: jaccard_matrices_reference(groups), 1)
    by_arrow = kernels.jaccard_matrices((texts, group_offsets))

    def largest_error(matrices) -> float:
        return max(float(np.abs(matrix - expected).max(initial=0.0))
                   for matrix, expected in zip(matrices, reference, strict=True))

    return [
        Row(
            "jaccard (Arrow)",
            data,
            best_of(lambda: kernels.jaccard_matrices((texts, group_offsets)), repeat),
            "Python sets",
            peer_s,
            30,
            f"max abs diff vs sets {largest_error(by_arrow):.0e}",
        ),
        Row(
            "jaccard (lists)",
            data,
            best_of(lambda: kernels.jaccard_matrices(groups), repeat),
            "Python sets",
            peer_s,
            10,
            f"max abs diff vs sets {largest_error(by_lists):.0e}",
        ),
    ]


def bench_components(scale: float, repeat: int) -> list[Row]:
    n_nodes, n_edges = int(200_000 * scale), int(1_000_000 * scale)
    edges = np.random.default_rng(2).integers(0, n_nodes, size=(n_edges, 2))
    kernels.count_components(n_nodes, edges)
    ours = kernels.count_components(n_nodes, edges)[0]
    assert ours == scipy_component_count(n_nodes, edges) == networkx_component_count(n_nodes, edges)
    kernel_s = best_of(lambda: kernels.count_components(n_nodes, edges), repeat)
    single = f"{n_nodes:,} nodes, {n_edges:,} edges"
    rows = [
        Row(
            "components (1 graph)",
            single,
            kernel_s,
            "networkx",
            best_of(lambda: networkx_component_count(n_nodes, edges), 1),
            50,
        ),
        Row(
            "components (1 graph)",
            single,
            kernel_s,
            "scipy csgraph",
            best_of(lambda: scipy_component_count(n_nodes, edges), repeat),
            1,
        ),
    ]

    sizes, edge_offsets, batch_edges = make_graph_batch(int(50_000 * scale), seed=3)
    counts = kernels.count_components_batched(sizes, edge_offsets, batch_edges)
    np.testing.assert_array_equal(counts, scipy_batched_counts(sizes, edge_offsets, batch_edges))
    np.testing.assert_array_equal(counts, networkx_batched_counts(sizes, edge_offsets, batch_edges))
    kernel_s = best_of(lambda: kernels.count_components_batched(sizes, edge_offsets, batch_edges), repeat)
    batch = f"{len(sizes):,} graphs, n=5…50, {len(batch_edges):,} edges"
    return rows + [
        Row(
            "components (batched)",
            batch,
            kernel_s,
            "networkx",
            best_of(lambda: networkx_batched_counts(sizes, edge_offsets, batch_edges), 1),
            50,
        ),
        Row(
            "components (batched)",
            batch,
            kernel_s,
            "scipy csgraph",
            best_of(lambda: scipy_batched_counts(sizes, edge_offsets, batch_edges), repeat),
            1,
            "one block-diagonal call",
        ),
    ]


def bench_cosine(scale: float, repeat: int) -> list[Row]:
    embeddings, offsets = make_embeddings(int(20_000 * scale), seed=4)
    ours = kernels.cosine_matrices(embeddings, offsets)
    theirs = numpy_cosine_loop(embeddings, offsets)
    largest_error = max(float(np.abs(matrix - expected).max()) for matrix, expected in zip(ours, theirs, strict=True))
    return [
        Row(
            "cosine",
            f"{len(offsets) - 1:,} groups × 5 × 384 float32",
            best_of(lambda: kernels.cosine_matrices(embeddings, offsets), repeat),
            "NumPy loop",
            best_of(lambda: numpy_cosine_loop(embeddings, offsets), repeat),
            5,
            f"max abs diff vs NumPy {largest_error:.0e}",
        )
    ]


def bench_gzip(scale: float, repeat: int) -> list[Row]:
    texts, group_offsets = make_responses(int(20_000 * scale), seed=5)
    groups = as_lists(texts, group_offsets)
    data = describe_text(texts, group_offsets)
    diversity_ratio = load_diversity_compression_ratio()
    kernel_s = best_of(lambda: kernels.compression_ratio((texts, group_offsets)), repeat)
    if diversity_ratio is None:
        return [
            Row("compression ratio", data, kernel_s, "diversity (not installed)", math.nan, 1, "see module docstring")
        ]

    ours = kernels.compression_ratio((texts, group_offsets))
    theirs = np.empty(len(groups))

    def run_diversity() -> None:
        for group, texts_of_group in enumerate(groups):
            theirs[group] = diversity_ratio(texts_of_group, algorithm="gzip")

    peer_s = best_of(run_diversity, 1)
    # The documented relation (kernels/compression.py): diversity = round(N / (S + 29 + 5·⌈S / 16383⌉), 3)
    # with S our gzip size; Python's round, as diversity uses it (NumPy rounds halves differently).
    holds = 0
    for group, ratio, their_ratio in zip(groups, ours, theirs, strict=True):
        n_bytes = len(" ".join(group).encode())
        our_size = round(n_bytes / ratio)
        predicted = round(n_bytes / (our_size + 29 + 5 * math.ceil(our_size / 16383)), 3)
        holds += their_ratio == predicted and their_ratio <= ratio
    note = f"relation holds {holds}/{len(groups)}; diversity ≈ ours × {np.median(theirs / ours):.3f}"
    return [Row("compression ratio", data, kernel_s, "diversity 0.3.1", peer_s, 1, note)]


def _reset_peak_rss() -> None:
    """Restart the kernel's high-water mark of this process's resident memory (Linux)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return math.nan


SCALING_CASES = ("jaccard (Arrow)", "compression ratio", "cosine", "components (batched)")


def _scaling_case(case: str, scale: float):
    """``(description, shard MB, make_shard, tiny_shard, run)`` for one scaling case. ``make_shard``
    returns a fresh copy of the shard, as if just read from storage."""
    if case in ("jaccard (Arrow)", "compression ratio"):
        texts, group_offsets = make_responses(int(5_000 * scale), seed=6)
        _, offsets_buffer, data_buffer = texts.buffers()
        template = np.frombuffer(data_buffer, np.uint8)

        def make_shard():
            copy = pa.py_buffer(template.copy())
            return pa.LargeStringArray.from_buffers(len(texts), offsets_buffer, copy), group_offsets

        tiny = (texts[:50], group_offsets[:11])
        run = kernels.jaccard_matrices if case == "jaccard (Arrow)" else kernels.compression_ratio
        return describe_text(texts, group_offsets), template.nbytes / 2**20, make_shard, tiny, run
    if case == "cosine":
        embeddings, offsets = make_embeddings(int(20_000 * scale), seed=7)
        description = f"{len(offsets) - 1:,} groups × 5 × 384"
        tiny = (embeddings[:50], offsets[:11])
        return (
            description,
            embeddings.nbytes / 2**20,
            lambda: (embeddings.copy(), offsets),
            tiny,
            lambda shard: kernels.cosine_matrices(*shard),
        )
    sizes, edge_offsets, edges = make_graph_batch(int(50_000 * scale), seed=8)
    tiny = (sizes[:10], edge_offsets[:11], edges[: edge_offsets[10]])
    return (
        f"{len(sizes):,} graphs, {len(edges):,} edges",
        edges.nbytes / 2**20,
        lambda: (sizes, edge_offsets, edges.copy()),
        tiny,
        lambda shard: kernels.count_components_batched(*shard),
    )


def scaling_worker(case: str, factor: int, scale: float) -> dict:
    """One cell of the scaling table, in a fresh process: a run of ``factor`` shards, each a fresh copy
    dropped after its call. Peak memory is the high-water mark above the resident size before the run."""
    description, shard_mb, make_shard, tiny, run = _scaling_case(case, scale)
    run(tiny)  # load the compiled code without touching shard-sized memory
    gc.collect()
    baseline = _rss_mb("VmRSS")
    _reset_peak_rss()
    elapsed = 0.0
    for _ in range(factor):
        shard = make_shard()
        start = time.perf_counter()
        result = run(shard)
        elapsed += time.perf_counter() - start
        del shard, result
    return {
        "description": description,
        "shard_mb": shard_mb,
        "seconds": elapsed,
        "peak_mb": _rss_mb("VmHWM") - baseline,
    }


def bench_scaling(scale: float) -> list[ScalingRow]:
    """Runs of 1, 4 and 16 shards, one process per run so each peak is its own: time should grow
    linearly with the run, and peak memory stay at one shard's worth."""
    rows = []
    for case in SCALING_CASES:
        cells = []
        for factor in SCALING_FACTORS:
            command = [sys.executable, __file__, "--scale", str(scale), "--scaling-worker", case, str(factor)]
            # A fixed mmap threshold makes glibc return every large block to the system when it is freed, so
            # resident memory tracks live arrays instead of keeping the data generator's garbage; the high
            # trim threshold keeps small blocks (zlib's 64 KB buffers) in the heap, as they are by default.
            environment = {
                **os.environ,
                "MALLOC_MMAP_THRESHOLD_": str(128 << 10),
                "MALLOC_TRIM_THRESHOLD_": str(256 << 20),
            }
            completed = subprocess.run(command, capture_output=True, text=True, check=True, env=environment)
            cells.append(json.loads(completed.stdout.splitlines()[-1]))
        seconds = [cell["seconds"] for cell in cells]
        rows.append(
            ScalingRow(
                case, cells[0]["description"], cells[0]["shard_mb"], seconds, [cell["peak_mb"] for cell in cells]
            )
        )
    return rows


# --- report ------------------------------------------------------------------------------------------


def machine_description() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0))
    import numba

    return (
        f"CPU: {model}, {cores} cores ({os.cpu_count()} online), Numba threads {numba.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.2f}; Python {platform.python_version()}, NumPy {np.__version__}, "
        f"Numba {numba.__version__}, pyarrow {pa.__version__}"
    )


def format_seconds(seconds: float) -> str:
    if math.isnan(seconds):
        return "—"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def print_rows(rows: list[Row]) -> None:
    print("| kernel | data | kernel time | peer | peer time | ratio | target | met? | note |")
    print("|---|---|---:|---|---:|---:|---:|---|---|")
    for row in rows:
        ratio = "—" if math.isnan(row.ratio) else f"{row.ratio:.1f}×"
        met = "—" if math.isnan(row.ratio) else ("yes" if row.met else "**no**")
        print(
            f"| {row.name} | {row.data} | {format_seconds(row.kernel_s)} | {row.peer} | {format_seconds(row.peer_s)} "
            f"| {ratio} | ≥ {row.target:g}× | {met} | {row.note} |"
        )


def print_scaling(rows: list[ScalingRow]) -> None:
    factors = " | ".join(f"{factor}× time" for factor in SCALING_FACTORS)
    memories = " | ".join(f"{factor}× peak MB" for factor in SCALING_FACTORS)
    print(f"| kernel | shard | shard input MB | {factors} | time exponent | {memories} |")
    print("|---|---|" + "---:|" * (2 * len(SCALING_FACTORS) + 2))
    for row in rows:
        times = " | ".join(format_seconds(seconds) for seconds in row.seconds)
        peaks = " | ".join(f"{peak:.0f}" for peak in row.peak_mb)
        print(f"| {row.name} | {row.shard} | {row.shard_mb:.0f} | {times} | {row.exponent:.2f} | {peaks} |")


BENCHMARKS = ("jaccard", "components", "cosine", "gzip", "scaling")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every data size (default 1)")
    parser.add_argument(
        "--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per kernel; the best counts (default 3)")
    parser.add_argument("--scaling-worker", nargs=2, metavar=("CASE", "FACTOR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.scaling_worker:
        case, factor = args.scaling_worker
        print(json.dumps(scaling_worker(case, int(factor), args.scale)))
        return
    selected = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(selected) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")

    print(machine_description())
    print()
    rows: list[Row] = []
    runners: dict[str, Callable[[], list[Row]]] = {
        "jaccard": lambda: bench_jaccard(args.scale, args.repeat),
        "components": lambda: bench_components(args.scale, args.repeat),
        "cosine": lambda: bench_cosine(args.scale, args.repeat),
        "gzip": lambda: bench_gzip(args.scale, args.repeat),
    }
    for name in selected:
        if name in runners:
            rows.extend(runners[name]())
    if rows:
        print_rows(rows)
    if "scaling" in selected:
        print()
        print_scaling(bench_scaling(args.scale))
    print()
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
