"""Figures of the probe (matplotlib, no pyplot: figures render with the Agg canvas
whatever the session's backend) and the doctor's self-contained HTML page.

* ``profile_figure(report)``: per-layer profiles by execution order: output std, the
  gradient norm with respect to each output, dead and saturated fractions, |dW|/|W|.
* ``history_figure(history)``: monitor statistics per layer over the recorded steps.
* ``colorful_dimension(history)``: for each activation, its histogram at every
  recorded step as one column of an image, colour = log(1 + count) (fastai's
  ActivationStats plot): a healthy layer is a band that keeps its width; a dying or
  saturating one collapses onto its edge bins.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections import defaultdict
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from initlab.probe.report import Report

_PROFILE = (("std", "output std", "log"), ("grad_norm", "|dL/d output|", "log"),
            ("fractions", "dead / saturated fraction", "linear"),
            ("grad_to_weight", "|dW| / |W|", "log"))


def save(figure: Figure, path: str | Path | None) -> Figure:
    """Write ``figure`` to ``path`` (format from the suffix) when a path is given."""
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
    return figure


def _positive(values) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return np.where(a > 0, a, np.nan)


def profile_figure(report: Report) -> Figure:
    """Per-layer profiles of a ``diagnose`` report, 2 x 2 panels."""
    figure = Figure(figsize=(12, 7.5), layout="constrained")
    axes = figure.subplots(2, 2).ravel()
    layers = [r for r in report.layers if r.kind == "layer"]
    acts = [r for r in report.layers if r.kind == "activation"]
    for ax, (key, title, scale) in zip(axes, _PROFILE, strict=True):
        ax.set_title(title)
        ax.set_xlabel("call in execution order")
        if key == "fractions":
            for field, marker in (("dead", "o"), ("zero", "."), ("saturated", "s")):
                ax.plot([r.index for r in acts], [getattr(r, field) for r in acts],
                        marker=marker, label=field)
            ax.set_ylim(-0.05, 1.05)
        else:
            for label, rows in (("layers", layers), ("activations", acts)):
                values = _positive([getattr(r, key) for r in rows])
                if np.isfinite(values).any():
                    ax.plot([r.index for r in rows], values, marker="o", label=label)
            ax.set_yscale(scale)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    figure.suptitle(f"{type(report.model).__name__}: {report.verdict}")
    return figure


def _series(history: list[dict], key: str, kinds: tuple[str, ...]) -> dict[str, tuple]:
    by_label: dict[str, list] = defaultdict(list)
    for row in history:
        if row["kind"] in kinds:
            by_label[row["label"]].append((row["step"], row[key]))
    return {label: tuple(zip(*points, strict=True)) for label, points in by_label.items()}


def history_figure(history: list[dict], stats=("std", "grad_norm", "dead", "saturated")) -> Figure:
    """One panel per statistic, one line per layer (colour = depth), x = training step."""
    figure = Figure(figsize=(6 * min(len(stats), 2), 3.6 * math.ceil(len(stats) / 2)),
                    layout="constrained")
    axes = np.atleast_1d(figure.subplots(math.ceil(len(stats) / 2), min(len(stats), 2))).ravel()
    for ax, key in zip(axes, stats, strict=False):
        kinds = ("activation",) if key in ("dead", "saturated", "zero") else ("layer",)
        series = _series(history, key, kinds)
        colours = matplotlib.colormaps["viridis"](np.linspace(0, 1, max(len(series), 1)))
        for colour, (label, (steps, values)) in zip(colours, series.items(), strict=False):
            ax.plot(steps, values, color=colour, label=label)
        ax.set_title(f"{key} ({kinds[0]}s)")
        ax.set_xlabel("step")
        if key in ("std", "grad_norm", "rms", "weight_grad_norm") and series:
            ax.set_yscale("log")
        if 0 < len(series) <= 12:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return figure


def colorful_dimension(history: list[dict], sites: list[str] | None = None,
                       max_sites: int = 12) -> Figure:
    """Histogram of each activation (or each named site) over the steps, log(1 + count)."""
    chosen = sites or list(dict.fromkeys(r["label"] for r in history
                                         if r["kind"] == "activation"))[:max_sites]
    if not chosen:
        chosen = list(dict.fromkeys(r["label"] for r in history))[:max_sites]
    figure = Figure(figsize=(10, 1.8 * max(len(chosen), 1)), layout="constrained")
    axes = np.atleast_1d(figure.subplots(max(len(chosen), 1), 1, sharex=True)).ravel()
    for ax, label in zip(axes, chosen, strict=False):
        rows = [r for r in history if r["label"] == label]
        if not rows:
            raise ValueError(f"no monitor history for {label!r}; recorded: "
                             f"{', '.join(dict.fromkeys(r['label'] for r in history))}")
        image = np.log1p(np.asarray([r["hist"] for r in rows], dtype=float)).T
        steps = [r["step"] for r in rows]
        ax.imshow(image, origin="lower", aspect="auto", cmap="viridis",
                  extent=(steps[0], steps[-1] + (steps[1] - steps[0] if len(steps) > 1 else 1),
                          rows[0]["hist_lo"], rows[0]["hist_hi"]))
        ax.set_ylabel(label, rotation=0, ha="right", fontsize=8)
    axes[-1].set_xlabel("step")
    figure.suptitle("activation histograms over training (log 1 + count)")
    return figure


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _cell(value) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3g}"
    return html.escape("" if value is None else str(value))


def report_html(report: Report) -> str:
    """One self-contained HTML page: verdict, fixes, the profile figure and the table."""
    columns = ("depth", "label", "module_type", "mean", "std", "p01", "p99", "zero", "dead",
               "saturated", "grad_norm", "grad_to_weight", "forward_gain", "backward_gain",
               "verdict")
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(row[c])}</td>" for c in columns) + "</tr>"
                   for row in report.to_dicts())
    fixes = "".join(f"<li>{html.escape(n)}</li>" for n in report.fix_notes) or \
        "<li>none needed</li>"
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes +
                    ([f"hooks that never fired: {', '.join(report.unfired)}"]
                     if report.unfired else []))
    name = html.escape(type(report.model).__name__)
    image = _png(profile_figure(report))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>initlab doctor: {name}"
        "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
        "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "</style></head><body>"
        f"<h1>{name}: {html.escape(report.verdict)}</h1><p>{html.escape(report.reason)}</p>"
        f"<h2>Fixes</h2><ul>{fixes}</ul>" + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else "")
        + f"<img alt='per-layer profiles' src='data:image/png;base64,{image}'>"
        f"<h2>Layers</h2><table><tr>{head}</tr>{body}</table></body></html>")


def write_html(report: Report, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(report), encoding="utf-8")
    return path
