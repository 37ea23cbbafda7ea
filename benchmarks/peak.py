"""This machine's measured fp32 matmul peak, and a timer, shared by the benchmarks.

The peak is what large square ``torch.mm`` products achieve here, not a datasheet
figure: ``2 n^3`` floating-point operations (one multiply and one add per term of
each of the ``n^2`` dot products of length ``n``) over the best of a few timed runs,
the best over a few sizes (BLAS kernels and caches favour different sizes on different
machines, and a shared machine's noise only ever lowers a figure). Benchmarks report
their own GFLOP/s as a fraction of it.

    python benchmarks/peak.py [--device cpu|cuda] [--size N]

prints the peak and, as its last line, ``{"peak_gflops": ...}``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch

# Square sizes large enough to reach the BLAS kernel's steady state on each device,
# small enough to time in well under a second.
DEFAULT_SIZES = {"cpu": (1024, 2048), "cuda": (4096, 8192)}


def synchronize(device: str | torch.device) -> None:
    """Wait for queued kernels on ``device`` (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(fn: Callable[[], object], device: str | torch.device = "cpu", *,
                 repeats: int = 3, number: int = 1, warmup: int = 1) -> float:
    """The fastest of ``repeats`` timings of ``number`` calls of ``fn``, per call, in seconds.

    The minimum, not the mean: other processes only ever add time, so the fastest
    run is the best estimate of what the code itself costs.
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / number)
    return best


def matmul_peak_gflops(device: str | torch.device = "cpu", size: int | None = None,
                       repeats: int = 5) -> float:
    """Measured fp32 GFLOP/s of ``torch.mm``: the best ``2 n^3 / t`` over square sizes n
    (``size`` alone when given, else :data:`DEFAULT_SIZES` for the device type)."""
    device = torch.device(device)
    sizes = (size,) if size else DEFAULT_SIZES.get(device.type, (4096,))
    return max(_mm_gflops(device, n, repeats) for n in sizes)


def _mm_gflops(device: torch.device, n: int, repeats: int) -> float:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=generator).to(device)
    b = torch.randn(n, n, generator=generator).to(device)
    out = torch.empty(n, n, device=device)
    seconds = best_seconds(lambda: torch.mm(a, b, out=out), device, repeats=repeats)
    return 2 * n**3 / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=None)
    args = parser.parse_args()
    peak = matmul_peak_gflops(args.device, args.size)
    print(f"fp32 matmul peak on {args.device} ({torch.get_num_threads()} threads): "
          f"{peak:.1f} GFLOP/s")
    print(json.dumps({"peak_gflops": round(peak, 2)}))


if __name__ == "__main__":
    main()
