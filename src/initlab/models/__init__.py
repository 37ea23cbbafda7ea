"""Model builders for the article's scenarios, each initialized through ``initlab.init_model``.

Image classification (an MLP, the article's ``mlp(784, [256], 10)``; a VGG-style CNN; residual
CNNs), sequence models (LSTM / GRU / RNN over image rows; a Transformer encoder over patches)
and semantic segmentation (a U-Net). Every builder takes the activation (any name
``initlab.activations.resolve`` accepts), a depth and a width, ``init`` (the plan's scheme)
and ``seed``; the same seed gives the same weights and the global RNG is never touched.
"""

from initlab.models.convnet import vgg
from initlab.models.feedforward import mlp
from initlab.models.patch_transformer import PatchTransformer, big_transformer, transformer
from initlab.models.recurrent import RowRNN, rnn
from initlab.models.registry import activations_for, build, names
from initlab.models.residual import BasicBlock, ResNet, resnet, resnet18
from initlab.models.segmentation import UNet, unet

__all__ = [
    "BasicBlock", "PatchTransformer", "ResNet", "RowRNN", "UNet", "activations_for",
    "big_transformer", "build", "mlp", "names", "resnet", "resnet18", "rnn", "transformer",
    "unet", "vgg",
]
