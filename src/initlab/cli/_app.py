"""The one Typer application; each command lives in its own module of this package."""

import typer

app = typer.Typer(
    name="initlab",
    help="Choose, apply and verify weight initialization and activation functions.",
    no_args_is_help=True,
    add_completion=False,
)
