"""``initlab theory``: mean-field signal propagation of one activation, and its phase diagram."""

from pathlib import Path

import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from initlab import theory as theory_lib
from initlab.cli._app import app


def _number(value: float) -> str:
    return "inf" if value == float("inf") else f"{value:.6g}"


def _diagram_grid(sigma_w2: float, sigma_b2: float, critical: float | None):
    """A 100 x 100 grid holding the point, the critical line and some of both phases."""
    top_b = max(0.5, 1.25 * sigma_b2)
    top_w = max(1.6 * (critical or 2.5), 1.25 * sigma_w2)
    return (torch.linspace(top_w / 100, top_w, 100, dtype=torch.float64),
            torch.linspace(0, top_b, 100, dtype=torch.float64))


@app.command()
def theory(
    activation: str = typer.Argument(..., help="Activation name, e.g. tanh, relu, gelu."),
    sigma_b2: float = typer.Option(0.05, "--sigma-b2", help="Bias variance sigma_b^2."),
    sigma_w2: float = typer.Option(
        None, "--sigma-w2", help="Weight variance x fan_in (default: the critical value)."),
    q0: float = typer.Option(1.0, "--q0", help="Input length E[x^2] (matters only where the "
                                                "length map has several attractors)."),
    png: Path = typer.Option(None, "--png", help="Write the phase diagram to this image."),
) -> None:
    """q*, c*, chi_1, the depth scales xi_q and xi_c, the phase and the trainable depth of a
    deep random network (Poole et al. 2016; Schoenholz et al. 2017), weights
    N(0, sigma_w2 / fan_in) and biases N(0, sigma_b2)."""
    try:
        critical, note = theory_lib.critical_sigma_w2(activation, sigma_b2), ""
    except ValueError as error:
        if sigma_w2 is None:
            raise ValueError(f"{error}; or give --sigma-w2") from None
        critical, note = None, str(error)
    mf = theory_lib.mean_field(activation, critical if sigma_w2 is None else sigma_w2, sigma_b2,
                               q0=q0)
    table = Table(title=f"Mean-field theory: {mf.activation}, sigma_w2 = {mf.sigma_w2:.6g}, "
                        f"sigma_b2 = {mf.sigma_b2:.6g}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    rows = [
        ("q*", mf.q_star, "fixed point of the length map (inf: the length diverges)"),
        ("c*", mf.c_star, "fixed point of the correlation map"),
        ("chi_1", mf.chi_1, "sigma_w2 E[phi'(sqrt(q*) z)^2]; < 1 ordered, > 1 chaotic"),
        ("chi_c", mf.chi_c, "slope of the correlation map at c*"),
        ("xi_q", mf.xi_q, "layers for q to settle (by e)"),
        ("xi_c", mf.xi_c, "layers for correlations to settle (by e)"),
        ("xi_grad", mf.xi_grad, "layers for gradient norms^2 to change by e"),
        ("trainable depth", mf.trainable_depth, "about 6 xi_c (Schoenholz et al. 2017)"),
    ]
    for name, value, meaning in rows:
        table.add_row(name, _number(value), escape(meaning))
    table.add_row("phase", mf.phase, "")
    table.add_row("critical sigma_w2", "none" if critical is None else _number(critical),
                  f"chi_1 = 1 at sigma_b2 = {mf.sigma_b2:g} (edge of chaos)")
    console = Console()
    console.print(table)
    if note:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if png is not None:
        grid_w, grid_b = _diagram_grid(mf.sigma_w2, mf.sigma_b2, critical)
        diagram = theory_lib.phase_diagram(activation, grid_w, grid_b, q0=q0)
        diagram.plot(png, mark=(mf.sigma_w2, mf.sigma_b2))
        console.print(f"phase diagram written to {png}")
