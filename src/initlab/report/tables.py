"""The terminal table of a sweep: configurations ranked by final test accuracy."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from initlab.report.summary import Summary


def ranking_table(summaries: list[Summary], title: str = "Ranked by final test accuracy",
                  limit: int | None = None) -> Table:
    """A rich Table: rank, init, activation, depth x width, lr, accuracy, loss, flags."""
    table = Table(title=escape(title))
    table.add_column("#", justify="right")
    for column in Summary.COLUMNS:
        numeric = column in ("test acc", "final loss", "steps to target")
        table.add_column(column, justify="right" if numeric else "left")
    for rank, s in enumerate(summaries[:limit] if limit else summaries, start=1):
        style = "red" if s.diverged or s.failed else "yellow" if s.stalled else None
        table.add_row(str(rank), *map(escape, s.cells()), style=style)
    return table
