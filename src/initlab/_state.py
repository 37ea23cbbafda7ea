"""Run a model to measure it and leave no trace: train/eval flags and buffers come back.

A measuring forward pass in training mode updates batch-norm running statistics;
``preserved(model)`` snapshots every module's ``training`` flag and every buffer and
puts them back on exit (also after an exception). Adaptive init, diagnosis and the graph's
hook fallback all measure through it: the model is left as found, but for the weights an
adaptive init sets on purpose.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def preserved(model: nn.Module) -> Iterator[nn.Module]:
    """Restore every module's train/eval flag and every buffer's value when the block ends."""
    modes = [(module, module.training) for module in model.modules()]
    buffers = [(buffer, buffer.detach().clone()) for buffer in model.buffers()]
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
