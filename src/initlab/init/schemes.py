r"""Init schemes as small serializable objects (Keras style), all fan-based ones
thin presets of :func:`initlab.init.core.variance_scaling`.

Every scheme is called the same way::

    scheme(tensor, fans=None, gain=None, generator=None, groups=1)  # in place, returns tensor

``fans``, ``gain`` and ``groups`` are facts about the layer, supplied by the
whole-model planner: the block's fans (:func:`initlab.init.param_blocks`),
the exact gain of the activation that follows, and the conv's group count.
A scheme whose own ``gain`` is ``"auto"`` uses the supplied gain (1.0 if none);
a scheme with a numeric gain keeps its own.

``scheme.std(fans, gain)`` is the standard deviation of the entries the scheme
produces (``None`` for the deterministic identity), ``scheme.get_config()`` a
JSON-ready dict that :func:`initlab.init.get` turns back into an equal scheme.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import ClassVar, Literal

import torch
from torch import Tensor

from initlab.init.core import DISTRIBUTIONS, check_choice, check_positive, variance_scaling
from initlab.init.fans import MODES, Fans, fan_count

Gain = float | Literal["auto"]
SQRT2 = math.sqrt(2.0)
"""He et al.'s gain for ReLU, the default of ``he_*``."""


def _check_gain(gain: object) -> Gain:
    return "auto" if gain == "auto" else check_positive("gain", gain)


def _check_finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _format(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else repr(value)


class Initializer(ABC):
    """Base of every scheme: parameters in, in-place fill out.

    Subclasses declare ``name``, take their parameters as keyword arguments of
    ``__init__`` (validated there, stored in :attr:`params`) and implement
    ``_fill`` and ``std``.
    """

    name: ClassVar[str]

    def __init__(self, **params: object) -> None:
        self._params = params

    @property
    def params(self) -> Mapping[str, object]:
        """The scheme's parameters (read-only)."""
        return MappingProxyType(self._params)

    def __call__(
        self,
        tensor: Tensor,
        *,
        fans: Fans | None = None,
        gain: float | None = None,
        generator: torch.Generator | None = None,
        groups: int = 1,
    ) -> Tensor:
        """Fill ``tensor`` in place (no autograd history) and return it."""
        if gain is not None:
            check_positive("gain", gain)
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise ValueError(f"groups must be a positive int, got {groups!r}")
        with torch.no_grad():
            self._fill(tensor, fans, gain, generator, groups)
        return tensor

    @abstractmethod
    def _fill(
        self,
        tensor: Tensor,
        fans: Fans | None,
        gain: float | None,
        generator: torch.Generator | None,
        groups: int,
    ) -> None: ...

    @abstractmethod
    def std(
        self,
        fans: Fans,
        gain: float | None = None,
        *,
        shape: Sequence[int] | None = None,
        groups: int = 1,
    ) -> float | None:
        """Standard deviation of the produced entries for a block with these fans.

        ``shape`` and ``groups`` matter only to orthogonal schemes (their scale
        depends on the matrix's aspect, not its fans); without them the block
        is taken as a ``(fan_out, fan_in)`` matrix. None where undefined.
        """

    @property
    def fan_mode(self) -> str | None:
        """The fan the standard deviation divides by: ``fan_in``, ``fan_out`` or ``fan_avg``
        for the variance-scaling family, None for a scheme not scaled by a fan (constants,
        fixed scales, orthogonal, identity). A gain meant for this scheme must be for this
        fan (forward over fan_in, backward over fan_out; see ``initlab.plan``)."""
        return None

    def get_config(self) -> dict[str, object]:
        """JSON-serializable config; ``initlab.init.get(config)`` rebuilds an equal scheme."""
        return {"name": self.name, **self._params}

    def _gain(self, supplied: float | None) -> float:
        own = self._params["gain"]
        if own == "auto":
            return 1.0 if supplied is None else supplied
        return own

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_format(v)}" for k, v in self._params.items())
        return f"{self.name}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._params == other._params

    def __hash__(self) -> int:
        return hash((type(self), tuple(self._params.items())))


# --------------------------------------------------------------------------- constants


class _Fill(Initializer):
    value: float

    def _fill(self, tensor, fans, gain, generator, groups) -> None:
        tensor.fill_(self.value)

    def std(self, fans, gain=None, *, shape=None, groups=1) -> float:
        return 0.0


class Zeros(_Fill):
    """Fill with 0 (biases; the last layer of a residual branch, Goyal et al. 2017)."""

    name = "zeros"
    value = 0.0

    def __init__(self) -> None:
        super().__init__()


class Ones(_Fill):
    """Fill with 1 (the scale of normalization layers)."""

    name = "ones"
    value = 1.0

    def __init__(self) -> None:
        super().__init__()


class Constant(_Fill):
    """Fill with ``value`` (e.g. 1 for an LSTM forget-gate bias, Jozefowicz et al. 2015)."""

    name = "constant"

    def __init__(self, value: float = 0.0) -> None:
        super().__init__(value=_check_finite("value", value))

    @property
    def value(self) -> float:
        return self._params["value"]


# --------------------------------------------------------------------------- fixed scale


class Uniform(Initializer):
    r""":math:`\mathcal{U}(-a, a)`, standard deviation :math:`a/\sqrt{3}`."""

    name = "uniform"

    def __init__(self, a: float = 0.1) -> None:
        super().__init__(a=check_positive("a", a))

    def _fill(self, tensor, fans, gain, generator, groups) -> None:
        a = self._params["a"]
        tensor.uniform_(-a, a, generator=generator)

    def std(self, fans, gain=None, *, shape=None, groups=1) -> float:
        return self._params["a"] / math.sqrt(3.0)


class Normal(Initializer):
    r""":math:`\mathcal{N}(\text{mean}, \text{std}^2)`."""

    name = "normal"

    def __init__(self, std: float = 0.01, mean: float = 0.0) -> None:
        super().__init__(std=check_positive("std", std), mean=_check_finite("mean", mean))

    def _fill(self, tensor, fans, gain, generator, groups) -> None:
        tensor.normal_(self._params["mean"], self._params["std"], generator=generator)

    def std(self, fans, gain=None, *, shape=None, groups=1) -> float:
        return self._params["std"]


class TruncNormal(Initializer):
    r""":math:`\mathcal{N}(\text{mean}, \text{std}^2)` conditioned on :math:`[a, b]`.

    As ``torch.nn.init.trunc_normal_``: ``std`` is that of the normal *before*
    truncation, and ``a``, ``b`` are absolute cut points; left as None they are
    ``mean -/+ 2 std`` (so ``trunc_normal(std=0.02)`` really truncates, unlike
    torch's default ``a=-2, b=2``). The resulting standard deviation is

    .. math::
        \sigma\sqrt{1 + \frac{\alpha\varphi(\alpha) - \beta\varphi(\beta)}{Z}
                    - \left(\frac{\varphi(\alpha) - \varphi(\beta)}{Z}\right)^2},
        \quad \alpha = \tfrac{a - \mu}{\sigma},\ \beta = \tfrac{b - \mu}{\sigma},\
        Z = \Phi(\beta) - \Phi(\alpha).

    Used by BERT (Devlin et al. 2019) and ViT (Dosovitskiy et al. 2021) with std 0.02.
    """

    name = "trunc_normal"

    def __init__(
        self, std: float = 0.02, mean: float = 0.0, a: float | None = None, b: float | None = None
    ) -> None:
        std, mean = check_positive("std", std), _check_finite("mean", mean)
        a = None if a is None else _check_finite("a", a)
        b = None if b is None else _check_finite("b", b)
        lo, hi = _bounds(mean, std, a, b)
        if not lo < hi:
            raise ValueError(f"trunc_normal needs a < b, got a={lo!r}, b={hi!r}")
        super().__init__(std=std, mean=mean, a=a, b=b)

    def _fill(self, tensor, fans, gain, generator, groups) -> None:
        p = self._params
        lo, hi = _bounds(p["mean"], p["std"], p["a"], p["b"])
        torch.nn.init.trunc_normal_(tensor, p["mean"], p["std"], lo, hi, generator=generator)

    def std(self, fans, gain=None, *, shape=None, groups=1) -> float:
        p = self._params
        sigma = p["std"]
        lo, hi = _bounds(p["mean"], sigma, p["a"], p["b"])
        alpha, beta = (lo - p["mean"]) / sigma, (hi - p["mean"]) / sigma
        z = _phi_cdf(beta) - _phi_cdf(alpha)
        pa, pb = _phi_pdf(alpha), _phi_pdf(beta)
        spread = (alpha * pa - beta * pb) / z - ((pa - pb) / z) ** 2
        return sigma * math.sqrt(1.0 + spread)


def _bounds(mean: float, std: float, a: float | None, b: float | None) -> tuple[float, float]:
    return (mean - 2 * std if a is None else a), (mean + 2 * std if b is None else b)


def _phi_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _phi_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


# --------------------------------------------------------------------------- variance scaling


class _Scaled(Initializer):
    """Shared call and std of the variance-scaling family: std = gain * sqrt(scale / n)."""

    distribution: ClassVar[str]

    @abstractmethod
    def _core(self) -> tuple[float, str, str]:
        """(scale, mode, distribution) handed to the core before the gain."""

    @property
    def fan_mode(self) -> str:
        return self._core()[1]

    def _fill(self, tensor, fans, gain, generator, groups) -> None:
        scale, mode, distribution = self._core()
        g = self._gain(gain)
        variance_scaling(tensor, g * g * scale, mode, distribution, fans=fans, generator=generator)

    def std(self, fans, gain=None, *, shape=None, groups=1) -> float | None:
        scale, mode, _ = self._core()
        n = fan_count(fans, mode)
        return self._gain(gain) * math.sqrt(scale / n) if n > 0 else None


class VarianceScaling(_Scaled):
    r"""The general case: variance :math:`g^2\,\text{scale} / n`, see :func:`variance_scaling`.

    With the default ``gain="auto"`` the planner's gain of the following
    activation multiplies the standard deviation (1.0 when called alone, which
    is then exactly JAX's ``variance_scaling(scale, mode, distribution)``).
    """

    name = "variance_scaling"

    def __init__(
        self,
        scale: float = 1.0,
        mode: str = "fan_in",
        distribution: str = "truncated_normal",
        gain: Gain = "auto",
    ) -> None:
        super().__init__(
            scale=check_positive("scale", scale),
            mode=check_choice("fan mode", mode, MODES),
            distribution=check_choice("distribution", distribution, DISTRIBUTIONS),
            gain=_check_gain(gain),
        )

    def _core(self) -> tuple[float, str, str]:
        p = self._params
        return p["scale"], p["mode"], p["distribution"]


class XavierNormal(_Scaled):
    r"""Glorot & Bengio (2010), "Understanding the difficulty of training deep
    feedforward neural networks": :math:`\mathcal{N}(0, \sigma^2)`,

    .. math:: \sigma = \text{gain} \sqrt{\frac{2}{\text{fan\_in} + \text{fan\_out}}}

    (``torch.nn.init.xavier_normal_``; JAX/Keras ``glorot_normal`` truncate).
    """

    name = "xavier_normal"
    distribution = "normal"

    def __init__(self, gain: Gain = 1.0) -> None:
        super().__init__(gain=_check_gain(gain))

    def _core(self) -> tuple[float, str, str]:
        return 1.0, "fan_avg", self.distribution


class XavierUniform(XavierNormal):
    r"""Glorot & Bengio (2010): :math:`\mathcal{U}(-a, a)`,

    .. math:: a = \text{gain} \sqrt{\frac{6}{\text{fan\_in} + \text{fan\_out}}}

    (``torch.nn.init.xavier_uniform_``, JAX/Keras ``glorot_uniform``).
    """

    name = "xavier_uniform"
    distribution = "uniform"


class HeNormal(_Scaled):
    r"""He et al. (2015), "Delving Deep into Rectifiers": :math:`\mathcal{N}(0, \sigma^2)`,

    .. math:: \sigma = \frac{\text{gain}}{\sqrt{\text{fan\_mode}}}

    with gain :math:`\sqrt 2` for ReLU (torch's ``kaiming_normal_(nonlinearity="relu")``;
    JAX/Keras ``he_normal`` truncate). ``gain="auto"`` takes the exact gain of
    the activation that follows.
    """

    name = "he_normal"
    distribution = "normal"

    def __init__(self, gain: Gain = SQRT2, mode: str = "fan_in") -> None:
        super().__init__(gain=_check_gain(gain), mode=check_choice("fan mode", mode, MODES))

    def _core(self) -> tuple[float, str, str]:
        return 1.0, self._params["mode"], self.distribution


class HeUniform(HeNormal):
    r"""He et al. (2015): :math:`\mathcal{U}(-a, a)`,
    :math:`a = \text{gain}\sqrt{3 / \text{fan\_mode}}` (torch's ``kaiming_uniform_``).
    """

    name = "he_uniform"
    distribution = "uniform"


class LecunNormal(_Scaled):
    r"""LeCun et al. (1998), "Efficient BackProp": :math:`\mathcal{N}(0, \sigma^2)`,
    :math:`\sigma = \text{gain}/\sqrt{\text{fan\_in}}`; with SELU it is the
    self-normalizing init of Klambauer et al. (2017). (JAX/Keras truncate.)
    """

    name = "lecun_normal"
    distribution = "normal"

    def __init__(self, gain: Gain = 1.0) -> None:
        super().__init__(gain=_check_gain(gain))

    def _core(self) -> tuple[float, str, str]:
        return 1.0, "fan_in", self.distribution


class LecunUniform(LecunNormal):
    r"""LeCun et al. (1998): :math:`\mathcal{U}(-a, a)`,
    :math:`a = \text{gain}\sqrt{3/\text{fan\_in}}`.
    """

    name = "lecun_uniform"
    distribution = "uniform"


# --------------------------------------------------------------------------- structured


def _group_rows(tensor: Tensor, groups: int, scheme: str) -> int:
    rows = tensor.shape[0]
    if rows % groups:
        raise ValueError(
            f"{scheme}: groups={groups} does not divide dim 0 of shape {tuple(tensor.shape)}"
        )
    return rows // groups


def _orthogonal_matrix(
    rows: int, cols: int, gain: float, generator: torch.Generator | None, like: Tensor
) -> Tensor:
    """A (rows, cols) semi-orthogonal matrix times gain, by torch's QR recipe.

    Drawn in float32 (float64 for float64 weights) since QR needs it, so a
    float32 weight gets exactly ``torch.nn.init.orthogonal_``'s numbers.
    """
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
    matrix = torch.empty(rows, cols, dtype=dtype, device=like.device)
    return torch.nn.init.orthogonal_(matrix, gain, generator=generator)


def _orthogonal_std(gain: float, rows: int, cols: int, taps: int = 1) -> float:
    """RMS of gain * a semi-orthogonal (rows, cols) matrix spread over ``taps`` positions.

    ``||Q||_F^2 = min(rows, cols)``, so the mean square entry is
    ``gain^2 / (max(rows, cols) * taps)``.
    """
    return gain / math.sqrt(max(rows, cols) * taps)


class Orthogonal(Initializer):
    r"""Saxe et al. (2014), "Exact solutions to the nonlinear dynamics of learning
    in deep linear neural networks": ``gain`` times a (semi-)orthogonal matrix.

    The tensor is read as ``(rows, prod(rest))``; with ``groups`` each group of
    rows gets its own matrix. Rows are orthonormal when ``rows <= cols``,
    columns otherwise (:math:`W W^T = g^2 I` or :math:`W^T W = g^2 I`);
    sampled uniformly (Haar) as in ``torch.nn.init.orthogonal_`` (Mezzadri 2007).
    """

    name = "orthogonal"

    def __init__(self, gain: Gain = 1.0) -> None:
        super().__init__(gain=_check_gain(gain))

    def _fill(self, tensor, fans, gain, generator, groups) -> None:
        if tensor.dim() < 2:
            raise ValueError(
                f"orthogonal needs a tensor with at least 2 dims, got shape {tuple(tensor.shape)}"
            )
        rows = _group_rows(tensor, groups, self.name)
        if tensor.numel() == 0 or tensor.is_meta:
            return
        g = self._gain(gain)
        for block in tensor.split(rows):
            matrix = _orthogonal_matrix(rows, block[0].numel(), g, generator, block)
            block.copy_(matrix.view_as(block))

    def std(self, fans, gain=None, *, shape=None, groups=1) -> float:
        g = self._gain(gain)
        if shape is None:
            return _orthogonal_std(g, fans.fan_out, fans.fan_in)
        return _orthogonal_std(g, shape[0] // groups, math.prod(shape[1:]))


class DeltaOrthogonal(Initializer):
    r"""Xiao et al. (2018), "Dynamical Isometry and a Mean Field Theory of CNNs:
    How to Train 10,000-Layer Vanilla Convolutional Neural Networks".

    A conv kernel ``(out, in, *k)`` that is zero except at the centre tap
    (index ``k // 2`` per spatial dim, as ``torch.nn.init.dirac_``), which holds
    ``gain`` times an orthogonal ``(out/groups, in/groups)`` matrix per group. With
    ``out >= in`` the convolution is then an isometry at initialization
    (:math:`\|Wx\| = g \|x\|`); with a random orthogonal matrix replaced by
    the identity this is :class:`Identity`.
    """

    name = "delta_orthogonal"

    def __init__(self, gain: Gain = 1.0) -> None:
        super().__init__(gain=_check_gain(gain))

    def _fill(self, tensor, fans, gain, generator, groups) -> None:
        if tensor.dim() not in (3, 4, 5):
            raise ValueError(
                "delta_orthogonal is for conv kernels with 3, 4 or 5 dims (out, in, *kernel), "
                f"got shape {tuple(tensor.shape)}; use orthogonal for matrices"
            )
        rows = _group_rows(tensor, groups, self.name)
        if tensor.numel() == 0 or tensor.is_meta:
            return
        g = self._gain(gain)
        centre = tuple(k // 2 for k in tensor.shape[2:])
        tensor.zero_()
        for block in tensor.split(rows):
            block[(..., *centre)] = _orthogonal_matrix(rows, block.shape[1], g, generator, block)

    def std(self, fans, gain=None, *, shape=None, groups=1) -> float:
        g = self._gain(gain)
        if shape is None:
            return _orthogonal_std(g, fans.fan_out, fans.fan_in)
        return _orthogonal_std(g, shape[0] // groups, shape[1], math.prod(shape[2:]))


class Identity(Initializer):
    r"""``gain`` times the identity map: ``torch.nn.init.eye_`` for a matrix,
    ``torch.nn.init.dirac_`` (with ``groups``) for a conv kernel, so that
    :math:`y = g\,x` on the first ``min(out/groups, in)`` channels of each group.
    Deterministic; ``std`` is None.
    """

    name = "identity"

    def __init__(self, gain: Gain = 1.0) -> None:
        super().__init__(gain=_check_gain(gain))

    def _fill(self, tensor, fans, gain, generator, groups) -> None:
        if tensor.dim() not in (2, 3, 4, 5):
            raise ValueError(
                f"identity needs a matrix or a conv kernel (2 to 5 dims), "
                f"got shape {tuple(tensor.shape)}"
            )
        _group_rows(tensor, groups, self.name)
        kernel = tensor.unsqueeze(-1) if tensor.dim() == 2 else tensor
        torch.nn.init.dirac_(kernel, groups)
        tensor.mul_(self._gain(gain))

    def std(self, fans, gain=None, *, shape=None, groups=1) -> None:
        return None
