"""A Transformer encoder over image patches (Vaswani et al. 2017; Dosovitskiy et al. 2021,
"An Image is Worth 16x16 Words").

``Conv2d(C, width, kernel=patch, stride=patch)`` embeds each non-overlapping patch (the same
map as a Linear on the flattened patch), a learned position embedding (an ``nn.Embedding``
with one row per patch) is added, ``depth`` pre-norm ``nn.TransformerEncoderLayer`` blocks
(feed-forward width ``mlp_ratio * width``, the activation from initlab's registry) and a final
LayerNorm follow; the tokens are mean-pooled and a linear head classifies.

Parameters per encoder layer: 12 * width**2 + 13 * width with mlp_ratio 4 (attention
4 w^2 + 4 w, feed-forward 8 w^2 + 5 w, two LayerNorms 4 w).
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


class PatchTransformer(nn.Module):
    """Patch embedding + position embedding -> TransformerEncoder -> mean-pool -> head."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, depth: int,
                 width: int, heads: int, patch: int, mlp_ratio: int, dropout: float,
                 act: Callable[[], nn.Module]):
        super().__init__()
        channels, height, width_px = in_shape
        self.patch = nn.Conv2d(channels, width, patch, stride=patch)
        self.pos = nn.Embedding((height // patch) * (width_px // patch), width)
        layer = nn.TransformerEncoderLayer(width, heads, mlp_ratio * width, dropout,
                                           activation=act(), batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(width),
                                             enable_nested_tensor=False)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2) + self.pos.weight
        return self.head(self.encoder(tokens).mean(dim=1))


def default_heads(width: int) -> int:
    """The most heads (up to 8) that divide ``width`` with at least 16 dimensions each."""
    return max(h for h in range(1, 9) if width % h == 0 and (h == 1 or width // h >= 16))


def transformer(in_shape: Sequence[int], num_classes: int, activation: ActivationSpec = "gelu",
                depth: int = 2, width: int = 64, heads: int | None = None, patch: int = 4, *,
                mlp_ratio: int = 4, dropout: float = 0.0, init: object = "auto",
                seed: int = 0) -> PatchTransformer:
    """A ViT-style classifier of ``(N, C, H, W)`` images cut into ``patch x patch`` patches
    (a remainder of H or W that does not fill a patch is dropped, as Conv2d does).

    ``dropout`` defaults to 0 so that training draws nothing from the global RNG.
    ``transformer(in_shape, n, depth=12, width=768, heads=12)`` is ViT-Base-sized (~85M).
    """
    shape = image_shape(in_shape, "transformer")
    heads = default_heads(width) if heads is None else heads
    if width % heads:
        raise ValueError(f"transformer width {width} is not divisible by heads={heads}; "
                         f"valid head counts: {[h for h in range(1, width + 1) if width % h == 0]}")
    if not 1 <= patch <= min(shape[1:]):
        raise ValueError(f"transformer patch {patch} must be between 1 and the image's smaller "
                         f"side {min(shape[1:])} (input shape {shape})")
    act = activation_factory(activation)
    return build_initialized(
        lambda: PatchTransformer(shape, num_classes, depth, width, heads, patch, mlp_ratio,
                                 dropout, act),
        torch.zeros(2, *shape), init, seed)


def big_transformer(*, init: object = "auto", seed: int = 0) -> PatchTransformer:
    """A ~100M-parameter encoder for the init benchmark: 14 layers of width 768, 12 heads,
    on 3x32x32 images in 4x4 patches, 10 classes (99,326,218 parameters)."""
    return transformer((3, 32, 32), 10, "gelu", depth=14, width=768, heads=12, patch=4,
                       init=init, seed=seed)
