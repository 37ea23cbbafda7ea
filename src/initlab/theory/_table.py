"""Gaussian integrals of one activation at every scale q, tabulated once, read by interpolation.

Everything mean-field theory needs from an activation phi is a Gaussian integral at a
pre-activation variance q, for x = sqrt(q) z, z ~ N(0, 1):

* ``V(q) = E[phi(x)^2]``                                   (the length map)
* ``S(q) = dV/dq = E[phi(x) phi'(x) x] / q``               (its slope; Stein's lemma turns
  Schoenholz et al.'s ``E[phi'^2 + phi'' phi]`` into this form, which needs no phi'' and is
  exact across kinks)
* ``D(q) = E[phi'(x)^2]``                                  (chi_1 / sigma_w2)
* ``b_k(q) = E[phi(x) He_k(z)] / sqrt(k!)``, k = 0..K      (Hermite coefficients)

The last ones turn the two-dimensional correlation integral into a power series (Mehler's
formula): for u1, u2 of variance q and correlation c,
``E[phi(u1) phi(u2)] = sum_k b_k(q)^2 c^k``, so the correlation map of any number of networks
is a polynomial evaluation instead of a 2D quadrature.

The table spans ``q`` in [1e-8, 1e6] on a uniform grid in ``log q`` (48 points a decade) and is
read by 4-point Lagrange (cubic) interpolation: relative error ~1e-7 for the worst case, an
exponential in log q, and exact for positively homogeneous activations, whose stored columns
``V/q``, ``S``, ``D``, ``b_k^2/q`` are constant. Below 1e-8 a short expansion takes over
(``GaussianTable._near_zero``); a length still growing at 1e6 counts as diverged.

Quadrature: ``initlab.gains.quadrature_rule`` split at 0 (a Gauss-Hermite rule cannot see
tanh(sqrt(q) z) turn into a step at large q: 4% error at q = 100, against 6e-12 for the
split rule). Kinks away from 0 (Hardtanh at +-1, ReLU6 at 6) move to k/sqrt(q) in z, so
``V``, ``S``, ``D`` are integrated in bands of q (ratio 2) whose rule is split at the band's
kinks and reweighted by the density ratio N(x; 0, q) / N(x; 0, q_band): kinks stay exact at
every q. The Hermite coefficients use the fixed split rule (they only set c* in the chaotic
phase; kinks off 0 cost them ~1e-5 there).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

from initlab.activations import Activation
from initlab.gains import quadrature_breakpoints, quadrature_rule

Q_MIN, Q_MAX = 1e-8, 1e6
TERMS = 64  # Hermite coefficients b_0..b_TERMS of the correlation series
_PER_DECADE = 48
_BAND = 2.0  # q range that shares one quadrature rule
_TAIL = 12.0  # quadrature_rule's reach in z; N(0, 2) beyond it holds < 1e-16
_SCALES = tuple(4.0**k for k in range(-1, 5))  # where an activation changes, in x


def _finite(act: Activation, x: Tensor, values: Tensor, what: str) -> Tensor:
    bad = ~torch.isfinite(values)
    if bad.any():
        raise ValueError(f"activation {act.name!r}: {what} is {values[bad][0].item()} at "
                         f"x = {x[bad][0].item():.6g}; mean-field theory needs finite values "
                         f"for |x| <= {_TAIL * math.sqrt(Q_MAX):g}")
    return values


def _hermite(z: Tensor, terms: int) -> Tensor:
    """h_k(z) = He_k(z) / sqrt(k!) (orthonormal under N(0, 1)), k = 0..terms: shape (n, terms+1)."""
    h = [torch.ones_like(z), z]
    for k in range(1, terms):
        h.append((z * h[k] - math.sqrt(k) * h[k - 1]) / math.sqrt(k + 1))
    return torch.stack(h[: terms + 1], dim=1)


@lru_cache(maxsize=512)
def _rule(kinks: tuple[float, ...]) -> tuple[Tensor, Tensor]:
    """``quadrature_rule`` memoized: every table splits its bands at the same points."""
    return quadrature_rule(kinks)


def _band_moments(act: Activation, q: Tensor, kinks: tuple[float, ...]) -> Tensor:
    """Columns V, E[phi phi' x], D for the q of one band; q[0] is the band's base.

    The rule is split at the kinks and at x = +-4^k (k = -1..4) as seen from the band's scale:
    at large q, phi(sqrt(q) z) changes within |z| ~ 1/sqrt(q), which unit panels cannot see.
    """
    base = q[0].item()
    cuts = (x / math.sqrt(base) for x in (*kinks, *_SCALES, *(-x for x in _SCALES)))
    z, w = _rule(tuple(sorted({0.0, *(k for k in cuts if abs(k) < _TAIL)})))
    x = math.sqrt(base) * z
    f = _finite(act, x, act.fn(x), "phi(x)")
    g = _finite(act, x, act.derivative(x), "phi'(x)")
    integrands = w[:, None] * torch.stack([f * f, f * g * x, g * g], dim=1)
    # The band's rule integrates against N(x; 0, base); reweight to N(x; 0, q).
    ratio = torch.exp(torch.outer(0.5 / base - 0.5 / q, x * x))
    return torch.sqrt(base / q)[:, None] * (ratio @ integrands)


# Lagrange cubic through nodes j-1, j, j+1, j+2 as a polynomial in u on [j, j+1]:
# row = node, column = power of u.
_LAGRANGE = torch.tensor([[0, -1 / 3, 1 / 2, -1 / 6], [1, -1 / 2, -1, 1 / 2],
                          [0, 1, 1 / 2, -1 / 2], [0, -1 / 6, 0, 1 / 6]], dtype=torch.float64)


class GaussianTable:
    """``V/q, S, D, b_k^2/q`` of one activation on a log-q grid, read by cubic interpolation."""

    def __init__(self, act: Activation):
        self.activation = act
        n = round(math.log10(Q_MAX / Q_MIN) * _PER_DECADE) + 1
        self.t0, self.step = math.log(Q_MIN), math.log(Q_MAX / Q_MIN) / (n - 1)
        q = torch.exp(self.t0 + self.step * torch.arange(n, dtype=torch.float64))
        self.q_min, self.q_max, self.nodes = q[0].item(), q[-1].item(), n
        moments = self._moments(q)
        moments = torch.stack([moments[:, 0] / q, moments[:, 1] / q, moments[:, 2]], dim=1)
        series = self._coefficients(q) ** 2 / q[:, None]
        if not (torch.isfinite(moments).all() and torch.isfinite(series).all()):
            raise ValueError(f"activation {act.name!r} is not finite on |x| <= "
                             f"{_TAIL * math.sqrt(Q_MAX):g}: its Gaussian moments do not exist")
        self._moment_poly, self._series_poly = _cubics(moments), _cubics(series)
        # D(inf) from D = D_inf + e / sqrt(q) through the last node and the one a decade below:
        # 1/2 for ReLU-like tails (softplus, GELU), 0 for saturating ones.
        d, root = moments[[-1 - _PER_DECADE, -1], 2], torch.sqrt(q[[-1 - _PER_DECADE, -1]])
        self.d_inf = ((d[1] * root[1] - d[0] * root[0]) / (root[1] - root[0])).item()
        self._near_zero(*(moments[0] * torch.tensor([self.q_min, 1.0, 1.0])).tolist())

    def _near_zero(self, v_min: float, s_min: float, d_min: float) -> None:
        """The model below Q_MIN: V = V0 + a q + b q^(1+p), D = D0 + (D_min - D0) (q/Q_MIN)^p.

        V0 = phi(0)^2 and D0 = (phi'(0-)^2 + phi'(0+)^2) / 2 are exact; a, b match V and S at
        Q_MIN. p = 1 (Taylor) for phi smooth at 0; p = 1/2 for a kink at 0, which puts
        q^(3/2) in V and sqrt(q) in D (ELU, SELU). So a fixed point at q* = 0 (tanh or ELU
        with sigma_b2 = 0) comes out at 0, with chi_1 = sigma_w2 D0, exactly 1 at criticality.
        """
        side = torch.tensor([-1e-100, 0.0, 1e-100], dtype=torch.float64)
        self.v0 = self.activation.fn(side)[1].item() ** 2
        self.d0 = (self.activation.derivative(side)[[0, 2]] ** 2).mean().item()
        self.power = 0.5 if 0.0 in quadrature_breakpoints(self.activation) else 1.0
        scale = self.q_min**self.power
        self.b = (s_min * self.q_min - v_min + self.v0) / (self.power * self.q_min * scale)
        self.a = s_min - (1 + self.power) * self.b * scale
        self.d_slope = (d_min - self.d0) / scale

    def _moments(self, q: Tensor) -> Tensor:
        kinks = tuple(k for k in self.activation.kinks if k != 0)
        band = torch.floor(torch.log(q / q[0]) / math.log(_BAND) + 1e-9)
        return torch.cat([_band_moments(self.activation, q[band == b], kinks)
                          for b in torch.unique(band)])

    def _coefficients(self, q: Tensor) -> Tensor:
        z, w = _rule((0.0,))
        x = torch.sqrt(q)[:, None] * z
        return self.activation.fn(x) @ (w[:, None] * _hermite(z, TERMS))

    def _read(self, q: Tensor, poly: Tensor) -> Tensor:
        """Cubic interpolation in log q of the stored columns, shape (*q.shape, F)."""
        position = (torch.log(torch.clamp(q, min=self.q_min)) - self.t0) / self.step
        j = torch.clamp(torch.floor(position), 1, self.nodes - 3)
        u = (position - j).unsqueeze(-1)
        c = poly[j.long() - 1]
        return ((c[..., 3] * u + c[..., 2]) * u + c[..., 1]) * u + c[..., 0]

    def length(self, q: Tensor) -> tuple[Tensor, Tensor]:
        """``V(q) = E[phi(sqrt(q) z)^2]`` and its slope ``S(q) = dV/dq`` (see ``_near_zero``)."""
        v, s, _ = self._read(q, self._moment_poly).unbind(-1)
        low, power = q < self.q_min, torch.clamp(q, max=self.q_min) ** self.power
        return (torch.where(low, self.v0 + (self.a + self.b * power) * q, v * q),
                torch.where(low, self.a + (1 + self.power) * self.b * power, s))

    def derivative(self, q: Tensor) -> Tensor:
        """``D(q) = E[phi'(sqrt(q) z)^2]`` (see ``_near_zero``)."""
        d = self._read(q, self._moment_poly)[..., 2]
        power = torch.clamp(q, max=self.q_min) ** self.power
        return torch.where(q < self.q_min, self.d0 + self.d_slope * power, d)

    def series(self, q: Tensor) -> Tensor:
        """``b_k(q)^2``, k = 0..TERMS, shape (*q.shape, TERMS + 1)."""
        return self._read(q, self._series_poly) * q.unsqueeze(-1)


def _cubics(columns: Tensor) -> Tensor:
    """Per interval j = 1..n-3 of the grid, the cubic in u of each column: (n-3, F, 4)."""
    n = columns.shape[0]
    stencil = torch.stack([columns[k:k + n - 3] for k in range(4)], dim=1)
    return torch.einsum("jkf,kp->jfp", stencil, _LAGRANGE)
