"""What probing costs: ``diagnose`` vs a plain forward + backward, and a training loop under
``initlab.monitor(every=50)`` vs the same loop unmonitored, side by side in one process.

Model: ``initlab.models.resnet18`` (11.2M parameters, CIFAR stem) on random 3 x S x S
images. Targets: diagnose <= 1.5x one forward + backward; the monitor <= 5% overhead.

    python benchmarks/doctor_overhead.py                      # CPU, small batch
    python benchmarks/doctor_overhead.py --device cuda --batch 128 --steps 300

Timings are medians (diagnose) or minima (training loops) over ``--repeats`` runs after
a warm-up; CUDA work is synchronized before each clock read.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from initlab.models import resnet18
from initlab.probe import diagnose
from initlab.probe.monitor import monitor


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clock(fn, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def plain_step(model, x, y) -> None:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()


def train(model, batches, monitored: bool, every: int) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def loop():
        for x, y in batches:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()

    if monitored:
        with monitor(model, every=every):
            loop()
    else:
        loop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--image", type=int, default=32)
    parser.add_argument("--steps", type=int, default=100, help="training steps per loop")
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    model = resnet18(10, 3, image_size=args.image).to(device)
    x = torch.randn(args.batch, 3, args.image, args.image, generator=generator).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=generator).to(device)
    params = sum(p.numel() for p in model.parameters())
    print(f"resnet18: {params / 1e6:.1f}M parameters, batch {args.batch}x3x{args.image}x"
          f"{args.image}, device {device}, torch threads {torch.get_num_threads()}")

    plain_step(model, x, y)
    diagnose(model, x, y)  # warm-up: allocator, kernels, activation facts
    plain, probed = [], []
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both
        plain.append(_clock(lambda: plain_step(model, x, y), device))
        probed.append(_clock(lambda: diagnose(model, x, y), device))
    p, d = statistics.median(plain), statistics.median(probed)
    print(f"forward+backward {p * 1e3:9.1f} ms   diagnose {d * 1e3:9.1f} ms   "
          f"ratio {d / p:.2f}x (target <= 1.5x)")

    batches = [(torch.randn(args.batch, 3, args.image, args.image, generator=generator)
                .to(device), torch.randint(0, 10, (args.batch,), generator=generator).to(device))
               for _ in range(min(args.steps, 20))]
    batches = [batches[i % len(batches)] for i in range(args.steps)]
    start = copy.deepcopy(model.state_dict())
    train(model, batches[:2], monitored=True, every=1)  # warm-up both paths
    bare, watched = [], []
    for _ in range(args.repeats):
        model.load_state_dict(start)
        bare.append(_clock(lambda: train(model, batches, False, args.every), device))
        model.load_state_dict(start)
        watched.append(_clock(lambda: train(model, batches, True, args.every), device))
    b, w = min(bare), min(watched)
    print(f"{args.steps} training steps: unmonitored {b:8.2f} s   monitor(every={args.every}) "
          f"{w:8.2f} s   overhead {100 * (w / b - 1):+.1f}% (target <= 5%)")


if __name__ == "__main__":
    main()
