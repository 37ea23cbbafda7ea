"""Sweeps on a Ray cluster: one Ray task per group of runs, results streamed to the driver.

``RayExecutor`` is the ``"ray"`` executor of :mod:`initlab.sweep.executors`
(``initlab sweep SPEC --executor ray --address auto``). For each sweep it

* puts the data set in Ray's object store once (``ray.put``); every task gets the
  reference, so a node fetches the tensors once, not once per task;
* submits one task per group of configs, the groups ``engine.group_key`` forms for
  the vectorized engine (never one task per tiny model). A task carries the group's
  ``RunConfig``s, the data set reference, the driver's registry entries of the
  activations the group names (so an activation registered with
  ``initlab.activations.register`` in the driver exists in the worker too) and the
  device; it returns the group's ``RunResult``s;
* yields each group's results as its task finishes (``ray.wait``), so the driver, the
  store's only writer, stores them as they come.

A task computes its group with ``executors.train_group_safely``, exactly as the local
executor does, so the numbers are the same and a config that raises comes back
``failed`` with its traceback while the others finish. A worker process that dies
(killed, out of memory, node lost) is a system failure: Ray runs the task again, up to
``max_retries`` times; a group whose task still fails comes back as ``failed`` results
carrying Ray's error, and the rest of the sweep goes on.

Ray itself comes with the ``ray`` extra: ``pip install 'initlab[ray]'``.
See ``docs/ray.md``.
"""

from __future__ import annotations

import dataclasses
import math
import traceback
from collections.abc import Iterator, Sequence

import torch

from initlab import activations
from initlab.activations import Activation
from initlab.data import Dataset
from initlab.sweep.engine import RunResult
from initlab.sweep.executors import (
    EXECUTORS,
    Group,
    OnStart,
    OnSteps,
    failed,
    train_group_safely,
)

try:
    import ray
    from ray.exceptions import RayError
except ImportError as exc:  # the optional dependency is missing: say how to get it
    raise ImportError("the 'ray' executor needs the 'ray' package, which is not installed: "
                      "pip install 'initlab[ray]'") from exc

#: Times Ray reruns a group whose worker process died before giving up on it.
DEFAULT_MAX_RETRIES = 3


def _register(entries: Sequence[Activation]) -> None:
    """Make this process's activation registry hold ``entries`` (the driver's)."""
    for entry in entries:
        facts = {f.name: getattr(entry, f.name) for f in dataclasses.fields(entry)
                 if f.name not in ("name", "fn")}
        activations.register(entry.name, entry.fn, **facts)


def _train(group: Group, data: Dataset, entries: Sequence[Activation], device: str,
           threads: int) -> list[RunResult]:
    """The body of one Ray task: train ``group`` on ``data`` in a worker process.

    The worker is set up as the driver is for a local sweep: the driver's activation
    entries, flushed denormals (as ``run_sweep`` sets), one torch thread per CPU Ray
    gave the task.
    """
    _register(entries)
    torch.set_flush_denormal(True)
    torch.set_num_threads(threads)
    return train_group_safely(group, data, device=device)


_train_task = ray.remote(_train)


def group_activations(group: Group) -> list[Activation]:
    """The driver's registry entries of the activations ``group`` names, one per name."""
    return list({c.activation: activations.get(c.activation) for c in group}.values())


def task_name(group: Group) -> str:
    """How a group's task is named in Ray (dashboard, logs): size and shape."""
    c = group[0]
    return f"initlab: {len(group)} runs of {c.model} depth {c.depth} width {c.width}"


class RayExecutor:
    """Trains each group of runs as one Ray task; yields each group's results as it finishes.

    Args:
        address: the cluster to join: ``"auto"`` (the one ``ray start`` started on this
            machine), ``"HOST:PORT"`` of its head node, or ``None`` to start a local
            cluster on this machine. Ignored when Ray is already initialized in this
            process (the existing connection is used).
        cpus_per_group: CPUs Ray reserves for each task; the task trains with that many
            torch threads (at least one).
        gpus_per_group: GPUs Ray reserves for each task; a fraction shares a GPU
            (``0.25``: four groups per GPU). Needs ``device="cuda"``, and the other way
            round.
        max_retries: times Ray reruns a task whose worker process died.
    """

    def __init__(self, address: str | None = None, *, cpus_per_group: float = 1,
                 gpus_per_group: float = 0, max_retries: int = DEFAULT_MAX_RETRIES):
        if not cpus_per_group > 0:
            raise ValueError(f"cpus_per_group = {cpus_per_group!r}: must be > 0")
        if gpus_per_group < 0 or (gpus_per_group > 1 and not float(gpus_per_group).is_integer()):
            raise ValueError(f"gpus_per_group = {gpus_per_group!r}: must be 0, a fraction "
                             "between 0 and 1 (GPU shared by groups) or a whole number")
        if max_retries < 0:
            raise ValueError(f"max_retries = {max_retries!r}: must be >= 0")
        self.address = address
        self.cpus_per_group = cpus_per_group
        self.gpus_per_group = gpus_per_group
        self.max_retries = max_retries

    def map(self, groups: Sequence[Group], data: Dataset, *, device: str = "cpu",
            on_start: OnStart | None = None,
            on_steps: OnSteps | None = None) -> Iterator[list[RunResult]]:
        """Submit every group as a Ray task and yield their results as tasks finish.

        ``on_start(group)`` is called in the driver as each group is submitted. Steps train
        on the workers, so ``on_steps`` is not called: progress comes as groups finish. If
        the caller stops iterating early, the tasks not yet finished are cancelled.
        """
        self._check_device(device)
        if not groups:
            return
        self.connect()
        self._check_fits()
        data_ref = ray.put(data)
        pending = {}
        try:
            for group in groups:
                if on_start is not None:
                    on_start(group)
                pending[self._submit(group, data_ref, device)] = group
            while pending:
                (ready,), _ = ray.wait(list(pending), num_returns=1)
                yield self._collect(ready, pending.pop(ready))
        finally:
            for ref in pending:
                ray.cancel(ref)

    def connect(self) -> None:
        """Join the cluster at ``address`` (or start a local one) unless already connected."""
        if not ray.is_initialized():
            ray.init(address=self.address)

    def _submit(self, group: Group, data_ref: ray.ObjectRef, device: str) -> ray.ObjectRef:
        threads = max(1, math.floor(self.cpus_per_group))
        task = _train_task.options(name=task_name(group), num_cpus=self.cpus_per_group,
                                   num_gpus=self.gpus_per_group, max_retries=self.max_retries,
                                   retry_exceptions=False)
        return task.remote(group, data_ref, group_activations(group), device, threads)

    @staticmethod
    def _collect(ref: ray.ObjectRef, group: Group) -> list[RunResult]:
        """The task's results; if Ray could not produce them (its worker died more than
        ``max_retries`` times, its arguments could not be unpickled), each config comes
        back ``failed`` with Ray's error and an unknown training time."""
        try:
            return ray.get(ref)
        except RayError as exc:  # its message carries the worker's traceback, if any
            error = "".join(traceback.format_exception_only(exc))
            return [failed(config, error, math.nan) for config in group]

    def _check_device(self, device: str) -> None:
        """A task trains on the GPU Ray assigns it: ``cuda`` goes with ``gpus_per_group``."""
        if device.startswith("cuda") and device != "cuda":
            raise ValueError(f"device {device!r}: on Ray give 'cuda'; each task trains on the "
                             "GPU Ray assigns to it")
        if device == "cuda" and not self.gpus_per_group:
            raise ValueError("device 'cuda' needs a GPU share per group: set gpus_per_group "
                             "(--gpus-per-group), e.g. 0.25 for four groups per GPU")
        if device != "cuda" and self.gpus_per_group:
            raise ValueError(f"gpus_per_group = {self.gpus_per_group!r} reserves GPU for each "
                             f"group but the device is {device!r}: train on 'cuda' "
                             "(--device cuda) or drop the GPU share")

    def _check_fits(self) -> None:
        """Refuse a request no node of the cluster can hold: Ray would wait for it forever."""
        need = {"CPU": self.cpus_per_group, "GPU": self.gpus_per_group}
        nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
        if any(all(have.get(k, 0) >= v for k, v in need.items()) for have in nodes):
            return
        sizes = "; ".join(f"{have.get('CPU', 0):g} CPU, {have.get('GPU', 0):g} GPU"
                          for have in nodes)
        raise ValueError(f"each group asks Ray for {self.cpus_per_group:g} CPU and "
                         f"{self.gpus_per_group:g} GPU, but no node of the cluster has that "
                         f"much (nodes: {sizes}); lower --cpus-per-group/--gpus-per-group")


EXECUTORS["ray"] = RayExecutor
