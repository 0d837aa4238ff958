"""Normalise the accepted input forms into the flat CSR layout every text kernel reads.

Two forms are accepted wherever a function takes ``groups`` (one response group per prompt):

* a list (or other sequence) of lists of ``str``: convenient for users auditing precomputed responses;
* a pair ``(texts, group_offsets)``: ``texts`` a pyarrow string / large_string array (the pipeline's own
  form) and ``group_offsets`` an int64 array of length ``n_groups + 1`` such that group ``g`` holds
  ``texts[group_offsets[g]:group_offsets[g + 1]]``.

Both become a :class:`TextShard`: the UTF-8 bytes of all texts in one ``uint8`` array, ``text_offsets``
(CSR ``indptr`` over those bytes) and ``group_offsets`` (CSR ``indptr`` over texts). For an Arrow
input the bytes are the array's own data buffer, read without copying; a Python list is converted by
Arrow once (a C++ loop), so both forms reach the kernels identically.

Null entries (``None`` in a list, nulls in an Arrow array) are treated as empty strings. A Python
string must be encodable as UTF-8: one holding a lone surrogate raises ``UnicodeEncodeError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_EMPTY_BYTES = np.zeros(0, dtype=np.uint8)


class TextShard(NamedTuple):
    """Texts of one shard as CSR parts.

    Attributes:
        data: UTF-8 bytes of all texts (may be a read-only view of an Arrow buffer).
        text_offsets: int64, ``n_texts + 1``; text ``t`` is ``data[text_offsets[t]:text_offsets[t + 1]]``.
            Offsets are absolute positions in ``data`` and need not start at 0 (sliced Arrow arrays).
        group_offsets: int64, ``n_groups + 1``, starting at 0; group ``g`` holds texts
            ``group_offsets[g] .. group_offsets[g + 1] - 1``.
    """

    data: np.ndarray
    text_offsets: np.ndarray
    group_offsets: np.ndarray

    @property
    def n_groups(self) -> int:
        return len(self.group_offsets) - 1

    @property
    def n_texts(self) -> int:
        return len(self.text_offsets) - 1


def _arrow_text_parts(texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(data, text_offsets)`` viewing an Arrow string array's buffers (zero copy).

    A ChunkedArray with more than one chunk is combined (one copy); nulls are replaced by empty strings
    (one copy, only when nulls exist) because the Arrow format lets a null slot cover arbitrary bytes.
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks != 1 else texts.chunk(0)
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        raise TypeError(f"texts must be an Arrow string or large_string array, got {texts.type}")
    if texts.null_count:
        texts = pc.fill_null(texts, "")
    _, offsets_buffer, data_buffer = texts.buffers()
    offset_type = np.int64 if pa.types.is_large_string(texts.type) else np.int32
    if offsets_buffer is None:  # zero-length array
        return _EMPTY_BYTES, np.zeros(1, dtype=np.int64)
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)[texts.offset : texts.offset + len(texts) + 1]
    data = _EMPTY_BYTES if data_buffer is None else np.frombuffer(data_buffer, dtype=np.uint8)
    return data, offsets.astype(np.int64, copy=False)


def as_texts(texts: Sequence[str | None] | pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(data, text_offsets)`` for a flat list of texts or an Arrow string array."""
    if isinstance(texts, (pa.Array, pa.ChunkedArray)):
        return _arrow_text_parts(texts)
    # large_string: a shard may exceed the 2 GiB that int32 offsets address.
    return _arrow_text_parts(pa.array(list(texts), type=pa.large_string()))


def as_text_shard(groups) -> TextShard:
    """Normalise either accepted ``groups`` form (see the module docstring) to a :class:`TextShard`.

    Args:
        groups: a sequence of sequences of str, or a pair ``(texts, group_offsets)`` with ``texts`` a
            pyarrow string array and ``group_offsets`` an int64 array of length ``n_groups + 1``.

    Returns:
        The shard's texts as CSR parts.

    Raises:
        ValueError: if ``group_offsets`` is not a valid CSR ``indptr`` over the texts.
        TypeError: if an Arrow array is not of a string type, or ``groups`` or one of its groups is a str or
            bytes (a flat list of texts is not a list of groups).
    """
    if isinstance(groups, tuple) and len(groups) == 2 and isinstance(groups[0], (pa.Array, pa.ChunkedArray)):
        texts, group_offsets = groups
        data, text_offsets = _arrow_text_parts(texts)
        return TextShard(data, text_offsets, as_offsets(group_offsets, len(text_offsets) - 1, "group_offsets"))
    if isinstance(groups, (str, bytes)):
        raise TypeError("groups must be a sequence of groups of texts, not a single string")
    # A flat list of texts would be read as groups of characters (each text a group, each character a response)
    # and give plausible numbers for nonsense.
    for index, group in enumerate(groups):
        if isinstance(group, (str, bytes, bytearray)):
            raise TypeError(
                f"groups must be a sequence of groups of texts: groups[{index}] is a {type(group).__name__}, not a "
                "group (wrap a flat list of texts as [texts] to make it one group)"
            )
    group_sizes = np.fromiter((len(group) for group in groups), dtype=np.int64, count=len(groups))
    group_offsets = np.zeros(len(group_sizes) + 1, dtype=np.int64)
    np.cumsum(group_sizes, out=group_offsets[1:])
    flat = [text for group in groups for text in group]
    data, text_offsets = _arrow_text_parts(pa.array(flat, type=pa.large_string()))
    return TextShard(data, text_offsets, group_offsets)


def as_offsets(offsets, n_items: int, what: str) -> np.ndarray:
    """Validate a CSR ``indptr`` over ``n_items`` items and return it as contiguous int64."""
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != n_items:
        raise ValueError(f"{what} must be 1-D, start at 0 and end at {n_items}")
    if np.any(np.diff(offsets) < 0):
        raise ValueError(f"{what} must be non-decreasing")
    return offsets
