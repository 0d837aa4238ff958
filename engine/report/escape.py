"""Escaping for every report format, written once: each renderer passes every text it interpolates through these.

Texts reach the reports from untrusted places: model names, strategies and sources from a responses file, backend
errors, input rows. In Markdown they must not become HTML (`<img onerror=…>`), links or images (`[x](javascript:…)`,
tracking images), or break a table row (`|`, a line break, a bare carriage return).

Imports: the standard library only.
"""

from __future__ import annotations

import html
import re
from typing import Any

# Line breaks of every kind, including the ones Markdown renderers honour that str.splitlines also knows.
_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")
_MD_ACTIVE = re.compile(r"([\\`*_{}\[\]()<>#+!|~&])")


def md_text(text: Any) -> str:
    """Text for a Markdown line or table cell, shown as written while keeping our own `code` spans and **bold**:
    HTML special characters become entities, no `](` can close a link or image, `|` cannot end a cell, and line
    breaks become spaces."""
    out = _BREAKS.sub(" ", str(text))
    out = out.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    out = out.replace("\\|", "|").replace("|", "\\|")
    return out.replace("](", "]\\(").replace("]:", "]\\:")


def md_literal(text: Any) -> str:
    """Untrusted text as Markdown that shows it exactly: every Markdown character escaped, so no link, image,
    HTML, code span or emphasis can come of it; line breaks become spaces."""
    return _MD_ACTIVE.sub(r"\\\1", _BREAKS.sub(" ", str(text)))


def html_text(text: Any) -> str:
    """Text for HTML element content or a quoted attribute."""
    return html.escape(str(text), quote=True)
