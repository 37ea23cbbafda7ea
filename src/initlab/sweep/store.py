"""Where sweep results live: one SQLite file (stdlib ``sqlite3``), WAL mode, busy timeout.

Tables::

    sweeps      id (the spec's key), name, spec JSON, created
    runs        id, sweep_id, config_key, config JSON, status, started, finished, seconds,
                engine, error, steps_to_target, diverged_at;
                UNIQUE(sweep_id, config_key)
    metrics     run, step, kind, value         kind: "loss" (train loss every log_every
                                               steps) and each eval field: "train_acc",
                                               "val_acc", "test_acc", "val_loss"
    layer_stats run, phase ("init" | "end"), layer, name, act_std, grad_norm

Run status: ``pending`` (created with its sweep), ``running`` (handed to an executor),
then one of the final ``finished``, ``diverged``, ``failed``. The driver process is the
only writer; readers (``initlab runs``, the report) may open the file at any time, WAL
lets them read while a sweep writes. Each result is written in one transaction with all
its metrics and layer stats, so a ``kill -9`` leaves every run either complete or still
``pending``/``running`` (rerun on resume), never half-written. SQLite stores NaN as
NULL; reads turn NULL values back into NaN.

Timestamps are ISO 8601 in UTC. ``started`` is when the driver handed the run to the
executor (for the local executor: when its group began training); ``seconds`` is the
engine's own measure of the run's training time.
"""

from __future__ import annotations

import csv
import json
import math
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from initlab._names import closest, unknown
from initlab.sweep.engine import RunResult
from initlab.sweep.spec import RunConfig, SweepSpec

DEFAULT_PATH = Path("initlab-runs") / "initlab.db"
#: Seconds a connection waits for a lock held by another connection before failing.
BUSY_TIMEOUT_S = 30.0
FINAL = ("finished", "diverged", "failed")
STATUSES = ("pending", "running", *FINAL)
SCHEMA_VERSION = 1

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS sweeps (
    id      TEXT PRIMARY KEY,
    name    TEXT NOT NULL,
    spec    TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id              INTEGER PRIMARY KEY,
    sweep_id        TEXT NOT NULL REFERENCES sweeps(id) ON DELETE CASCADE,
    config_key      TEXT NOT NULL,
    config          TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    started         TEXT,
    finished        TEXT,
    seconds         REAL,
    engine          TEXT,
    error           TEXT,
    steps_to_target INTEGER,
    diverged_at     INTEGER,
    UNIQUE (sweep_id, config_key)
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (sweep_id, status);
CREATE TABLE IF NOT EXISTS metrics (
    run   INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step  INTEGER NOT NULL,
    kind  TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run, kind, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS layer_stats (
    run       INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    phase     TEXT NOT NULL CHECK (phase IN ('init', 'end')),
    layer     INTEGER NOT NULL,
    name      TEXT NOT NULL,
    act_std   REAL,
    grad_norm REAL,
    PRIMARY KEY (run, phase, layer)
) WITHOUT ROWID;
PRAGMA user_version = {SCHEMA_VERSION};
"""


def now() -> str:
    """The current time, ISO 8601 in UTC with microseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)


@dataclass(frozen=True)
class SweepRow:
    """One stored sweep and how many of its runs are in each status."""

    id: str
    name: str
    spec: dict
    created: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class RunRow:
    """One stored run, without its metric series (see :meth:`Store.results`)."""

    id: int
    sweep_id: str
    config_key: str
    config: RunConfig
    status: str
    started: str | None
    finished: str | None
    seconds: float | None
    engine: str | None
    error: str | None
    steps_to_target: int | None
    diverged_at: int | None


class Store:
    """A sweep store in one SQLite file. ``Store(path)`` creates the file and its tables;
    ``Store(path, readonly=True)`` opens an existing one for reading only.

    Use one ``Store`` per process; only the sweep driver writes.
    """

    def __init__(self, path: str | Path = DEFAULT_PATH, *, readonly: bool = False):
        self.path = Path(path)
        if readonly:
            if not self.path.exists():
                raise FileNotFoundError(f"no sweep store at {self.path}: run `initlab sweep` "
                                        "first, or point --store at an existing file")
            uri = f"file:{self.path.resolve()}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S,
                                       isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self._db.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: a committed transaction survives a killed process (kill -9);
            # only an OS crash or power loss may roll back the last commits.
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        self._db.execute("PRAGMA foreign_keys = ON")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def pragma(self, name: str) -> object:
        """The value of ``PRAGMA name`` (e.g. ``journal_mode``, ``busy_timeout``)."""
        return self._db.execute(f"PRAGMA {name}").fetchone()[0]

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- writing (the driver) -------------------------------------------------------------

    def add_sweep(self, spec: SweepSpec, configs: Iterable[RunConfig]) -> str:
        """Create the sweep and a ``pending`` row per config, unless they exist; its id.

        Idempotent: the id is ``spec.key()``, rows are unique per (sweep, config key), so
        adding the same spec again finds the same sweep and creates no duplicates.
        """
        sweep_id = spec.key()
        rows = [(sweep_id, c.key(), c.model_dump_json()) for c in configs]
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO sweeps (id, name, spec, created) VALUES (?,?,?,?)",
                       (sweep_id, spec.title(), spec.model_dump_json(), now()))
            db.executemany("INSERT OR IGNORE INTO runs (sweep_id, config_key, config) "
                           "VALUES (?,?,?)", rows)
        return sweep_id

    def todo(self, sweep_id: str, *, retry_failed: bool = False) -> list[RunConfig]:
        """Configs still to run: ``pending`` and ``running`` (left by a killed driver), plus
        ``failed`` when ``retry_failed``. ``finished`` and ``diverged`` are final."""
        statuses = ["pending", "running"] + (["failed"] if retry_failed else [])
        return [row.config for row in self.runs(sweep_id, statuses=statuses)]

    def mark_running(self, sweep_id: str, configs: Iterable[RunConfig]) -> None:
        """Set ``configs`` to ``running``, started now, in one transaction."""
        stamp = now()
        with self._transaction() as db:
            db.executemany("UPDATE runs SET status = 'running', started = ? "
                           "WHERE sweep_id = ? AND config_key = ?",
                           [(stamp, sweep_id, c.key()) for c in configs])

    def record(self, sweep_id: str, results: Iterable[RunResult]) -> None:
        """Store ``results`` (their status, metrics and layer stats) in one transaction.

        A run recorded again (``--retry-failed``) has its old metrics replaced.
        """
        stamp = now()
        with self._transaction() as db:
            for result in results:
                self._record_one(db, sweep_id, result, stamp)

    @staticmethod
    def _record_one(db: sqlite3.Connection, sweep_id: str, r: RunResult, stamp: str) -> None:
        key = r.config.key()
        found = db.execute(
            "UPDATE runs SET status = ?, finished = ?, seconds = ?, engine = ?, error = ?, "
            "steps_to_target = ?, diverged_at = ?, started = COALESCE(started, ?) "
            "WHERE sweep_id = ? AND config_key = ? RETURNING id",
            (r.status, stamp, r.seconds, r.engine, r.error, r.steps_to_target, r.diverged_at,
             stamp, sweep_id, key)).fetchone()
        if found is None:
            raise KeyError(f"run {key} ({r.config.label()}) is not part of sweep {sweep_id}; "
                           "add the sweep with Store.add_sweep first")
        run = found[0]
        db.execute("DELETE FROM metrics WHERE run = ?", (run,))
        db.execute("DELETE FROM layer_stats WHERE run = ?", (run,))
        metrics = [(run, step, "loss", loss) for step, loss in r.losses]
        metrics += [(run, ev["step"], kind, value) for ev in r.evals
                    for kind, value in ev.items() if kind != "step"]
        db.executemany("INSERT INTO metrics (run, step, kind, value) VALUES (?,?,?,?)", metrics)
        db.executemany(
            "INSERT INTO layer_stats (run, phase, layer, name, act_std, grad_norm) "
            "VALUES (?,?,?,?,?,?)",
            [(run, s["phase"], s["layer"], s["name"], s["act_std"], s["grad_norm"])
             for s in r.layer_stats])

    # -- reading ---------------------------------------------------------------------------

    def sweeps(self) -> list[SweepRow]:
        """Every sweep, oldest first, with its run counts per status."""
        counts: dict[str, dict[str, int]] = defaultdict(dict)
        for sweep_id, status, n in self._db.execute(
                "SELECT sweep_id, status, COUNT(*) FROM runs GROUP BY sweep_id, status"):
            counts[sweep_id][status] = n
        return [SweepRow(i, name, json.loads(spec), created, counts[i]) for i, name, spec, created
                in self._db.execute("SELECT id, name, spec, created FROM sweeps "
                                    "ORDER BY created, id")]

    def find_sweep(self, ref: str | None = None) -> str:
        """The id of the sweep named by ``ref``: an id, a unique id prefix or a name
        (the latest sweep of that name). ``None``: the latest sweep."""
        sweeps = self.sweeps()
        if not sweeps:
            raise LookupError(f"the store {self.path} holds no sweeps yet")
        if ref is None:
            return sweeps[-1].id
        by_id = [s.id for s in sweeps if s.id.startswith(ref)]
        if len(by_id) == 1:
            return by_id[0]
        by_name = [s.id for s in sweeps if s.name == ref]
        if by_name:
            return by_name[-1]
        if len(by_id) > 1:
            raise LookupError(f"sweep id prefix {ref!r} is ambiguous: {', '.join(by_id)}")
        hint = closest(ref, [s.id for s in sweeps] + [s.name for s in sweeps])
        did_you_mean = f"; did you mean {hint!r}?" if hint else ""
        listing = ", ".join(f"{s.id} ({s.name})" for s in sweeps)
        raise LookupError(f"no sweep {ref!r} in {self.path}{did_you_mean} sweeps: {listing}")

    def runs(self, sweep_id: str | None = None, *,
             statuses: Iterable[str] | None = None) -> list[RunRow]:
        """Stored runs in creation order, of one sweep or all, optionally by status."""
        where, args = [], []
        if sweep_id is not None:
            where.append("sweep_id = ?")
            args.append(sweep_id)
        if statuses is not None:
            statuses = list(statuses)
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            args.extend(statuses)
        sql = ("SELECT id, sweep_id, config_key, config, status, started, finished, seconds, "
               "engine, error, steps_to_target, diverged_at FROM runs"
               + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id")
        # Stored configs were validated when written: read them back without re-checking
        # names, so a sweep over a custom-registered activation stays readable anywhere.
        return [RunRow(*row[:3], RunConfig.model_construct(**json.loads(row[3])), *row[4:])
                for row in self._db.execute(sql, args)]

    def series(self, run_ids: Iterable[int]) -> dict[int, dict[str, list[tuple[int, float]]]]:
        """Metric series per run id: ``{run: {kind: [(step, value), ...]}}``, steps ascending."""
        out: dict[int, dict[str, list[tuple[int, float]]]] = defaultdict(
            lambda: defaultdict(list))
        for run, step, kind, value in self._select_in(
                "SELECT run, step, kind, value FROM metrics WHERE run IN ({}) "
                "ORDER BY run, kind, step", run_ids):
            out[run][kind].append((step, _number(value)))
        return out

    def layer_stats(self, run_ids: Iterable[int]) -> dict[int, list[dict]]:
        """Per-layer stats per run id, init phase first, layers in order."""
        out: dict[int, list[dict]] = defaultdict(list)
        for run, phase, layer, name, act_std, grad_norm in self._select_in(
                "SELECT run, phase, layer, name, act_std, grad_norm FROM layer_stats "
                "WHERE run IN ({}) ORDER BY run, phase = 'end', layer", run_ids):
            out[run].append({"phase": phase, "layer": layer, "name": name,
                             "act_std": _number(act_std), "grad_norm": _number(grad_norm)})
        return out

    def _select_in(self, sql: str, ids: Iterable[int]) -> list[tuple]:
        ids = list(ids)
        rows: list[tuple] = []
        for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
            chunk = ids[start:start + 500]
            rows += self._db.execute(sql.format(", ".join("?" * len(chunk))), chunk).fetchall()
        return rows

    def results(self, sweep_id: str) -> list[RunResult]:
        """The sweep's completed runs (finished, diverged, failed) rebuilt as RunResults."""
        rows = self.runs(sweep_id, statuses=FINAL)
        ids = [r.id for r in rows]
        series, stats = self.series(ids), self.layer_stats(ids)
        return [_result(row, series.get(row.id, {}), stats.get(row.id, [])) for row in rows]

    # -- export ----------------------------------------------------------------------------

    def export(self, path: str | Path, fmt: str, sweep_id: str | None = None) -> int:
        """Write runs (of one sweep or all) to ``path`` as ``csv`` or ``json``; the count.

        CSV: one row per run, its config fields, status, timings and the last value of each
        metric. JSON: the sweeps with their specs and every run with its config, metric
        series and layer stats; non-finite numbers become ``null`` (strict JSON).
        """
        writers = {"csv": self._export_csv, "json": self._export_json}
        if fmt not in writers:
            raise unknown("export format", fmt, writers)
        rows = self.runs(sweep_id)
        writers[fmt](Path(path), rows)
        return len(rows)

    def _export_csv(self, path: Path, rows: list[RunRow]) -> None:
        series = self.series(r.id for r in rows)
        names = {s.id: s.name for s in self.sweeps()}
        kinds = sorted({k for per_run in series.values() for k in per_run})
        fields = ["sweep_id", "sweep_name", "run", "config_key", *RunConfig.model_fields,
                  "status", "started", "finished", "seconds", "engine", "steps_to_target",
                  "diverged_at", *(f"last_{k}" for k in kinds), "error"]
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            for r in rows:
                last = {f"last_{k}": s[-1][1] for k, s in series.get(r.id, {}).items()}
                writer.writerow({"sweep_id": r.sweep_id, "sweep_name": names[r.sweep_id],
                                 "run": r.id, "config_key": r.config_key,
                                 **r.config.model_dump(), "status": r.status,
                                 "started": r.started, "finished": r.finished,
                                 "seconds": r.seconds, "engine": r.engine,
                                 "steps_to_target": r.steps_to_target,
                                 "diverged_at": r.diverged_at, **last, "error": r.error})

    def _export_json(self, path: Path, rows: list[RunRow]) -> None:
        ids = [r.id for r in rows]
        series, stats = self.series(ids), self.layer_stats(ids)
        runs_by_sweep: dict[str, list[dict]] = defaultdict(list)
        for r in rows:
            runs_by_sweep[r.sweep_id].append({
                "run": r.id, "config_key": r.config_key, "config": r.config.model_dump(),
                "status": r.status, "started": r.started, "finished": r.finished,
                "seconds": r.seconds, "engine": r.engine, "error": r.error,
                "steps_to_target": r.steps_to_target, "diverged_at": r.diverged_at,
                "metrics": {k: [[step, v] for step, v in s]
                            for k, s in series.get(r.id, {}).items()},
                "layer_stats": stats.get(r.id, [])})
        doc = {"sweeps": [{"id": s.id, "name": s.name, "created": s.created, "spec": s.spec,
                           "runs": runs_by_sweep[s.id]}
                          for s in self.sweeps() if s.id in runs_by_sweep]}
        path.write_text(json.dumps(_finite(doc), indent=1, allow_nan=False))


def _finite(value: object) -> object:
    """``value`` with every NaN or infinity replaced by None (strict JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _result(row: RunRow, series: dict[str, list[tuple[int, float]]],
            stats: list[dict]) -> RunResult:
    evals: dict[int, dict] = defaultdict(dict)
    for kind, points in series.items():
        if kind != "loss":
            for step, value in points:
                evals[step][kind] = value
    return RunResult(
        config=row.config, status=row.status, losses=list(series.get("loss", [])),
        evals=[{"step": step, **values} for step, values in sorted(evals.items())],
        steps_to_target=row.steps_to_target, diverged_at=row.diverged_at, layer_stats=stats,
        seconds=row.seconds, engine=row.engine, error=row.error)
