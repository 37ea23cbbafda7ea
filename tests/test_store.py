"""The SQLite sweep store: WAL, round trips, uniqueness, atomic records, resume bookkeeping,
export. Real SQLite files in tmp_path; RunResults built directly from the engine's dataclass."""

import csv
import json
import math
import sqlite3

import pytest

from initlab.sweep.engine import RunResult
from initlab.sweep.spec import SweepSpec
from initlab.sweep.store import Store

SPEC = SweepSpec.parse({"dataset": "digits", "inits": "he_normal,xavier_normal",
                        "activations": "relu,tanh", "depths": 2, "widths": 8, "steps": 20,
                        "log_every": 10, "eval_every": 10})
CONFIGS = SPEC.expand()


def result(config, status="finished", *, loss=0.5, val_loss=0.4) -> RunResult:
    return RunResult(
        config=config, status=status,
        losses=[(0, 2.3), (10, loss)],
        evals=[{"step": 10, "train_acc": 0.5, "val_acc": 0.25, "test_acc": 0.125,
                "val_loss": val_loss},
               {"step": 20, "train_acc": 0.75, "val_acc": 0.5, "test_acc": 0.375,
                "val_loss": 0.3}],
        steps_to_target=20 if status == "finished" else None,
        diverged_at=10 if status == "diverged" else None,
        layer_stats=[{"phase": phase, "layer": i, "name": f"{i * 2}", "act_std": 1.0 + i,
                      "grad_norm": 0.5 * (i + 1)} for phase in ("init", "end") for i in range(3)],
        seconds=0.25, engine="vectorized",
        error="Traceback ... RuntimeError: boom" if status == "failed" else None)


def same(a: RunResult, b: RunResult) -> bool:
    """Field-wise equality where NaN equals NaN (SQLite stores NaN as NULL)."""
    def norm(x):
        if isinstance(x, float) and math.isnan(x):
            return "nan"
        if isinstance(x, dict):
            return {k: norm(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [norm(v) for v in x]
        return x
    return all(norm(getattr(a, f)) == norm(getattr(b, f)) for f in a.__dataclass_fields__)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "sub" / "runs.db") as db:
        yield db


def test_wal_mode_and_busy_timeout_are_on(store):
    assert store.pragma("journal_mode") == "wal"
    assert store.pragma("busy_timeout") == 30_000
    # WAL is a property of the file: a fresh plain connection sees it too.
    with sqlite3.connect(store.path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_round_trip_of_every_status_with_non_finite_values(store):
    sweep_id = store.add_sweep(SPEC, CONFIGS)
    written = [result(CONFIGS[0]),
               result(CONFIGS[1], "diverged", loss=math.inf, val_loss=math.nan),
               result(CONFIGS[2], "failed")]
    store.record(sweep_id, written)
    read = store.results(sweep_id)
    assert len(read) == 3
    for a, b in zip(written, read, strict=True):
        assert same(a, b), (a, b)
    assert math.isinf(read[1].losses[-1][1])
    assert math.isnan(read[1].evals[0]["val_loss"])


def test_adding_the_same_sweep_again_duplicates_nothing(store):
    first = store.add_sweep(SPEC, CONFIGS)
    second = store.add_sweep(SweepSpec.parse(SPEC.model_dump()), SPEC.expand())
    assert first == second == SPEC.key()
    assert len(store.sweeps()) == 1
    assert len(store.runs(first)) == len(CONFIGS)


def test_unique_sweep_and_config_key_is_enforced_by_sqlite(store):
    sweep_id = store.add_sweep(SPEC, CONFIGS)
    with sqlite3.connect(store.path) as raw, pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        raw.execute("INSERT INTO runs (sweep_id, config_key, config) VALUES (?, ?, '{}')",
                    (sweep_id, CONFIGS[0].key()))


def test_todo_reruns_pending_and_running_and_keeps_final_runs(store):
    sweep_id = store.add_sweep(SPEC, CONFIGS)
    store.mark_running(sweep_id, CONFIGS[:1])
    store.record(sweep_id, [result(CONFIGS[1]), result(CONFIGS[2], "diverged"),
                            result(CONFIGS[3], "failed")])
    assert store.todo(sweep_id) == [CONFIGS[0]]
    assert store.todo(sweep_id, retry_failed=True) == [CONFIGS[0], CONFIGS[3]]
    started = {r.config_key: r.started for r in store.runs(sweep_id)}
    assert started[CONFIGS[0].key()] is not None


def test_a_batch_of_results_is_one_transaction(store):
    sweep_id = store.add_sweep(SPEC, CONFIGS)
    broken = result(CONFIGS[1])
    broken.layer_stats[0]["phase"] = "middle"  # violates the CHECK constraint
    with pytest.raises(sqlite3.IntegrityError):
        store.record(sweep_id, [result(CONFIGS[0]), broken])
    assert {r.status for r in store.runs(sweep_id)} == {"pending"}
    assert store.series(r.id for r in store.runs(sweep_id)) == {}


def test_recording_a_run_again_replaces_its_metrics(store):
    sweep_id = store.add_sweep(SPEC, CONFIGS)
    store.record(sweep_id, [result(CONFIGS[0], "failed", loss=9.0)])
    store.record(sweep_id, [result(CONFIGS[0], loss=0.1)])
    (again,) = store.results(sweep_id)
    assert again.status == "finished"
    assert again.losses == [(0, 2.3), (10, 0.1)]
    assert again.error is None


def test_recording_a_config_outside_the_sweep_is_refused(store):
    sweep_id = store.add_sweep(SPEC, CONFIGS[:1])
    with pytest.raises(KeyError, match="not part of sweep"):
        store.record(sweep_id, [result(CONFIGS[1])])


def test_a_reader_sees_committed_runs_while_the_writer_holds_the_store(store):
    sweep_id = store.add_sweep(SPEC, CONFIGS)
    store.record(sweep_id, [result(CONFIGS[0])])
    with Store(store.path, readonly=True) as reader:
        assert [r.status for r in reader.runs(sweep_id)].count("finished") == 1
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.add_sweep(SPEC, CONFIGS)


def test_readonly_open_of_a_missing_store_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `initlab sweep` first"):
        Store(tmp_path / "none.db", readonly=True)


def test_find_sweep_by_id_prefix_name_and_closest(store):
    sweep_id = store.add_sweep(SPEC, CONFIGS)
    assert store.find_sweep(sweep_id[:5]) == sweep_id
    assert store.find_sweep(SPEC.title()) == sweep_id
    assert store.find_sweep() == sweep_id
    with pytest.raises(LookupError, match=f"did you mean '{sweep_id}'"):
        store.find_sweep(sweep_id[:-1] + "x")


def test_export_csv_has_a_row_per_run_with_config_and_last_metrics(store, tmp_path):
    sweep_id = store.add_sweep(SPEC, CONFIGS)
    store.record(sweep_id, [result(CONFIGS[0]), result(CONFIGS[1], "diverged")])
    path = tmp_path / "runs.csv"
    assert store.export(path, "csv", sweep_id) == len(CONFIGS)
    rows = list(csv.DictReader(path.open()))
    assert [r["config_key"] for r in rows] == [c.key() for c in CONFIGS]
    assert rows[0]["init"] == CONFIGS[0].init and rows[0]["status"] == "finished"
    assert float(rows[0]["last_val_acc"]) == 0.5
    assert rows[2]["status"] == "pending" and rows[2]["last_val_acc"] == ""


def test_export_json_is_strict_and_complete(store, tmp_path):
    sweep_id = store.add_sweep(SPEC, CONFIGS)
    store.record(sweep_id, [result(CONFIGS[0], "diverged", loss=math.inf, val_loss=math.nan)])
    path = tmp_path / "runs.json"
    store.export(path, "json")

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    doc = json.loads(path.read_text(), parse_constant=refuse)
    (sweep,) = doc["sweeps"]
    assert sweep["id"] == sweep_id and sweep["spec"]["steps"] == 20
    run = sweep["runs"][0]
    assert run["config"]["init"] == CONFIGS[0].init
    assert run["metrics"]["loss"] == [[0, 2.3], [10, None]]
    assert run["metrics"]["val_loss"][0] == [10, None]
    assert len(run["layer_stats"]) == 6


def test_export_format_error_names_the_closest(store, tmp_path):
    with pytest.raises(ValueError, match="did you mean 'csv'"):
        store.export(tmp_path / "x", "cvs")
