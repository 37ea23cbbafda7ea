"""Where groups of runs are computed: the ``Executor`` protocol and the local executor.

An executor takes the sweep's groups (configs the vectorized engine trains together,
see ``engine.group_key``) and yields each group's results as the group finishes, in
whatever order groups finish. It never writes to the store: results travel back to the
driver, the store's only writer.

Every executor computes a group with :func:`train_group_safely`, so a crash inside one
group loses nothing else: the group is retried config by config with the reference loop,
and a config that still raises comes back as a ``failed`` RunResult carrying its
traceback.

Executors are looked up by name in :data:`EXECUTORS` (``get_executor("local")``). An
executor registers by adding a factory there; one that lives in its own module and needs
an optional package is listed in :data:`EXTRAS`, imported on first use: the Ray executor
(``initlab.sweep.ray_executor``) does ``EXECUTORS["ray"] = RayExecutor`` on import.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from initlab._names import unknown
from initlab.data import Dataset
from initlab.sweep.engine import RunResult, train_group, train_reference
from initlab.sweep.spec import RunConfig

log = logging.getLogger(__name__)

Group = list[RunConfig]
OnStart = Callable[[Group], None]
OnSteps = Callable[[int], None]


class Executor(Protocol):
    """Computes groups of runs and yields each group's results as it finishes."""

    def map(self, groups: Sequence[Group], data: Dataset, *, device: str = "cpu",
            on_start: OnStart | None = None,
            on_steps: OnSteps | None = None) -> Iterator[list[RunResult]]:
        """Train every group on ``data``; yield one list of RunResults per group, in the
        order groups finish. ``on_start(group)`` is called in the driver when a group is
        handed to the compute (started locally, or submitted to a cluster);
        ``on_steps(n)`` with the run-steps just trained, by executors that train in the
        driver's process (others report progress only as groups finish)."""
        ...


def failed(config: RunConfig, error: str, seconds: float) -> RunResult:
    """The record of a run that raised: status ``failed``, no metrics, the traceback."""
    return RunResult(config=config, status="failed", losses=[], evals=[], steps_to_target=None,
                     diverged_at=None, layer_stats=[], seconds=seconds, engine="reference",
                     error=error)


def train_reference_safely(config: RunConfig, data: Dataset, *,
                           device: str = "cpu") -> RunResult:
    """``train_reference``; a config that raises becomes a ``failed`` result."""
    start = time.perf_counter()
    try:
        return train_reference(config, data, device=device)
    except Exception:
        return failed(config, traceback.format_exc(), time.perf_counter() - start)


def train_group_safely(configs: Group, data: Dataset, *, device: str = "cpu",
                       on_steps: OnSteps | None = None) -> list[RunResult]:
    """``train_group``; if it raises, each config alone through the reference loop.

    One result per config, in the order of ``configs``, whatever happens inside.
    """
    try:
        return train_group(configs, data, device=device, progress=on_steps)
    except Exception as exc:
        log.warning("the vectorized engine raised on a group of %d runs (%s: %s); training "
                    "them one by one with the reference loop", len(configs),
                    type(exc).__name__, exc)
        return [train_reference_safely(c, data, device=device) for c in configs]


class LocalExecutor:
    """Trains the groups one after the other in this process."""

    def map(self, groups: Sequence[Group], data: Dataset, *, device: str = "cpu",
            on_start: OnStart | None = None,
            on_steps: OnSteps | None = None) -> Iterator[list[RunResult]]:
        for group in groups:
            if on_start is not None:
                on_start(group)
            yield train_group_safely(group, data, device=device, on_steps=on_steps)


#: Executor factories by name: ``EXECUTORS[name](**options)``.
EXECUTORS: dict[str, Callable[..., Executor]] = {"local": LocalExecutor}
#: Executors in a module of their own that needs an optional package:
#: name -> (the module, which registers the executor in EXECUTORS on import; the package
#: it needs; how to install it).
EXTRAS: dict[str, tuple[str, str, str]] = {
    "ray": ("initlab.sweep.ray_executor", "ray", "pip install 'initlab[ray]'"),
}


def get_executor(name: str = "local", **options: object) -> Executor:
    """The executor called ``name``, built with ``options``.

    A name of :data:`EXTRAS` is imported on first use; when its package is missing, the
    error says how to install it. Options the executor does not take are refused by name.
    """
    if name not in EXECUTORS and name in EXTRAS:
        module, package, install = EXTRAS[name]
        if importlib.util.find_spec(package) is None:
            raise ImportError(f"the {name!r} executor needs the {package!r} package, which is "
                              f"not installed: {install}")
        importlib.import_module(module)
    if name not in EXECUTORS:
        raise unknown("executor", name, [*EXECUTORS, *EXTRAS])
    factory = EXECUTORS[name]
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as exc:
        raise ValueError(f"the {name!r} executor does not take the options "
                         f"{', '.join(map(repr, options))}: {exc}") from None
    return factory(**options)
