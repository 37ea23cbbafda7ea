"""The recorder: forward hooks on every site's module that summarize each call.

Inside ``with Recorder(sites)``, every forward call of a probed module appends one
``Event`` per site of that module (its own, then the functional activations derived
from its output), in execution order; a module called twice gives two events. With
``backward=True`` a hook on the output tensor adds the norm of the gradient with
respect to that output when backward runs. Hooks on tensors change nothing: they
return None, so gradients flow as without them; statistics are taken under
``no_grad`` on detached values and stay on the device until ``Recorder.collect``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from initlab.probe.hooks import Hook, Hooks
from initlab.probe.sites import Site
from initlab.probe.stats import SAMPLE, facts, forward_stats, histogram, norm


@dataclass
class HistogramSpec:
    """Histograms of each event: ``bins`` bins over a range per site."""

    bins: int = 40
    span: float = 6.0  # unbounded sides of a site's range end at +-span

    def range_for(self, site: Site) -> tuple[float, float]:
        lo, hi = -self.span, self.span
        if site.activation is not None and site.activation.output_range is not None:
            out_lo, out_hi = site.activation.output_range
            lo = out_lo if out_lo > -float("inf") else lo
            hi = out_hi if out_hi < float("inf") else max(hi, lo + self.span)
        return float(lo), float(hi)


@dataclass(eq=False)
class Event:
    """One forward call of one site."""

    site: Site
    call: int  # 0 for the site's first call in this pass, 1 for its second, ...
    shape: tuple[int, ...]
    stats: Tensor  # forward_stats vector, on the device
    hist: Tensor | None = None
    grad_norm: Tensor | None = None  # |dL/d output|, set during backward

    @property
    def label(self) -> str:
        """The site's name, with ``#2``, ``#3``, ... for repeated calls of one module."""
        return self.site.name if self.call == 0 else f"{self.site.name}#{self.call + 1}"


def first_tensor(value) -> Tensor | None:
    """The first tensor in a (nested) tuple/list/dict output, e.g. LSTM's ``output``."""
    if isinstance(value, Tensor):
        return value
    items = value.values() if isinstance(value, dict) else value \
        if isinstance(value, (tuple, list)) else ()
    for item in items:
        found = first_tensor(item)
        if found is not None:
            return found
    return None


class Recorder:
    """Forward hooks on the modules of ``sites``; a context manager that removes them."""

    def __init__(self, sites: list[Site], *, backward: bool = True,
                 hist: HistogramSpec | None = None, sample: int = SAMPLE):
        self.backward, self.hist, self.sample = backward, hist, sample
        self.events: list[Event] = []
        self._calls: dict[Site, int] = defaultdict(int)
        self._by_module: dict[nn.Module, list[Site]] = defaultdict(list)
        for site in sites:
            self._by_module[site.module].append(site)
        self._ranges = {site: hist.range_for(site) for site in sites} if hist else {}
        self.hooks = Hooks()

    def __enter__(self) -> Recorder:
        self.hooks = Hooks()
        for module in self._by_module:
            self.hooks.add(Hook(module, self._on_forward))
        return self

    def __exit__(self, *exc) -> None:
        self.hooks.remove()

    def range_of(self, site: Site) -> tuple[float, float] | None:
        """The histogram range of ``site`` (None without histograms)."""
        return self._ranges.get(site)

    def fired(self) -> dict[nn.Module, int]:
        """How many times each probed module's hook fired."""
        return {hook.module: hook.calls for hook in self.hooks}

    def _on_forward(self, module: nn.Module, inputs: tuple, output) -> None:
        y = first_tensor(output)
        if y is None:
            return
        for site in self._by_module[module]:
            self._record(site, y)

    def _record(self, site: Site, y: Tensor) -> None:
        with torch.no_grad():
            value = site.activation.fn(y.detach()) if site.derived else y
            event = Event(site, self._calls[site], tuple(value.shape),
                          forward_stats(value, facts(site.activation), self.sample))
            if self.hist is not None:
                event.hist = histogram(value, self.hist.bins, *self._ranges[site], self.sample)
        self._calls[site] += 1
        self.events.append(event)
        if self.backward and not site.derived and y.requires_grad:
            y.register_hook(partial(_store_grad_norm, event))

    def take(self) -> list[Event]:
        """The events recorded so far; the recorder starts a new pass."""
        events, self.events = self.events, []
        self._calls.clear()
        return events


def _store_grad_norm(event: Event, grad: Tensor) -> None:
    event.grad_norm = norm([grad])
