"""Initializers: one variance-scaling core, named presets, and fans per module kind.

>>> import torch
>>> from initlab import init
>>> w = torch.empty(256, 784)
>>> _ = init.get("he_normal")(w, generator=torch.Generator().manual_seed(0))
>>> lstm = torch.nn.LSTM(10, 20)
>>> [b.gate for b in init.param_blocks(lstm, "weight_hh_l0")]
['i', 'f', 'g', 'o']
"""

from initlab.init.core import DISTRIBUTIONS, TRUNCATED_NORMAL_STD, variance_scaling
from initlab.init.fans import MODES, Block, Fans, fan_count, param_blocks, tensor_fans
from initlab.init.functional import (
    delta_orthogonal_,
    he_normal_,
    he_uniform_,
    identity_,
    lecun_normal_,
    lecun_uniform_,
    orthogonal_,
    xavier_normal_,
    xavier_uniform_,
)
from initlab.init.registry import ALIASES, get, names, scheme_class
from initlab.init.schemes import (
    Constant,
    DeltaOrthogonal,
    HeNormal,
    HeUniform,
    Identity,
    Initializer,
    LecunNormal,
    LecunUniform,
    Normal,
    Ones,
    Orthogonal,
    TruncNormal,
    Uniform,
    VarianceScaling,
    XavierNormal,
    XavierUniform,
    Zeros,
)

__all__ = [
    "ALIASES",
    "DISTRIBUTIONS",
    "MODES",
    "TRUNCATED_NORMAL_STD",
    "Block",
    "Constant",
    "DeltaOrthogonal",
    "Fans",
    "HeNormal",
    "HeUniform",
    "Identity",
    "Initializer",
    "LecunNormal",
    "LecunUniform",
    "Normal",
    "Ones",
    "Orthogonal",
    "TruncNormal",
    "Uniform",
    "VarianceScaling",
    "XavierNormal",
    "XavierUniform",
    "Zeros",
    "delta_orthogonal_",
    "fan_count",
    "get",
    "he_normal_",
    "he_uniform_",
    "identity_",
    "lecun_normal_",
    "lecun_uniform_",
    "names",
    "orthogonal_",
    "param_blocks",
    "scheme_class",
    "tensor_fans",
    "variance_scaling",
    "xavier_normal_",
    "xavier_uniform_",
]
