"""Hooks as context managers that always remove themselves (the idea of fastai's
``callback/hook.py``).

``Hook(module, fn)`` calls ``fn(module, inputs, output)`` after each forward of
``module`` and counts its calls; ``Hooks`` is a group of them. Both remove their
handles on ``remove()`` and on leaving a ``with`` block, exceptions included, so a
probe never leaves anything behind on the model. A hook's function returns nothing
to torch: the module's output is never replaced.

``leftover_hooks(model)`` lists what hooks a model still carries (tests use it);
``mha_fastpath(False)`` switches off the fused MultiheadAttention / Transformer
fast path, which skips submodule hooks, and restores the previous setting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

HookFn = Callable[[nn.Module, tuple, object], None]


class Hook:
    """One forward hook (or forward pre-hook with ``pre=True``) on one module.

    ``calls`` counts how often it fired; ``fn``'s return value is ignored, so the
    module computes exactly what it computes without the hook.
    """

    def __init__(self, module: nn.Module, fn: HookFn, *, pre: bool = False):
        self.module, self.fn, self.calls = module, fn, 0
        if pre:
            self._handle: RemovableHandle | None = module.register_forward_pre_hook(self._pre)
        else:
            self._handle = module.register_forward_hook(self._post)

    def _pre(self, module: nn.Module, inputs: tuple) -> None:
        self.calls += 1
        self.fn(module, inputs, None)

    def _post(self, module: nn.Module, inputs: tuple, output: object) -> None:
        self.calls += 1
        self.fn(module, inputs, output)

    @property
    def removed(self) -> bool:
        return self._handle is None

    def remove(self) -> None:
        """Remove the hook from its module (idempotent)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __enter__(self) -> Hook:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class Hooks:
    """A group of hooks, removed together; iterate, index or ``len()`` it like a list."""

    def __init__(self, hooks: Iterable[Hook] = ()):
        self._hooks = list(hooks)

    def add(self, hook: Hook) -> Hook:
        self._hooks.append(hook)
        return hook

    def __iter__(self) -> Iterator[Hook]:
        return iter(self._hooks)

    def __len__(self) -> int:
        return len(self._hooks)

    def __getitem__(self, i: int) -> Hook:
        return self._hooks[i]

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()

    def __enter__(self) -> Hooks:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


_MODULE_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                      "_backward_pre_hooks")


def leftover_hooks(model: nn.Module) -> list[str]:
    """Every hook still registered on ``model``'s modules and parameters, as
    ``"<module or parameter name>: <kind>"`` (empty when the model is clean)."""
    found = []
    for name, module in model.named_modules():
        found += [f"{name or '<root>'}: {kind}" for kind in _MODULE_HOOK_DICTS
                  if getattr(module, kind, None)]
    for name, param in model.named_parameters():
        if getattr(param, "_post_accumulate_grad_hooks", None):
            found.append(f"{name}: post_accumulate_grad_hooks")
        if getattr(param, "_backward_hooks", None):
            found.append(f"{name}: tensor hooks")
    return found


@contextmanager
def mha_fastpath(enabled: bool) -> Iterator[None]:
    """Set torch's MultiheadAttention/TransformerEncoderLayer fast path, restore it on exit.

    The fast path runs a whole encoder layer as one fused kernel, so the hooks of its
    submodules (linear1, the activation, ...) never fire; probes switch it off.
    """
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(enabled)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)
