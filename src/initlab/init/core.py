r"""The one variance-scaling core every fan-based scheme is a preset of.

Glorot & Bengio (2010), He et al. (2015) and LeCun et al. (1998) differ only
in which fan they divide by and by how much they scale; JAX
(``jax.nn.initializers.variance_scaling``) and Keras (``VarianceScaling``)
write the whole family as one function of ``(scale, mode, distribution)``,
and so does initlab.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from initlab._names import unknown
from initlab.init.fans import MODES, Fans, fan_count, tensor_fans

DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")

TRUNCATED_NORMAL_STD = 0.87962566103423978
"""Standard deviation of a standard normal truncated to [-2, 2] (as in JAX and Keras)."""


def check_positive(name: str, value: object) -> float:
    """``value`` as a float, or a ValueError naming it if it is not finite and > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def check_choice(kind: str, value: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else the registry's pointed ValueError."""
    if value not in choices:
        raise unknown(kind, value, choices)
    return value


def variance_scaling(
    tensor: Tensor,
    scale: float = 1.0,
    mode: str = "fan_in",
    distribution: str = "truncated_normal",
    *,
    fans: Fans | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Fill ``tensor`` in place with variance :math:`\text{scale} / n`.

    .. math::
        n = \begin{cases} \text{fan\_in} & \text{mode = fan\_in} \\
                          \text{fan\_out} & \text{mode = fan\_out} \\
                          (\text{fan\_in} + \text{fan\_out}) / 2 & \text{mode = fan\_avg}
            \end{cases}
        \qquad \sigma = \sqrt{\text{scale} / n}

    * ``normal``: :math:`\mathcal{N}(0, \sigma^2)`;
    * ``truncated_normal``: :math:`\mathcal{N}(0, s^2)` cut at :math:`\pm 2s` with
      :math:`s = \sigma / 0.87962566103423978`, so the *truncated* draws have
      standard deviation exactly :math:`\sigma` (JAX and Keras do the same);
    * ``uniform``: :math:`\mathcal{U}(-a, a)`, :math:`a = \sqrt{3\,\text{scale} / n}`.

    ``scale = 1, fan_avg`` is Glorot & Bengio (2010), "Understanding the
    difficulty of training deep feedforward neural networks";
    ``scale = 2, fan_in`` is He et al. (2015), "Delving Deep into Rectifiers";
    ``scale = 1, fan_in`` is LeCun et al. (1998), "Efficient BackProp".

    Args:
        tensor: the weight to fill (in place, without recording autograd history).
        scale: positive, finite variance multiplier (a gain :math:`g` is ``scale = g**2``).
        mode: ``fan_in`` | ``fan_out`` | ``fan_avg``.
        distribution: ``truncated_normal`` | ``normal`` | ``uniform``.
        fans: the block's fans (from :func:`initlab.init.param_blocks`); by default
            :func:`initlab.init.tensor_fans` of the tensor's shape.
        generator: the source of randomness.

    Returns:
        ``tensor``. Empty (and meta) tensors are returned unchanged.

    Example:
        >>> w = torch.empty(256, 784)
        >>> _ = variance_scaling(w, 2.0, "fan_in", "normal")  # He normal for ReLU
    """
    scale = check_positive("scale", scale)
    check_choice("fan mode", mode, MODES)
    check_choice("distribution", distribution, DISTRIBUTIONS)
    fans = tensor_fans(tensor.shape) if fans is None else fans
    if tensor.numel() == 0 or tensor.is_meta:
        return tensor
    n = fan_count(fans, mode)
    if n <= 0:
        raise ValueError(f"{mode} must be positive to scale by it, got {fans}")
    std = math.sqrt(scale / n)
    with torch.no_grad():
        if distribution == "normal":
            return tensor.normal_(0.0, std, generator=generator)
        if distribution == "uniform":
            limit = math.sqrt(3.0 * scale / n)
            return tensor.uniform_(-limit, limit, generator=generator)
        wide = std / TRUNCATED_NORMAL_STD
        return torch.nn.init.trunc_normal_(tensor, 0.0, wide, -2 * wide, 2 * wide, generator)
