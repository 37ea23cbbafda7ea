"""``initlab doctor``: diagnose a model's initialization on one batch, show the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console

from initlab._names import unknown
from initlab.cli._app import app, fail, output
from initlab.cli._loading import load_batch, load_model, parse_batch_shape
from initlab.probe import diagnose
from initlab.probe.plots import profile_figure, save, write_html

FIX_METHODS = ("plan", "lsuv")


@app.command()
def doctor(
    model: Annotated[str, typer.Argument(
        help="the model: FILE.py:factory or package.module:factory (called with no arguments)")],
    input_shape: Annotated[str, typer.Option(help="batch shape, e.g. 64,784 or 32,3,32,32")],
    data: Annotated[str | None, typer.Option(
        help="take the batch and its labels from a data set (digits, fashion-mnist, ...); "
             "default: N(0, 1) inputs and a random projection as the loss")] = None,
    html: Annotated[Path | None, typer.Option(help="write an HTML report with the profiles")]
    = None,
    png: Annotated[Path | None, typer.Option(help="write the per-layer profiles as PNG")] = None,
    fix: Annotated[bool, typer.Option(help="apply the proposed init plan and diagnose again")]
    = False,
    fix_with: Annotated[str, typer.Option(
        help="with --fix: 'plan' (the proposed InitPlan) or 'lsuv' (initlab.adaptive.lsuv, "
             "layer-sequential unit variance on the batch)")] = "plan",
    save_to: Annotated[Path | None, typer.Option("--save", help="with --fix: write the fixed "
                                                 "model's state_dict here (torch.save)")] = None,
    seed: Annotated[int, typer.Option(help="seeds the batch, the loss projection and the fix")]
    = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    eval_mode: Annotated[bool, typer.Option("--eval", help="probe in eval mode (BatchNorm "
                                            "running statistics) instead of training mode")]
    = False,
) -> None:
    """Diagnose MODEL's initialization on one batch: per-layer statistics, a verdict
    (healthy, vanishing, exploding, saturated, dead) and a fix as an init plan.

    Example: initlab doctor my_net.py:build --input-shape 64,784 --png profile.png
    """
    if save_to is not None and not fix:
        raise fail("--save writes the fixed model: give --fix too")
    if fix_with not in FIX_METHODS:
        raise fail(unknown("fix method", fix_with, FIX_METHODS))
    try:
        shape = parse_batch_shape(input_shape)
        net = load_model(model).to(device)
        x, y = load_batch(shape[0], shape[1:], data, seed)
        x, y = x.to(device), None if y is None else y.to(device)
        report = diagnose(net, x, y, train=not eval_mode, seed=seed)
    except (ValueError, LookupError, OSError) as error:
        raise fail(error) from None
    out = output()
    out.print(report)
    if png is not None:
        save(profile_figure(report), png)
        out.print(f"wrote {png}", highlight=False)
    if html is not None:
        write_html(report, html)
        out.print(f"wrote {html}", highlight=False)
    if report.fixes is None:
        out.print("no fix needed", highlight=False)
    else:
        out.print("proposed fix:", highlight=False)
        for note in report.fix_notes:
            out.print(f"  - {note}", highlight=False, markup=False)
        out.print(report.fixes)
    if fix:
        _apply(out, report, fix_with, x, y, seed, eval_mode, save_to)


def _apply(out: Console, report, method: str, x, y, seed: int, eval_mode: bool,
           save_to: Path | None) -> None:
    if report.fixes is not None:
        if method == "lsuv":
            from initlab.adaptive import lsuv

            out.print(lsuv(report.model, x, generator=seed))
        else:
            report.fixes.apply(seed)
        after = diagnose(report.model, x, y, train=not eval_mode, seed=seed)
        out.print(f"after the fix: {after.verdict}: {after.reason}", highlight=False,
                  markup=False)
    if save_to is not None:
        save_to.parent.mkdir(parents=True, exist_ok=True)
        torch.save(report.model.state_dict(), save_to)
        out.print(f"wrote {save_to} (state_dict"
                  f"{', unchanged: nothing to fix' if report.fixes is None else ''})",
                  highlight=False)
