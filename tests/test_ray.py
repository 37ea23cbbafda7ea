"""The Ray executor on a real local Ray cluster (two CPUs): the same numbers as the local
executor, a worker process killed mid-task retried without losing or duplicating runs, a
crashing config stored as failed while the others finish, and pointed errors.

Custom activations defined here travel to the Ray workers the way a user's do: the
executor ships the driver's registry entries with each task, and this module is pickled
by value (the workers cannot import a pytest test module by name).
"""

import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from initlab import activations  # noqa: E402
from initlab import data as datasets  # noqa: E402
from initlab.sweep import Store, SweepSpec, run_sweep  # noqa: E402
from initlab.sweep.ray_executor import RayExecutor  # noqa: E402

pytestmark = pytest.mark.ray

# Two shapes (depths) -> two groups, two Ray tasks of four runs each; a few dozen steps of
# a width-16 MLP on the synthetic teacher task: a second or two per group.
GRID = {"dataset": "synthetic", "inits": "he_normal,xavier_normal", "depths": "1,2",
        "widths": 16, "steps": 40, "batch_size": 32, "eval_every": 20, "log_every": 10}


@pytest.fixture(scope="session")
def cluster():
    """A local two-CPU Ray cluster for the whole session, no dashboard, no usage stats."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def stored(path: Path) -> dict[str, object]:
    """config key -> RunResult of every completed run in the store at ``path``."""
    with Store(path, readonly=True) as store:
        return {r.config.key(): r for r in store.results(store.find_sweep())}


def labels(result) -> tuple:
    """What a run was and how it ended: must be identical on Ray and locally."""
    return (result.status, result.engine, result.steps_to_target, result.diverged_at,
            result.error, [e["step"] for e in result.evals], [s for s, _ in result.losses])


def values(result) -> list[float]:
    """Every number a run measured, flattened, without its wall-clock time."""
    evals = [v for e in result.evals for k, v in sorted(e.items()) if k != "step"]
    stats = [s[k] for s in result.layer_stats for k in ("act_std", "grad_norm")]
    return [loss for _, loss in result.losses] + evals + stats


def test_ray_gives_the_numbers_of_the_local_executor(cluster, tmp_path):
    spec = SweepSpec.parse({**GRID, "activations": "relu,tanh"})
    run_sweep(spec, tmp_path / "local.db", progress=False)
    run_sweep(spec, tmp_path / "ray.db", executor=RayExecutor(), progress=False)
    local, on_ray = stored(tmp_path / "local.db"), stored(tmp_path / "ray.db")
    assert set(local) == set(on_ray) == {c.key() for c in spec.expand()}
    assert {r.status for r in on_ray.values()} == {"finished"}
    # Same code, seeds and data. A Ray worker runs torch with fewer threads than the driver,
    # so threaded reductions may sum in another order: equal to float32 rounding (1e-5
    # relative, the engine's own equivalence tolerance), not necessarily to the last bit.
    for key, result in local.items():
        assert labels(on_ray[key]) == labels(result), result.config.label()
        assert values(on_ray[key]) == pytest.approx(values(result), rel=1e-5, abs=1e-7)


class DiesOnce(nn.Module):
    """ReLU, except that the first process to call it (a Ray worker) writes its pid to
    ``marker`` and kills itself with SIGKILL: a real worker death in the middle of a task."""

    def __init__(self, marker: Path, driver_pid: int):
        super().__init__()
        self.marker, self.driver_pid = marker, driver_pid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if os.getpid() == self.driver_pid:
            raise RuntimeError("DiesOnce ran in the test process, not in a Ray worker")
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:  # a worker already died: behave as ReLU
            return torch.relu(x)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable: the process was killed")


def test_a_worker_killed_mid_task_is_retried_and_every_run_is_stored_once(cluster, tmp_path):
    marker = tmp_path / "killed-worker.pid"
    activations.register("dies_once_for_ray_test", DiesOnce(marker, os.getpid()))
    spec = SweepSpec.parse({**GRID, "inits": "he_normal", "seeds": "0,1",
                            "activations": "relu,dies_once_for_ray_test"})
    db = tmp_path / "runs.db"
    run_sweep(spec, db, executor=RayExecutor(max_retries=1), progress=False)

    assert marker.exists(), "no worker was killed"
    assert int(marker.read_text()) != os.getpid()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT config_key, COUNT(*), MIN(status), MAX(status) FROM runs "
                            "GROUP BY config_key").fetchall()
        losses = conn.execute("SELECT COUNT(*) FROM metrics WHERE kind = 'loss' "
                              "GROUP BY run").fetchall()
    assert {key for key, *_ in rows} == {c.key() for c in spec.expand()}
    assert {(n, lo, hi) for _, n, lo, hi in rows} == {(1, "finished", "finished")}
    # 40 steps, a loss logged at 0, 10, 20, 30 and at the last step 39: five per run, once.
    assert sorted(n for (n,) in losses) == [5] * len(rows)
    # The rerun computed what ReLU computes: he_normal draws the same weights for either
    # activation name, so each run's losses and evaluations equal those of its ReLU twin.
    by_name = {(r.config.activation, r.config.depth, r.config.seed): r
               for r in stored(db).values()}
    for (name, depth, seed), result in by_name.items():
        if name != "relu":
            twin = by_name[("relu", depth, seed)]
            assert (result.losses, result.evals) == (twin.losses, twin.evals)


def test_a_group_whose_worker_dies_past_max_retries_is_stored_failed(cluster, tmp_path):
    marker = tmp_path / "killed-worker.pid"
    activations.register("dies_once_unretried", DiesOnce(marker, os.getpid()))
    spec = SweepSpec.parse({**GRID, "inits": "he_normal", "seeds": "0,1",
                            "activations": "dies_once_unretried"})
    db = tmp_path / "runs.db"
    run_sweep(spec, db, executor=RayExecutor(max_retries=0), progress=False)
    # Two groups (depths 1 and 2) of two runs: the worker of the first group to train
    # died and was not retried; the other group trained (the marker existed by then).
    groups: dict[int, list[tuple]] = {}
    for result in stored(db).values():
        groups.setdefault(result.config.depth, []).append((result.status, result.error))
    outcomes = sorted({status for status, _ in runs} for runs in groups.values())
    assert outcomes == [{"failed"}, {"finished"}], groups
    (died,) = [runs for runs in groups.values() if runs[0][0] == "failed"]
    assert all("WorkerCrashedError" in error for _, error in died)


class Exploding(nn.Module):
    """An activation whose forward pass raises: a config that crashes inside training."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("exploding activation called on a Ray worker")


def test_a_crashing_config_is_stored_failed_and_the_others_finish(cluster, tmp_path):
    activations.register("exploding_for_ray_test", Exploding())
    spec = SweepSpec.parse({**GRID, "inits": "he_normal",
                            "activations": "relu,exploding_for_ray_test"})
    run_sweep(spec, tmp_path / "runs.db", executor=RayExecutor(), progress=False)
    results = stored(tmp_path / "runs.db")
    assert set(results) == {c.key() for c in spec.expand()}
    for result in results.values():
        if result.config.activation == "relu":
            assert (result.status, result.error) == ("finished", None)
            assert len(result.losses) == 5
        else:
            assert result.status == "failed"
            assert "Traceback" in result.error
            assert "exploding activation called on a Ray worker" in result.error


@pytest.fixture(scope="module")
def synthetic():
    return datasets.load("synthetic", seed=0)


@pytest.mark.parametrize(("options", "device", "message"), [
    ({"cpus_per_group": 0}, "cpu", "cpus_per_group = 0: must be > 0"),
    ({"gpus_per_group": 1.5}, "cpu", "gpus_per_group = 1.5"),
    ({"max_retries": -1}, "cpu", "max_retries = -1"),
    ({}, "cuda", "set gpus_per_group (--gpus-per-group)"),
    ({"gpus_per_group": 0.25}, "cuda:1", "on Ray give 'cuda'"),
    ({"gpus_per_group": 0.25}, "cpu", "the device is 'cpu'"),
])
def test_bad_options_are_refused_before_anything_runs(options, device, message, synthetic):
    with pytest.raises(ValueError, match=re.escape(message)):
        next(RayExecutor(**options).map([], synthetic, device=device), None)


def test_a_group_larger_than_every_node_is_refused(cluster, synthetic):
    (config,) = SweepSpec.parse({**GRID, "inits": "he_normal", "depths": 1,
                                 "activations": "relu"}).expand()
    with pytest.raises(ValueError, match=r"asks Ray for 64 CPU .*\(nodes: 2 CPU, 0 GPU\)"):
        next(RayExecutor(cpus_per_group=64).map([[config]], synthetic))


def test_without_ray_the_executor_says_how_to_install_it():
    # A fresh interpreter in which `import ray` fails, as on a machine without the extra.
    script = ("import sys; sys.modules['ray'] = None\n"
              "from initlab.sweep import get_executor\n"
              "try:\n    get_executor('ray')\nexcept ImportError as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pip install 'initlab[ray]'" in done.stdout
