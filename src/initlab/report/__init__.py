"""Reports of sweeps: ranked tables, matplotlib figures, one self-contained HTML page."""

from initlab.report.build import build_report
from initlab.report.figures import accuracy_heatmap, layer_profiles, loss_curves, png_bytes
from initlab.report.summary import Summary, summarize
from initlab.report.tables import ranking_table

__all__ = ["Summary", "accuracy_heatmap", "build_report", "layer_profiles", "loss_curves",
           "png_bytes", "ranking_table", "summarize"]
