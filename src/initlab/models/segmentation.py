"""A small U-Net (Ronneberger et al. 2015, "U-Net: Convolutional Networks for Biomedical
Image Segmentation"): the article's semantic-segmentation scenario.

``depth`` down levels, each a double convolution (``Conv2d 3x3 -> BatchNorm2d -> activation``
twice) followed by a 2x2 max-pool, with ``width * 2**level`` channels; a bottleneck double
convolution; ``depth`` up levels, each ``ConvTranspose2d(kernel 2, stride 2)`` halving the
channels, concatenation with the skip of the same level and a double convolution; a 1x1
convolution to ``num_classes`` logits per pixel. Inputs of any size of at least 2**depth
pixels work: an upsampled map one pixel short of its skip (odd sizes) is zero-padded.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn

from initlab.models._common import ActivationSpec, activation_factory, build_initialized


@torch.fx.wrap
def match_size(x: Tensor, skip: Tensor) -> Tensor:
    """``x`` zero-padded on the bottom and right to the spatial size of ``skip``."""
    return F.pad(x, [0, skip.shape[-1] - x.shape[-1], 0, skip.shape[-2] - x.shape[-2]])


def double_conv(c_in: int, c_out: int, act: Callable[[], nn.Module]) -> nn.Sequential:
    """(Conv2d 3x3 -> BatchNorm2d -> activation) twice."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         act(), nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), act())


class UNet(nn.Module):
    """Encoder, bottleneck, decoder with ConvTranspose2d upsampling and skips, 1x1 head."""

    def __init__(self, in_channels: int, num_classes: int, width: int, depth: int,
                 act: Callable[[], nn.Module]):
        super().__init__()
        widths = [width * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList(
            double_conv(c_in, c_out, act)
            for c_in, c_out in zip([in_channels, *widths[:-2]], widths[:-1], strict=True))
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = double_conv(widths[-2], widths[-1], act)
        self.upsample = nn.ModuleList(nn.ConvTranspose2d(c, c // 2, 2, stride=2)
                                      for c in reversed(widths[1:]))
        self.up = nn.ModuleList(double_conv(c, c // 2, act) for c in reversed(widths[1:]))
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for upsample, block, skip in zip(self.upsample, self.up, reversed(skips), strict=True):
            x = block(torch.cat([skip, match_size(upsample(x), skip)], dim=1))
        return self.head(x)


def unet(in_channels: int, num_classes: int, width: int = 16, depth: int = 2,
         activation: ActivationSpec = "relu", *, init: object = "auto", seed: int = 0,
         image_size: int = 32) -> UNet:
    """A U-Net mapping ``(N, in_channels, H, W)`` to ``(N, num_classes, H, W)`` logits.

    ``image_size`` only shapes the example input given to the plan.
    """
    if depth < 1 or width < 1:
        raise ValueError(f"unet needs depth and width >= 1; got depth={depth}, width={width}")
    if image_size < 2**depth:
        raise ValueError(f"unet of depth {depth} needs images of at least {2**depth} pixels; "
                         f"got image_size={image_size}")
    act = activation_factory(activation)
    return build_initialized(lambda: UNet(in_channels, num_classes, width, depth, act),
                             torch.zeros(2, in_channels, image_size, image_size), init, seed)
