"""What the CLI tests share: an uncallable factory, a command run, the bad-input check."""

from __future__ import annotations

from click.testing import Result
from typer.testing import CliRunner

from initlab.cli._app import app

# Appended to a test module's NET source: a factory that needs an argument no spec can give.
NEEDS_ARGS = """

def needs_args(width):
    return nn.Linear(width, width)
"""


def invoke(command: str, *args: object) -> Result:
    """``initlab COMMAND ARGS...`` run in-process; paths and numbers are passed as text."""
    return CliRunner().invoke(app, [command, *map(str, args)])


def assert_one_error_line(result: Result, message: str) -> None:
    """Bad input: exit status 2, ``error:`` on stderr with ``message``, and no traceback.

    ``message`` is looked for in stderr with its white space folded, so it is found however
    the console lays the line out.
    """
    assert result.exit_code == 2, result.output
    assert "error:" in result.stderr and message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
