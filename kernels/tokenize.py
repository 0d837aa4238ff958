"""Word tokenizer hashing tokens to stable 64-bit ids, shared by every lexical kernel.

The tokenizer works on UTF-8 bytes so the Arrow path (a raw UTF-8 buffer) and the Python-list path
give identical tokens:

* A token is a maximal run of *word* characters. Word characters are ASCII letters and digits and
  every non-ASCII character except the separators below. Everything else separates tokens. A Chinese
  ideograph or a Japanese kana (:data:`CHARACTER_TOKEN_RANGES`) is a token of its own: those scripts
  write no spaces between words, and a clause read as one token shares nothing with a clause that
  differs by a word.
* Separators: every ASCII character that is not a letter or digit, and the non-ASCII code points in
  :data:`SEPARATOR_RANGES` (U+0080–U+00BF: C1 controls, no-break space and Latin-1 punctuation such as
  « » ¿ °, but not its letters and digits ª º µ ² ³ ¹ ¼ ½ ¾ nor the soft hyphen; U+2000–U+206F: General
  Punctuation: typographic spaces, dashes, curly quotes, ellipsis, bullets, but not the joiners U+200C
  and U+200D (inside Persian and Indic words, and emoji sequences) nor the word joiner and invisible
  operators U+2060–U+2064, which mark no break; U+2E00–U+2E7F: Supplemental Punctuation;
  U+3000–U+303F: CJK punctuation and the ideographic space; the full-width punctuation of Chinese and
  Japanese text, ，！？：；（） and the rest of U+FF01–U+FF0F, U+FF1A–U+FF20, U+FF3B–U+FF40 and
  U+FF5B–U+FF65; U+FEFF: byte-order mark). LLM output is full of em dashes and curly apostrophes, so
  ``"well—known"`` gives two tokens and ``"don’t"`` gives ``don`` and ``t``, exactly as
  ``"well-known"`` and ``"don't"`` do; ``"东京，大阪"`` gives two, as ``"东京、大阪"`` does.
* Only ASCII is lower-cased (``"Über"`` and ``"über"`` are different tokens); non-ASCII text is kept
  as-is, without Unicode normalisation.
* A token's id is a fixed 64-bit hash of its lower-cased UTF-8 bytes: FNV-1a taken over 8-byte
  little-endian chunks (the last chunk zero-padded) instead of single bytes, then MurmurHash3's
  ``fmix64`` finalizer (:func:`token_id_reference` spells it out). Being a fixed function of the bytes,
  ids are the same in every process, run and machine (Python's ``hash`` is salted per process and is
  never used). Chunks rather than bytes keep hashing off the critical path of the scanner. Distinct
  tokens share an id with probability about ``n**2 / 2**65`` for ``n`` distinct tokens; kernels treat
  equal ids as equal tokens.
* Bytes that are not part of well-formed UTF-8 (possible only in Arrow data from elsewhere; Python
  strings always encode cleanly) count as word bytes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
from numba import int64, njit, prange, types, uint64, void
from numba.cpython.unsafe.numbers import trailing_zeros

from kernels._batch import dynamic_schedule, parallel_chunks
from kernels._inputs import as_texts
from kernels._types import READONLY_I64, READONLY_U8, READONLY_U64

#: Non-ASCII code point ranges (inclusive) that separate tokens; all ASCII non-alphanumerics do too.
SEPARATOR_RANGES: tuple[tuple[int, int], ...] = (
    (0x0080, 0x00A9),  # C1 controls, no-break space, ¡ ¢ £ ¤ ¥ ¦ § ¨ ©
    (0x00AB, 0x00AC),  # « ¬  (not ª, a letter, nor U+00AD, the soft hyphen inside a word)
    (0x00AE, 0x00B1),  # ® ¯ ° ±
    (0x00B4, 0x00B4),  # ´  (not ² ³)
    (0x00B6, 0x00B8),  # ¶ · ¸  (not µ)
    (0x00BB, 0x00BB),  # »  (not ¹ º, nor the fractions ¼ ½ ¾)
    (0x00BF, 0x00BF),  # ¿
    (0x2000, 0x200B),  # typographic spaces, zero-width space
    (0x200E, 0x205F),  # marks, dashes, quotes, ellipsis, bullets… (not the joiners U+200C, U+200D)
    (0x2065, 0x206F),  # (not the word joiner and invisible operators U+2060–U+2064)
    (0x2E00, 0x2E7F),
    (0x3000, 0x303F),
    (0xFEFF, 0xFEFF),
    (0xFF01, 0xFF0F),  # full-width ！＂＃＄％＆＇（）＊＋，－．／
    (0xFF1A, 0xFF20),  # ：；＜＝＞？＠
    (0xFF3B, 0xFF40),  # ［＼］＾＿｀
    (0xFF5B, 0xFF65),  # ｛｜｝～｟｠ and half-width ｡｢｣､･
)

#: Code point ranges (inclusive) whose characters are each a token of their own: Chinese and Japanese write
#: no spaces between words, so a run of them was one token per clause. One token per character (as
#: sacrebleu's Chinese tokenizer and BERTScore count them) is what word overlap can compare without a
#: dictionary. Korean writes spaces between words: Hangul stays in words, as every other script does.
CHARACTER_TOKEN_RANGES: tuple[tuple[int, int], ...] = (
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK Unified Ideographs Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0xFF66, 0xFF9F),  # half-width Katakana
    (0x20000, 0x323AF),  # CJK Unified Ideographs Extensions B–H, Compatibility Supplement
)

FNV_OFFSET_BASIS = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
_UINT64_MASK = (1 << 64) - 1

_FNV_OFFSET = np.uint64(FNV_OFFSET_BASIS)
_FNV_PRIME = np.uint64(FNV_PRIME)
_SEPARATOR_RANGE_ARRAY = np.array(SEPARATOR_RANGES, dtype=np.int64)
_CHARACTER_TOKEN_ARRAY = np.array(CHARACTER_TOKEN_RANGES, dtype=np.int64)

# SWAR ("SIMD within a register") constants: eight bytes are classified at once in a uint64.
_BYTES_01 = 0x0101010101010101
_HIGH_BITS = np.uint64(0x80 * _BYTES_01)
_ALL_BITS = np.uint64(_UINT64_MASK)
_CASE_BITS = np.uint64(0x20 * _BYTES_01)
# Multiplying bytes that are each 0 or 1 by this gathers them into the top byte (an 8-bit movemask).
_GATHER_BYTE_FLAGS = np.uint64(0x0102040810204080)


def _range_addends(low: int, high: int) -> tuple[np.uint64, np.uint64]:
    """Addends turning ``low <= byte <= high`` into a high-bit test on 7-bit bytes (see _ascii_word_bits)."""
    return np.uint64((0x80 - low) * _BYTES_01), np.uint64((0x7F - high) * _BYTES_01)


_DIGIT_ADD_LOW, _DIGIT_ADD_HIGH = _range_addends(0x30, 0x39)
_LOWER_ADD_LOW, _LOWER_ADD_HIGH = _range_addends(0x61, 0x7A)


def _byte_kind_table() -> np.ndarray:
    """``table[b]`` is 1 for an ASCII letter or digit, 0 for another ASCII byte, 2 for a non-ASCII byte."""
    table = np.zeros(256, dtype=np.uint8)
    for byte in range(256):
        if byte >= 0x80:
            table[byte] = 2
        elif chr(byte).isalnum():
            table[byte] = 1
    return table


_BYTE_KIND = _byte_kind_table()


@njit(inline="always")
def _code_point_at(data, pos, end):
    """(code point, byte length) of the well-formed 2-, 3- or 4-byte UTF-8 sequence starting at ``data[pos]``,
    or (0, 0): an ASCII byte, a continuation byte, an ill-formed or overlong sequence."""
    lead = np.int64(data[pos])
    if 0xC2 <= lead <= 0xDF:
        length, code_point = 2, lead & 0x1F
    elif 0xE0 <= lead <= 0xEF:
        length, code_point = 3, lead & 0x0F
    elif 0xF0 <= lead <= 0xF4:
        length, code_point = 4, lead & 0x07
    else:
        return np.int64(0), np.int64(0)
    if pos + length > end:
        return np.int64(0), np.int64(0)
    for index in range(pos + 1, pos + length):
        if data[index] & 0xC0 != 0x80:
            return np.int64(0), np.int64(0)
        code_point = (code_point << 6) | (np.int64(data[index]) & 0x3F)
    if (length == 3 and code_point < 0x800) or (length == 4 and not 0x10000 <= code_point <= 0x10FFFF):
        return np.int64(0), np.int64(0)
    return code_point, np.int64(length)


@njit(inline="always")
def _in_ranges(code_point, ranges):
    for index in range(ranges.shape[0]):
        if ranges[index, 0] <= code_point <= ranges[index, 1]:
            return True
    return False


@njit(int64(READONLY_U8, int64, int64), cache=True)
def _separator_length(data, pos, end):
    """Byte length of the non-ASCII separator code point starting at ``data[pos]``, or 0 if none (an ill-formed
    or overlong sequence is not a separator: its bytes count as word bytes)."""
    code_point, length = _code_point_at(data, pos, end)
    return length if length and _in_ranges(code_point, _SEPARATOR_RANGE_ARRAY) else 0


@njit(inline="always")
def _starts_character_token(data, pos, end):
    """Whether a well-formed code point of CHARACTER_TOKEN_RANGES starts at ``data[pos]``."""
    code_point, length = _code_point_at(data, pos, end)
    return length > 0 and _in_ranges(code_point, _CHARACTER_TOKEN_ARRAY)


@njit(inline="always")
def _is_break_byte(data, pos, text_start, text_end):
    """Whether a token starts at the word byte ``data[pos]`` though the byte before it is a word byte too: a
    character token starts at ``pos``, or one ends just before it. Stateless, as :func:`_is_word_byte`."""
    if pos <= text_start:
        return False
    if _starts_character_token(data, pos, text_end):
        return True
    if data[pos - 1] < 0x80:
        return False
    lead = pos - 1
    while lead > text_start and lead > pos - 4 and data[lead] & 0xC0 == 0x80:
        lead -= 1
    code_point, length = _code_point_at(data, lead, text_end)
    return length > 0 and lead + length == pos and _in_ranges(code_point, _CHARACTER_TOKEN_ARRAY)


@njit(uint64(READONLY_U8, int64, int64, int64, uint64), cache=True)
def _block_break_mask_bytewise(data, block_start, text_start, text_end, mask):
    """Bit ``i`` set iff a token starts at the word byte ``block_start + i`` though the byte before it is a word
    byte too (:func:`_is_break_byte`), for blocks holding non-ASCII bytes."""
    breaks = uint64(0)
    for pos in range(max(block_start, text_start + 1), min(block_start + 64, text_end)):
        bit = uint64(1) << uint64(pos - block_start)
        # Only a byte that may open a 3- or 4-byte code point, or one after a non-ASCII byte, can be a break.
        if mask & bit and (data[pos] >= 0xE0 or data[pos - 1] >= 0x80) and _is_break_byte(data, pos, text_start,
                                                                                          text_end):
            breaks |= bit
    return breaks


@njit(inline="always")
def _block_break_mask(data, block_start, text_start, text_end, mask, ascii_only):
    """:func:`_block_break_mask_bytewise`; in a block of ASCII bytes only its first byte can be one (after a
    character token that ended the block before)."""
    if ascii_only:
        if block_start > text_start and mask & uint64(1) and data[block_start - 1] >= 0x80 and _is_break_byte(
                data, block_start, text_start, text_end):
            return uint64(1)
        return uint64(0)
    return _block_break_mask_bytewise(data, block_start, text_start, text_end, mask)


@njit(types.boolean(READONLY_U8, int64, int64, int64), cache=True)
def _is_word_byte(data, pos, text_start, text_end):
    """Whether ``data[pos]`` belongs to a token, decided from the bytes around it alone.

    The slow path, for 64-byte blocks holding non-ASCII bytes: a byte ``>= 0x80`` is a separator byte
    only if it lies inside a separator code point, found by backing up over at most three
    continuation bytes to the sequence's lead byte. Being stateless, it gives the same answer whichever
    block asks.
    """
    kind = _BYTE_KIND[data[pos]]
    if kind != 2:
        return kind == 1
    lead = pos
    while lead > text_start and lead > pos - 3 and data[lead] & 0xC0 == 0x80:
        lead -= 1
    return pos >= lead + _separator_length(data, lead, text_end)


def word_view(data: np.ndarray) -> tuple[np.ndarray, int]:
    """The largest 8-byte-aligned stretch of ``data`` viewed as uint64 words (zero copy).

    Returns:
        ``(words, word_base)``: ``words[i]`` holds ``data[word_base + 8 * i : word_base + 8 * i + 8]``
        little-endian. The scanner reads aligned words because LLVM does not fuse eight single-byte
        loads into one; the few bytes outside the view (under 8 at each end) take a byte-wise path.
    """
    word_base = (-data.ctypes.data) % 8
    n_words = max(len(data) - word_base, 0) // 8
    return data[word_base : word_base + 8 * n_words].view(np.uint64), word_base


@njit(inline="always")
def _ascii_word_bits(word):
    """8-bit mask of the ASCII letters and digits among the bytes of ``word`` (all bytes < 0x80).

    SWAR range test: for a 7-bit byte ``b``, ``b + (0x80 - low)`` has bit 7 set iff ``b >= low`` and
    ``b + (0x7F - high)`` iff ``b > high``, and neither sum carries into the next byte. Letters are
    tested after setting bit 5, which maps capitals onto lower case.
    """
    lowered = word | _CASE_BITS
    letters = (lowered + _LOWER_ADD_LOW) & ~(lowered + _LOWER_ADD_HIGH)
    digits = (word + _DIGIT_ADD_LOW) & ~(word + _DIGIT_ADD_HIGH)
    return ((((letters | digits) & _HIGH_BITS) >> uint64(7)) * _GATHER_BYTE_FLAGS) >> uint64(56)


@njit(uint64(READONLY_U8, int64, int64, int64), cache=True)
def _block_word_mask_bytewise(data, block_start, text_start, text_end):
    """:func:`_block_word_mask` one byte at a time, for blocks holding non-ASCII bytes."""
    mask = uint64(0)
    for pos in range(max(block_start, text_start), min(block_start + 64, text_end)):
        if _is_word_byte(data, pos, text_start, text_end):
            mask |= uint64(1) << uint64(pos - block_start)
    return mask


@njit(inline="always")
def _block_word_mask(data, words, word_base, block_start, text_start, text_end, fast):
    """(mask, ascii_only): bit ``i`` of mask set iff ``data[block_start + i]`` is a word byte of the text
    ``[text_start, text_end)``; ascii_only: the block was read as ASCII (it holds no byte >= 0x80).

    With ``fast`` the block is read as eight aligned words; a block holding any byte >= 0x80, and every
    block of a text outside the fast zone, is classified byte by byte.
    """
    if block_start >= text_end:
        return uint64(0), True
    if fast:
        first_word = (block_start - word_base) >> 3
        mask = uint64(0)
        any_bytes = uint64(0)
        for lane in range(8):
            word = words[first_word + lane]
            any_bytes |= word
            mask |= _ascii_word_bits(word) << uint64(8 * lane)
        if any_bytes & _HIGH_BITS == 0:
            if block_start < text_start:
                mask &= _ALL_BITS << uint64(text_start - block_start)
            if text_end - block_start < 64:
                mask &= _ALL_BITS >> uint64(64 - (text_end - block_start))
            return mask, True
    return _block_word_mask_bytewise(data, block_start, text_start, text_end), False


@njit(inline="always")
def _load_chunk(data, words, word_base, pos, text_end, fast):
    """Eight bytes from ``data[pos]`` as a little-endian uint64. Bytes at or past ``text_end`` are
    unspecified (callers mask them off)."""
    if fast:
        offset = pos - word_base
        index = offset >> 3
        shift = uint64(8 * (offset & 7))
        # Two shifts instead of one by 64 - shift, which would be undefined for shift 0.
        return (words[index] >> shift) | ((words[index + 1] << uint64(1)) << (uint64(63) - shift))
    chunk = uint64(0)
    for byte_index in range(min(8, text_end - pos)):
        chunk |= uint64(data[pos + byte_index]) << uint64(8 * byte_index)
    return chunk


@njit(inline="always")
def _token_id(data, words, word_base, token_start, token_stop, text_end, fast):
    """Id of the token ``data[token_start:token_stop]``: FNV-1a over its 8-byte little-endian chunks,
    lower-cased, the last one zero-padded; then MurmurHash3's ``fmix64`` finalizer.

    Lower-casing: token bytes are ASCII letters or digits or non-ASCII bytes. Setting bit 5 lower-cases
    a letter and leaves a digit as it is, so it is set in every byte whose bit 7 is clear;
    ``~(chunk >> 2)`` brings each byte's inverted bit 7 onto its own bit 5.
    """
    value = _FNV_OFFSET
    chunk_start = token_start
    while True:
        chunk = _load_chunk(data, words, word_base, chunk_start, text_end, fast)
        valid_bytes = _ALL_BITS >> uint64(64 - 8 * min(token_stop - chunk_start, 8))
        value = (value ^ ((chunk | (~(chunk >> uint64(2)) & _CASE_BITS)) & valid_bytes)) * _FNV_PRIME
        chunk_start += 8
        if chunk_start >= token_stop:
            break
    value ^= value >> uint64(33)
    value *= uint64(0xFF51AFD7ED558CCD)
    value ^= value >> uint64(33)
    value *= uint64(0xC4CEB9FE1A85EC53)
    value ^= value >> uint64(33)
    return value


@njit(inline="always")
def _first_block(word_base, text_start, fast):
    """Fast blocks start at the aligned word holding the text's first byte."""
    return text_start - ((text_start - word_base) & 7) if fast else text_start


@njit(inline="always")
def _scan_text(data, words, word_base, text_start, text_end, token_ids, n_written, fast):
    """Body of :func:`tokenize_text`. Runs one block past a text that ends on a block boundary, so a
    token reaching the end is closed inside the loop like any other."""
    token_start = int64(-1)
    for block_start in range(_first_block(word_base, text_start, fast), text_end + 1, 64):
        mask, ascii_only = _block_word_mask(data, words, word_base, block_start, text_start, text_end, fast)
        breaks = _block_break_mask(data, block_start, text_start, text_end, mask, ascii_only)
        previous = (mask << uint64(1)) | (uint64(1) if token_start >= 0 else uint64(0))
        # A break (a character token's edge inside a run of word bytes) ends one token and starts the next.
        starts = (mask & ~previous) | breaks
        stops = (~mask & previous) | (breaks & previous)
        # Starts and stops alternate along the block; pair them in order.
        while True:
            if token_start < 0:
                if starts == 0:
                    break
                token_start = block_start + int64(trailing_zeros(starts))
                starts &= starts - uint64(1)
            if stops == 0:
                break
            token_stop = block_start + int64(trailing_zeros(stops))
            stops &= stops - uint64(1)
            token_ids[n_written] = _token_id(data, words, word_base, token_start, token_stop, text_end, fast)
            n_written += 1
            token_start = -1
    return n_written


@njit(int64(READONLY_U8, READONLY_U64, int64, int64, int64, uint64[::1], int64), cache=True)
def _scan_text_bytewise(data, words, word_base, text_start, text_end, token_ids, n_written):
    """:func:`_scan_text` reading byte by byte, for the texts outside the fast zone."""
    return _scan_text(data, words, word_base, text_start, text_end, token_ids, n_written, False)


@njit(inline="always")
def _in_fast_zone(words, word_base, text_start, text_end):
    """Whether every aligned word the fast path reads for this text lies inside the word view: the
    text starts in the view and ends at least 72 bytes before its end (a block and a chunk). Only
    the few texts at the buffer's two ends fall outside."""
    return text_start >= word_base and text_end + 72 <= word_base + 8 * words.size


@njit(inline="always")
def tokenize_text(data, words, word_base, text_start, text_end, token_ids, n_written):
    """Write the ids of the tokens of ``data[text_start:text_end]`` into ``token_ids[n_written:]``.

    The text is scanned in 64-byte blocks at fixed positions: each block becomes a bitmask of word
    bytes and tokens are read off the mask's edges, so no load waits on where the previous token
    ended (the dependency that bounds a byte-at-a-time scanner). ``words, word_base`` come from
    :func:`word_view`. ``token_ids`` must have room for ``(text_end - text_start + 1) // 2`` ids.

    Returns:
        ``n_written`` plus the number of tokens written.
    """
    if _in_fast_zone(words, word_base, text_start, text_end):
        return _scan_text(data, words, word_base, text_start, text_end, token_ids, n_written, True)
    return _scan_text_bytewise(data, words, word_base, text_start, text_end, token_ids, n_written)


@njit(inline="always")
def _count_text(data, words, word_base, text_start, text_end, fast):
    n_tokens = 0
    previous_bit = uint64(0)
    for block_start in range(_first_block(word_base, text_start, fast), text_end, 64):
        mask, ascii_only = _block_word_mask(data, words, word_base, block_start, text_start, text_end, fast)
        starts = (mask & ~((mask << uint64(1)) | previous_bit)) | _block_break_mask(
            data, block_start, text_start, text_end, mask, ascii_only)
        previous_bit = mask >> uint64(63)
        while starts != 0:
            starts &= starts - uint64(1)
            n_tokens += 1
    return n_tokens


@njit(int64(READONLY_U8, READONLY_U64, int64, int64, int64), cache=True)
def _count_text_bytewise(data, words, word_base, text_start, text_end):
    return _count_text(data, words, word_base, text_start, text_end, False)


@njit(inline="always")
def count_tokens(data, words, word_base, text_start, text_end):
    """Number of tokens in ``data[text_start:text_end]``: the rising edges of the block masks."""
    if _in_fast_zone(words, word_base, text_start, text_end):
        return _count_text(data, words, word_base, text_start, text_end, True)
    return _count_text_bytewise(data, words, word_base, text_start, text_end)


@njit(void(READONLY_U8, READONLY_U64, int64, READONLY_I64, int64, int64, int64[::1]), cache=True)
def _count_texts(data, words, word_base, text_offsets, first_text, stop_text, token_counts):
    """``token_counts[t + 1]`` = number of tokens of text ``t``, for texts ``first_text .. stop_text - 1``."""
    for text in range(first_text, stop_text):
        token_counts[text + 1] = count_tokens(data, words, word_base, text_offsets[text], text_offsets[text + 1])


@njit(void(READONLY_U8, READONLY_U64, int64, READONLY_I64, int64, int64, READONLY_I64, uint64[::1]), cache=True)
def _tokenize_texts(data, words, word_base, text_offsets, first_text, stop_text, token_offsets, token_ids):
    """Write the ids of texts ``first_text .. stop_text - 1`` into their CSR slots of ``token_ids``."""
    for text in range(first_text, stop_text):
        tokenize_text(
            data, words, word_base, text_offsets[text], text_offsets[text + 1], token_ids, token_offsets[text]
        )


# The prange body is a call to a separately compiled function: Numba's parallel lowering of a large
# inlined body costs seconds of compile time for no run-time gain. The count pass is serial: at a
# quarter of a nanosecond per byte it would not repay a second parallel loop's compile time.
@njit(
    types.Tuple((uint64[::1], int64[::1]))(READONLY_U8, READONLY_U64, int64, READONLY_I64, int64),
    parallel=True,
    cache=True,
)
def _tokenize_kernel(data, words, word_base, text_offsets, n_chunks):
    """Count tokens per text, then write the ids into their CSR slots in parallel."""
    n_texts = len(text_offsets) - 1
    token_offsets = np.zeros(n_texts + 1, dtype=np.int64)
    _count_texts(data, words, word_base, text_offsets, 0, n_texts, token_offsets)
    token_offsets = np.cumsum(token_offsets)
    token_ids = np.empty(token_offsets[-1], dtype=np.uint64)
    for chunk in prange(n_chunks):
        first_text, stop_text = chunk * n_texts // n_chunks, (chunk + 1) * n_texts // n_chunks
        _tokenize_texts(data, words, word_base, text_offsets, first_text, stop_text, token_offsets, token_ids)
    return token_ids, token_offsets


def tokenize(texts: Sequence[str | None] | pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Tokenize texts and hash each token to a stable 64-bit id (tokenizer: see the module docstring).

    Args:
        texts: a sequence of str (``None`` counts as an empty string) or a pyarrow string /
            large_string array, whose UTF-8 buffer is read without copying.

    Returns:
        ``(token_ids, offsets)`` in CSR layout: ``token_ids`` uint64 of length ``n_tokens``, in text
        order; ``offsets`` int64 of length ``n_texts + 1``, text ``t``'s ids being
        ``token_ids[offsets[t]:offsets[t + 1]]``. An empty text has no tokens.
    """
    data, text_offsets = as_texts(texts)
    words, word_base = word_view(data)
    with dynamic_schedule():
        return _tokenize_kernel(data, words, word_base, text_offsets, parallel_chunks(len(text_offsets) - 1))


# --- pure-Python reference -------------------------------------------------------------------------

_SEPARATOR_PATTERN = re.compile(
    "[\\x00-\\x2f\\x3a-\\x40\\x5b-\\x60\\x7b-\\x7f"
    + "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in SEPARATOR_RANGES)
    + "]+"
)


_CHARACTER_TOKEN_CLASS = "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in CHARACTER_TOKEN_RANGES)
_PIECE_PATTERN = re.compile(f"[{_CHARACTER_TOKEN_CLASS}]|[^{_CHARACTER_TOKEN_CLASS}]+")


def reference_tokens(text: str) -> list[bytes]:
    """The tokenizer in plain Python: split on separators, each character of CHARACTER_TOKEN_RANGES a token of
    its own, then ASCII-lower-case the UTF-8 bytes."""
    return [piece.encode("utf-8").lower() for token in _SEPARATOR_PATTERN.split(text) if token
            for piece in _PIECE_PATTERN.findall(token)]


def token_id_reference(token: bytes) -> int:
    """Plain-Python token id: FNV-1a over 8-byte little-endian chunks, then MurmurHash3's fmix64."""
    value = FNV_OFFSET_BASIS
    for chunk_start in range(0, len(token), 8):
        value = ((value ^ int.from_bytes(token[chunk_start : chunk_start + 8], "little")) * FNV_PRIME) & _UINT64_MASK
    value ^= value >> 33
    value = (value * 0xFF51AFD7ED558CCD) & _UINT64_MASK
    value ^= value >> 33
    value = (value * 0xC4CEB9FE1A85EC53) & _UINT64_MASK
    value ^= value >> 33
    return value


def tokenize_reference(texts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """Plain-Python :func:`tokenize` for a list of str (``None`` counts as empty)."""
    ids: list[int] = []
    offsets = [0]
    for text in texts:
        ids.extend(token_id_reference(token) for token in reference_tokens(text or ""))
        offsets.append(len(ids))
    return np.array(ids, dtype=np.uint64), np.array(offsets, dtype=np.int64)
