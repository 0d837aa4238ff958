"""Compression diversity (Shaib et al. 2024) and pairwise normalised compression distance (NCD).

Compression runs on CPython's zlib, which releases the GIL while it deflates, so a thread pool over
chunks of groups uses every core without pickling anything. Numba only lays the bytes out: a nogil
kernel joins each chunk's groups into one buffer, so compressing a group is a single zlib call.

Relation to the ``diversity`` package (v0.3.1, ``diversity.compression_ratio(texts, "gzip")``): both
divide the byte length ``N`` of ``" ".join(texts)`` by a compressed size, and both compress at level 9
(gzip's default). ``compression_ratio`` here divides by the size of one gzip stream ``S``
(``len(gzip.compress(joined))``). ``diversity`` writes ``gzip.compress(joined)`` through a second
``gzip.GzipFile`` named ``compressed.gz``, so it divides by ``D = S + 29 + 5·⌈S / 16383⌉``: 29 bytes of
gzip header, file name and trailer, plus the 5-byte header of each stored deflate block, deflate
storing its already-compressed input verbatim (for ``S`` under ~60 bytes it squeezes out a few bytes,
so ``D`` is at most that). It also rounds to three decimals. Hence
``diversity = round(N / D, 3) <= compression_ratio``; for groups of five ~150-word responses
(``S`` ≈ 2.5 KB) it is about 1.3% lower. ``tests/kernels/test_compression.py`` checks the relation.

Deflate looks back 32 KiB at most, as gzip does in both: repetition further apart is not seen. A group
whose joined text passes 32 KiB (ten responses of 3,300 bytes) has the repetition between its first
and last responses missed, and the NCD of two texts each longer than 32 KiB is near 1 even where they
are the same (33,000 bytes: 0.87 for a text and itself, 0.03 at 30,000). The metric is gzip's, the
paper's, so this is kept, and said here.
"""

from __future__ import annotations

import zlib
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import int64, njit, types, uint8

from kernels._batch import SquareMatrixBatch, mean_pairwise, square_matrix_offsets
from kernels._inputs import TextShard, as_text_shard
from kernels._types import READONLY_I64, READONLY_U8

GZIP_LEVEL = 9
_CHUNK_BYTES = 4 << 20  # text joined per task: bounds the extra memory to n_threads × 4 MiB
_SEPARATOR = b" "
# From about this many bytes, copying a compressor beats compressing its input again (measured at level 9).
_PREFIX_COPY_MIN_BYTES = 2048


@njit(
    types.Tuple((uint8[::1], int64[::1]))(READONLY_U8, READONLY_I64, READONLY_I64, int64, int64),
    nogil=True,
    cache=True,
)
def _join_groups(data, text_offsets, group_offsets, first_group, stop_group):
    """Concatenate each group's texts with single spaces, for groups ``first_group .. stop_group - 1``.

    Returns:
        ``(joined, joined_offsets)``: group ``first_group + i`` is ``joined[joined_offsets[i]:joined_offsets[i + 1]]``.
    """
    n_groups = stop_group - first_group
    joined_offsets = np.zeros(n_groups + 1, dtype=np.int64)
    for index in range(n_groups):
        first_text = group_offsets[first_group + index]
        last_text = group_offsets[first_group + index + 1]
        n_bytes = text_offsets[last_text] - text_offsets[first_text]
        joined_offsets[index + 1] = joined_offsets[index] + n_bytes + max(last_text - first_text - 1, 0)
    joined = np.empty(joined_offsets[-1], dtype=np.uint8)
    for index in range(n_groups):
        pos = joined_offsets[index]
        first_text = group_offsets[first_group + index]
        for text in range(first_text, group_offsets[first_group + index + 1]):
            if text > first_text:
                joined[pos] = 32  # b" "
                pos += 1
            # A plain loop: slice assignment drags seconds of compile time into the kernel.
            for byte in range(text_offsets[text], text_offsets[text + 1]):
                joined[pos] = data[byte]
                pos += 1
    return joined, joined_offsets


def _pair_sizes(first: bytes, seconds: list[bytes], level: int) -> list[int]:
    """Raw-deflate sizes of ``first + b" " + second`` for each ``second``.

    A long ``first`` is compressed once and the compressor copied for each ``second``. Copying costs
    about as much as compressing 2 KB of text (zlib copies its whole ~256 KB state), so a shorter
    ``first`` is cheaper to compress again with each pair. Both give the bytes of a one-shot compression,
    except at level 0 (stored blocks), whose sizes depend on how the input arrives: compressed again.
    """
    if level == 0 or len(first) < _PREFIX_COPY_MIN_BYTES:
        return [len(zlib.compress(b"".join((first, _SEPARATOR, second)), level, -15)) for second in seconds]
    prefix = zlib.compressobj(level, zlib.DEFLATED, -15)
    prefix_size = len(prefix.compress(first)) + len(prefix.compress(_SEPARATOR))
    sizes = []
    for second in seconds:
        pair = prefix.copy()
        sizes.append(prefix_size + len(pair.compress(second)) + len(pair.flush()))
    return sizes


def _group_chunks(shard: TextShard, n_threads: int) -> list[tuple[int, int]]:
    """Split the groups into contiguous ranges of about ``_CHUNK_BYTES`` of text, at least four per
    thread so uneven groups still balance."""
    group_bytes = shard.text_offsets[shard.group_offsets] - shard.text_offsets[0]
    n_chunks = max(4 * n_threads, int(group_bytes[-1] // _CHUNK_BYTES) + 1)
    bounds = np.searchsorted(group_bytes, np.linspace(0, group_bytes[-1], n_chunks + 1), side="left")
    bounds[0], bounds[-1] = 0, shard.n_groups
    bounds = np.unique(bounds)
    return [(int(first), int(stop)) for first, stop in zip(bounds[:-1], bounds[1:], strict=True) if stop > first]


def _run_chunks(task, chunks: list[tuple[int, int]], n_threads: int) -> None:
    if n_threads <= 1 or len(chunks) <= 1:
        for first, stop in chunks:
            task(first, stop)
        return
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        for future in [pool.submit(task, first, stop) for first, stop in chunks]:
            future.result()


def compression_ratio(groups, *, level: int = GZIP_LEVEL, n_threads: int | None = None) -> np.ndarray:
    """Compression ratio per group: bytes of the space-joined responses over their gzip size.

    Args:
        groups: a list of lists of str, or ``(texts, group_offsets)`` with ``texts`` a pyarrow string
            array and ``group_offsets`` int64 of length ``n_groups + 1``.
        level: zlib level; 9 is gzip's default and the paper's.
        n_threads: threads compressing in parallel; defaults to ``numba.get_num_threads()``.

    Returns:
        float64 array of length ``n_groups``: ``len(" ".join(group).encode()) /
        len(gzip.compress(joined, level))``. Higher means more repetitive. An empty group gives NaN
        (nothing to compress); a group of empty strings gives its spaces over the 20-byte empty
        gzip stream, e.g. 0.0 for a single empty string. See the module docstring for how this relates
        to the ``diversity`` package.
    """
    shard = as_text_shard(groups)
    n_threads = n_threads or numba.get_num_threads()
    ratios = np.full(shard.n_groups, np.nan, dtype=np.float64)

    def compress_chunk(first_group: int, stop_group: int) -> None:
        joined, joined_offsets = _join_groups(
            shard.data, shard.text_offsets, shard.group_offsets, first_group, stop_group
        )
        view = memoryview(joined)
        for index, group in enumerate(range(first_group, stop_group)):
            if shard.group_offsets[group + 1] == shard.group_offsets[group]:
                continue
            start, stop = int(joined_offsets[index]), int(joined_offsets[index + 1])
            # wbits=31: a gzip stream, byte for byte the length gzip.compress would give.
            ratios[group] = (stop - start) / len(zlib.compress(view[start:stop], level, 31))

    _run_chunks(compress_chunk, _group_chunks(shard, n_threads), n_threads)
    return ratios


def ncd_matrices(groups, *, level: int = GZIP_LEVEL, n_threads: int | None = None) -> SquareMatrixBatch:
    """Pairwise normalised compression distance between the responses of each group.

    ``NCD(a, b) = (C(a·b) − min(C(a), C(b))) / max(C(a), C(b))`` where ``C`` is the raw-deflate size
    (no gzip header, which would only add a constant) and ``a·b`` is ``a + " " + b`` with ``a`` the
    earlier response; the matrix is mirrored from its upper triangle and its diagonal is 0. A prefix
    ``a + " "`` of 2 KB or more is compressed once per row and its compressor state copied for each
    ``b``; shorter ones are cheaper to compress again (see :func:`_pair_sizes`).

    Args:
        groups: either accepted form (see :func:`compression_ratio`).
        level: zlib level.
        n_threads: threads compressing in parallel; defaults to ``numba.get_num_threads()``.

    Returns:
        One ``n_g × n_g`` float64 matrix per group (a :class:`SquareMatrixBatch`). Values lie roughly
        in [0, 1.1]; empty strings are compressible too (2 bytes), so every pair is defined.
    """
    shard = as_text_shard(groups)
    n_threads = n_threads or numba.get_num_threads()
    sizes = np.diff(shard.group_offsets)
    matrix_offsets = square_matrix_offsets(sizes)
    values = np.zeros(matrix_offsets[-1], dtype=np.float64)
    view = memoryview(shard.data)
    text_offsets = shard.text_offsets.tolist()
    group_offsets = shard.group_offsets.tolist()

    def ncd_chunk(first_group: int, stop_group: int) -> None:
        for group in range(first_group, stop_group):
            first_text, n = group_offsets[group], group_offsets[group + 1] - group_offsets[group]
            texts = [view[text_offsets[t] : text_offsets[t + 1]].tobytes() for t in range(first_text, first_text + n)]
            single = [len(zlib.compress(text, level, -15)) for text in texts]
            matrix = values[matrix_offsets[group] : matrix_offsets[group + 1]].reshape(n, n)
            for a in range(n - 1):
                for b, pair_size in zip(range(a + 1, n), _pair_sizes(texts[a], texts[a + 1 :], level), strict=True):
                    smaller, larger = sorted((single[a], single[b]))
                    matrix[a, b] = matrix[b, a] = (pair_size - smaller) / larger

    _run_chunks(ncd_chunk, _group_chunks(shard, n_threads), n_threads)
    return SquareMatrixBatch(values, matrix_offsets, sizes)


def ncd_diversity(groups, *, level: int = GZIP_LEVEL, n_threads: int | None = None) -> np.ndarray:
    """Mean normalised compression distance over the response pairs of each group.

    Args:
        groups: either accepted form (see :func:`compression_ratio`).
        level: zlib level.
        n_threads: threads compressing in parallel; defaults to ``numba.get_num_threads()``.

    Returns:
        float64 array of length ``n_groups``; NaN for a group of 0 or 1 responses (no pairs: undefined).
    """
    return mean_pairwise(ncd_matrices(groups, level=level, n_threads=n_threads))


# --- pure-Python reference -------------------------------------------------------------------------


def compression_ratio_reference(groups: list[list[str]], level: int = GZIP_LEVEL) -> np.ndarray:
    """Plain-Python :func:`compression_ratio`: one ``gzip``-sized ``zlib.compress`` per group."""
    ratios = []
    for group in groups:
        if not group:
            ratios.append(float("nan"))
            continue
        joined = " ".join(text or "" for text in group).encode("utf-8")
        ratios.append(len(joined) / len(zlib.compress(joined, level, 31)))
    return np.array(ratios, dtype=np.float64)


def ncd_matrices_reference(groups: list[list[str]], level: int = GZIP_LEVEL) -> list[np.ndarray]:
    """Plain-Python :func:`ncd_matrices`: every pair compressed from scratch."""
    matrices = []
    for group in groups:
        texts = [(text or "").encode("utf-8") for text in group]
        single = [len(zlib.compress(text, level, -15)) for text in texts]
        n = len(texts)
        matrix = np.zeros((n, n), dtype=np.float64)
        for a in range(n):
            for b in range(a + 1, n):
                pair_size = len(zlib.compress(texts[a] + b" " + texts[b], level, -15))
                matrix[a, b] = matrix[b, a] = (pair_size - min(single[a], single[b])) / max(single[a], single[b])
        matrices.append(matrix)
    return matrices
