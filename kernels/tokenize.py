"""Word tokenizer hashing tokens to stable 64-bit ids, shared by every lexical kernel.

The tokenizer works on UTF-8 bytes so the Arrow path (a raw UTF-8 buffer) and the Python-list path
give identical tokens:

* A token is a maximal run of *word* characters. Word characters are ASCII letters and digits and
  every non-ASCII character except the separators below.
* A character of a script written without spaces between words — Chinese ideographs, Japanese kana, Thai,
  Lao, Khmer, Myanmar (:data:`CHARACTER_TOKEN_RANGES`) — is a token of its own, with the combining marks of
  those scripts that follow it (:data:`CHARACTER_MARK_RANGES`: Thai vowel and tone marks, Khmer and Myanmar
  dependent vowels and virama, kana voiced-sound marks), as one grapheme: ``"กินข้าว"`` gives
  ``กิ น ข้ า ว``. A clause read as one token shared nothing with a clause that differs by a word. Such
  marks after any other character (or none) are a token of their own. Digits of those scripts run together
  as ASCII digits do.
* Separators: every ASCII character that is not a letter or digit, and the non-ASCII code points in
  :data:`SEPARATOR_RANGES`: spaces, punctuation and mathematical and currency symbols of every script (Unicode
  categories Z*, P*, Sm, Sc: the Arabic comma ، and question mark ؟, the Devanagari danda ।, the Hebrew maqaf
  ־, the Ogham space, ×, ÷, €, →), the C1 controls, every symbol of Latin-1, Supplemental Punctuation, CJK
  Symbols and Punctuation and the full-width forms (¨ © ° ¦ 〒 ＾, as ASCII's symbols), and the format
  characters that mark a break or a direction (zero-width space, LRM, RLM, the other bidirectional controls,
  the byte-order mark). Not separators: the soft hyphen, the joiners U+200C and U+200D (inside Persian and
  Indic words, and emoji sequences), the word joiner and invisible operators U+2060–U+2064, which mark no
  break; the Armenian emphasis, exclamation and question marks and the Hebrew geresh and gershayim, which are
  written inside a word; and the other symbols (So, Sk elsewhere: emoji and their skin-tone modifiers, ™),
  which stay tokens as before. LLM output is full of em dashes and curly apostrophes, so ``"well—known"``
  gives two tokens and ``"don’t"`` gives ``don`` and ``t``, exactly as ``"well-known"`` and ``"don't"`` do;
  ``"东京，大阪"`` gives two, as ``"东京、大阪"`` does.
* The three tables are derived from Unicode 14.0 by :func:`derive_unicode_tables` and frozen in this file:
  derived at import they would cost 0.2 s and make token ids depend on the Python version's Unicode data.
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

#: Unicode version of the tables below (see derive_unicode_tables).
UNICODE_VERSION = "14.0.0"

#: Non-ASCII code point ranges (inclusive) that separate tokens; all ASCII non-alphanumerics do too.
SEPARATOR_RANGES: tuple[tuple[int, int], ...] = (
    (0x0080, 0x00A9), (0x00AB, 0x00AC), (0x00AE, 0x00B1), (0x00B4, 0x00B4), (0x00B6, 0x00B8), (0x00BB, 0x00BB),
    (0x00BF, 0x00BF), (0x00D7, 0x00D7), (0x00F7, 0x00F7), (0x037E, 0x037E), (0x0387, 0x0387), (0x03F6, 0x03F6),
    (0x055A, 0x055A), (0x055D, 0x055D), (0x055F, 0x055F), (0x0589, 0x058A), (0x058F, 0x058F), (0x05BE, 0x05BE),
    (0x05C0, 0x05C0), (0x05C3, 0x05C3), (0x05C6, 0x05C6), (0x0606, 0x060D), (0x061B, 0x061F), (0x066A, 0x066D),
    (0x06D4, 0x06D4), (0x0700, 0x070D), (0x07F7, 0x07F9), (0x07FE, 0x07FF), (0x0830, 0x083E), (0x085E, 0x085E),
    (0x0964, 0x0965), (0x0970, 0x0970), (0x09F2, 0x09F3), (0x09FB, 0x09FB), (0x09FD, 0x09FD), (0x0A76, 0x0A76),
    (0x0AF0, 0x0AF1), (0x0BF9, 0x0BF9), (0x0C77, 0x0C77), (0x0C84, 0x0C84), (0x0DF4, 0x0DF4), (0x0E3F, 0x0E3F),
    (0x0E4F, 0x0E4F), (0x0E5A, 0x0E5B), (0x0F04, 0x0F12), (0x0F14, 0x0F14), (0x0F3A, 0x0F3D), (0x0F85, 0x0F85),
    (0x0FD0, 0x0FD4), (0x0FD9, 0x0FDA), (0x104A, 0x104F), (0x10FB, 0x10FB), (0x1360, 0x1368), (0x1400, 0x1400),
    (0x166E, 0x166E), (0x1680, 0x1680), (0x169B, 0x169C), (0x16EB, 0x16ED), (0x1735, 0x1736), (0x17D4, 0x17D6),
    (0x17D8, 0x17DB), (0x1800, 0x180A), (0x1944, 0x1945), (0x1A1E, 0x1A1F), (0x1AA0, 0x1AA6), (0x1AA8, 0x1AAD),
    (0x1B5A, 0x1B60), (0x1B7D, 0x1B7E), (0x1BFC, 0x1BFF), (0x1C3B, 0x1C3F), (0x1C7E, 0x1C7F), (0x1CC0, 0x1CC7),
    (0x1CD3, 0x1CD3), (0x2000, 0x200B), (0x200E, 0x205F), (0x2066, 0x206F), (0x207A, 0x207E), (0x208A, 0x208E),
    (0x20A0, 0x20C0), (0x2118, 0x2118), (0x2140, 0x2144), (0x214B, 0x214B), (0x2190, 0x2194), (0x219A, 0x219B),
    (0x21A0, 0x21A0), (0x21A3, 0x21A3), (0x21A6, 0x21A6), (0x21AE, 0x21AE), (0x21CE, 0x21CF), (0x21D2, 0x21D2),
    (0x21D4, 0x21D4), (0x21F4, 0x22FF), (0x2308, 0x230B), (0x2320, 0x2321), (0x2329, 0x232A), (0x237C, 0x237C),
    (0x239B, 0x23B3), (0x23DC, 0x23E1), (0x25B7, 0x25B7), (0x25C1, 0x25C1), (0x25F8, 0x25FF), (0x266F, 0x266F),
    (0x2768, 0x2775), (0x27C0, 0x27FF), (0x2900, 0x2AFF), (0x2B30, 0x2B44), (0x2B47, 0x2B4C), (0x2CF9, 0x2CFC),
    (0x2CFE, 0x2CFF), (0x2D70, 0x2D70), (0x2E00, 0x2E2E), (0x2E30, 0x2E5D), (0x3000, 0x3004), (0x3008, 0x3020),
    (0x3030, 0x3030), (0x3036, 0x3037), (0x303D, 0x303F), (0x30A0, 0x30A0), (0x30FB, 0x30FB), (0xA4FE, 0xA4FF),
    (0xA60D, 0xA60F), (0xA673, 0xA673), (0xA67E, 0xA67E), (0xA6F2, 0xA6F7), (0xA838, 0xA838), (0xA874, 0xA877),
    (0xA8CE, 0xA8CF), (0xA8F8, 0xA8FA), (0xA8FC, 0xA8FC), (0xA92E, 0xA92F), (0xA95F, 0xA95F), (0xA9C1, 0xA9CD),
    (0xA9DE, 0xA9DF), (0xAA5C, 0xAA5F), (0xAADE, 0xAADF), (0xAAF0, 0xAAF1), (0xABEB, 0xABEB), (0xFB29, 0xFB29),
    (0xFD3E, 0xFD3F), (0xFDFC, 0xFDFC), (0xFE10, 0xFE19), (0xFE30, 0xFE52), (0xFE54, 0xFE66), (0xFE68, 0xFE6B),
    (0xFEFF, 0xFEFF), (0xFF01, 0xFF0F), (0xFF1A, 0xFF20), (0xFF3B, 0xFF40), (0xFF5B, 0xFF65), (0xFFE0, 0xFFE6),
    (0xFFE8, 0xFFEE), (0x10100, 0x10102), (0x1039F, 0x1039F), (0x103D0, 0x103D0), (0x1056F, 0x1056F),
    (0x10857, 0x10857), (0x1091F, 0x1091F), (0x1093F, 0x1093F), (0x10A50, 0x10A58), (0x10A7F, 0x10A7F),
    (0x10AF0, 0x10AF6), (0x10B39, 0x10B3F), (0x10B99, 0x10B9C), (0x10EAD, 0x10EAD), (0x10F55, 0x10F59),
    (0x10F86, 0x10F89), (0x11047, 0x1104D), (0x110BB, 0x110BC), (0x110BE, 0x110C1), (0x11140, 0x11143),
    (0x11174, 0x11175), (0x111C5, 0x111C8), (0x111CD, 0x111CD), (0x111DB, 0x111DB), (0x111DD, 0x111DF),
    (0x11238, 0x1123D), (0x112A9, 0x112A9), (0x1144B, 0x1144F), (0x1145A, 0x1145B), (0x1145D, 0x1145D),
    (0x114C6, 0x114C6), (0x115C1, 0x115D7), (0x11641, 0x11643), (0x11660, 0x1166C), (0x116B9, 0x116B9),
    (0x1173C, 0x1173E), (0x1183B, 0x1183B), (0x11944, 0x11946), (0x119E2, 0x119E2), (0x11A3F, 0x11A46),
    (0x11A9A, 0x11A9C), (0x11A9E, 0x11AA2), (0x11C41, 0x11C45), (0x11C70, 0x11C71), (0x11EF7, 0x11EF8),
    (0x11FDD, 0x11FE0), (0x11FFF, 0x11FFF), (0x12470, 0x12474), (0x12FF1, 0x12FF2), (0x16A6E, 0x16A6F),
    (0x16AF5, 0x16AF5), (0x16B37, 0x16B3B), (0x16B44, 0x16B44), (0x16E97, 0x16E9A), (0x16FE2, 0x16FE2),
    (0x1BC9F, 0x1BC9F), (0x1D6C1, 0x1D6C1), (0x1D6DB, 0x1D6DB), (0x1D6FB, 0x1D6FB), (0x1D715, 0x1D715),
    (0x1D735, 0x1D735), (0x1D74F, 0x1D74F), (0x1D76F, 0x1D76F), (0x1D789, 0x1D789), (0x1D7A9, 0x1D7A9),
    (0x1D7C3, 0x1D7C3), (0x1DA87, 0x1DA8B), (0x1E2FF, 0x1E2FF), (0x1E95E, 0x1E95F), (0x1ECB0, 0x1ECB0),
    (0x1EEF0, 0x1EEF1),
)

#: Code point ranges (inclusive) whose characters each start a token of their own: Chinese, Japanese, Thai, Lao,
#: Khmer and Myanmar write no spaces between words, so a run of them was one token per clause. One token per
#: character (as sacrebleu's Chinese tokenizer and BERTScore count Chinese) is what word overlap can compare
#: without a dictionary, and none is available offline. For the four alphabets of South-East Asia a character is
#: a sound rather than a word, so overlap is coarser than for Chinese; still far better than a clause per token.
#: Korean writes spaces between words: Hangul stays in words, as every other script does.
CHARACTER_TOKEN_RANGES: tuple[tuple[int, int], ...] = (
    (0x0E00, 0x0E30), (0x0E32, 0x0E32), (0x0E3B, 0x0E3E), (0x0E40, 0x0E46), (0x0E5C, 0x0EB0), (0x0EB2, 0x0EB2),
    (0x0EBD, 0x0EC7), (0x0ECE, 0x0ECF), (0x0EDA, 0x0EFF), (0x1000, 0x102A), (0x103F, 0x103F), (0x1050, 0x1055),
    (0x105A, 0x105D), (0x1061, 0x1061), (0x1065, 0x1066), (0x106E, 0x1070), (0x1075, 0x1081), (0x108E, 0x108E),
    (0x109E, 0x109F), (0x1780, 0x17B3), (0x17D7, 0x17D7), (0x17DC, 0x17DC), (0x17DE, 0x17DF), (0x17EA, 0x17EF),
    (0x17FA, 0x17FF), (0x3005, 0x3006), (0x3031, 0x3035), (0x303B, 0x303C), (0x3040, 0x3098), (0x309B, 0x309F),
    (0x30A1, 0x30FA), (0x30FC, 0x30FF), (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xA9E0, 0xA9E4),
    (0xA9E6, 0xA9EF), (0xA9FA, 0xA9FF), (0xAA60, 0xAA7A), (0xAA7E, 0xAA7F), (0xF900, 0xFAFF), (0xFF66, 0xFF9D),
    (0x20000, 0x323AF),
)

#: Combining marks (inclusive ranges) that stay in the token of the character before them when it is one of
#: CHARACTER_TOKEN_RANGES or such a mark: a Thai tone mark alone is no word, and as a token of its own it would be
#: shared by nearly every pair of texts. Category M* of those scripts' blocks, plus the spacing vowels Thai SARA AM
#: and Lao AM and the half-width voiced-sound marks, which extend a grapheme in Unicode's segmentation (UAX #29).
CHARACTER_MARK_RANGES: tuple[tuple[int, int], ...] = (
    (0x0E31, 0x0E31), (0x0E33, 0x0E3A), (0x0E47, 0x0E4E), (0x0EB1, 0x0EB1), (0x0EB3, 0x0EBC), (0x0EC8, 0x0ECD),
    (0x102B, 0x103E), (0x1056, 0x1059), (0x105E, 0x1060), (0x1062, 0x1064), (0x1067, 0x106D), (0x1071, 0x1074),
    (0x1082, 0x108D), (0x108F, 0x108F), (0x109A, 0x109D), (0x17B4, 0x17D3), (0x17DD, 0x17DD), (0x302A, 0x302F),
    (0x3099, 0x309A), (0xA9E5, 0xA9E5), (0xAA7B, 0xAA7D), (0xFF9E, 0xFF9F),
)


def derive_unicode_tables() -> tuple[tuple[tuple[int, int], ...], ...]:
    """(SEPARATOR_RANGES, CHARACTER_TOKEN_RANGES, CHARACTER_MARK_RANGES) from this Python's :mod:`unicodedata`.

    The rules of the module docstring as code: the tables above are its output under Unicode 14.0, which a test
    checks. Not used at import (0.2 s over every code point, and Unicode-version-dependent ids).
    """
    import unicodedata

    separator_categories = {"Zs", "Zl", "Zp", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Cc"}
    # Latin-1, Supplemental Punctuation, CJK Symbols and Punctuation, Halfwidth and Fullwidth Forms.
    symbol_blocks = ((0x0080, 0x00FF), (0x2E00, 0x2E7F), (0x3000, 0x303F), (0xFF00, 0xFFEF))
    # Arabic letter mark, zero-width space, LRM and RLM, embeddings and overrides, isolates and deprecated controls.
    break_formats = ((0x061C, 0x061C), (0x200B, 0x200B), (0x200E, 0x200F), (0x202A, 0x202E), (0x2066, 0x206F),
                     (0xFEFF, 0xFEFF))
    # Armenian emphasis, exclamation and question marks (over a vowel) and Hebrew geresh, gershayim (ג׳, צה״ל).
    in_word_punctuation = ((0x055B, 0x055C), (0x055E, 0x055E), (0x05F3, 0x05F4))
    character_blocks = (
        (0x0E00, 0x0E7F), (0x0E80, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF),  # Thai, Lao, Myanmar, Khmer
        (0xA9E0, 0xA9FF), (0xAA60, 0xAA7F),  # Myanmar Extended-B and -A
        (0x3000, 0x303F), (0x3040, 0x30FF), (0x31F0, 0x31FF),  # CJK symbols (々 〆), Hiragana, Katakana
        (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xFF66, 0xFF9F),  # ideographs, half-width Katakana
        (0x20000, 0x323AF),  # CJK Unified Ideographs Extensions B–H, Compatibility Supplement
    )  # fmt: skip
    extending_letters = (0x0E33, 0x0EB3, 0xFF9E, 0xFF9F)

    def inside(code_point: int, ranges) -> bool:
        return any(low <= code_point <= high for low, high in ranges)

    def is_separator(code_point: int) -> bool:
        category = unicodedata.category(chr(code_point))
        return not inside(code_point, in_word_punctuation) and (
            category in separator_categories
            or (category[0] == "S" and inside(code_point, symbol_blocks))
            or inside(code_point, break_formats)
        )

    def as_ranges(code_points) -> tuple[tuple[int, int], ...]:
        ranges: list[list[int]] = []
        for code_point in sorted(code_points):
            if ranges and ranges[-1][1] == code_point - 1:
                ranges[-1][1] = code_point
            else:
                ranges.append([code_point, code_point])
        return tuple((low, high) for low, high in ranges)

    characters, marks = [], []
    for low, high in character_blocks:
        for code_point in range(low, high + 1):
            category = unicodedata.category(chr(code_point))
            if is_separator(code_point):
                continue
            if category[0] == "M" or code_point in extending_letters:
                marks.append(code_point)
            elif category[0] != "N":  # letters, symbols, and unassigned ones (future ideographs)
                characters.append(code_point)
    separators = (code_point for code_point in range(0x80, 0x110000) if is_separator(code_point))
    return as_ranges(separators), as_ranges(characters), as_ranges(marks)


FNV_OFFSET_BASIS = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
_UINT64_MASK = (1 << 64) - 1

_FNV_OFFSET = np.uint64(FNV_OFFSET_BASIS)
_FNV_PRIME = np.uint64(FNV_PRIME)

# Kinds of non-ASCII code point. ASCII bytes are classified apart (_BYTE_KIND and the SWAR path): all are _WORD here.
_WORD, _SEPARATOR, _CHARACTER, _MARK = 0, 1, 2, 3


def _kind_runs(separators, characters, marks) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, kinds)``: code points ``starts[i] .. starts[i + 1] - 1`` are of kind ``kinds[i]``; ``starts[0]`` is 0.

    A lookup is a binary search over these 500-odd runs (a scan of the 222 separator ranges would compare that
    many times per byte). Separators are painted last: a separator is never part of a character token, whatever
    the tables say.
    """
    kinds = np.full(0x110000, _WORD, dtype=np.uint8)
    for ranges, kind in ((characters, _CHARACTER), (marks, _MARK), (separators, _SEPARATOR)):
        for low, high in ranges:
            kinds[low : high + 1] = kind
    kinds[:0x80] = _WORD
    starts = np.flatnonzero(np.diff(kinds, prepend=np.uint8(255)))
    return starts.astype(np.int64), kinds[starts]


_KIND_STARTS, _KINDS = _kind_runs(SEPARATOR_RANGES, CHARACTER_TOKEN_RANGES, CHARACTER_MARK_RANGES)

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
def _kind_of(code_point):
    """Kind (_WORD, _SEPARATOR, _CHARACTER or _MARK) of a non-ASCII code point: the run of _KIND_STARTS holding it."""
    low, high = 0, _KIND_STARTS.size - 1
    while low < high:  # _KIND_STARTS[low] <= code_point < _KIND_STARTS[high + 1]
        middle = (low + high + 1) >> 1
        if _KIND_STARTS[middle] <= code_point:
            low = middle
        else:
            high = middle - 1
    return _KINDS[low]


@njit(int64(READONLY_U8, int64, int64), cache=True)
def _separator_length(data, pos, end):
    """Byte length of the non-ASCII separator code point starting at ``data[pos]``, or 0 if none (an ill-formed
    or overlong sequence is not a separator: its bytes count as word bytes)."""
    code_point, length = _code_point_at(data, pos, end)
    return length if length and _kind_of(code_point) == _SEPARATOR else 0


@njit(inline="always")
def _kind_at(data, pos, end):
    """Kind of the code point starting at ``data[pos]``: _WORD for an ASCII byte, a continuation byte or an
    ill-formed sequence."""
    code_point, length = _code_point_at(data, pos, end)
    return _kind_of(code_point) if length > 0 else _WORD


@njit(inline="always")
def _kind_before(data, pos, text_start, text_end):
    """Kind of the well-formed code point ending just before ``data[pos]``, _WORD if none does (an ASCII byte, an
    ill-formed sequence, or ``pos`` inside a code point)."""
    if data[pos - 1] < 0x80:
        return _WORD
    lead = pos - 1
    while lead > text_start and lead > pos - 4 and data[lead] & 0xC0 == 0x80:
        lead -= 1
    code_point, length = _code_point_at(data, lead, text_end)
    return _kind_of(code_point) if length > 0 and lead + length == pos else _WORD


@njit(inline="always")
def _is_break_byte(data, pos, text_start, text_end):
    """Whether a token starts at the word byte ``data[pos]`` though the byte before it is a word byte too: a
    character token starts at ``pos``, or one ends just before it. Stateless, as :func:`_is_word_byte`: it reads
    the code point at ``pos`` and the one before, so a mark's token never depends on how far back its run began
    (a run of marks after a character joins it; after anything else it is a token of its own)."""
    if pos <= text_start:
        return False
    kind = _kind_at(data, pos, text_end)
    if kind == _CHARACTER:
        return True
    before = _kind_before(data, pos, text_start, text_end)
    # A character or mark before ``pos`` ends a token of its own (a character's, or a run of stray marks) unless a
    # mark continues it; a mark after anything else starts one.
    after_character_or_mark = before == _CHARACTER or before == _MARK
    if kind == _MARK:
        return not after_character_or_mark
    return after_character_or_mark


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


def _character_class(ranges) -> str:
    return "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in ranges)


_SEPARATOR_PATTERN = re.compile(
    "[\\x00-\\x2f\\x3a-\\x40\\x5b-\\x60\\x7b-\\x7f"
    + _character_class(SEPARATOR_RANGES)
    + "]+"
)


_CHARACTER_CLASS = _character_class(CHARACTER_TOKEN_RANGES)
_MARK_CLASS = _character_class(CHARACTER_MARK_RANGES)
_PIECE_PATTERN = re.compile(
    f"[{_CHARACTER_CLASS}][{_MARK_CLASS}]*|[{_MARK_CLASS}]+|[^{_CHARACTER_CLASS}{_MARK_CLASS}]+"
)


def reference_tokens(text: str) -> list[bytes]:
    """The tokenizer in plain Python: split on separators, each character of CHARACTER_TOKEN_RANGES a token of
    its own with the CHARACTER_MARK_RANGES marks after it (other runs of those marks a token too), then
    ASCII-lower-case the UTF-8 bytes."""
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
