"""Per-config summaries of sweep results: seeds averaged, runs ranked, problems flagged.

A run is *diverged* when the engine stopped it (loss NaN/Inf or exploding); it is
*stalled* when its final training loss is still above ``STALL_FRACTION`` of its first
logged loss (it learned next to nothing).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass

STALL_FRACTION = 0.95


@dataclass(frozen=True)
class Summary:
    """One configuration (all seeds together)."""

    init: str
    activation: str
    depth: int
    width: int
    lr: float
    optimizer: str
    runs: int
    test_accuracy: float  # mean over seeds of the last evaluation
    test_accuracy_std: float
    final_loss: float  # mean over the seeds that did not diverge (NaN if all did)
    steps_to_target: float | None  # mean over the seeds that reached it
    diverged: int
    stalled: int
    failed: int

    COLUMNS = ("init", "activation", "depth x width", "lr / optimizer", "test acc",
               "final loss", "steps to target", "flags")

    def cells(self) -> tuple[str, ...]:
        """The row as shown in the terminal table and the HTML page (see COLUMNS)."""
        spread = f" ± {self.test_accuracy_std:.3f}" if self.runs > 1 else ""
        return (self.init, self.activation, f"{self.depth} x {self.width}",
                f"{self.lr:g} / {self.optimizer}", f"{self.test_accuracy:.3f}{spread}",
                "-" if math.isnan(self.final_loss) else f"{self.final_loss:.3f}",
                "-" if self.steps_to_target is None else f"{self.steps_to_target:.0f}",
                self.flags)

    @property
    def flags(self) -> str:
        parts = [f"{n} {word}" for n, word in ((self.diverged, "diverged"),
                                                (self.stalled, "stalled"),
                                                (self.failed, "failed")) if n]
        return ", ".join(parts)


def final_accuracy(result) -> float:
    """The last evaluation's test accuracy (0 for a run that never evaluated)."""
    return result.evals[-1]["test_acc"] if result.evals else 0.0


def is_stalled(result) -> bool:
    """True when the final training loss is above STALL_FRACTION x the first."""
    if result.status != "finished" or len(result.losses) < 2:
        return False
    return result.losses[-1][1] > STALL_FRACTION * result.losses[0][1]


def _config_key(result) -> tuple:
    c = result.config
    return (c.init, c.activation, c.depth, c.width, c.lr, c.optimizer)


def summarize(results) -> list[Summary]:
    """One Summary per configuration, best mean test accuracy first."""
    by_config = defaultdict(list)
    for result in results:
        by_config[_config_key(result)].append(result)
    rows = []
    for (init, act, depth, width, lr, opt), runs in by_config.items():
        accuracies = [final_accuracy(r) for r in runs]
        reached = [r.steps_to_target for r in runs if r.steps_to_target is not None]
        losses = [r.losses[-1][1] for r in runs if r.losses and r.status != "diverged"]
        rows.append(Summary(
            init, act, depth, width, lr, opt, len(runs), statistics.fmean(accuracies),
            statistics.pstdev(accuracies), statistics.fmean(losses) if losses else float("nan"),
            statistics.fmean(reached) if reached else None,
            sum(r.status == "diverged" for r in runs), sum(is_stalled(r) for r in runs),
            sum(r.status == "failed" for r in runs),
        ))
    return sorted(rows, key=lambda s: -s.test_accuracy)
