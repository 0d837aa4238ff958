"""The report as one self-contained HTML file: inline CSS, figures as base64 PNG data URIs, no script, no link
to anything outside the file, so it opens offline and can be mailed or archived as it is.

Every piece of text is escaped with engine.report.escape.html_text: model names, stage errors, skipped input rows and
anything else that may carry model output or user data is untrusted. Only our own paragraphs get one piece of
markup, `code` spans, applied after escaping.
"""

from __future__ import annotations

import base64
import re
from typing import Sequence

from engine.report.escape import html_text
from engine.report.sections import FigureRef, Items, Link, Para, Section, Sub, Table

CSS = """
body { font: 15px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1d1d1f;
       max-width: 1180px; margin: 0 auto; padding: 24px 28px 64px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 8px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-top: 8px; border-top: 1px solid #ddd; }
h3 { font-size: 16px; margin: 20px 0 8px; }
nav { background: #f5f6f8; border: 1px solid #e2e4e8; border-radius: 6px; padding: 10px 16px; margin: 12px 0 20px; }
nav ol { margin: 4px 0; padding-left: 22px; columns: 2; }
nav a { color: #2456a6; text-decoration: none; }
table { border-collapse: collapse; margin: 8px 0 4px; font-size: 13px; }
th, td { border: 1px solid #d9dce1; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f1f3f6; font-weight: 600; }
tr:nth-child(even) td { background: #fafbfc; }
caption { caption-side: bottom; text-align: left; color: #555; font-size: 12px; padding-top: 4px; max-width: 1100px; }
figure { margin: 12px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 12px; }
.note { background: #fff6e0; border-left: 4px solid #e0a100; padding: 8px 12px; }
code { background: #f1f3f6; padding: 0 3px; border-radius: 3px; font-size: 13px; }
.table-wrap { overflow-x: auto; }
"""

_CODE = re.compile(r"`([^`]+)`")


def _inline(text: str) -> str:
    """Escape our own text, then turn `code` spans into <code> (the span content stays escaped)."""
    return _CODE.sub(r"<code>\1</code>", html_text(text))


def png_data_uri(png: bytes) -> str:
    """A data: URI for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_html(sections: Sequence[Section], figures: dict[str, bytes], *, title: str) -> str:
    """Render the report's sections as a single HTML document.

    Args:
        sections: from engine.report.sections.build_sections (paragraphs, tables, figure references, lists,
            sub-headings).
        figures: PNG bytes by figure name; a referenced figure that is missing is named in the text, not linked.
        title: the document title.

    Returns:
        The HTML text.
    """
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html_text(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
           f"<h1>{html_text(title)}</h1>", '<nav><strong>Contents</strong><ol>']
    out += [f'<li><a href="#{html_text(s.id)}">{html_text(s.title)}</a></li>' for s in sections]
    out.append("</ol></nav>")
    for sec in sections:
        out.append(f'<section id="{html_text(sec.id)}"><h2>{html_text(sec.title)}</h2>')
        for b in sec.blocks:
            if isinstance(b, Para):
                lead = f"<strong>{html_text(b.lead)}</strong> " if b.lead else ""
                cls = ' class="note"' if b.note else ""
                out.append(f"<p{cls}>{lead}{_inline(b.text)}</p>")
            elif isinstance(b, Sub):
                out.append(f"<h3>{html_text(b.title)}</h3>")
            elif isinstance(b, Link):
                out.append(f'<p><a href="{html_text(b.href)}">{html_text(b.text)}</a>{html_text(b.after)}</p>')
            elif isinstance(b, Items):
                fmt = html_text if b.literal else _inline
                out.append("<ul>" + "".join(f"<li>{fmt(x)}</li>" for x in b.items) + "</ul>")
            elif isinstance(b, FigureRef):
                png = figures.get(b.name)
                if png is None:
                    out.append(f"<p>(figure {html_text(b.name)} was not drawn)</p>")
                    continue
                out.append(f'<figure><img src="{png_data_uri(png)}" alt="{html_text(b.caption)}">'
                           f"<figcaption>{html_text(b.caption)}</figcaption></figure>")
            elif isinstance(b, Table):
                if not b.rows:  # the caption still says what the table would hold, and over what
                    out.append("<p>(no rows)" + (f" — {html_text(b.caption)}" if b.caption else "") + "</p>")
                    continue
                out.append('<div class="table-wrap"><table>')
                if b.caption:
                    out.append(f"<caption>{html_text(b.caption)}</caption>")
                out.append("<thead><tr>" + "".join(f"<th>{html_text(h)}</th>" for h in b.headers) + "</tr></thead>")
                out.append("<tbody>" + "".join(
                    "<tr>" + "".join(f"<td>{html_text(str(c))}</td>" for c in row) + "</tr>" for row in b.rows)
                    + "</tbody></table></div>")
        out.append("</section>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"
