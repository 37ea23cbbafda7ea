"""Exact gains of any activation, by Gaussian quadrature, and how they differ from torch's table.

For a pre-activation z ~ N(0, 1) and activation phi:

* forward gain  g_f = 1 / sqrt(E[phi(z)^2])   keeps E[x^2] of the next layer's input at 1
  when weights have std g_f / sqrt(fan_in) (He et al. 2015, "Delving Deep into Rectifiers");
* backward gain g_b = 1 / sqrt(E[phi'(z)^2])  keeps the gradient's second moment through
  the layer (Glorot & Bengio 2010; the same argument run backwards).

Expectations are integrals against the standard normal density. Smooth activations use
probabilists' Gauss-Hermite quadrature, exact for polynomials of degree < 2n. Gauss-Hermite
converges only algebraically across a kink (ReLU at 0, Hardtanh at +-1), so activations with
kinks are integrated by Gauss-Legendre panels that split at every kink: both are accurate to
well below 1e-9 here (tests check against closed forms and ``scipy.integrate.quad``).
Closed forms are used where they exist: identity 1, ReLU sqrt(2), Leaky ReLU/PReLU
sqrt(2 / (1 + alpha^2)).

torch.nn.init.calculate_gain is a hand-made table: tanh 5/3, sigmoid 1, SELU 3/4 (chosen for
self-normalization, not variance preservation), and it raises for GELU, SiLU, ELU, Mish,
Softplus and any custom function. ``torch_gain`` reports its value or None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from initlab.activations import Activation, get, names, resolve

Kind = Literal["forward", "backward"]
_HERMITE_ORDER = 120
_LEGENDRE_ORDER = 24
_TAIL = 12.0  # N(0,1) density beyond |z| = 12 is below 1e-31: nothing of it is lost.

# Names torch.nn.init.calculate_gain knows, where they differ from ours.
_TORCH_NAMES = {"identity": "linear"}


@dataclass(frozen=True)
class Moments:
    """Gaussian moments of phi(z) and phi'(z) for z ~ N(0, 1)."""

    mean: float  # E[phi(z)]
    second_moment: float  # E[phi(z)^2]
    derivative_second_moment: float  # E[phi'(z)^2]

    @property
    def variance(self) -> float:
        """Var[phi(z)] = E[phi^2] - E[phi]^2: what a non-zero-mean activation really passes on."""
        return self.second_moment - self.mean**2


@lru_cache(maxsize=1)
def _hermite_rule() -> tuple[torch.Tensor, torch.Tensor]:
    nodes, weights = np.polynomial.hermite_e.hermegauss(_HERMITE_ORDER)
    return torch.from_numpy(nodes), torch.from_numpy(weights / math.sqrt(2 * math.pi))


def _legendre_rule(kinks: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Legendre panels of width <= 1 on [-T, T], split at each kink, density folded in."""
    reach = _TAIL + max((abs(k) for k in kinks), default=0.0)
    cuts = sorted({-reach, reach, *kinks})
    edges = np.concatenate([np.linspace(a, b, math.ceil(b - a) + 1)[:-1] for a, b in
                            zip(cuts[:-1], cuts[1:], strict=True)] + [[reach]])
    base_x, base_w = np.polynomial.legendre.leggauss(_LEGENDRE_ORDER)
    mid, half = (edges[1:] + edges[:-1]) / 2, (edges[1:] - edges[:-1]) / 2
    x = (mid[:, None] + half[:, None] * base_x).ravel()
    w = (half[:, None] * base_w).ravel() * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return torch.from_numpy(x), torch.from_numpy(w)


def quadrature_rule(kinks: tuple[float, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights (float64) with sum(w * f(x)) ~= E[f(z)], z ~ N(0, 1)."""
    return _legendre_rule(tuple(kinks)) if kinks else _hermite_rule()


def gaussian_expectation(f, kinks: tuple[float, ...] = (), name: str | None = None) -> float:
    """E[f(z)] for z ~ N(0, 1), f a function of float64 tensors.

    ValueError (naming ``name``, else f's own name) when f is not finite on the rule's
    nodes, or when f grows so fast that the integrand is not negligible at the rule's
    outermost nodes: then the expectation may not exist and no finite rule can find it.
    """
    name = name or getattr(f, "__name__", repr(f))
    x, w = quadrature_rule(kinks)
    values = f(x)
    if not torch.isfinite(values).all():
        bad = x[~torch.isfinite(values)][0].item()
        raise ValueError(f"{name!r} is not finite at z = {bad:.3g}: "
                         "its Gaussian moments do not exist")
    terms = w * values
    total = float(terms.sum())
    if float(terms[[0, -1]].abs().max()) > 1e-9 * max(1.0, abs(total)):
        raise ValueError(f"{name!r} grows too fast for its Gaussian moments to be computed "
                         f"(the integrand is still {float(terms[[0, -1]].abs().max()):.3g} "
                         f"at |z| = {float(x[-1]):.3g})")
    return total


def quadrature_breakpoints(act: Activation) -> tuple[float, ...]:
    """The points where quadrature against N(0, 1) splits its panels for ``act`` (its ``kinks``).

    An activation known to be smooth gives its ``kinks`` as they are (empty: one Gauss-Hermite
    rule). Any other activation gives its kinks, or ``(0.0,)`` when it lists none: an unknown
    function may have a kink anywhere, and a split at 0 costs nothing and catches the usual one.
    Pass the result as ``kinks`` to ``quadrature_rule`` or ``gaussian_expectation``.
    """
    return act.kinks if act.smooth else tuple(act.kinks) or (0.0,)


def moments(activation) -> Moments:
    """E[phi], E[phi^2] and E[phi'^2] under N(0, 1) for any activation ``resolve`` accepts."""
    act = resolve(activation)
    points = quadrature_breakpoints(act)
    return Moments(
        mean=gaussian_expectation(act.fn, points, act.name),
        second_moment=gaussian_expectation(lambda x: act.fn(x) ** 2, points, act.name),
        derivative_second_moment=gaussian_expectation(lambda x: act.derivative(x) ** 2, points,
                                                      act.name),
    )


def _closed_form(act: Activation) -> float | None:
    """sqrt(1 / E[phi^2]) = sqrt(1 / E[phi'^2]) for the piecewise-linear family, else None.

    Recognized by the function itself, never by name: a callable merely *called* relu is
    integrated like any other.
    """
    fn = act.fn
    if fn is get("identity").fn:
        return 1.0
    if fn in (F.relu, torch.relu):
        return math.sqrt(2.0)
    if isinstance(fn, partial) and fn.func is F.leaky_relu:
        alpha = fn.keywords["negative_slope"]
        return math.sqrt(2.0 / (1.0 + alpha**2))
    return None


def gain(activation, kind: Kind = "forward") -> float:
    """The exact gain of ``activation`` (a name, module, callable or ``Activation``).

    ``kind="forward"``: 1/sqrt(E[phi(z)^2]); ``kind="backward"``: 1/sqrt(E[phi'(z)^2]).
    ReLU gives sqrt(2) for both (He init); SELU gives ~1.0 forward (LeCun normal).
    """
    if kind not in ("forward", "backward"):
        raise ValueError(f"unknown gain kind {kind!r}; valid: forward, backward")
    act = resolve(activation)
    exact = _closed_form(act)
    if exact is not None:
        return exact
    points = quadrature_breakpoints(act)
    f = act.fn if kind == "forward" else act.derivative
    second = gaussian_expectation(lambda x: f(x) ** 2, points, act.name)
    if second <= 0:
        raise ValueError(f"activation {act.name!r} has a zero {kind} second moment "
                         f"({second:.3g}): no finite {kind} gain")
    return 1.0 / math.sqrt(second)


def torch_gain(activation) -> float | None:
    """``torch.nn.init.calculate_gain`` for this activation, or None where torch has no entry."""
    act = resolve(activation)
    name = _TORCH_NAMES.get(act.name, act.name)
    param = act.params.get("alpha") if act.name == "leaky_relu" else None
    try:
        return float(torch.nn.init.calculate_gain(name, param))
    except ValueError:
        return None


@dataclass(frozen=True)
class GainRow:
    """One line of the gains table."""

    activation: str
    forward: float
    backward: float
    mean: float
    variance: float
    torch: float | None


def table(activations=None) -> list[GainRow]:
    """Forward and backward gains, mean and variance, and torch's gain for each activation."""
    rows = []
    for spec in activations or names():
        m = moments(spec)
        rows.append(GainRow(resolve(spec).name, gain(spec, "forward"), gain(spec, "backward"),
                            m.mean, m.variance, torch_gain(spec)))
    return rows
