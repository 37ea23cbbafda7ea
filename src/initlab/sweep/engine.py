"""Training engines: the reference loop (one model at a time, plain PyTorch) and the
vectorized engine (a group of same-shaped MLPs trained as one, ``initlab.sweep.stacked``).

Both engines train on the same data in the same order and record the same things, so a
run gives the same numbers whichever engine trained it (``tests/test_engine.py`` holds
per-step losses to 1e-5 relative over 100 steps). For every run:

* **Minibatches**: one stream per ``data_seed`` (:func:`batch_order`): consecutive
  slices of a concatenation of seeded random permutations of the training set. Every run
  of a group, and every run with the same ``data_seed``, sees the same batches in the same
  order, so runs differ only in what the grid varies.
* **Steps** count weight updates. The loss logged at step t is the training loss of the
  (t+1)-th minibatch under the weights after t updates; it is logged when
  ``t % log_every == 0`` and at the last step. Evaluations happen after t updates for
  t = 0, eval_every, 2 eval_every, ... and t = steps: train accuracy on a fixed subset of
  the training set (its first :data:`TRAIN_EVAL_SIZE` examples; the split is already
  shuffled), validation accuracy and loss, test accuracy.
  ``steps_to_target`` is the first evaluated step with val_acc >= target_accuracy.
* **Divergence**: a run diverges at step t when its loss L_t is not finite or
  ``L_t > DIVERGENCE_FACTOR * max(L_0, ln C)`` (C classes; ln C is the loss of a uniform
  guess, the floor keeps an unusually good start from tripping the rule). The run is
  frozen there: the reference loop stops; the vectorized engine sets the model's
  learning rate to 0 from that batch on (its update from step t is not applied) and the
  other models of the group go on unaffected (no operation mixes models, so its NaNs
  cannot reach them). Its loss at t is its last logged loss; later evaluations and its
  end-of-training layer statistics are dropped (its end state says nothing more).
* **Layer statistics**, at init and at the end, on a fixed probe batch (the first
  ``batch_size`` examples of the training subset): for every layer with a weight matrix,
  the standard deviation of its output after the activation that follows it (its own
  output when no activation module follows directly) and the Frobenius norm of the loss
  gradient w.r.t. its weight matrices. Computed on the device; moved to the CPU once.

``torch.set_flush_denormal(True)`` is called when training starts: deep, badly initialized
nets otherwise crawl through denormal arithmetic. It sets the x86 FTZ/DAZ flags of the
calling thread, and the intra-op workers follow: measured with torch 2.13's OpenMP pool
started *before* the call, all 4M products of a two-thread ``1e-39 * 1.0001`` came out 0
(4M non-zero without the flag). PyTorch has no getter, so the setting is left on.
Flushing changes only numbers below 1.2e-38.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initlab import activations, models
from initlab.data import Dataset
from initlab.plan import DATA_SCHEMES, init_model
from initlab.sweep.spec import RunConfig
from initlab.sweep.stacked import StackedMLP, StackedOptimizer

TRAIN_EVAL_SIZE = 2048
DIVERGENCE_FACTOR = 1e3
EVAL_CHUNK = 1024

Progress = Callable[[int], None]  # called with the number of run-steps (runs x steps) just done
Builder = Callable[[RunConfig, Dataset], nn.Module]  # the model a config trains


@dataclass
class RunResult:
    """What one run produced; see the module docstring for the meaning of each record."""

    config: RunConfig
    status: Literal["finished", "diverged", "failed"]
    losses: list[tuple[int, float]]
    evals: list[dict]
    steps_to_target: int | None
    diverged_at: int | None
    layer_stats: list[dict]
    seconds: float
    engine: Literal["vectorized", "reference"]
    error: str | None = None


def group_key(config: RunConfig) -> tuple:
    """Configs with equal keys can train together in one vectorized group: same data, same
    shapes, same optimizer and schedule; init, activation, learning rate and seed may differ.
    Configs the vectorized engine cannot stack get a key of their own."""
    if not _stackable(config):
        return ("reference", config.key())
    return ("vectorized", config.dataset, config.data_dir, config.limit, config.data_seed,
            config.model, config.depth, config.width, config.optimizer, config.steps,
            config.batch_size, config.eval_every, config.log_every)


def _stackable(config: RunConfig) -> bool:
    if config.model != "mlp":
        return False
    act = activations.get(config.activation)
    return act.module is not None and not any(True for _ in act.module().parameters())


# --- shared pieces ---------------------------------------------------------------------


def batch_order(n: int, batch_size: int, steps: int, seed: int) -> Tensor:
    """Minibatch indices, ``steps x batch_size`` int64: consecutive slices of random
    permutations of ``range(n)`` drawn one after another from ``Generator(seed)``."""
    generator = torch.Generator().manual_seed(seed)
    need = steps * batch_size
    perms = [torch.randperm(n, generator=generator) for _ in range(-(-need // n))]
    return torch.cat(perms)[:need].view(steps, batch_size)


def eval_steps(config: RunConfig) -> list[int]:
    """The steps after which a run is evaluated: 0, eval_every, ..., and steps."""
    return sorted({*range(0, config.steps, config.eval_every), config.steps})


def logged(config: RunConfig, step: int) -> bool:
    """Whether the loss at ``step`` is logged."""
    return step % config.log_every == 0 or step == config.steps - 1


@dataclass
class _Data:
    """A data set's tensors on the device (flattened for the stacked engine)."""

    x_train: Tensor
    y_train: Tensor
    x_fit: Tensor
    y_fit: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int

    @classmethod
    def of(cls, data: Dataset, device: torch.device, flatten: bool) -> _Data:
        def put(x: Tensor) -> Tensor:
            x = x.to(device)
            return x.reshape(len(x), -1) if flatten else x

        x_train, y_train = put(data.x_train), data.y_train.to(device)
        fit = min(TRAIN_EVAL_SIZE, len(y_train))
        return cls(x_train, y_train, x_train[:fit], y_train[:fit], put(data.x_val),
                   data.y_val.to(device), put(data.x_test), data.y_test.to(device),
                   data.num_classes)

    def probe(self, batch_size: int) -> tuple[Tensor, Tensor]:
        return self.x_fit[:batch_size], self.y_fit[:batch_size]


CALIBRATION_BATCH = 512  # training examples a data-dependent init ("lsuv", "propagate") sees


def build_model(config: RunConfig, data: Dataset) -> nn.Module:
    """The model ``config`` trains on ``data``: ``initlab.models.build`` seeded by config.seed.

    A data-dependent scheme is planned on the first CALIBRATION_BATCH training examples
    (the same for every run of a sweep), after the builder's own seeded construction.
    """
    data_dependent = config.init in DATA_SCHEMES
    model = models.build(config.model, data.input_shape, data.num_classes,
                         activation=config.activation, depth=config.depth, width=config.width,
                         init=None if data_dependent else config.init, seed=config.seed)
    if data_dependent:
        init_model(model, data.x_train[:CALIBRATION_BATCH], scheme=config.init,
                   generator=torch.Generator().manual_seed(config.seed))
    return model


def _divergence_limit(initial_loss: Tensor, num_classes: int) -> Tensor:
    return DIVERGENCE_FACTOR * initial_loss.clamp_min(math.log(num_classes))


def _is_diverged(loss: Tensor, limit: Tensor) -> Tensor:
    return ~torch.isfinite(loss) | (loss > limit)


def _eval_record(step: int, values: Sequence[float]) -> dict:
    train_acc, val_acc, test_acc, val_loss = values
    return {"step": step, "train_acc": train_acc, "val_acc": val_acc, "test_acc": test_acc,
            "val_loss": val_loss}


def _result(config: RunConfig, losses: list[tuple[int, float]], evals: list[dict],
            diverged_at: int | None, layer_stats: list[dict], seconds: float,
            engine: Literal["vectorized", "reference"]) -> RunResult:
    """A RunResult with the records cut at the divergence step and steps_to_target set."""
    if diverged_at is not None:
        losses = [(s, v) for s, v in losses if s <= diverged_at]
        evals = [e for e in evals if e["step"] <= diverged_at]
        layer_stats = [s for s in layer_stats if s["phase"] == "init"]
    reached = [e["step"] for e in evals if e["val_acc"] >= config.target_accuracy]
    return RunResult(config=config, status="finished" if diverged_at is None else "diverged",
                     losses=losses, evals=evals, steps_to_target=reached[0] if reached else None,
                     diverged_at=diverged_at, layer_stats=layer_stats, seconds=seconds,
                     engine=engine)


def _layer_records(phase: str, names: Sequence[str], stds: Sequence[float],
                   norms: Sequence[float]) -> list[dict]:
    return [{"phase": phase, "layer": i, "name": name, "act_std": s, "grad_norm": g}
            for i, (name, s, g) in enumerate(zip(names, stds, norms, strict=True))]


# --- the reference loop ----------------------------------------------------------------


def _probe_points(model: nn.Module) -> list[tuple[str, nn.Module, nn.Module]]:
    """``(name, layer, observed)`` for every module that owns a weight matrix, in module
    order; ``observed`` is the activation module right after it in its ``nn.Sequential``
    parent, else the layer itself."""
    following: dict[int, nn.Module] = {}
    for parent in model.modules():
        if isinstance(parent, nn.Sequential):
            children = list(parent)
            for before, after in zip(children, children[1:], strict=False):
                if activations.from_module(after) is not None:
                    following[id(before)] = after
    return [(name, m, following.get(id(m), m)) for name, m in model.named_modules()
            if any(p.dim() >= 2 for p in m.parameters(recurse=False))]


def _first_tensor(output: object) -> Tensor:
    while isinstance(output, (tuple, list)):
        output = output[0]
    return output  # type: ignore[return-value]


def _class_logits(model: nn.Module, x: Tensor) -> Tensor:
    logits = model(x)
    if logits.dim() != 2:
        raise ValueError(f"the engines train classifiers: {type(model).__name__} gave outputs "
                         f"of shape {tuple(logits.shape)}, expected (batch, classes)")
    return logits


def _weight_grad_norm(layer: nn.Module) -> Tensor:
    """sqrt(sum of squared gradient entries) over the layer's own weight matrices."""
    grads = [p.grad.reshape(-1) for p in layer.parameters(recurse=False)
             if p.dim() >= 2 and p.grad is not None]
    if not grads:
        return torch.zeros((), device=next(layer.parameters()).device)
    return torch.linalg.vector_norm(torch.cat(grads))


def _reference_probe(model: nn.Module, x: Tensor, y: Tensor, phase: str) -> list[dict]:
    """Per-layer act std and weight-gradient norm of ``model`` on one batch, in train mode,
    leaving parameters, gradients and buffers (batch-norm statistics) as they were."""
    points = _probe_points(model)
    buffers = [b.clone() for b in model.buffers()]
    outputs: dict[str, Tensor] = {}
    hooks = [observed.register_forward_hook(
        lambda _m, _i, out, name=name: outputs.__setitem__(name, _first_tensor(out).detach()))
        for name, _, observed in points]
    try:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(_class_logits(model, x), y).backward()
    finally:
        for hook in hooks:
            hook.remove()
    stds = torch.stack([outputs[name].float().std() for name, _, _ in points])
    norms = torch.stack([_weight_grad_norm(layer) for _, layer, _ in points])
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for saved, buffer in zip(buffers, model.buffers(), strict=True):
            buffer.copy_(saved)
    both = torch.stack([stds, norms]).cpu().tolist()
    return _layer_records(phase, [name for name, _, _ in points], *both)


@torch.no_grad()
def _reference_eval(model: nn.Module, d: _Data) -> list[float]:
    model.eval()
    totals = []
    for x, y in ((d.x_fit, d.y_fit), (d.x_val, d.y_val), (d.x_test, d.y_test)):
        correct = torch.zeros((), device=x.device)
        loss = torch.zeros((), device=x.device)
        for start in range(0, len(x), EVAL_CHUNK):
            logits = _class_logits(model, x[start:start + EVAL_CHUNK])
            yb = y[start:start + EVAL_CHUNK]
            correct += (logits.argmax(1) == yb).sum()
            loss += F.cross_entropy(logits, yb, reduction="sum")
        totals += [correct / len(x), loss / len(x)]
    model.train()
    train_acc, _, val_acc, val_loss, test_acc, _ = torch.stack(totals).cpu().tolist()
    return [train_acc, val_acc, test_acc, val_loss]


def _torch_optimizer(kind: str, params, lr: float) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if kind == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=StackedOptimizer.MOMENTUM)
    return torch.optim.Adam(params, lr=lr, betas=StackedOptimizer.BETAS, eps=StackedOptimizer.EPS)


def train_reference(config: RunConfig, data: Dataset, *, device: str = "cpu",
                    progress: Progress | None = None, builder: Builder = build_model
                    ) -> RunResult:
    """Train one model the plain PyTorch way: ``builder(config, data)`` (default
    :func:`build_model`), ``torch.optim``, ``F.cross_entropy`` and autograd. Dropout (if
    any) draws from the global generator, seeded with ``config.seed`` inside a forked RNG
    state (the caller's is left as it was). ``progress(1)`` follows every step."""
    torch.set_flush_denormal(True)
    start = time.perf_counter()
    dev = torch.device(device)
    d = _Data.of(data, dev, flatten=False)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(config.seed)
        model = builder(config, data).to(dev)
        model.train()
        stats = _reference_probe(model, *d.probe(config.batch_size), "init")
        losses, evals, diverged_at = _reference_loop(model, config, d, progress)
        if diverged_at is None:
            stats += _reference_probe(model, *d.probe(config.batch_size), "end")
    return _result(config, losses, evals, diverged_at, stats, time.perf_counter() - start,
                   "reference")


def _reference_loop(model: nn.Module, config: RunConfig, d: _Data, progress: Progress | None
                    ) -> tuple[list[tuple[int, float]], list[dict], int | None]:
    optimizer = _torch_optimizer(config.optimizer, model.parameters(), config.lr)
    batches = batch_order(len(d.y_train), config.batch_size, config.steps,
                          config.data_seed).to(d.x_train.device)
    when = set(eval_steps(config))
    losses: list[tuple[int, float]] = []
    evals: list[dict] = []
    limit = torch.tensor(math.inf)
    for step in range(config.steps):
        if step in when:
            evals.append(_eval_record(step, _reference_eval(model, d)))
        idx = batches[step]
        loss = F.cross_entropy(_class_logits(model, d.x_train[idx]), d.y_train[idx])
        value = loss.detach().cpu()
        if step == 0:
            limit = _divergence_limit(value, d.num_classes)
        if logged(config, step) or _is_diverged(value, limit):
            losses.append((step, value.item()))
        if _is_diverged(value, limit):
            return losses, evals, step
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if progress is not None:
            progress(1)
    evals.append(_eval_record(config.steps, _reference_eval(model, d)))
    return losses, evals, None


# --- the vectorized engine ---------------------------------------------------------------


def train_group(configs: Sequence[RunConfig], data: Dataset, *, device: str = "cpu",
                progress: Progress | None = None, builder: Builder = build_model
                ) -> list[RunResult]:
    """Train ``configs`` on ``data``; results in the order of ``configs``.

    Configs are partitioned by :func:`group_key`; each stackable partition trains as one
    vectorized group (:class:`~initlab.sweep.stacked.StackedMLP`), the rest one by one
    through :func:`train_reference`. ``RunResult.engine`` says which engine ran.
    ``RunResult.seconds`` of a vectorized run is the group's time divided by its size.
    ``builder(config, data)`` makes each model (default :func:`build_model`); the
    vectorized engine copies the built MLPs' weights, so both engines start from the
    same numbers. ``progress(n)`` follows every step with n = the runs it advanced.
    """
    parts: dict[tuple, list[int]] = {}
    for i, config in enumerate(configs):
        parts.setdefault(group_key(config), []).append(i)
    results: list[RunResult | None] = [None] * len(configs)
    for key, members in parts.items():
        group = [configs[i] for i in members]
        if key[0] == "vectorized" and len(group) > 1:
            trained = _train_stacked(group, data, torch.device(device), progress, builder)
        else:
            trained = [train_reference(c, data, device=device, progress=progress,
                                       builder=builder) for c in group]
        for i, result in zip(members, trained, strict=True):
            results[i] = result
    return results  # type: ignore[return-value]


def _train_stacked(configs: list[RunConfig], data: Dataset, device: torch.device,
                   progress: Progress | None, builder: Builder) -> list[RunResult]:
    """Train one group as stacked MLPs; models are ordered by activation internally."""
    torch.set_flush_denormal(True)
    start = time.perf_counter()
    order = sorted(range(len(configs)), key=lambda i: configs[i].activation)
    net = StackedMLP([builder(configs[i], data) for i in order], device)
    run = _StackedRun([configs[i] for i in order], net, _Data.of(data, device, flatten=True))
    ordered = run.train(progress)
    seconds = (time.perf_counter() - start) / len(configs)
    results: list[RunResult] = [None] * len(configs)  # type: ignore[list-item]
    for position, i in enumerate(order):
        results[i] = ordered[position]
        results[i].seconds = seconds
    return results


class _StackedRun:
    """The training loop of one vectorized group; all bookkeeping stays on the device."""

    def __init__(self, configs: list[RunConfig], net: StackedMLP, d: _Data):
        self.configs, self.net, self.d = configs, net, d
        self.config = configs[0]
        device = d.x_train.device
        self.lr = torch.tensor([c.lr for c in configs], device=device)
        self.optimizer = StackedOptimizer(self.config.optimizer, net)
        k = len(configs)
        self.alive = torch.ones(k, dtype=torch.bool, device=device)
        self.diverged_at = torch.full((k,), -1, dtype=torch.long, device=device)
        self.log_steps = [s for s in range(self.config.steps) if logged(self.config, s)]
        self.loss_log = torch.full((len(self.log_steps), k), math.nan, device=device)
        self.last_loss = torch.full((k,), math.nan, device=device)
        self.limit = torch.full((k,), math.inf, device=device)

    def train(self, progress: Progress | None) -> list[RunResult]:
        c, net, d = self.config, self.net, self.d
        probe = d.probe(c.batch_size)
        stats = [net.probe(*probe)]
        batches = batch_order(len(d.y_train), c.batch_size, c.steps, c.data_seed
                              ).to(d.x_train.device)
        when = set(eval_steps(c))
        evals: list[tuple[int, list[list[float]]]] = []
        row = 0
        for step in range(c.steps):
            if step in when:
                evals.append((step, self._evaluate()))
            loss = self._step(step, *self._batch(batches[step]))
            if row < len(self.log_steps) and self.log_steps[row] == step:
                self.loss_log[row] = loss
                row += 1
            if progress is not None:
                progress(len(self.configs))
        evals.append((c.steps, self._evaluate()))
        stats.append(net.probe(*probe))
        return self._results(evals, stats)

    def _batch(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """The minibatch ``idx`` gathered into the workspace."""
        space, d = self.net.workspace, self.d
        x = space.take(("x",), (len(idx), d.x_train.shape[1]))
        y = torch.empty(len(idx), dtype=torch.long, device=idx.device)
        return torch.index_select(d.x_train, 0, idx, out=x), torch.index_select(
            d.y_train, 0, idx, out=y)

    def _step(self, step: int, x: Tensor, y: Tensor) -> Tensor:
        """One forward/backward/update of every model; returns the [K] losses."""
        logits, cache = self.net.forward(x, self.net.workspace)
        loss, grad_logits = self.net.loss(logits, y)
        if step == 0:
            self.limit = _divergence_limit(loss, self.d.num_classes)
        newly = _is_diverged(loss, self.limit) & self.alive
        self.diverged_at.masked_fill_(newly, step)
        self.last_loss = torch.where(newly, loss, self.last_loss)
        self.alive &= ~newly
        self.optimizer.step(cache, grad_logits, self.lr * self.alive)
        return loss

    def _evaluate(self) -> list[list[float]]:
        """[train_acc, val_acc, test_acc, val_loss] x K, one transfer to the CPU."""
        d, net = self.d, self.net
        train_acc, _ = net.evaluate(d.x_fit, d.y_fit, EVAL_CHUNK)
        val_acc, val_loss = net.evaluate(d.x_val, d.y_val, EVAL_CHUNK)
        test_acc, _ = net.evaluate(d.x_test, d.y_test, EVAL_CHUNK)
        return torch.stack([train_acc, val_acc, test_acc, val_loss]).t().cpu().tolist()

    def _results(self, evals: list[tuple[int, list[list[float]]]],
                 stats: list[tuple[Tensor, Tensor]]) -> list[RunResult]:
        log = self.loss_log.t().cpu().tolist()
        diverged_at = self.diverged_at.cpu().tolist()
        last_loss = self.last_loss.cpu().tolist()
        (std0, norm0), (std1, norm1) = [(s.t().cpu().tolist(), n.t().cpu().tolist())
                                        for s, n in stats]
        results = []
        for k, config in enumerate(self.configs):
            losses = list(zip(self.log_steps, log[k], strict=True))
            at = diverged_at[k] if diverged_at[k] >= 0 else None
            if at is not None:
                losses = [(s, v) for s, v in losses if s < at] + [(at, last_loss[k])]
            layer_stats = (_layer_records("init", self.net.names, std0[k], norm0[k])
                           + _layer_records("end", self.net.names, std1[k], norm1[k]))
            results.append(_result(config, losses, [_eval_record(s, v[k]) for s, v in evals],
                                   at, layer_stats, 0.0, "vectorized"))
        return results
