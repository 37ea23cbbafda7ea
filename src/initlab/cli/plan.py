"""``initlab plan SPEC``: print the InitPlan of a model; optionally apply it and save the weights.

``SPEC`` names a zero-argument factory (a function or class) that returns an ``nn.Module``:
``path/to/file.py:factory`` or ``package.module:factory``.

    initlab plan examples/net.py:build
    initlab plan initlab.models:resnet18 --zero-residual
    initlab plan mypkg.nets:Net --override 'head=zeros' --override 'Conv2d=orthogonal'
    initlab plan mypkg.nets:Net --apply --seed 3 --save net-init.pt
    initlab plan examples/net.py:build --scheme lsuv --data digits --input-shape 64,64
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.markup import escape
from torch import nn

from initlab import init as schemes
from initlab._state import preserved
from initlab.cli._app import app, fail, output
from initlab.cli._loading import load_batch, load_model, parse_batch_shape
from initlab.plan import DATA_SCHEMES, MODE_SCHEMES, PLAN_SCHEMES
from initlab.plan import plan as make_plan

err = Console(stderr=True, soft_wrap=True)

class OptionError(ValueError):
    """A bad option value; the message says why."""


def _load(spec: str) -> nn.Module:
    """The model ``spec`` names; any failure of the user's code becomes one ValueError line."""
    try:
        return load_model(spec)
    except ValueError:
        raise
    except Exception as error:  # noqa: BLE001 - a user's file or factory may fail in any way
        raise OptionError(f"loading {spec} failed: {type(error).__name__}: {error}") from None


def _module_type(key: str) -> type[nn.Module] | None:
    cls = getattr(nn, key, None)
    return cls if isinstance(cls, type) and issubclass(cls, nn.Module) else None


def parse_overrides(items: list[str]) -> dict[str | type, str]:
    """``['head=zeros', 'Conv2d=orthogonal']`` -> {glob or torch.nn type: scheme}."""
    overrides: dict[str | type, str] = {}
    for item in items:
        key, sep, scheme = item.partition("=")
        if not sep or not key.strip() or not scheme.strip():
            raise OptionError(f"--override {item!r} is not GLOB=SCHEME (e.g. 'head=zeros' or "
                            "'Conv2d=orthogonal')")
        key = key.strip()
        overrides[_module_type(key) or key] = scheme.strip()
    return overrides


DATA_BATCH = 64  # examples taken from --data when no --input-shape says how many


def _example_input(scheme: str, shape: str | None, data: str | None,
                   seed: int) -> torch.Tensor | None:
    """The batch the plan runs on: a data set's examples or seeded N(0, 1), never zeros (a
    data scheme calibrates on it: zeros have no second moment to scale)."""
    if shape is None and data is None:
        if scheme in DATA_SCHEMES:
            raise OptionError(f"--scheme {scheme} calibrates on a batch: give --input-shape "
                              "(N(0, 1) examples) or --data NAME (a data set's examples)")
        return None
    if shape is None:
        return load_batch(DATA_BATCH, None, data, seed)[0]
    batch = parse_batch_shape(shape)
    return load_batch(batch[0], batch[1:], data, seed)[0]


# bad spec, option, scheme, mode, data set or batch: one error line, no traceback
_BAD_INPUT = (ValueError, LookupError, OSError)


def _check_batch(model: nn.Module, example: torch.Tensor | None) -> None:
    """Run the model once on the example batch (eval mode, no autograd, every mode and buffer
    restored), so that a batch it cannot take is one error line, not a traceback from inside
    planning or LSUV."""
    if example is None:
        return
    try:
        with preserved(model), torch.no_grad():
            model.eval()
            model(example)
    except Exception as error:  # noqa: BLE001 - the user's forward may fail in any way
        line = (str(error).strip() or type(error).__name__).splitlines()[0]
        raise OptionError(f"the model failed on the example batch of shape "
                          f"{tuple(example.shape)} (--input-shape, --data): {line}") from None


def _scheme_help() -> str:
    return (f"{', '.join(PLAN_SCHEMES)} ({' and '.join(DATA_SCHEMES)} calibrate on the example "
            f"batch: give --input-shape or --data), or an initlab.init scheme: "
            f"{', '.join(schemes.names())} (aliases: {', '.join(schemes.ALIASES)})")


def _mode_help() -> str:
    return (f"{' | '.join(schemes.MODES)}: the fan the weights are divided by; the gain goes "
            "with it (backward over fan_out). Default: the scheme's own (fan_in for auto). "
            f"Taken by {', '.join(MODE_SCHEMES)}; an error where it cannot apply")


@app.command()
def plan(
    spec: Annotated[str, typer.Argument(
        help="FILE.py:factory or package.module:factory, a zero-argument callable returning "
             "an nn.Module")],
    scheme: Annotated[str, typer.Option(help=_scheme_help())] = "auto",
    mode: Annotated[str | None, typer.Option(help=_mode_help())] = None,
    override: Annotated[list[str] | None, typer.Option(
        help="GLOB=SCHEME (layer or parameter name glob, or a torch.nn type such as Conv2d); "
             "repeatable")] = None,
    zero_output: Annotated[bool, typer.Option(help="zero the output layer's weights")] = False,
    zero_residual: Annotated[bool, typer.Option(
        help="zero the last layer of each residual branch")] = False,
    input_shape: Annotated[str | None, typer.Option(
        help="the example batch's shape, batch size first as for doctor, e.g. 64,1,28,28: "
             "N(0, 1) drawn from a stream of its own derived from SEED (or --data's examples, "
             "reshaped); propagate and lsuv calibrate on it, and it finds the activations if "
             "torch.fx cannot trace the model")] = None,
    data: Annotated[str | None, typer.Option(
        help="take the example batch from a data set (digits, fashion-mnist, ...): its "
             "first training examples, of --input-shape or 64 of the data set's own "
             "shape")] = None,
    apply: Annotated[bool, typer.Option("--apply", help="initialize the model as planned")]
    = False,
    seed: Annotated[int, typer.Option(
        help="seeds the example batch and the generator --apply draws from")] = 0,
    save: Annotated[Path | None, typer.Option(
        help="with --apply: write the initialized state_dict here (torch.save)")] = None,
) -> None:
    """Print the InitPlan of a model (nothing changes); --apply --seed N --save out.pt writes
    the initialized state_dict."""
    try:
        if save is not None and not apply:
            raise OptionError("--save writes the initialized weights: add --apply")
        model = _load(spec)
        example = _example_input(scheme, input_shape, data, seed)
        _check_batch(model, example)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = make_plan(model, example, scheme=scheme, mode=mode,
                               overrides=parse_overrides(override or []),
                               zero_output=zero_output, zero_residual=zero_residual)
    except _BAD_INPUT as error:
        raise fail(error) from None
    for warning in caught:
        err.print(f"[yellow]warning:[/] {escape(str(warning.message))}")
    out = output()
    out.print(result)
    if apply:
        result.apply(torch.Generator().manual_seed(seed))
        count = sum(p.numel() for p in model.parameters())
        message = f"initialized {count:,} parameters with seed {seed}"
        if save is not None:
            save.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), save)
            message += f"; saved the state_dict to {save}"
        out.print(escape(message), highlight=False)
