"""Verdict rules: ``healthy``, ``vanishing``, ``exploding``, ``saturated`` or ``dead``.

Every rule compares a ratio with what a healthy network gives, never a raw magnitude
with a fixed number. Two constants carry the rules:

``TOLERANCE = 10`` (one decade). The *depth layers* (Linear, convolutions, RNNs,
attention, embeddings; ``initlab.probe.sites``) in execution order 1..L give

* the forward ratio ``F_l = rms(y_l) / rms(x)``: the RMS of layer l's output over
  the RMS of the model's input (over layer 1's output when the input is not a float
  tensor). A variance-preserving init keeps ``F_l`` near 1 at every depth (He et al.
  2015; a gain of g on the first layer gives F ~ g);
* the backward ratio ``B_l = |dL/dy_l| / |dL/dy_{L-1}|``: the norm of the gradient
  reaching layer l's output over the one reaching layer L-1, the deepest layer below
  the last (the head, where the loss enters; it is not judged backwards). With fan-in
  scaling the *norm* (not the per-unit size) is what a gain-matched layer keeps,
  whatever the widths and strides: |dL/dy_{l-1}|^2 = g^2 E[phi'(z)^2] |dL/dy_l|^2
  (Glorot & Bengio 2010). Average pooling is the exception: a mean over P positions
  divides the norm by sqrt(P), which is why the head, usually behind a global pool,
  is not the reference. A gradient that is exactly zero (zero weights downstream, as
  with ``zero_residual``; or dead units) is reported in the notes, not as vanishing.

A layer is ``exploding`` when ``F_l`` or ``B_l`` exceeds 10, ``vanishing`` when one
is below 1/10 (the larger deviation in log scale decides when both apply; a
non-finite statistic is ``exploding``). One decade is where a single learning rate
stops suiting all layers: the relative update |dW|/|W| of two layers differs tenfold.

``LOST = 1/2``. An activation's outputs are compared with those of the same
activation fed a zero-mean, unit-variance Gaussian (``initlab.probe.stats.facts``):

* ``dead`` (activations that output exact zeros, ReLU-like): the fraction of non-zero
  outputs is below half of ``P(phi(z) != 0)`` (ReLU: fewer than 25% non-zero, where
  a healthy layer has 50%);
* ``saturated`` (activations with a saturation band): the fraction of outputs inside
  the band is below half of ``P(lo < phi(z) < hi)`` (tanh: more than ~50% of outputs
  with |y| >= 0.99, where a unit-variance input gives 0.8%).

A depth layer takes the verdict of the activation that follows it (the next
activation site before the next depth layer) when that one is dead or saturated:
those are causes, vanishing and exploding their symptoms. The model's verdict is the
worst layer verdict in the order dead > saturated > exploding > vanishing > healthy,
and among equals the largest deviation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from initlab.probe.report import LayerRow

VERDICTS = ("healthy", "vanishing", "exploding", "saturated", "dead")
TOLERANCE = 10.0
LOST = 0.5
_PRIORITY = {v: i for i, v in enumerate(VERDICTS)}


def _finite(value: float) -> bool:
    return value is not None and math.isfinite(value)


def _ratio(value: float, reference: float) -> float:
    if not (_finite(value) and _finite(reference)) or reference <= 0:
        return math.nan
    return value / reference


def _deviation(ratio: float) -> float:
    """|log ratio|, in decades; inf for a zero ratio, 0 for NaN (no evidence)."""
    if not _finite(ratio):
        return 0.0
    return math.inf if ratio <= 0 else abs(math.log10(ratio))


def profile(rows: Sequence[LayerRow], input_rms: float | None) -> None:
    """Fill depth, layer-to-layer gains and ratios of the depth layers, in place."""
    layers = [r for r in rows if r.kind == "layer"]
    if not layers:
        return
    reference = input_rms if _finite(input_rms) and input_rms > 0 else layers[0].rms
    body = layers[:-1] or layers
    for depth, row in enumerate(layers, start=1):
        row.depth = depth
        before = reference if depth == 1 else layers[depth - 2].rms
        row.forward_gain = _ratio(row.rms, before)
        row.forward_ratio = _ratio(row.rms, reference)
        row.backward_ratio = _ratio(row.grad_norm, body[-1].grad_norm) if row in body \
            else math.nan
        after = layers[depth].grad_norm if depth < len(layers) else math.nan
        row.backward_gain = _ratio(row.grad_norm, after)


def _activation_verdict(row: LayerRow) -> tuple[str, str, float]:
    if _finite(row.live_ratio) and row.live_ratio < LOST:
        dead_units = f", {row.dead:.0%} of units zero on the whole batch" if \
            _finite(row.dead) else ""
        return "dead", (f"{1 - row.zero:.1%} of outputs non-zero, {row.live_ratio:.2f}x what a "
                        f"unit-variance input gives{dead_units}"), 1 - row.live_ratio
    if _finite(row.responsive_ratio) and row.responsive_ratio < LOST:
        return "saturated", (f"{row.saturated:.1%} of outputs saturated; inside the band: "
                             f"{row.responsive_ratio:.2f}x what a unit-variance input gives"), \
            1 - row.responsive_ratio
    return "healthy", "", 0.0


def _layer_verdict(row: LayerRow, reference: str, deepest: str) -> tuple[str, str, float]:
    if not _finite(row.rms) or math.isinf(row.grad_norm):
        return "exploding", "non-finite values", math.inf
    found = []
    for ratio, text in (
        (row.forward_ratio, f"output RMS {row.rms:.3g} is {row.forward_ratio:.3g}x {reference}"),
        (row.backward_ratio, f"gradient norm {row.grad_norm:.3g} is {row.backward_ratio:.3g}x "
                             f"the gradient at {deepest}"),
    ):
        if _finite(ratio) and ratio > 0 and (ratio > TOLERANCE or ratio < 1 / TOLERANCE):
            found.append(("exploding" if ratio > TOLERANCE else "vanishing", text,
                          _deviation(ratio)))
    return max(found, key=lambda f: f[2]) if found else ("healthy", "", 0.0)


def _worse(a: tuple[str, str, float], b: tuple[str, str, float]) -> bool:
    return (_PRIORITY[a[0]], a[2]) > (_PRIORITY[b[0]], b[2])


def judge(rows: Sequence[LayerRow], input_rms: float | None) -> tuple[str, str]:
    """Set every row's verdict and reason; return the model's (verdict, reason)."""
    profile(rows, input_rms)
    layers = [r for r in rows if r.kind == "layer"]
    reference = "the input's RMS" if _finite(input_rms) and input_rms > 0 else \
        "the first layer's"
    body = layers[:-1] or layers
    deepest = f"'{body[-1].label}', the deepest layer below the head" if layers else ""
    judged: dict[int, tuple[str, str, float]] = {}
    owner = None
    for row in rows:
        if row.kind == "layer":
            owner = row
            judged[id(row)] = _layer_verdict(row, reference, deepest)
        elif row.kind == "activation":
            judged[id(row)] = verdict = _activation_verdict(row)
            if owner is not None and verdict[0] != "healthy" and \
                    _worse(verdict, judged[id(owner)]):
                judged[id(owner)] = (verdict[0], f"its activation '{row.label}': {verdict[1]}",
                                     verdict[2])
    for row in rows:
        row.verdict, row.reason, _ = judged.get(id(row), (None, "", 0.0))
    return _model_verdict(rows, judged, layers)


def _model_verdict(rows, judged, layers) -> tuple[str, str]:
    worst, where = ("healthy", "", 0.0), None
    for row in rows:
        if id(row) in judged and _worse(judged[id(row)], worst):
            worst, where = judged[id(row)], row
    if where is not None:
        depth = f" (depth {where.depth} of {len(layers)})" if where.depth else ""
        return worst[0], f"{worst[0]} at '{where.label}'{depth}: {worst[1]}"
    if not layers:
        return "healthy", "no depth layers to compare; no activation dead or saturated"
    forward = [r.forward_ratio for r in layers if _finite(r.forward_ratio)]
    backward = [r.backward_ratio for r in layers if _finite(r.backward_ratio)]
    spans = []
    if forward:
        spans.append(f"forward RMS {min(forward):.2g}-{max(forward):.2g}x the reference")
    if backward:
        spans.append(f"gradient norm {min(backward):.2g}-{max(backward):.2g}x the deepest "
                     "layer's below the head")
    return "healthy", (f"over {len(layers)} layers: " + ", ".join(spans) +
                       f" (healthy: within {1 / TOLERANCE:g}-{TOLERANCE:g}x); "
                       "no activation dead or saturated")


def silent_layers(rows: Sequence[LayerRow]) -> list[str]:
    """Depth layers whose output received an exactly zero gradient."""
    return [r.label for r in rows if r.kind == "layer" and r.grad_norm == 0]
