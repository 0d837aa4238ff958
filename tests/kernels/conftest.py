"""Seeded text and group builders shared by the kernel tests.

Texts mix capitalised ASCII words, digits, non-ASCII words and every kind of separator the tokenizer
knows (ASCII punctuation, em dashes, curly quotes, no-break and ideographic spaces, a byte-order mark;
with ``scripts``, Thai, Lao, Khmer and Myanmar with their combining marks, and other scripts'
punctuation), and shards are long enough that most texts take the scanner's aligned-word path while the
first and last texts of every buffer take its byte-wise path.
"""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

WORDS = [
    "the", "The", "THE", "model", "Model", "answer", "42", "3rd", "x", "a1b2", "supercalifragilistic",
    "internationalization", "naïve", "café", "Über", "über", "東京", "日本語テキスト", "🙂", "Ελληνικά",
    "ß",
]  # fmt: skip
SEPARATORS = [
    " ", " ", " ", "  ", ", ", ". ", "\n", "\t", "-", "/", "'", "—", "–", "’", "“", "”", "…", "\u00a0",
    "«", "»", "¿", "°", "\u3000", "、", "\ufeff", "\u2028",
]  # fmt: skip
# Added to the above with ``scripts=True`` (kept apart so that the older tests' seeds give the texts they gave):
# Thai, Lao, Khmer, Myanmar (a token per character with its marks), Thai digits, stray Thai marks, kana with a
# combining voiced mark, half-width kana, an emoji with a skin tone, Hebrew with a geresh, Arabic; and other
# scripts' punctuation, mathematical and currency symbols.
SCRIPT_WORDS = [
    "ฉันชอบกินข้าว", "ກິນເຂົ້າ", "ខ្ញុំ", "မြန်မာ", "๒๕๖๗", "\u0e48\u0e49", "か\u3099", "ｶﾞ", "👍🏽", "ג׳ירפה",
    "مرحبا", "人々",
]  # fmt: skip
SCRIPT_SEPARATORS = ["، ", "؟", "।", "×", "÷", "€", "→", "\u1680", "־", "๚", "។", "・"]


def random_text(rng: random.Random, max_words: int = 60, scripts: bool = False) -> str:
    """One response: up to ``max_words`` words joined by random separators, sometimes padded; with ``scripts``,
    drawn from SCRIPT_WORDS and SCRIPT_SEPARATORS too."""
    words = WORDS + SCRIPT_WORDS if scripts else WORDS
    separators = SEPARATORS + SCRIPT_SEPARATORS if scripts else SEPARATORS
    parts = []
    for _ in range(rng.randint(0, max_words)):
        parts.append(rng.choice(words))
        parts.append(rng.choice(separators))
    if parts and rng.random() < 0.5:
        parts.pop()  # end on a word, not a separator
    if rng.random() < 0.2:
        parts.insert(0, rng.choice(separators))
    return "".join(parts)


def random_groups(seed: int, n_groups: int = 40, max_size: int = 7, scripts: bool = False) -> list[list[str]]:
    """Groups of responses with empty groups, single responses, empty strings and duplicates mixed in."""
    rng = random.Random(seed)
    groups = []
    for _ in range(n_groups):
        group = [random_text(rng, scripts=scripts) for _ in range(rng.randint(0, max_size))]
        if group and rng.random() < 0.2:
            group.append(rng.choice(group))  # duplicate response
        if rng.random() < 0.1:
            group.append("")
        groups.append(group)
    return groups


def arrow_form(groups: list[list[str]], large: bool = False) -> tuple[pa.Array, np.ndarray]:
    """The pipeline's form of ``groups``: one Arrow string array plus int64 group offsets."""
    texts = pa.array([text for group in groups for text in group], type=pa.large_string() if large else pa.string())
    offsets = np.zeros(len(groups) + 1, dtype=np.int64)
    np.cumsum([len(group) for group in groups], out=offsets[1:])
    return texts, offsets


@pytest.fixture(params=["list", "arrow", "arrow_large"])
def as_input(request):
    """Turns a list of groups into each accepted input form in turn."""
    if request.param == "list":
        return lambda groups: groups
    return lambda groups: arrow_form(groups, large=request.param == "arrow_large")
