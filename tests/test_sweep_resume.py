"""Sweeps end to end on real data: resume after ``kill -9`` of a running sweep process,
idempotent reruns, and a crashing config isolated as ``failed`` while the others finish."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from initlab import activations
from initlab.sweep import Store, SweepSpec, run_sweep

# The command module registers `sweep` on the app when imported; run it as `initlab` does.
DRIVER = "import initlab.cli.sweep; from initlab.cli._app import app; app(prog_name='initlab')"
# Six shapes (depths) x 2 inits x 2 activations: six groups of four runs, each group a
# fraction of a second on two CPU cores, so a kill lands between commits.
GRID = ["--dataset", "digits", "--inits", "he_normal,xavier_normal", "--activations",
        "relu,tanh", "--depths", "1,2,3,4,5,6", "--width", "32", "--steps", "150",
        "--batch-size", "64", "--eval-every", "50", "--no-progress"]
RUNS = 24
DEADLINE_S = 120  # a guard against a hung driver, not a timing assertion
# One intra-op thread per driver: tiny matmuls gain nothing from more, and on a loaded
# 2-core machine OpenMP threads waiting for each other make every op ~50x slower.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def finished_runs(db: Path) -> dict[str, str]:
    """config_key -> finished timestamp of every run already committed as finished."""
    if not db.exists():
        return {}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        try:
            rows = conn.execute("SELECT config_key, finished FROM runs "
                                "WHERE status = 'finished'").fetchall()
        except sqlite3.OperationalError:  # the driver has not created the tables yet
            return {}
    return dict(rows)


def test_rerun_after_kill_9_resumes_without_redoing_or_duplicating(tmp_path):
    db = tmp_path / "runs.db"
    command = [sys.executable, "-c", DRIVER, "sweep", *GRID, "--store", str(db)]
    log = tmp_path / "driver.log"
    with log.open("w") as sink:
        driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=sink, env=ENV)
    deadline = time.monotonic() + DEADLINE_S
    before: dict[str, str] = {}
    while not before:
        assert time.monotonic() < deadline, "no run finished before the deadline"
        try:  # wait a little for the driver; it must not exit before we kill it
            driver.wait(timeout=0.02)
        except subprocess.TimeoutExpired:
            before = finished_runs(db)
            continue
        pytest.fail(f"the sweep ended before it was killed: {log.read_text()}")
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert driver.returncode == -signal.SIGKILL
    with Store(db, readonly=True) as store:
        interrupted = [r.status for r in store.runs()]
    assert len(interrupted) == RUNS
    assert interrupted.count("finished") < RUNS, "the kill came after the last commit"

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=DEADLINE_S, env=ENV)
    assert rerun.returncode == 0, rerun.stderr

    with Store(db, readonly=True) as store:
        (sweep,) = store.sweeps()
        rows = store.runs(sweep.id)
        expected = {c.key() for c in SweepSpec.parse(
            {"dataset": "digits", "inits": "he_normal,xavier_normal", "activations": "relu,tanh",
             "depths": "1,2,3,4,5,6", "widths": 32, "steps": 150, "batch_size": 64,
             "eval_every": 50}).expand()}
        assert sweep.id == store.find_sweep()
        series = store.series(r.id for r in rows)
    assert len(rows) == RUNS
    assert {r.config_key for r in rows} == expected
    assert {r.status for r in rows} == {"finished"}
    after = {r.config_key: r.finished for r in rows}
    assert {k: after[k] for k in before} == before, "runs finished before the kill were rerun"
    # Every run has exactly its own metrics: 150 steps logged every 10 -> 15 losses.
    assert all(len(series[r.id]["loss"]) == len(series[rows[0].id]["loss"]) > 0 for r in rows)


class Exploding(nn.Module):
    """An activation whose forward pass raises: a config that crashes inside training."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("exploding activation called")


def test_a_crashing_config_is_stored_failed_and_the_others_finish(tmp_path):
    activations.register("exploding_for_test", Exploding())
    spec = SweepSpec.parse({"dataset": "digits", "inits": "he_normal",
                            "activations": "relu,exploding_for_test", "depths": "1,2",
                            "widths": 16, "steps": 20, "eval_every": 10})
    with Store(tmp_path / "runs.db") as store:
        sweep_id = run_sweep(spec, store, progress=False)
        runs = {(r.config.activation, r.config.depth): r for r in store.runs(sweep_id)}
    assert {k: r.status for k, r in runs.items()} == {
        ("relu", 1): "finished", ("relu", 2): "finished",
        ("exploding_for_test", 1): "failed", ("exploding_for_test", 2): "failed"}
    for depth in (1, 2):
        error = runs[("exploding_for_test", depth)].error
        assert "Traceback" in error and "exploding activation called" in error


def test_running_the_same_spec_again_trains_nothing(tmp_path):
    spec = SweepSpec.parse({"dataset": "digits", "inits": "he_normal,xavier_normal",
                            "activations": "tanh", "depths": 1, "widths": 16, "steps": 20,
                            "eval_every": 10})
    path = tmp_path / "runs.db"
    first = run_sweep(spec, path, progress=False)
    with Store(path, readonly=True) as store:
        stamps = {r.config_key: (r.started, r.finished) for r in store.runs(first)}
    assert run_sweep(spec, path, progress=False) == first
    with Store(path, readonly=True) as store:
        assert {r.config_key: (r.started, r.finished) for r in store.runs(first)} == stamps
        assert {r.status for r in store.runs(first)} == {"finished"}
