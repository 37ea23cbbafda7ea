"""Plain-language findings that test the article's claims against measured results.

Each function reads the RunResults of a sweep (or runs one small, direct experiment)
and returns one sentence with the numbers in it, or None when the sweep lacks what
the finding needs. The article's loose claims are measured, not repeated:

* zero init is a *symmetry* problem (hidden units stay identical), not "vanishing";
* sigmoid's gradient shrinks layer by layer (phi' <= 1/4);
* ReLU's trouble is scale and dead units, not inevitable explosion;
* the identity activation adds no non-linearity: a deep identity net is a linear model.
"""

from __future__ import annotations

import statistics

import torch
from torch import nn

from initlab.data import Dataset
from initlab.models import mlp
from initlab.report.summary import summarize


def _runs(results, **where):
    return [r for r in results if all(getattr(r.config, k) == v for k, v in where.items())]


def _init_stats(results, key: str, **where) -> tuple[float, float] | None:
    """Mean over seeds of (first layer's, last hidden layer's) statistic ``key`` at init."""
    pairs = []
    for r in _runs(results, **where):
        stats = [s[key] for s in r.layer_stats if s["phase"] == "init"]
        if len(stats) >= 2:
            pairs.append((stats[0], stats[-2]))
    if not pairs:
        return None
    return statistics.fmean(p[0] for p in pairs), statistics.fmean(p[1] for p in pairs)


def zero_init_symmetry(data: Dataset, activation: str = "sigmoid", steps: int = 100,
                       seed: int = 0) -> str:
    """Train the article's MLP from all-zero weights and count distinct hidden units."""
    model = mlp(data.in_features, [256], data.num_classes, activation, init="zeros", seed=seed)
    first, last = model[1], model[-1]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    order = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(seed))
    for step in range(steps):
        batch = order[(step * 128) % len(order):][:128]
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(data.x_train[batch]), data.y_train[batch]).backward()
        optimizer.step()
    distinct_in = len(torch.unique(first.weight.detach().round(decimals=6), dim=0))
    distinct_out = len(torch.unique(last.weight.detach().T.round(decimals=6), dim=0))
    moved = float(first.weight.detach().abs().max())
    return (f"Zero init is a symmetry trap, not 'vanishing': after {steps} SGD steps the "
            f"{activation} MLP's 256 hidden units have {distinct_in} distinct incoming and "
            f"{distinct_out} distinct outgoing weight vector(s) (first-layer |w| max "
            f"{moved:.2g}): every hidden unit computes the same thing, so the layer acts as one "
            f"unit.")


def sigmoid_vanishing(results) -> str | None:
    """Gradient norm at the first vs the last hidden layer of the deep net, at init."""
    depth = max((r.config.depth for r in results), default=0)
    lines = []
    for activation in ("sigmoid", "tanh", "relu"):
        for init in ("xavier_uniform", "he_uniform"):
            grads = _init_stats(results, "grad_norm", activation=activation, init=init,
                                depth=depth)
            if grads and grads[1] > 0:
                lines.append(f"{activation}+{init} {grads[0] / grads[1]:.2g}")
    if depth < 2 or not lines:
        return None
    return (f"Vanishing gradients, measured at init in the {depth}-layer net as the first "
            f"layer's weight-gradient norm over the last hidden layer's: " + ", ".join(lines)
            + ". Sigmoid's derivative is at most 1/4 and its output is not zero-centred, so "
            "its gradient shrinks layer by layer where tanh and ReLU keep theirs.")


def relu_scale(results) -> str | None:
    """ReLU's activation std through depth, per init: explosion needs a too-large init."""
    depth = max((r.config.depth for r in results), default=0)
    parts = []
    for init in sorted({r.config.init for r in _runs(results, activation="relu", depth=depth)}):
        stds = _init_stats(results, "act_std", activation="relu", init=init, depth=depth)
        if stds and stds[0] > 0:
            parts.append(f"{init} x{stds[1] / stds[0]:.2g}")
    if depth < 2 or not parts:
        return None
    return (f"ReLU does not explode by itself: through {depth} layers its activation std "
            f"changes by " + ", ".join(parts) + " (last hidden layer over first). He init "
            "keeps it; small fixed-scale inits make it vanish; only an init larger than "
            "He's would make it grow.")


def identity_is_linear(results) -> str | None:
    """The identity activation's accuracy, shallow vs deep: both are linear models."""
    best: dict[int, float] = {}
    for s in summarize(results):  # best first, so the first of each depth is its best
        if s.activation == "identity":
            best.setdefault(s.depth, s.test_accuracy)
    if len(best) < 2:
        return None
    shown = ", ".join(f"depth {d}: {a:.3f}" for d, a in sorted(best.items()))
    return (f"The identity activation adds no non-linearity: its best test accuracy is "
            f"{shown}. A stack of linear layers is still one linear map, so depth adds no "
            f"expressive power; any difference is optimization (deep linear nets train more "
            f"slowly, Saxe et al. 2014).")


def best_per_activation(results, depth: int) -> str | None:
    """The best init for each activation at ``depth``, and the spread across inits."""
    ranked: dict[str, list] = {}
    for s in summarize(results):  # best first
        if s.depth == depth:
            ranked.setdefault(s.activation, []).append(s)
    if not ranked:
        return None
    parts = [f"{activation}: {rows[0].init} {rows[0].test_accuracy:.3f} "
             f"(worst {rows[-1].test_accuracy:.3f})" for activation, rows in sorted(ranked.items())]
    return f"Depth {depth}, best init per activation: " + "; ".join(parts) + "."
