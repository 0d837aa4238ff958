"""kernels.compression against one-shot zlib references, and the documented relation to `diversity`."""

from __future__ import annotations

import gzip
import io
import math
import zlib

import numpy as np
import pytest

from kernels.compression import (
    compression_ratio,
    compression_ratio_reference,
    ncd_diversity,
    ncd_matrices,
    ncd_matrices_reference,
)
from tests.kernels.conftest import random_groups
from tests.support.benchmarks import load_benchmark


def diversity_style_ratio(texts: list[str]) -> float:
    """What ``diversity.compression_ratio(texts, "gzip")`` (v0.3.1) computes, in memory: the joined text
    gzipped, then written through a ``GzipFile`` named ``compressed.gz``, sized, and rounded."""
    joined = " ".join(texts).encode("utf-8")
    written = io.BytesIO()
    with gzip.GzipFile(filename="compressed.gz", mode="w+", fileobj=written) as gzip_file:
        gzip_file.write(gzip.compress(joined))
    return round(len(joined) / len(written.getvalue()), 3)


def load_diversity_compression():
    """The benchmark's loader of the `diversity` peer (benchmarks/kernels.py), so test and benchmark use one."""
    return load_benchmark("kernels").load_diversity_compression_ratio()


@pytest.mark.parametrize("seed", range(2))
def test_ratio_agrees_with_reference(seed, as_input):
    groups = random_groups(seed)
    np.testing.assert_array_equal(
        compression_ratio(as_input(groups)), compression_ratio_reference(groups), err_msg="compression_ratio"
    )


@pytest.mark.parametrize("seed", range(2))
def test_ncd_agrees_with_reference(seed, as_input):
    """Copying the compressor after the shared prefix gives exactly the sizes of compressing each pair."""
    groups = random_groups(seed, n_groups=15)
    for group, (matrix, reference) in enumerate(
        zip(ncd_matrices(as_input(groups)), ncd_matrices_reference(groups), strict=True)
    ):
        np.testing.assert_array_equal(matrix, reference, err_msg=f"ncd, group {group}")


def test_thread_count_does_not_change_results():
    groups = random_groups(3)
    np.testing.assert_array_equal(compression_ratio(groups, n_threads=1), compression_ratio(groups, n_threads=2))
    np.testing.assert_array_equal(ncd_matrices(groups, n_threads=1).values, ncd_matrices(groups, n_threads=2).values)


def test_ratio_is_joined_size_over_gzip_size():
    texts = ["alpha beta", "gamma"]
    joined = b"alpha beta gamma"
    assert compression_ratio([texts])[0] == len(joined) / len(gzip.compress(joined))


@pytest.mark.parametrize("seed", range(2))
def test_diversity_divides_by_our_size_plus_container_overhead(seed):
    """diversity's denominator is our gzip size S plus 29 bytes of gzip wrapping plus 5 bytes per
    stored deflate block, so its (rounded) ratio is N / (S + 34) once S exceeds ~60 bytes (below that,
    deflate squeezes a few bytes out of the gzip stream, and the ratio is still below ours)."""
    groups = [group for group in random_groups(seed, n_groups=30) if group]
    for group, ratio in zip(groups, compression_ratio(groups), strict=True):
        n_bytes = len(" ".join(group).encode())
        our_size = round(n_bytes / ratio)
        if our_size >= 64:
            assert diversity_style_ratio(group) == round(n_bytes / (our_size + 34), 3)
        assert diversity_style_ratio(group) <= ratio


def test_diversity_package_matches_its_in_memory_replica():
    diversity_compression_ratio = load_diversity_compression()
    if diversity_compression_ratio is None:
        pytest.skip("the diversity package is not installed (benchmark-only peer)")
    for group in random_groups(4, n_groups=10):
        if group:
            assert diversity_compression_ratio(group, algorithm="gzip") == diversity_style_ratio(group)


def test_empty_group_ratio_is_nan():
    assert math.isnan(compression_ratio([[]])[0])


def test_single_empty_string_ratio_is_zero():
    assert compression_ratio([[""]])[0] == 0.0


def test_repetitive_group_compresses_better():
    repetitive, varied = compression_ratio([["the cat sat"] * 20, [f"word{i} other{i * 7}" for i in range(20)]])
    assert repetitive > varied


def test_ncd_matrix_is_symmetric_with_zero_diagonal():
    matrix = ncd_matrices([["one text here", "another text", "one text here"]])[0]
    np.testing.assert_array_equal(matrix, matrix.T)
    np.testing.assert_array_equal(np.diag(matrix), 0.0)
    assert matrix[0, 2] < matrix[0, 1]


def test_ncd_of_empty_strings_is_defined():
    matrix = ncd_matrices([["", ""]])[0]
    assert np.all(np.isfinite(matrix))
    single = len(zlib.compress(b"", 9, -15))
    assert matrix[0, 1] == (len(zlib.compress(b" ", 9, -15)) - single) / single


def test_ncd_of_empty_and_single_groups():
    matrices = ncd_matrices([[], ["alone"]])
    assert matrices[0].shape == (0, 0)
    np.testing.assert_array_equal(matrices[1], [[0.0]])


def test_ncd_diversity_is_the_mean_over_pairs():
    groups = random_groups(5, n_groups=10)
    expected = [
        matrix[np.triu_indices(len(matrix), k=1)].mean() if len(matrix) > 1 else np.nan
        for matrix in ncd_matrices_reference(groups)
    ]
    np.testing.assert_allclose(ncd_diversity(groups), expected, rtol=1e-12, err_msg="ncd_diversity")


def test_ncd_at_level_0_agrees_with_reference_for_long_texts():
    # Stored blocks' sizes depend on how the input arrives: the copied compressor (a first text of 2 KB or more)
    # gave 1.0001500 where one-shot compression gives 1.0000250.
    groups = [["a" * 40_000, "b" * 40_000]]
    (matrix,) = ncd_matrices(groups, level=0)
    (reference,) = ncd_matrices_reference(groups, level=0)
    np.testing.assert_allclose(matrix, reference, rtol=0, atol=1e-12)
