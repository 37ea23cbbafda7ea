r"""Fan-in and fan-out of every parameter, per module kind and per packed block.

A weight's *fan-in* is the number of inputs summed into one output unit, its
*fan-out* the number of output units one input feeds. Variance-preserving
initializers divide by them (Glorot & Bengio 2010; He et al. 2015), so a wrong
fan is a wrong init. PyTorch's generic rule
(``torch.nn.init._calculate_fan_in_and_fan_out``) reads ``(out, in, *kernel)``
off any tensor, which is right for ``Linear`` and ungrouped unit-stride
``ConvNd`` and wrong for:

* strided ``ConvNd``: its fan-out. A convolution reads input ``o s + j d - p``
  at output ``o`` through tap ``j`` per spatial dim (stride ``s``, dilation
  ``d``, padding ``p``), so input ``i`` feeds output ``o`` through tap ``j``
  only when ``i + p - j d`` is a multiple of ``s``: every tap reaches exactly one
  residue of the input position mod ``s``, and over any ``s`` consecutive
  interior inputs the ``k`` taps feed ``k`` outputs in all. An input feeds
  :math:`k/s` outputs per dim *on average*, whatever ``d`` (exactly ``k/s`` at
  each input when ``s`` divides ``k`` and ``d`` is prime to ``s``; otherwise some
  inputs feed more, some fewer, and with ``k < s`` some feed none, e.g. every
  other input of a ``k=1, s=2`` shortcut). So fan_out
  :math:`= (out/groups) \prod_d k_d / s_d`, the mean number of (output channel,
  tap) terms the gradient of one input sums, which keeps the gradient's
  variance right averaged over positions (He et al. 2015's ``mode="fan_out"``);
  fan_in :math:`= (in/groups) \prod_d k_d` (every output reads every tap). torch's
  generic rule leaves the stride out of fan_out: ``prod(s)`` times too large,
  256x for a ViT patch embedding (``k = s = 16``), whose every input feeds
  exactly one output per output channel. ``padding`` only touches the borders;
* ``ConvTransposeNd``: stored as ``(in, out/groups, *kernel)``, so the
  generic rule swaps fan-in and fan-out; and it ignores the stride. A
  transposed convolution is the adjoint of a convolution with the same ``k,
  s, d, p`` (torch: "the gradient of Conv2d with respect to its input"), so
  its fan-in is the mirror image of the above: it scatters input ``i`` through tap
  ``j`` to output ``i s + j d - p``, every tap hits one residue of the output
  position mod ``s``, and an output sums :math:`k/s` taps per dim on average
  (equivalently: a unit-stride convolution over the input with ``s - 1`` zeros
  inserted between its entries, Dumoulin & Visin 2016, "A guide to convolution
  arithmetic for deep learning", section 4). So fan_in
  :math:`= (in/groups) \prod_d k_d / s_d`, the mean number of terms an output
  sums, which makes the output variance right averaged over positions; fan_out
  :math:`= (out/groups) \prod_d k_d` (one input feeds every tap).
  ``ConvTranspose2d(k=2, s=2)``, the U-Net upsampler, has fan_in ``in/groups``:
  each output gets one tap per dim, not four. ``padding`` and
  ``output_padding`` only crop or extend the borders;
* grouped and depthwise convolutions: each input channel only feeds the
  ``out/groups`` outputs of its own group, so fan-out is
  ``out/groups * prod(kernel)`` (over ``prod(stride)`` when strided), not
  ``out * prod(kernel)``;
* packed parameters: ``LSTM``/``GRU``/``RNN`` stack one block per gate along
  dim 0, ``MultiheadAttention.in_proj_weight`` stacks q, k and v. Each block is
  its own layer with its own fans and is initialized on its own.

:func:`tensor_fans` is the rule for a bare shape; :func:`param_blocks` knows
the module and splits packed parameters into :class:`Block` s.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence
from fractions import Fraction
from typing import NamedTuple

import torch
from torch import nn

from initlab._names import unknown

MODES = ("fan_in", "fan_out", "fan_avg")

_RNN_GATES = {"LSTM": "ifgo", "GRU": "rzn", "RNN_TANH": "", "RNN_RELU": ""}
_CELL_GATES = {nn.LSTMCell: "ifgo", nn.GRUCell: "rzn", nn.RNNCell: ""}
_RNN_ROLES = {"ih": "input", "hh": "recurrent", "hr": "projection"}
_RNN_NAME = re.compile(r"^(weight|bias)_(ih|hh|hr)(_l\d+(_reverse)?)?$")
_NORMS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


class Fans(NamedTuple):
    """Fan-in and fan-out of one weight block.

    Whole numbers are ``int``; the fractional cases (a ``float``) are the mean
    fan-out of a strided convolution and the mean fan-in of a transposed one,
    when the stride does not divide the kernel (``k=3, s=2``: 1.5 taps per dim).
    """

    fan_in: float
    fan_out: float


class Block(NamedTuple):
    """One independently initialized part of a parameter.

    ``rows`` selects the rows of dim 0 it covers (``slice(None)``: the whole
    parameter); ``fans`` are the block's own fans; ``role`` says what it does:

    ``"weight"``      a Linear/Conv/ConvTranspose/Bilinear (or unknown) weight;
    ``"bias"``        any bias, with the fans of the weight it is added to;
    ``"embedding"``   an Embedding/EmbeddingBag table;
    ``"input"``, ``"recurrent"``, ``"projection"``
                      RNN ``weight_ih``, ``weight_hh``, ``weight_hr`` (LSTM proj_size);
    ``"q"``, ``"k"``, ``"v"``
                      the query/key/value projections of MultiheadAttention;
    ``"elementwise"`` a per-feature scale (norm weights, PReLU slopes, any other
                      non-bias parameter with fewer than 2 dims): fans (1, 1).

    ``gate`` names the packed part: the LSTM gate ``i f g o``, the GRU gate
    ``r z n`` (None for a plain RNN), or ``q k v`` for attention.
    ``groups`` is the convolution's group count (1 elsewhere); the structured
    schemes (orthogonal, delta_orthogonal, identity) take it at call time.
    """

    rows: slice
    fans: Fans
    role: str
    gate: str | None = None
    groups: int = 1

    def of(self, tensor: torch.Tensor) -> torch.Tensor:
        """The view of ``tensor`` this block covers (writable in place)."""
        return tensor if tensor.dim() == 0 else tensor[self.rows]


def tensor_fans(
    shape: Sequence[int],
    *,
    transposed: bool = False,
    groups: int = 1,
    stride: int | Sequence[int] = 1,
) -> Fans:
    r"""Fans of a weight of the given shape.

    ``stride`` is the convolution's stride ``s`` (an int, or one per spatial dim);
    :math:`r = \prod_d k_d` the number of taps and :math:`\rho = \prod_d k_d / s_d`
    their mean count per position (see the module docstring).

    For ``(out, in/groups, *k)`` (Linear, ConvNd): fan_in :math:`= (in/groups)\, r`,
    every output reads every tap; fan_out :math:`= (out/groups)\, \rho`, the mean
    number of (output channel, tap) terms one input feeds. For ``groups=1`` and
    stride 1 this is exactly ``torch.nn.init._calculate_fan_in_and_fan_out``; with a
    stride torch's fan_out is :math:`\prod_d s_d` times larger.

    With ``transposed=True`` the shape is ConvTransposeNd's ``(in, out/groups, *k)``:
    fan_in :math:`= (in/groups)\, \rho`, the mean number of (input channel, tap)
    terms an output sums, fan_out :math:`= (out/groups)\, r`.

    Raises:
        ValueError: fewer than 2 dims (no fan-in/fan-out to speak of), a
            ``groups`` that does not divide the grouped dimension, or a stride that
            is not one positive int per spatial dim.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise ValueError(
            f"fans need a weight with at least 2 dims (out, in, *kernel); got shape {shape}"
        )
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    if shape[0] % groups:
        raise ValueError(f"groups={groups} does not divide dim 0 of shape {shape}")
    taps = math.prod(shape[2:])
    rho = Fraction(taps, math.prod(_strides(stride, shape)))  # mean taps per position
    grouped, other = shape[0] // groups, shape[1]
    if transposed:  # (in, out/groups, *k): an output sums rho taps of each in/groups channel
        return Fans(_number(grouped * rho), other * taps)
    return Fans(other * taps, _number(grouped * rho))  # an input feeds rho taps of each output


def _strides(stride: int | Sequence[int], shape: tuple[int, ...]) -> tuple[int, ...]:
    """One positive int per spatial dim of ``shape`` (an int is broadcast; a weight
    without spatial dims, a Linear's, takes only 1)."""
    dims = len(shape) - 2
    given = tuple(stride) if isinstance(stride, Sequence) else (stride,) * max(dims, 1)
    whole = all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1
                for s in given)
    if not whole or len(given) != max(dims, 1) or (dims == 0 and given != (1,)):
        raise ValueError(
            f"stride must be one positive int per spatial dim of shape {shape} ({dims} of "
            f"them), or one int for all (1 without spatial dims); got {stride!r}"
        )
    return tuple(int(s) for s in given[:dims])


def _number(value: Fraction) -> float:
    """An exact count as an int when whole, else the nearest float."""
    return int(value) if value.denominator == 1 else float(value)


def fan_count(fans: Fans, mode: str) -> float:
    """The number a variance-scaling scheme divides by: fan_in, fan_out or their mean."""
    if mode == "fan_in":
        return fans.fan_in
    if mode == "fan_out":
        return fans.fan_out
    if mode == "fan_avg":
        return (fans.fan_in + fans.fan_out) / 2
    raise unknown("fan mode", mode, MODES)


def param_blocks(module: nn.Module, param_name: str) -> list[Block]:
    """The blocks of ``module``'s parameter ``param_name`` (dotted names allowed).

    Per module kind:

    * ConvNd: :func:`tensor_fans` with the module's groups and stride
      (grouped/depthwise right; fan_out ``out/groups * prod(k/s)``, the mean
      count of outputs one input feeds);
    * ConvTransposeNd: the same with ``transposed=True`` (fan_in
      ``in/groups * prod(k/s)``, the mean count of terms per output);
    * Embedding/EmbeddingBag: fans ``(1, embedding_dim)``. A lookup is a Linear
      layer on a one-hot vector, which has exactly one non-zero input, so each
      output sums one weight: fan_in = 1, and fan-in scaling gives N(0, 1), the
      PyTorch default. (PyTorch's generic rule reads ``(num, dim)`` as
      fan_in = dim, fan_out = num; Flax scales by 1/sqrt(dim) for the same reason.)
    * RNN/LSTM/GRU (and their cells): ``weight_ih*``, ``weight_hh*``, ``bias_*``
      split per gate (LSTM ``i f g o``, GRU ``r z n``, RNN one block), each gate
      block with fans ``(columns, hidden)``; LSTM ``weight_hr*`` one block;
    * MultiheadAttention: ``in_proj_weight``/``in_proj_bias`` split into q, k, v;
      ``q_proj_weight``/``k_proj_weight``/``v_proj_weight`` (kdim or vdim !=
      embed_dim) one block each; ``out_proj`` is a Linear;
    * norm layers and PReLU: role ``"elementwise"`` (or ``"bias"``), fans (1, 1);
    * anything else: a bias gets its module's ``weight`` fans; a >= 2-dim
      parameter gets :func:`tensor_fans` (Linear, Bilinear, custom modules).
    """
    owner, leaf = _resolve(module, param_name)
    tensor = _tensor(owner, leaf)
    if isinstance(owner, nn.RNNBase | nn.RNNCellBase) and _RNN_NAME.match(leaf):
        return _rnn_blocks(owner, leaf)
    if isinstance(owner, nn.MultiheadAttention):
        return _attention_blocks(owner, leaf)
    if isinstance(owner, _NORMS + (nn.PReLU,)):
        return [Block(slice(None), Fans(1, 1), _role(leaf, "elementwise"))]
    if leaf.endswith("bias"):
        return [Block(slice(None), _weight_fans(owner), "bias")]
    if isinstance(owner, nn.Embedding | nn.EmbeddingBag) and leaf == "weight":
        return [Block(slice(None), Fans(1, tensor.shape[1]), "embedding")]
    if tensor.dim() < 2:
        return [Block(slice(None), Fans(1, 1), "elementwise")]
    return [Block(slice(None), _module_fans(owner, leaf), "weight", None, _groups(owner, leaf))]


def _resolve(module: nn.Module, param_name: str) -> tuple[nn.Module, str]:
    prefix, _, leaf = param_name.rpartition(".")
    try:
        return (module.get_submodule(prefix) if prefix else module), leaf
    except AttributeError:
        raise unknown("submodule", prefix, (n for n, _ in module.named_modules() if n)) from None


def _tensor(owner: nn.Module, leaf: str) -> torch.Tensor:
    tensor = getattr(owner, leaf, None)
    if not isinstance(tensor, torch.Tensor):
        own = (n for n, _ in owner.named_parameters(recurse=False))
        raise unknown(f"parameter of {type(owner).__name__}", leaf, own)
    if isinstance(tensor, nn.parameter.UninitializedParameter):
        raise ValueError(
            f"{type(owner).__name__}.{leaf} is uninitialized (lazy module); "
            "run one forward pass before asking for its fans"
        )
    return tensor


def _role(leaf: str, otherwise: str) -> str:
    return "bias" if leaf.endswith("bias") else otherwise


def _groups(owner: nn.Module, leaf: str) -> int:
    is_conv = isinstance(owner, nn.modules.conv._ConvNd) and leaf == "weight"
    return owner.groups if is_conv else 1


def _module_fans(owner: nn.Module, leaf: str) -> Fans:
    """Fans of a >= 2-dim weight, knowing the module's conv layout and stride."""
    shape = getattr(owner, leaf).shape
    if isinstance(owner, nn.modules.conv._ConvNd) and leaf == "weight":
        transposed = isinstance(owner, nn.modules.conv._ConvTransposeNd)
        return tensor_fans(shape, transposed=transposed, groups=owner.groups,
                           stride=owner.stride)
    return tensor_fans(shape)


def _weight_fans(owner: nn.Module) -> Fans:
    """Fans for a bias: those of the weight it is added to, (1, 1) without one."""
    weight = getattr(owner, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() >= 2:
        if isinstance(owner, nn.Embedding | nn.EmbeddingBag):
            return Fans(1, weight.shape[1])
        return _module_fans(owner, "weight")
    return Fans(1, 1)


def _split(rows: int, parts: Sequence[tuple[str, Fans, str | None]]) -> list[Block]:
    """Equal consecutive row blocks, one per ``(role, fans, gate)`` part."""
    size = rows // len(parts)
    return [
        Block(slice(i * size, (i + 1) * size), fans, role, gate)
        for i, (role, fans, gate) in enumerate(parts)
    ]


def _rnn_blocks(owner: nn.Module, leaf: str) -> list[Block]:
    kind, part = leaf.split("_")[:2]
    gates = _RNN_GATES[owner.mode] if isinstance(owner, nn.RNNBase) else _CELL_GATES[type(owner)]
    if part == "hr" or not gates:
        gates = [None]
    weight = getattr(owner, "weight" + leaf[len(kind) :])
    fans = Fans(weight.shape[1], weight.shape[0] // len(gates))
    role = "bias" if kind == "bias" else _RNN_ROLES[part]
    return _split(weight.shape[0], [(role, fans, gate) for gate in gates])


def _attention_blocks(owner: nn.MultiheadAttention, leaf: str) -> list[Block]:
    if owner.in_proj_weight is not None:
        fans = dict.fromkeys("qkv", Fans(owner.embed_dim, owner.embed_dim))
    else:
        fans = {p: tensor_fans(getattr(owner, f"{p}_proj_weight").shape) for p in "qkv"}
    if leaf in ("in_proj_weight", "in_proj_bias"):
        parts = [(_role(leaf, p), fans[p], p) for p in "qkv"]
        return _split(3 * owner.embed_dim, parts)
    if leaf in ("bias_k", "bias_v"):
        return [Block(slice(None), fans[leaf[-1]], "bias", leaf[-1])]
    return [Block(slice(None), fans[leaf[0]], leaf[0], leaf[0])]
