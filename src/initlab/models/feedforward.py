"""The multilayer perceptron: the article's model and its deep variants.

The article trains ``Linear(784, 256) -> activation -> Linear(256, 10)`` once per activation
and init scheme; ``mlp(784, [256], 10, "relu")`` is that model, ``mlp(784, [256] * 20, 10)``
the deep variant where the differences between schemes become dramatic (signal propagation
through depth: Glorot & Bengio 2010, He et al. 2015).
"""

from __future__ import annotations

import torch
from torch import nn

from initlab.models._common import ActivationSpec, activation_factory, build_initialized


def mlp(in_features: int, hidden: list[int], out_features: int,
        activation: ActivationSpec = "relu", *, init: object = "auto", seed: int = 0,
        bias: bool = True) -> nn.Sequential:
    """A flat ``nn.Sequential``: Flatten, Linear, act, Linear, act, ..., Linear.

    Children are numbered by ``nn.Sequential`` (``0`` is the Flatten, ``1`` the first
    Linear, ...), so ``[m for m in model if isinstance(m, nn.Linear)]`` lists the layers in
    order and the activation modules sit between them. ``hidden=[]`` gives a linear model.
    Parameters: sum over consecutive widths (n_i, n_(i+1)) of n_i * n_(i+1) (+ n_(i+1) with
    bias).

    Example::

        >>> model = mlp(784, [256], 10, "tanh", init="xavier_normal", seed=1)
        >>> model(torch.zeros(4, 1, 28, 28)).shape
        torch.Size([4, 10])
    """
    widths = [int(in_features), *(int(h) for h in hidden), int(out_features)]
    act = activation_factory(activation)

    def construct() -> nn.Sequential:
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            layers.append(nn.Linear(n_in, n_out, bias=bias))
            if i < len(widths) - 2:
                layers.append(act())
        return nn.Sequential(*layers)

    return build_initialized(construct, torch.zeros(2, widths[0]), init, seed)
