"""Whole-model init speed: initlab's plan + apply vs the model's own construction-time init.

Model: ``initlab.models.big_transformer()``, a ~100M-parameter Transformer encoder (14 layers
of width 768), built once with PyTorch's init.

Measured side by side in one process, interleaved, several repeats (median reported):

* **torch init**: what construction runs to initialize, for every module: its
  ``reset_parameters`` (``_reset_parameters`` for MultiheadAttention), i.e. kaiming-uniform
  weights and uniform biases for Linear/Conv, ones/zeros for LayerNorm, N(0, 1) for
  Embedding. This is "construct from scratch minus allocation", made fair: a plain
  ``nn.TransformerEncoder`` initializes *one* layer and deep-copies it (all its layers start
  identical), so timing construction would credit torch with initializing 1/14th of the
  encoder. Every parameter is filled once on both sides.
* **initlab**: ``initlab.plan(model)`` (fx trace, activations, gains, rows) + ``apply``
  (every draw from one seeded ``torch.Generator``; "auto" draws normals).

Also printed, to locate any gap: the raw cost of filling every parameter with ``normal_``
and with ``uniform_`` (the floor each side's distribution sets), and construction from
scratch. Target: plan + apply <= 1.5 x torch init.

    python benchmarks/init_speed.py [--repeats 5] [--profile] [--device cuda]

With ``--device cuda`` the model lives on the GPU, torch's init draws from the CUDA RNG and
initlab's apply from a CUDA generator; a CPU generator (numbers independent of the device,
drawn on the CPU and copied) is timed too.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from initlab.models import big_transformer
from initlab.plan import plan as make_plan

TARGET = 1.5


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def torch_init(model: nn.Module, seed: int) -> None:
    """Every module's own construction-time init, seeded, leaving the global RNG as it was."""
    device = _device(model)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None) or getattr(
                module, "_reset_parameters", None)
            if reset is not None and any(True for _ in module.parameters(recurse=False)):
                reset()
    _sync(device)


def initlab_init(model: nn.Module, seed: int, generator_device: str | None = None
                 ) -> tuple[float, float]:
    """(seconds to plan, seconds to apply), drawing on ``generator_device`` (model's)."""
    device = _device(model)
    start = time.perf_counter()
    plan = make_plan(model)
    planned = time.perf_counter()
    plan.apply(torch.Generator(device=generator_device or device).manual_seed(seed))
    _sync(device)
    return planned - start, time.perf_counter() - planned


def raw_fill(model: nn.Module, fill: Callable[[torch.Tensor, torch.Generator], None]) -> None:
    generator = torch.Generator(device=_device(model)).manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            fill(p, generator)
    _sync(_device(model))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile one plan + apply")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    args = parser.parse_args()

    construct = timed(lambda: big_transformer(init=None))
    model = big_transformer(init=None).to(args.device)
    cuda = _device(model).type == "cuda"
    n = sum(p.numel() for p in model.parameters())
    print(f"model: initlab.models.big_transformer(), {n:,} parameters on {args.device}, "
          f"{torch.get_num_threads()} torch threads")
    initlab_init(model, 0)  # warm-up: imports, quadrature rules, allocator
    torch_init(model, 0)

    keys = ["torch", "plan", "apply", "normal_", "uniform_"] + ["apply, CPU generator"] * cuda
    rows: dict[str, list[float]] = {k: [] for k in keys}
    for seed in range(args.repeats):
        rows["torch"].append(timed(lambda s=seed: torch_init(model, s)))
        planned, applied = initlab_init(model, seed)
        rows["plan"].append(planned)
        rows["apply"].append(applied)
        if cuda:
            rows["apply, CPU generator"].append(initlab_init(model, seed, "cpu")[1])
        rows["normal_"].append(timed(lambda: raw_fill(model, lambda p, g: p.normal_(
            0, 0.02, generator=g))))
        rows["uniform_"].append(timed(lambda: raw_fill(model, lambda p, g: p.uniform_(
            -0.02, 0.02, generator=g))))
    med = {k: statistics.median(v) for k, v in rows.items()}
    total = med["plan"] + med["apply"]
    ratio = total / med["torch"]

    print(f"median of {args.repeats} interleaved repeats (seconds):")
    print(f"  torch init (every module's reset_parameters) {med['torch']:8.3f}")
    print(f"  initlab plan                                 {med['plan']:8.3f}")
    print(f"  initlab apply                                {med['apply']:8.3f}")
    print(f"  initlab plan + apply                         {total:8.3f}")
    print(f"  raw normal_ over every parameter             {med['normal_']:8.3f}")
    print(f"  raw uniform_ over every parameter            {med['uniform_']:8.3f}")
    if cuda:
        print(f"  initlab apply, CPU generator (device-free)   "
              f"{med['apply, CPU generator']:8.3f}")
    print(f"  construction on the CPU (once, for scale)    {construct:8.3f}")
    print(f"ratio (plan + apply) / torch init = {ratio:.2f}x "
          f"(target <= {TARGET}x: {'met' if ratio <= TARGET else 'NOT met'})")
    print(f"ratio apply / raw normal_ = {med['apply'] / med['normal_']:.2f}x; "
          f"torch init / raw uniform_ = {med['torch'] / med['uniform_']:.2f}x")

    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(initlab_init, model, 0)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
        print(text.getvalue())


if __name__ == "__main__":
    main()
