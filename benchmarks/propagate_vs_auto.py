"""Per-layer output std under "auto" and under propagated gains, side by side.

Two networks, both on sklearn's bundled digits (real data, standardized by
``initlab.data``), width 256, biases 0:

* a residual MLP: ``x = stem(x); x = x + W2 phi(W1 x)`` for 16 blocks, then a head
  (phi = GELU, no normalization), where "auto" lets the residual stream's variance
  grow block after block;
* a residual MLP whose branches end in a sigmoid, ``x = x + sigmoid(W x)`` for 16
  blocks: the non-zero mean (0.5 per block) accumulates in the stream;
* a 20-layer sigmoid MLP (``initlab.models.mlp``), where "auto" scales the first
  layer for sigmoid's E[phi^2] instead of the data's and the output layer for a
  unit-variance input it does not get.

Both schemes draw the same normal noise from the same seed (one ``plan``, the
propagated gains applied as overrides), so the columns differ only by scale.
Each std is over every entry of the layer's output on 512 examples, averaged over
5 seeds. ``ratio`` is propagate / auto.

    python benchmarks/propagate_vs_auto.py
"""

from __future__ import annotations

import torch
from torch import nn

from initlab import data as datasets
from initlab import init as schemes
from initlab.adaptive import propagated_gains
from initlab.models import mlp
from initlab.plan import plan

SEEDS = range(5)
WIDTH = 256


class ResidualMLP(nn.Module):
    """stem -> blocks of x + W2 act(W1 x) -> head; no normalization."""

    def __init__(self, d_in: int, width: int, blocks: int, d_out: int, branch):
        super().__init__()
        self.stem = nn.Linear(d_in, width)
        self.blocks = nn.ModuleList(branch(width) for _ in range(blocks))
        self.head = nn.Linear(width, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x.flatten(1))
        for block in self.blocks:
            x = x + block(x)
        return self.head(x)


def initialize(model: nn.Module, x: torch.Tensor, scheme: str, seed: int) -> nn.Module:
    """"auto", or "propagate": the same plan, each layer's gain replaced by its propagated one."""
    base = plan(model, x)
    if scheme == "propagate":
        base = base.override({name: schemes.get("variance_scaling", mode="fan_in",
                                                 distribution="normal", gain=g)
                              for name, g in propagated_gains(model, x).items()})
    return base.apply(seed)


def layer_stds(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """The std of every Linear layer's output on ``x`` (forward hooks, eval mode)."""
    stds: dict[str, float] = {}

    def record(name: str):
        def hook(_module, _inputs, output) -> None:
            stds.setdefault(name, float(output.std()))
        return hook

    handles = [m.register_forward_hook(record(n))
               for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        model.eval()(x)
    for handle in handles:
        handle.remove()
    return stds


def compare(title: str, build, x: torch.Tensor) -> None:
    mean = {}
    for scheme in ("auto", "propagate"):
        runs = [layer_stds(initialize(build(), x, scheme, seed), x) for seed in SEEDS]
        mean[scheme] = {name: sum(r[name] for r in runs) / len(runs) for name in runs[0]}
    print(f"\n{title}\n{'layer':<14}{'auto':>8}{'propagate':>11}{'ratio':>8}")
    for name, auto in mean["auto"].items():
        prop = mean["propagate"][name]
        print(f"{name:<14}{auto:>8.3f}{prop:>11.3f}{prop / auto:>8.3f}")


def main() -> None:
    digits = datasets.load("digits", seed=0)
    x = digits.x_train[:512].flatten(1)
    print(f"digits batch: {tuple(x.shape)}, mean {x.mean():.3f}, E[x^2] {x.pow(2).mean():.3f}")
    compare("residual MLP, 16 blocks x + W2 gelu(W1 x): output std per Linear layer",
            lambda: ResidualMLP(x.shape[1], WIDTH, 16, 10, lambda w: nn.Sequential(
                nn.Linear(w, w), nn.GELU(), nn.Linear(w, w))), x)
    compare("residual MLP, 16 blocks x + sigmoid(W x): output std per Linear layer",
            lambda: ResidualMLP(x.shape[1], WIDTH, 16, 10, lambda w: nn.Sequential(
                nn.Linear(w, w), nn.Sigmoid())), x)
    compare("sigmoid MLP (20 hidden layers), output std per Linear layer",
            lambda: mlp(x.shape[1], [WIDTH] * 20, 10, "sigmoid", init=None), x)


if __name__ == "__main__":
    main()
