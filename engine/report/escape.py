"""Escaping for every report format, written once: each renderer passes every text it interpolates through these.

Texts reach the reports from untrusted places: model names, strategies and sources from a responses file, backend
errors, input rows. In Markdown they must not become HTML (`<img onerror=…>`), links or images (`[x](javascript:…)`,
tracking images, a bare `https://…` that GitHub's Markdown links by itself), or break a table row (`|`, a line
break, a bare carriage return). tests/engine/report/test_escape.py renders what these return with GitHub's own
Markdown parser (cmark-gfm).

Imports: the standard library only.
"""

from __future__ import annotations

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
# A code span of ours (`…`, in md_text): shown as written, so escapes would show, and nothing links inside one.
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`).+?(?<!`)\1(?!`)")
# A backtick after an odd number of backslashes: escaped, so it opens no code span (CommonMark), and the text after
# it is plain text that links bare addresses. Made an entity, which shows the same and opens nothing either.
_ESCAPED_BACKTICK = re.compile(r"(?<!\\)((?:\\\\)*)\\`")


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
    out = _ESCAPED_BACKTICK.sub(r"\1&#96;", out)
    pieces, at = [], 0
    for span in _CODE_SPAN.finditer(out):
        pieces += [_unlinked(out[at:span.start()]), span.group(0)]
        at = span.end()
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
