"""The one Typer application; each command lives in its own module of this package."""

import sys

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    name="initlab",
    help="Choose, apply and verify weight initialization and activation functions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """initlab: weight initialization and activation functions, measured."""


def main() -> None:
    """Run the CLI; a bad value ends in one plain line naming it, not a traceback."""
    try:
        app()
    except (ValueError, FileNotFoundError) as error:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(error))}")
        sys.exit(2)
