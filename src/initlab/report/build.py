"""From a sweep's results to the HTML report: summaries, figures, page."""

from __future__ import annotations

from pathlib import Path

from initlab.report import html
from initlab.report.figures import accuracy_heatmap, layer_profiles, loss_curves, png_bytes
from initlab.report.summary import summarize


def build_report(results, path: str | Path, title: str, findings: list[str] = (),
                 meta: str = "") -> Path:
    """Write the report of ``results`` (RunResults of one sweep) to ``path``; return it."""
    summaries = summarize(results)
    figures = {"Final test accuracy, init x activation": png_bytes(accuracy_heatmap(summaries))}
    for depth in sorted({r.config.depth for r in results}):
        subset = [r for r in results if r.config.depth == depth]
        figures[f"Training loss, depth {depth}"] = png_bytes(loss_curves(subset))
        if any(r.layer_stats for r in subset):
            figures[f"Per-layer activation std and gradient norm at init, depth {depth}"] = \
                png_bytes(layer_profiles(subset, "init"))
    return html.write(path, title, summaries, figures, findings, meta)
