"""What ``diagnose`` returns: one row per probed call, the verdict, the fixes."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from torch import nn

if TYPE_CHECKING:
    from initlab.plan import InitPlan

NAN = math.nan
_STYLE = {"healthy": "green", "vanishing": "yellow", "exploding": "red", "saturated": "magenta",
          "dead": "red"}


@dataclass
class LayerRow:
    """Statistics of one forward call of one site (see ``initlab.probe.stats.FIELDS``)."""

    index: int
    name: str
    kind: str  # "layer" | "norm" | "activation" | "other"
    module_type: str
    activation: str | None
    call: int
    shape: tuple[int, ...]
    mean: float = NAN
    std: float = NAN
    rms: float = NAN
    p01: float = NAN
    p25: float = NAN
    p50: float = NAN
    p75: float = NAN
    p99: float = NAN
    zero: float = NAN  # fraction of outputs exactly 0
    dead: float = NAN  # fraction of units 0 on the whole batch (ReLU-like activations)
    saturated: float = NAN  # fraction of outputs outside the activation's band
    grad_norm: float = NAN  # |dL/dy| for the output y
    weight_norm: float = NAN
    weight_grad_norm: float = NAN
    grad_to_weight: float = NAN  # |dL/dW| / |W|
    live_ratio: float = NAN  # non-zero fraction / P(phi(z) != 0)
    responsive_ratio: float = NAN  # fraction inside the band / P(lo < phi(z) < hi)
    depth: int | None = None
    forward_gain: float = NAN  # rms(y_l) / rms(y_{l-1}), the input's for l = 1
    backward_gain: float = NAN  # |dL/dy_l| / |dL/dy_{l+1}|
    forward_ratio: float = NAN  # rms(y_l) / rms(input)
    backward_ratio: float = NAN  # |dL/dy_l| / |dL/dy_L|
    verdict: str | None = None  # for layers and activations; None for norms and others
    reason: str = ""

    @property
    def label(self) -> str:
        """The name, with ``#2``, ``#3``, ... for a module's repeated calls."""
        return self.name if self.call == 0 else f"{self.name}#{self.call + 1}"


def _num(value: float, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.0%}" if pct else f"{value:.3g}"


@dataclass
class Report:
    """The result of ``initlab.diagnose``.

    ``verdict`` and ``reason`` judge the model; ``layers`` holds one ``LayerRow`` per
    probed call in execution order; ``fixes`` is an ``InitPlan`` that puts a healthy
    initialization in place with ``fixes.apply(generator)`` (None when healthy), and
    ``fix_notes`` says why. ``unfired`` names probed modules whose hook never fired
    (their forward was not called, e.g. attention's ``out_proj``, whose weight is used
    directly); ``notes`` says what else could not be probed.
    """

    model: nn.Module
    verdict: str
    reason: str
    layers: list[LayerRow]
    fixes: InitPlan | None = None
    fix_notes: list[str] = field(default_factory=list)
    unfired: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    input_rms: float = NAN
    loss: float = NAN
    probe: dict[str, Any] = field(default_factory=dict, repr=False)  # how to probe again

    @property
    def healthy(self) -> bool:
        return self.verdict == "healthy"

    def to_dicts(self) -> list[dict]:
        """The table as plain dicts, one per row (``label`` included)."""
        return [{**asdict(row), "label": row.label} for row in self.layers]

    def to_dataframe(self):
        """The table as a ``pandas.DataFrame`` (needs pandas; ``to_dicts`` does not)."""
        try:
            import pandas as pd
        except ImportError as error:
            raise ImportError("Report.to_dataframe needs pandas (pip install pandas); "
                              "Report.to_dicts() gives the same rows as plain dicts") from error
        return pd.DataFrame(self.to_dicts())

    def check_fix(self, generator: int = 0) -> Report:
        """Apply the fixes to a deep copy of the model and diagnose the copy the same way."""
        from initlab.probe.diagnose import diagnose_fixed

        return diagnose_fixed(self, generator)

    def table(self) -> Table:
        table = Table(title=f"{type(self.model).__name__}: per-layer signal", title_justify="left")
        for column in ("#", "layer", "type", "mean", "std", "p01", "p99", "zero", "dead",
                       "sat", "|dL/dy|", "|dW|/|W|", "fwd x", "bwd x", "verdict"):
            table.add_column(column, justify="left" if column in ("layer", "type", "verdict")
                             else "right", overflow="fold")
        for row in self.layers:
            verdict = row.verdict or ""
            table.add_row(
                str(row.depth or ""), escape(row.label), row.module_type, _num(row.mean),
                _num(row.std), _num(row.p01), _num(row.p99), _num(row.zero, True),
                _num(row.dead, True), _num(row.saturated, True), _num(row.grad_norm),
                _num(row.grad_to_weight), _num(row.forward_gain), _num(row.backward_gain),
                Text(verdict, style=_STYLE.get(verdict, "")),
            )
        return table

    def summary(self) -> Text:
        text = Text.assemble(("verdict: ", "bold"), (self.verdict, f"bold {_STYLE[self.verdict]}"),
                             f"\n{self.reason}")
        for note in self.notes + ([f"hooks that never fired: {', '.join(self.unfired)}"]
                                  if self.unfired else []):
            text.append(f"\nnote: {note}", style="dim")
        return text

    def __rich__(self) -> Group:
        return Group(self.table(), self.summary())

    def __str__(self) -> str:
        console = Console(width=160, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
        console.print(self)
        return console.export_text()
