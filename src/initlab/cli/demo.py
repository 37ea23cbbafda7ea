"""``initlab demo``: the article's experiment in one command."""

from pathlib import Path
from typing import Annotated

import typer

from initlab.cli._app import app


@app.command()
def demo(
    store: Annotated[Path, typer.Option(help="SQLite store; rerun to resume.")] =
        Path("initlab-runs/demo.db"),
    report: Annotated[Path, typer.Option(help="Where the HTML report goes.")] =
        Path("initlab-runs/demo.html"),
    dataset: Annotated[str, typer.Option(help="auto = Fashion-MNIST if installed, else digits."
                                         )] = "auto",
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per configuration.")] = 3,
    steps: Annotated[int, typer.Option(min=1, help="Steps for the 784-256-10 MLP.")] = 300,
    deep_steps: Annotated[int, typer.Option(min=1, help="Steps for the 20 x 64 MLP.")] = 300,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
) -> None:
    """The article's six activations x six inits on its MLP and a deep variant, 3 seeds;
    prints the ranking and findings, writes the HTML report."""
    from initlab.demo import run_demo

    run_demo(store, report, dataset=dataset, seeds=seeds, steps=steps, deep_steps=deep_steps,
             device=device)
