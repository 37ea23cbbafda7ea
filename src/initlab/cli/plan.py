"""``initlab plan SPEC``: print the InitPlan of a model; optionally apply it and save the weights.

``SPEC`` names a zero-argument factory (a function or class) that returns an ``nn.Module``:
``path/to/file.py:factory`` or ``package.module:factory``.

    initlab plan examples/net.py:build
    initlab plan initlab.models:resnet18 --zero-residual
    initlab plan mypkg.nets:Net --override 'head=zeros' --override 'Conv2d=orthogonal'
    initlab plan mypkg.nets:Net --apply --seed 3 --save net-init.pt
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

from initlab.cli._app import app
from initlab.cli._loading import load_model
from initlab.plan import plan as make_plan

err = Console(stderr=True, soft_wrap=True)
_PIPE_WIDTH = 200  # piped or captured output: no terminal to fit, keep every name whole


def _out() -> Console:
    console = Console(soft_wrap=True)
    return console if console.is_terminal else Console(width=_PIPE_WIDTH, soft_wrap=True)


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


def _example_input(shape: str | None) -> torch.Tensor | None:
    if shape is None:
        return None
    try:
        dims = [int(d) for d in shape.split(",")]
    except ValueError:
        raise OptionError(f"--input-shape {shape!r} is not comma-separated integers "
                        "(e.g. 1,28,28)") from None
    return torch.zeros(2, *dims)


@app.command()
def plan(
    spec: Annotated[str, typer.Argument(
        help="FILE.py:factory or package.module:factory, a zero-argument callable returning "
             "an nn.Module")],
    scheme: Annotated[str, typer.Option(
        help="auto (exact gain of the following activation), torch_default, critical, or any "
             "initlab.init scheme")] = "auto",
    mode: Annotated[str, typer.Option(
        help="fan_in | fan_out | fan_avg for auto; critical, propagate and lsuv take fan_in "
             "only")] = "fan_in",
    override: Annotated[list[str] | None, typer.Option(
        help="GLOB=SCHEME (layer or parameter name glob, or a torch.nn type such as Conv2d); "
             "repeatable")] = None,
    zero_output: Annotated[bool, typer.Option(help="zero the output layer's weights")] = False,
    zero_residual: Annotated[bool, typer.Option(
        help="zero the last layer of each residual branch")] = False,
    input_shape: Annotated[str | None, typer.Option(
        help="one example's shape, e.g. 1,28,28: used if torch.fx cannot trace the model")]
    = None,
    apply: Annotated[bool, typer.Option("--apply", help="initialize the model as planned")]
    = False,
    seed: Annotated[int, typer.Option(help="seed of the generator --apply draws from")] = 0,
    save: Annotated[Path | None, typer.Option(
        help="with --apply: write the initialized state_dict here (torch.save)")] = None,
) -> None:
    """Print the InitPlan of a model (nothing changes); --apply --seed N --save out.pt writes
    the initialized state_dict."""
    try:
        if save is not None and not apply:
            raise OptionError("--save writes the initialized weights: add --apply")
        model = _load(spec)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = make_plan(model, _example_input(input_shape), scheme=scheme, mode=mode,
                               overrides=parse_overrides(override or []),
                               zero_output=zero_output, zero_residual=zero_residual)
    except ValueError as error:  # bad spec, option, scheme or mode: one line, no traceback
        err.print(f"[bold red]error:[/] {escape(str(error) or type(error).__name__)}")
        raise typer.Exit(2) from None
    for warning in caught:
        err.print(f"[yellow]warning:[/] {escape(str(warning.message))}")
    out = _out()
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
