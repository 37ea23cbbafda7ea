"""Residual CNNs with basic blocks (He et al. 2016, "Deep Residual Learning for Image
Recognition"), with the CIFAR-style stem (a 3x3 convolution, no max-pool) used for small
images.

A basic block computes ``act2(bn2(conv2(act1(bn1(conv1(x))))) + shortcut(x))``; the shortcut
is the identity, or ``Conv2d(1x1, stride) -> BatchNorm2d`` (a projection) when the block
changes the shape. ``bn2`` is the last layer of the residual branch: the one
``initlab.plan(..., zero_residual=True)`` zeroes (Goyal et al. 2017).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from initlab.models._common import (
    ActivationSpec,
    activation_factory,
    build_initialized,
    image_shape,
)


class BasicBlock(nn.Module):
    """conv3x3-bn-act-conv3x3-bn plus a skip connection, then the activation."""

    def __init__(self, c_in: int, c_out: int, stride: int, act: Callable[[], nn.Module]):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.act1 = act()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))
        self.act2 = act()

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem, stages of basic blocks (the first block of each later stage has stride 2),
    global average pooling and a linear head."""

    def __init__(self, in_channels: int, num_classes: int, stage_blocks: Sequence[int],
                 stage_widths: Sequence[int], act: Callable[[], nn.Module]):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stage_widths[0], 3, padding=1,
                                            bias=False),
                                  nn.BatchNorm2d(stage_widths[0]), act())
        stages, c_in = [], stage_widths[0]
        for i, (blocks, c_out) in enumerate(zip(stage_blocks, stage_widths, strict=True)):
            strides = [1 if i == 0 else 2] + [1] * (blocks - 1)
            stage = []
            for stride in strides:
                stage.append(BasicBlock(c_in, c_out, stride, act))
                c_in = c_out
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.stages(self.stem(x))))


def resnet(in_shape: Sequence[int], num_classes: int, activation: ActivationSpec = "relu",
           depth: int = 1, width: int = 16, *, stages: int = 3, init: object = "auto",
           seed: int = 0) -> ResNet:
    """A CIFAR-style ResNet-(6 * depth + 2): ``stages`` stages of ``depth`` basic blocks with
    ``width, 2 * width, 4 * width, ...`` channels (He et al. 2016, section 4.2)."""
    channels, height, width_px = image_shape(in_shape, "resnet")
    if depth < 1 or width < 1 or stages < 1:
        raise ValueError(f"resnet needs depth, width and stages >= 1; got depth={depth}, "
                         f"width={width}, stages={stages}")
    act = activation_factory(activation)
    widths = [width * 2**s for s in range(stages)]
    return build_initialized(lambda: ResNet(channels, num_classes, [depth] * stages, widths, act),
                             torch.zeros(2, channels, height, width_px), init, seed)


def resnet18(num_classes: int = 10, in_channels: int = 3, activation: ActivationSpec = "relu",
             *, init: object = "auto", seed: int = 0, image_size: int = 32) -> ResNet:
    """ResNet-18's four stages of two basic blocks (64, 128, 256, 512 channels) with the
    CIFAR stem: 11,173,962 parameters for 10 classes and 3 input channels (torchvision's
    11,689,512 less its 7x7 stem and 1000-class head). ``image_size`` only shapes the
    example input given to the plan."""
    act = activation_factory(activation)
    return build_initialized(
        lambda: ResNet(in_channels, num_classes, [2, 2, 2, 2], [64, 128, 256, 512], act),
        torch.zeros(2, in_channels, image_size, image_size), init, seed)
