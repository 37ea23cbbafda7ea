"""Where a probe measures: every module with parameters of its own, every activation
module, and the functional activations ``torch.fx`` finds.

A *site* is one place whose output the probe summarizes. Kinds:

* ``layer``: a module that mixes features with weights (Linear, Bilinear, every
  convolution, Embedding, RNN/LSTM/GRU and their cells, MultiheadAttention). These
  are the points of the depth profile the verdicts read.
* ``norm``: BatchNorm, LayerNorm, GroupNorm and the like (reported, not judged).
* ``activation``: an activation module (``initlab.activations.from_module`` knows it;
  ``nn.Identity`` is not one), or a *derived* site: a functional activation such as
  ``F.relu(self.fc(x))`` applied directly to a module's output. Its statistics are
  those of ``phi(output)``, computed in the producing module's hook, so the model
  itself runs unchanged. The functional activation of a ``TransformerEncoderLayer``
  (``activation="relu"``) is derived from its ``linear1`` the same way.
* ``other``: any other module with parameters of its own.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace

from torch import fx, nn

from initlab.activations import Activation, from_module
from initlab.graph import functional_activation, node_activation

LAYER_TYPES = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd, nn.Embedding, nn.RNNBase,
               nn.RNNCellBase, nn.MultiheadAttention)
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
_TRANSFORMER_LAYERS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


@dataclass(frozen=True, eq=False)
class Site:
    """One probed place: ``module``'s forward hook records it."""

    name: str
    kind: str  # "layer" | "norm" | "activation" | "other"
    module: nn.Module
    module_type: str
    activation: Activation | None = None
    derived: bool = False  # phi(module output) for a functional activation phi


def _module_site(name: str, module: nn.Module) -> Site | None:
    act = from_module(module)
    if act is not None and act.name != "identity":
        return Site(name, "activation", module, type(module).__name__, act)
    if not any(True for _ in module.parameters(recurse=False)):
        return None
    kind = "layer" if isinstance(module, LAYER_TYPES) else \
        "norm" if isinstance(module, NORM_TYPES) else "other"
    return Site(name, kind, module, type(module).__name__)


def _derived(producer: str, module: nn.Module, act: Activation) -> Site:
    return Site(f"{producer}->{act.name}", "activation", module, f"{act.name} (functional)",
                act, derived=True)


def _traced_sites(model: nn.Module) -> tuple[list[Site], list[str]]:
    """Functional activations applied straight to a module's output, found by torch.fx."""
    try:
        graph = fx.Tracer().trace(model)
    except Exception as error:  # noqa: BLE001 - any tracing failure: no functional sites, say so
        return [], [f"torch.fx could not trace {type(model).__name__} "
                    f"({type(error).__name__}); functional activations are not probed"]
    modules = dict(model.named_modules())
    sites, skipped = [], []
    for node in graph.nodes:
        if node.op not in ("call_function", "call_method"):
            continue
        act = node_activation(node, modules)
        if act is None:
            continue
        source = node.args[0] if node.args else None
        if isinstance(source, fx.Node) and source.op == "call_module":
            sites.append(_derived(source.target, modules[source.target], act))
        else:
            skipped.append(node.name)
    notes = [f"functional activations not applied straight to a module's output are not "
             f"probed: {', '.join(skipped)}"] if skipped else []
    return sites, notes


def _transformer_sites(model: nn.Module) -> list[Site]:
    """The functional activation inside torch's Transformer layers, derived from linear1."""
    sites = []
    for name, module in model.named_modules():
        if isinstance(module, _TRANSFORMER_LAYERS) and not isinstance(module.activation,
                                                                       nn.Module):
            act = functional_activation(getattr(module.activation, "__name__", ""), (), {})
            if act is not None:
                sites.append(_derived(f"{name}.linear1", module.linear1, act))
    return sites


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def find_sites(model: nn.Module) -> tuple[list[Site], list[str]]:
    """Every site of ``model`` (module order; derived sites after their producer's own)
    and notes on what could not be probed.

    Tracing costs tens of milliseconds on a ResNet, so the answer is kept per model and
    found again when the model's modules are no longer the same objects.
    """
    modules = dict(model.named_modules())
    names = {id(m): n for n, m in modules.items()}
    signature = tuple((name, id(module)) for name, module in modules.items())
    cached = _CACHE.get(model)
    if cached is None or cached[0] != signature:
        sites, notes = _find_sites(model)
        # kept without module references, so that the cache never holds the model alive
        bare = [(names[id(s.module)], replace(s, module=None)) for s in sites]
        cached = _CACHE[model] = (signature, bare, notes)
    return [replace(site, module=modules[name]) for name, site in cached[1]], list(cached[2])


def _find_sites(model: nn.Module) -> tuple[list[Site], list[str]]:
    own = [s for n, m in model.named_modules() if (s := _module_site(n, m)) is not None]
    derived, notes = _traced_sites(model)
    derived += _transformer_sites(model)
    order = {id(s.module): i for i, s in enumerate(own)}
    sites = sorted(own + derived, key=lambda s: (order.get(id(s.module), len(own)), s.derived))
    return sites, notes
