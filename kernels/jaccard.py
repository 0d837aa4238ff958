"""Pairwise Jaccard similarity of word sets within each response group, and vocabulary diversity.

For responses ``a`` and ``b`` with word sets ``Va`` and ``Vb`` (tokens as in :mod:`kernels.tokenize`):

    J(a, b) = |Va ∩ Vb| / |Va ∪ Vb|, with J = 1 when both sets are empty (two empty responses are
    identical), so the diagonal is always 1.

The kernel never sorts tokens and never builds a set per response: per group it fills one open-
addressing hash table mapping each distinct token id to the bitmask of the responses containing it;
then each distinct token adds 1 to the intersection count of every pair of responses in its mask, and
the diagonal of that count matrix is each response's set size. One pass over the text, one over the
distinct tokens (or, for small groups, over the distinct masks).
"""

from __future__ import annotations

import numpy as np
from numba import float64, int64, njit, prange, uint64, void
from numba.cpython.unsafe.numbers import trailing_zeros

from kernels._batch import (
    SquareMatrixBatch,
    dynamic_schedule,
    mean_pairwise_distance,
    parallel_chunks,
    square_matrix_offsets,
)
from kernels._inputs import as_text_shard
from kernels._types import READONLY_I64, READONLY_U8, READONLY_U64
from kernels.tokenize import reference_tokens, tokenize_text, word_view

_MIN_TABLE_BITS = 4
# Tally distinct tokens per response mask (2**n counters) for groups of at most this many responses.
_MAX_HISTOGRAM_MEMBERS = 10


@njit(inline="always")
def _insert_tokens(table, used_slots, n_distinct, token_ids, first_token, stop_token, word, bit, shift, slot_mask):
    """Set ``bit`` in mask word ``word`` of each token's row, claiming empty rows (key 0) for new tokens
    and listing them in ``used_slots``. Returns the new number of distinct tokens.

    Branch-free on purpose: a new token and a repeated one take the same path (the key store and the
    list append happen either way, the append counting only for a new row), because which one comes
    next is a coin toss that a branch predictor loses half the time.
    """
    for index in range(first_token, stop_token):
        # Id 0 marks an empty row, so a token hashing to 0 (p = 2**-64) shares a row with id 1.
        token_id = max(token_ids[index], uint64(1))
        # Ids end in a full-avalanche finalizer, so their top bits index the table as they are.
        slot = int64(token_id >> shift)
        key = table[slot, 0]
        while key != token_id and key != 0:
            slot = (slot + 1) & slot_mask
            key = table[slot, 0]
        table[slot, 0] = token_id
        used_slots[n_distinct] = slot
        n_distinct += key == 0
        table[slot, word] |= bit
    return n_distinct


@njit(inline="always")
def _add_to_pairs(counts, n, members, n_members, weight):
    """Add ``weight`` to ``counts[a, b]`` for every pair ``a <= b`` of the (ascending) members."""
    for i in range(n_members):
        row = members[i] * n
        for j in range(i, n_members):
            counts[row + members[j]] += weight


@njit(inline="always")
def _list_members(mask, first_member, members, n_members):
    """Append the indices of the set bits of ``mask`` (offset by ``first_member``) to ``members``."""
    while mask != 0:
        members[n_members] = first_member + int64(trailing_zeros(mask))
        n_members += 1
        mask &= mask - uint64(1)
    return n_members


@njit(
    void(READONLY_U8, READONLY_U64, int64, READONLY_I64, READONLY_I64, READONLY_I64, float64[::1], int64, int64),
    cache=True,
)
def _jaccard_groups(data, words, word_base, text_offsets, group_offsets, matrix_offsets, out, first_group, stop_group):
    """Write the row-major Jaccard matrices of groups ``first_group .. stop_group - 1`` into ``out``.

    Per group: tokenize the responses into a buffer, fill the hash table (row = token id, then the
    bitmask words of the responses containing it), then turn the masks into ``counts[a, b] = |Va ∩ Vb|``
    (diagonal ``|Va|``). Up to ``_MAX_HISTOGRAM_MEMBERS`` responses, distinct tokens are first tallied
    per mask, so the pair loops run once per distinct mask rather than once per distinct token. The
    scratch is allocated once per call and grown as needed; table rows are zeroed after each group.
    """
    token_ids = np.empty(0, dtype=np.uint64)
    member_token_offsets = np.empty(0, dtype=np.int64)
    members = np.empty(0, dtype=np.int64)
    counts = np.empty(0, dtype=np.int64)
    table = np.zeros((0, 2), dtype=np.uint64)
    used_slots = np.empty(0, dtype=np.int64)
    tokens_per_mask = np.zeros(1 << _MAX_HISTOGRAM_MEMBERS, dtype=np.int64)
    for group in range(first_group, stop_group):
        first_text = group_offsets[group]
        n = group_offsets[group + 1] - first_text
        if n == 0:
            continue
        # A text of L bytes holds at most (L + 1) // 2 tokens.
        max_tokens = (text_offsets[first_text + n] - text_offsets[first_text]) // 2 + n
        if max_tokens > token_ids.size:
            token_ids = np.empty(2 * max_tokens, dtype=np.uint64)
        if n + 1 > member_token_offsets.size:
            member_token_offsets = np.empty(2 * n + 1, dtype=np.int64)
            members = np.empty(2 * n, dtype=np.int64)
            counts = np.empty(4 * n * n, dtype=np.int64)

        n_tokens = 0
        for member in range(n):
            member_token_offsets[member] = n_tokens
            text = first_text + member
            n_tokens = tokenize_text(
                data, words, word_base, text_offsets[text], text_offsets[text + 1], token_ids, n_tokens
            )
        member_token_offsets[n] = n_tokens

        # Load factor <= 1/2 keeps linear probing short.
        slot_bits = _MIN_TABLE_BITS
        while (1 << slot_bits) < 2 * n_tokens:
            slot_bits += 1
        n_words = (n + 63) // 64
        if (1 << slot_bits) > table.shape[0] or 1 + n_words > table.shape[1]:
            table = np.zeros((max(1 << slot_bits, table.shape[0]), max(1 + n_words, table.shape[1])), dtype=np.uint64)
            used_slots = np.empty(table.shape[0], dtype=np.int64)
        shift = uint64(64 - slot_bits)
        n_distinct = 0
        for member in range(n):
            n_distinct = _insert_tokens(
                table,
                used_slots,
                n_distinct,
                token_ids,
                member_token_offsets[member],
                member_token_offsets[member + 1],
                1 + (member >> 6),
                uint64(1) << uint64(member & 63),
                shift,
                (1 << slot_bits) - 1,
            )

        counts[: n * n] = 0
        if n <= _MAX_HISTOGRAM_MEMBERS:
            for distinct in range(n_distinct):
                slot = used_slots[distinct]
                tokens_per_mask[table[slot, 1]] += 1
                table[slot, 0] = 0
                table[slot, 1] = 0
            for mask in range(1, 1 << n):
                if tokens_per_mask[mask] != 0:
                    n_members = _list_members(uint64(mask), 0, members, 0)
                    _add_to_pairs(counts, n, members, n_members, tokens_per_mask[mask])
                    tokens_per_mask[mask] = 0
        else:
            for distinct in range(n_distinct):
                slot = used_slots[distinct]
                n_members = 0
                for word in range(1, 1 + n_words):
                    n_members = _list_members(table[slot, word], (word - 1) * 64, members, n_members)
                    table[slot, word] = 0
                table[slot, 0] = 0
                _add_to_pairs(counts, n, members, n_members, 1)

        base = matrix_offsets[group]
        for a in range(n):
            out[base + a * n + a] = 1.0
            for b in range(a + 1, n):
                intersection = counts[a * n + b]
                union = counts[a * n + a] + counts[b * n + b] - intersection
                similarity = 1.0 if union == 0 else intersection / union
                out[base + a * n + b] = similarity
                out[base + b * n + a] = similarity


@njit(
    void(READONLY_U8, READONLY_U64, int64, READONLY_I64, READONLY_I64, READONLY_I64, float64[::1], int64),
    parallel=True,
    cache=True,
)
def _jaccard_kernel(data, words, word_base, text_offsets, group_offsets, matrix_offsets, out, n_chunks):
    """All groups of a shard, ``prange`` over contiguous chunks of groups."""
    n_groups = len(group_offsets) - 1
    for chunk in prange(n_chunks):
        first_group, stop_group = chunk * n_groups // n_chunks, (chunk + 1) * n_groups // n_chunks
        _jaccard_groups(
            data, words, word_base, text_offsets, group_offsets, matrix_offsets, out, first_group, stop_group
        )


def jaccard_matrices(groups) -> SquareMatrixBatch:
    """Pairwise Jaccard similarity of the word sets of the responses in each group.

    Args:
        groups: a list of lists of str, or ``(texts, group_offsets)`` with ``texts`` a pyarrow string
            array and ``group_offsets`` int64 of length ``n_groups + 1`` (see :mod:`kernels._inputs`).

    Returns:
        One ``n_g × n_g`` float64 matrix per group (a :class:`SquareMatrixBatch`: index it or iterate
        it like a list). Entries are in [0, 1]; the diagonal is 1; two responses with no tokens (empty
        or punctuation only) have similarity 1; an empty group gives a 0 × 0 matrix.
    """
    shard = as_text_shard(groups)
    sizes = np.diff(shard.group_offsets)
    matrix_offsets = square_matrix_offsets(sizes)
    values = np.empty(matrix_offsets[-1], dtype=np.float64)
    words, word_base = word_view(shard.data)
    n_chunks = parallel_chunks(shard.n_groups)
    with dynamic_schedule():
        _jaccard_kernel(
            shard.data, words, word_base, shard.text_offsets, shard.group_offsets, matrix_offsets, values, n_chunks
        )
    return SquareMatrixBatch(values, matrix_offsets, sizes)


def vocab_diversity(groups) -> np.ndarray:
    """Vocabulary diversity per group: the mean over response pairs of ``1 − J(a, b)``.

    Args:
        groups: either accepted form (see :func:`jaccard_matrices`).

    Returns:
        float64 array of length ``n_groups``; NaN for a group of 0 or 1 responses (no pairs: undefined).
    """
    return mean_pairwise_distance(jaccard_matrices(groups))


# --- pure-Python reference -------------------------------------------------------------------------


def jaccard_matrices_reference(groups: list[list[str]]) -> list[np.ndarray]:
    """Plain-Python :func:`jaccard_matrices` with one ``set`` of token strings per response."""
    matrices = []
    for group in groups:
        word_sets = [set(reference_tokens(text or "")) for text in group]
        n = len(word_sets)
        matrix = np.ones((n, n), dtype=np.float64)
        for a in range(n):
            for b in range(a + 1, n):
                intersection = len(word_sets[a] & word_sets[b])
                union = len(word_sets[a]) + len(word_sets[b]) - intersection
                matrix[a, b] = matrix[b, a] = 1.0 if union == 0 else intersection / union
        matrices.append(matrix)
    return matrices


def vocab_diversity_reference(groups: list[list[str]]) -> np.ndarray:
    """Plain-Python :func:`vocab_diversity`."""
    diversities = []
    for matrix in jaccard_matrices_reference(groups):
        n = len(matrix)
        pairs = [1.0 - matrix[a, b] for a in range(n) for b in range(a + 1, n)]
        diversities.append(sum(pairs) / len(pairs) if pairs else float("nan"))
    return np.array(diversities, dtype=np.float64)
