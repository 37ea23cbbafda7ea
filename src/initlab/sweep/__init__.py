"""Sweeps: a validated grid of runs, trained group by group, stored in SQLite as they finish.

``SweepSpec`` (a YAML file or CLI flags) expands to ``RunConfig`` runs; ``run_sweep``
groups them for the vectorized engine, hands the groups to an executor (``"local"``;
Ray with the ``ray`` extra) and writes each result to a ``Store``; rerunning the same
spec resumes. See ``docs/sweeps.md``.
"""

from initlab.sweep.engine import RunResult, group_key, train_group, train_reference
from initlab.sweep.executors import EXECUTORS, Executor, LocalExecutor, get_executor
from initlab.sweep.runner import run_sweep
from initlab.sweep.spec import RunConfig, SpecError, SweepSpec
from initlab.sweep.store import DEFAULT_PATH, Store

__all__ = [
    "DEFAULT_PATH", "EXECUTORS", "Executor", "LocalExecutor", "RunConfig", "RunResult",
    "SpecError", "Store", "SweepSpec", "get_executor", "group_key", "run_sweep", "train_group",
    "train_reference",
]
