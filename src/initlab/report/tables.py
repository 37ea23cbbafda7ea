"""The terminal table of a sweep: configurations ranked by final test accuracy."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from initlab.report.summary import Summary


def ranking_table(summaries: list[Summary], title: str = "Ranked by final test accuracy",
                  limit: int | None = None) -> Table:
    """A rich Table: rank, init, activation, depth x width, lr, accuracy, loss, flags."""
    table = Table(title=escape(title))
    for column in ("#", "init", "activation", "depth x width", "lr / optimizer",
                   "test acc", "final loss", "steps to target", "flags"):
        table.add_column(column, justify="right" if column in ("#", "test acc", "final loss",
                                                               "steps to target") else "left")
    for rank, s in enumerate(summaries[:limit] if limit else summaries, start=1):
        spread = f" ± {s.test_accuracy_std:.3f}" if s.runs > 1 else ""
        style = "red" if s.diverged or s.failed else "yellow" if s.stalled else None
        table.add_row(
            str(rank), escape(s.init), escape(s.activation), f"{s.depth} x {s.width}",
            f"{s.lr:g} / {s.optimizer}", f"{s.test_accuracy:.3f}{spread}", f"{s.final_loss:.3f}",
            "-" if s.steps_to_target is None else f"{s.steps_to_target:.0f}", s.flags,
            style=style,
        )
    return table
