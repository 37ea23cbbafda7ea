"""``initlab sweep`` (run a grid, resumable) and ``initlab runs`` (list and export the store)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from initlab.cli._app import app, fail
from initlab.sweep.runner import run_sweep
from initlab.sweep.spec import SweepSpec
from initlab.sweep.store import DEFAULT_PATH, Store

out = Console()

Grid = Annotated[str | None, typer.Option(help="comma-separated values, one grid axis")]
#: The grid axes of a run, in the order the runs table shows them.
AXES = ("init", "activation", "depth", "width", "lr", "optimizer", "seed")
StorePath = Annotated[Path, typer.Option("--store", help="the SQLite file of results")]


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
    executor: Annotated[str, typer.Option(help="where groups train: local, or ray (the "
                                                "'ray' extra)")] = "local",
    address: Annotated[str | None, typer.Option(
        help="ray: the cluster, auto or HOST:PORT; default: start one here")] = None,
    cpus_per_group: Annotated[float | None, typer.Option(help="ray: CPUs per group")] = None,
    gpus_per_group: Annotated[float | None, typer.Option(
        help="ray: GPUs per group, e.g. 0.25 (with --device cuda)")] = None,
    max_retries: Annotated[int | None, typer.Option(
        help="ray: reruns of a group whose worker died")] = None,
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
        options = {k: v for k, v in dict(address=address, cpus_per_group=cpus_per_group,
                                         gpus_per_group=gpus_per_group,
                                         max_retries=max_retries).items() if v is not None}
        sweep_id = run_sweep(parsed, store, executor=executor, device=device,
                             progress=progress, retry_failed=retry_failed, **options)
    except (ValueError, LookupError, ImportError, OSError) as exc:  # SpecError is a ValueError
        raise fail(exc) from None
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
            else:
                _show(_sweeps_table(db) if sweep_id is None else _runs_table(db, sweep_id))
    except (FileNotFoundError, LookupError, ValueError) as exc:
        raise fail(exc) from None


def _show(table: Table) -> None:
    """Print ``table``; to a pipe or file at its natural width, not rich's default 80."""
    if out.is_terminal:
        out.print(table)
        return
    width = Measurement.get(out, out.options.update_width(10_000), table).maximum
    Console(width=width).print(table)


def _sweeps_table(db: Store) -> Table:
    table = Table(title=f"sweeps in {db.path}", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", no_wrap=True)
    table.add_column("name")
    table.add_column("created (UTC)", no_wrap=True)
    table.add_column("runs", justify="right")
    table.add_column("status")
    for s in db.sweeps():
        c = dict(s.counts)
        c["to do"] = c.pop("pending", 0) + c.pop("running", 0)
        status = ", ".join(f"{n} {name}" for name, n in c.items() if n)
        table.add_row(s.id, s.name, s.created[:16].replace("T", " "), str(s.total), status)
    return table


def _last(points: list[tuple[int, float]] | None) -> str:
    if not points:
        return ""
    value = points[-1][1]
    return f"{value:.3f}" if math.isfinite(value) else str(value)


def _runs_table(db: Store, sweep_id: str) -> Table:
    """The runs of one sweep; of the grid axes, only those that vary get a column."""
    rows = db.runs(sweep_id)
    series = db.series(r.id for r in rows)
    varying = [axis for axis in AXES if len({getattr(r.config, axis) for r in rows}) > 1]
    table = Table(title=f"runs of sweep {sweep_id}", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in (*(varying or ["init", "activation"]), "status", "loss", "val acc", "test acc",
                   "steps to target", "s", "engine"):
        table.add_column(column, no_wrap=True)
    for r in rows:
        s = series.get(r.id, {})
        table.add_row(*(f"{getattr(r.config, a):g}" if a == "lr" else str(getattr(r.config, a))
                        for a in varying or ["init", "activation"]),
                      r.status, _last(s.get("loss")), _last(s.get("val_acc")),
                      _last(s.get("test_acc")),
                      "" if r.steps_to_target is None else str(r.steps_to_target),
                      "" if r.seconds is None else f"{r.seconds:.1f}", r.engine or "")
    return table
