"""HTML reports: a title, sections of text, tables and inline SVG charts, in one file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1120px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; } .note { color: #555; }
"""


@dataclass
class Section:
    """A heading with paragraphs, tables and charts, shown in that order."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[Sequence[str], Sequence[Sequence[str]]]] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)


def render_report(title: str, sections: Sequence[Section]) -> str:
    """One self-contained HTML page (no scripts, no external files)."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<h2>{escape(section.title)}</h2>")
        parts.extend(f"<p class='note'>{escape(p)}</p>" for p in section.paragraphs)
        for header, rows in section.tables:
            parts.append("<table><tr>")
            parts.extend(f"<th>{escape(h)}</th>" for h in header)
            parts.append("</tr>")
            for row in rows:
                parts.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
            parts.append("</table>")
        if section.charts:
            parts.append("<div class='charts'>" + "".join(section.charts) + "</div>")
    parts.append("</body></html>")
    return "".join(parts)
