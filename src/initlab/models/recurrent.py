"""Recurrent classifiers that read an image row by row (the sequence-model scenario).

An image of shape (C, H, W) becomes a sequence of H steps of C * W features (row h of every
channel), the recurrent stack (``nn.LSTM``, Hochreiter & Schmidhuber 1997; ``nn.GRU``, Cho et
al. 2014; or the plain ``nn.RNN``) runs over it, and a linear head reads the last hidden
state. A 1-D input of shape (L,) is L steps of one feature, (C, L) is L steps of C features.

LSTM and GRU cells have fixed non-linearities (sigmoid gates, tanh candidate), so their only
accepted activation is ``tanh``; the plain RNN takes ``tanh`` or ``relu``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from initlab import activations
from initlab._names import unknown
from initlab.models._common import ActivationSpec, build_initialized

CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
CELL_ACTIVATIONS: dict[str, tuple[str, ...]] = {"lstm": ("tanh",), "gru": ("tanh",),
                                                "rnn": ("tanh", "relu")}


class RowRNN(nn.Module):
    """A recurrent stack over the rows of ``(N, *in_shape)`` inputs and a head on the last
    step's output (the top layer's last hidden state)."""

    def __init__(self, in_shape: Sequence[int], num_classes: int, cell: str, depth: int,
                 width: int, nonlinearity: str):
        super().__init__()
        self.shape = sequence_shape(in_shape)
        channels, steps, columns = self.shape
        extra = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        self.rnn = CELLS[cell](channels * columns, width, num_layers=depth, batch_first=True,
                               **extra)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        channels, steps, columns = self.shape
        rows = x.reshape(-1, channels, steps, columns).transpose(1, 2)
        out = self.rnn(rows.reshape(-1, steps, channels * columns))[0]  # LSTM: (out, (h, c))
        return self.head(out[:, -1])


def sequence_shape(in_shape: Sequence[int]) -> tuple[int, int, int]:
    """(channels, steps, features per channel and step) of an input of shape ``in_shape``."""
    shape = tuple(int(s) for s in in_shape)
    if not 1 <= len(shape) <= 3 or min(shape) < 1:
        raise ValueError(f"rnn needs inputs of shape (L,), (C, L) or (C, H, W); got {shape}")
    padded = (1,) * (len(shape) == 1) + shape + (1,) * (len(shape) < 3)
    return padded  # type: ignore[return-value]


def rnn(in_shape: Sequence[int], num_classes: int, cell: str = "lstm", depth: int = 1,
        width: int = 128, *, activation: ActivationSpec = "tanh", init: object = "auto",
        seed: int = 0) -> RowRNN:
    """A ``cell`` ("lstm" | "gru" | "rnn") stack of ``depth`` layers of ``width`` units over
    the rows of the input, and a linear head on the last hidden state.

    Parameters per layer: gates * (width * (n_in + width) + 2 * width), gates = 4 (LSTM),
    3 (GRU), 1 (RNN); n_in = C * W for the first layer, width after.
    """
    key = cell.lower()
    if key not in CELLS:
        raise unknown("recurrent cell", cell, CELLS)
    nonlinearity = activations.resolve(activation).name
    if nonlinearity not in CELL_ACTIVATIONS[key]:
        raise unknown(f"activation for a {key} cell", nonlinearity, CELL_ACTIVATIONS[key])
    if depth < 1 or width < 1:
        raise ValueError(f"rnn needs depth and width >= 1; got depth={depth}, width={width}")
    sequence_shape(in_shape)
    example = torch.zeros(2, *(int(s) for s in in_shape))
    return build_initialized(
        lambda: RowRNN(in_shape, num_classes, key, depth, width, nonlinearity), example, init,
        seed)
