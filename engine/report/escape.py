"""Escaping for every report format, written once: each renderer passes every text it interpolates through these.

Texts reach the reports from untrusted places: model names, strategies and sources from a responses file, backend
errors, input rows. In Markdown they must not become HTML (`<img onerror=…>`), links or images (`[x](javascript:…)`,
tracking images, a bare `https://…` that GitHub's Markdown links by itself), or break a table row (`|`, a line
break, a bare carriage return). tests/engine/report/test_escape.py renders what these return with GitHub's own
Markdown parser (cmark-gfm).

Imports: the standard library only.
"""

from __future__ import annotations

import bisect
import html
import re
from typing import Any

# Line breaks of every kind, including the ones Markdown renderers honour that str.splitlines also knows.
_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")
# Bidirectional embeddings, overrides and isolates: invisible, and a right-to-left override left open in a model's
# name reversed the report's own text after it ("…; judges: scripted" shown backwards). Dropped: what they hold is
# shown, in the order it was written (right-to-left letters still read right to left without them).
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
_MD_ACTIVE = re.compile(r"([\\`*_{}\[\]()<>#+!|~&])")
# GitHub's and GitLab's Markdown (cmark-gfm) also link bare addresses in plain text: "https://…", "ftp://…", "www.…".
# A backslash before the ":" or the "." stops that and is not shown (CommonMark reads "\:" as ":"). An e-mail address
# still becomes a mailto: link there: cmark-gfm finds addresses in the text after escapes are read, and no escape
# keeps one shown as written.
_SCHEME = re.compile(r"(?<!\\)://")
_WWW = re.compile(r"(?i)(?<![\w.-])(www)\.")
# What opens a list (or a thematic break, "- - -") at the start of a line, or of a list item's text: "-", "1." or "1)".
_LIST_MARKER = re.compile(r"^(\d{0,9})([-.)])")


_BACKTICKS = re.compile(r"`+")


def _code_spans(text: str) -> list[tuple[int, int]]:
    """Where the code spans of Markdown text are, as CommonMark finds them: left to right, a backslash outside a
    span escapes the character after it (an escaped backtick opens nothing, and the text after it is plain text
    whose bare addresses link), a run of backticks opens a span that the next run of the same length closes (no
    escape inside one), and a run never closed is literal. A pattern had read an escaped backtick as opening a span
    and left the address after it unescaped (52 links in a report from one model name)."""
    # Each closing run found by its length among the text's runs (a search from every opener was quadratic in a text
    # of many unclosed runs).
    closers: dict[int, list[int]] = {}
    for m in _BACKTICKS.finditer(text):
        closers.setdefault(m.end() - m.start(), []).append(m.start())
    spans, i, n = [], 0, len(text)
    while i < n:
        if text[i] == "\\":
            i += 2
            continue
        if text[i] != "`":
            i += 1
            continue
        j = i
        while j < n and text[j] == "`":
            j += 1
        starts = closers.get(j - i, [])
        k = bisect.bisect_left(starts, j)
        if k == len(starts):
            i = j  # never closed: literal backticks
            continue
        spans.append((i, starts[k] + j - i))
        i = starts[k] + j - i
    return spans


def _unlinked(text: str) -> str:
    """Bare addresses of Markdown text made plain text (escapes a parser reads away)."""
    return _WWW.sub(r"\1\\.", _SCHEME.sub(r"\\://", text))


def md_text(text: Any) -> str:
    """Text for a Markdown line or table cell, shown as written while keeping our own `code` spans and **bold**:
    HTML special characters become entities, no `](` can close a link or image, `|` cannot end a cell, a bare
    address outside a code span is not linked, and line breaks become spaces."""
    out = _BREAKS.sub(" ", _BIDI_CONTROLS.sub("", str(text)))
    out = out.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    out = out.replace("\\|", "|").replace("|", "\\|")
    out = out.replace("](", "]\\(").replace("]:", "]\\:")
    pieces, at = [], 0
    for start, end in _code_spans(out):
        pieces += [_unlinked(out[at:start]), out[start:end]]
        at = end
    return "".join(pieces) + _unlinked(out[at:])


def md_literal(text: Any) -> str:
    """Untrusted text as Markdown that shows it exactly: every Markdown character escaped, so no link, image,
    HTML, code span, emphasis, list or code block can come of it (nor a bare address's link); line breaks become
    spaces, and spaces around it go (four opening ones would start a code block)."""
    out = _MD_ACTIVE.sub(r"\\\1", _BREAKS.sub(" ", _BIDI_CONTROLS.sub("", str(text))).strip(" \t"))
    return _unlinked(_LIST_MARKER.sub(r"\1\\\2", out, count=1))


def html_text(text: Any) -> str:
    """Text for HTML element content or a quoted attribute."""
    return html.escape(_BIDI_CONTROLS.sub("", str(text)), quote=True)
