"""``build(name, ...)``: every builder behind one signature, for sweeps and the CLI.

=============  ============================================================================
name           model (``depth`` / ``width`` mean)
=============  ============================================================================
mlp            ``mlp(prod(input_shape), [width] * depth, num_classes)``: hidden layers/units
vgg            VGG-style CNN: stages of two conv-bn-act blocks / channels of the first stage
resnet         CIFAR ResNet-(6 depth + 2): basic blocks per stage / channels of stage 1
lstm, gru, rnn recurrent stack over image rows: layers / hidden units
transformer    encoder over 4x4 patches (2x2 below 8 pixels): layers / model width
unet           U-Net over (C, H, W), per-pixel logits: down levels / channels of level 0
=============  ============================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from initlab._names import unknown
from initlab.models._common import ActivationSpec, features, image_shape
from initlab.models.convnet import vgg
from initlab.models.feedforward import mlp
from initlab.models.patch_transformer import transformer
from initlab.models.recurrent import CELL_ACTIVATIONS, rnn
from initlab.models.residual import resnet
from initlab.models.segmentation import unet

Builder = Callable[..., nn.Module]


def _mlp(shape, classes, activation, depth, width, **kw) -> nn.Module:
    return mlp(features(shape), [width] * depth, classes, activation, **kw)


def _rnn(cell: str) -> Builder:
    return lambda shape, classes, activation, depth, width, **kw: rnn(
        shape, classes, cell, depth, width, activation=activation, **kw)


def _transformer(shape, classes, activation, depth, width, **kw) -> nn.Module:
    patch = 4 if min(image_shape(shape, "transformer")[1:]) >= 8 else 2
    return transformer(shape, classes, activation, depth, width, patch=patch, **kw)


def _unet(shape, classes, activation, depth, width, **kw) -> nn.Module:
    channels, height, width_px = image_shape(shape, "unet")
    return unet(channels, classes, width, depth, activation, image_size=min(height, width_px),
                **kw)


BUILDERS: dict[str, Builder] = {
    "mlp": _mlp, "vgg": vgg, "resnet": resnet, "lstm": _rnn("lstm"),
    "gru": _rnn("gru"), "rnn": _rnn("rnn"), "transformer": _transformer, "unet": _unet,
}


def names() -> list[str]:
    """Every model name ``build`` accepts."""
    return sorted(BUILDERS)


def _builder(model_name: str) -> Builder:
    if model_name not in BUILDERS:
        raise unknown("model", model_name, BUILDERS)
    return BUILDERS[model_name]


def activations_for(model_name: str) -> list[str] | None:
    """The activations ``model_name`` accepts, or None when it takes any registered one
    (LSTM and GRU cells have fixed non-linearities; a plain RNN takes tanh or relu)."""
    _builder(model_name)
    allowed = CELL_ACTIVATIONS.get(model_name)
    return list(allowed) if allowed else None


def build(model_name: str, input_shape: Sequence[int], num_classes: int, *,
          activation: ActivationSpec, depth: int, width: int, init: object = "auto",
          seed: int = 0) -> nn.Module:
    """The model ``model_name`` for inputs of shape ``input_shape`` (one example, no batch
    dimension) and ``num_classes`` outputs, initialized by ``initlab.init_model`` with scheme
    ``init`` and ``torch.Generator().manual_seed(seed)``. See the table above for what
    ``depth`` and ``width`` mean per model.
    """
    return _builder(model_name)(tuple(input_shape), num_classes, activation, depth, width,
                                init=init, seed=seed)
