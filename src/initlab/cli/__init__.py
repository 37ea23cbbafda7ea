"""The ``initlab`` command: thin wrappers over the library, one module per command."""

from initlab.cli._app import app

__all__ = ["app"]
