"""Parsing model outputs: one pattern per kind of answer, and None (recorded as "unparsed") when it does not match.

Model output is untrusted text: it is matched with regular expressions and never evaluated. Where Inspect maps an
unparsed grade to INCORRECT, we return None and the caller records the raw text beside it.
"""

from __future__ import annotations

import math
import re
from typing import Mapping

from actors.base import logsumexp
from engine.method.taxonomy import CATEGORIES, LETTERS

# ---------------------------------------------------------------------------------------------------------------
# Classification letters.

# What a classification that names no category of the taxonomy is recorded as ("N" in the answer): the prompt is
# then sampled with the general wording and judged with the generic criterion (the paper: the taxonomy is not
# exhaustive; outside it the model resumes its default behaviour). Distinct from an unparsed answer (None).
NONE_OF_THESE = "none"
_NONE_ANSWER = re.compile(r"^[\W_]*(?:category\s*[:\-]?\s*)?\(?N(?:$|[.):,\-\]*]|[ \t]*\n|\s+(?![a-z]))"
                          r"|^[\W_]*none of (?:these|the above)", re.IGNORECASE)

# A letter that stands alone at the start: "G", "G.", "(G)", "G: Creative", "Category: G". A capital followed by a
# space and a lower-case word is an article or a word ("A story…"), not an answer.
_LEAD_LETTER = re.compile(r"^[\W_]*(?:category\s*[:\-]?\s*)?\(?([A-H])(?:$|[.):,\-\]*]|[ \t]*\n|\s+(?![a-z]))",
                          re.IGNORECASE)
_LABELLED_LETTER = re.compile(r"\b(?i:category|answer|letter)\s*(?i:is|:|=)?\s*[(*]*([A-H])\b")


def parse_category(raw: str) -> str | None:
    """The category letter a classifier answered, NONE_OF_THESE for "N" / "None of these", or None.

    Accepts, in order: a letter standing alone at the start ("G", "G.", "(G)", "Category: G", "G. Creative
    writing"); "N" or "None of these" at the start; a labelled capital letter anywhere ("The category is G",
    "Answer: D"); the name of exactly one category ("Creative writing"). Anything else is unparsed.
    """
    text = raw.strip()
    if _NONE_ANSWER.match(text):
        return NONE_OF_THESE
    m = _LEAD_LETTER.match(text)
    if m and (m.group(1).isupper() or text[: m.start(1)].lower().strip("( ").startswith("category")):
        return m.group(1).upper()
    m = _LABELLED_LETTER.search(text)
    if m:
        return m.group(1)
    lowered = text.lower()
    named = [c.letter for c in CATEGORIES.values() if c.name.lower() in lowered]
    return named[0] if len(named) == 1 else None


# ---------------------------------------------------------------------------------------------------------------
# System-prompt sampling: n responses in one completion.

# Unambiguous on purpose: whitespace is only allowed between tokens that cannot themselves be whitespace, so a
# long run of spaces is scanned in linear time (two adjacent `[ \t]*` made a line of 20k spaces take 6 s).
_HEADER_LINE = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*+[ \t]*)?Response[ \t]*(\d+)(?:[ \t]*\*+)?(?:[ \t]*[:.)\-])?(?:[ \t]*\*+)?[ \t]*$",
    re.IGNORECASE | re.MULTILINE)
_INLINE = re.compile(r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*+[ \t]*)?Response[ \t]*(\d+)[ \t]*[:.)\-](?:\*+)?[ \t]*",
                     re.IGNORECASE | re.MULTILINE)
_NUMBERED = re.compile(r"^[ \t]*(\d+)[.)][ \t]+", re.MULTILINE)

# How a system-prompt completion may be split, by parse mode: "strict" accepts the asked-for "### Response k"
# headers and the inline "Response k:" form only; "lenient" also accepts a bare numbered list "1. … 2. …", which
# also matches one answer written as numbered steps — so it can turn one response into n.
PARSE_MODES = ("strict", "lenient")


def split_responses(raw: str, n: int, mode: str = "strict") -> tuple[list[str], str | None]:
    """Split one completion holding several responses into the responses, in order (at most n).

    Args:
        raw: the completion.
        n: how many responses were asked for.
        mode: "strict" or "lenient" (PARSE_MODES).

    Returns:
        (responses, how they were found: "headers", "inline", "numbered", or None when nothing matched). Text
        before the first mark is dropped, empty responses are dropped; fewer than n is a short parse, which the
        caller records. Only a run of marks numbered 1, 2, 3… splits, so a list inside a response stays whole.
    """
    if mode not in PARSE_MODES:
        raise ValueError(f"parse mode must be one of {PARSE_MODES}, got {mode!r}")
    patterns = [("headers", _HEADER_LINE), ("inline", _INLINE)]
    if mode == "lenient":
        patterns.append(("numbered", _NUMBERED))
    for found, pattern in patterns:
        marks = _consecutive_from_one(list(pattern.finditer(raw)))
        if marks:
            parts = []
            for k, m in enumerate(marks):
                end = marks[k + 1].start() if k + 1 < len(marks) else len(raw)
                body = raw[m.end():end].strip()
                if body:
                    parts.append(body)
            return parts[:n], found
    return [], None


def _consecutive_from_one(marks: list[re.Match]) -> list[re.Match]:
    """Keep the run of marks numbered 1, 2, 3… (a list inside a response must not split it)."""
    kept: list[re.Match] = []
    for m in marks:
        number = int(next(g for g in m.groups() if g is not None))
        if number == len(kept) + 1:
            kept.append(m)
    return kept


# ---------------------------------------------------------------------------------------------------------------
# YES/NO verdicts.

_YES = {"yes", "y", "true", "equivalent", "same"}
_NO = {"no", "n", "false", "different", "not"}
_FIRST_WORD = re.compile(r"[A-Za-z]+")


def parse_verdict(raw: str) -> bool | None:
    """True for YES (equivalent), False for NO, None when the first word is neither."""
    m = _FIRST_WORD.search(raw)
    if not m:
        return None
    word = m.group(0).lower()
    if word in _YES:
        return True
    if word in _NO:
        return False
    return None


def p_yes_from_logprobs(top_logprobs: Mapping[str, float] | None) -> float | None:
    """P(YES) normalised over the YES and NO variants among the first token's top log-probs.

    Every token whose stripped, lower-cased text is a YES word ("Yes", " YES", "yes"…) counts for YES, likewise
    for NO. Returns None when neither appears (the verdict then falls back to the parsed text).
    """
    if not top_logprobs:
        return None
    yes, no = [], []
    for token, lp in top_logprobs.items():
        word = token.strip().lower()
        if word in ("yes", "y"):
            yes.append(lp)
        elif word in ("no", "n"):
            no.append(lp)
    if not yes and not no:
        return None
    ly, ln = logsumexp(yes), logsumexp(no)
    top = max(ly, ln)
    py, pn = math.exp(ly - top), math.exp(ln - top)
    return py / (py + pn)


# ---------------------------------------------------------------------------------------------------------------
# Checklists and grades.

_ITEM = re.compile(r"^[ \t]*(?:\d+[.)]|[-*•])[ \t]+(.+?)[ \t]*$", re.MULTILINE)


def parse_checklist(raw: str, *, lo: int = 3, hi: int = 5) -> list[str] | None:
    """The criteria of a numbered or bulleted list: the first `hi` items, or None if fewer than `lo`."""
    items = [m.group(1).strip() for m in _ITEM.finditer(raw) if m.group(1).strip()]
    if len(items) < lo:
        return None
    return items[:hi]


_GRADE = re.compile(r"(?<![\d.])([1-5])(?!\d|\.\d)")


def parse_grade(raw: str) -> int | None:
    """The first standalone digit 1–5 (not part of a longer number), or None."""
    m = _GRADE.search(raw)
    return int(m.group(1)) if m else None


def grade_logprobs(top_logprobs: Mapping[str, float] | None) -> dict[int, float]:
    """Each grade 1–5's log-probability among the first token's top tokens: the variants of a digit ("4", " 4")
    are one grade, so their probabilities add (log-sum-exp)."""
    mass: dict[int, list[float]] = {}
    for token, lp in (top_logprobs or {}).items():
        t = token.strip()
        if t in {"1", "2", "3", "4", "5"}:
            mass.setdefault(int(t), []).append(lp)
    return {g: logsumexp(lps) for g, lps in mass.items()}


def expected_grade(top_logprobs: Mapping[str, float] | None) -> float | None:
    """Expected grade under the first token's distribution over "1".."5", renormalised; None if none appear."""
    mass = grade_logprobs(top_logprobs)
    if not mass:
        return None
    grades = sorted(mass)
    top = max(mass.values())
    weights = [math.exp(mass[g] - top) for g in grades]
    return sum(g * w for g, w in zip(grades, weights)) / sum(weights)


_SHORT = re.compile(r"\b([ABC])\b")


def parse_short_answer_grade(raw: str) -> str | None:
    """SimpleQA-style grade: "correct", "incorrect" or "not_attempted" from A/B/C (or the words), else None."""
    text = raw.strip()
    m = _SHORT.search(text[:20])
    if m:
        return {"A": "correct", "B": "incorrect", "C": "not_attempted"}[m.group(1)]
    lowered = text.lower()
    for word, grade in (("not attempted", "not_attempted"), ("incorrect", "incorrect"), ("correct", "correct")):
        if lowered.startswith(word):
            return grade
    return None


__all__ = [
    "LETTERS",
    "parse_category",
    "split_responses",
    "parse_verdict",
    "p_yes_from_logprobs",
    "parse_checklist",
    "parse_grade",
    "expected_grade",
    "parse_short_answer_grade",
]
