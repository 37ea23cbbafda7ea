"""Fixes as an ``InitPlan``: exact gains, with centred inputs where that keeps both signals.

The base fix is ``initlab.plan(model, scheme="auto")``: every layer gets
std = g / sqrt(fan_in) with g = 1 / sqrt(E[phi(z)^2]) of the activation that follows
it (He et al. 2015, made exact for any activation by ``initlab.gains``), biases 0.

That keeps the forward signal. The backward signal through a layer is multiplied by
g^2 E[phi'(z)^2], which is 1 only when E[phi'(z)^2] = E[phi(z)^2]. For an activation
with a large mean it is not: sigmoid gives 0.045 / 0.293 = 0.15 per layer, so a deep
sigmoid net vanishes under every variance-preserving init. Centring its input fixes
that. A layer that reads phi's outputs gets

    bias = -mu * W.1,   mu = E[phi(z)],        (its input becomes phi(h) - mu)
    std  = 1 / sqrt(Var[phi(z)] * fan_in),

and then forward and backward gains agree when E[phi'^2] / Var[phi] is near 1
(sigmoid: 0.045 / 0.043 = 1.03; sigma(x) - 1/2 = tanh(x/2)/2, LeCun et al. 1998's
advice to prefer symmetric activations, done by the init). The fix centres exactly the
layers whose input activation has |log(E[phi'^2]/Var[phi])| < |log(E[phi'^2]/E[phi^2])|:
in the registry sigmoid, hardsigmoid and softplus; ReLU (1.00 uncentred) is left alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from initlab.activations import Activation
from initlab.gains import moments
from initlab.init import Initializer, VarianceScaling
from initlab.plan import InitPlan
from initlab.plan import plan as make_plan
from initlab.probe.report import LayerRow

_CENTRABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class CentredBias(Initializer):
    """bias = -mean * W.1 for the weight ``W`` of the same layer (filled before it)."""

    name = "centred_bias"

    def __init__(self, layer: str, mean: float, weight: Tensor | None = None) -> None:
        super().__init__(layer=layer, mean=float(mean))
        self._weight = weight

    def _fill(self, tensor, fans, gain, generator, groups) -> None:
        tensor.copy_(-self._params["mean"] * self._weight.detach().flatten(1).sum(1))

    def std(self, fans, gain=None, *, shape=None, groups=1) -> None:
        return None


def centring_helps(act: Activation) -> bool:
    """Whether centring phi's outputs brings E[phi'^2] closer to the signal's second moment."""
    m = moments(act)
    if m.variance <= 0 or m.second_moment <= 0 or m.derivative_second_moment <= 0:
        return False
    centred = abs(math.log(m.derivative_second_moment / m.variance))
    return centred < abs(math.log(m.derivative_second_moment / m.second_moment))


def _input_activations(rows: Sequence[LayerRow], acts: Mapping[str, Activation],
                       modules: Mapping[str, nn.Module]) -> dict[str, Activation]:
    """Layer name -> the activation whose outputs it reads (the row just before it)."""
    calls = {r.name: 0 for r in rows}
    for r in rows:
        calls[r.name] += 1
    found = {}
    for before, row in zip(rows[:-1], rows[1:], strict=True):
        module = modules.get(row.name)
        if row.kind == "layer" and before.kind == "activation" and calls[row.name] == 1 \
                and isinstance(module, _CENTRABLE) and module.bias is not None \
                and before.label in acts:
            found[row.name] = acts[before.label]
    return found


def propose(model: nn.Module, rows: Sequence[LayerRow], acts: Mapping[str, Activation],
            example_input=None) -> tuple[InitPlan, list[str]]:
    """The fix plan for ``model`` and the notes that explain it.

    ``acts`` maps a row's label to the activation it measured (for its parameters).
    """
    modules = dict(model.named_modules())
    overrides: dict[str, Initializer] = {}
    centred: dict[str, tuple[Activation, list[str]]] = {}
    for name, act in _input_activations(rows, acts, modules).items():
        if not centring_helps(act):
            continue
        m = moments(act)
        overrides[f"{name}.weight"] = VarianceScaling(1.0, "fan_in", "normal",
                                                      gain=1 / math.sqrt(m.variance))
        overrides[f"{name}.bias"] = CentredBias(name, m.mean, modules[name].weight)
        centred.setdefault(act.name, (act, []))[1].append(name)
    notes = ["exact gains (initlab.plan scheme='auto'): std = g/sqrt(fan_in), g = "
             "1/sqrt(E[phi(z)^2]) of the activation after each layer, biases 0"]
    for name, (act, layers) in centred.items():
        m = moments(act)
        notes.append(
            f"centred {name} inputs for {', '.join(layers)}: bias = -{m.mean:.3g}*W.1, "
            f"gain 1/sqrt(Var[{name}(z)]) = {1 / math.sqrt(m.variance):.3g}, so that "
            f"E[phi'^2]/Var[phi] = {m.derivative_second_moment / m.variance:.3f} (uncentred "
            f"E[phi'^2]/E[phi^2] = {m.derivative_second_moment / m.second_moment:.3f})")
    return make_plan(model, example_input, scheme="auto", overrides=overrides or None), notes
