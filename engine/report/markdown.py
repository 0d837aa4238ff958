"""report.md: the sections rendered as Markdown, figures linked as PNG files. Every text that may carry
untrusted content (model names, input rows, backend errors) goes through one escaping helper."""

from __future__ import annotations

from typing import Any

from engine.report.escape import md_literal, md_text
from engine.report.sections import FigureRef, Items, Link, Para, Sub, Table, build_sections

def render_markdown(data: dict[str, Any], figure_dir: str = "figures") -> str:
    """The report as Markdown: the same sections as the HTML, figures linked as PNG files.

    Args:
        data: from `report_data`.
        figure_dir: folder of the PNG files, relative to the Markdown file.

    Returns:
        The Markdown text.
    """
    sections = build_sections(data)
    out = ["# taskdiv report", "", "Contents: " + " · ".join(f"[{md_text(s.title.split(' — ')[0])}](#{s.id})"
                                                            for s in sections), ""]
    for sec in sections:
        out += [f'<a id="{sec.id}"></a>', "", f"## {md_text(sec.title)}", ""]
        for b in sec.blocks:
            if isinstance(b, Para):
                out += [(f"**{md_text(b.lead)}** " if b.lead else "") + md_text(b.text), ""]
            elif isinstance(b, Sub):
                out += [f"### {md_text(b.title)}", ""]
            elif isinstance(b, Link):
                out += [f"[{md_text(b.text)}]({b.href}){md_text(b.after)}", ""]
            elif isinstance(b, Items):
                out += [f"- {md_literal(x) if b.literal else md_text(x)}" for x in b.items] + [""]
            elif isinstance(b, FigureRef):
                out += [f"![{md_text(b.caption)}]({figure_dir}/{b.name}.png)", "", f"*{md_text(b.caption)}*", ""]
            elif isinstance(b, Table):
                if not b.rows:  # the caption still says what the table would hold, and over what
                    out += ["(no rows)" + (f" — {md_text(b.caption)}" if b.caption else ""), ""]
                    continue
                out += ["| " + " | ".join(md_text(h) for h in b.headers) + " |",
                        "|" + "---|" * len(b.headers)]
                out += ["| " + " | ".join(md_text(c) for c in row) + " |" for row in b.rows]
                out += ([""] + [md_text(b.caption)] if b.caption else []) + [""]
    return "\n".join(out).rstrip() + "\n"
