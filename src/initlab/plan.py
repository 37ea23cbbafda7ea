"""Whole-model initialization: model -> InitPlan (a value you can print, diff, override) -> apply.

``plan(model)`` decides, for every parameter tensor (every gate block of packed RNN
and attention weights), which scheme fills it, with which gain and fans, and what
standard deviation results. Nothing changes until ``InitPlan.apply(generator)``.

The default scheme, ``"auto"``, keeps the forward signal's scale (He et al. 2015's
argument, made exact for any activation): a layer's weights get

    std = g / sqrt(fan_in),    g = 1 / sqrt(E[phi(z)^2]), z ~ N(0, 1)

where phi is the activation that follows the layer (``initlab.graph``) and g its
exact gain (``initlab.gains``): ReLU gives He init, SELU LeCun normal, a layer with
no activation after it (the output) gain 1. With ``mode="fan_out"`` the backward
gain 1/sqrt(E[phi'(z)^2]) is used, which keeps gradients' scale instead.

Biases are 0; norm layers get weight 1, bias 0; embeddings N(0, 1); LSTM/GRU input
weights are variance-scaled per gate block, recurrent weights orthogonal per block
(Saxe et al. 2014), and the LSTM forget-gate bias is 1 (Jozefowicz et al. 2015).

The gain always goes with the fan the weights are divided by: forward gain over fan_in,
backward gain over fan_out, and over fan_avg Glorot & Bengio (2010)'s compromise, the
harmonic mean of the two variances (``_ActivationGain``). ``mode`` (default None: each
scheme's own fan) reaches every scheme that takes a mode and is given none
(``"variance_scaling"``, ``"he_*"``: ``"he_normal"`` with ``mode="fan_out"`` is
``kaiming_normal_(mode="fan_out")`` but for strided and transposed convolutions, whose fans
count the stride, ``initlab.init.fans``); a scheme that fixes its fan (``xavier_*``: fan_avg,
``lecun_*``: fan_in, an Initializer) or is not scaled by one (``orthogonal``, ``zeros``, ...)
refuses a ``mode`` that would not apply, instead of ignoring it.

Other schemes: any name of ``initlab.init`` (a scheme whose gain is "auto" receives
the activation's gain for the scheme's fan, one with a fixed gain keeps it),
``"torch_default"`` (each module's own ``reset_parameters``, seeded from the plan's
generator; it takes no ``mode``),
``"critical"`` (every layer on the critical line of its activation, Schoenholz et al.
2017, via ``initlab.theory``), ``"propagate"`` (gains from the moments each layer really
receives, ``initlab.adaptive``) and ``"lsuv"`` (orthogonal, then LSUV on data). The last
three are forward criteria defined with fan_in (std = g / sqrt(fan_in)); ``plan`` refuses
them any other ``mode``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from torch import Tensor, nn

from initlab import init as schemes
from initlab._names import unknown
from initlab.activations import Activation
from initlab.gains import gain as activation_gain
from initlab.graph import LayerGraph, is_weight_layer, layer_graph, matches

PLAN_SCHEMES = ("auto", "torch_default", "critical", "propagate", "lsuv")
DATA_SCHEMES = ("propagate", "lsuv")  # schemes that need example_input: a batch of real data
# Schemes that take the plan's mode: "auto" and the initlab.init names with a mode parameter.
MODE_SCHEMES = ("auto", *(n for n in schemes.names() if "mode" in schemes.get(n).params))
# Schemes defined by a forward criterion, std = gain / sqrt(fan_in); no other fan mode fits them.
_FAN_IN_ONLY = {
    "critical": "puts every layer on the critical line of mean-field theory, whose weights are "
                "N(0, sigma_w2 / fan_in) (Schoenholz et al. 2017)",
    "propagate": "gives every weight layer's output unit second moment in the forward pass, "
                 "std = gain / sqrt(fan_in)",
    "lsuv": "rescales every layer on data until its output has unit variance, whatever the fans",
}
# Schemes that apply no fan of their own choosing: mode would change nothing, so it is refused.
_NO_MODE = {"torch_default": "runs each module's own reset_parameters, whatever the fans"}
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
_LSTM_FORGET_BIAS = 1.0

Override = str | dict | schemes.Initializer


@dataclass(frozen=True)
class PlanRow:
    """How one parameter tensor (or one gate block of it) is initialized."""

    name: str  # parameter name, with the block's role for packed parameters: "lstm.weight_hh_l0[f]"
    module_type: str
    shape: tuple[int, ...]
    fan_in: float | None  # an int when whole; a strided conv's mean fan_out can be fractional
    fan_out: float | None
    scheme: str
    activation: str | None  # the activation that follows the layer
    gain: float | None
    std: float | None
    module: str = ""
    param: str = ""
    rows: slice = field(default_factory=lambda: slice(None))
    groups: int = 1
    initializer: object = None  # an initlab.init Initializer, or a _ModuleReset
    gain_rule: object = None  # _ActivationGain | _ForwardGain: the gain for a scheme's fan mode

    def describe(self) -> dict:
        """The row as plain data (what the table shows)."""
        return {k: getattr(self, k) for k in ("name", "module_type", "shape", "fan_in", "fan_out",
                                               "scheme", "activation", "gain", "std")}


@dataclass(frozen=True)
class _ModuleReset:
    """torch's construction-time init of one module, seeded from the plan's generator."""

    module: nn.Module

    def __call__(self, _tensor, *, generator: torch.Generator, **_):
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        devices = [p.device for p in self.module.parameters() if p.device.type == "cuda"]
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            reset = getattr(self.module, "reset_parameters", None) or self.module._reset_parameters
            reset()


@dataclass
class InitPlan:
    """A list of PlanRows for one model; ``apply`` fills the parameters in place."""

    model: nn.Module
    rows: list[PlanRow]
    graph: LayerGraph
    scheme: str = "auto"
    example_input: object = None  # the batch LSUV calibrates on (scheme="lsuv")
    mode: str | None = None  # the plan's mode, as given: overrides by name that take one get it
    lsuv_result: object = None  # what LSUV did, after apply

    def apply(self, generator: torch.Generator | int = 0) -> nn.Module:
        """Initialize the model as planned, every draw from one generator (or a seed)."""
        if isinstance(generator, int):
            generator = torch.Generator().manual_seed(generator)
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"apply needs a torch.Generator or an int seed, got {generator!r}: "
                            "every draw of initlab comes from an explicit seed")
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for row in self.rows:
                if row.initializer is None:
                    continue
                full = params.get(f"{row.module}.{row.param}".lstrip(".")) if row.param else None
                target = full[row.rows] if full is not None else None
                _fill(row, target, generator)
            for module in self.model.modules():  # torch's convention: the padding row is 0
                if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                    module.weight[module.padding_idx].zero_()
        if self.scheme == "lsuv":
            from initlab.adaptive import lsuv

            self.lsuv_result = lsuv(self.model, self.example_input, orthogonal_first=False,
                                    generator=generator)
        return self.model

    def override(self, overrides: Mapping[str | type, Override]) -> InitPlan:
        """A new plan with the given layers (name globs or module types) re-schemed."""
        modules = dict(self.model.named_modules())
        rows = [_override_row(row, modules[row.module], overrides, self.mode)
                for row in self.rows]
        return replace(self, rows=rows)

    def diff(self, other: InitPlan) -> list[tuple[str, dict, dict]]:
        """Rows whose scheme, gain or std differ between two plans of the same model."""
        theirs = {r.name: r.describe() for r in other.rows}
        return [(r.name, r.describe(), theirs.get(r.name, {})) for r in self.rows
                if r.describe() != theirs.get(r.name)]

    def to_dicts(self) -> list[dict]:
        return [row.describe() for row in self.rows]

    def __rich__(self) -> Table:
        mode = f", mode={self.mode}" if self.mode is not None else ""
        table = Table(title=f"InitPlan for {type(self.model).__name__} "
                            f"(scheme={self.scheme}{mode})")
        for column in ("parameter", "module", "shape", "fan_in", "fan_out", "scheme",
                       "activation", "gain", "std"):
            table.add_column(column, justify="right" if column in ("gain", "std") else "left")
        for r in self.rows:
            table.add_row(escape(r.name), r.module_type, "x".join(map(str, r.shape)),
                          _fmt_fan(r.fan_in), _fmt_fan(r.fan_out), r.scheme,
                          r.activation or "-", _fmt(r.gain), _fmt(r.std))
        return table

    def __str__(self) -> str:
        console = Console(width=140, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
        console.print(self)
        return console.export_text()


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _fmt_fan(value: float | None) -> str:
    """A fan in full: whole as an int, else to 10 significant digits (4608.75, not 4609;
    exact for the fractions strides of 2, 4 and 8 give, e.g. 27/64 = 0.421875)."""
    if value is None:
        return "-"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.10g}"


def _fill(row: PlanRow, target: Tensor | None, generator: torch.Generator) -> None:
    init = row.initializer
    if isinstance(init, _ModuleReset):
        init(None, generator=generator)
        return
    fans = schemes.Fans(row.fan_in, row.fan_out) if row.fan_in is not None else None
    if target.device == generator.device:
        init(target, fans=fans, gain=row.gain, generator=generator, groups=row.groups)
    else:  # draw where the generator lives, so the numbers do not depend on the device
        staged = torch.empty(target.shape, dtype=target.dtype, device=generator.device)
        target.copy_(init(staged, fans=fans, gain=row.gain, generator=generator,
                          groups=row.groups))


def _scheme_label(init: schemes.Initializer) -> str:
    config = dict(init.get_config())
    name = config.pop("name")
    args = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in config.items())
    return f"{name}({args})" if args else name


def _row(module_name, module, param, block, init, gain_rule, activation, note=None) -> PlanRow:
    tensor = getattr(module, param)
    part = block.of(tensor) if block is not None else tensor
    fans = block.fans if block is not None else None
    groups = block.groups if block is not None else 1
    gain = _gain_for(init, gain_rule, fans)
    std = init.std(fans, gain, shape=part.shape, groups=groups) if fans is not None else None
    suffix = f"[{block.gate or block.role}]" if block is not None and block.rows != slice(None) \
        else ""
    return PlanRow(
        name=f"{module_name}.{param}{suffix}".lstrip("."), module_type=type(module).__name__,
        shape=tuple(part.shape),
        fan_in=fans.fan_in if fans else None, fan_out=fans.fan_out if fans else None,
        scheme=note or _scheme_label(init), activation=activation.name if activation else None,
        gain=gain, std=std, module=module_name, param=param,
        rows=block.rows if block is not None else slice(None), initializer=init,
        groups=groups, gain_rule=gain_rule,
    )


def _uses_gain(init: schemes.Initializer) -> bool:
    return init.get_config().get("gain", "auto") == "auto"


def _fixed_gain(init: schemes.Initializer) -> float | None:
    value = init.get_config().get("gain")
    return float(value) if isinstance(value, (int, float)) else None


def _gain_for(init: schemes.Initializer, rule, fans: schemes.Fans | None) -> float | None:
    """The gain ``init`` draws with: its own number, or the rule's gain for its fan mode."""
    if not _uses_gain(init):
        return _fixed_gain(init)
    return rule.over(init.fan_mode, fans) if rule is not None else None


@dataclass(frozen=True)
class _ActivationGain:
    r"""The exact gain of the following activation (1 with none) for the fan a scheme uses.

    Over ``fan_in`` (and for a scheme not scaled by a fan) the forward gain
    :math:`g_f = 1/\sqrt{E[\phi(z)^2]}`, which keeps the activations' scale; over
    ``fan_out`` the backward gain :math:`g_b = 1/\sqrt{E[\phi'(z)^2]}`, which keeps the
    gradients' (He et al. 2015). Over ``fan_avg`` the variance is the harmonic mean of the
    two, Glorot & Bengio (2010)'s compromise (their :math:`2/(n_{in} + n_{out})` is the
    harmonic mean of :math:`1/n_{in}` and :math:`1/n_{out}`):

    .. math:: \frac{g^2}{(n_{in} + n_{out})/2}
              = \frac{2}{n_{in}/g_f^2 + n_{out}/g_b^2},

    the same as :math:`g_f` over fan_avg when :math:`g_f = g_b` (identity, ReLU).
    """

    activation: Activation | None

    def over(self, mode: str | None, fans: schemes.Fans | None) -> float:
        if self.activation is None:
            return 1.0
        if mode == "fan_out":
            return activation_gain(self.activation, "backward")
        forward = activation_gain(self.activation, "forward")
        if mode != "fan_avg" or fans is None or fans.fan_in + fans.fan_out <= 0:
            return forward
        backward = activation_gain(self.activation, "backward")
        return math.sqrt((fans.fan_in + fans.fan_out) /
                         (fans.fan_in / forward**2 + fans.fan_out / backward**2))


_UNIT_GAIN = _ActivationGain(None)  # a linear map: gain 1 over any fan


@dataclass(frozen=True)
class _ForwardGain:
    """A gain defined for std = gain / sqrt(fan_in) only: critical's sqrt(sigma_w2),
    propagate's gain from the measured input moments. No backward version exists."""

    value: float
    scheme: str

    def over(self, mode: str | None, fans: schemes.Fans | None) -> float:
        if mode in (None, "fan_in"):
            return self.value
        raise ValueError(f"scheme={self.scheme!r} gives this layer a gain for std = gain / "
                         f"sqrt(fan_in) only, and this scheme divides by {mode}: give it "
                         "mode='fan_in' or a numeric gain")


def _critical_gain(activation: Activation | None, sigma_b2: float) -> float:
    from initlab.theory import critical_sigma_w2

    return math.sqrt(critical_sigma_w2(activation or "identity", sigma_b2))


def _initializer(scheme, mode: str | None) -> schemes.Initializer:
    """``scheme`` as an Initializer. One that takes a mode and is given none of its own (a
    name, a config dict without "mode") is built with ``mode``: ``"he_normal"`` with
    ``"fan_out"`` is ``he_normal(mode="fan_out")``, torch's ``kaiming_normal_(mode=...)``
    with initlab's fans (which count a strided convolution's stride)."""
    init = schemes.get(scheme)
    unset = isinstance(scheme, str) or (isinstance(scheme, Mapping) and "mode" not in scheme)
    if unset and mode is not None and "mode" in init.params:
        return schemes.get(scheme, mode=mode)
    return init


def _check_mode(scheme, mode: str | None) -> None:
    """Refuse a ``mode`` the plan's own schemes cannot follow (see ``plan``)."""
    if mode is None or not isinstance(scheme, str):
        return
    if scheme in _FAN_IN_ONLY and mode != "fan_in":
        raise ValueError(f"mode={mode!r} does not fit scheme={scheme!r}, which "
                         f"{_FAN_IN_ONLY[scheme]}: use mode='fan_in' (scheme='auto' with "
                         "mode='fan_out' keeps the gradients' scale instead)")
    if scheme in _NO_MODE:
        raise ValueError(f"mode={mode!r} does not fit scheme={scheme!r}, which "
                         f"{_NO_MODE[scheme]}: leave mode out, or use one of "
                         f"{', '.join(MODE_SCHEMES)}")


def _base_initializer(scheme, mode: str | None) -> schemes.Initializer:
    """The weight layers' initializer; an initlab.init scheme must use ``mode`` when given."""
    if scheme == "lsuv":  # orthonormal first, then LSUV rescales on data (in apply)
        return schemes.get("orthogonal", gain=1.0)
    if scheme in PLAN_SCHEMES:
        return schemes.get("variance_scaling", scale=1.0, mode=mode or "fan_in",
                           distribution="normal", gain="auto")
    init = _initializer(scheme, mode)
    if mode is None or init.fan_mode == mode:
        return init
    why = f"which divides by {init.fan_mode}" if init.fan_mode else \
        "which is not scaled by a fan"
    fix = f"use mode={init.fan_mode!r} or leave mode out" if init.fan_mode else \
        "leave mode out"
    label = scheme if isinstance(scheme, str) else _scheme_label(init)
    raise ValueError(f"mode={mode!r} does not fit scheme={label!r}, {why}: {fix}; the schemes "
                     f"that take a mode are {', '.join(MODE_SCHEMES)}")


class _Planner:
    """Builds the rows of one plan; one method per kind of module."""

    def __init__(self, model, graph, scheme, weight_init, zero_output, zero_residual, sigma_b2,
                 layer_gains=None):
        self.model, self.graph, self.scheme = model, graph, scheme
        self.zero_output, self.zero_residual, self.sigma_b2 = zero_output, zero_residual, sigma_b2
        self.layer_gains = layer_gains or {}  # scheme="propagate": gains from data's moments
        self.weight_init = weight_init
        self.zeros = schemes.get("zeros")
        self.ones = schemes.get("constant", value=1.0)
        self.bias_init = self.zeros if scheme != "critical" or sigma_b2 == 0 else \
            schemes.get("normal", std=math.sqrt(sigma_b2))

    def rows(self) -> list[PlanRow]:
        rows: list[PlanRow] = []
        for name, module in self.model.named_modules():
            if not any(True for _ in module.parameters(recurse=False)):
                continue
            if self.scheme == "torch_default":
                rows.append(self._reset(name, module))
            elif is_weight_layer(module):
                rows += self._weight_layer(name, module)
            elif isinstance(module, nn.RNNBase):
                rows += self._recurrent(name, module)
            else:
                rows += self._other(name, module)
        return rows

    def _reset(self, name: str, module: nn.Module) -> PlanRow:
        has_reset = hasattr(module, "reset_parameters") or hasattr(module, "_reset_parameters")
        return PlanRow(name=f"{name}.*".lstrip("."), module_type=type(module).__name__,
                       shape=(), fan_in=None, fan_out=None,
                       scheme="torch_default" if has_reset else "keep (no reset_parameters)",
                       activation=None, gain=None, std=None, module=name,
                       initializer=_ModuleReset(module) if has_reset else None)

    def _gain_rule(self, name: str, activation: Activation | None):
        if self.scheme == "critical":
            return _ForwardGain(_critical_gain(activation, self.sigma_b2), "critical")
        if self.layer_gains.get(name):
            return _ForwardGain(self.layer_gains[name], "propagate")
        return _ActivationGain(activation)

    def _weight_layer(self, name: str, module: nn.Module) -> list[PlanRow]:
        activation = self.graph.following.get(name)
        rule = self._gain_rule(name, activation)
        init = self.weight_init
        if (self.zero_output and name in self.graph.output_layers) or \
                (self.zero_residual and name in self.graph.residual_ends):
            init = self.zeros
        label = self.scheme if init is self.weight_init and self.scheme in PLAN_SCHEMES else None
        rows = [_row(name, module, "weight", block, init, rule, activation, label)
                for block in schemes.param_blocks(module, "weight")]
        if getattr(module, "bias", None) is not None:
            rows.append(_row(name, module, "bias", None, self.bias_init, None, None))
        return rows

    def _recurrent(self, name: str, module: nn.RNNBase) -> list[PlanRow]:
        orthogonal = schemes.get("orthogonal", gain=1.0)
        rows = []
        for param, _ in module.named_parameters(recurse=False):
            for block in schemes.param_blocks(module, param):
                if param.startswith("weight_hh"):
                    rows.append(_row(name, module, param, block, orthogonal, _UNIT_GAIN, None))
                elif param.startswith("weight"):
                    rows.append(_row(name, module, param, block, self.weight_init, _UNIT_GAIN,
                                     None))
                elif isinstance(module, nn.LSTM) and param.startswith("bias_ih") and \
                        block.gate == "f":
                    forget = schemes.get("constant", value=_LSTM_FORGET_BIAS)
                    rows.append(_row(name, module, param, block, forget, None, None))
                else:
                    rows.append(_row(name, module, param, block, self.zeros, None, None))
        return rows

    def _other(self, name: str, module: nn.Module) -> list[PlanRow]:
        """Norms, embeddings, attention's packed projections, and anything else (kept)."""
        rows = []
        for param, tensor in module.named_parameters(recurse=False):
            if isinstance(module, _NORMS):
                starts_branch_at_zero = self.zero_residual and name in self.graph.residual_ends
                init = self.ones if param == "weight" and not starts_branch_at_zero else self.zeros
                rows.append(_row(name, module, param, None, init, None, None))
            elif isinstance(module, nn.Embedding):
                rows.append(_row(name, module, param, None, schemes.get("normal", std=1.0),
                                 None, None))
            elif param.endswith("proj_weight"):  # attention's q/k/v projections: linear maps
                rows += [_row(name, module, param, block, self.weight_init, _UNIT_GAIN, None)
                         for block in schemes.param_blocks(module, param)]
            elif param.endswith("proj_bias"):
                rows.append(_row(name, module, param, None, self.zeros, None, None))
            else:
                rows.append(PlanRow(
                    name=f"{name}.{param}".lstrip("."), module_type=type(module).__name__,
                    shape=tuple(tensor.shape), fan_in=None, fan_out=None,
                    scheme="keep (unknown parameter)", activation=None, gain=None, std=None,
                    module=name, param=param))
        return rows


def _is_weight(row: PlanRow) -> bool:
    return "weight" in row.param and len(row.shape) >= 2


def _selects(key: str | type, row: PlanRow, module: nn.Module) -> bool:
    """A key selects a weight row by its module (name glob or type), or any row by naming
    the parameter itself: its last part must be a parameter name or pattern ('*.bias',
    'fc.weight'), not a bare '*', so 'classifier.*' means the layers, not their biases."""
    if _is_weight(row) and matches(key, row.module, module):
        return True
    if not isinstance(key, str) or key.rsplit(".", 1)[-1] == "*":
        return False
    return matches(key, f"{row.module}.{row.param}".lstrip("."), module)


def _check_fits(init: schemes.Initializer, row: PlanRow, key) -> None:
    """Refuse, at plan time, a scheme that cannot fill a vector (fan-based, orthogonal)."""
    if len(row.shape) >= 2:
        return
    try:
        init(torch.empty(row.shape or (1,)), gain=1.0, generator=torch.Generator())
    except ValueError as error:
        raise ValueError(f"override {key!r} -> {_scheme_label(init)} cannot fill {row.name} of "
                         f"shape {row.shape}: {error}") from None


def _override_row(row: PlanRow, module: nn.Module, overrides, mode: str | None) -> PlanRow:
    """The row re-schemed by the first override key that selects it, else unchanged.

    A scheme named by a string that takes a mode gets the plan's ``mode``; any other keeps its
    own fan. Its "auto" gain is the row's gain for that fan (``_ActivationGain``)."""
    for key, scheme in overrides.items():
        if row.param and _selects(key, row, module):
            init = _initializer(scheme, mode)
            _check_fits(init, row, key)
            fans = schemes.Fans(row.fan_in, row.fan_out) if row.fan_in is not None else None
            try:
                gain = _gain_for(init, row.gain_rule, fans)
            except ValueError as error:
                raise ValueError(f"override {key!r} -> {_scheme_label(init)} on {row.name}: "
                                 f"{error}") from None
            std = init.std(fans, gain, shape=row.shape, groups=row.groups) if fans else None
            return replace(row, initializer=init, scheme=_scheme_label(init), gain=gain, std=std)
    return row


def plan(
    model: nn.Module,
    example_input=None,
    *,
    scheme: str | schemes.Initializer = "auto",
    mode: str | None = None,
    overrides: Mapping[str | type, Override] | None = None,
    zero_output: bool = False,
    zero_residual: bool = False,
    sigma_b2: float = 0.0,
) -> InitPlan:
    """Plan the initialization of every parameter of ``model``; nothing changes yet.

    Args:
        model: any ``nn.Module``.
        example_input: a batch (or tuple of inputs): LSUV's calibration batch, the data
            whose moments "propagate" starts from, and, when ``torch.fx`` cannot trace the
            model, the input that finds the activations in execution order.
        scheme: ``"auto"`` (exact gain of the following activation), ``"torch_default"``,
            ``"critical"``, ``"propagate"`` (gains from the moments each layer really
            receives, ``initlab.adaptive.propagated_gains``), ``"lsuv"`` (orthogonal, then
            LSUV on ``example_input`` at apply time), or any name or Initializer of
            ``initlab.init`` (e.g. ``"xavier_uniform"``).
        mode: the fan the weights are divided by, ``fan_in`` | ``fan_out`` | ``fan_avg``;
            None (the default) leaves each scheme its own (``fan_in`` for ``"auto"``). The
            gain goes with the fan: forward over fan_in, backward over fan_out (He et al.
            2015), over fan_avg the harmonic mean of the two variances (Glorot & Bengio
            2010). ``mode`` reaches ``"auto"`` and every scheme that takes a mode and is
            given none of its own: the names ``"variance_scaling"``, ``"he_normal"``,
            ``"he_uniform"`` (and aliases), or their config dict without "mode". Where it
            cannot apply it is a ValueError, never ignored: ``"critical"``, ``"propagate"``
            and ``"lsuv"`` (forward criteria: fan_in only), ``"torch_default"``, a scheme
            that fixes its fan unless ``mode`` is that fan (``"xavier_*"``: fan_avg,
            ``"lecun_*"``: fan_in, an Initializer: its own), and a scheme not scaled by a
            fan (``"orthogonal"``, ``"zeros"``, ...).
        overrides: {layer-name glob or module type: scheme}, applied after the base scheme.
            An override that takes a mode and is given none gets ``mode`` too; any other
            keeps its own fan. Its ``"auto"`` gain is the layer's gain for its fan; under
            ``"critical"`` or ``"propagate"`` that gain exists over fan_in only.
        zero_output: zero the weights of the layers that produce the model's output.
        zero_residual: zero the last module of each residual branch (the block starts as
            the identity; Goyal et al. 2017).
        sigma_b2: bias variance for ``scheme="critical"``.
    """
    if isinstance(scheme, str) and scheme not in PLAN_SCHEMES:
        try:
            schemes.get(scheme)
        except ValueError:
            raise unknown("init scheme", scheme, [*PLAN_SCHEMES, *schemes.names(),
                                                  *schemes.ALIASES]) from None
    if mode is not None and mode not in schemes.MODES:
        raise unknown("fan mode", mode, schemes.MODES)
    _check_mode(scheme, mode)
    weight_init = _base_initializer(scheme, mode)
    if scheme == "lsuv" and example_input is None:
        raise ValueError("scheme='lsuv' calibrates on data: pass example_input (a batch)")
    graph = layer_graph(model, example_input)
    layer_gains = None
    if scheme == "propagate":
        from initlab.adaptive import propagated_gains

        layer_gains = propagated_gains(model, example_input)
    rows = _Planner(model, graph, scheme, weight_init, zero_output, zero_residual, sigma_b2,
                    layer_gains).rows()
    result = InitPlan(model, rows, graph, scheme, example_input, mode=mode)
    return result.override(overrides) if overrides else result


def init_model(model: nn.Module, example_input=None, *, generator: torch.Generator | int = 0,
               **plan_options) -> InitPlan:
    """``plan(model, ...)`` then ``apply(generator)``; returns the plan that was applied."""
    result = plan(model, example_input, **plan_options)
    result.apply(generator)
    return result
