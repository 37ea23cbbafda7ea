"""K multilayer perceptrons of one shape, trained as one: stacked weights, batched matmuls.

Model k is ``Linear -> phi_k -> Linear -> phi_k -> ... -> Linear`` with weights
``W_l^(k)`` (in x out, i.e. ``nn.Linear.weight`` transposed) and biases ``b_l^(k)``.
All K models see the same minibatch ``x`` (B x n_0), so:

* layer 0 is ONE wide matmul, ``Z_0 = x @ [W_0^(1) | ... | W_0^(K)] + b_0``
  (B x K*n_1), and its weight gradient is one wide matmul too,
  ``dW_0 = x^T @ dZ_0``;
* layers l >= 1 are batched matmuls over the model axis,
  ``Z_l[k] = H_(l-1)[k] @ W_l[k] + b_l[k]`` (``torch.baddbmm``), with
  ``dW_l[k] = H_(l-1)[k]^T @ dZ_l[k]`` and ``dH_(l-1)[k] = dZ_l[k] @ W_l[k]^T``;
* ``H_l = phi(Z_l)`` is applied per sub-group of models sharing an activation
  (contiguous index ranges: the caller orders the models by activation), and
  ``dZ_l = phi'(Z_l) * dH_l`` uses PyTorch's own autograd kernels
  (``tanh_backward``, ``threshold_backward``, ...), so the numbers are the ones
  autograd would give;
* the loss of model k is the mean cross-entropy over the batch,
  ``L_k = -(1/B) sum_b log softmax(z_b)[y_b]``, with
  ``dL_k/dz_b = (softmax(z_b) - onehot(y_b)) / B``.

The forward and backward passes are written out by hand rather than taped by autograd:
no graph is built, the weight update of plain SGD is fused into the gradient matmul
(``W += x^T @ (-lr * dZ)``, one pass over the weights instead of three), and the
activation kernels write straight into preallocated outputs, segment by segment.
Every operation is per model (block k of a matmul's output reads only model k's
blocks; losses and sums run within a model), so NaN or Inf in one model, e.g. one that
diverged, never reaches another. ``tests/test_engine.py`` checks the gradients against
autograd on the same modules.

The optimizers (:class:`StackedOptimizer`) are ``torch.optim``'s update rules on the
stacked tensors with one learning rate per model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from initlab import activations
from initlab._names import unknown
from initlab.activations import SELU_ALPHA, SELU_SCALE, Activation

Forward = Callable[[Tensor, Tensor], object]  # (z, out): out <- phi(z)
Backward = Callable[[Tensor, Tensor, Tensor, Tensor], object]  # (g, z, y, out): out <- g phi'(z)

_aten = torch.ops.aten


def _elu_like(alpha: float, scale: float, input_scale: float) -> tuple[Forward, Backward]:
    """ELU's family: scale * (x if x > 0 else alpha * (exp(input_scale * x) - 1));
    SELU and CELU are members, as ATen computes them."""
    return (lambda z, out: _aten.elu.out(z, alpha, scale, input_scale, out=out),
            lambda g, z, y, out: _aten.elu_backward.grad_input(
                g, alpha, scale, input_scale, False, z, grad_input=out))


def _pointwise(name: str, *args) -> tuple[Forward, Backward]:
    """``aten.<name>.out`` forward and ``aten.<name>_backward.grad_input`` (from z) backward."""
    fwd, bwd = getattr(_aten, name).out, getattr(_aten, f"{name}_backward")
    return (lambda z, out: fwd(z, *args, out=out),
            lambda g, z, y, out: bwd.grad_input(g, z, *args, grad_input=out))


def _aten_kernels(act: Activation) -> tuple[Forward, Backward] | None:
    """ATen's own forward and autograd kernels for ``act``, writing into ``out``; None when
    ``act`` is not one of the registry's built-ins PyTorch has kernels for."""
    p = act.params
    table: dict[str, Callable[[], tuple[Forward, Backward]]] = {
        "identity": lambda: (lambda z, out: out.copy_(z), lambda g, z, y, out: out.copy_(g)),
        "relu": lambda: (lambda z, out: _aten.relu.out(z, out=out),
                         lambda g, z, y, out: _aten.threshold_backward.grad_input(
                             g, y, 0, grad_input=out)),
        "tanh": lambda: (lambda z, out: _aten.tanh.out(z, out=out),
                         lambda g, z, y, out: _aten.tanh_backward.grad_input(g, y, grad_input=out)),
        "sigmoid": lambda: (lambda z, out: _aten.sigmoid.out(z, out=out),
                            lambda g, z, y, out: _aten.sigmoid_backward.grad_input(
                                g, y, grad_input=out)),
        "leaky_relu": lambda: (
            lambda z, out: _aten.leaky_relu.out(z, p["alpha"], out=out),
            lambda g, z, y, out: _aten.leaky_relu_backward.grad_input(
                g, z, p["alpha"], False, grad_input=out)),
        "elu": lambda: _elu_like(p["alpha"], 1.0, 1.0),
        "celu": lambda: _elu_like(p["alpha"], 1.0, 1.0 / p["alpha"]),
        "selu": lambda: _elu_like(SELU_ALPHA, SELU_SCALE, 1.0),
        "gelu": lambda: (lambda z, out: _aten.gelu.out(z, approximate="none", out=out),
                         lambda g, z, y, out: _aten.gelu_backward.grad_input(
                             g, z, approximate="none", grad_input=out)),
        "gelu_tanh": lambda: (lambda z, out: _aten.gelu.out(z, approximate="tanh", out=out),
                              lambda g, z, y, out: _aten.gelu_backward.grad_input(
                                  g, z, approximate="tanh", grad_input=out)),
        "silu": lambda: _pointwise("silu"),
        "softplus": lambda: _pointwise("softplus", p["beta"], 20.0),
        "hardtanh": lambda: _pointwise("hardtanh", p["min_val"], p["max_val"]),
        "relu6": lambda: _pointwise("hardtanh", 0.0, 6.0),
        "hardsigmoid": lambda: _pointwise("hardsigmoid"),
        "hardswish": lambda: (lambda z, out: _aten.hardswish.out(z, out=out),
                              lambda g, z, y, out: _aten.hardswish_backward.out(g, z, out=out)),
        "mish": lambda: (lambda z, out: _aten.mish.out(z, out=out),
                         lambda g, z, y, out: out.copy_(_aten.mish_backward(g, z))),
    }
    return table[act.name]() if act.name in table else None


def activation_kernels(act: Activation) -> tuple[Forward, Backward]:
    """``(forward, backward)`` of ``act`` writing into preallocated outputs: ATen's own
    kernels (the ones autograd runs) where PyTorch has them, else ``act.fn`` and
    ``act.derivative`` (closed form or autograd) followed by a copy."""
    return _aten_kernels(act) or (
        lambda z, out: out.copy_(act.fn(z)),
        lambda g, z, y, out: out.copy_(g * act.derivative(z)))


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
    forward: Forward
    backward: Backward


def _segments(acts: Sequence[Activation]) -> list[Segment]:
    runs: list[Segment] = []
    for k, act in enumerate(acts):
        if runs and _activation_key(runs[-1].act) == _activation_key(act):
            runs[-1] = Segment(runs[-1].start, k + 1, runs[-1].act, runs[-1].forward,
                               runs[-1].backward)
        else:
            runs.append(Segment(k, k + 1, act, *activation_kernels(act)))
    return runs


@dataclass
class Cache:
    """What the backward pass needs from the forward pass: the input and each hidden
    layer's pre-activation ``Z`` and activation ``H`` (layer 0: Z wide B x K*n, H K x B x n)."""

    x: Tensor
    z: list[Tensor]
    h: list[Tensor]


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
        first_layers = parsed[0][0]  # type: ignore[index]
        self.names = [name for name, _ in first_layers]
        self.widths = [first_layers[0][1].in_features] + [lin.out_features
                                                           for _, lin in first_layers]
        self.has_bias = first_layers[0][1].bias is not None
        self.segments = [_segments([p[1][i] for p in parsed])  # type: ignore[index]
                         for i in range(len(self.widths) - 2)]
        self.weights, self.biases = self._stack([[lin for _, lin in p[0]] for p in parsed])

    def _stack(self, layers: list[list[nn.Linear]]) -> tuple[list[Tensor], list[Tensor | None]]:
        def get(attr: str, i: int) -> list[Tensor]:
            return [getattr(model[i], attr).detach().to(self.device, torch.float32)
                    for model in layers]

        weights = [torch.cat([w.t() for w in get("weight", 0)], dim=1).contiguous()]
        weights += [torch.stack([w.t() for w in get("weight", i)]).contiguous()
                    for i in range(1, len(self.widths) - 1)]
        biases: list[Tensor | None] = [None] * len(weights)
        if self.has_bias:
            biases = [torch.cat(get("bias", 0)).contiguous()]
            biases += [torch.stack(get("bias", i)).unsqueeze(1).contiguous()
                       for i in range(1, len(self.widths) - 1)]
        return weights, biases

    @property
    def depth(self) -> int:
        """The number of Linear layers."""
        return len(self.weights)

    def parameters(self) -> list[Tensor]:
        """Weights and biases in a model-major view each (model axis shown explicitly):
        layer 0's wide ``n_0 x K*n_1`` weight as ``n_0 x K x n_1``, its bias as ``K x n_1``."""
        n0, n1 = self.widths[0], self.widths[1]
        views = [self.weights[0].view(n0, self.k, n1)]
        if self.has_bias:
            views.append(self.biases[0].view(self.k, n1))  # type: ignore[union-attr]
        for w, b in zip(self.weights[1:], self.biases[1:], strict=True):
            views.append(w)
            if b is not None:
                views.append(b)
        return views

    def model_shapes(self) -> list[tuple[int, ...]]:
        """For each of :meth:`parameters`, the shape that broadcasts a per-model [K] vector
        over it."""
        shapes = [(1, self.k, 1)] + ([(self.k, 1)] if self.has_bias else [])
        for _ in self.weights[1:]:
            shapes += [(self.k, 1, 1)] * (2 if self.has_bias else 1)
        return shapes

    def weight_views(self) -> list[Tensor]:
        """Each layer's weights as K x in x out (layer 0 a strided view of the wide matrix)."""
        n0, n1 = self.widths[0], self.widths[1]
        return [self.weights[0].view(n0, self.k, n1).permute(1, 0, 2), *self.weights[1:]]

    # --- forward -----------------------------------------------------------------------

    def _activate(self, z: Tensor, layer: int) -> Tensor:
        """``H[k] = phi_k(Z[k])`` per segment into a new K x B x n tensor (layer 0's z is a
        strided view of the wide pre-activation)."""
        h = torch.empty(z.shape, device=z.device, dtype=z.dtype)
        for s in self.segments[layer]:
            s.forward(z[s.start:s.stop], h[s.start:s.stop])
        return h

    def forward(self, x: Tensor) -> tuple[Tensor, Cache]:
        """Logits K x B x C of every model on the same input x (B x n_0), and the cache."""
        k, n1 = self.k, self.widths[1]
        b0 = self.biases[0]
        z0 = torch.addmm(b0, x, self.weights[0]) if b0 is not None else x @ self.weights[0]
        cache = Cache(x, [z0], [])
        out = z0.view(len(x), k, n1).transpose(0, 1)
        for i in range(1, self.depth):
            h = self._activate(out, i - 1)
            cache.h.append(h)
            w, b = self.weights[i], self.biases[i]
            out = torch.baddbmm(b, h, w) if b is not None else torch.bmm(h, w)
            if i < self.depth - 1:
                cache.z.append(out)
        return out, cache

    @staticmethod
    def loss(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Per-model mean cross-entropy [K] and its gradient w.r.t. the logits (K x B x C)."""
        logp = torch.log_softmax(logits, dim=-1)
        target = y.view(1, -1, 1).expand(logits.shape[0], -1, 1)
        loss = -logp.gather(2, target).squeeze(2).mean(dim=1)
        grad = logp.exp_()
        grad.scatter_add_(2, target, torch.full(target.shape, -1.0, device=grad.device))
        return loss, grad.mul_(1.0 / logits.shape[1])

    # --- backward ----------------------------------------------------------------------

    def backward(self, cache: Cache, grad_logits: Tensor,
                 neg_lr: Tensor | None = None) -> list[Tensor] | None:
        """Backpropagate ``grad_logits`` (K x B x C) through every model.

        Without ``neg_lr``: return the gradients in the layout of :meth:`parameters`.
        With ``neg_lr`` ([K], the negated learning rates): apply plain SGD in place,
        ``W += H^T @ (neg_lr * dZ)`` fused into the gradient matmul, and return None.
        Every operation is per model (a matmul's output block k reads only model k's
        blocks), so non-finite numbers of one model never reach another.
        """
        grads: list[Tensor] = []
        dz = grad_logits
        for i in range(self.depth - 1, -1, -1):
            dh = torch.bmm(dz, self.weights[i].transpose(1, 2)) if i > 0 else None
            inp = cache.h[i - 1] if i > 0 else cache.x
            if neg_lr is None:
                grads[:0] = self._layer_grads(i, inp, dz)
            else:
                dz_models, shape = self._by_model(dz, i)
                dz_models.mul_(neg_lr.view(shape))
                self._sgd_update(i, inp, dz)
            if dh is not None:
                dz = self._activation_grad(dh, cache, i - 1)
        return grads if neg_lr is None else None

    def _by_model(self, t: Tensor, layer: int) -> tuple[Tensor, tuple[int, ...]]:
        """``t`` (layer-shaped: wide B x K*n for layer 0, else K x B x n) with the model axis
        explicit, and the shape that broadcasts a [K] vector over it."""
        if layer == 0:
            return t.view(len(t), self.k, -1), (1, self.k, 1)
        return t, (self.k, 1, 1)

    def _activation_grad(self, dh: Tensor, cache: Cache, layer: int) -> Tensor:
        """dZ = phi'(Z) * dH per segment; layer 0's dZ comes back wide (B x K*n_1)."""
        z, h = cache.z[layer], cache.h[layer]
        if layer == 0:
            n1 = self.widths[1]
            z = z.view(len(cache.x), self.k, n1).transpose(0, 1)
            dz = torch.empty(len(cache.x), self.k * n1, device=dh.device, dtype=dh.dtype)
            target = dz.view(len(cache.x), self.k, n1).transpose(0, 1)
        else:
            dz = target = torch.empty_like(dh)
        for s in self.segments[layer]:
            sl = slice(s.start, s.stop)
            s.backward(dh[sl], z[sl], h[sl], target[sl])
        return dz

    def _layer_grads(self, i: int, inp: Tensor, dz: Tensor) -> list[Tensor]:
        """Layer i's weight (and bias) gradient from its input and dZ, as :meth:`parameters`."""
        if i == 0:
            grads = [(inp.t() @ dz).view(inp.shape[1], self.k, -1)]
            bias = dz.sum(0).view(self.k, -1)
        else:
            grads = [torch.bmm(inp.transpose(1, 2), dz)]
            bias = dz.sum(1, keepdim=True)
        return grads + ([bias] if self.has_bias else [])

    def _sgd_update(self, i: int, inp: Tensor, scaled_dz: Tensor) -> None:
        """``W += inp^T @ scaled_dz`` and ``b += sum(scaled_dz)``, in place."""
        w, b = self.weights[i], self.biases[i]
        if i == 0:
            w.addmm_(inp.t(), scaled_dz)
            if b is not None:
                b.add_(scaled_dz.sum(0))
        else:
            w.baddbmm_(inp.transpose(1, 2), scaled_dz)
            if b is not None:
                b.add_(scaled_dz.sum(1, keepdim=True))

    # --- measurements ------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, x: Tensor, y: Tensor, chunk: int = 1024) -> tuple[Tensor, Tensor]:
        """Accuracy [K] and mean cross-entropy [K] of every model on (x, y), in chunks."""
        correct = torch.zeros(self.k, device=self.device)
        loss_sum = torch.zeros(self.k, device=self.device)
        for start in range(0, len(x), chunk):
            xb, yb = x[start:start + chunk], y[start:start + chunk]
            logits, _ = self.forward(xb)
            correct += (logits.argmax(-1) == yb).sum(1)
            loss_sum += torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), yb.expand(self.k, -1), reduction="none").sum(1)
        return correct / len(x), loss_sum / len(x)

    @torch.no_grad()
    def probe(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Per-layer statistics on one batch, as two L x K tensors (L Linear layers):
        the std of each layer's output after its activation (logits for the last) and
        the Frobenius norm of the loss gradient w.r.t. its weight."""
        logits, cache = self.forward(x)
        _, grad_logits = self.loss(logits, y)
        stds = [h.reshape(self.k, -1).std(dim=1) for h in cache.h]
        stds.append(logits.reshape(self.k, -1).std(dim=1))
        grads = self.backward(cache, grad_logits)
        weights = grads[::2] if self.has_bias else grads  # type: ignore[index]
        norms = [torch.linalg.vector_norm(weights[0], dim=(0, 2))]
        norms += [torch.linalg.vector_norm(g, dim=(1, 2)) for g in weights[1:]]
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
        self.shapes = net.model_shapes()
        self.t = 0
        n_states = {"sgd": 0, "momentum": 1, "adam": 2}[kind]
        self.state = [[torch.zeros_like(p) for p in self.params] for _ in range(n_states)]

    def step(self, cache: Cache, grad_logits: Tensor, lr: Tensor) -> None:
        """Backpropagate and update every model; ``lr`` [K] is each model's rate now."""
        if self.kind == "sgd":
            self.net.backward(cache, grad_logits, neg_lr=-lr)
            return
        grads = self.net.backward(cache, grad_logits)
        self.t += 1
        for j, (p, g, shape) in enumerate(zip(self.params, grads, self.shapes,  # type: ignore[arg-type]
                                              strict=True)):
            rate = lr.view(shape)
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
        denom = v.sqrt().div_(math.sqrt(bias2)).add_(self.EPS)
        p.sub_(torch.div(m, denom).mul_(rate / bias1))
