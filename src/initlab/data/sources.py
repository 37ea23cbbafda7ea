"""Where examples come from: raw arrays as stored, checked, before any split.

Each source returns a :class:`Raw`: ``x`` shaped ``(N, *input_shape)``,
integer labels, and the official test set when the data set has one. Raw
arrays are cached in-process (``functools.lru_cache``), read-only, so a
second ``load`` costs a split and a standardization, not a parse.

Sources:

* ``idx_folder`` -- any folder of MNIST-format IDX files
  (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]`` and,
  optionally, the ``t10k-`` pair); Fashion-MNIST (Xiao, Rasul & Vollgraf
  2017, arXiv:1708.07747) is such a folder, installed by Debian's
  ``dataset-fashion-mnist`` package under :data:`FASHION_MNIST_DIR`.
* ``digits`` -- scikit-learn's bundled 8x8 digits (the UCI optical
  recognition set, Alpaydin & Kaynak 1998), 1797 examples, no download.
* ``mnist1d`` -- MNIST-1D (Greydanus & Kobak, "Scaling down deep learning
  with MNIST-1D", ICML 2024) generated locally by ``mnist1d.data.make_dataset``
  with the paper's default arguments; its downloading loader is never used.
* ``synthetic`` -- a teacher-student task (Gardner & Derrida 1989): Gaussian
  inputs labelled by the argmax of a fixed random tanh teacher network.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from initlab.data.idx import read_idx

#: Where Debian's ``dataset-fashion-mnist`` package puts its IDX files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = 10

#: MNIST-1D's own generator seed (``get_dataset_args().seed``): the published data set.
MNIST1D_SEED = 42

SYNTHETIC_EXAMPLES = 3000
SYNTHETIC_FEATURES = 20
SYNTHETIC_HIDDEN = 64
SYNTHETIC_CLASSES = 4
#: The teacher and its inputs are fixed: the task is one task, whatever the run's seed.
SYNTHETIC_TEACHER_SEED = 20240601

_SPLITS = {"train": "train", "t10k": "test", "test": "test"}
_IDX_FILE = re.compile(
    r"(?:^|[-_.])(?P<split>train|t10k|test)[-_.](?P<kind>images[-_.]idx3|labels[-_.]idx1)"
    r"[-_.]ubyte(?:\.gz)?$"
)


@dataclass(frozen=True, eq=False)
class Raw:
    """A data set as stored: ``x`` is ``(N, *input_shape)``, ``y`` int64 labels.

    ``x_test``/``y_test`` are the official test set, or None when there is none.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    num_classes: int
    source: str


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


# ---------------------------------------------------------------- IDX folders


def _find_idx_files(folder: Path) -> dict[tuple[str, str], Path]:
    """Map (split, 'images'|'labels') -> file, preferring a plain file over its ``.gz``."""
    found: dict[tuple[str, str], list[Path]] = {}
    for path in sorted(folder.iterdir()):
        match = _IDX_FILE.search(path.name)
        if match and path.is_file():
            key = (_SPLITS[match["split"]], match["kind"][:6])
            found.setdefault(key, []).append(path)
    files = {}
    for key, paths in found.items():
        plain = [p for p in paths if p.suffix != ".gz" or p.with_suffix("") not in paths]
        if len(plain) > 1:
            names = ", ".join(p.name for p in plain)
            raise ValueError(f"{folder}: several {key[0]} {key[1]} files ({names}); keep one")
        files[key] = plain[0]
    return files


@functools.lru_cache(maxsize=16)
def _read_cached(path: str, mtime_ns: int, size: int) -> np.ndarray:
    return _frozen(read_idx(path))


def _read(path: Path) -> np.ndarray:
    stat = path.stat()
    return _read_cached(str(path), stat.st_mtime_ns, stat.st_size)


def _read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = _read(images_path), _read(labels_path)
    if images.ndim != 3:
        raise ValueError(f"{images_path}: images must be 3-d (N, H, W), got shape {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{labels_path}: labels must be 1-d (N,), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{labels_path}: labels must be integers, got {labels.dtype}")
    if len(images) != len(labels):
        raise ValueError(
            f"{images_path}: {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    return images, labels


def _check_labels(labels: np.ndarray, num_classes: int, path: Path) -> None:
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise ValueError(
            f"{path}: label {int(labels[bad][0])} out of range [0, {num_classes}) "
            f"({int(bad.sum())} of {len(labels)} labels)"
        )


def idx_folder(folder: str | Path, num_classes: int | None = None) -> Raw:
    """Read a folder of MNIST-format IDX files, checked.

    Needs ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte`` (``.gz``
    or not; a prefix such as ``emnist-balanced-`` and ``.`` for ``-`` are
    accepted); the ``t10k-`` (or ``test-``) pair, when present, is the official
    test set. Checks every file's magic number and length, images 3-d and as
    many as labels, equal image sizes across splits, and labels in
    ``[0, num_classes)``; ``num_classes`` defaults to the largest training
    label + 1. Images come back as ``(N, 1, H, W)``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such IDX folder")
    files = _find_idx_files(folder)
    has_train = [("train", kind) in files for kind in ("images", "labels")]
    has_test = [("test", kind) in files for kind in ("images", "labels")]
    if not all(has_train) or any(has_test) != all(has_test):
        present = ", ".join(p.name for p in sorted(folder.iterdir())) or "nothing"
        raise FileNotFoundError(
            f"{folder}: needs train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz], "
            f"and optionally both t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]; "
            f"found: {present}"
        )
    x_train, y_train = _read_pair(files["train", "images"], files["train", "labels"])
    x_test = y_test = None
    if all(has_test):
        x_test, y_test = _read_pair(files["test", "images"], files["test", "labels"])
        if x_test.shape[1:] != x_train.shape[1:]:
            raise ValueError(
                f"{files['test', 'images']}: images are {x_test.shape[1:]}, "
                f"but {files['train', 'images']} has {x_train.shape[1:]}"
            )
    if len(y_train) == 0:
        raise ValueError(f"{files['train', 'labels']}: no training examples")
    if num_classes is None:
        num_classes = int(y_train.max()) + 1
    _check_labels(y_train, num_classes, files["train", "labels"])
    if y_test is not None:
        _check_labels(y_test, num_classes, files["test", "labels"])
    return Raw(
        x_train=x_train[:, None],
        y_train=_frozen(y_train.astype(np.int64)),
        x_test=None if x_test is None else x_test[:, None],
        y_test=None if y_test is None else _frozen(y_test.astype(np.int64)),
        num_classes=num_classes,
        source=str(folder),
    )


def fashion_mnist_installed(folder: str | Path | None = None) -> bool:
    """True when ``folder`` (default :data:`FASHION_MNIST_DIR`) holds the train IDX pair."""
    folder = Path(FASHION_MNIST_DIR if folder is None else folder)
    if not folder.is_dir():
        return False
    files = _find_idx_files(folder)
    return ("train", "images") in files and ("train", "labels") in files


def fashion_mnist(folder: str | Path | None = None) -> Raw:
    """Fashion-MNIST: 60000 train + 10000 test 28x28 grey images, 10 classes."""
    folder = FASHION_MNIST_DIR if folder is None else folder
    if not Path(folder).is_dir():
        raise FileNotFoundError(
            f"{folder}: Fashion-MNIST not found; install it with "
            "'apt-get install dataset-fashion-mnist', pass data_dir, or use 'digits'"
        )
    return idx_folder(folder, num_classes=FASHION_MNIST_CLASSES)


# ------------------------------------------------------------ generated sets


@functools.lru_cache(maxsize=1)
def digits() -> Raw:
    """scikit-learn's bundled 8x8 digits as ``(1797, 1, 8, 8)``, values 0-16; no test set."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return Raw(
        x_train=_frozen(bunch.images[:, None].astype(np.float32)),
        y_train=_frozen(bunch.target.astype(np.int64)),
        x_test=None,
        y_test=None,
        num_classes=10,
        source="sklearn.datasets.load_digits (bundled, UCI optical digits)",
    )


@functools.lru_cache(maxsize=1)
def mnist1d() -> Raw:
    """MNIST-1D as ``(N, 1, 40)``: 4000 train + 1000 official test sequences, 10 classes.

    ``make_dataset`` seeds numpy's and Python's global generators; their state
    is saved and restored, so loading leaves the caller's randomness untouched.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = MNIST1D_SEED
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return Raw(
        x_train=_frozen(data["x"][:, None].astype(np.float32)),
        y_train=_frozen(data["y"].astype(np.int64)),
        x_test=_frozen(data["x_test"][:, None].astype(np.float32)),
        y_test=_frozen(data["y_test"].astype(np.int64)),
        num_classes=10,
        source=f"mnist1d.data.make_dataset (generated locally, seed {MNIST1D_SEED})",
    )


@functools.lru_cache(maxsize=1)
def synthetic() -> Raw:
    """A fixed teacher network's classes on Gaussian inputs; no test set.

    ``x ~ N(0, I_d)``, ``y = argmax_k (W2 tanh(W1 x))_k`` with
    ``W1_ij ~ N(0, 1/d)``, ``W2_ij ~ N(0, 1/h)`` (d = 20, h = 64, 4 classes,
    3000 examples), all drawn from one seeded ``torch.Generator``: a task a
    small student MLP can learn perfectly, in a second, for fast tests.
    """
    n, d, h, k = SYNTHETIC_EXAMPLES, SYNTHETIC_FEATURES, SYNTHETIC_HIDDEN, SYNTHETIC_CLASSES
    gen = torch.Generator().manual_seed(SYNTHETIC_TEACHER_SEED)
    x = torch.randn(n, d, generator=gen)
    w1 = torch.randn(d, h, generator=gen) / d**0.5
    w2 = torch.randn(h, k, generator=gen) / h**0.5
    y = (torch.tanh(x @ w1) @ w2).argmax(dim=1)
    return Raw(
        x_train=_frozen(x.numpy()),
        y_train=_frozen(y.numpy()),
        x_test=None,
        y_test=None,
        num_classes=k,
        source=f"teacher MLP {d}-{h}-{k} (tanh), seed {SYNTHETIC_TEACHER_SEED}",
    )
