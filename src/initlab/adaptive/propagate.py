r"""Data-aware variance propagation: each layer's gain for the signal it really receives.

The ``"auto"`` scheme gives a layer the gain :math:`1/\sqrt{E[\phi(z)^2]}`, :math:`z \sim
\mathcal{N}(0, 1)`, of the activation that follows it: right when every layer's input has the
second moment that gain assumes. It is not after a residual addition (variances add, so they
grow with depth), after a concatenation, at the first layer (the data's own moments), or where
a non-zero-mean activation (sigmoid, softplus, GELU) feeds a sum.

``propagate`` walks the ``torch.fx`` graph in execution order carrying the mean and second
moment of every intermediate tensor (:mod:`initlab.adaptive.moments` has the rule of each op
and its approximations), and gives each weight layer

.. math::
    g = \frac{1}{\sqrt{q_\text{in}\; t / \text{fan\_in}}}, \qquad
    \text{std}(W) = \frac{g}{\sqrt{\text{fan\_in}}}

where :math:`q_\text{in} = E[x^2]` is the second moment of the layer's input under the gains
already chosen upstream and :math:`t` the number of input entries each output sums, so that
every weight layer's output has :math:`E[y] = 0`, :math:`E[y^2] = 1` at initialization (biases
0). The input's moments are ``input_moments`` (mean, variance), or measured on
``example_input`` when it is given; with ``example_input`` tensor shapes are known too, and
concatenations are weighted by part size and convolutions count the taps that fall on zero
padding exactly.

torch's composite modules are propagated by their known structure: ``MultiheadAttention``
(the output projection sees the value projection: the value input's second moment, the in-
projection having gain 1), ``TransformerEncoderLayer`` (pre- or post-norm) and
``TransformerEncoder``. Ops without a rule pass their input's moments on unchanged, with one
warning naming them; the weight layers inside unknown composite modules get no gain (the
planner keeps its own for them). When ``torch.fx`` cannot trace the model, the leaf modules
are propagated as a chain in execution order (``example_input``) or registration order,
with a warning: residual sums and concatenations are then invisible.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from dataclasses import dataclass, field

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from initlab._state import preserved
from initlab.activations import from_module, resolve
from initlab.adaptive import moments as rules
from initlab.adaptive.moments import UNIT, Signal
from initlab.graph import COMPOSITE_MODULES, execution_order, is_weight_layer, node_activation

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
_RMS_NORMS = (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()
_KEEP_MODULES = (
    nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.Flatten, nn.Unflatten, nn.Identity, nn.Upsample, nn.modules.padding._ConstantPadNd,
    nn.modules.padding._ReflectionPadNd, nn.modules.padding._ReplicationPadNd,
    nn.PixelShuffle, nn.PixelUnshuffle, nn.ChannelShuffle, nn.LocalResponseNorm,
)
_KEEP_OPS = {
    "flatten", "reshape", "view", "permute", "transpose", "contiguous", "squeeze", "unsqueeze",
    "expand", "expand_as", "repeat", "clone", "to", "float", "double", "half", "type_as",
    "detach", "pad", "interpolate", "mean", "max_pool1d", "max_pool2d", "max_pool3d",
    "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "roll", "flip", "narrow", "select",
}
_SPLIT_OPS = {"chunk", "split", "unbind", "tensor_split"}
_NORM_OPS = {"layer_norm", "batch_norm", "group_norm", "instance_norm"}
_DROPOUT_OPS = {"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
                "feature_alpha_dropout"}
_ADD_OPS = {"add", "add_", "iadd", "__add__", "__radd__"}
_SUB_OPS = {"sub", "sub_", "isub", "__sub__"}
_MUL_OPS = {"mul", "mul_", "imul", "__mul__", "__rmul__"}
_DIV_OPS = {"truediv", "div", "div_", "itruediv", "__truediv__"}
_CAT_OPS = {"cat", "concat", "concatenate", "stack"}
_SHAPE_OPS = {"size", "dim", "numel", "getattr"}


@dataclass(frozen=True)
class _Each:
    """A sequence (from chunk/split) whose every item has the moments of ``signal``."""

    signal: Signal


@dataclass
class Propagation:
    """The result of :func:`propagate`."""

    gains: dict[str, float] = field(default_factory=dict)  # weight layer -> gain
    inputs: dict[str, Signal] = field(default_factory=dict)  # weight layer -> its input
    unknown: list[str] = field(default_factory=list)  # ops passed through without a rule
    method: str = "fx"  # "fx", "hooks" or "registration order"


def _shape(node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if hasattr(meta, "shape") else None


def _taps(conv: nn.modules.conv._ConvNd, in_shape, out_shape) -> float:
    """Average number of kernel taps an output really sums, over the number its fan_in counts.

    fan_in counts ``k`` taps per dim for a convolution and ``k/s`` for a transposed one (the
    mean in the interior, ``initlab.init.fans``); the share lost at zero-padded or cropped
    borders is counted here. Without shapes: 1.
    """
    transposed = isinstance(conv, nn.modules.conv._ConvTransposeNd)
    dims = len(conv.kernel_size)
    if in_shape is None or out_shape is None:
        return 1.0
    if conv.padding_mode != "zeros" and not transposed:
        return 1.0
    fraction = 1.0
    for d in range(dims):
        k, s, dil = conv.kernel_size[d], conv.stride[d], conv.dilation[d]
        n_in, n_out = in_shape[-dims + d], out_shape[-dims + d]
        pad = conv.padding[d] if not isinstance(conv.padding, str) else \
            (dil * (k - 1) // 2 if conv.padding == "same" else 0)
        if transposed:  # input i, tap j reaches output i*s - pad + j*dil
            hits = sum(0 <= i * s - pad + j * dil < n_out for i in range(n_in) for j in range(k))
        else:  # output o, tap j reads input o*s - pad + j*dil
            hits = sum(0 <= o * s - pad + j * dil < n_in for o in range(n_out) for j in range(k))
        fraction *= hits / (n_out * (k / s if transposed else k))
    return fraction


class _Walker:
    """Carries Signals through one model's graph and records each weight layer's gain."""

    def __init__(self) -> None:
        self.result = Propagation()

    def layer(self, name: str, x: Signal | None, taps: float = 1.0) -> Signal:
        if x is None:
            self.unknown(f"{name} (input moments unknown, taken as (0, 1))")
            x = UNIT
        self.result.inputs[name] = x
        self.result.gains[name] = rules.layer_gain(x, taps)
        return UNIT

    def unknown(self, what: str) -> None:
        if what not in self.result.unknown:
            self.result.unknown.append(what)

    # modules -----------------------------------------------------------------------------
    def module(self, name: str, m: nn.Module, args: list, in_shape=None, out_shape=None):
        x = next((a for a in args if isinstance(a, Signal)), None)
        if is_weight_layer(m):
            if isinstance(m, nn.Bilinear):
                return self.layer(name, rules.product(args[0], args[1]))
            taps = _taps(m, in_shape, out_shape) if isinstance(m, nn.modules.conv._ConvNd) \
                else 1.0
            return self.layer(name, x, taps)
        if isinstance(m, (nn.Embedding, nn.EmbeddingBag)):  # plan: N(0, 1) entries
            return UNIT
        if x is None:
            return None
        act = from_module(m)
        if act is not None:
            return rules.activation(act, x)
        if isinstance(m, _NORMS):
            return UNIT
        if isinstance(m, _RMS_NORMS):  # x / sqrt(E[x^2]): second moment 1, mean m / sqrt(q)
            return Signal(x.mean / math.sqrt(x.second_moment), 1.0) if x.second_moment else x
        if isinstance(m, nn.modules.dropout._DropoutNd):
            return rules.dropout(x, m.p, m.training)
        if isinstance(m, _KEEP_MODULES):
            return x
        if isinstance(m, nn.MultiheadAttention):
            value = args[2] if len(args) > 2 and isinstance(args[2], Signal) else x
            return self.layer(f"{name}.out_proj", value), None
        if isinstance(m, nn.TransformerEncoderLayer):
            return self.encoder_layer(name, m, x)
        if isinstance(m, nn.TransformerEncoder):
            for i, block in enumerate(m.layers):
                x = self.encoder_layer(f"{name}.layers.{i}", block, x)
            return UNIT if m.norm is not None else x
        self.unknown(f"{name} ({type(m).__name__})")
        return x

    def encoder_layer(self, name: str, m: nn.TransformerEncoderLayer, x: Signal) -> Signal:
        """Vaswani et al. 2017's block: post-norm (torch's default) or pre-norm (norm_first)."""
        def drop(signal: Signal, module: nn.Module) -> Signal:
            return rules.dropout(signal, module.p, module.training)

        def feed_forward(h: Signal) -> Signal:
            h = self.layer(f"{name}.linear1", h)
            h = drop(rules.activation(resolve(m.activation), h), m.dropout)
            return drop(self.layer(f"{name}.linear2", h), m.dropout2)

        if m.norm_first:
            x = rules.add(x, drop(self.layer(f"{name}.self_attn.out_proj", UNIT), m.dropout1))
            return rules.add(x, feed_forward(UNIT))
        self.layer(f"{name}.self_attn.out_proj", x)
        feed_forward(UNIT)  # after norm1
        return UNIT  # norm2

    # functions and methods -----------------------------------------------------------------
    def function(self, node: fx.Node, op: str, args: list, kwargs: dict, modules: dict):
        signals = [a for a in args if isinstance(a, Signal)]
        if op == "getitem":
            return self.getitem(args[0], args[1])
        if op in _SHAPE_OPS:
            return None
        act = node_activation(node, modules)
        if act is not None and signals:
            return rules.activation(act, signals[0])
        if op in _SPLIT_OPS and signals:
            return _Each(signals[0])
        if op in _CAT_OPS:
            return self.cat(node, op, args, kwargs)
        if op in _ADD_OPS | _SUB_OPS | _MUL_OPS | _DIV_OPS and signals:
            return self.arithmetic(node, op, args)
        if op == "neg" and signals:
            return rules.scale(signals[0], -1.0)
        if op in _NORM_OPS and signals:
            return UNIT
        if op in _DROPOUT_OPS and signals:
            p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
            training = kwargs.get("training", args[2] if len(args) > 2 else True)
            return rules.dropout(signals[0], p, training)
        if op in _KEEP_OPS and signals:
            return signals[0]
        if signals:
            self.unknown(op)
            return signals[0]
        return None

    @staticmethod
    def getitem(base, index):
        if isinstance(base, (tuple, list)) and isinstance(index, int):
            return base[index]
        if isinstance(base, _Each):
            return base.signal
        return base if isinstance(base, Signal) else None

    def cat(self, node: fx.Node, op: str, args: list, kwargs: dict) -> Signal | None:
        parts = args[0]
        if isinstance(parts, _Each):
            return parts.signal
        signals = [p for p in parts if isinstance(p, Signal)]
        if not signals:
            return None
        dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
        shapes = [_shape(n) for n in node.args[0]] if op != "stack" else []
        sizes = [s[dim] for s in shapes] if shapes and all(shapes) and \
            len(signals) == len(shapes) else None
        return rules.concat(signals, sizes)

    def arithmetic(self, node: fx.Node, op: str, args: list) -> Signal | None:
        a, b = (args + [None])[:2]
        if not isinstance(a, Signal):  # 2 * x, 1 + x
            a, b = b, a
        if isinstance(b, (int, float)) and not isinstance(b, bool):
            if op in _ADD_OPS:
                return rules.shift(a, b)
            if op in _SUB_OPS:
                return rules.shift(a, -b)
            return rules.scale(a, b if op in _MUL_OPS else 1.0 / b)
        if isinstance(b, Signal):
            if op in _MUL_OPS:
                return rules.product(a, b)
            if op in _ADD_OPS | _SUB_OPS:
                same = len(node.args) > 1 and node.args[0] is node.args[1]
                if same and op in _SUB_OPS:
                    return Signal(0.0, 0.0)
                b = b if op in _ADD_OPS else rules.scale(b, -1.0)
                return rules.add(a, b, same=same)
        self.unknown(op)
        return a


def _inputs(example_input, input_moments, count: int) -> list[Signal | None]:
    if example_input is None:
        return [Signal.from_mean_variance(*input_moments)] * count
    given = example_input if isinstance(example_input, tuple) else (example_input,)
    signals = [Signal.of(t) if isinstance(t, torch.Tensor) else None for t in given]
    return (signals + [None] * count)[:count]


def _op_name(node: fx.Node) -> str:
    target = node.target
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


def _walk_fx(gm: fx.GraphModule, example_input, input_moments) -> Propagation:
    walker, modules = _Walker(), dict(gm.named_modules())
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    env = dict(zip(placeholders, _inputs(example_input, input_moments, len(placeholders)),
                   strict=True))
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        args = list(fx.node.map_arg(node.args, env.get))
        kwargs = dict(fx.node.map_arg(node.kwargs, env.get))
        if node.op == "get_attr":
            attr = _attribute(gm, node.target)
            env[node] = Signal.of(attr) if isinstance(attr, torch.Tensor) else None
        elif node.op == "call_module":
            first = node.args[0] if node.args else None
            env[node] = walker.module(node.target, modules[node.target],
                                      [*args, *kwargs.values()], _shape(first), _shape(node))
        else:
            env[node] = walker.function(node, _op_name(node), args, kwargs, modules)
    return walker.result


def _attribute(gm: fx.GraphModule, target: str):
    value = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _walk_chain(model: nn.Module, example_input, input_moments, method: str) -> Propagation:
    if method == "hooks":
        with preserved(model), torch.no_grad():
            model.eval()
            leaves = execution_order(model, example_input)
    else:
        leaves = [(n, m) for n, m in model.named_modules()
                  if not list(m.children()) or isinstance(m, COMPOSITE_MODULES)]
    composites = [n for n, m in leaves if isinstance(m, COMPOSITE_MODULES)]
    walker = _Walker()
    walker.result.method = method
    value = _inputs(example_input, input_moments, 1)[0]
    for name, module in leaves:
        if any(name.startswith(f"{c}.") for c in composites):
            continue
        value = walker.module(name, module, [value])
        value = value[0] if isinstance(value, tuple) else value
    return walker.result


def propagate(model: nn.Module, example_input=None, input_moments: tuple[float, float] = (0.0, 1.0)
              ) -> Propagation:
    """Propagate (mean, second moment) through ``model``'s graph; see the module docstring.

    Args:
        model: any ``nn.Module``.
        example_input: a batch (or tuple of inputs): its measured moments are the input's,
            and its tensor shapes weight concatenations and conv padding. Run once in eval
            mode, with every flag and buffer restored.
        input_moments: (mean, variance) of the input's entries when no ``example_input``.
    """
    if example_input is None:
        Signal.from_mean_variance(*input_moments)
    try:
        gm = fx.GraphModule(model, fx.Tracer().trace(model))
    except Exception as error:  # noqa: BLE001 - any tracing failure means: fall back and say so
        method = "hooks" if example_input is not None else "registration order"
        warnings.warn(f"propagate: torch.fx could not trace {type(model).__name__} "
                      f"({type(error).__name__}); moments were propagated along the {method} "
                      "of its leaf modules as a chain, blind to residual sums and "
                      "concatenations", stacklevel=2)
        result = _walk_chain(model, example_input, input_moments, method)
    else:
        if example_input is not None:
            _record_shapes(gm, model, example_input)
        result = _walk_fx(gm, example_input, input_moments)
    if result.unknown:
        warnings.warn("propagate: no moment rule for " + ", ".join(result.unknown) +
                      "; their input's mean and variance were passed on unchanged", stacklevel=2)
    return result


def _record_shapes(gm: fx.GraphModule, model: nn.Module, example_input) -> None:
    """Every node's output shape on ``example_input`` (``ShapeProp``, in eval mode, the
    model's modes and buffers restored). A batch the model cannot take is one ValueError
    naming the shapes and the cause; the traceback ShapeProp prints itself is kept off
    stderr, and the warnings the model's forward raises are raised again."""
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    with preserved(model), torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        model.eval()
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                ShapeProp(gm).propagate(*inputs)
        except RuntimeError as error:
            cause = error.__cause__ or error
            given = ", ".join(str(tuple(t.shape)) for t in inputs if isinstance(t, torch.Tensor))
            raise ValueError(f"{type(model).__name__} cannot run on example_input of shape "
                             f"{given}: {str(cause).strip().splitlines()[0]}") from error
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename,
                               warning.lineno)


def propagated_gains(model: nn.Module, example_input=None,
                     input_moments: tuple[float, float] = (0.0, 1.0)) -> dict[str, float]:
    """Layer name -> gain g such that std = g / sqrt(fan_in) gives the layer unit output variance.

    Names are those of ``initlab.graph.layer_graph(model).following``. Example::

        >>> from initlab.models import mlp
        >>> gains = propagated_gains(mlp(64, [128, 128], 10, "sigmoid"))
        >>> round(gains["1"], 4), round(gains["3"], 4)  # data N(0, 1); sigmoid of N(0, 1)
        (1.0, 1.8462)
    """
    return propagate(model, example_input, input_moments).gains
