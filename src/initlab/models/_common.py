"""What every builder shares: activation module factories, input-shape checks, seeded
construction and initialization through initlab's plan.

A builder constructs its modules with ``build_initialized(factory, example_input, init, seed)``:

1. the modules are constructed inside ``torch.random.fork_rng`` with the CPU generator set to
   ``seed``, so PyTorch's construction-time init (``reset_parameters``) is a function of
   ``seed`` and the caller's global random state is left exactly as it was;
2. unless ``init is None``, ``initlab.init_model(model, example_input, scheme=init,
   generator=torch.Generator().manual_seed(seed))`` re-initializes every parameter;
3. batch-norm running statistics are reset, so a tracing forward pass of the plan leaves no
   trace: a built model is a fresh model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from torch import nn

from initlab import activations
from initlab.activations import Activation

M = TypeVar("M", bound=nn.Module)
ActivationSpec = str | Activation | nn.Module | Callable


def activation_factory(spec: ActivationSpec) -> Callable[[], nn.Module]:
    """A factory of fresh ``nn.Module`` instances of the activation ``spec``.

    Each call gives a new instance, so parametric activations (PReLU) get their own
    parameters per layer and the plan sees one module per place the activation is applied.
    """
    act = activations.resolve(spec)
    if act.module is None:
        raise TypeError(f"activation {act.name!r} has no module factory: register it with "
                        f"initlab.activations.register({act.name!r}, fn, module=<nn.Module class>)"
                        " or pass an nn.Module")
    return act.module


def image_shape(shape: Sequence[int], model: str) -> tuple[int, int, int]:
    """``shape`` as (C, H, W); a ValueError naming ``model`` and the shape otherwise."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{model} needs image inputs of shape (C, H, W); got input shape {shape}")
    return shape  # type: ignore[return-value]


def features(shape: Sequence[int]) -> int:
    """The number of features of one example of shape ``shape`` (its flattened size)."""
    return math.prod(int(s) for s in shape)


def build_initialized(factory: Callable[[], M], example_input: torch.Tensor,
                      init: object = "auto", seed: int = 0) -> M:
    """Construct ``factory()`` seeded by ``seed`` and initialize it through initlab's plan.

    ``init`` is any scheme ``initlab.plan`` accepts ("auto", "torch_default", a name of
    ``initlab.init``, an Initializer); ``None`` keeps PyTorch's construction-time init
    (seeded by ``seed``), which is what init benchmarks compare against.
    The caller's global random state is never touched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        model = factory()
    if init is not None:
        from initlab.plan import init_model

        init_model(model, example_input, scheme=init,
                   generator=torch.Generator().manual_seed(seed))
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
    return model
