"""matplotlib figures of a sweep: loss curves, an init x activation heatmap, layer profiles.

Every function returns a ``Figure`` (Agg backend, nothing shown); ``png_bytes`` renders one.
Seeds are averaged: a line is the mean over the seeds of one configuration.
"""

from __future__ import annotations

import io
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from initlab.report.summary import Summary  # noqa: E402


def png_bytes(figure: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes; the figure is closed afterwards."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _grid(n: int, width: float = 3.6, height: float = 2.8) -> tuple[Figure, np.ndarray]:
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def _mean_curve(runs, field: str) -> tuple[list[int], np.ndarray]:
    series = [getattr(r, field) for r in runs if getattr(r, field)]
    length = min(len(s) for s in series)
    steps = [step for step, _ in series[0][:length]]
    values = np.array([[v for _, v in s[:length]] for s in series], dtype=float)
    return steps, np.nanmean(values, axis=0) if values.size else values


def loss_curves(results, title: str = "Training loss") -> Figure:
    """One panel per activation, one line per init (mean over seeds), log scale."""
    panels: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        if r.losses:
            panels[r.config.activation][r.config.init].append(r)
    fig, axes = _grid(max(len(panels), 1))
    for ax, (activation, by_init) in zip(axes, sorted(panels.items()), strict=False):
        for init, runs in sorted(by_init.items()):
            steps, mean = _mean_curve(runs, "losses")
            ax.plot(steps, np.clip(mean, 1e-4, 1e4), label=init)
        ax.set(title=activation, xlabel="step", ylabel="loss", yscale="log")
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def accuracy_heatmap(summaries: list[Summary], title: str = "Final test accuracy") -> Figure:
    """Init (rows) x activation (columns) of the mean final test accuracy, one panel per depth."""
    depths = sorted({s.depth for s in summaries})
    fig, axes = plt.subplots(1, len(depths), figsize=(5.2 * len(depths), 4.2), squeeze=False)
    for ax, depth in zip(axes.flat, depths, strict=True):
        rows = [s for s in summaries if s.depth == depth]
        inits = sorted({s.init for s in rows})
        acts = sorted({s.activation for s in rows})
        grid = np.full((len(inits), len(acts)), np.nan)
        for s in rows:
            grid[inits.index(s.init), acts.index(s.activation)] = s.test_accuracy
        image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(acts)), acts, rotation=45, ha="right")
        ax.set_yticks(range(len(inits)), inits)
        for (i, j), value in np.ndenumerate(grid):
            if not np.isnan(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if value < 0.6 else "black")
        ax.set_title(f"depth {depth}")
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def layer_profiles(results, phase: str = "init", title: str | None = None) -> Figure:
    """Per-layer activation std (top) and gradient norm (bottom) at ``phase``, by activation."""
    panels: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        stats = [s for s in r.layer_stats if s["phase"] == phase]
        if stats:
            panels[r.config.activation][r.config.init].append(stats)
    n = max(len(panels), 1)
    fig, axes = plt.subplots(2, n, figsize=(3.4 * n, 5.6), squeeze=False)
    for col, (activation, by_init) in enumerate(sorted(panels.items())):
        for init, runs in sorted(by_init.items()):
            for row, key in enumerate(("act_std", "grad_norm")):
                values = np.nanmean([[s[key] for s in stats] for stats in runs], axis=0)
                axes[row, col].plot(range(1, len(values) + 1), np.clip(values, 1e-12, None),
                                    marker=".", label=init)
        axes[0, col].set(title=activation, yscale="log", ylabel="activation std")
        axes[1, col].set(xlabel="layer", yscale="log", ylabel="gradient norm")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title or f"Per-layer signal at {phase}")
    fig.tight_layout()
    return fig
