"""One self-contained HTML page: figures embedded as base64 PNG, every given string escaped."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from initlab.report.summary import Summary

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #eee; text-align: right; }
th:nth-child(-n+3), td:nth-child(-n+3) { text-align: left; }
tr.bad td { color: #b00; } tr.stalled td { color: #a60; }
figure { margin: 1em 0; } img { max-width: 100%; }
.meta { color: #666; font-size: 0.9em; }
"""


def _table(summaries: list[Summary]) -> str:
    rows = []
    for rank, s in enumerate(summaries, start=1):
        css = "bad" if s.diverged or s.failed else "stalled" if s.stalled else ""
        rows.append(f'<tr class="{css}">' + "".join(f"<td>{html.escape(str(c))}</td>"
                                                     for c in (rank, *s.cells())) + "</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in ("#", *Summary.COLUMNS))
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render(title: str, summaries: list[Summary], figures: dict[str, bytes],
           findings: list[str] = (), meta: str = "") -> str:
    """The page as a string. ``figures`` maps a caption to PNG bytes."""
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if meta:
        parts.append(f"<p class='meta'>{html.escape(meta)}</p>")
    if findings:
        items = "".join(f"<li>{html.escape(f)}</li>" for f in findings)
        parts.append(f"<h2>Findings</h2><ul id='findings'>{items}</ul>")
    parts.append(f"<h2>Ranking</h2>{_table(summaries)}")
    for caption, png in figures.items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<h2>{html.escape(caption)}</h2><figure><img alt='{html.escape(caption)}'"
                     f" src='data:image/png;base64,{data}'></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write(path: str | Path, *args, **kwargs) -> Path:
    """``render(...)`` written to ``path`` (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(*args, **kwargs), encoding="utf-8")
    return path
