"""The training monitor: per-layer statistics every ``every`` steps, kept on the device.

    with initlab.monitor(model, every=50, store="runs.db") as mon:
        for x, y in batches:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
    mon.plot("stats.png"); mon.plot_histograms("colorful.png")

A *step* is one forward of ``model`` in training mode with gradients enabled; eval
forwards (validation) are neither counted nor recorded. Steps 0, every, 2 every, ...
are recorded: the same statistics as ``diagnose`` (``initlab.probe.stats``) for every
probed call, the gradient norm with respect to each output and each layer's weight
gradient norm (from the backward that follows), and a histogram of each output
(fastai's "colorful dimension", from at most ``sample`` evenly strided elements).
Everything stays on the device until a flush: every ``flush_every`` recorded steps,
on ``flush()`` and when the ``with`` block ends, one host copy moves all pending
numbers. Between recorded steps only one hook runs, on the model itself: the probes
are put on at a recorded step and taken off at the next step, so a monitor at
``every=50`` costs little (``benchmarks/doctor_overhead.py``).

``history`` holds one dict per probed call per recorded step (``LayerRow`` fields
plus ``step``, ``hist``, ``hist_lo``, ``hist_hi``); ``verdicts`` the verdict of
each recorded step (``initlab.probe.verdict``). With ``store`` (a SQLite path or a
sweep ``Store``), each flush appends the rows to the table ``activation_history`` of
that file, keyed by ``run`` (the sweep store's run id) and ``label``;
``read_history`` reads them back.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from initlab.probe.hooks import Hook
from initlab.probe.recorder import Event, HistogramSpec, Recorder
from initlab.probe.rows import event_columns, rms, to_rows, weights
from initlab.probe.sites import find_sites
from initlab.probe.stats import norm
from initlab.probe.verdict import judge

HISTORY_TABLE = "activation_history"
_NUMBERS = ("depth", "mean", "std", "rms", "p01", "p25", "p50", "p75", "p99", "zero", "dead",
            "saturated", "grad_norm", "weight_norm", "weight_grad_norm")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (
    run     INTEGER,        -- the sweep store's runs.id; NULL outside a sweep
    label   TEXT NOT NULL,  -- names the monitored model
    step    INTEGER NOT NULL,
    idx     INTEGER NOT NULL,  -- position of the call in the step's execution order
    name    TEXT NOT NULL,
    kind    TEXT NOT NULL,
    module_type TEXT NOT NULL,
    {", ".join(f"{c} REAL" for c in _NUMBERS)},
    verdict TEXT,
    hist_lo REAL, hist_hi REAL,
    hist    BLOB            -- float32 counts, little-endian
);
CREATE INDEX IF NOT EXISTS {HISTORY_TABLE}_by_run ON {HISTORY_TABLE} (run, label, step);
"""
BUSY_TIMEOUT_S = 30.0


@dataclass
class _Record:
    step: int
    input_rms: Tensor | None
    events: list[Event] = field(default_factory=list)
    weight_grads: dict[int, Tensor] = field(default_factory=dict)


def _store_path(store) -> Path:
    return Path(getattr(store, "path", store))


class Monitor:
    """Records per-layer statistics during training; see the module docstring."""

    def __init__(self, model: nn.Module, every: int = 50, store=None, *, run: int | None = None,
                 label: str | None = None, bins: int = 40, span: float = 6.0,
                 flush_every: int = 20, sample: int = 4096):
        for name, value in (("every", every), ("flush_every", flush_every), ("bins", bins)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.model, self.every, self.flush_every = model, every, flush_every
        self.store = _store_path(store) if store is not None else None
        self.run, self.label = run, label or type(model).__name__
        self.steps = 0
        self.history: list[dict] = []
        self.verdicts: list[tuple[int, str, str]] = []
        self.notes: list[str] = []
        self._hist, self._sample = HistogramSpec(bins, span), sample
        self._open: _Record | None = None
        self._closed: list[_Record] = []
        self._recorder: Recorder | None = None
        self._root: Hook | None = None
        self._params: list[Tensor] = []
        self._grad_hooks: list = []

    def __enter__(self) -> Monitor:
        sites, self.notes = find_sites(self.model)
        self._recorder = Recorder(sites, hist=self._hist, sample=self._sample)
        weights_of_sites = {id(p): p for s in sites if not s.derived for p in weights(s.module)}
        self._params = [p for p in weights_of_sites.values() if p.requires_grad]
        self._root = Hook(self.model, self._on_forward, pre=True)
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._root.remove()
            self._close()
        finally:
            self._root = None
            self.flush()

    def _on_forward(self, module: nn.Module, inputs: tuple, _) -> None:
        """Each forward of the model: close the record of the last recorded step, open one
        (hooks on) when this is a training step to record."""
        self._close()
        if len(self._closed) >= self.flush_every:
            self.flush()
        if not (module.training and torch.is_grad_enabled()):
            return
        if self.steps % self.every == 0:
            x = next((a for a in inputs if isinstance(a, Tensor) and a.is_floating_point()), None)
            self._open = _Record(self.steps, rms(x) if x is not None else None)
            self._recorder.__enter__()
            self._grad_hooks = [p.register_post_accumulate_grad_hook(self._on_grad)
                                for p in self._params]
        self.steps += 1

    def _close(self) -> None:
        """End the open record: its hooks come off, its events wait for the next flush."""
        if self._open is None:
            return
        self._open.events = self._recorder.take()
        self._recorder.__exit__()
        for handle in self._grad_hooks:
            handle.remove()
        self._grad_hooks = []
        self._closed.append(self._open)
        self._open = None

    def _on_grad(self, param: Tensor) -> None:
        if self._open is not None and param.grad is not None:
            self._open.weight_grads[id(param)] = norm([param.grad])

    def flush(self) -> None:
        """Move every completed record to ``history`` (and the store) with one host copy;
        while training, the step being recorded stays until the next step begins."""
        records = [r for r in self._closed if r.events]
        self._closed = []
        if not records:
            return
        numbers, hist_rows = self._host_copy(records)
        hists = iter(hist_rows)
        new_rows = []
        for record in records:
            n = len(record.events)
            values, numbers = numbers[:n], numbers[n:]
            input_rms, numbers = numbers[0][0], numbers[1:]
            rows = to_rows(record.events, values)
            verdict, reason = judge(rows, input_rms)
            self.verdicts.append((record.step, verdict, reason))
            for event, row in zip(record.events, rows, strict=True):
                lo, hi = self._recorder.range_of(event.site)
                new_rows.append({"step": record.step, **asdict(row), "label": row.label,
                                 "hist": next(hists), "hist_lo": lo, "hist_hi": hi})
        self.history += new_rows
        if self.store is not None:
            write_history(self.store, new_rows, run=self.run, label=self.label)

    @staticmethod
    def _host_copy(records: list[_Record]) -> tuple[list[list[float]], list[list[float]]]:
        """Every record's event columns, then its input RMS as a one-number row; histograms."""
        parts, hists = [], []
        for record in records:
            columns = event_columns(record.events, record.weight_grads)
            parts += list(columns)
            nan = torch.full_like(columns[0], float("nan"))
            if record.input_rms is not None:
                nan[0] = record.input_rms.to(nan.device)
            parts.append(nan)
            hists += [e.hist for e in record.events]
        table, counts = torch.stack(parts), torch.stack(hists)
        both = torch.cat([table.flatten(), counts.flatten().to(table.dtype)]).cpu()  # one copy
        return both[:table.numel()].view(table.shape).tolist(), \
            both[table.numel():].view(counts.shape).tolist()

    def plot(self, path: str | Path | None = None, stats=("std", "grad_norm", "dead",
                                                          "saturated")):
        """Per-layer statistics over the recorded steps (a matplotlib Figure; saved to path)."""
        from initlab.probe.plots import history_figure, save

        self.flush()
        return save(history_figure(self.history, stats), path)

    def plot_histograms(self, path: str | Path | None = None, sites: list[str] | None = None):
        """The "colorful dimension": each activation's histogram over the recorded steps."""
        from initlab.probe.plots import colorful_dimension, save

        self.flush()
        return save(colorful_dimension(self.history, sites), path)


def monitor(model: nn.Module, every: int = 50, store=None, **options) -> Monitor:
    """A ``Monitor`` for ``model``; use it as a context manager around training."""
    return Monitor(model, every, store, **options)


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
    db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    return db


def write_history(store, rows: list[dict], *, run: int | None, label: str) -> None:
    """Append monitor rows to ``activation_history`` in the SQLite file ``store``."""
    columns = ("run", "label", "step", "idx", "name", "kind", "module_type", *_NUMBERS,
               "verdict", "hist_lo", "hist_hi", "hist")
    values = [(run, label, r["step"], r["index"], r["label"], r["kind"], r["module_type"],
               *(r[c] for c in _NUMBERS), r["verdict"], r["hist_lo"], r["hist_hi"],
               np.asarray(r["hist"], dtype="<f4").tobytes()) for r in rows]
    db = _connect(_store_path(store))
    try:
        with db:
            db.executescript(_SCHEMA)
            db.executemany(f"INSERT INTO {HISTORY_TABLE} ({', '.join(columns)}) VALUES "
                           f"({', '.join('?' * len(columns))})", values)
    finally:
        db.close()


def read_history(store, *, run: int | None = None, label: str | None = None) -> list[dict]:
    """Rows of ``activation_history`` (all, or one run's / one label's), in step order;
    NULL numbers come back as NaN, ``hist`` as a list of counts."""
    path = _store_path(store)
    if not path.exists():
        raise FileNotFoundError(f"no store at {path}")
    db = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    db.row_factory = sqlite3.Row
    try:
        found = db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name=?",
                           (HISTORY_TABLE,)).fetchone()
        if found is None:
            return []
        where, args = [], []
        for column, value in (("run", run), ("label", label)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = f"SELECT * FROM {HISTORY_TABLE}" + (f" WHERE {' AND '.join(where)}" if where
                                                  else "") + " ORDER BY run, label, step, idx"
        rows = [dict(r) for r in db.execute(sql, args)]
    finally:
        db.close()
    for row in rows:
        for column in _NUMBERS:
            row[column] = float("nan") if row[column] is None else row[column]
        row["hist"] = np.frombuffer(row["hist"], dtype="<f4").tolist() if row["hist"] else []
    return rows
