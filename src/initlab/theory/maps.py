"""The length and correlation maps of a deep random network and their fixed points.

A fully connected layer h_{l+1} = W phi(h_l) + b with W_ij ~ N(0, sigma_w2 / fan_in) and
b_i ~ N(0, sigma_b2) maps, in the infinite-width limit (Poole et al. 2016, "Exponential
expressivity in deep neural networks through transient chaos"):

* the length q_l = E[h_i^2] of one input by the **length map**
  ``q_{l+1} = sigma_w2 E[phi(sqrt(q_l) z)^2] + sigma_b2``,  z ~ N(0, 1);
* the correlation c_l of two inputs of equal length q_l by the **correlation map**
  ``c_{l+1} = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q_{l+1}``, where u1 = sqrt(q_l) z1,
  u2 = sqrt(q_l) (c_l z1 + sqrt(1 - c_l^2) z2).

Every function here is vectorized: arguments broadcast, and one call solves the fixed points
of any number of (sigma_w2, sigma_b2) at once, as tensors.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import partial

import torch
from torch import Tensor

from initlab.activations import Activation, resolve
from initlab.theory._table import Q_MAX, GaussianTable

_CACHE: OrderedDict[tuple, GaussianTable] = OrderedDict()
_CACHE_SIZE = 16
_ZERO = 1e-12  # |q_{l+1} - q_l| below this fraction of q counts as a fixed point
CRITICAL_TOL = 1e-9  # |chi_1 - 1| below this is the critical line
_PROBES = 26  # factors of 4 from Q_MAX down to Q_MIN and beyond
_NEWTON = 80


def cache_key(act: Activation) -> tuple:
    """What a table depends on: name, function (a partial by its arguments), kinks, smoothness."""
    fn = act.fn
    if isinstance(fn, partial):  # e.g. LeakyReLU(0.2) read from a module: same maths, new object
        fn = (fn.func, fn.args, tuple(sorted(fn.keywords.items())))
    return act.name, fn, act.kinks, act.smooth


def table(activation) -> GaussianTable:
    """The Gaussian table of ``activation`` (any spec ``resolve`` takes), built once and cached."""
    act = resolve(activation)
    key = cache_key(act)
    if key not in _CACHE:
        with torch.no_grad():
            _CACHE[key] = GaussianTable(act)
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return _CACHE[key]


def as_variance(value, name: str) -> Tensor:
    """``value`` as a float64 tensor; ValueError naming it if it is negative or not finite."""
    tensor = torch.as_tensor(value, dtype=torch.float64)
    bad = ~torch.isfinite(tensor) | (tensor < 0)
    if bad.any():
        raise ValueError(f"{name} must be a finite variance >= 0, got {tensor[bad][0].item()!r}"
                         + (f" (of {tuple(tensor.shape)} values)" if tensor.dim() else ""))
    return tensor


def _tabulated(q) -> Tensor:
    """``q`` as a variance within the table's range (ValueError otherwise)."""
    q = as_variance(q, "q")
    if (q > Q_MAX).any():
        raise ValueError(f"q = {q.max().item():g} is beyond the tabulated range q <= {Q_MAX:g}")
    return q


def length_map(activation, q, sigma_w2, sigma_b2=0.0) -> Tensor:
    """``q_{l+1} = sigma_w2 E[phi(sqrt(q_l) z)^2] + sigma_b2`` (Poole et al. 2016).

    ReLU gives sigma_w2 q / 2 + sigma_b2; the identity sigma_w2 q + sigma_b2.
    """
    q = _tabulated(q)
    sw2, sb2 = as_variance(sigma_w2, "sigma_w2"), as_variance(sigma_b2, "sigma_b2")
    return sw2 * table(activation).length(q)[0] + sb2


def _series(tab: GaussianTable, q: Tensor, sw2: Tensor, sb2: Tensor) -> Tensor:
    """Coefficients a_k of the correlation map c -> sum_k a_k c^k at length q, shape (..., K+2).

    Mehler: E[phi(u1) phi(u2)] = sum_k b_k(q)^2 c^k. The terms past K are lumped into one
    c^(K+1) term holding the rest of E[phi^2] = sum_k b_k^2, so c = 1 stays exact.
    """
    b2 = tab.series(q)
    v = tab.length(q)[0]
    rest = torch.clamp(v - b2.sum(-1), min=0)
    coefficients = torch.cat([b2, rest.unsqueeze(-1)], -1) * sw2.unsqueeze(-1)
    coefficients[..., 0] += sb2
    return coefficients / (sw2 * v + sb2).unsqueeze(-1)


def _polynomial(coefficients: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """p(c) and p'(c) for p(c) = sum_k coefficients[..., k] c^k."""
    n = coefficients.shape[-1]
    powers = torch.cat([torch.ones_like(c).unsqueeze(-1),
                        c.unsqueeze(-1).expand(*c.shape, n - 1).cumprod(-1)], -1)  # c^0..c^(n-1)
    k = torch.arange(1, n, dtype=torch.float64)
    return ((coefficients * powers).sum(-1), (coefficients[..., 1:] * k * powers[..., :-1]).sum(-1))


def correlation_map(activation, c, q, sigma_w2, sigma_b2=0.0) -> Tensor:
    """``c_{l+1} = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q_{l+1}`` for two inputs of length
    q_l and correlation c_l (Poole et al. 2016), q_{l+1} = ``length_map(q_l)``.

    ReLU: E[phi(u1) phi(u2)] = q (sqrt(1 - c^2) + (pi - arccos c) c) / (2 pi) (Cho & Saul 2009).
    """
    c = torch.as_tensor(c, dtype=torch.float64)
    bad = ~(c.abs() <= 1)
    if bad.any():
        raise ValueError(f"a correlation must lie in [-1, 1], got {c[bad][0].item()!r}")
    q = _tabulated(q)
    sw2, sb2 = as_variance(sigma_w2, "sigma_w2"), as_variance(sigma_b2, "sigma_b2")
    c, q, sw2, sb2 = torch.broadcast_tensors(c, q, sw2, sb2)
    return _polynomial(_series(table(activation), q, sw2, sb2), c)[0]


def _residual(tab: GaussianTable, q: Tensor, sw2: Tensor, sb2: Tensor) -> tuple[Tensor, Tensor]:
    """r = q_{l+1} - q_l (0 within rounding of a fixed point) and dr/dq."""
    v, s = tab.length(q)
    r = sw2 * v + sb2 - q
    return torch.where(r.abs() <= _ZERO * (q + sb2) + 1e-30, 0.0, r), sw2 * s - 1


def _bracket(tab: GaussianTable, sw2: Tensor, sb2: Tensor, q0: float) -> tuple[Tensor, Tensor]:
    """[lo, hi] with r(lo) >= 0 >= r(hi), walking from q0 by factors of 4 the way the map moves.

    hi = inf where the length is still growing at Q_MAX; lo = 0 once a walk down passes Q_MIN
    (r(0) = q_1 - 0 >= 0).
    """
    q = torch.full_like(sw2, q0)
    r = _residual(tab, q, sw2, sb2)[0]
    lo, hi = torch.where(r >= 0, q, -1.0), torch.where(r <= 0, q, math.inf)
    active = ((r > 0) | (r < 0)).nonzero().squeeze(1)
    probe = q.clone()
    for _ in range(_PROBES):
        if not active.numel():
            break
        up = r[active] > 0
        at_end = up & (probe[active] >= Q_MAX)
        step = torch.where(up, torch.clamp(probe[active] * 4, max=Q_MAX), probe[active] / 4)
        step = torch.where(~up & (step < tab.q_min), 0.0, step)
        now = _residual(tab, step, sw2[active], sb2[active])[0]
        below = torch.where(up, now > 0, (now >= 0) | (step == 0))
        probe[active] = step
        lo[active] = torch.where(at_end, math.inf, torch.where(below, step, lo[active]))
        hi[active] = torch.where(below | at_end, hi[active], step)
        active = active[~at_end & (below == up)]
    return lo, hi


def fixed_length(tab: GaussianTable, sw2: Tensor, sb2: Tensor, q0: float = 1.0) -> Tensor:
    """q*: the fixed point the length map reaches from q0, ``inf`` where the length diverges.

    Vectorized over sw2, sb2 (1-D, same shape): bracket outwards from q0 in the direction the
    map moves, then safeguarded Newton on r(q) = sigma_w2 V(q) + sigma_b2 - q (bisection when
    a Newton step leaves the bracket). A length still growing at q = 1e6 counts as diverged
    (e.g. ReLU with sigma_w2 > 2, which multiplies q by sigma_w2 / 2 per layer). Where the
    map has several attractors (GELU, SiLU) the one reached from q0 is returned.
    """
    lo, hi = _bracket(tab, sw2, sb2, q0)
    diverged = hi.isinf()
    q = torch.where(diverged, math.inf, torch.where(lo > 0, lo, hi))
    return _newton(lambda i, x: _residual(tab, x, sw2[i], sb2[i]), q, lo, hi,
                   (~diverged & (lo < hi)).nonzero().squeeze(1), scale=0.0)


def _newton(fn, x: Tensor, lo: Tensor, hi: Tensor, active: Tensor, scale: float) -> Tensor:
    """Newton's method safeguarded by bisection, for many roots at once, in place on x.

    ``fn(index, x)`` gives f and f' at x for the entries ``index``, with f(lo) >= 0 >= f(hi).
    An entry stops when f = 0 or its step or bracket is within 1e-15 (|x| + scale).
    """
    for _ in range(_NEWTON):
        if not active.numel():
            break
        now, low, high = x[active], lo[active], hi[active]
        value, slope = fn(active, now)
        low, high = torch.where(value >= 0, now, low), torch.where(value <= 0, now, high)
        newton = now - value / slope
        step = torch.where((newton >= low) & (newton <= high), newton, (low + high) / 2)
        step = torch.where(value == 0, now, step)
        x[active], lo[active], hi[active] = step, low, high
        tol = 1e-15 * (high.abs() + scale)
        active = active[(value != 0) & ((step - now).abs() > tol) & (high - low > tol)]
    return x


def fixed_correlation(tab: GaussianTable, q_star: Tensor, sw2: Tensor, sb2: Tensor,
                      chi_1: Tensor) -> tuple[Tensor, Tensor]:
    """c* and chi_c = dc_{l+1}/dc_l at c*, vectorized over equal-shape tensors.

    On [0, 1] the correlation map m(c) is increasing and convex (a power series with
    non-negative coefficients) with m(1) = 1 and m'(1) = chi_1. So c = 1 is the stable
    fixed point when chi_1 <= 1 (ordered, critical), and otherwise (chaotic) there is
    exactly one other fixed point c* in [0, 1). It is the simple root of the polynomial
    g(c) = (m(c) - c) / (1 - c) (synthetic division), found by Newton's method safeguarded
    by bisection on [0, 1], g(0) >= 0 > g(1) = 1 - chi_1; dividing out the root at 1 keeps
    Newton quadratic near the critical line, where c* and 1 merge.

    Where the length diverges, c* = 1 and chi_c = 1: the q -> inf limit for an activation
    growing linearly, whose correlation map becomes a piecewise-linear one's, which keeps
    angles near c = 1 (ReLU: m'(1) = 1).
    """
    diverged = q_star.isinf()
    c_star, chi_c = torch.ones_like(q_star), torch.where(diverged, 1.0, chi_1)
    chaotic = (~diverged & (chi_1 > 1 + CRITICAL_TOL)).nonzero(as_tuple=True)
    if chaotic[0].numel():
        coefficients = _series(tab, q_star[chaotic], sw2[chaotic], sb2[chaotic])
        c_star[chaotic], chi_c[chaotic] = _chaotic_fixed_point(coefficients)
    return c_star, chi_c


def _chaotic_fixed_point(coefficients: Tensor) -> tuple[Tensor, Tensor]:
    """The root c* in [0, 1) of m(c) = c for each row of m's coefficients, and m'(c*)."""
    shifted = coefficients.clone()
    shifted[:, 1] -= 1  # m(c) - c = (c - 1) s(c), s_k = sum_{j > k} of its coefficients
    g = -shifted[:, 1:].flip(-1).cumsum(-1).flip(-1)  # g = -s = (m(c) - c) / (1 - c)
    c = torch.zeros(coefficients.shape[0], dtype=torch.float64)
    c = _newton(lambda i, x: _polynomial(g[i], x), c, torch.zeros_like(c), torch.ones_like(c),
                torch.arange(c.numel()), scale=1.0)
    return c, _polynomial(coefficients, c)[1]
