r"""How the mean and second moment of a signal change through each kind of op.

A :class:`Signal` is the mean :math:`m = E[x]` and second moment :math:`q = E[x^2]` of a
tensor's entries, averaged over examples, units and positions, over the random draw of the
weights at initialization (the mean-field picture of Poole et al. 2016). The rules:

* **weight layer** :math:`y = Wx`, :math:`W_{ij} \sim \mathcal{N}(0, g^2/\text{fan\_in})`,
  bias 0: :math:`E[y] = 0`, :math:`E[y^2] = g^2\, q_x\, t/\text{fan\_in}`, with :math:`t` the
  number of input entries each output really sums (``fan_in`` for a Linear layer, and on
  average for a transposed convolution, whose fan_in counts its mean ``k/s`` taps per dim;
  fewer at a zero-padded or cropped border). So :math:`g = \sqrt{\text{fan\_in} / (t\, q_x)}`
  gives unit variance. This is exact for any input distribution: no Gaussian assumption.
* **activation** :math:`\phi`: its input is taken to be Gaussian :math:`\mathcal{N}(m,
  q - m^2)` -- the output of a wide random linear layer is (central limit theorem); after a
  sum of non-Gaussian terms this is an approximation -- and :math:`E[\phi]`,
  :math:`E[\phi^2]` are computed by Gaussian quadrature (``initlab.gains``).
* **sum** of two signals (a residual connection): at initialization a branch's fresh
  zero-mean weights make it uncorrelated with its input, so variances add:
  :math:`m = m_a + m_b`, :math:`v = v_a + v_b`. A signal added to itself doubles.
* **product** of two signals (gating): independent, :math:`m = m_a m_b`, :math:`q = q_a q_b`.
* **concatenation**: an average weighted by each part's size along the joined dimension.
* **normalization** (batch, layer, group, instance norm; affine weight 1 and bias 0 at init):
  reset to :math:`(0, 1)`.
* **pooling and means** (average, max, adaptive, ``x.mean(dim)``): the signal is kept. Averaging
  :math:`k` entries with pairwise correlation :math:`\rho` keeps the mean and multiplies the
  variance by :math:`1/k + (1 - 1/k)\rho`; the rule takes :math:`\rho = 1` (neighbouring
  positions of a convolutional feature map are strongly correlated), an upper bound on the
  variance. For max pooling of fully correlated entries the max is the entry itself.
* **dropout** with rate :math:`p` in training mode (inverted dropout): mean kept,
  :math:`q / (1 - p)`; in eval mode the identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from initlab.activations import Activation
from initlab.gains import gaussian_expectation, quadrature_breakpoints


@dataclass(frozen=True)
class Signal:
    """Mean and second moment of a tensor's entries."""

    mean: float
    second_moment: float

    @property
    def variance(self) -> float:
        return max(self.second_moment - self.mean**2, 0.0)

    @classmethod
    def from_mean_variance(cls, mean: float, variance: float) -> Signal:
        """A signal from its mean and variance; ValueError naming a negative or non-finite one."""
        for name, value in (("mean", mean), ("variance", variance)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value):
                raise ValueError(f"input {name} must be a finite number, got {value!r}")
        if variance < 0:
            raise ValueError(f"input variance must be >= 0, got {variance!r}")
        return cls(float(mean), float(variance + mean**2))

    @classmethod
    def of(cls, tensor: Tensor) -> Signal:
        """The measured moments of a real tensor."""
        x = tensor.detach().double()
        if not torch.isfinite(x).all():
            raise ValueError(f"a tensor of shape {tuple(tensor.shape)} has non-finite entries")
        return cls(float(x.mean()), float((x * x).mean())) if x.numel() else cls(0.0, 0.0)


UNIT = Signal(0.0, 1.0)


def layer_gain(x: Signal, terms_per_fan_in: float = 1.0) -> float:
    """g with std = g / sqrt(fan_in) giving the layer's output unit variance."""
    effective = x.second_moment * terms_per_fan_in
    if not effective > 0:
        raise ValueError(f"a layer's input has second moment {x.second_moment:.3g}: no gain "
                         "can give its output unit variance")
    return 1.0 / math.sqrt(effective)


def activation(act: Activation, x: Signal) -> Signal:
    """E[phi(z)] and E[phi(z)^2] for z ~ N(mean, variance) of ``x``."""
    mu, s = x.mean, math.sqrt(x.variance)
    if s == 0.0:
        value = float(act.fn(torch.tensor([mu], dtype=torch.float64))[0])
        return Signal(value, value * value)
    kinks = tuple((k - mu) / s for k in quadrature_breakpoints(act))
    mean = gaussian_expectation(lambda z: act.fn(mu + s * z), kinks)
    second = gaussian_expectation(lambda z: act.fn(mu + s * z) ** 2, kinks)
    return Signal(mean, second)


def add(a: Signal, b: Signal, *, same: bool = False) -> Signal:
    """a + b for uncorrelated signals (a residual branch and its input); ``same``: a + a."""
    if same:
        return scale(a, 2.0)
    mean = a.mean + b.mean
    return Signal(mean, a.variance + b.variance + mean * mean)


def shift(x: Signal, c: float) -> Signal:
    """x + c for a constant c."""
    return Signal(x.mean + c, x.second_moment + 2 * c * x.mean + c * c)


def scale(x: Signal, c: float) -> Signal:
    """c * x for a constant c."""
    return Signal(c * x.mean, c * c * x.second_moment)


def product(a: Signal, b: Signal) -> Signal:
    """a * b for independent signals."""
    return Signal(a.mean * b.mean, a.second_moment * b.second_moment)


def concat(parts: list[Signal], sizes: list[int] | None = None) -> Signal:
    """Concatenation: moments averaged, weighted by each part's size (equal if unknown)."""
    sizes = sizes or [1] * len(parts)
    total = sum(sizes)
    return Signal(sum(n * p.mean for p, n in zip(parts, sizes, strict=True)) / total,
                  sum(n * p.second_moment for p, n in zip(parts, sizes, strict=True)) / total)


def dropout(x: Signal, p: float, training: bool) -> Signal:
    """Inverted dropout: E[x^2] / (1 - p) in training, the identity in eval mode."""
    if not training or p == 0:
        return x
    return Signal(x.mean, x.second_moment / (1.0 - p)) if p < 1 else Signal(0.0, 0.0)
