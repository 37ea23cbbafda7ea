"""Summary statistics of one tensor, computed on its device without a host sync.

``forward_stats(y, facts)`` returns one float64 vector on ``y``'s device with the
fields ``FIELDS``:

* ``mean``, ``std`` (population, ``correction=0``), ``rms`` = sqrt(mean(y^2)) =
  sqrt(mean^2 + std^2). They come from the sums of ``d = (y - c) / s`` and ``d^2``,
  shifted by the mean ``c`` of the percentile sample and scaled by its largest distance
  ``s`` from ``c``: ``mean = c + s S1/n``, ``std^2 = s^2 (S2/n - (S1/n)^2)``. The shift
  keeps the subtraction benign (``|mean - c|`` is a fraction of a std, where the
  unshifted ``E[y^2] - E[y]^2`` loses 13% of the variance of sigmoid outputs near 0.99
  with std 1e-3); the scale keeps ``d^2`` finite for exploding signals (``(y - c)^2``
  overflows float32 beyond 1.8e19). PyTorch's cascaded float32 sums agree with float64
  to ~1e-7 relative. Measured on a 1M-element ReLU output on a 2-core CPU: 0.6 ms,
  against 3.8 ms for ``torch.std_mean`` (Welford's single pass);
* percentiles ``p01, p25, p50, p75, p99`` of an evenly strided sample of at most
  ``sample`` elements (deterministic: no random draw; the 1% quantile of 8192
  elements has a standard error of about 0.0011 in probability), interpolated as
  ``torch.quantile`` does;
* ``zero``: fraction of elements exactly 0, and ``dead``: fraction of units
  (positions in every dimension but the batch dimension 0) that are exactly 0 for
  every example of the batch (their minimum and maximum over the batch are both 0);
  both NaN unless the activation can output exact zeros (``Facts.dead_capable``,
  ReLU-like);
* ``saturated``: fraction of elements outside the activation's open band
  ``Activation.saturation`` = (lo, hi), i.e. y <= lo or y >= hi; NaN without a band.

``facts(act)`` holds what the verdicts compare these with: for z ~ N(0, 1),
``live = P(phi(z) != 0)`` and ``responsive = P(lo < phi(z) < hi)``, integrated
exactly cell by cell against the normal CDF on a grid of 48,000 cells over
[-12, 12] (error below 2e-4; tests check ReLU's 1/2 and tanh's closed form).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from initlab.activations import Activation

FIELDS = ("mean", "std", "rms", "p01", "p25", "p50", "p75", "p99", "zero", "dead", "saturated")
PERCENTILES = (0.01, 0.25, 0.50, 0.75, 0.99)
SAMPLE = 8192
_GRID_CELLS = 48_000
_REACH = 12.0


@dataclass(frozen=True)
class Facts:
    """What the statistics and the verdicts need to know about a site's activation."""

    dead_capable: bool = False  # phi is exactly 0 on an interval (ReLU-like)
    band: tuple[float, float] | None = None  # outside it a unit is saturated
    live: float | None = None  # P(phi(z) != 0), z ~ N(0, 1)
    responsive: float | None = None  # P(lo < phi(z) < hi), z ~ N(0, 1)


NO_FACTS = Facts()
_CACHE: dict[tuple, Facts] = {}


@lru_cache(maxsize=1)
def _normal_cells() -> tuple[Tensor, Tensor]:
    """Cell midpoints and the N(0, 1) probability of each cell."""
    edges = torch.linspace(-_REACH, _REACH, _GRID_CELLS + 1, dtype=torch.float64)
    cdf = 0.5 * torch.erfc(-edges / math.sqrt(2))
    return (edges[1:] + edges[:-1]) / 2, cdf[1:] - cdf[:-1]


def facts(act: Activation | None) -> Facts:
    """The facts of ``act`` (cached per activation and parameters)."""
    if act is None:
        return NO_FACTS
    key = (act.name, tuple(sorted(act.params.items())), act.saturation)
    if key not in _CACHE:
        mid, mass = _normal_cells()
        with torch.no_grad():
            y = act.fn(mid)
        p_zero = float(mass[y == 0].sum())
        band = act.saturation
        responsive = float(mass[(y > band[0]) & (y < band[1])].sum()) if band else None
        _CACHE[key] = Facts(p_zero > 1e-4, band, 1.0 - p_zero, responsive)
    return _CACHE[key]


def as_float(y: Tensor) -> Tensor:
    y = y.detach()
    return y if y.dtype in (torch.float32, torch.float64) else y.float()


def sample_of(flat: Tensor, sample: int) -> Tensor:
    """At most ``sample`` evenly strided elements of a flat tensor (a view: no copy, no draw)."""
    return flat[:: max(1, math.ceil(flat.numel() / sample))]


_RANKS: dict[tuple, tuple[Tensor, Tensor, Tensor]] = {}


def _ranks(n: int, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Indices below and above each percentile's rank q (n - 1), and the weight between."""
    key = (n, like.device, like.dtype)
    if key not in _RANKS:  # one small copy to the device per sample length
        ranks = torch.tensor(PERCENTILES, dtype=torch.float64) * (n - 1)
        below, above = ranks.floor(), ranks.ceil()
        _RANKS[key] = (below.long().to(like.device), above.long().to(like.device),
                       (ranks - below).to(like.device, like.dtype))
    return _RANKS[key]


def percentiles(values: Tensor) -> Tensor:
    """``PERCENTILES`` of a flat tensor, interpolated linearly between order statistics as
    ``torch.quantile`` does, without its host-side check of q (a device sync on CUDA).

    On the GPU the values are sorted; on the CPU only the order statistics needed are put
    in place, by NumPy's introselect (``np.partition`` with several ``kth``: 0.17 ms for
    8192 values on a 2-core CPU, against 0.5-0.65 ms for ``torch.sort``); either way
    NaNs order last."""
    below, above, weight = _ranks(values.numel(), values)
    if values.device.type == "cpu":
        kth = np.union1d(below.numpy(), above.numpy())
        ordered = torch.from_numpy(np.partition(values.numpy(), kth))
    else:
        ordered = torch.sort(values).values
    return torch.lerp(ordered.index_select(0, below), ordered.index_select(0, above), weight)


def forward_stats(y: Tensor, site_facts: Facts = NO_FACTS, sample: int = SAMPLE) -> Tensor:
    """The ``FIELDS`` of ``y`` as a float64 vector on ``y``'s device (see module doc).

    Few passes over ``y``: the shifted sums for mean and std (rms follows from them), the
    zero counts of ReLU-like activations (min and max per unit), the saturation band; the
    percentiles select from a strided sample. No value is read back to the host. (On CPU,
    ``count_nonzero`` counts a bool mask ~4x faster than floats, and ``amin`` and ``amax``
    over the batch run ~9x faster than ``aminmax``.)
    """
    with torch.no_grad():
        z = as_float(y)
        flat = z.reshape(-1)
        n = flat.numel()
        if n == 0 or not z.is_floating_point():
            return torch.full((len(FIELDS),), math.nan, dtype=torch.float64, device=y.device)
        picked = sample_of(flat, sample)
        mean, std = _mean_std(flat, picked)
        nan = torch.full((), math.nan, dtype=flat.dtype, device=y.device)
        zero = dead = saturated = nan
        if site_facts.dead_capable:
            zero = 1 - torch.count_nonzero(flat.ne(0)).to(flat.dtype) / n
            if z.ndim >= 2:  # a unit is dead when it is 0 for every example of the batch
                units = z.reshape(z.shape[0], -1)
                dead = ((units.amin(0) == 0) & (units.amax(0) == 0)).to(flat.dtype).mean()
        if site_facts.band is not None:
            lo, hi = site_facts.band
            saturated = torch.count_nonzero(flat.le(lo) | flat.ge(hi)).to(flat.dtype) / n
        head = torch.stack([mean, std, torch.hypot(mean, std)])
        tail = torch.stack([zero, dead, saturated])
        return torch.cat([head, percentiles(picked), tail]).to(torch.float64)


def _mean_std(flat: Tensor, sample: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and population std of ``flat`` from the sums of ``d = (flat - c) / s`` and
    ``d^2`` (see the module docstring): ``c`` is the sample's mean, ``s`` its largest
    distance from ``c`` (1 for a constant sample). Dividing by ``s`` keeps ``d^2`` finite
    for exploding signals (std 1e24: ``(y - c)^2`` alone would overflow float32 at 1.8e19)."""
    shift = sample.mean()
    scale = (sample - shift).abs().amax()
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    d = (flat - shift).div_(scale)
    n = flat.numel()
    first = d.sum() / n
    second = d.square_().sum() / n
    return shift + first * scale, (second - first * first).clamp_min(0).sqrt() * scale


def norm(tensors: list[Tensor]) -> Tensor:
    """The Euclidean norm of several tensors taken as one vector (float64, on device)."""
    with torch.no_grad():
        parts = [torch.linalg.vector_norm(as_float(t)) for t in tensors]
        whole = parts[0] if len(parts) == 1 else torch.linalg.vector_norm(torch.stack(parts))
        return whole.to(torch.float64)


def histogram(y: Tensor, bins: int, lo: float, hi: float, sample: int = SAMPLE) -> Tensor:
    """Counts of at most ``sample`` evenly strided elements of ``y`` in ``bins`` equal bins
    over [lo, hi] (elements outside are dropped)."""
    with torch.no_grad():
        return torch.histc(sample_of(as_float(y).reshape(-1), sample), bins=bins, min=lo, max=hi)
