"""K multilayer perceptrons of one shape, trained as one: stacked weights, batched matmuls.

Model k is ``Linear -> phi_k -> Linear -> phi_k -> ... -> Linear`` with weights
``W_l[k]`` (n_(l+1) x n_l, ``nn.Linear.weight``'s own layout) and biases ``b_l[k]``,
stacked into K x n_(l+1) x n_l and K x n_(l+1) x 1 tensors. Signals are kept
*feature-major*: a layer's activations are K x n x B (units by examples), so a layer is
``Z_l = W_l H_(l-1) + b_l``, the transpose of PyTorch's ``x W^T + b``. All K models see
the same minibatch ``x`` (B x n_0):

* every layer is one batched matmul over the model axis,
  ``Z_l[k] = W_l[k] @ H_(l-1)[k] + b_l[k]`` (``torch.baddbmm``), with
  ``dW_l[k] = dZ_l[k] @ H_(l-1)[k]^T`` and ``dH_(l-1)[k] = W_l[k]^T @ dZ_l[k]``;
* layer 0's input is shared: ``H_(-1) = x^T`` expanded to K x n_0 x B with stride 0 over
  the models, so ``x`` is stored and read once;
* why this layout: MKL's batched GEMM runs a product fast when its output is wide.
  With the examples (B = 128) as the output's columns, the 10-class output layer of the
  article's grid runs at ~70 GFLOP/s forward and in its weight update on a 2-core AMD
  EPYC, against 13-27 and ~11 GFLOP/s with the batch-major ``H W`` (B x 10 outputs,
  and a 256 x 10 weight-update output); the large layers run at the same speed either
  way (each layer's products timed alone; ``benchmarks/sweep_speed.py`` times the grids);
* ``H_l = phi(Z_l)`` is applied in place, per sub-group of models sharing an activation
  (contiguous index ranges: the caller orders the models by activation), and
  ``dZ_l = phi'(Z_l) * dH_l`` uses PyTorch's own autograd kernels (``tanh_backward``,
  ``threshold_backward``, ...), so the numbers are the ones autograd gives. Where the
  derivative can be read from the output (identity, ReLU, Leaky ReLU, ELU/SELU/CELU,
  tanh, sigmoid, hardtanh, ReLU6) no copy of Z is kept; the others keep one;
* the loss of model k is the mean cross-entropy over the batch,
  ``L_k = -(1/B) sum_b log softmax(z_b)[y_b]``, with
  ``dL_k/dz_b = (softmax(z_b) - onehot(y_b)) / B``.

The forward and backward passes are written out by hand rather than taped by autograd:
no graph is built; the weight update of plain SGD is fused into the gradient matmul
(``W += (-lr * dZ) @ H^T``, one pass over the weights instead of three); activations,
their gradients and the matmul outputs of the training batch live in a
:class:`Workspace` reused from step to step (fresh multi-megabyte buffers are
page-faulted in again at every step: on the deep grid, 20 x 64, that took the step from
~50 to ~90 ms). Every operation is per model (block k of a matmul's output reads only model k's
blocks; losses and sums run within a model), so NaN or Inf in one model, e.g. one that
diverged, never reaches another. ``tests/test_engine.py`` checks the gradients against
autograd on the same modules.

The optimizers (:class:`StackedOptimizer`) are ``torch.optim``'s update rules on the
stacked tensors with one learning rate per model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from initlab import activations
from initlab._names import unknown
from initlab.activations import SELU_ALPHA, SELU_SCALE, Activation

_aten = torch.ops.aten

InPlace = Callable[[Tensor], object]  # t <- phi(t)
Backward = Callable[[Tensor, "Tensor | None", Tensor, Tensor], object]  # (g, z, y, out)


@dataclass(frozen=True)
class Kernels:
    """An activation applied in place, and its backward pass as PyTorch's autograd runs it.

    ``forward(t)`` sets ``t <- phi(t)``; ``backward(g, z, y, out)`` sets
    ``out <- g * phi'(z)`` given ``y = phi(z)``. When ``needs_input`` is False the backward
    reads only y (e.g. tanh' = 1 - y^2, relu' = [y > 0], ELU's from y + alpha) and the
    engine keeps no copy of the pre-activation z (it gets None).
    """

    forward: InPlace
    backward: Backward
    needs_input: bool


def _from_output(forward: InPlace, backward: Callable[[Tensor, Tensor, Tensor], object]
                 ) -> Kernels:
    """Kernels whose backward is ``backward(g, y, out)``."""
    return Kernels(forward, lambda g, z, y, out: backward(g, y, out), needs_input=False)


def _from_input(name: str, *args, **kwargs) -> Kernels:
    """``aten.<name>`` in place and ``aten.<name>_backward`` from the saved input z."""
    fwd, bwd = getattr(_aten, name).out, getattr(_aten, f"{name}_backward")
    return Kernels(lambda t: fwd(t, *args, **kwargs, out=t),
                   lambda g, z, y, out: out.copy_(bwd(g, z, *args, **kwargs)),
                   needs_input=True)


def _elu_like(alpha: float, scale: float, input_scale: float) -> Kernels:
    """ELU's family, ``scale * (x if x > 0 else alpha * (exp(input_scale x) - 1))`` (SELU and
    CELU are members, as ATen computes them); for alpha > 0 the derivative on x <= 0 is
    ``input_scale * (y + alpha scale)``, read from y (autograd's in-place form)."""
    return _from_output(
        lambda t: _aten.elu_(t, alpha, scale, input_scale),
        lambda g, y, out: _aten.elu_backward.grad_input(g, alpha, scale, input_scale, True, y,
                                                        grad_input=out))


def _aten_kernels(act: Activation) -> Kernels | None:
    """ATen's own kernels for ``act``; None when it is not one of the registry's built-ins
    PyTorch has kernels for."""
    p = act.params
    table: dict[str, Callable[[], Kernels]] = {
        "identity": lambda: _from_output(lambda t: None, lambda g, y, out: out.copy_(g)),
        "relu": lambda: _from_output(
            lambda t: t.clamp_min_(0),
            lambda g, y, out: _aten.threshold_backward.grad_input(g, y, 0, grad_input=out)),
        "tanh": lambda: _from_output(
            torch.tanh_, lambda g, y, out: _aten.tanh_backward.grad_input(g, y, grad_input=out)),
        "sigmoid": lambda: _from_output(
            torch.sigmoid_,
            lambda g, y, out: _aten.sigmoid_backward.grad_input(g, y, grad_input=out)),
        "hardtanh": lambda: _from_output(  # lo < y < hi exactly where lo < z < hi
            lambda t: t.clamp_(p["min_val"], p["max_val"]),
            lambda g, y, out: _aten.hardtanh_backward.grad_input(
                g, y, p["min_val"], p["max_val"], grad_input=out)),
        "relu6": lambda: _from_output(
            lambda t: t.clamp_(0.0, 6.0),
            lambda g, y, out: _aten.hardtanh_backward.grad_input(g, y, 0.0, 6.0,
                                                                 grad_input=out)),
        "gelu": lambda: _from_input("gelu", approximate="none"),
        "gelu_tanh": lambda: _from_input("gelu", approximate="tanh"),
        "silu": lambda: _from_input("silu"),
        "mish": lambda: _from_input("mish"),
        "softplus": lambda: _from_input("softplus", p["beta"], 20.0),
        "hardsigmoid": lambda: _from_input("hardsigmoid"),
        "hardswish": lambda: _from_input("hardswish"),
    }
    if act.name in ("elu", "celu", "selu", "leaky_relu") and p.get("alpha", 1.0) > 0:
        return {
            "elu": lambda: _elu_like(p["alpha"], 1.0, 1.0),
            "celu": lambda: _elu_like(p["alpha"], 1.0, 1.0 / p["alpha"]),
            "selu": lambda: _elu_like(SELU_ALPHA, SELU_SCALE, 1.0),
            "leaky_relu": lambda: _from_output(  # y > 0 exactly where z > 0
                lambda t: _aten.leaky_relu_(t, p["alpha"]),
                lambda g, y, out: _aten.leaky_relu_backward.grad_input(
                    g, y, p["alpha"], True, grad_input=out)),
        }[act.name]()
    return table[act.name]() if act.name in table else None


def activation_kernels(act: Activation) -> Kernels:
    """:class:`Kernels` of ``act``: ATen's own (the ones autograd runs) where PyTorch has
    them, else ``act.fn`` and ``act.derivative`` (closed form or autograd) from the input."""
    return _aten_kernels(act) or Kernels(
        lambda t: t.copy_(act.fn(t)), lambda g, z, y, out: out.copy_(g * act.derivative(z)),
        needs_input=True)


def _activation_key(act: Activation) -> tuple:
    return (act.name, tuple(sorted(act.params.items())))


def mlp_layers(model: nn.Module) -> tuple[list[tuple[str, nn.Linear]], list[Activation]] | None:
    """``([(name, Linear), ...], [activation after each hidden Linear])`` when ``model`` is a
    flat ``nn.Sequential`` of (an optional leading Flatten,) Linear, act, ..., Linear with
    parameter-free activations; None when it is anything else (not stackable)."""
    if not isinstance(model, nn.Sequential):
        return None
    children = list(model.named_children())
    if children and isinstance(children[0][1], nn.Flatten):
        children = children[1:]
    linears, acts = children[0::2], children[1::2]
    if not linears or len(linears) != len(acts) + 1:
        return None
    if not all(isinstance(m, nn.Linear) for _, m in linears):
        return None
    found = []
    for _, module in acts:
        act = activations.from_module(module)
        if act is None or any(True for _ in module.parameters()):
            return None
        found.append(act)
    return linears, found  # type: ignore[return-value]


@dataclass(frozen=True)
class Segment:
    """Models ``start <= k < stop`` share the activation ``act`` at one hidden layer."""

    start: int
    stop: int
    act: Activation
    kernels: Kernels


def _segments(acts: Sequence[Activation]) -> list[Segment]:
    runs: list[Segment] = []
    for k, act in enumerate(acts):
        if runs and _activation_key(runs[-1].act) == _activation_key(act):
            runs[-1] = Segment(runs[-1].start, k + 1, runs[-1].act, runs[-1].kernels)
        else:
            runs.append(Segment(k, k + 1, act, activation_kernels(act)))
    return runs


EVAL_FLOATS = 1 << 23  # 32 MiB of float32 per evaluation buffer


class Workspace:
    """Tensors reused from one training step to the next, by name; a name asked for with a
    new shape gets a new tensor."""

    def __init__(self, device: torch.device):
        self.device = device
        self.tensors: dict[tuple, Tensor] = {}

    def take(self, key: tuple, shape: tuple[int, ...]) -> Tensor:
        t = self.tensors.get(key)
        if t is None or t.shape != shape:
            t = self.tensors[key] = torch.empty(shape, device=self.device)
        return t


@dataclass
class Cache:
    """What the backward pass needs from the forward pass: the input, each hidden layer's
    activation ``H`` (K x n x B) and, per activation segment, a copy of its pre-activation
    where the segment's backward needs one (else None)."""

    x: Tensor
    h: list[Tensor] = field(default_factory=list)
    z: list[list[Tensor | None]] = field(default_factory=list)
    space: Workspace | None = None


class StackedMLP:
    """K MLPs of identical shape as stacked tensors (see the module docstring).

    Built from K ``nn.Sequential`` MLPs (``mlp_layers`` must accept each); their weights
    are copied, so model k starts exactly where module k starts. Models sharing an
    activation should be adjacent (fewer, larger segments); any order is correct.
    """

    def __init__(self, models: Sequence[nn.Module], device: str | torch.device = "cpu"):
        parsed = [mlp_layers(m) for m in models]
        if not parsed or any(p is None for p in parsed):
            raise ValueError("StackedMLP needs flat nn.Sequential MLPs (Linear, activation, ..., "
                             "Linear with parameter-free activations)")
        shapes = {tuple((lin.in_features, lin.out_features, lin.bias is not None)
                        for _, lin in p[0]) for p in parsed}  # type: ignore[index]
        if len(shapes) != 1:
            raise ValueError(f"StackedMLP needs models of one shape; got {sorted(shapes)}")
        self.k = len(models)
        self.device = torch.device(device)
        first = parsed[0][0]  # type: ignore[index]
        self.names = [name for name, _ in first]
        self.widths = [first[0][1].in_features] + [lin.out_features for _, lin in first]
        self.has_bias = first[0][1].bias is not None
        self.segments = [_segments([p[1][i] for p in parsed])  # type: ignore[index]
                         for i in range(len(self.widths) - 2)]
        self.sizes = [[s.stop - s.start for s in layer] for layer in self.segments]
        self.weights, self.biases = self._stack([[lin for _, lin in p[0]] for p in parsed])
        self.workspace = Workspace(self.device)
        self.eval_space = Workspace(self.device)

    def _stack(self, layers: list[list[nn.Linear]]) -> tuple[list[Tensor], list[Tensor | None]]:
        def stacked(attr: str, i: int) -> Tensor:
            return torch.stack([getattr(model[i], attr).detach() for model in layers]).to(
                self.device, torch.float32)

        depth = len(self.widths) - 1
        weights = [stacked("weight", i) for i in range(depth)]
        biases: list[Tensor | None] = [stacked("bias", i).unsqueeze(2)
                                       if self.has_bias else None for i in range(depth)]
        return weights, biases

    @property
    def depth(self) -> int:
        """The number of Linear layers."""
        return len(self.weights)

    def parameters(self) -> list[Tensor]:
        """Weights (K x out x in) and biases (K x out x 1), layer by layer."""
        return [t for w, b in zip(self.weights, self.biases, strict=True)
                for t in (w, b) if t is not None]

    @staticmethod
    def _empty(space: Workspace | None, key: tuple, like: Tensor,
               shape: tuple[int, ...]) -> Tensor:
        if space is None:
            return torch.empty(shape, device=like.device, dtype=like.dtype)
        return space.take(key, shape)

    # --- forward -----------------------------------------------------------------------

    def _input(self, x: Tensor) -> Tensor:
        """The shared input x (B x n_0) as K x n_0 x B without a copy (a transposed view,
        stride 0 over the models)."""
        return x.t().expand(self.k, -1, -1)

    def forward(self, x: Tensor, space: Workspace | None = None,
                keep: bool = True) -> tuple[Tensor, Cache]:
        """Logits K x C x B of every model on the same input x (B x n_0), and the cache.

        With ``space`` the outputs live in its buffers (valid until the next call); with
        ``keep=False`` (evaluation) nothing is kept for a backward pass and two buffers
        per shape serve every layer in turn."""
        cache = Cache(x, space=space)
        out = self._input(x)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if i > 0:
                kept = self._activate(out, i - 1, space, keep)
                if keep:
                    cache.z.append(kept)
                    cache.h.append(out)
            shape = (self.k, w.shape[1], len(x))
            z = self._empty(space, ("z", i) if keep else ("z", i % 2, shape), out, shape)
            out = torch.baddbmm(b, w, out, out=z) if b is not None else torch.bmm(w, out, out=z)
        return out, cache

    def _activate(self, z: Tensor, layer: int, space: Workspace | None,
                  keep: bool = True) -> list[Tensor | None]:
        """``Z[k] <- phi_k(Z[k])`` in place, segment by segment; with ``keep``, the copies
        of Z kept for the segments whose backward needs them."""
        kept: list[Tensor | None] = []
        parts = z.split(self.sizes[layer])
        for j, (s, part) in enumerate(zip(self.segments[layer], parts, strict=True)):
            copy = None
            if keep and s.kernels.needs_input:
                copy = self._empty(space, ("input", layer, j), part, part.shape).copy_(part)
            s.kernels.forward(part)
            kept.append(copy)
        return kept

    @staticmethod
    def loss(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Per-model mean cross-entropy [K] and its gradient w.r.t. the logits (K x C x B)."""
        logp = torch.log_softmax(logits, dim=1)
        target = y.view(1, 1, -1).expand(logits.shape[0], 1, -1)
        loss = -logp.gather(1, target).squeeze(1).mean(dim=1)
        grad = logp.exp_()
        grad.scatter_add_(1, target, torch.full(target.shape, -1.0, device=grad.device))
        return loss, grad.mul_(1.0 / logits.shape[2])

    # --- backward ----------------------------------------------------------------------

    def backward(self, cache: Cache, grad_logits: Tensor,
                 neg_lr: Tensor | None = None) -> list[Tensor] | None:
        """Backpropagate ``grad_logits`` (K x C x B) through every model.

        Without ``neg_lr``: return the gradients in the layout of :meth:`parameters`
        (in the cache's workspace, if any: valid until the next call).
        With ``neg_lr`` ([K], the negated learning rates): apply plain SGD in place and
        return None. Backpropagation is linear in ``grad_logits``, so scaling it once by
        ``neg_lr`` scales every dZ below, and each layer's update ``W += dZ @ H^T`` is
        fused into its gradient matmul (one pass over the weights instead of three).
        """
        space = cache.space
        grads: list[Tensor] = []
        dz = grad_logits
        if neg_lr is not None:
            dz.mul_(neg_lr.view(self.k, 1, 1))
        for i in range(self.depth - 1, -1, -1):
            w, b = self.weights[i], self.biases[i]
            inp = cache.h[i - 1] if i > 0 else self._input(cache.x)
            dh = None
            if i > 0:
                dh = torch.bmm(w.transpose(1, 2), dz,
                               out=self._empty(space, ("dh", inp.shape), dz, inp.shape))
            if neg_lr is not None:
                w.baddbmm_(dz, inp.transpose(1, 2))
                if b is not None:
                    b.add_(dz.sum(2, keepdim=True))
            else:
                gw = torch.bmm(dz, inp.transpose(1, 2), out=self._empty(space, ("dw", i), dz,
                                                                        w.shape))
                grads[:0] = [gw] + ([dz.sum(2, keepdim=True)] if b is not None else [])
            if dh is not None:
                dz = self._activation_grad(dh, cache, i - 1)
        return grads if neg_lr is None else None

    def _activation_grad(self, dh: Tensor, cache: Cache, layer: int) -> Tensor:
        """dZ = phi'(Z) * dH per segment."""
        dz = self._empty(cache.space, ("dz", dh.shape), dh, dh.shape)
        sizes = self.sizes[layer]
        for s, z, g, y, out in zip(self.segments[layer], cache.z[layer], dh.split(sizes),
                                   cache.h[layer].split(sizes), dz.split(sizes), strict=True):
            s.kernels.backward(g, z, y, out)
        return dz

    # --- measurements ------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, x: Tensor, y: Tensor, chunk: int = 1024) -> tuple[Tensor, Tensor]:
        """Accuracy [K] and mean cross-entropy [K] of every model on (x, y), in chunks of at
        most ``chunk`` examples, fewer for large groups (at most EVAL_FLOATS per activation
        buffer)."""
        chunk = max(1, min(chunk, EVAL_FLOATS // (self.k * max(self.widths[1:]))))
        correct = torch.zeros(self.k, device=self.device)
        loss_sum = torch.zeros(self.k, device=self.device)
        for start in range(0, len(x), chunk):
            xb, yb = x[start:start + chunk], y[start:start + chunk]
            logits, _ = self.forward(xb, self.eval_space, keep=False)
            correct += (logits.argmax(1) == yb).sum(1)
            loss_sum += torch.nn.functional.cross_entropy(
                logits, yb.expand(self.k, -1), reduction="none").sum(1)
        return correct / len(x), loss_sum / len(x)

    @torch.no_grad()
    def probe(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Per-layer statistics on one batch, as two L x K tensors (L Linear layers):
        the std of each layer's output after its activation (logits for the last) and
        the Frobenius norm of the loss gradient w.r.t. its weight. Uses the training workspace
        (call it between steps)."""
        logits, cache = self.forward(x, self.workspace)
        _, grad_logits = self.loss(logits, y)
        stds = [h.reshape(self.k, -1).std(dim=1) for h in cache.h]
        stds.append(logits.reshape(self.k, -1).std(dim=1))
        grads = self.backward(cache, grad_logits)
        weights = grads[::2] if self.has_bias else grads  # type: ignore[index]
        norms = [torch.linalg.vector_norm(g, dim=(1, 2)) for g in weights]
        return torch.stack(stds), torch.stack(norms)


class StackedOptimizer:
    """``torch.optim``'s SGD, SGD with momentum and Adam on stacked tensors, one learning rate
    per model (``lr`` [K]; the engine sets a diverged model's rate to 0).

    * sgd:       ``p <- p - lr g`` (fused into the backward pass: see ``StackedMLP.backward``)
    * momentum:  ``v <- mu v + g;  p <- p - lr v``, mu = 0.9 (PyTorch's form, no dampening;
      Sutskever et al. 2013 write it with the lr inside v)
    * adam:      ``m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
      p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``,
      b1 = 0.9, b2 = 0.999, eps = 1e-8 (Kingma & Ba 2015, as ``torch.optim.Adam`` computes it)
    """

    MOMENTUM = 0.9
    BETAS = (0.9, 0.999)
    EPS = 1e-8

    def __init__(self, kind: str, net: StackedMLP):
        if kind not in ("sgd", "momentum", "adam"):
            raise unknown("optimizer", kind, ["sgd", "momentum", "adam"])
        self.kind = kind
        self.net = net
        self.params = net.parameters()
        self.t = 0
        n_states = {"sgd": 0, "momentum": 1, "adam": 3}[kind]  # adam: m, v and a scratch
        self.state = [[torch.zeros_like(p) for p in self.params] for _ in range(n_states)]

    def step(self, cache: Cache, grad_logits: Tensor, lr: Tensor) -> None:
        """Backpropagate and update every model; ``lr`` [K] is each model's rate now."""
        if self.kind == "sgd":
            self.net.backward(cache, grad_logits, neg_lr=-lr)
            return
        grads = self.net.backward(cache, grad_logits)
        self.t += 1
        rate = lr.view(-1, 1, 1)
        for j, (p, g) in enumerate(zip(self.params, grads, strict=True)):  # type: ignore[arg-type]
            if self.kind == "momentum":
                buf = self.state[0][j].mul_(self.MOMENTUM).add_(g)
                p.addcmul_(buf, rate, value=-1.0)
            else:
                self._adam(j, p, g, rate)

    def _adam(self, j: int, p: Tensor, g: Tensor, rate: Tensor) -> None:
        b1, b2 = self.BETAS
        m = self.state[0][j].lerp_(g, 1 - b1)
        v = self.state[1][j].mul_(b2).addcmul_(g, g, value=1 - b2)
        bias1, bias2 = 1 - b1**self.t, 1 - b2**self.t
        update = torch.sqrt(v, out=self.state[2][j]).div_(math.sqrt(bias2)).add_(self.EPS)
        torch.div(m, update, out=update).mul_(rate / bias1)
        p.sub_(update)
