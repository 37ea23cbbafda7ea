"""Fixed points, chi_1, depth scales and the phase of a deep random network: one call.

Following Schoenholz et al. 2017 ("Deep Information Propagation"), at the fixed point q* of
the length map and c* of the correlation map (see ``initlab.theory.maps``):

* ``chi_1 = sigma_w2 E[phi'(sqrt(q*) z)^2]``: the slope of the correlation map at c = 1 and
  the factor by which a gradient's squared norm grows per layer going backwards.
  chi_1 < 1: **ordered** (inputs collapse to c* = 1, gradients vanish); chi_1 > 1:
  **chaotic** (c* < 1, gradients explode); chi_1 = 1: **critical** (the edge of chaos).
* ``xi_q = -1 / log(chi_1 + sigma_w2 E[phi''(sqrt(q*) z) phi(sqrt(q*) z)])``:
  layers for |q_l - q*| to shrink by e. By Stein's lemma the argument is the length map's
  slope ``sigma_w2 dE[phi(sqrt(q) z)^2]/dq`` at q*, which is how it is computed (no phi'').
* ``xi_c = -1 / log(chi_c)``, ``chi_c = sigma_w2 E[phi'(u1) phi'(u2)]`` at (q*, c*):
  layers for |c_l - c*| to shrink by e; chi_c = chi_1 when c* = 1. xi_c diverges on the
  critical line; in their MNIST and CIFAR-10 experiments networks trained only when no deeper
  than about 6 xi_c.
* ``xi_grad = 1 / |log chi_1|``: layers for a gradient's squared norm to change by e.

``trainable_depth = 6 xi_c`` (Schoenholz et al.'s empirical bound). Where the length
diverges (q* = inf, e.g. ReLU with sigma_w2 > 2) their fixed-point analysis has no q*:
correlations then approach 1 only polynomially (xi_c = inf for ReLU) while gradients still
explode as chi_1^L, so there it is 6 xi_grad.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from initlab.theory._table import Q_MAX, GaussianTable
from initlab.theory.maps import (
    CRITICAL_TOL,
    as_variance,
    cache_key,
    fixed_correlation,
    fixed_length,
    table,
)

Phase = Literal["ordered", "critical", "chaotic"]
PHASES: tuple[Phase, ...] = ("ordered", "critical", "chaotic")  # index = sign(chi_1 - 1) + 1
TRAINABLE_DEPTH_FACTOR = 6.0  # Schoenholz et al. 2017: trainable while depth < ~6 xi_c
_LARGEST_SIGMA_W2 = 1e4
_POINTS_PER_ROUND, _ROUNDS = 2048, 40  # critical-line search: chi_1 evaluations a round
_JUMP = 1e-6  # chi_1 changing more than this across a 1e-13 bracket is a discontinuity
_CRITICAL: dict[tuple, float] = {}  # (activation, sigma_b2) -> critical sigma_w2: a plan asks
_CRITICAL_SIZE = 256                # once per layer, mostly for the same few activations


def _depth_scale(rate: Tensor) -> Tensor:
    """-1 / log|rate|: layers to shrink by e at this rate per layer; inf at |rate| = 1."""
    rate = rate.abs()
    return torch.where(rate >= 1 - CRITICAL_TOL, math.inf, -1 / torch.log(rate))


def solve(tab: GaussianTable, sw2: Tensor, sb2: Tensor, q0: float = 1.0) -> dict[str, Tensor]:
    """Every mean-field quantity for each (sigma_w2, sigma_b2) pair (equal-shape tensors)."""
    if not (math.isfinite(q0) and q0 > 0):
        raise ValueError(f"q0 must be a finite input length > 0, got {q0!r}")
    q_star = fixed_length(tab, sw2, sb2, q0)
    q = torch.where(q_star.isinf(), Q_MAX, q_star)
    chi_1 = _chi_1_at(tab, q_star, sw2)
    c_star, chi_c = fixed_correlation(tab, q_star, sw2, sb2, chi_1)
    xi_q = torch.where(q_star.isinf(), math.inf, _depth_scale(sw2 * tab.length(q)[1]))
    xi_c = _depth_scale(chi_c)
    xi_grad = _depth_scale(torch.where(chi_1 > 1, 1 / chi_1, chi_1))
    off = chi_1 - 1
    phase = torch.where(off.abs() <= CRITICAL_TOL, 0, torch.sign(off)).to(torch.int8)
    return {"q_star": q_star, "c_star": c_star, "chi_1": chi_1, "chi_c": chi_c, "xi_q": xi_q,
            "xi_c": xi_c, "xi_grad": xi_grad,
            "trainable_depth": TRAINABLE_DEPTH_FACTOR * torch.where(q_star.isinf(), xi_grad, xi_c),
            "phase": phase}


@dataclass(frozen=True)
class MeanField:
    """Mean-field signal propagation of one activation at one (sigma_w2, sigma_b2).

    ``q_star = inf`` when the length grows without bound (past q = 1e6); chi_1 is then its
    q -> inf limit, c* = chi_c = 1 (see ``maps.fixed_correlation``), xi_q = xi_c = inf and
    the trainable depth is 6 xi_grad.
    """

    activation: str
    sigma_w2: float
    sigma_b2: float
    q_star: float
    c_star: float
    chi_1: float
    chi_c: float
    xi_q: float
    xi_c: float
    xi_grad: float
    trainable_depth: float
    phase: Phase


def mean_field(activation, sigma_w2: float, sigma_b2: float = 0.0, *,
               q0: float = 1.0) -> MeanField:
    """q*, c*, chi_1, chi_c, the depth scales and the phase for weights N(0, sigma_w2/fan_in)
    and biases N(0, sigma_b2) (Poole et al. 2016; Schoenholz et al. 2017).

    ``q0`` is the input's length, which only matters where the fixed point is not unique
    (ReLU at sigma_w2 = 2, sigma_b2 = 0 keeps any length).

    >>> mf = mean_field("relu", 2.0)          # He init sits on the edge of chaos
    >>> mf.phase, round(mf.chi_1, 12), mf.q_star
    ('critical', 1.0, 1.0)
    """
    sw2 = as_variance(sigma_w2, "sigma_w2").reshape(1)
    sb2 = as_variance(sigma_b2, "sigma_b2").reshape(1)
    tab = table(activation)
    values = solve(tab, sw2, sb2, as_variance(q0, "q0").item())
    phase = PHASES[int(values.pop("phase")) + 1]
    return MeanField(tab.activation.name, sw2.item(), sb2.item(), phase=phase,
                     **{k: v.item() for k, v in values.items()})


def phase(activation, sigma_w2: float, sigma_b2: float = 0.0) -> Phase:
    """'ordered' (chi_1 < 1), 'critical' (chi_1 = 1) or 'chaotic' (chi_1 > 1)."""
    return mean_field(activation, sigma_w2, sigma_b2).phase


def _chi_1_at(tab: GaussianTable, q_star: Tensor, sw2: Tensor) -> Tensor:
    """chi_1 = sigma_w2 D(q*); where the length diverges, its limit sigma_w2 D(inf)."""
    d = tab.derivative(torch.clamp(q_star, max=Q_MAX))
    return sw2 * torch.where(q_star.isinf(), tab.d_inf, d)


def _chi_1(tab: GaussianTable, sw2: Tensor, sb2: Tensor) -> Tensor:
    return _chi_1_at(tab, fixed_length(tab, sw2, sb2), sw2)


def _first_crossing(tab: GaussianTable, sb2: Tensor) -> tuple[Tensor, Tensor]:
    """Brackets [lo, hi], hi - lo <= 1e-13 hi, of the smallest sigma_w2 with chi_1 >= 1, per sb2.

    sigma_w2 doubles from 1 until chi_1 >= 1 (within CRITICAL_TOL, so that an exactly
    critical 2 for ReLU or 1 for tanh is returned as such); then, from [0, that], each round
    evaluates chi_1 at 16 to 512 points of every bracket at once (about _POINTS_PER_ROUND in
    all) and keeps the first crossing.
    """
    hi = torch.ones_like(sb2)
    for _ in range(int(math.log2(_LARGEST_SIGMA_W2)) + 1):
        below = _chi_1(tab, hi, sb2) < 1 - CRITICAL_TOL
        if not below.any():
            break
        hi = torch.where(below, 2 * hi, hi)
    lo = torch.zeros_like(sb2)  # chi_1 need not be monotone: search all of [0, hi]
    sections = min(max(_POINTS_PER_ROUND // len(sb2), 16), 512)
    fractions = torch.arange(1, sections, dtype=torch.float64) / sections
    for _ in range(_ROUNDS):
        if ((hi - lo) <= 1e-13 * hi).all():
            break
        points = lo[:, None] + (hi - lo)[:, None] * fractions
        chi = _chi_1(tab, points.flatten(), sb2.repeat_interleave(sections - 1))
        crossed = torch.cat([chi.view_as(points) >= 1,
                             torch.ones_like(lo, dtype=torch.bool)[:, None]], dim=1)
        first = crossed.long().argmax(1)
        edges = torch.cat([lo[:, None], points, hi[:, None]], dim=1)
        lo, hi = edges.gather(1, first[:, None])[:, 0], edges.gather(1, first[:, None] + 1)[:, 0]
    return lo, hi


def critical_line(activation, sigma_b2) -> Tensor:
    """``critical_sigma_w2`` for each sigma_b2 at once; NaN where there is no edge of chaos."""
    sb2 = as_variance(sigma_b2, "sigma_b2").reshape(-1)
    tab = table(activation)
    lo, hi = _first_crossing(tab, sb2)
    jump = _chi_1(tab, hi, sb2) - _chi_1(tab, lo, sb2) > _JUMP
    return torch.where(jump | (hi > _LARGEST_SIGMA_W2), math.nan, hi)


def critical_sigma_w2(activation, sigma_b2: float = 0.0) -> float:
    """The weight variance on the edge of chaos: the smallest sigma_w2 with chi_1 = 1.

    Weights N(0, sigma_w2 / fan_in) with biases N(0, sigma_b2) then keep both the
    correlation depth scale xi_c and gradient norms from collapsing or exploding
    (Schoenholz et al. 2017). ReLU: 2 for any sigma_b2 (He init); identity: 1; tanh: 1 at
    sigma_b2 = 0, rising with sigma_b2. ValueError where there is none: chi_1 < 1 for every
    sigma_w2, or chi_1 jumps across 1 because the length map's attractor switches (GELU and
    SiLU at small sigma_b2 jump from q* = 0 to a diverging length).

    >>> critical_sigma_w2("relu")
    2.0
    """
    sb2 = as_variance(sigma_b2, "sigma_b2").reshape(1)
    tab = table(activation)
    key = (cache_key(tab.activation), sb2.item())
    if key not in _CRITICAL:
        if len(_CRITICAL) >= _CRITICAL_SIZE:
            _CRITICAL.clear()
        _CRITICAL[key] = _critical(tab, sb2)
    return _CRITICAL[key]


def _critical(tab: GaussianTable, sb2: Tensor) -> float:
    name = tab.activation.name
    lo, hi = _first_crossing(tab, sb2)
    if hi.item() > _LARGEST_SIGMA_W2:
        raise ValueError(f"activation {name!r} has chi_1 < 1 for every sigma_w2 <= "
                         f"{_LARGEST_SIGMA_W2:g} at sigma_b2 = {sb2.item():g}: no edge of chaos")
    if (_chi_1(tab, hi, sb2) - _chi_1(tab, lo, sb2)).item() > _JUMP:
        near = hi * torch.tensor([1 - 1e-6, 1 + 1e-6], dtype=torch.float64)
        q_star = fixed_length(tab, near, sb2.expand(2))
        chi = _chi_1_at(tab, q_star, near).tolist()
        raise ValueError(
            f"activation {name!r} has no edge of chaos at sigma_b2 = {sb2.item():g}: chi_1 jumps "
            f"from {chi[0]:.3g} to {chi[1]:.3g} at sigma_w2 = {hi.item():.6g}, where the length "
            f"map's attractor switches from q* = {q_star[0].item():.3g} to "
            f"q* = {q_star[1].item():.3g}; try a larger sigma_b2")
    return hi.item()
