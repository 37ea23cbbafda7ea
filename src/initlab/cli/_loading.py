"""Load what a command line names: a model (``FILE.py:factory`` or ``package.module:factory``)
and a batch to run it on (``load_batch``).

``factory`` is a function or class called with no arguments that returns an
``nn.Module``, or an ``nn.Module`` instance itself. A file is imported as a fresh
module with its folder on ``sys.path`` for the time of the import (so it can import
its neighbours). Every failure is a ``ModelLoadError`` whose message names what was
given and what would work (the closest attribute name, the file that is missing).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import sys
import uuid
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import Tensor, nn

from initlab._names import unknown


class ModelLoadError(ValueError):
    """The spec names no loadable model."""


def _split(spec: str) -> tuple[str, str]:
    source, sep, attribute = spec.rpartition(":")
    if not sep or not source or not attribute:
        raise ModelLoadError(f"model spec {spec!r} is not FILE.py:factory or "
                             "package.module:factory")
    return source, attribute


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise ModelLoadError(f"no such file: {path}")
    name = f"_initlab_model_{path.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


def _import(source: str) -> ModuleType:
    if source.endswith(".py") or "/" in source or "\\" in source:
        return _import_file(Path(source))
    try:
        return importlib.import_module(source)
    except ModuleNotFoundError as error:
        raise ModelLoadError(f"cannot import module {source!r}: {error}; give a FILE.py path or "
                             "an importable package.module") from error


def load_object(spec: str) -> object:
    """The attribute ``factory`` of the file or module that ``spec`` names."""
    source, attribute = _split(spec)
    module = _import(source)
    if not hasattr(module, attribute):
        public = [n for n in vars(module) if not n.startswith("_") and
                  (callable(getattr(module, n)) or isinstance(getattr(module, n), nn.Module))]
        raise ModelLoadError(str(unknown(f"factory in {source}", attribute, public))) from None
    return getattr(module, attribute)


def _check_no_arguments(spec: str, factory) -> None:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins without a signature: just call them
        return
    required = [p.name for p in signature.parameters.values()
                if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD,
                                                       p.KEYWORD_ONLY)]
    if required:
        raise ModelLoadError(f"{spec} needs arguments ({', '.join(required)}) but is called with "
                             "none; wrap it in a function without arguments")


def load_model(spec: str) -> nn.Module:
    """The ``nn.Module`` that ``spec`` names: the object itself, or what calling it returns.

    Any failure, the user's code raising included, is one ``ModelLoadError``.
    """
    try:
        found = load_object(spec)
        if not isinstance(found, nn.Module):
            if not callable(found):
                raise ModelLoadError(f"{spec} is a {type(found).__name__}, not a factory or a "
                                     "model")
            _check_no_arguments(spec, found)
            found = found()
    except ModelLoadError:
        raise
    except Exception as error:  # noqa: BLE001 - the user's file or factory may fail in any way
        raise ModelLoadError(f"loading {spec} failed: {type(error).__name__}: {error}") from None
    if not isinstance(found, nn.Module):
        raise ModelLoadError(f"{spec}() returned a {type(found).__name__}, not a torch.nn.Module")
    return found


def parse_batch_shape(text: str) -> tuple[int, ...]:
    """``--input-shape``, the batch's shape: ``"64,784"`` -> (64, 784), the batch size first;
    a ValueError naming the bad text otherwise."""
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"--input-shape {text!r} must be a batch size and the example's shape, "
                         "comma-separated positive integers, e.g. 64,784 or 32,3,32,32")
    return shape


_BATCH_STREAM = 0xBA7C  # spawn key of the example batch's stream (see batch_generator)


def batch_generator(seed: int) -> torch.Generator:
    """The generator of the N(0, 1) example batch for ``seed``: a stream of its own, derived
    with NumPy's ``SeedSequence([seed, 0xBA7C])``. The weights are drawn from
    ``manual_seed(seed)`` itself; sharing that stream would make the first weight rows equal
    to the first examples, and LSUV would calibrate on a batch correlated with its weights
    (a first layer's output std of 0.53 instead of 1 on fresh data)."""
    entropy = np.random.SeedSequence([seed % 2**64, _BATCH_STREAM]).generate_state(1, np.uint64)
    return torch.Generator().manual_seed(int(entropy[0]))


def load_batch(count: int, example_shape: tuple[int, ...] | None, data: str | None,
               seed: int) -> tuple[Tensor, Tensor | None]:
    """``count`` examples of ``example_shape`` and their labels (None without ``data``).

    With ``data``: the first ``count`` training examples of ``initlab.data.load(data,
    seed=seed)``, reshaped to ``example_shape`` (by default the data set's own), which must
    hold as many values. Without: ``N(0, 1)`` drawn from ``batch_generator(seed)``.
    A bad shape or too small a data set is a ValueError naming both.
    """
    if data is None:
        if example_shape is None:
            raise ValueError("no example batch: give --input-shape (N(0, 1) examples) or "
                             "--data NAME (a data set's examples)")
        return torch.randn((count, *example_shape), generator=batch_generator(seed)), None
    from initlab.data import load

    dataset = load(data, seed=seed, limit=count)
    x, y = dataset.x_train[:count], dataset.y_train[:count]
    if len(x) < count:
        raise ValueError(f"{dataset.name} has {len(x)} training examples, fewer than the batch "
                         f"size {count}")
    shape = tuple(dataset.input_shape) if example_shape is None else tuple(example_shape)
    want, have = math.prod(shape), math.prod(dataset.input_shape)
    if want != have:
        raise ValueError(f"examples of shape {'x'.join(map(str, shape))} (--input-shape) want "
                         f"{want} values per example; {dataset.name} examples are "
                         f"{'x'.join(map(str, dataset.input_shape))} ({have} values)")
    return x.reshape(count, *shape), y
