"""The ``initlab`` command: thin wrappers over the library, one module per command."""

from initlab.cli import demo, doctor, gains, plan, report, sweep, theory  # noqa: F401  (register)
from initlab.cli._app import app, main

__all__ = ["app", "main"]
