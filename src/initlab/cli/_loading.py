"""Load a model named on the command line: ``FILE.py:factory`` or ``package.module:factory``.

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
import sys
import uuid
from pathlib import Path
from types import ModuleType

from torch import nn

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
