"""Mean-field phase diagram speed: one vectorized 100 x 100 grid vs solving point by point.

Measured side by side in one process, best of a few repeats (other processes only ever add
time), for each activation:

* **table**: building its Gaussian table from scratch (V, dV/dq, E[phi'^2] and 65 Hermite
  coefficients at 673 lengths q): paid once per activation and process, then cached;
* **grid**: ``initlab.theory.phase_diagram`` on 100 x 100 (sigma_w2, sigma_b2), every point's
  q*, c*, chi_1, chi_c, xi_q, xi_c at once as tensors;
* **pointwise**: ``initlab.theory.mean_field`` called once per point on 200 points of the same
  grid, scaled to 10,000 (the loop a grid without vectorization would run).

Target (issue 5): grid < 1 s on a 2-core CPU. Prints seconds and the pointwise / grid ratio,
for torch's default thread count and for one thread (small tensors gain nothing from
intra-op threads, and on a busy machine those threads can cost more than they give).

    python benchmarks/theory_speed.py [--repeats 3] [--activations tanh relu gelu hardtanh]
"""

from __future__ import annotations

import argparse
import time

import torch

from initlab import theory
from initlab.theory import _table, maps

GRID_W = torch.linspace(0.05, 4.0, 100, dtype=torch.float64)
GRID_B = torch.linspace(0.0, 0.5, 100, dtype=torch.float64)


def best(fn, repeats: int) -> float:
    """The fastest of ``repeats`` runs of ``fn``, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(name: str, repeats: int) -> dict[str, float]:
    def build():  # from scratch: no cached table, no cached quadrature rules
        maps._CACHE.clear()
        _table._rule.cache_clear()
        maps.table(name)

    table = best(build, repeats)
    grid = best(lambda: theory.phase_diagram(name, GRID_W, GRID_B), repeats)
    generator = torch.Generator().manual_seed(0)
    picks = torch.randint(0, 100, (200, 2), generator=generator).tolist()

    def pointwise():
        for i, j in picks:
            theory.mean_field(name, GRID_W[i].item(), GRID_B[j].item())

    point = best(pointwise, max(1, repeats - 1)) * (GRID_W.numel() * GRID_B.numel()) / len(picks)
    return {"table": table, "grid": grid, "pointwise": point}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--activations", nargs="+", default=["tanh", "relu", "gelu", "hardtanh"])
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    print(f"100 x 100 (sigma_w2, sigma_b2) phase diagram; torch {torch.__version__}")
    print(f"{'activation':<10} {'threads':>7} {'table s':>8} {'grid s':>8} "
          f"{'pointwise s':>12} {'pointwise/grid':>15}")
    for threads in sorted({default_threads, 1}, reverse=True):
        torch.set_num_threads(threads)
        for name in args.activations:
            m = measure(name, args.repeats)
            print(f"{name:<10} {threads:>7} {m['table']:>8.3f} {m['grid']:>8.3f} "
                  f"{m['pointwise']:>12.1f} {m['pointwise'] / m['grid']:>15.0f}")
    torch.set_num_threads(default_threads)


if __name__ == "__main__":
    main()
