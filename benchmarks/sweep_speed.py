"""The vectorized sweep engine against the reference loop, on the same configs and steps.

Two grids, each 6 inits x 6 activations = 36 configs (the article's: zeros, uniform,
normal, Xavier, He, PyTorch's default x identity, sigmoid, tanh, ReLU, Leaky ReLU, ELU):

* ``article``: the article's MLP 784-256-10, batch 128;
* ``deep``: a deep-narrow MLP, 20 hidden layers of 64 units, batch 128.

Each grid is trained twice in this one process, by ``train_group`` (one vectorized
group) and by ``train_reference`` (one model at a time): training, the evaluations at
step 0 and at the end, the layer probes. The models are built once beforehand (through
``initlab.plan``, the same work for both engines, timed separately and reported as the
end-to-end speedup with it added to both sides), so both engines start from the same
weights.
The two engines run alternately ``--repeats`` times (default 2) and the fastest time of
each is kept: other processes on a shared machine only ever add time. The speedup is
the ratio of the two wall-clock times. GFLOP/s counts the matmul FLOPs the
vectorized engine performs (every model, every step): per model and per training step,
with layer widths n_0..n_L and batch B,

    forward 2B sum_i n_i n_(i+1)  +  weight gradients 2B sum_i n_i n_(i+1)
    +  input gradients 2B sum_(i>=1) n_i n_(i+1)   (none for the data),

plus 2 n_i n_(i+1) per example evaluated and two probes (a training step each), over the
vectorized time, against this machine's measured fp32 matmul peak (``peak.py``; measured
before and after, the higher one kept, so the fraction is not flattered by a slow start).
The same count over the reference loop's time is its GFLOP/s, and ``peak / reference
GFLOP/s`` is the *ceiling*: the speedup an engine doing the same matmuls would reach at
100% of the peak. Where the reference loop already runs its matmuls at a third of the
peak, no engine that does the same arithmetic can be 3x faster.

Data: Fashion-MNIST when Debian's package is installed, else a same-shaped stand-in
(Gaussian 1x28x28 inputs, labels of a fixed random linear teacher). The splits are cut
(TRAIN_SIZE training examples, EVAL_SIZE validation and test examples) so that the two
evaluations of every run do not swamp a short benchmark: the training steps are what the
engines differ in, and the minibatches cost the same whatever the set they come from.

    python benchmarks/sweep_speed.py [--quick] [--device cpu|cuda] [--grids article,deep]
                                     [--repeats N]

The last line printed is one JSON object: ``speedup``, ``gflops`` and ``peak_gflops``
(the article grid), ``deep_speedup``, ``deep_gflops``, the end-to-end speedups
(``*_e2e``), the ceilings (``ceiling``, ``deep_ceiling``) and the settings.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from initlab import data  # noqa: E402
from initlab.data.sources import fashion_mnist_installed  # noqa: E402
from initlab.sweep.engine import (  # noqa: E402
    build_model,
    eval_steps,
    train_group,
    train_reference,
)
from initlab.sweep.spec import RunConfig  # noqa: E402
from peak import matmul_peak_gflops, synchronize  # noqa: E402

INITS = ["zeros", "uniform", "normal", "xavier_uniform", "he_uniform", "torch_default"]
ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu"]
GRIDS = {"article": dict(depth=1, width=256), "deep": dict(depth=20, width=64)}
STEPS = {False: {"article": 200, "deep": 200}, True: {"article": 15, "deep": 15}}
TRAIN_SIZE = 512
EVAL_SIZE = 256


def bench_data() -> data.Dataset:
    """Fashion-MNIST (cut to TRAIN_SIZE / EVAL_SIZE), or a same-shaped seeded stand-in."""
    if fashion_mnist_installed():
        full = data.load("fashion-mnist", seed=0, limit=TRAIN_SIZE)
        return data.Dataset("fashion-mnist", full.x_train, full.y_train,
                            full.x_val[:EVAL_SIZE], full.y_val[:EVAL_SIZE],
                            full.x_test[:EVAL_SIZE], full.y_test[:EVAL_SIZE], 10, (1, 28, 28),
                            full.source)
    gen = torch.Generator().manual_seed(0)
    teacher = torch.randn(784, 10, generator=gen)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, 1, 28, 28, generator=gen)
        return x, (x.reshape(n, -1) @ teacher).argmax(1)

    (xt, yt), (xv, yv), (xs, ys) = split(TRAIN_SIZE), split(EVAL_SIZE), split(EVAL_SIZE)
    return data.Dataset("stand-in", xt, yt, xv, yv, xs, ys, 10, (1, 28, 28),
                        "Gaussian inputs, random linear teacher")


def configs(grid: str, steps: int, dataset: str) -> list[RunConfig]:
    return [RunConfig(dataset=dataset, init=i, activation=a, lr=0.01, steps=steps,
                      batch_size=128, eval_every=steps, log_every=10, **GRIDS[grid])
            for a in ACTIVATIONS for i in INITS]


def matmul_flops(config: RunConfig, d: data.Dataset) -> float:
    """Matmul FLOPs of one model's run, as the module docstring counts them."""
    widths = [d.in_features, *[config.width] * config.depth, d.num_classes]
    products = [a * b for a, b in zip(widths[:-1], widths[1:], strict=True)]
    step = 2 * config.batch_size * (3 * sum(products) - products[0])
    examples = min(2048, len(d.y_train)) + len(d.y_val) + len(d.y_test)
    evals = len(eval_steps(config)) * examples * 2 * sum(products)
    return (config.steps + 2) * step + evals


def timed(fn, device: str) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


class Prebuilt:
    """Every config's model built once (timed). The vectorized engine only reads the
    modules it is given (it copies their weights into its stacks), so it gets the
    originals every time; the reference loop trains in place and takes a fresh copy."""

    def __init__(self, runs: list[RunConfig], d: data.Dataset, copies: int):
        start = time.perf_counter()
        self.built = {c.key(): build_model(c, d) for c in runs}
        self.seconds = time.perf_counter() - start
        self.copies = {key: [copy.deepcopy(model) for _ in range(copies)]
                       for key, model in self.built.items()}

    def original(self, config: RunConfig, d: data.Dataset) -> torch.nn.Module:
        return self.built[config.key()]

    def copy(self, config: RunConfig, d: data.Dataset) -> torch.nn.Module:
        return self.copies[config.key()].pop()


def compare(grid: str, steps: int, d: data.Dataset, device: str, repeats: int) -> dict:
    """Time both engines on one grid, alternating, the fastest of ``repeats`` each (other
    processes only ever add time); the vectorized engine's GFLOP/s."""
    runs = configs(grid, steps, d.name)
    built = Prebuilt(runs, d, repeats)
    vec_results: list = []
    t_vec = t_ref = float("inf")
    for _ in range(repeats):
        vec_results.clear()
        t_vec = min(t_vec, timed(lambda: vec_results.extend(
            train_group(runs, d, device=device, builder=built.original)), device))
        t_ref = min(t_ref, timed(lambda: [train_reference(c, d, device=device,
                                                          builder=built.copy)
                                          for c in runs], device))
    assert {r.engine for r in vec_results} == {"vectorized"}, "the grid did not vectorize"
    flops = sum(matmul_flops(c, d) for c in runs)
    diverged = sum(r.status == "diverged" for r in vec_results)
    return {"grid": grid, "configs": len(runs), "steps": steps, "vectorized_s": t_vec,
            "reference_s": t_ref, "build_s": built.seconds, "speedup": t_ref / t_vec,
            "e2e": (t_ref + built.seconds) / (t_vec + built.seconds),
            "gflops": flops / t_vec / 1e9, "reference_gflops": flops / t_ref / 1e9,
            "diverged": diverged}


def warm_up(d: data.Dataset, device: str) -> None:
    """First calls pay one-off costs (imports, allocator, kernels): pay them untimed."""
    tiny = [RunConfig(dataset=d.name, init="he_uniform", activation=a, depth=1, width=8,
                      lr=0.01, steps=2, eval_every=2) for a in ("relu", "tanh")]
    train_group(tiny, d, device=device)
    train_reference(tiny[0], d, device=device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps: under 40 s on a CPU")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--grids", default="article,deep")
    parser.add_argument("--repeats", type=int, default=2, help="timings per engine (fastest kept)")
    args = parser.parse_args()
    grids = [g.strip() for g in args.grids.split(",") if g.strip()]
    d = bench_data()
    print(f"data: {d.describe()}; device {args.device}, {torch.get_num_threads()} threads")
    peak = matmul_peak_gflops(args.device)
    warm_up(d, args.device)
    rows = [compare(g, STEPS[args.quick][g], d, args.device, args.repeats) for g in grids]
    peak = max(peak, matmul_peak_gflops(args.device))
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s")
    for r in rows:
        print(f"{r['grid']:>8}: {r['configs']} configs x {r['steps']} steps  "
              f"vectorized {r['vectorized_s']:.2f} s  reference {r['reference_s']:.2f} s  "
              f"speedup {r['speedup']:.2f}x  {r['gflops']:.1f} GFLOP/s "
              f"({100 * r['gflops'] / peak:.0f}% of peak)  diverged {r['diverged']}; "
              f"building the models {r['build_s']:.2f} s, end to end {r['e2e']:.2f}x")
        print(f"{'':>10}reference loop {r['reference_gflops']:.1f} GFLOP/s: ceiling "
              f"{peak / r['reference_gflops']:.2f}x at 100% of peak")
    by = {r["grid"]: r for r in rows}
    summary = {"device": args.device, "quick": args.quick, "repeats": args.repeats,
               "peak_gflops": round(peak, 2)}
    if "article" in by:
        summary |= {"speedup": round(by["article"]["speedup"], 3),
                    "gflops": round(by["article"]["gflops"], 2),
                    "speedup_e2e": round(by["article"]["e2e"], 3),
                    "ceiling": round(peak / by["article"]["reference_gflops"], 3)}
    if "deep" in by:
        summary |= {"deep_speedup": round(by["deep"]["speedup"], 3),
                    "deep_gflops": round(by["deep"]["gflops"], 2),
                    "deep_speedup_e2e": round(by["deep"]["e2e"], 3),
                    "deep_ceiling": round(peak / by["deep"]["reference_gflops"], 3)}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
