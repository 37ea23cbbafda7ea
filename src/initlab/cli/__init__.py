"""The ``initlab`` command: thin wrappers over the library, one module per command."""

from initlab.cli import gains  # noqa: F401  (registers its command)
from initlab.cli._app import app, main

__all__ = ["app", "main"]
