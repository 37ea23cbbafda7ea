"""The sweep driver: spec -> runs still to do -> groups -> executor -> store, as they finish.

``run_sweep`` is the only writer to the store. It loads the data set once, expands the
grid, adds the sweep (idempotent: the spec's hash is its id), skips runs already
``finished`` or ``diverged`` (and ``failed`` unless ``retry_failed``), groups the rest
with ``engine.group_key`` and stores each group's results in one transaction the
moment the executor yields them. Killing the driver at any point and running the same
spec again resumes: interrupted groups are still ``pending``/``running`` and run again;
nothing stored is redone or duplicated.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from initlab import data as datasets
from initlab.data import Dataset
from initlab.sweep.engine import RunResult, group_key
from initlab.sweep.executors import Executor, Group, get_executor
from initlab.sweep.spec import RunConfig, SpecError, SweepSpec
from initlab.sweep.store import DEFAULT_PATH, Store


def group_configs(configs: list[RunConfig]) -> list[Group]:
    """``configs`` split by ``engine.group_key``, groups and members in first-seen order."""
    groups: dict[tuple, Group] = {}
    for config in configs:
        groups.setdefault(group_key(config), []).append(config)
    return list(groups.values())


def load_data(spec: SweepSpec) -> Dataset:
    """The sweep's data set, split by ``data_seed``; a SpecError if the batch cannot fit.

    A batch larger than the training split is refused, not clamped: clamping would train
    something other than what the spec says.
    """
    dataset = datasets.load(spec.dataset, data_dir=spec.data_dir, seed=spec.data_seed,
                            limit=spec.limit)
    n_train = len(dataset.y_train)
    if spec.batch_size > n_train:
        raise SpecError([f"batch_size = {spec.batch_size}: larger than the {n_train} training "
                         f"examples of {dataset.name!r}; use a batch_size of at most {n_train}"
                         + (" or raise limit" if spec.limit else "")])
    return dataset


def run_sweep(spec: SweepSpec | str | Path, store: Store | str | Path | None = None, *,
              executor: str | Executor = "local", device: str = "cpu", progress: bool = True,
              retry_failed: bool = False, console: Console | None = None,
              **executor_options: object) -> str:
    """Run every run of ``spec`` not yet stored; return the sweep id.

    Args:
        spec: a SweepSpec, or the path of its YAML file.
        store: a Store or the path of its file (default ``./initlab-runs/initlab.db``).
        executor: an Executor or the name of one (``"local"``); ``executor_options`` build it.
        device: where the runs train (``"cpu"``, ``"cuda"``, ...).
        progress: show a rich bar for the sweep and a line per finished group.
        retry_failed: run ``failed`` runs again (``finished`` and ``diverged`` are final).
        console: where progress goes (default: rich's console on stdout).
    """
    torch.set_flush_denormal(True)  # deep badly-initialized nets crawl through denormals
    spec = spec if isinstance(spec, SweepSpec) else SweepSpec.from_yaml(spec)
    if isinstance(executor, str):
        executor = get_executor(executor, **executor_options)
    dataset = load_data(spec)
    configs = spec.expand(len(dataset.y_train))
    with _opened(store) as db:
        sweep_id = db.add_sweep(spec, configs)
        groups = group_configs(db.todo(sweep_id, retry_failed=retry_failed))
        with _display(spec, len(configs), groups, progress, console) as (shown, stepped):
            results = executor.map(groups, dataset, device=device, on_steps=stepped,
                                   on_start=lambda group: db.mark_running(sweep_id, group))
            for group_results in results:
                db.record(sweep_id, group_results)
                shown(group_results)
    return sweep_id


@contextmanager
def _opened(store: Store | str | Path | None) -> Iterator[Store]:
    if isinstance(store, Store):
        yield store
        return
    with Store(DEFAULT_PATH if store is None else store) as db:
        yield db


def describe_group(results: list[RunResult]) -> str:
    """One line about a finished group: its shape, statuses, engine and time."""
    c = results[0].config
    statuses = Counter(r.status for r in results)
    engines = "+".join(sorted({r.engine for r in results}))
    seconds = math.fsum(r.seconds for r in results if math.isfinite(r.seconds))
    counts = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
    return (f"{len(results)} runs of {c.model} depth {c.depth} width {c.width} "
            f"({c.optimizer}, {c.steps} steps): {counts}; {engines}, {seconds:.1f} s")


@contextmanager
def _display(spec: SweepSpec, total: int, groups: list[Group], enabled: bool,
             console: Console | None) -> Iterator:
    """Two callables: one shows each finished group, one counts trained run-steps; rich bars
    over the sweep's runs and its training steps when enabled."""
    todo = sum(len(g) for g in groups)
    if not enabled:
        yield (lambda results: None), None
        return
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=console)
    done_before = f" ({total - todo} of {total} already stored)" if todo < total else ""
    with bar:
        runs = bar.add_task(f"{spec.title()}{done_before}: runs", total=todo)
        steps = bar.add_task("  training steps (runs x steps)",
                             total=sum(c.steps for g in groups for c in g))
        count = iter(range(1, len(groups) + 1))
        finished_steps = 0

        def show(results: list[RunResult]) -> None:
            nonlocal finished_steps
            bar.console.print(f"  group {next(count)}/{len(groups)}: {describe_group(results)}")
            bar.advance(runs, len(results))
            finished_steps += sum(r.config.steps for r in results)  # executors without on_steps
            bar.update(steps, completed=max(bar.tasks[steps].completed, finished_steps))

        yield show, lambda n: bar.advance(steps, n)
