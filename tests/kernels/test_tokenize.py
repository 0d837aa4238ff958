"""kernels.tokenize against its plain-Python reference, the documented token rules, and id stability."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.tokenize import (
    CHARACTER_MARK_RANGES,
    CHARACTER_TOKEN_RANGES,
    SEPARATOR_RANGES,
    UNICODE_VERSION,
    derive_unicode_tables,
    reference_tokens,
    token_id_reference,
    tokenize,
    tokenize_reference,
)
from tests.kernels.conftest import SCRIPT_SEPARATORS, SCRIPT_WORDS, SEPARATORS, WORDS, random_text

REPO_ROOT = Path(__file__).resolve().parents[2]


def ids_of(text: str) -> list[int]:
    token_ids, _ = tokenize([text])
    return token_ids.tolist()


def assert_same_tokens(texts, message: str = "") -> None:
    token_ids, offsets = tokenize(texts)
    expected_ids, expected_offsets = tokenize_reference(texts)
    np.testing.assert_array_equal(offsets, expected_offsets, err_msg=f"token counts differ {message}")
    np.testing.assert_array_equal(token_ids, expected_ids, err_msg=f"token ids differ {message}")


@pytest.mark.parametrize("seed", range(3))
def test_agrees_with_reference_on_random_texts(seed):
    rng = random.Random(seed)
    assert_same_tokens([random_text(rng, max_words=120) for _ in range(200)], f"(seed {seed})")


@pytest.mark.parametrize("large", [False, True], ids=["string", "large_string"])
def test_arrow_input_gives_the_list_result(large):
    texts = [random_text(random.Random(7)) for _ in range(50)]
    by_list = tokenize(texts)
    by_arrow = tokenize(pa.array(texts, type=pa.large_string() if large else pa.string()))
    np.testing.assert_array_equal(by_arrow[0], by_list[0])
    np.testing.assert_array_equal(by_arrow[1], by_list[1])


def test_sliced_arrow_array_reads_only_its_slice():
    texts = [random_text(random.Random(3)) for _ in range(30)]
    token_ids, offsets = tokenize(pa.array(texts)[10:20])
    expected_ids, expected_offsets = tokenize_reference(texts[10:20])
    np.testing.assert_array_equal(offsets, expected_offsets)
    np.testing.assert_array_equal(token_ids, expected_ids)


def test_unaligned_buffer_agrees_with_reference():
    """A data buffer that starts off an 8-byte boundary shifts the aligned word view."""
    texts = [random_text(random.Random(11)) for _ in range(40)]
    encoded = [text.encode() for text in texts]
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum([len(text) for text in encoded], out=offsets[1:])
    storage = np.frombuffer(b"xyz" + b"".join(encoded), dtype=np.uint8)[3:]
    assert storage.ctypes.data % 8 != 0
    array = pa.LargeStringArray.from_buffers(len(texts), pa.py_buffer(offsets), pa.py_buffer(storage))
    token_ids, _ = tokenize(array)
    np.testing.assert_array_equal(token_ids, tokenize_reference(texts)[0])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.lists(st.one_of(st.characters(codec="utf-8"), st.sampled_from(SEPARATORS + WORDS)), max_size=80).map("".join), max_size=12
    )
)
def test_agrees_with_reference_on_any_unicode(texts):
    assert_same_tokens(texts)
    # Between long neighbours every text takes the aligned-word path rather than the byte-wise one.
    filler = " ".join(WORDS) * 3
    assert_same_tokens([filler, *texts, filler])


def test_empty_input_gives_no_tokens():
    token_ids, offsets = tokenize([])
    assert token_ids.dtype == np.uint64 and token_ids.size == 0
    np.testing.assert_array_equal(offsets, [0])


def test_empty_and_none_texts_have_no_tokens():
    _, offsets = tokenize(["", None, "word", "  ...  "])
    np.testing.assert_array_equal(offsets, [0, 0, 0, 1, 1])


def test_ascii_is_lower_cased():
    assert ids_of("Hello HELLO hello") == ids_of("hello") * 3


def test_non_ascii_is_not_case_folded():
    upper, lower = ids_of("Über über")
    assert upper != lower


@pytest.mark.parametrize("separator", ["—", "’", "\u00a0", "…", "\u3000", "\ufeff", "«", "-", "'"])
def test_punctuation_separates_tokens(separator):
    assert ids_of(f"well{separator}known") == ids_of("well known")


def test_non_ascii_letters_stay_inside_words():
    assert ids_of("naïve café") == [token_id_reference("naïve".encode()), token_id_reference("café".encode())]


@pytest.mark.parametrize("separator", ["，", "！", "？", "：", "；", "（", "）", "､", "｡"])
def test_full_width_punctuation_separates_tokens(separator):
    # Chinese and Japanese write their commas full-width: "我喜欢苹果，也喜欢香蕉" was one token.
    assert ids_of(f"东京{separator}大阪") == ids_of("东京 大阪")


@pytest.mark.parametrize("word", ["5µm", "m²", "nº", "co\u00adoperate", "می\u200cخواهم", "👨\u200d👩\u200d👧",
                                  "word\u2060joiner", "1½"])
def test_letters_digits_and_joiners_beyond_ascii_stay_inside_their_word(word):
    # µ ² º are letters and digits, the soft hyphen, ZWNJ, ZWJ and word joiner mark no break: each split its word.
    assert ids_of(word) == [token_id_reference(word.lower().encode() if word.isascii() else word.encode())]


def test_token_ids_are_pinned():
    """The id function is part of the on-disk format: these values must never change."""
    assert token_id_reference(b"hello") == 0x09602D080F4FB275
    assert token_id_reference(b"internationalization") == 0xD7087250436A7371
    assert token_id_reference("über".encode()) == 0x4818078849C324A3
    assert ids_of("Hello") == [0x09602D080F4FB275]


def test_invalid_utf8_bytes_are_word_bytes():
    data = b"ab\xffcd \xe2\x80 ef"
    array = pa.LargeStringArray.from_buffers(
        1, pa.py_buffer(np.array([0, len(data)], dtype=np.int64)), pa.py_buffer(data)
    )
    token_ids, _ = tokenize(array)
    assert token_ids.tolist() == [
        token_id_reference(b"ab\xffcd"),
        token_id_reference(b"\xe2\x80"),
        token_id_reference(b"ef"),
    ]


def test_reference_tokens_split_and_lower_case():
    assert reference_tokens("Don’t STOP—now, 3rd!") == [b"don", b"t", b"stop", b"now", b"3rd"]


def test_ids_are_the_same_in_another_process():
    texts = [random_text(random.Random(5)) for _ in range(20)]
    script = (
        "import sys, json; from kernels.tokenize import tokenize; "
        "print(json.dumps(tokenize(json.loads(sys.stdin.read()))[0].tolist()))"
    )
    import json

    environment = {**os.environ, "PYTHONHASHSEED": "12345"}
    completed = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        env=environment,
    )
    assert json.loads(completed.stdout) == tokenize(texts)[0].tolist()


@pytest.mark.parametrize("text, tokens", [
    ("我喜欢苹果，也喜欢香蕉。", ["我", "喜", "欢", "苹", "果", "也", "喜", "欢", "香", "蕉"]),
    ("abc中def", ["abc", "中", "def"]),
    ("ひらがなとカタカナ", list("ひらがなとカタカナ")),
    ("x𠀀y", ["x", "𠀀", "y"]),  # a 4-byte ideograph (Extension B)
    ("한국어 단어", ["한국어", "단어"]),  # Korean writes spaces between words: Hangul stays in words
])
def test_each_chinese_or_japanese_character_is_a_token(text, tokens):
    # Without spaces between words a whole clause was one token: two sentences sharing all but one word had
    # Jaccard 0. One token per character, as sacrebleu's Chinese tokenizer counts them.
    assert ids_of(text) == [token_id_reference(t.lower().encode()) for t in tokens]


def test_character_tokens_agree_with_the_reference_wherever_a_block_edge_falls():
    # The fast path reads 64-byte blocks of ASCII without decoding: an ideograph that ends a block must still end
    # the token before the next block's first letter.
    texts = ["x" * 200] + ["a" * k + "中" + "b" * 80 + "东京" + "c" * (k % 7) for k in range(140)] + ["y" * 200]
    token_ids, offsets = tokenize(texts)
    expected_ids, expected_offsets = tokenize_reference(texts)
    np.testing.assert_array_equal(offsets, expected_offsets)
    np.testing.assert_array_equal(token_ids, expected_ids)


def test_the_frozen_tables_are_the_unicodedata_derivation():
    # Frozen so that ids do not change with the Python version's Unicode data; the rules live in the derivation.
    import unicodedata

    if unicodedata.unidata_version != UNICODE_VERSION:
        pytest.skip(f"tables derived from Unicode {UNICODE_VERSION}, this Python has {unicodedata.unidata_version}")
    assert derive_unicode_tables() == (SEPARATOR_RANGES, CHARACTER_TOKEN_RANGES, CHARACTER_MARK_RANGES)


def test_the_tables_are_sorted_disjoint_and_as_the_scanner_assumes():
    tables = {"separator": SEPARATOR_RANGES, "character": CHARACTER_TOKEN_RANGES, "mark": CHARACTER_MARK_RANGES}
    for name, ranges in tables.items():
        assert list(ranges) == sorted(ranges) and all(0x80 <= low <= high <= 0x10FFFF for low, high in ranges), name
        assert all(high < next_low - 1 for (_, high), (next_low, _) in zip(ranges, ranges[1:])), f"{name}: unmerged"
    every_range = sorted((low, high, name) for name, ranges in tables.items() for low, high in ranges)
    for (_, high, name), (next_low, _, next_name) in zip(every_range, every_range[1:]):
        assert high < next_low, f"U+{next_low:04X} is both {name} and {next_name}"
    # The scanner looks for character-token edges only at 3- and 4-byte code points.
    assert min(low for low, _ in CHARACTER_TOKEN_RANGES + CHARACTER_MARK_RANGES) >= 0x800


@pytest.mark.parametrize("separator", [
    "\u060c", "\u061f", "\u0964", "\u0965", "\u05be", "\u1680", "\u037e", "\u00d7", "\u00f7", "\u20ac", "\u2192",
    "\u2212", "\u1361", "\u0f0b", "\u3001", "\u30fb", "\u0e5a", "\u17d4", "\u104b", "\u061c", "\u2e50",
])  # fmt: skip
def test_punctuation_and_symbols_of_every_script_separate_tokens(separator):
    # Only ASCII, Latin-1 and a few blocks were separators: "مرحبا،" kept its comma, "hello\u1680world" and "3×4"
    # were one token each.
    assert ids_of(f"well{separator}known") == ids_of("well known")
    assert reference_tokens(f"well{separator}known") == [b"well", b"known"]


@pytest.mark.parametrize("word", ["👍🏽", "ג׳ירפה", "צה״ל", "ինչո՞ւ", "™x", "a\u00adb", "۱۲۳", "ª", "\U000e0067x"])
def test_emoji_modifiers_in_word_punctuation_and_other_symbols_stay_in_their_word(word):
    assert ids_of(word) == [token_id_reference(word.encode())]


@pytest.mark.parametrize("text, tokens", [
    ("ฉันชอบกินข้าว", ["ฉั", "น", "ช", "อ", "บ", "กิ", "น", "ข้", "า", "ว"]),  # Thai: vowel and tone marks stay
    ("ทำ", ["ทำ"]),  # SARA AM extends its consonant, as in Unicode's grapheme clusters
    ("ກິນເຂົ້າ", ["ກິ", "ນ", "ເ", "ຂົ້", "າ"]),  # Lao
    ("ខ្ញុំ", ["ខ្", "ញុំ"]),  # Khmer: the coeng stays with the consonant before it
    ("မြန်မာ", ["မြ", "န်", "မာ"]),  # Myanmar: medial and asat stay
    ("ปี ๒๕๖๗", ["ปี", "๒๕๖๗"]),  # digits run together, as ASCII digits do
    ("a\u0e48b ก\u0e48\u0e48x", ["a", "\u0e48", "b", "ก\u0e48\u0e48", "x"]),  # alone after a non-character
    ("か\u3099き ｶﾞ", ["か\u3099", "き", "ｶﾞ"]),  # kana keep their combining voiced-sound marks
    ("人々は〆", ["人", "々", "は", "〆"]),  # the iteration mark was a separator
    ("ก๚ข", ["ก", "ข"]),  # Thai punctuation separates
])  # fmt: skip
def test_each_thai_lao_khmer_or_myanmar_grapheme_is_a_token(text, tokens):
    # A clause of these scripts (no spaces between words) was one token: two differing by a word had Jaccard 0.
    assert ids_of(text) == [token_id_reference(t.lower().encode()) for t in tokens]
    assert reference_tokens(text) == [t.lower().encode() for t in tokens]


def test_graphemes_agree_with_the_reference_wherever_a_block_edge_falls():
    # A mark's token depends on the code point before it, which may lie in the previous 64-byte block.
    texts = ["x" * 200] + [
        "a" * k + "กิ" + "b" * (60 - k % 60) + "\u0e48\u0e49c" + "ข้" * (k % 5) + "ด" + "e" * (k % 7)
        for k in range(140)
    ] + ["y" * 200]
    assert_same_tokens(texts)


@pytest.mark.parametrize("seed", range(3))
def test_agrees_with_reference_on_random_texts_of_every_script(seed):
    rng = random.Random(seed)
    assert_same_tokens([random_text(rng, max_words=120, scripts=True) for _ in range(200)], f"(seed {seed})")


_GRAPHEME_ALPHABET = "ab1 ,กขิ่้ำ๒ខ្ញុំမြ်中か\u3099ｶﾞ،\u1680×\u200d🙂🏽"


@settings(max_examples=200, deadline=None)
@given(st.lists(
    st.lists(
        st.one_of(st.text(alphabet=_GRAPHEME_ALPHABET, max_size=4), st.sampled_from(SCRIPT_WORDS + SCRIPT_SEPARATORS)),
        max_size=60,
    ).map("".join),
    max_size=10,
))  # fmt: skip
def test_agrees_with_reference_on_characters_marks_and_separators(texts):
    assert_same_tokens(texts)
    filler = " ".join(WORDS) * 3
    assert_same_tokens([filler, *texts, filler])
