"""report.md: the sections rendered as Markdown, figures linked as PNG files. Every text that may carry
untrusted content (model names, input rows, backend errors) goes through one escaping helper."""

from __future__ import annotations

import re
from typing import Any

from engine.report.sections import FigureRef, Items, Para, Sub, Table, build_sections

def _md_cell(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


_MD_ACTIVE = re.compile(r"([\\`*_{}\[\]()<>#+!|~&])")


def _md_literal(text: str) -> str:
    """Untrusted text as Markdown that shows it exactly: no links, images, HTML or emphasis can come of it."""
    return _MD_ACTIVE.sub(r"\\\1", str(text)).replace("\n", " ")


def render_markdown(data: dict[str, Any], figure_dir: str = "figures") -> str:
    """The report as Markdown: the same sections as the HTML, figures linked as PNG files.

    Args:
        data: from `report_data`.
        figure_dir: folder of the PNG files, relative to the Markdown file.

    Returns:
        The Markdown text.
    """
    sections = build_sections(data)
    out = ["# taskdiv report", "", "Contents: " + " · ".join(f"[{s.title.split(' — ')[0]}](#{s.id})"
                                                            for s in sections), ""]
    for sec in sections:
        out += [f'<a id="{sec.id}"></a>', "", f"## {sec.title}", ""]
        for b in sec.blocks:
            if isinstance(b, Para):
                out += [(f"**{b.lead}** " if b.lead else "") + b.text, ""]
            elif isinstance(b, Sub):
                out += [f"### {b.title}", ""]
            elif isinstance(b, Items):
                out += [f"- {_md_literal(x) if b.literal else _md_cell(x)}" for x in b.items] + [""]
            elif isinstance(b, FigureRef):
                out += [f"![{b.caption}]({figure_dir}/{b.name}.png)", "", f"*{b.caption}*", ""]
            elif isinstance(b, Table):
                if not b.rows:
                    out += ["(no rows)", ""]
                    continue
                out += ["| " + " | ".join(_md_cell(h) for h in b.headers) + " |",
                        "|" + "---|" * len(b.headers)]
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
                out += ([""] + [b.caption] if b.caption else []) + [""]
    return "\n".join(out).rstrip() + "\n"
