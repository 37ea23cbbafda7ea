"""``diagnose(model, inputs)``: one forward and one backward pass at the current
weights, statistics per layer, verdicts, and a fix.

The probe leaves the model as it found it: hooks are removed (exceptions included),
each module's train/eval flag and every buffer (BatchNorm running statistics) are
restored, ``.grad`` is never touched (gradients come from ``torch.autograd.grad``),
the global random state is forked (dropout draws from ``seed``), and the
MultiheadAttention fast path is switched off while probing and restored after. The
forward itself is the model's own call with hooks that only read: its output is
bit-identical to a call without the probe.

Without ``targets`` the loss is a fixed random projection of the output,
L = sum(y * R) / batch with R ~ N(0, 1) drawn from ``seed``, so that every layer
gets a gradient whose size does not depend on the labels. With targets the loss is
``loss_fn(output, targets)``, by default cross-entropy for integer targets and mean
squared error for float ones.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initlab._state import preserved as modes_and_buffers_kept
from initlab.probe.fixes import propose
from initlab.probe.hooks import Hook, Hooks, mha_fastpath
from initlab.probe.recorder import Event, Recorder, first_tensor
from initlab.probe.report import LayerRow, Report
from initlab.probe.rows import event_columns, rms, to_rows
from initlab.probe.sites import find_sites
from initlab.probe.stats import SAMPLE, norm
from initlab.probe.verdict import judge, silent_layers

Inputs = Tensor | tuple | list


@contextmanager
def preserved(model: nn.Module, train: bool | None, seed: int) -> Iterator[None]:
    """Run with ``model.train(train)`` and the global RNG seeded with ``seed``; restore every
    module's mode, every buffer and the RNG afterwards."""
    devices = sorted({t.device.index or 0 for t in [*model.parameters(), *model.buffers()]
                      if t.device.type == "cuda"})
    with modes_and_buffers_kept(model), torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        for index in devices:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        if train is not None:
            model.train(train)
        yield


def _shape(t) -> str:
    return "(" + ", ".join(map(str, t)) + ")" if isinstance(t, tuple) else str(t)


def _expects(module: nn.Module) -> tuple[str, Callable[[tuple], bool]] | None:
    """The input a module accepts, in words, and a test of a shape against it."""
    if isinstance(module, nn.Linear):
        return f"(*, {module.in_features})", lambda s: len(s) >= 1 and s[-1] == module.in_features
    if isinstance(module, nn.modules.conv._ConvNd):
        n, c = len(module.kernel_size), module.in_channels
        return f"(N, {c}, {', '.join(['*'] * n)})", \
            lambda s: len(s) in (n + 1, n + 2) and s[-n - 1] == c
    if isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
        size = module.input_size
        text = "(N, {})" if isinstance(module, nn.RNNCellBase) else \
            "(N, L, {})" if module.batch_first else "(L, N, {})"
        return text.format(size), lambda s: len(s) >= 1 and s[-1] == size
    if isinstance(module, nn.LayerNorm):
        shape = tuple(module.normalized_shape)
        return f"(*, {', '.join(map(str, shape))})", lambda s: tuple(s[-len(shape):]) == shape
    if isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm)):
        c = getattr(module, "num_features", None) or module.num_channels
        return f"(N, {c}, ...)", lambda s: len(s) >= 2 and s[1] == c
    if isinstance(module, nn.MultiheadAttention):
        d = module.embed_dim
        return f"({'N, L' if module.batch_first else 'L, N'}, {d})", lambda s: s[-1:] == (d,)
    if isinstance(module, nn.Embedding):
        return f"integer indices in [0, {module.num_embeddings})", lambda s: True
    return None


class _Locator(Hooks):
    """Pre- and post-forward hooks on every module: which one was running when it failed."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.stack = model, []
        for name, module in model.named_modules():
            self.add(Hook(module, lambda m, i, _, n=name: self.stack.append((n, m, i)), pre=True))
            self.add(Hook(module, lambda *_: self.stack.pop()))

    def error(self, error: Exception, given: tuple) -> ValueError:
        line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        model = type(self.model).__name__
        if not self.stack:
            return ValueError(f"{model} failed on an input of shape {_shape(given)}: {line}")
        name, module, inputs = self.stack[-1]
        where = f"'{name}' ({type(module).__name__})" if name else "its forward"
        expects = _expects(module)
        first = first_tensor(inputs)
        at = tuple(first.shape) if first is not None else None
        if expects is not None and at is not None and not expects[1](at):
            return ValueError(f"input of shape {_shape(given)} does not fit {model}: layer {where} "
                              f"expects inputs of shape {expects[0]}, got {_shape(at)}")
        hint = f", which expects {expects[0]}," if expects else ""
        return ValueError(f"{model} failed in {where}{hint} on an input of shape "
                          f"{_shape(given)}: {line}")


def _as_args(inputs: Inputs) -> tuple:
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    if not args or not all(isinstance(a, Tensor) for a in args):
        kinds = ", ".join(type(a).__name__ for a in args) or "nothing"
        raise TypeError(f"inputs must be a tensor or a tuple of tensors, got {kinds}")
    return args


def _check(model: nn.Module, args: tuple) -> None:
    params = list(model.parameters())
    if not params:
        raise ValueError(f"{type(model).__name__} has no parameters: there are no weights whose "
                         "initialization could be diagnosed")
    devices = {a.device for a in args} | {params[0].device}
    if len(devices) > 1:
        raise ValueError(f"inputs are on {', '.join(str(a.device) for a in args)} but "
                         f"{type(model).__name__}'s parameters are on {params[0].device}; "
                         "move one of them")


def _loss(out, targets: Tensor | None, loss_fn, seed: int) -> Tensor:
    y = first_tensor(out)
    if y is None:
        raise ValueError(f"the model's output ({type(out).__name__}) holds no tensor to take a "
                         "loss of")
    if loss_fn is not None:
        return loss_fn(out) if targets is None else loss_fn(out, targets)
    if targets is None:
        generator = torch.Generator(device=y.device).manual_seed(seed)
        r = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
        return (y * r).sum() / (y.shape[0] if y.ndim else 1)
    try:
        if targets.is_floating_point():
            return F.mse_loss(y, targets)
        return F.cross_entropy(y, targets)
    except (RuntimeError, ValueError, IndexError) as error:
        raise ValueError(f"targets of shape {_shape(tuple(targets.shape))} do not fit the output "
                         f"of shape {_shape(tuple(y.shape))}: {error}") from error


def _run(model, args, targets, loss_fn, seed, sample):
    """Forward and backward with the recorder on; events, gradients and the loss."""
    sites, notes = find_sites(model)
    probe_args = tuple(a.detach().requires_grad_() if a.is_floating_point() else a for a in args)
    with torch.enable_grad(), mha_fastpath(False), Recorder(sites, sample=sample) as recorder:
        with _Locator(model) as locator:
            try:
                out = model(*probe_args)
            except (RuntimeError, ValueError, IndexError) as error:
                raise locator.error(error, tuple(args[0].shape)) from error
        loss = _loss(out, targets, loss_fn, seed)
        if loss.ndim:
            raise ValueError(f"the loss must be a scalar, got shape {_shape(tuple(loss.shape))}")
        leaves = [p for p in model.parameters() if p.requires_grad] + \
            [a for a in probe_args if a.requires_grad]
        grads = {}
        if loss.requires_grad and leaves:
            found = torch.autograd.grad(loss, leaves, allow_unused=True)
            grads = {id(p): g for p, g in zip(leaves, found, strict=True) if g is not None}
        else:
            notes.append("the loss does not depend on any parameter: no backward statistics")
        fired = recorder.fired()
    unfired = [f"{s.name} ({s.module_type})" for s in sites if fired.get(s.module, 0) == 0]
    return recorder.take(), grads, float(loss.detach()), notes, unfired


def _collect(events: list[Event], grads: dict, args: tuple) -> tuple[list[LayerRow], float]:
    """Rows from the events, with one device-to-host copy of every number."""
    x = next((a for a in args if a.is_floating_point()), None)
    input_rms = float(rms(x)) if x is not None else math.nan
    if not events:
        return [], input_rms
    grad_norms = {key: norm([g]) for key, g in grads.items()}
    return to_rows(events, event_columns(events, grad_norms).cpu().tolist()), input_rms


def diagnose(model: nn.Module, inputs: Inputs, targets: Tensor | None = None,
             loss_fn: Callable | None = None, *, train: bool | None = True, seed: int = 0,
             sample: int = SAMPLE) -> Report:
    """Diagnose ``model``'s initialization on one batch; see ``initlab.probe.verdict`` for
    the rules and ``docs/diagnostics.md`` for a walk-through.

    Args:
        model: any ``nn.Module`` with parameters.
        inputs: the batch: a tensor, or a tuple of tensors passed as positional arguments.
        targets: optional targets for ``loss_fn`` (default: cross-entropy for integer
            targets, MSE for float ones); without them a fixed random projection of the
            output is the loss.
        loss_fn: ``loss_fn(output, targets)`` (or ``loss_fn(output)`` without targets).
        train: probe in training mode (True, the default: BatchNorm uses batch
            statistics, as in training), eval mode (False) or the model's own (None).
        seed: seeds the random projection and, through a forked global RNG, dropout.
        sample: at most this many elements per tensor for the percentiles.

    Returns:
        a ``Report``: ``.verdict``, ``.reason``, ``.layers``, ``.fixes`` (an ``InitPlan``
        or None), ``.to_dicts()``.

    Raises:
        ValueError: a model without parameters, inputs that do not fit the model (the
            message names the layer, the shape it expects and the shape it got).

    Example::

        >>> import torch
        >>> from initlab.probe import diagnose
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(),
        ...                             torch.nn.Linear(8, 2))
        >>> with torch.no_grad():
        ...     _ = model[0].bias.fill_(-10.0)  # every ReLU input far below 0
        >>> diagnose(model, torch.randn(32, 8, generator=torch.Generator().manual_seed(0))).verdict
        'dead'
    """
    args = _as_args(inputs)
    _check(model, args)
    with preserved(model, train, seed):
        events, grads, loss, notes, unfired = _run(model, args, targets, loss_fn, seed, sample)
    rows, input_rms = _collect(events, grads, args)
    verdict, reason = judge(rows, input_rms)
    if silent := silent_layers(rows):
        notes.append(f"no gradient at all reached {', '.join(silent)} (zero weights after them, "
                     "e.g. zero_residual, or dead units)")
    acts = {e.label: e.site.activation for e in events if e.site.activation is not None}
    report = Report(model, verdict, reason, rows, unfired=unfired, notes=notes,
                    input_rms=input_rms, loss=loss,
                    probe=dict(inputs=inputs, targets=targets, loss_fn=loss_fn, train=train,
                               seed=seed, sample=sample, activations=acts))
    if verdict != "healthy":
        report.fixes, report.fix_notes = propose(model, rows, acts, inputs)
    return report


def diagnose_fixed(report: Report, generator: int = 0) -> Report:
    """Diagnose a deep copy of ``report.model`` after applying the report's fix plan."""
    probe = dict(report.probe)
    model = copy.deepcopy(report.model)
    plan, _ = propose(model, report.layers, probe.pop("activations"), probe["inputs"])
    plan.apply(generator)
    return diagnose(model, **probe)
