"""The activation registry: name -> torch function, module factory, derivative and math facts.

Every activation the article names (identity, sigmoid, tanh, ReLU, Leaky ReLU with
alpha = 0.01, ELU with alpha = 1) and the modern ones (SELU, GELU in its erf and tanh
forms, SiLU/Swish, Mish, Softplus, CELU, Softsign, Hardtanh, Hardswish, Hardsigmoid,
ReLU6, PReLU) are entries of one table. Each entry carries:

* ``fn``: the element-wise function on tensors (``torch.nn.functional``);
* ``module``: a factory for the matching ``nn.Module``;
* ``derivative``: phi'(x) in closed form (autograd for the few without a short one);
* facts: output range, zero-centred, monotonic, saturating (phi' -> 0 on both sides, as
  for sigmoid and tanh; one-sided flattening as in ReLU or ELU does not count), smooth (infinitely
  differentiable), the points where phi or phi' is not smooth (``kinks``, where exact
  quadrature splits its range) and the saturation band used by the diagnostics.

``resolve`` turns a name, an ``Activation``, an ``nn.Module`` (with its own
parameters, e.g. ``LeakyReLU(0.2)``) or any callable into an ``Activation``;
``register`` adds your own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initlab._names import unknown

Fn = Callable[[Tensor], Tensor]

# SELU's constants (Klambauer et al. 2017, "Self-Normalizing Neural Networks").
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


@dataclass(frozen=True)
class Activation:
    """One activation function and what is known about it.

    ``saturation`` is the output band outside which a unit counts as saturated
    (e.g. tanh: |y| > 0.99); ``None`` for non-saturating functions.
    Facts are ``None`` when unknown (custom callables).
    """

    name: str
    fn: Fn
    module: Callable[[], nn.Module] | None = None
    closed_derivative: Fn | None = None
    output_range: tuple[float, float] | None = None
    zero_centred: bool | None = None
    monotonic: bool | None = None
    saturating: bool | None = None
    smooth: bool | None = None
    kinks: tuple[float, ...] = ()
    saturation: tuple[float, float] | None = None
    params: dict = field(default_factory=dict)

    def __call__(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def derivative(self, x: Tensor) -> Tensor:
        """phi'(x): the closed form when the entry has one, else autograd (exact to rounding)."""
        if self.closed_derivative is not None:
            return self.closed_derivative(x)
        with torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.fn(xg).sum(), xg)
        return grad

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"Activation({self.name}{', ' + args if args else ''})"


def _heaviside(x: Tensor) -> Tensor:
    return (x > 0).to(x.dtype)


def _leaky_relu(alpha: float) -> Activation:
    return Activation(
        "leaky_relu", partial(F.leaky_relu, negative_slope=alpha), partial(nn.LeakyReLU, alpha),
        lambda x: alpha + (1 - alpha) * _heaviside(x),
        (-math.inf, math.inf), False, alpha >= 0, False, False, (0.0,), None, {"alpha": alpha},
    )


def _elu(alpha: float) -> Activation:
    return Activation(
        "elu", partial(F.elu, alpha=alpha), partial(nn.ELU, alpha),
        lambda x: torch.where(x > 0, 1.0, alpha * torch.exp(torch.clamp(x, max=0))).to(x.dtype),
        (-alpha, math.inf), False, True, False, False, (0.0,), None, {"alpha": alpha},
    )


def _celu(alpha: float) -> Activation:
    return replace(
        _elu(alpha), name="celu", fn=partial(F.celu, alpha=alpha), module=partial(nn.CELU, alpha),
        closed_derivative=lambda x: torch.where(x > 0, 1.0, torch.exp(torch.clamp(x, max=0) / alpha)
                                                ).to(x.dtype),
    )


def _prelu(init: float) -> Activation:
    return replace(_leaky_relu(init), name="prelu", module=partial(nn.PReLU, init=init),
                   params={"init": init})


def _softplus(beta: float) -> Activation:
    return Activation(
        "softplus", partial(F.softplus, beta=beta), partial(nn.Softplus, beta),
        lambda x: torch.sigmoid(beta * x), (0.0, math.inf), False, True, False, True, (), None,
        {"beta": beta},
    )


def _hardtanh(lo: float, hi: float) -> Activation:
    return Activation(
        "hardtanh", partial(F.hardtanh, min_val=lo, max_val=hi), partial(nn.Hardtanh, lo, hi),
        lambda x: ((x > lo) & (x < hi)).to(x.dtype), (lo, hi), lo == -hi, True, True, False,
        (lo, hi), (lo + 0.01 * (hi - lo), hi - 0.01 * (hi - lo)), {"min_val": lo, "max_val": hi},
    )


def _gelu(approximate: str) -> Activation:
    exact = approximate == "none"
    return Activation(
        "gelu" if exact else "gelu_tanh", partial(F.gelu, approximate=approximate),
        partial(nn.GELU, approximate=approximate),
        (lambda x: _std_normal_cdf(x) + x * torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi))
        if exact else None,
        (-0.17, math.inf), False, False, False, True,
    )


def _std_normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def _sigmoid_derivative(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s)


def _selu_derivative(x: Tensor) -> Tensor:
    neg = SELU_ALPHA * torch.exp(torch.clamp(x, max=0))
    return SELU_SCALE * torch.where(x > 0, 1.0, neg).to(x.dtype)


def _silu_derivative(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 + x * (1 - s))


def _builtin() -> dict[str, Activation]:
    inf = math.inf
    entries = [
        Activation("identity", lambda x: x, nn.Identity, torch.ones_like, (-inf, inf),
                   True, True, False, True),
        Activation("sigmoid", torch.sigmoid, nn.Sigmoid, _sigmoid_derivative, (0.0, 1.0),
                   False, True, True, True, (), (0.01, 0.99)),
        Activation("tanh", torch.tanh, nn.Tanh, lambda x: 1 - torch.tanh(x) ** 2, (-1.0, 1.0),
                   True, True, True, True, (), (-0.99, 0.99)),
        Activation("relu", F.relu, nn.ReLU, _heaviside, (0.0, inf), False, True, False, False,
                   (0.0,)),
        _leaky_relu(0.01),
        _elu(1.0),
        Activation("selu", F.selu, nn.SELU, _selu_derivative,
                   (-SELU_SCALE * SELU_ALPHA, inf), False, True, False, False, (0.0,)),
        _gelu("none"),
        _gelu("tanh"),
        Activation("silu", F.silu, nn.SiLU, _silu_derivative, (-0.2785, inf), False, False,
                   False, True),
        Activation("mish", F.mish, nn.Mish, None, (-0.3089, inf), False, False, False, True),
        _softplus(1.0),
        _celu(1.0),
        Activation("softsign", F.softsign, nn.Softsign, lambda x: 1 / (1 + x.abs()) ** 2,
                   (-1.0, 1.0), True, True, True, False, (0.0,), (-0.99, 0.99)),
        _hardtanh(-1.0, 1.0),
        Activation("hardswish", F.hardswish, nn.Hardswish,
                   lambda x: torch.where(x > 3, 1.0, (2 * x + 3) / 6) * (x >= -3),
                   (-0.375, inf), False, False, False, False, (-3.0, 3.0)),
        Activation("hardsigmoid", F.hardsigmoid, nn.Hardsigmoid,
                   lambda x: ((x > -3) & (x < 3)).to(x.dtype) / 6, (0.0, 1.0), False, True, True,
                   False, (-3.0, 3.0), (0.01, 0.99)),
        Activation("relu6", F.relu6, nn.ReLU6, lambda x: ((x > 0) & (x < 6)).to(x.dtype),
                   (0.0, 6.0), False, True, True, False, (0.0, 6.0)),
        _prelu(0.25),
    ]
    return {a.name: a for a in entries}


_REGISTRY: dict[str, Activation] = _builtin()
ALIASES = {"linear": "identity", "swish": "silu", "leakyrelu": "leaky_relu", "lrelu": "leaky_relu",
           "gelu_erf": "gelu", "logistic": "sigmoid", "none": "identity"}

# Module classes whose instances carry parameters of the function.
_PARAMETRIC: dict[type, Callable[[nn.Module], Activation]] = {
    nn.LeakyReLU: lambda m: _leaky_relu(m.negative_slope),
    nn.ELU: lambda m: _elu(m.alpha),
    nn.CELU: lambda m: _celu(m.alpha),
    nn.Softplus: lambda m: _softplus(m.beta),
    nn.Hardtanh: lambda m: _hardtanh(m.min_val, m.max_val),
    nn.PReLU: lambda m: _prelu(float(m.weight.detach().mean())),
    nn.GELU: lambda m: _gelu(m.approximate),
}


def names() -> list[str]:
    """Every registered activation name."""
    return sorted(_REGISTRY)


def get(name: str) -> Activation:
    """The registered activation called ``name`` (aliases such as 'swish' and 'linear' work)."""
    key = name.lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise unknown("activation", name, list(_REGISTRY) + list(ALIASES))
    return _REGISTRY[key]


def register(name: str, fn: Fn | nn.Module, **facts) -> Activation:
    """Add an activation under ``name``: a function of tensors or an ``nn.Module``.

    ``facts`` are any of ``Activation``'s fields (derivative as ``closed_derivative``,
    ``output_range``, ``kinks``, ...). Returns the new entry.
    """
    module = None
    if isinstance(fn, nn.Module):
        module, fn = (lambda m=fn: m), fn
    entry = Activation(name=name, fn=fn, module=facts.pop("module", module), **facts)
    _REGISTRY[name] = entry
    return entry


def from_module(module: nn.Module) -> Activation | None:
    """The activation an ``nn.Module`` computes, with its own parameters; None if it is none."""
    for cls, build in _PARAMETRIC.items():
        if type(module) is cls:
            return build(module)
    for entry in _REGISTRY.values():
        if isinstance(entry.module, type) and type(module) is entry.module:
            return entry
    return None


def resolve(spec: str | Activation | nn.Module | Fn) -> Activation:
    """An ``Activation`` from a name, an ``Activation``, an activation module or any callable."""
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, str):
        return get(spec)
    if isinstance(spec, type) and issubclass(spec, nn.Module):
        spec = spec()
    if isinstance(spec, nn.Module):
        found = from_module(spec)
        return found or Activation(name=type(spec).__name__, fn=spec)
    if callable(spec):
        return Activation(name=getattr(spec, "__name__", repr(spec)), fn=spec)
    raise TypeError(f"cannot read an activation from {spec!r}: give a name, an nn.Module or a "
                    f"callable; registered names: {', '.join(names())}")
