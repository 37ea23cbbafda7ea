"""initlab: choose, apply and verify weight initialization and activation functions."""

__version__ = "0.1.0"
