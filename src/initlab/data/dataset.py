"""``load(name)``: a data set split into train / validation / test and standardized.

Splits. The test split is the official test set where one exists
(Fashion-MNIST, IDX folders with a ``t10k`` pair, MNIST-1D); otherwise a
fixed :data:`TEST_FRACTION` of the examples, drawn with the fixed seed
:data:`TEST_SPLIT_SEED`, so that every run evaluates on the same test
examples whatever its ``seed``. ``seed`` draws the validation examples from
the rest (``round(val_fraction * n)`` of them) and, with ``limit``, the
training subset; the same seed gives the same split. Limits nest: the
examples kept with ``limit=100`` are among those kept with ``limit=200``.

Standardization (LeCun, Bottou, Orr & Mueller, "Efficient BackProp", 1998:
inputs with zero mean and unit variance). Every split is mapped with the
training split's statistics, per channel::

    x' = (x - mu_c) / sigma_c,   mu_c, sigma_c = mean and standard deviation of
                                 channel c over all training examples and positions

where the channel is the first per-example axis: the single grey channel of
``(1, H, W)`` images or ``(1, L)`` sequences (one scalar pair), each feature
of flat ``(d,)`` vectors. A constant channel (sigma = 0) is only centred.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from initlab._names import unknown
from initlab.data import sources
from initlab.data.sources import Raw

TEST_FRACTION = 0.2
TEST_SPLIT_SEED = 0

_GENERATED = {"digits": sources.digits, "mnist1d": sources.mnist1d, "synthetic": sources.synthetic}


def names() -> list[str]:
    """Every name :func:`load` accepts."""
    return ["auto", "fashion-mnist", "idx", *_GENERATED]


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Train / validation / test tensors of one data set, ready to train on.

    ``x_*`` are float32 shaped ``(N, *input_shape)``, standardized with the
    training split's per-channel statistics; ``y_*`` are int64 in
    ``[0, num_classes)``.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    source: str = field(default="")

    @property
    def in_features(self) -> int:
        """``prod(input_shape)``: the input width of an MLP on flattened examples."""
        return math.prod(self.input_shape)

    def describe(self) -> str:
        """One line: name, classes, shape, split sizes and where the data came from."""
        shape = "x".join(map(str, self.input_shape))
        sizes = f"{len(self.y_train)} train / {len(self.y_val)} val / {len(self.y_test)} test"
        origin = f" from {self.source}" if self.source else ""
        return f"{self.name}: {self.num_classes} classes, input {shape}, {sizes}{origin}"

    def __repr__(self) -> str:
        return f"Dataset({self.describe()})"


def _raw(name: str, data_dir: str | Path | None) -> tuple[str, Raw]:
    if name == "auto":
        if data_dir is not None:
            name = "idx"
        elif sources.fashion_mnist_installed():
            name = "fashion-mnist"
        else:
            name = "digits"
    if name == "fashion-mnist":
        return name, sources.fashion_mnist(data_dir)
    if name == "idx":
        if data_dir is None:
            raise ValueError("dataset 'idx' needs data_dir, a folder of MNIST-format IDX files")
        return name, sources.idx_folder(data_dir)
    if name not in _GENERATED:
        raise unknown("dataset", name, names())
    if data_dir is not None:
        raise ValueError(
            f"dataset {name!r} is generated, it reads no data_dir (got {str(data_dir)!r}); "
            "data_dir applies to 'fashion-mnist', 'idx' and 'auto'"
        )
    return name, _GENERATED[name]()


def _permutation(n: int, seed: int) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=generator).numpy()


def _split(
    raw: Raw, seed: int, val_fraction: float, limit: int | None
) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(train, val, test) pairs of (x, y) arrays, drawn as the module docstring says."""
    x, y, x_test, y_test = raw.x_train, raw.y_train, raw.x_test, raw.y_test
    if x_test is None:
        order = _permutation(len(y), TEST_SPLIT_SEED)
        n_test = round(TEST_FRACTION * len(y))
        x_test, y_test = x[order[:n_test]], y[order[:n_test]]
        x, y = x[order[n_test:]], y[order[n_test:]]
    order = _permutation(len(y), seed)
    n_val = round(val_fraction * len(y))
    if n_val >= len(y):
        raise ValueError(f"val_fraction={val_fraction} leaves no training examples out of {len(y)}")
    train = order[n_val:] if limit is None else order[n_val:][:limit]
    val = order[:n_val]
    return (x[train], y[train]), (x[val], y[val]), (x_test, y_test)


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of ``x``, float32, shaped to broadcast.

    Accumulated in float64 over a float32 copy, centred first (two passes), so
    the standardized training split has mean 0 and std 1 to float32 rounding.
    """
    flat = x.astype(np.float32).reshape(len(x), x.shape[1], -1)
    mean = flat.mean(axis=(0, 2), dtype=np.float64, keepdims=True).astype(np.float32)
    flat -= mean
    var = np.einsum("ncp,ncp->c", flat, flat, dtype=np.float64) / (flat.shape[0] * flat.shape[2])
    std = np.sqrt(var).astype(np.float32)
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    return mean.reshape(shape), np.where(std > 0, std, 1.0).astype(np.float32).reshape(shape)


def _standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> Tensor:
    out = x.astype(np.float32)
    out -= mean
    out /= std
    return torch.from_numpy(out)


def _check_args(val_fraction: float, limit: int | None) -> None:
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")


def load(
    name: str = "auto",
    *,
    data_dir: str | Path | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    limit: int | None = None,
) -> Dataset:
    """Load, check, split and standardize a data set (see the module docstring).

    Args:
        name: one of :func:`names`. ``"auto"`` is the IDX folder ``data_dir``
            when given, else Fashion-MNIST when Debian's package is installed,
            else scikit-learn's bundled digits.
        data_dir: a folder of MNIST-format IDX files, for ``"idx"`` (required)
            and ``"fashion-mnist"`` (default ``/usr/share/datasets/fashion-mnist``).
        seed: draws the validation split and the ``limit`` subset.
        val_fraction: share of the non-test examples held out for validation.
        limit: keep at most this many training examples (for fast demos).

    Example:
        >>> ds = load("digits", seed=0)
        >>> ds.input_shape, ds.num_classes, ds.in_features
        ((1, 8, 8), 10, 64)
    """
    _check_args(val_fraction, limit)
    name, raw = _raw(name, data_dir)
    train, val, test = _split(raw, seed, val_fraction, limit)
    mean, std = _channel_stats(train[0])
    tensors = {}
    for split, (x, y) in {"train": train, "val": val, "test": test}.items():
        tensors[f"x_{split}"] = _standardize(x, mean, std)
        tensors[f"y_{split}"] = torch.from_numpy(np.array(y, dtype=np.int64))
    return Dataset(
        name=name,
        num_classes=raw.num_classes,
        input_shape=tuple(raw.x_train.shape[1:]),
        source=raw.source,
        **tensors,
    )
