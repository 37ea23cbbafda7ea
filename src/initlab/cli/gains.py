"""``initlab gains``: every registered activation's exact gains beside torch's table."""

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from initlab import gains as gains_lib
from initlab.cli._app import app


@app.command()
def gains(
    activation: list[str] = typer.Argument(None, help="Activations to show (default: all)."),
) -> None:
    """Forward gain 1/sqrt(E[phi(z)^2]), backward gain 1/sqrt(E[phi'(z)^2]), z ~ N(0, 1),
    by quadrature, beside torch.nn.init.calculate_gain."""
    table = Table(title="Exact gains (z ~ N(0, 1))")
    for column in ("activation", "forward gain", "backward gain", "E[phi(z)]", "Var[phi(z)]",
                   "torch calculate_gain"):
        table.add_column(escape(column), justify="left" if column == "activation" else "right")
    for row in gains_lib.table(activation or None):
        torch_value = "unsupported" if row.torch is None else f"{row.torch:.6f}"
        table.add_row(row.activation, f"{row.forward:.6f}", f"{row.backward:.6f}",
                      f"{round(row.mean, 9) + 0.0:+.6f}", f"{row.variance:.6f}", torch_value)
    Console().print(table)
