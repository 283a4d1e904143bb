"""HTML reports: a title, sections of text, tables and inline SVG charts, in one file."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1120px; color: #222;
       padding: 0 1em; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: right; }
th { background: #f5f6f8; }
th:first-child, td:first-child, td.t { text-align: left; }
caption { text-align: left; font-weight: 600; padding: 0.3em 0; }
.charts { display: flex; flex-wrap: wrap; gap: 12px 20px; } .note { color: #555; }
.subtitle { color: #555; margin-top: 0; }
nav { font-size: 0.9em; color: #555; } nav a { margin-right: 1em; color: #1f5fbf; }
.verdict { font-size: 1.5em; font-weight: 700; padding: 0.5em 0.8em; border-radius: 6px;
           display: inline-block; margin: 0.6em 0; }
.verdict.good { background: #e3f4e8; color: #14632f; }
.verdict.bad { background: #fbe4e2; color: #8c1d13; }
.verdict.wait { background: #fdf3d8; color: #7a5300; }
.verdict.none { background: #eceef1; color: #333; }
ul.reasons { margin: 0.4em 0 1em 0; }
"""


@dataclass
class Section:
    """A heading with a verdict, paragraphs, bullets, tables and charts, in that order.

    A table is (header, rows) or (header, rows, caption); ``tone`` colours the verdict:
    good, bad, wait or none.
    """

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[Sequence[str], Sequence[Sequence[str]]]] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)
    verdict: str | None = None
    tone: str = "none"
    bullets: list[str] = field(default_factory=list)
    captions: dict[int, str] = field(default_factory=dict)  # table index -> caption
    footnotes: list[str] = field(default_factory=list)  # after the charts


#: A cell that reads as a figure (a number, a signed change, "< 0.001", "n/a") is aligned
#: right; words are aligned left.
_FIGURE = re.compile("^(([<>\u2264] )?[-+\u2212]?[\\d.,]+(%| ms| s)?( \\[.*\\])?|n/a)$")


def _cell(text: str) -> str:
    if _FIGURE.match(text):
        return f"<td>{escape(text)}</td>"
    return f"<td class='t'>{escape(text)}</td>"


def anchor(title: str) -> str:
    """The id a section's heading gets: its title in lower case, words joined by '-'."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"


def render_report(
    title: str, sections: Sequence[Section], *, subtitle: str = "", contents: bool = False
) -> str:
    """One self-contained HTML page (no scripts, no external files)."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
    ]
    if subtitle:
        parts.append(f"<p class='subtitle'>{escape(subtitle)}</p>")
    if contents and len(sections) > 1:
        parts.append(
            "<nav>"
            + "".join(f"<a href='#{anchor(s.title)}'>{escape(s.title)}</a>" for s in sections)
            + "</nav>"
        )
    for section in sections:
        parts.append(f"<h2 id='{anchor(section.title)}'>{escape(section.title)}</h2>")
        if section.verdict is not None:
            parts.append(
                f"<div class='verdict {escape(section.tone)}'>{escape(section.verdict)}</div>"
            )
        parts.extend(f"<p class='note'>{escape(p)}</p>" for p in section.paragraphs)
        if section.bullets:
            parts.append(
                "<ul class='reasons'>"
                + "".join(f"<li>{escape(b)}</li>" for b in section.bullets)
                + "</ul>"
            )
        for index, (header, rows) in enumerate(section.tables):
            parts.append("<table>")
            if index in section.captions:
                parts.append(f"<caption>{escape(section.captions[index])}</caption>")
            parts.append("<tr>")
            parts.extend(f"<th>{escape(h)}</th>" for h in header)
            parts.append("</tr>")
            for row in rows:
                parts.append("<tr>" + "".join(_cell(c) for c in row) + "</tr>")
            parts.append("</table>")
        if section.charts:
            parts.append("<div class='charts'>" + "".join(section.charts) + "</div>")
        parts.extend(f"<p class='note'>{escape(p)}</p>" for p in section.footnotes)
    parts.append("</body></html>")
    return "".join(parts)
