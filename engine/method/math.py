"""Accuracy on the verifiable sources: MATH-500 answers checked with math-verify, and a cheap SimpleQA cross-check.

MATH-500: the model's final answer is extracted from its response (the last ``\\boxed{...}``, none when it is cut
off; else the last "answer is X" / "Answer: X"; else the last number) and compared with the gold answer by
math-verify, which parses LaTeX into SymPy with its own ANTLR grammar. We never evaluate model text ourselves, and
we only ask math-verify for LaTeX extraction, never for its plain-expression extraction, which hands text to SymPy's
``parse_expr`` (an ``eval``).

Model output is untrusted, and SymPy can be made to run for ever or fill memory (``9^{9^{9^{9}}}`` is a legal
LaTeX number). So, in layers:
  1. The extracted answer is screened by text rules before any parsing: at most `MAX_ANSWER_CHARS` characters,
     brackets at most `MAX_BRACE_DEPTH` deep, no exponent that may exceed `MAX_EXPONENT` (a big literal, a power
     tower such as ``9^{9^{9}}``, a power of a power such as ``(10^9)^{99999}``, a chain ``10**10**10``), no
     factorial of a literal above `MAX_FACTORIAL`.
  2. The check runs in a separate worker process (one per process that checks, started on first use, kept for
     later checks). There math-verify's own signal-based timeouts work (they need the main thread, which Ray
     actors' UDF threads are not), and its address space is capped (`WORKER_MEMORY_BYTES`), so a runaway
     allocation fails fast instead of swapping the machine.
  3. The caller waits at most `timeout_s` wall-clock seconds; past that, the worker is killed (SIGKILL works where
     a signal handler cannot interrupt a long C-level big-integer operation) and restarted on the next check.
A check that could not be completed reports ``correct=None`` with the reason, never a guess.

SimpleQA is graded by an LLM with `taxonomy.SHORT_ANSWER_GRADER`; `short_answer_exact` is only a cheap,
deterministic cross-check of that grader (it misses paraphrases and can be fooled by a response that lists many
candidates).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import select
import string
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

# Only the tail is searched for the final answer: it comes last, and it bounds the work on a runaway response.
MAX_RESPONSE_CHARS = 200_000
# MATH-500's longest gold answer has 53 characters; an "answer" 6x longer is a derivation, not an answer.
MAX_ANSWER_CHARS = 300
MAX_BRACE_DEPTH = 30
# 99999^99999 has ~500k digits and is computed in milliseconds; beyond this the cost grows without bound.
MAX_EXPONENT = 100_000
MAX_FACTORIAL = 10_000
# Earlier boxes that may be parts of the last one's answer ("$\boxed{2}$ and $\boxed{-3}$"), counted from the end.
MAX_BOXED_CANDIDATES = 20
DEFAULT_TIMEOUT_S = 10.0
# Seconds the worker gets to import math-verify and SymPy (not counted against a check's timeout).
WORKER_STARTUP_S = 60.0
# The worker peaks near 60 MB (measured); the cap leaves room for honest big expressions and stops runaway ones.
WORKER_MEMORY_BYTES = 1 << 30
MAX_REPLY_BYTES = 1 << 20  # a verdict is a short JSON line


@dataclass(frozen=True)
class MathCheck:
    """The outcome of checking one response against a gold answer.

    Attributes:
        correct: True or False — a response with no final answer is incorrect, as MATH-500 counts it — or None
            when an answer was found but could not be checked (rejected by the screen, parse failure, timeout).
        extracted: the final answer taken from the response, or None when none was found.
        reason: how the verdict was reached or why there is none, in words.
        answered: whether the response gave a final answer at all (the report gives the no-answer rate).
    """

    correct: bool | None
    extracted: str | None
    reason: str
    answered: bool = True


# ---------------------------------------------------------------------------------------------------------------
# Extracting the final answer.

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# Where an answer line's answer begins; a line may say it twice ("Final Answer: The final answer is $5$."), and the
# last of its heads that is followed by a readable answer is the one read.
# (Its optional second colon is grouped with the spaces before it: "\s*:?\s*" backtracked quadratically on a line
# ending in "answer:" and a long run of spaces.)
# The answer must begin with something other than a colon: "answer is:" ending its line (the answer on the next)
# matched without its colon, and the colon was read as the answer, and graded wrong.
_ANSWER_HEAD = re.compile(r"(?i)\b(?:final\s+answer|answer)\s*(?:is\b|:|=)(?:\s*:)?\s*(?=[^\s:])")
# A word between the head and the answer that says nothing of it ("the answer is indeed 12", "is then $12$",
# "option C"): kept, math-verify read it as a product of variables (i·n·d·e·e·d·12) and a right answer was wrong.
_FILLER = re.compile(r"(?i)^(?:indeed|exactly|simply|still|then|thus|therefore|hence|just|now|also|clearly|actually|"
                     r"option|choice)\b[\s,:]*")
# An answer said to be near a value is no final answer to grade: unreadable, not wrong (nor right by its number).
_HEDGE = re.compile(r"(?i)^(?:approximately|approx\.?|about|around|roughly|nearly|almost|close\s+to)\b")
# A minus after a digit, a letter or ")" is a hyphen or a subtraction, not a sign: "2020-2021" ends in 2021, not -2021.
_NUMBER = re.compile(r"(?:(?<![0-9A-Za-z)])-)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
# Markdown emphasis and the punctuation that ends a sentence are never part of an answer.
_EDGE = " \t*.,;"


def _group_end(text: str, open_index: int, limit: int) -> int | None:
    """Index of the brace closing the one at `open_index`, or None when it is not closed within `limit` characters.

    Escaped braces (``\\{``, ``\\}``, LaTeX set braces) do not count. The limit keeps the scan linear overall even
    with thousands of unclosed ``\\boxed{``.
    """
    depth = 0
    i = open_index
    stop = min(len(text), open_index + limit + 2)
    while i < stop:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _strip_delimiters(answer: str) -> str:
    answer = answer.lstrip(" \t*").rstrip(_EDGE)
    changed = True
    while changed:
        changed = False
        for left, right in _DELIMITERS:
            if len(answer) >= len(left) + len(right) and answer.startswith(left) and answer.endswith(right):
                answer = answer[len(left): len(answer) - len(right)].lstrip(" \t*").rstrip(_EDGE)
                changed = True
    return answer


# An answer that was given but cannot be read (prose after "answer is", a number inside an expression): not
# checked — neither right nor wrong, and not "no answer".
UNREADABLE = "unreadable"
# Bump when the final answer is read differently; the math checks' shards key on it (not the grader's: checked again
# free, no model call). 2: "answer is:" ending its line, a filler word before the answer ("indeed 12"), a hedged one
# ("approximately 12": unreadable).
MATH_EXTRACTION_VERSION = "2"
# Where a formula may open: $$…$$, $…$ (one line, not an escaped \$), \(…\), \[…\].
_SPAN_OPENER = re.compile(r"\$|\\[(\[]")


class _Spans:
    """The formulas of a text, found as a lazy regex would find them (at each opener, the nearest closer after a
    body of at least one character; a $…$ on one line, its body without "$", its closer not an escaped \\$), in linear
    time. The regex searched to the end of the text for the closer of every opener it tried: 100k "\\(" without a
    "\\)" took five minutes. Here the last search for each closer is kept and reused while it still answers."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._found: dict[str, tuple[int, int]] = {}  # closer -> (searched from, found at or -1)

    def _next(self, closer: str, start: int) -> int:
        known = self._found.get(closer)
        if known is not None and known[0] <= start and (known[1] < 0 or start <= known[1]):
            return known[1]
        at = self.text.find(closer, start)
        self._found[closer] = (start, at)
        return at

    def at(self, p: int) -> int | None:
        """The end of the formula that opens at `p`, or None when none does (the regex's alternatives in order)."""
        text = self.text
        if text.startswith("$$", p):
            close = self._next("$$", p + 3)  # the body has at least one character
            return None if close < 0 else close + 2
        if text.startswith("$", p):
            if (p > 0 and text[p - 1] in "\\$") or p + 1 >= len(text):
                return None
            close = self._next("$", p + 1)  # text[p + 1] is no "$" (that opened "$$" above)
            if close < 0 or text[close - 1] == "\\" or text.find("\n", p + 1, close) >= 0:
                return None  # the body holds no "$" and no line break, so an escaped "$" ends it unclosed
            return close + 1
        for opener, closer in (("\\(", "\\)"), ("\\[", "\\]")):
            if text.startswith(opener, p):
                close = self._next(closer, p + 3)
                return None if close < 0 else close + 2
        return None

    def after(self, pos: int = 0) -> Iterator[tuple[int, int]]:
        """The formulas from `pos` on, as (start, end), left to right without overlap."""
        while True:
            m = _SPAN_OPENER.search(self.text, pos)
            if m is None:
                return
            end = self.at(m.start())
            if end is None:
                pos = m.start() + 1
            else:
                yield m.start(), end
                pos = end


# Where the answer on an answer line ends and prose begins: an aside in brackets (opening on a word: "(3, 4)" and
# "(\sqrt{3} + 1)" are the answer's), a conjunction ("and" or "or" before another number or formula joins the
# answer's parts: "1, 2, and 3"), a dash, the end of a sentence (a full stop not followed by a digit), a semicolon,
# or a comma before a word.
_MORE_ANSWER = r"(?!\s*[-+\d$\\(])"
# The spaces before an aside, a conjunction or a dash are matched from their first only ("(?<!\s)"): tried from each
# space of a long run, "\s+" backtracked quadratically (20k spaces took 37 s). The cut found is the same, since it
# starts where the run does.
_PROSE_START = re.compile(r"(?<!\s)\s+(?:\((?=[A-Za-z]{2}|[A-Za-z]\.)|(?:because|since|as|which|where|so|but|for|"
                          r"when|if|with|from)\b|and\b" + _MORE_ANSWER + r"|[-\u2013\u2014]{1,2}\s+(?=[A-Za-z]{2}))"
                          r"|\.(?!\d)(?:\s|$)|;|,\s+(?!(?:and|or)\b\s*[-+\d$\\(])(?=[a-z]{3,})", re.I)
# What may stand between the parts of one answer given in pieces — "$\boxed{2}$ and $\boxed{-3}$", "$x = 2$ or
# $x = 3$", "1, 2, and 3": commas, "and", "or", spaces and the formulas' own delimiters (math-verify reads such a
# text as the set of its parts; one part alone, the answer was graded wrong).
_JOINER = re.compile(r"(?i)(?:[\s$,;]|\\quad|\\text\{\s*(?:and|or)\s*\}|\band\b|\bor\b)*")
_CONNECTIVE = re.compile(r"(?i),?\s+(?:and|or)\s+|\s*,\s*")
_EQUATION = re.compile(r"^\s*([A-Za-z])\s*=\s*(.+)$", re.S)
# An answer cut off before its operand ("x =" of "x = (3, 4)" cut at its bracket) is no answer to grade.
_DANGLING = ("=", "+", "-", "*", "/", "^", "\\")
_WORDS = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}\s+[A-Za-z]{3,}")
# What may stand between an answer head and a head that restates it.
_RESTATED = re.compile(r"(?i)\s*(?:the|my|our|so|thus|hence|therefore)?\s*")
# "Checking the answer: 3 works", "To verify the answer, …": a line that tests a candidate gives no final answer.
_CHECKING = re.compile(r"(?i)\b(?:check|checking|verify|verifying|test|testing|plug|plugging)\b")


def _joined(parts: list[str]) -> str:
    """One answer of its parts: "2, -3"; equations of one variable give their values ("x = 2", "x = 3" → "2, 3")."""
    if len(parts) == 1:
        return parts[0]
    equations = [_EQUATION.match(p) for p in parts]
    if all(equations) and len({m.group(1) for m in equations}) == 1:  # type: ignore[union-attr]
        parts = [m.group(2).strip() for m in equations]  # type: ignore[union-attr]
    return ", ".join(parts)


def _formulas_from(text: str, first_end: int) -> list[str]:
    """The formula text[:first_end] and those after it joined to it by connectives only ("$2$ and $3$")."""
    parts, end = [_strip_delimiters(text[:first_end])], first_end
    for start, following_end in _Spans(text).after(end):
        if not _JOINER.fullmatch(text, end, start):
            break
        parts.append(_strip_delimiters(text[start:following_end]))
        end = following_end
    return parts


def _answer_of_line(rest: str) -> str | None:
    """The answer after "answer is" / "Answer:": its first formula when it opens with one (with the formulas joined
    to it: "$2$ and $3$"), else the text up to where prose begins; None when words remain that are no answer ("12
    apples and 3 pears"), or when what is left ends in an operator."""
    rest = _FILLER.sub("", rest.strip().lstrip(" \t*:")).lstrip(" \t*")
    if _HEDGE.match(rest):
        return None
    first_end = _Spans(rest).at(0)
    if first_end is not None:
        return _joined(_formulas_from(rest, first_end))
    cut = _PROSE_START.search(rest)
    answer = _strip_delimiters(rest[: cut.start()] if cut else rest)
    if len(answer) > MAX_ANSWER_CHARS:
        # Too long to be an answer: the screen rejects it (not checked). The rules below would only decide how it
        # cannot be read, at a cost that grows faster than its length.
        return answer
    if answer.endswith(_DANGLING):
        return None
    if all(c.isascii() and not c.isalnum() for c in answer):  # punctuation alone ("**:**"): the answer is elsewhere
        return ""
    text_only = re.sub(r"\\text\{[^}]*\}|\\[A-Za-z]+", " ", answer)
    if _WORDS.search(text_only):
        return None
    return _joined([p for p in _CONNECTIVE.split(answer) if p]) if re.search(r"(?i)\b(?:and|or)\b", answer) \
        else answer


def _in_tuple(text: str, start: int, end: int) -> bool:
    """Whether the number at text[start:end] is an entry of a bracketed tuple or list on its line: "(1,500)" is a
    point, whose last number read as a number was 1500."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    depth = 0
    for i in range(start - 1, line_start - 1, -1):
        if text[i] in ")]":
            depth += 1
        elif text[i] in "([":
            if depth:
                depth -= 1
                continue
            closing = re.search(r"[)\]]", text[end:line_end])
            inner = text[i + 1: end + (closing.start() if closing else line_end - end)]
            return "," in inner
    return False


def _inside_latex(text: str, start: int) -> bool:
    """Whether the number at `start` sits in a LaTeX argument or exponent: right after `{`, `^` or `_`, or inside
    braces opened within the 40 characters before it."""
    before = text[max(0, start - 40): start]
    return before.endswith(("{", "^", "_")) or before.count("{") > before.count("}")


def extract_final_answer(response: str) -> tuple[str | None, str]:
    """The final answer a response gives, and how it was found.

    Order: the last ``\\boxed{...}`` (or ``\\fbox{...}``); else the last line saying "answer is X" / "Answer: X" /
    "final answer: X" (X with surrounding $…$ and trailing punctuation removed); else the last formula or number
    (integer, decimal, fraction a/b, thousands with commas). Only the last box counts: when its braces never close
    it was cut off, and the response gives no answer (an earlier box was an intermediate result, and the numbers
    around it are not its answer); when it closes beyond `MAX_ANSWER_CHARS` its answer is unreadable.

    Args:
        response: the model's response (untrusted; only its last `MAX_RESPONSE_CHARS` are searched).

    Returns:
        (answer or None, a short description: "boxed", "answer line", "last number", or why none was found).
    """
    text = _CONTROL.sub("", response[-MAX_RESPONSE_CHARS:])
    boxes = [(m.start(), m.end() - 1) for m in _BOXED.finditer(text)][-MAX_BOXED_CANDIDATES:]
    if boxes:
        last_start, last_open = boxes[-1]
        # Scanned to its real end (once, so linear): a box that closes far away is an answer too long to read, not
        # a cut-off one, and it is not passed over for an earlier box.
        end = _group_end(text, last_open, len(text))
        if end is None:
            return None, "no complete \\boxed{...}: the last one is cut off (its braces do not balance)"
        parts = [text[last_open + 1: end].strip()]
        if len(parts[0]) > MAX_ANSWER_CHARS:
            return None, f"{UNREADABLE}: the last \\boxed{{...}} is longer than {MAX_ANSWER_CHARS} characters"
        # Boxes joined to the last by connectives only are the answer's other parts ("the solutions are
        # $\boxed{2}$ and $\boxed{-3}$"); a box with words between is an earlier result ("First \boxed{1},
        # then \boxed{…}").
        later = last_start
        for start, open_index in reversed(boxes[:-1]):
            earlier_end = _group_end(text, open_index, MAX_ANSWER_CHARS)
            if earlier_end is None or earlier_end >= later or \
                    not _JOINER.fullmatch(text, earlier_end + 1, later):
                break
            parts.insert(0, text[open_index + 1: earlier_end].strip())
            later = start
        return _joined(parts), "boxed"
    for line in reversed(text.splitlines()):
        # A head after a word that tests a candidate ("checking") is no answer. One search per line: searching the
        # text before each head was quadratic on a line of many heads ("answer: x " * 8000 took 78 s). A check word
        # ends before a head exactly when the line's first one does (both are whole words).
        check = _CHECKING.search(line)
        checked_from = check.end() if check else len(line) + 1
        heads = [m for m in _ANSWER_HEAD.finditer(line) if m.start() < checked_from]
        if heads:
            # The first head's answer; a head nested right where that answer begins restates it ("Final Answer: The
            # final answer is $5$", Minerva's format) and is read instead. A later one elsewhere on the line is
            # prose about the answer ("42. This answer is reasonable"), never the answer.
            head = heads[0]
            for later in heads[1:]:
                # Once one is not, none after it is: the text between would hold that head's own words. Stopping
                # there keeps the line's cost linear.
                if not _RESTATED.fullmatch(line, head.end(), later.start()):
                    break
                head = later
            answer = _answer_of_line(line[head.end():])
            if answer is None:
                return None, f"{UNREADABLE}: the answer line holds more than an answer ({line.strip()[:80]!r})"
            if answer:
                return answer, "answer line"
    spans = list(_Spans(text).after())
    last = None
    for last in _NUMBER.finditer(text):
        pass
    if spans and (last is None or last.start() < spans[-1][1]):
        # The last formula is the answer where no number stands after it: "the probability is $\frac{5}{12}$"
        # answers 5/12, whose last number (12) is only the denominator. Formulas joined to it by connectives only
        # are its other parts ("the solutions are $x = 2$ and $x = -3$").
        k = len(spans) - 1
        while k > 0 and _JOINER.fullmatch(text, spans[k - 1][1], spans[k][0]):
            k -= 1
        answer = _joined([p for p in (_strip_delimiters(text[a:b]) for a, b in spans[k:]) if p])
        if answer:
            return answer, "last formula"
    if last is not None:
        if _inside_latex(text, last.start()):
            # A number inside a LaTeX argument (2^{10}, \sqrt{3}, a \frac's part) is a piece of an expression whose
            # whole is not delimited: taking it as the answer would read a right answer as wrong.
            return None, f"{UNREADABLE}: the last number is part of an undelimited expression"
        if _in_tuple(text, last.start(), last.end()):
            return None, f"{UNREADABLE}: the last number is an entry of a bracketed tuple or list"
        number = last.group(0)
        return (number.replace(",", "") if "/" not in number else number), "last number"
    return None, "no answer found (no \\boxed{...}, no 'answer is' line, no number)"


# ---------------------------------------------------------------------------------------------------------------
# Screening an answer before anything parses it.

_POWER = re.compile(r"\^|\*\*")
_INTEGER = re.compile(r"\d+")
_FACTORIAL = re.compile(r"(\d+)\s*!")


def _operand_after(text: str, start: int) -> tuple[str, int]:
    """The exponent operand that begins at `start` (a {group}, a (group), a \\command or one token) and its end."""
    i = start
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text):
        return "", i
    c = text[i]
    if c in "{(":
        close = "}" if c == "{" else ")"
        depth = 0
        for j in range(i, len(text)):
            if text[j] == c:
                depth += 1
            elif text[j] == close:
                depth -= 1
                if depth == 0:
                    return text[i: j + 1], j + 1
        return text[i:], len(text)
    if c == "\\":
        m = re.match(r"\\[A-Za-z]+", text[i:])
        end = i + (m.end() if m else 2)
        return text[i:end], end
    m = re.match(r"-?[0-9.]+|[A-Za-z]", text[i:])
    end = i + (m.end() if m else 1)
    return text[i:end], end


def _base_before(text: str, end: int) -> str:
    """The group that ends just before `end` when it is a {group} or (group), else ""."""
    i = end - 1
    while i >= 0 and text[i] == " ":
        i -= 1
    if i < 0 or text[i] not in "})":
        return ""
    close = text[i]
    opening = "{" if close == "}" else "("
    depth = 0
    for j in range(i, -1, -1):
        if text[j] == close:
            depth += 1
        elif text[j] == opening:
            depth -= 1
            if depth == 0:
                return text[j: i + 1]
    return text[: i + 1]


def _largest_integer(text: str) -> int:
    """The largest integer literal in the text (1 when there is none); lengths are capped, so this is cheap."""
    return max((int(d) for d in _INTEGER.findall(text)), default=1)


def _exponent_too_large(exponent: str) -> bool:
    """Whether an exponent could exceed MAX_EXPONENT: a big literal, a tower over a literal above 6 (7^7 > 10^5),
    or more than one level of tower (9^{9^{9^9}})."""
    top = _largest_integer(exponent)
    towers = len(_POWER.findall(exponent))
    if towers == 0:
        return top > MAX_EXPONENT
    if towers > 1:
        return True
    return top > 6 or top**top > MAX_EXPONENT


def screen_answer(answer: str) -> str | None:
    """Why an extracted answer is not safe to hand to a parser, or None when it is.

    Text rules only (nothing is parsed): length, bracket depth, chained exponents, exponents that may exceed
    `MAX_EXPONENT` (big literals, towers such as ``9^{9^{9}}``, powers of powers such as ``(10^{9})^{99999}``),
    factorials of big literals. Small towers (``2^{2^3}``, ``(x^2+1)^2``) pass.

    Args:
        answer: the extracted answer.

    Returns:
        The reason for rejecting it, or None.
    """
    if len(answer) > MAX_ANSWER_CHARS:
        return f"answer longer than {MAX_ANSWER_CHARS} characters"
    depth = deepest = 0
    for c in answer:
        if c in "{(":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "})":
            depth -= 1
    if deepest > MAX_BRACE_DEPTH:
        return f"brackets nested deeper than {MAX_BRACE_DEPTH}"
    for m in _POWER.finditer(answer):
        exponent, end = _operand_after(answer, m.end())
        if _POWER.match(answer[end:].lstrip()):
            return "chained exponents (a^b^c); too costly to evaluate"
        if _exponent_too_large(exponent):
            return f"exponent may exceed {MAX_EXPONENT} (huge literal or power tower)"
        base = _base_before(answer, m.start())
        if _POWER.search(base) and _largest_integer(base) * _largest_integer(exponent) > MAX_EXPONENT:
            return f"power of a power may exceed exponent {MAX_EXPONENT}"
    if any(int(n) > MAX_FACTORIAL for n in _FACTORIAL.findall(answer)):
        return f"factorial of a number larger than {MAX_FACTORIAL}"
    return None


# ---------------------------------------------------------------------------------------------------------------
# Cheap text equality, tried before math-verify.

_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|textit|mathrm|mbox)\s*\{([^{}]*)\}")
_SPACING = re.compile(r"\\[!,;: ]|\\left|\\right|\s+")


def _unspaced(m: re.Match) -> str:
    # Spaces between two digits separate numbers: "1 2" is not the text of 12 (it was graded "same text").
    text, a, b = m.string, m.start(), m.end()
    if m.group(0).isspace() and 0 < a and b < len(text) and text[a - 1] in string.digits and text[b] in string.digits:
        return " "
    return ""


def _plain(answer: str) -> str:
    answer = _TEXT_COMMAND.sub(r"\1", _strip_delimiters(answer))
    # Case is kept: x and X can be different variables.
    return _SPACING.sub(_unspaced, answer).rstrip(".")


# ---------------------------------------------------------------------------------------------------------------
# The worker process.

# Runs in the worker: reads one JSON request per line on stdin, writes one JSON answer per line on stdout.
_WORKER_SOURCE = """
import json, logging, resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
logging.disable(logging.CRITICAL)
from math_verify import LatexExtractionConfig, parse, verify
from math_verify.errors import TimeoutException
CONFIG = [LatexExtractionConfig()]

def parsed(latex, seconds):
    return parse("\\\\boxed{" + latex + "}", extraction_config=CONFIG, parsing_timeout=seconds, raise_on_error=True)

def check(gold, answer, seconds):
    try:
        golds = parsed(gold, seconds)
    except TimeoutException:
        return None, "timed out parsing the gold answer"
    except Exception as exc:
        return None, "could not parse the gold answer: " + type(exc).__name__
    if not golds:
        return None, "could not parse the gold answer"
    try:
        answers = parsed(answer, seconds)
    except TimeoutException:
        return None, "timed out parsing the answer"
    except Exception as exc:
        return None, "could not parse the answer: " + type(exc).__name__
    if not answers:
        return None, "could not parse the answer"
    timed_out, failed = False, None
    for g in golds:
        for a in answers:
            try:
                if verify(g, a, timeout_seconds=seconds, raise_on_error=True):
                    return True, "equivalent (math-verify)"
            except TimeoutException:
                timed_out = True
            except Exception as exc:  # a comparison that failed is unknown, as one that timed out: never "not equal"
                failed = type(exc).__name__
    if timed_out:
        return None, "timed out comparing with the gold answer"
    if failed:
        return None, "could not compare with the gold answer: " + failed
    return False, "not equivalent (math-verify)"

print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    try:
        correct, reason = check(request["gold"], request["answer"], request["seconds"])
    except MemoryError:
        correct, reason = None, "ran out of memory"
    except BaseException as exc:
        correct, reason = None, "checker error: " + type(exc).__name__
    print(json.dumps({"correct": correct, "reason": reason}), flush=True)
"""


class VerifierProcess:
    """One math-verify worker process, started on first use, killed and restarted when a check overruns.

    Thread-safe: checks from several threads take turns. The worker exits when its stdin closes (this process
    ended), and is killed at interpreter exit.

    Args:
        command: the worker's command line; the default runs `_WORKER_SOURCE` with this interpreter. Tests replace
            it to simulate a worker that hangs or dies.
        memory_bytes: the worker's address-space cap.
        startup_s: seconds the worker gets to start (import math-verify and SymPy) before it is given up on.
    """

    def __init__(
        self,
        command: list[str] | None = None,
        *,
        memory_bytes: int = WORKER_MEMORY_BYTES,
        startup_s: float = WORKER_STARTUP_S,
    ) -> None:
        self._command = command or [sys.executable, "-c", _WORKER_SOURCE, str(memory_bytes)]
        self._startup_s = startup_s
        self._proc: subprocess.Popen[str] | None = None
        self._buffer = b""  # bytes read from the worker past the last whole line
        self._lock = threading.Lock()
        atexit.register(self.close)

    def check(self, gold: str, answer: str, *, timeout_s: float) -> tuple[bool | None, str]:
        """Whether `answer` is equivalent to `gold`, with a hard wall-clock limit.

        Args:
            gold: the gold answer (LaTeX).
            answer: the screened, extracted answer (LaTeX).
            timeout_s: seconds to wait for the verdict; past that the worker is killed.

        Returns:
            (True / False / None, reason).
        """
        seconds = max(1, int(timeout_s / 3))  # math-verify's own per-step alarm, so most overruns end cleanly
        with self._lock:
            proc = self._ensure_started()
            if proc is None:
                return None, "the math-verify worker did not start"
            try:
                assert proc.stdin is not None
                proc.stdin.write(json.dumps({"gold": gold, "answer": answer, "seconds": seconds}) + "\n")
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self._kill()
                return None, "the math-verify worker died"
            line = self._read_line(proc, timeout_s)
            if line is None:
                self._kill()
                return None, f"timed out after {timeout_s:g} s (worker killed)"
            if not line:
                self._kill()
                return None, "the math-verify worker died (memory limit?)"
            try:
                reply = json.loads(line)
                return reply["correct"], reply["reason"]
            except (ValueError, KeyError, TypeError):
                self._kill()
                return None, "unreadable reply from the math-verify worker"

    def _ensure_started(self) -> subprocess.Popen[str] | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._buffer = b""
        self._proc = subprocess.Popen(
            self._command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,  # a Ctrl-C meant for the caller does not hit the worker mid-check
        )
        ready = self._read_line(self._proc, self._startup_s)
        if not ready:
            self._kill()
            return None
        return self._proc

    def _read_line(self, proc: subprocess.Popen[str], timeout_s: float) -> str | None:
        """One line from the worker, "" when it exited, None when no whole line came within timeout_s.

        Reads the pipe's bytes directly with a deadline: `readline()` after `select` would block on a worker that
        wrote half a line and hung (holding the lock, so every later check would wait too)."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_REPLY_BYTES:
                return "{}"  # not a reply: read as unreadable, the worker is then killed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return ""
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8", "replace") + "\n"

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    def close(self) -> None:
        """Stop the worker (a later check starts a new one)."""
        with self._lock:
            self._kill()


_default_verifier: VerifierProcess | None = None
_default_lock = threading.Lock()


def _verifier() -> VerifierProcess:
    global _default_verifier
    with _default_lock:
        if _default_verifier is None:
            _default_verifier = VerifierProcess()
        return _default_verifier


# ---------------------------------------------------------------------------------------------------------------
# Public checks.


def check_may_pass_again(check: MathCheck) -> bool:
    """Whether an unchecked answer is so for a reason another try may not meet: a check that ran out of time (its
    timeouts are wall-clock, and a loaded machine is slower). A parse failure, a rejection by the screen or a worker
    that cannot start would recur (and each rerun would wait for it again)."""
    return check.correct is None and "timed out" in check.reason


# A number (no letters, no commands), a space, then plain words the first of three letters or more: "12 people",
# "18 dollars", "5 ways to choose". Not "2yx" or "4 ab": products of variables, which math-verify reads right.
_UNIT_WORDS = re.compile(r"^([^A-Za-z\\]*\d[^A-Za-z\\]*?)\s+([A-Za-z]{3,}(?:\s+[A-Za-z]+)*)\.?$")
# A number and words inside one text command: "\text{5 cm}" (the words are text there, so short units count).
_TEXT_UNIT = re.compile(r"^\\(?:text|textrm|mathrm|mbox)\s*\{\s*(-?\d[\d,./]*)\s+([A-Za-z]+(?:\s+[A-Za-z]+)*)\s*\}"
                        r"\.?$")
# Words that are mathematics, not units: "2 pi" must stay as math-verify reads it.
_MATH_WORDS = {"pi", "sqrt", "inf", "infinity", "ln", "log", "exp", "sin", "cos", "tan", "and", "or"}


def units_as_text(answer: str) -> str:
    """A number followed by plain words, with the words as LaTeX text: math-verify reads "12 people" as the product
    12·p·e·o·p·l·e and calls a right answer wrong; "12\\text{ people}" it reads as 12. A number and its unit set
    as text together ("\\text{5 cm}", which math-verify does not read as 5) become the same."""
    m = _TEXT_UNIT.match(answer.strip()) or _UNIT_WORDS.match(answer.strip())
    if m is None or {w.lower() for w in m.group(2).split()} & _MATH_WORDS:
        return answer
    return f"{m.group(1).strip()}\\text{{ {' '.join(m.group(2).split())}}}"


def _degrees_as_latex(answer: str) -> str:
    """The degree sign as LaTeX ("30°" as "30^\\circ"): math-verify does not read the sign, and graded 30° wrong
    against 30^\\circ."""
    return answer.replace("^{°}", "°").replace("^°", "°").replace("°", "^\\circ")


def check_math_answer(
    response: str, gold: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, verifier: VerifierProcess | None = None
) -> MathCheck:
    """Check a MATH-style response's final answer against the gold answer.

    Args:
        response: the model's full response (untrusted).
        gold: the gold answer, LaTeX as in MATH-500 (e.g. ``\\frac{14}{3}``, ``\\text{(C)}``, ``[-2, 7)``).
        timeout_s: wall-clock limit for the math-verify step; the worker is killed past it.
        verifier: the worker to use (default: one shared per process).

    Returns:
        A MathCheck: correct True/False (False, with answered False, when no final answer was found), or None with
        the reason when the answer was rejected by the screen, could not be parsed, or the check ran out of time or
        memory.
    """
    if not isinstance(response, str):
        return MathCheck(None, None, f"response is not text ({type(response).__name__})")
    if not isinstance(gold, str) or not gold.strip():
        return MathCheck(None, None, "no gold answer")
    answer, how = extract_final_answer(response)
    if answer is None and how.startswith(UNREADABLE):
        return MathCheck(None, None, f"not checked: {how}")
    if answer is None:
        return MathCheck(False, None, how, answered=False)
    if not answer:
        return MathCheck(False, answer, f"empty answer ({how})", answered=False)
    latex = _degrees_as_latex(answer)  # what is screened, compared and parsed; the response's own text is reported
    rejected = screen_answer(latex)
    if rejected is not None:
        return MathCheck(None, answer, f"not checked: {rejected}")
    if _plain(latex) == _plain(gold):
        return MathCheck(True, answer, f"same text as the gold answer ({how})")
    correct, reason = (verifier or _verifier()).check(gold.strip(), units_as_text(latex), timeout_s=timeout_s)
    return MathCheck(correct, answer, f"{reason} ({how})")


_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCTUATION = str.maketrans({c: " " for c in string.punctuation + "‘’“”–—"})


def normalize_short_answer(text: str) -> str:
    """Lower-case, accents folded, punctuation and the articles a/an/the removed, whitespace collapsed."""
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(c for c in folded if not unicodedata.combining(c)).lower()
    words = _ARTICLES.sub(" ", folded.translate(_PUNCTUATION))
    return " ".join(words.split())


def short_answer_exact(response: str, gold: str) -> bool:
    """Whether the normalised gold answer occurs, as whole words, in the normalised response.

    A cheap cross-check of the LLM grader for SimpleQA-style questions, not a grade: it misses paraphrases
    ("Michio Sugeno" vs "Sugeno Michio") and accepts a response that names the answer among others.

    Args:
        response: the model's response.
        gold: the reference answer.

    Returns:
        True when the normalised gold is non-empty and found in the normalised response on word boundaries.
    """
    needle = normalize_short_answer(gold)
    if not needle:
        return False
    haystack = normalize_short_answer(response)
    return f" {needle} " in f" {haystack} "
