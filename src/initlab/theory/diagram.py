"""The order-to-chaos phase diagram over a (sigma_w2, sigma_b2) grid, and its figure.

Poole et al. 2016 and Schoenholz et al. 2017 draw, for one activation, which weight and bias
variances give an ordered network (chi_1 < 1: inputs and gradients collapse) or a chaotic one
(chi_1 > 1: they decorrelate and explode), separated by the critical line chi_1 = 1, with
contours of the correlation depth scale xi_c, which diverges on that line. Every grid point
is solved at once, as tensors (see ``initlab.theory.maps``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from initlab.theory.maps import as_variance, table
from initlab.theory.meanfield import critical_line, solve

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_XI_LEVELS = (1, 2, 5, 10, 20, 50, 100)
_ORDERED, _CHAOTIC = "#4c72b0", "#dd8452"


@dataclass(frozen=True)
class PhaseDiagram:
    """Mean-field quantities on a grid: each field has shape (len(sigma_b2), len(sigma_w2)).

    ``phase`` is -1 (ordered), 0 (critical) or +1 (chaotic); the other fields are those of
    ``initlab.theory.MeanField``.
    """

    activation: str
    sigma_w2: Tensor
    sigma_b2: Tensor
    q_star: Tensor
    c_star: Tensor
    chi_1: Tensor
    chi_c: Tensor
    xi_q: Tensor
    xi_c: Tensor
    xi_grad: Tensor
    trainable_depth: Tensor
    phase: Tensor

    def plot(self, path: str | Path | None = None, *,
             mark: tuple[float, float] | None = None) -> Figure:
        """Ordered / chaotic regions, the critical line chi_1 = 1 and xi_c contours.

        ``mark`` puts a star at one (sigma_w2, sigma_b2); ``path`` saves the figure (PNG,
        SVG, PDF by suffix). Drawn with matplotlib's Agg canvas: no display, no pyplot state
        (matplotlib is imported here, so ``import initlab`` does not pay for it).
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(6.4, 4.8), layout="constrained")
        FigureCanvasAgg(figure)
        ax = figure.subplots()
        w, b = self.sigma_w2.numpy(), self.sigma_b2.numpy()
        _draw_phases(ax, w, b, self.phase.numpy(), self.chi_1.numpy())
        _draw_depth_scales(ax, w, b, self.xi_c.numpy())
        if mark is not None:
            ax.plot(*mark, marker="*", markersize=14, color="k", linestyle="none",
                    label=f"sigma_w2 = {mark[0]:g}, sigma_b2 = {mark[1]:g}")
        ax.legend(loc="upper left", fontsize=8, framealpha=0.85)
        ax.set(xlabel="sigma_w2 (weight variance x fan_in)", ylabel="sigma_b2 (bias variance)",
               title=f"{self.activation}: order-to-chaos phase diagram (mean field)")
        if path is not None:
            figure.savefig(path, dpi=120)
        return figure


def _draw_phases(ax, w: np.ndarray, b: np.ndarray, phase: np.ndarray, chi_1: np.ndarray) -> None:
    """Shade ordered / chaotic and draw the critical line chi_1 = 1."""
    from matplotlib.colors import ListedColormap

    ax.pcolormesh(w, b, (phase > 0).astype(float), cmap=ListedColormap([_ORDERED, _CHAOTIC]),
                  vmin=0, vmax=1, shading="nearest", alpha=0.35, rasterized=True)
    ax.fill([], [], color=_ORDERED, alpha=0.5, label="ordered (chi_1 < 1)")  # legend entries
    ax.fill([], [], color=_CHAOTIC, alpha=0.5, label="chaotic (chi_1 > 1)")
    if chi_1.min() < 1 < chi_1.max():
        ax.contour(w, b, chi_1, levels=[1.0], colors="k", linewidths=2.2)
        ax.plot([], [], color="k", linewidth=2.2, label="critical line chi_1 = 1")


def _draw_depth_scales(ax, w: np.ndarray, b: np.ndarray, xi_c: np.ndarray) -> None:
    """Labelled contours of xi_c, drawn on log xi_c: xi_c ~ 1/|chi_1 - 1| is too steep near
    the critical line to interpolate linearly."""
    log_xi = np.log10(np.clip(xi_c, 1e-3, 1e9))
    levels = [math.log10(v) for v in _XI_LEVELS if log_xi.min() < math.log10(v) < log_xi.max()]
    if levels:
        lines = ax.contour(w, b, log_xi, levels=levels, colors="0.25", linewidths=0.8)
        ax.clabel(lines, fmt=lambda v: f"{10 ** v:.0f}", fontsize=8)
        ax.plot([], [], color="0.25", linewidth=0.8, label="xi_c contours (layers)")


def _default_sigma_w2(activation, sigma_b2: Tensor) -> Tensor:
    """Up to 1.6x the critical sigma_w2 at the largest sigma_b2 (4 where there is none)."""
    critical = critical_line(activation, sigma_b2.max().reshape(1)).item()
    top = 4.0 if math.isnan(critical) else 1.6 * critical
    return torch.linspace(top / 100, top, 100, dtype=torch.float64)


def phase_diagram(activation, sigma_w2=None, sigma_b2=None, *, q0: float = 1.0) -> PhaseDiagram:
    """Solve the mean-field theory at every (sigma_w2, sigma_b2) of a grid at once.

    ``sigma_w2`` / ``sigma_b2``: 1-D sequences (defaults: 100 values of sigma_b2 in
    [0, 0.5] and of sigma_w2 up to 1.6x the critical value). A 100 x 100 grid takes well
    under a second on two CPU cores once the activation's Gaussian table is built
    (``benchmarks/theory_speed.py``).
    """
    sb2 = (torch.linspace(0, 0.5, 100, dtype=torch.float64) if sigma_b2 is None
           else as_variance(sigma_b2, "sigma_b2").reshape(-1))
    sw2 = (_default_sigma_w2(activation, sb2) if sigma_w2 is None
           else as_variance(sigma_w2, "sigma_w2").reshape(-1))
    tab = table(activation)
    grid_b, grid_w = torch.meshgrid(sb2, sw2, indexing="ij")
    fields = solve(tab, grid_w.flatten(), grid_b.flatten(), q0)
    shape = grid_w.shape
    return PhaseDiagram(tab.activation.name, sw2, sb2,
                        **{name: value.view(shape) for name, value in fields.items()})
