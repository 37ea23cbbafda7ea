"""Which activation follows each parametric layer of a model.

The answer decides the gain a layer's weights need. It is read from the model's
graph, traced with ``torch.fx``: from each layer the walk goes forward through
ops that do not change the kind of signal (reshapes, dropout, pooling, norms,
residual additions, concatenations) until it meets an activation (a module such
as ``nn.ReLU`` or a function such as ``F.relu``/``torch.tanh``/``x.sigmoid()``),
another layer, or the model's output. Layers reached by no activation get
``None`` (a linear continuation: gain 1).

torch's own composite modules are leaves of the trace; their inside is known:
``TransformerEncoderLayer``'s ``linear1`` feeds its ``activation``, everything
else in attention and transformer layers feeds a linear map.

When tracing fails (data-dependent control flow), the order in which leaf
modules execute on ``example_input`` (forward hooks) stands in for the graph,
then the order in which modules were registered; both guess, and say so in a
warning naming each layer whose activation was guessed.
"""

from __future__ import annotations

import fnmatch
import operator
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from initlab._state import preserved
from initlab.activations import Activation, from_module

# Layers whose weights the planner scales by the following activation's gain.
WEIGHT_LAYERS = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd)
# torch's own modules that hold layers: leaves of an fx trace and of ``execution_order``,
# whose insides this module knows (see ``_composite_following``) instead of walking them.
COMPOSITE_MODULES = (
    nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.TransformerEncoder,
    nn.TransformerDecoder, nn.Transformer, nn.MultiheadAttention,
)
_TRANSPARENT_MODULES = (
    nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm,
    nn.LocalResponseNorm, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.Flatten, nn.Unflatten, nn.Upsample, nn.modules.padding._ConstantPadNd,
    nn.modules.padding._ReflectionPadNd, nn.modules.padding._ReplicationPadNd, nn.ZeroPad2d,
)
_TRANSPARENT_FUNCTIONS = {
    torch.flatten, torch.reshape, torch.cat, torch.concat, torch.add, torch.mean, torch.squeeze,
    torch.unsqueeze, torch.permute, torch.transpose, operator.add, operator.iadd,
    operator.getitem, F.dropout, F.layer_norm, F.batch_norm, F.group_norm, F.max_pool1d,
    F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.adaptive_max_pool2d,
    F.interpolate, F.pad,
}
_TRANSPARENT_METHODS = {
    "view", "reshape", "flatten", "permute", "transpose", "contiguous", "squeeze", "unsqueeze",
    "add", "add_", "mean", "chunk", "split", "expand", "repeat", "clone", "to", "float",
}
_RESIDUAL_OPS = {operator.add, operator.iadd, torch.add, "add", "add_"}

# Functional activations by name, built through their module class (same argument order).
_FUNCTIONAL = {
    "relu": nn.ReLU, "relu6": nn.ReLU6, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU,
    "celu": nn.CELU, "selu": nn.SELU, "gelu": nn.GELU, "silu": nn.SiLU, "mish": nn.Mish,
    "softplus": nn.Softplus, "softsign": nn.Softsign, "hardtanh": nn.Hardtanh,
    "hardswish": nn.Hardswish, "hardsigmoid": nn.Hardsigmoid, "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}


@dataclass
class LayerGraph:
    """What the planner needs to know about a model's layers."""

    following: dict[str, Activation | None]  # layer name -> activation that follows it
    output_layers: set[str] = field(default_factory=set)  # layers whose signal reaches the output
    residual_ends: set[str] = field(default_factory=set)  # last module of each residual branch
    guessed: list[str] = field(default_factory=list)  # layers whose activation was guessed
    method: str = "fx"  # "fx", "hooks" or "registration order"


def is_weight_layer(module: nn.Module) -> bool:
    """Linear, Bilinear and every (transposed) convolution."""
    return isinstance(module, WEIGHT_LAYERS)


def functional_activation(fn_name: str, args: tuple, kwargs: dict) -> Activation | None:
    """The activation that the torch function or tensor method ``fn_name`` computes on ``args``.

    ``fn_name`` is a torch name such as ``"relu"``, ``"leaky_relu"`` or ``"tanh"``; a trailing
    underscore (the in-place form, ``x.relu_()``) is ignored. The constants among ``args``
    after the input and every keyword but ``inplace`` become the activation's parameters,
    e.g. ``F.leaky_relu(x, 0.2)`` gives Leaky ReLU with alpha 0.2. None when ``fn_name`` is no
    activation.
    """
    cls = _FUNCTIONAL.get(fn_name.rstrip("_"))
    if cls is None:
        return None
    constants = [a for a in args[1:] if isinstance(a, (int, float, str))]
    options = {k: v for k, v in kwargs.items() if k != "inplace"}
    return from_module(cls(*constants, **options))


def node_activation(node: fx.Node, modules: dict[str, nn.Module]) -> Activation | None:
    """The activation a ``torch.fx`` node applies, or None when it applies none.

    A ``call_module`` node is read from its module (``modules``: the traced module's
    ``named_modules()``), ``call_function`` and ``call_method`` nodes by the function's or
    method's name (see ``functional_activation``). Every other node (placeholders, attributes,
    the output) gives None.
    """
    if node.op == "call_module":
        return from_module(modules[node.target])
    if node.op == "call_function":
        return functional_activation(getattr(node.target, "__name__", ""), node.args, node.kwargs)
    if node.op == "call_method":
        return functional_activation(node.target, node.args, node.kwargs)
    return None


def _is_transparent(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], _TRANSPARENT_MODULES)
    if node.op == "call_function":
        return node.target in _TRANSPARENT_FUNCTIONS
    return node.op == "call_method" and node.target in _TRANSPARENT_METHODS


def _walk_forward(start: fx.Node, modules) -> tuple[Activation | None, bool]:
    """The first activation downstream of ``start``, and whether the output is reached bare."""
    frontier, seen, reaches_output = list(start.users), set(), False
    while frontier:
        node = frontier.pop(0)
        if node in seen:
            continue
        seen.add(node)
        act = node_activation(node, modules)
        if act is not None:
            return act, False
        if node.op == "output":
            reaches_output = True
        elif _is_transparent(node, modules):
            frontier.extend(node.users)
    return None, reaches_output


def _residual_ends(gm: fx.GraphModule, modules) -> set[str]:
    """For each residual addition, the last parametric module of its deeper operand."""
    depth: dict[fx.Node, int] = {}
    last: dict[fx.Node, str | None] = {}
    ends: set[str] = set()
    for node in gm.graph.nodes:
        inputs = [n for n in node.all_input_nodes]
        depth[node] = max((depth[n] for n in inputs), default=0)
        last[node] = next((last[n] for n in inputs if depth[n] == depth[node]), None)
        if node.op == "call_module" and any(True for _ in modules[node.target].parameters()):
            depth[node] += 1
            last[node] = node.target
        is_add = node.target in _RESIDUAL_OPS and len(inputs) == 2
        if is_add and depth[inputs[0]] != depth[inputs[1]]:
            branch = max(inputs, key=lambda n: depth[n])
            if last[branch] is not None:
                ends.add(last[branch])
    return ends


def _composite_following(name: str, module: nn.Module) -> dict[str, Activation | None]:
    """Known insides of torch's composite leaf modules (transformer layers, attention)."""
    found: dict[str, Activation | None] = {}
    for sub_name, sub in module.named_modules(prefix=name):
        if isinstance(sub, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)):
            act = sub.activation
            act = from_module(act) if isinstance(act, nn.Module) else functional_activation(
                getattr(act, "__name__", ""), (), {})
            found[f"{sub_name}.linear1"] = act
    for sub_name, sub in module.named_modules(prefix=name):
        if sub_name != name and is_weight_layer(sub):
            found.setdefault(sub_name, None)
    return found


def _trace(model: nn.Module) -> LayerGraph:
    gm = fx.GraphModule(model, fx.Tracer().trace(model))
    modules = dict(gm.named_modules())
    following: dict[str, Activation | None] = {}
    outputs: set[str] = set()
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        module = modules[node.target]
        if is_weight_layer(module):
            following[node.target], reaches_output = _walk_forward(node, modules)
            if reaches_output:
                outputs.add(node.target)
        elif list(module.children()):
            following.update(_composite_following(node.target, module))
    return LayerGraph(following, outputs, _residual_ends(gm, modules))


def _order_graph(order: list[tuple[str, nn.Module]], method: str) -> LayerGraph:
    """Guess from a module sequence: a layer is followed by the next activation module, if any."""
    following: dict[str, Activation | None] = {}
    for i, (name, module) in enumerate(order):
        if not is_weight_layer(module):
            continue
        act = None
        for _, nxt in order[i + 1:]:
            if is_weight_layer(nxt):
                break
            act = from_module(nxt)
            if act is not None:
                break
        following[name] = act
    layers = list(following)
    graph = LayerGraph(following, set(layers[-1:]), set(), layers, method)
    for name, module in order:  # what is known of torch's composites beats a guess
        if not isinstance(module, COMPOSITE_MODULES):
            continue
        known = _composite_following(name, module)
        graph.following.update(known)
        graph.guessed = [g for g in graph.guessed if g not in known]
    return graph


def execution_order(model: nn.Module, example_input) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of each leaf and each ``COMPOSITE_MODULES`` instance ``model`` calls.

    ``model`` runs once on ``example_input`` (a tuple is unpacked into positional arguments)
    in eval mode, without gradients and under a forked RNG; its train/eval flags and buffers
    are restored after, so no statistics change and no random numbers are drawn. Modules come
    in the order their first call returned (a forward hook fires on return, so a composite
    follows the modules inside it); modules never called are absent.
    """
    order: list[tuple[str, nn.Module]] = []
    leaves = [(n, m) for n, m in model.named_modules()
              if not list(m.children()) or isinstance(m, COMPOSITE_MODULES)]
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: order.append((n, mod)))
               for n, m in leaves]
    try:  # in eval mode under a forked RNG: no statistics updated, no dropout drawn
        with preserved(model), torch.no_grad(), torch.random.fork_rng(devices=[]):
            model.eval()
            model(*example_input) if isinstance(example_input, tuple) else model(example_input)
    finally:
        for h in handles:
            h.remove()
    return list(dict(order).items())  # first execution of each module, in order


def layer_graph(model: nn.Module, example_input=None) -> LayerGraph:
    """Trace ``model`` and say which activation follows each layer (see the module docstring)."""
    try:
        return _trace(model)
    except Exception as error:  # noqa: BLE001 - any tracing failure means: fall back and say so
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    if example_input is not None:
        graph = _order_graph(execution_order(model, example_input), "hooks")
    else:
        graph = _order_graph(list(model.named_modules()), "registration order")
    if graph.guessed:
        warnings.warn(
            f"torch.fx could not trace {type(model).__name__} ({reason}); the activation after "
            f"these layers was guessed from {graph.method}: {', '.join(graph.guessed)}",
            stacklevel=2,
        )
    return graph


def following_activations(model: nn.Module, example_input=None) -> dict[str, Activation | None]:
    """Layer name -> the activation that follows it (None: a linear continuation or the output)."""
    return layer_graph(model, example_input).following


def matches(pattern: str | type, name: str, module: nn.Module) -> bool:
    """Whether an override key (a name glob or a module type) selects this module."""
    if isinstance(pattern, type):
        return isinstance(module, pattern)
    return fnmatch.fnmatchcase(name, pattern)
