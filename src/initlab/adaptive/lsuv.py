r"""Layer-sequential unit-variance init (Mishkin & Matas 2016, "All you need is a good init").

LSUV makes the scale of every layer a measured fact rather than a derived one:

1. pre-initialize every weight layer with an orthonormal matrix (Saxe et al. 2014), biases 0;
2. walk the layers in the order the forward pass *executes* them (not the order they were
   registered in) and, for each, repeat

   .. math::
       W \leftarrow W \cdot \frac{\sigma_\text{target}}{\operatorname{std}(W x + b)}

   on one batch until :math:`|\operatorname{std}(Wx + b) - \sigma_\text{target}| \le
   \text{tol}` or ``max_iters`` rescalings were made. The std is taken over every entry of
   the layer's output (batch, units and positions), as Mishkin & Matas do.

Both happen in one forward pass: a forward hook on each layer calibrates it on the input it
receives, recomputing only that layer after each rescaling, then hands the recomputed output
on, so every later layer receives exactly what a fresh forward pass with the calibrated
earlier layers would give it. The paper's loop (one forward pass per iteration) computes the
same thing at L times the cost. A layer called twice (shared weights) is calibrated on its
first call. When LSUV ends, every layer's output std on the batch is within ``tol``; with zero
biases one rescaling is exact up to rounding, non-zero biases (``orthogonal_first=False``)
make the map from scale to std non-linear, hence the iteration.

Layers: every ``Linear``, ``Bilinear``, ``ConvNd`` and ``ConvTransposeNd``, and the output
projection of each ``MultiheadAttention`` (measured on the attention's output: torch calls
``out_proj`` functionally, so the attention module itself is hooked and re-run).

Measurement mode: the model runs in training mode, so normalization layers use batch
statistics as they will in training (and torch's fused transformer fast path, which would skip
the inner layers' hooks, is not taken), except dropout modules and attention (its dropout),
which run in eval mode so the measurement is deterministic. The forward pass runs under a
forked, seeded random state (the caller's global RNG is untouched); afterwards every module's
train/eval flag and every buffer (batch-norm running statistics) is restored.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from torch import Tensor, nn

from initlab import init as schemes
from initlab._state import preserved
from initlab.graph import is_weight_layer

Status = Literal["converged", "not converged", "skipped: zero variance"]
_CONVS = nn.modules.conv._ConvNd
_DETERMINISTIC = (nn.modules.dropout._DropoutNd, nn.MultiheadAttention)


@dataclass(frozen=True)
class LSUVRow:
    """What LSUV did to one layer."""

    name: str  # the layer whose weight was scaled ("attn.out_proj" for attention)
    module_type: str
    iterations: int  # rescalings made
    initial_std: float  # output std before the first rescaling
    final_std: float  # output std on the batch when LSUV left the layer
    status: Status


@dataclass(frozen=True)
class LSUVResult:
    """The layers LSUV calibrated, in execution order; prints as a table."""

    rows: list[LSUVRow]
    target_std: float
    tol: float

    @property
    def converged(self) -> bool:
        """Whether every layer that was not skipped ended within ``tol`` of the target."""
        return all(row.status != "not converged" for row in self.rows)

    def to_dicts(self) -> list[dict]:
        return [vars(row).copy() for row in self.rows]

    def __rich__(self) -> Table:
        table = Table(title=f"LSUV: output std {self.target_std:g} +- {self.tol:g}")
        for column in ("layer", "module", "iterations", "initial std", "final std", "status"):
            table.add_column(column, justify="right" if "std" in column or column ==
                             "iterations" else "left")
        for r in self.rows:
            table.add_row(escape(r.name), r.module_type, str(r.iterations),
                          f"{r.initial_std:.4g}", f"{r.final_std:.4g}", r.status)
        return table

    def __str__(self) -> str:
        out = io.StringIO()
        Console(file=out, width=120).print(self)
        return out.getvalue()


@dataclass(frozen=True)
class _Target:
    name: str
    hooked: nn.Module  # the module whose output is measured
    layer: nn.Module  # the module holding the weight that is scaled


def _targets(model: nn.Module) -> list[_Target]:
    attention_outputs = {id(m.out_proj) for m in model.modules()
                         if isinstance(m, nn.MultiheadAttention)}
    targets = []
    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            targets.append(_Target(f"{name}.out_proj".lstrip("."), module, module.out_proj))
        elif is_weight_layer(module) and id(module) not in attention_outputs:
            targets.append(_Target(name, module, module))
    return targets


def _first_batch(data) -> Tensor:
    """The input tensor of ``data``: a tensor, an (x, y) batch, or a DataLoader's first batch."""
    if isinstance(data, Tensor):
        return data
    if isinstance(data, (tuple, list)):
        if not data or not isinstance(data[0], Tensor):
            raise TypeError(f"an LSUV batch given as a {type(data).__name__} must start with the "
                            f"input tensor, e.g. (x, y); got {data!r:.80}")
        return data[0]
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes, dict)):
        batch = next(iter(data), None)
        if batch is None:
            raise ValueError(f"LSUV needs one batch of data, but the {type(data).__name__} "
                             "yielded nothing (is its dataset empty, or drop_last=True with fewer "
                             "examples than batch_size?)")
        return _first_batch(batch if isinstance(batch, (Tensor, tuple, list)) else [batch])
    raise TypeError("LSUV data must be a tensor, an (x, y) batch or a DataLoader; got "
                    f"{type(data).__name__}")


def _orthogonalize(targets: list[_Target], generator: torch.Generator) -> None:
    """Orthonormal weights (per packed block and conv group), zero biases (Mishkin & Matas)."""
    orthogonal = schemes.get("orthogonal", gain=1.0)
    for module in dict.fromkeys(m for t in targets for m in (t.hooked, t.layer)):
        for name, param in module.named_parameters(recurse=False):
            if name.endswith("bias"):
                param.zero_()
            elif "weight" in name and param.dim() >= 2:
                for block in schemes.param_blocks(module, name):
                    part = block.of(param)  # drawn where the generator lives: same numbers
                    staged = torch.empty(part.shape, dtype=part.dtype, device=generator.device)
                    part.copy_(orthogonal(staged, generator=generator, groups=block.groups))


def _first(output) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


def _weight_term(target: _Target, output: Tensor) -> Tensor:
    """``output - bias``: the part of the output the weights scale."""
    bias = getattr(target.layer, "bias", None)
    if bias is None:
        return output
    shape = [1] * output.dim()
    channel = output.dim() - len(target.layer.kernel_size) - 1 \
        if isinstance(target.layer, _CONVS) else -1
    shape[channel] = -1
    return output - bias.view(shape)


def _std(t: Tensor) -> float:
    return float(t.detach().double().std(correction=0)) if t.numel() else 0.0


@dataclass
class _Calibration:
    """Forward hooks that calibrate each layer on the input it receives, in execution order."""

    target_std: float
    tol: float
    max_iters: int
    rows: list[LSUVRow] = field(default_factory=list)

    def hook(self, target: _Target):
        def calibrate(module: nn.Module, args, kwargs, output):
            if any(row.name == target.name for row in self.rows):  # a shared layer's 2nd call
                return None
            row, output = self.layer(target, lambda: module.forward(*args, **kwargs), output)
            self.rows.append(row)
            return output  # what the layers downstream see: computed with the new scale
        return calibrate

    def layer(self, target: _Target, recompute, output) -> tuple[LSUVRow, object]:
        kind = type(target.layer).__name__
        iterations, std = 0, _std(_first(output))
        initial = std
        while True:
            if not math.isfinite(std):
                raise ValueError(f"LSUV: the output of layer {target.name!r} is not finite (std "
                                 f"{std}); the batch or an earlier layer overflows")
            if std == 0.0 or _std(_weight_term(target, _first(output))) == 0.0:
                warnings.warn(f"LSUV: layer {target.name!r} ({kind}) has zero output variance on "
                              "this batch (its input carries no signal); skipped, its weights are "
                              "left as they are", stacklevel=2)
                return LSUVRow(target.name, kind, iterations, initial, std,
                               "skipped: zero variance"), output
            if abs(std - self.target_std) <= self.tol or iterations == self.max_iters:
                break
            target.layer.weight.mul_(self.target_std / std)
            iterations += 1
            output = recompute()
            std = _std(_first(output))
        status: Status = "converged" if abs(std - self.target_std) <= self.tol else \
            "not converged"
        if status == "not converged":
            warnings.warn(f"LSUV: layer {target.name!r} has output std {std:.4g} after "
                          f"{iterations} rescalings (target {self.target_std:g} +- {self.tol:g})",
                          stacklevel=2)
        return LSUVRow(target.name, kind, iterations, initial, std, status), output

    def run(self, model: nn.Module, x: Tensor, targets: list[_Target], seed: int) -> None:
        handles = [t.hooked.register_forward_hook(self.hook(t), with_kwargs=True)
                   for t in targets]
        devices = [x.device] if x.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                model(x)
        finally:
            for handle in handles:
                handle.remove()
        missed = [t.name for t in targets if all(r.name != t.name for r in self.rows)]
        if missed:
            warnings.warn(f"LSUV: these layers did not run on the batch and are left as they "
                          f"are: {', '.join(missed)}", stacklevel=3)


def _check(target_std: float, tol: float, max_iters: int) -> None:
    for name, value in (("target_std", target_std), ("tol", tol)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not (math.isfinite(value) and value > 0):
            raise ValueError(f"LSUV {name} must be a positive finite number, got {value!r}")
    if isinstance(max_iters, bool) or not isinstance(max_iters, int) or max_iters < 1:
        raise ValueError(f"LSUV max_iters must be an int >= 1, got {max_iters!r}")


def lsuv(
    model: nn.Module,
    data,
    target_std: float = 1.0,
    tol: float = 0.05,
    max_iters: int = 10,
    orthogonal_first: bool = True,
    generator: torch.Generator | int = 0,
) -> LSUVResult:
    """Layer-sequential unit-variance init of ``model`` on one batch, in place.

    Args:
        model: any ``nn.Module`` whose forward takes one tensor.
        data: a tensor, an ``(x, y)`` batch, or a DataLoader (its first batch is used).
        target_std: the output std every layer is scaled to (Mishkin & Matas: 1).
        tol: absolute tolerance on the std: a layer is done when
            ``|std - target_std| <= tol``.
        max_iters: at most this many rescalings per layer.
        orthogonal_first: pre-initialize the weights orthonormally and the biases to 0;
            ``False`` rescales the weights as they are.
        generator: the ``torch.Generator`` (or seed) of the orthonormal draws.

    Returns:
        An :class:`LSUVResult` (layers in execution order, rescalings, initial and final std).

    Raises:
        ValueError: an empty DataLoader, bad ``target_std``/``tol``/``max_iters``, or a layer
            whose output is not finite. A layer with zero output variance is skipped with a
            warning naming it.

    Example:
        >>> from initlab.models import mlp
        >>> model = mlp(64, [128] * 10, 10, "relu")
        >>> result = lsuv(model, torch.randn(256, 64))
        >>> result.converged
        True
    """
    _check(target_std, tol, max_iters)
    x = _first_batch(data)
    if x.numel() == 0:
        raise ValueError(f"LSUV needs a non-empty batch; got an input of shape {tuple(x.shape)}")
    if isinstance(generator, int):
        generator = torch.Generator().manual_seed(generator)
    parameter = next(model.parameters(), None)
    x = x.to(parameter.device) if parameter is not None else x
    targets = _targets(model)
    with preserved(model), torch.no_grad():
        if orthogonal_first:
            _orthogonalize(targets, generator)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        model.train()
        for module in model.modules():
            if isinstance(module, _DETERMINISTIC):
                module.eval()
        calibration = _Calibration(float(target_std), float(tol), max_iters)
        calibration.run(model, x, targets, seed)
    return LSUVResult(calibration.rows, float(target_std), float(tol))
