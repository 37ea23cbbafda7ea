"""``initlab sweep`` (run a grid, resumable) and ``initlab runs`` (list and export the store)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from initlab.cli._app import app
from initlab.sweep.runner import run_sweep
from initlab.sweep.spec import SpecError, SweepSpec
from initlab.sweep.store import DEFAULT_PATH, Store

err = Console(stderr=True)
out = Console()

Grid = Annotated[str | None, typer.Option(help="comma-separated values, one grid axis")]
StorePath = Annotated[Path, typer.Option("--store", help="the SQLite file of results")]


def _fail(exc: Exception, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code)


def _spec(path: Path | None, flags: dict[str, object]) -> SweepSpec:
    """The spec of the YAML file at ``path`` (if any) with the given flags on top."""
    values = {k: v for k, v in flags.items() if v is not None}
    if path is None:
        return SweepSpec.parse(values, "from flags")
    return SweepSpec.from_yaml(path, values)


@app.command()
def sweep(
    spec: Annotated[Path | None, typer.Argument(
        help="YAML sweep spec; flags given too override its values", dir_okay=False)] = None,
    dataset: Annotated[str | None, typer.Option(help="auto, digits, fashion-mnist, ...")] = None,
    data_dir: Annotated[str | None, typer.Option(help="folder of MNIST-format IDX files")] = None,
    limit: Annotated[int | None, typer.Option(help="use at most this many training examples")]
    = None,
    model: Annotated[str | None, typer.Option(help="mlp, vgg, resnet, lstm, gru, ...")] = None,
    inits: Annotated[str | None, typer.Option("--inits", "--init", help="init schemes")] = None,
    activations: Annotated[str | None, typer.Option("--activations", "--activation")] = None,
    depths: Annotated[str | None, typer.Option("--depths", "--depth",
                                               help="hidden layers")] = None,
    widths: Annotated[str | None, typer.Option("--widths", "--width", help="hidden units")]
    = None,
    lrs: Annotated[str | None, typer.Option("--lrs", "--lr", help="learning rates")] = None,
    optimizers: Annotated[str | None, typer.Option("--optimizers", "--optimizer",
                                                   help="sgd, momentum, adam")] = None,
    seeds: Annotated[str | None, typer.Option("--seeds", "--seed", help="init seeds")] = None,
    steps: Annotated[int | None, typer.Option(help="training steps per run")] = None,
    epochs: Annotated[float | None, typer.Option(help="or: epochs per run")] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    eval_every: Annotated[int | None, typer.Option(help="steps between evaluations")] = None,
    log_every: Annotated[int | None, typer.Option(help="steps between logged losses")] = None,
    target_accuracy: Annotated[float | None, typer.Option(
        help="validation accuracy whose first step is recorded")] = None,
    data_seed: Annotated[int | None, typer.Option(help="seeds the split and batch order")]
    = None,
    name: Annotated[str | None, typer.Option(help="a label for the sweep")] = None,
    store: StorePath = DEFAULT_PATH,
    executor: Annotated[str, typer.Option(help="where groups train: local (ray: later)")]
    = "local",
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    retry_failed: Annotated[bool, typer.Option(help="run failed runs again")] = False,
    progress: Annotated[bool, typer.Option(help="show progress")] = True,
) -> None:
    """Train every run of a grid (inits x activations x depths x widths x lrs x optimizers x
    seeds) and store each result as it finishes. Rerun the same command to resume.

    Example: initlab sweep --dataset digits --inits he_normal,xavier_normal
    --activations relu,tanh --depth 2 --width 64 --steps 60 --store runs.db
    """
    flags = dict(dataset=dataset, data_dir=data_dir, limit=limit, model=model, inits=inits,
                 activations=activations, depths=depths, widths=widths, lrs=lrs,
                 optimizers=optimizers, seeds=seeds, steps=steps, epochs=epochs,
                 batch_size=batch_size, eval_every=eval_every, log_every=log_every,
                 target_accuracy=target_accuracy, data_seed=data_seed, name=name)
    try:
        parsed = _spec(spec, flags)
        sweep_id = run_sweep(parsed, store, executor=executor, device=device,
                             progress=progress, retry_failed=retry_failed)
    except (SpecError, LookupError, ImportError) as exc:
        raise _fail(exc) from None
    except (ValueError, OSError) as exc:  # a data set that cannot be read or checked
        raise _fail(exc, 1) from None
    with Store(store, readonly=True) as db:
        row = next(s for s in db.sweeps() if s.id == sweep_id)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(row.counts.items()))
    out.print(f"sweep {sweep_id} ({row.name}): {counts}. "
              f"See: initlab runs {sweep_id} --store {store}", highlight=False)


@app.command()
def runs(
    sweep: Annotated[str | None, typer.Argument(
        help="a sweep id, id prefix or name; none lists the sweeps")] = None,
    store: StorePath = DEFAULT_PATH,
    export: Annotated[tuple[str, Path] | None, typer.Option(
        metavar="csv|json PATH",
        help="write the runs (of SWEEP, or all) as csv or json to PATH")] = None,
) -> None:
    """List stored sweeps, or the runs of one sweep; export runs to CSV or JSON."""
    try:
        with Store(store, readonly=True) as db:
            sweep_id = db.find_sweep(sweep) if sweep is not None else None
            if export is not None:
                fmt, path = export
                n = db.export(path, fmt, sweep_id)
                out.print(f"wrote {n} runs to {path}", highlight=False)
            elif sweep_id is None:
                out.print(_sweeps_table(db))
            else:
                out.print(_runs_table(db, sweep_id))
    except (FileNotFoundError, LookupError, ValueError) as exc:
        raise _fail(exc) from None


def _sweeps_table(db: Store) -> Table:
    table = Table(title=f"sweeps in {db.path}")
    for column in ("id", "name", "created", "runs", "finished", "diverged", "failed", "to do"):
        table.add_column(column, justify="right" if column not in ("id", "name") else "left")
    for s in db.sweeps():
        c = s.counts
        table.add_row(s.id, s.name, s.created[:19].replace("T", " "), str(s.total),
                      str(c.get("finished", 0)), str(c.get("diverged", 0)),
                      str(c.get("failed", 0)), str(c.get("pending", 0) + c.get("running", 0)))
    return table


def _last(points: list[tuple[int, float]] | None) -> str:
    if not points:
        return ""
    value = points[-1][1]
    return f"{value:.3f}" if math.isfinite(value) else str(value)


def _runs_table(db: Store, sweep_id: str) -> Table:
    rows = db.runs(sweep_id)
    series = db.series(r.id for r in rows)
    table = Table(title=f"runs of sweep {sweep_id}")
    for column in ("run", "init", "activation", "depth", "width", "lr", "optimizer", "seed",
                   "status", "loss", "val acc", "test acc", "steps to target", "seconds",
                   "engine"):
        table.add_column(column)
    for r in rows:
        c, s = r.config, series.get(r.id, {})
        table.add_row(str(r.id), c.init, c.activation, str(c.depth), str(c.width), f"{c.lr:g}",
                      c.optimizer, str(c.seed), r.status, _last(s.get("loss")),
                      _last(s.get("val_acc")), _last(s.get("test_acc")),
                      "" if r.steps_to_target is None else str(r.steps_to_target),
                      "" if r.seconds is None else f"{r.seconds:.2f}", r.engine or "")
    return table
