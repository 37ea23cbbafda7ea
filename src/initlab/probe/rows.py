"""From recorded events to ``LayerRow``s: one device tensor per pass, one host copy."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from initlab.probe.recorder import Event
from initlab.probe.report import LayerRow
from initlab.probe.stats import FIELDS, facts, norm

EXTRA = ("grad_norm", "weight_norm", "weight_grad_norm")


def weights(module: nn.Module) -> list[nn.Parameter]:
    """A module's own weight tensors (parameters named ``*weight*``; all of its own if none)."""
    own = dict(module.named_parameters(recurse=False))
    return [p for n, p in own.items() if "weight" in n] or list(own.values())


def event_columns(events: Sequence[Event], weight_grad_norms: Mapping[int, Tensor]) -> Tensor:
    """(len(events), len(FIELDS) + 3) float64 on the events' device: the forward statistics,
    |dL/dy|, |W| and |dL/dW| (NaN where missing). ``weight_grad_norms`` maps
    ``id(parameter)`` to the norm of its gradient."""
    device = events[0].stats.device
    nan = torch.full((), math.nan, dtype=torch.float64, device=device)
    columns = []
    for event in events:
        own = weights(event.site.module) if not event.site.derived else []
        grads = [weight_grad_norms[id(p)] for p in own if id(p) in weight_grad_norms]
        columns.append(torch.cat([event.stats, torch.stack([
            event.grad_norm if event.grad_norm is not None else nan,
            norm(own).to(device) if own else nan,
            torch.linalg.vector_norm(torch.stack(grads)).to(device) if grads else nan])]))
    return torch.stack(columns)


def to_rows(events: Sequence[Event], values: Sequence[Sequence[float]]) -> list[LayerRow]:
    """``LayerRow``s from events and their ``event_columns`` values (as Python floats)."""
    rows = []
    for i, (event, row) in enumerate(zip(events, values, strict=True)):
        stats = dict(zip(FIELDS, row[:len(FIELDS)], strict=True))
        extra = dict(zip(EXTRA, row[len(FIELDS):], strict=True))
        site, f = event.site, facts(event.site.activation)
        rows.append(LayerRow(
            index=i, name=site.name, kind=site.kind, module_type=site.module_type,
            activation=site.activation.name if site.activation else None, call=event.call,
            shape=event.shape, **stats, **extra,
            grad_to_weight=extra["weight_grad_norm"] / extra["weight_norm"]
            if extra["weight_norm"] else math.nan,
            live_ratio=(1 - stats["zero"]) / f.live if f.dead_capable else math.nan,
            responsive_ratio=(1 - stats["saturated"]) / f.responsive if f.responsive
            else math.nan))
    return rows


def rms(x: Tensor) -> Tensor:
    """sqrt(mean(x^2)) as a float64 scalar on x's device."""
    with torch.no_grad():
        return norm([x]) / math.sqrt(max(x.numel(), 1))
