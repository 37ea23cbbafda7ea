"""``initlab report``: the HTML report of a stored sweep."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from initlab.cli._app import app


@app.command()
def report(
    sweep: Annotated[str | None, typer.Argument(help="Sweep id, id prefix or name; default: "
                                                      "the latest.")] = None,
    store: Annotated[Path, typer.Option(help="The SQLite store.")] =
        Path("initlab-runs/initlab.db"),
    out: Annotated[Path | None, typer.Option(help="HTML path; default: next to the store."
                                             )] = None,
) -> None:
    """Rank a stored sweep's runs and write its self-contained HTML report."""
    from initlab.report import build_report, ranking_table, summarize
    from initlab.sweep.store import Store

    if not store.exists():
        raise FileNotFoundError(f"no store at {store}: run `initlab sweep` or `initlab demo` "
                                "first, or pass --store")
    with Store(store, readonly=True) as db:
        sweep_id = db.find_sweep(sweep)
        results = db.results(sweep_id)
        title = next(s.name for s in db.sweeps() if s.id == sweep_id)
    Console().print(ranking_table(summarize(results), title=title))
    path = build_report(results, out or store.with_name(f"report-{sweep_id[:8]}.html"), title)
    Console().print(f"Report: {path.resolve()}")
