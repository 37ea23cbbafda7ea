"""A VGG-style CNN (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for
Large-Scale Image Recognition"), with batch norm after each convolution (Ioffe & Szegedy 2015).

``depth`` stages; stage ``s`` has ``convs_per_stage`` blocks of
``Conv2d(3x3, padding 1) -> BatchNorm2d -> activation`` with ``width * 2**s`` channels and
ends with a 2x2 max-pool (skipped once the feature map is 1 pixel wide). The classifier is
VGG's: ``Flatten -> Linear(C*H*W, 4*width) -> activation -> Linear(4*width, num_classes)``.
Convolutions followed by batch norm carry no bias (the norm's shift replaces it).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from initlab.models._common import (
    ActivationSpec,
    activation_factory,
    build_initialized,
    image_shape,
)


def vgg(in_shape: Sequence[int], num_classes: int, activation: ActivationSpec = "relu",
        depth: int = 2, width: int = 32, *, convs_per_stage: int = 2, batch_norm: bool = True,
        init: object = "auto", seed: int = 0) -> nn.Sequential:
    """A VGG-style classifier of ``(N, C, H, W)`` images: ``features`` then ``classifier``.

    Parameters of stage ``s`` with c_in -> c_out channels: 9 * c_in * c_out per conv
    (+ c_out bias without batch norm, + 2 * c_out with it).
    """
    channels, height, width_px = image_shape(in_shape, "vgg")
    if depth < 1 or width < 1 or convs_per_stage < 1:
        raise ValueError(f"vgg needs depth, width and convs_per_stage >= 1; got depth={depth}, "
                         f"width={width}, convs_per_stage={convs_per_stage}")
    act = activation_factory(activation)

    def construct() -> nn.Sequential:
        layers: list[nn.Module] = []
        c_in, h, w = channels, height, width_px
        for stage in range(depth):
            c_out = width * 2**stage
            for _ in range(convs_per_stage):
                layers.append(nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(c_out))
                layers.append(act())
                c_in = c_out
            if min(h, w) >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
        classifier = nn.Sequential(nn.Flatten(), nn.Linear(c_in * h * w, 4 * width), act(),
                                   nn.Linear(4 * width, num_classes))
        return nn.Sequential(OrderedDict(features=nn.Sequential(*layers), classifier=classifier))

    return build_initialized(construct, torch.zeros(2, channels, height, width_px), init, seed)
