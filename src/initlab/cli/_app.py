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


PIPE_WIDTH = 200  # captured or piped output: no terminal to fit, keep every name whole


def output() -> Console:
    """The console for a command's results: the terminal's, or PIPE_WIDTH columns wide when
    the output is captured or piped."""
    console = Console(soft_wrap=True)
    return console if console.is_terminal else Console(width=PIPE_WIDTH, soft_wrap=True)


def report_error(error: object) -> None:
    """Print ``error`` as one plain ``error:`` line on stderr (markup in it escaped)."""
    Console(stderr=True, soft_wrap=True).print(
        f"[bold red]error:[/] {escape(str(error) or type(error).__name__)}", highlight=False)


def fail(error: object) -> typer.Exit:
    """Report ``error``; the exit to raise: status 2, a bad value."""
    report_error(error)
    return typer.Exit(2)


def main() -> None:
    """Run the CLI; a bad value ends in one plain line naming it, not a traceback."""
    try:
        app()
    except (ValueError, FileNotFoundError) as error:
        report_error(error)
        sys.exit(2)
