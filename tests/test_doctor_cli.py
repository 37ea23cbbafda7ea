"""``initlab doctor``: verdict and fix on the command line, profiles as PNG/HTML, ``--fix
--save``; bad input is one plain error line, never a traceback."""

from __future__ import annotations

import textwrap

import pytest
import torch

import initlab.cli.doctor  # noqa: F401  (registers the command)
from _cli import NEEDS_ARGS, assert_one_error_line, invoke
from initlab.cli._loading import ModelLoadError, load_model
from initlab.probe import diagnose

NET = """
import math

import torch
from torch import nn


def sigmoid_net():
    gen = torch.Generator().manual_seed(0)
    layers, d = [], 64
    for _ in range(6):
        layer = nn.Linear(d, 32)
        with torch.no_grad():
            layer.weight.normal_(0, math.sqrt(2 / (d + 32)), generator=gen)
            layer.bias.zero_()
        layers += [layer, nn.Sigmoid()]
        d = 32
    return nn.Sequential(*layers, nn.Linear(32, 10))


def healthy():
    from initlab.plan import init_model
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    init_model(model, generator=0)
    return model


def no_params():
    return nn.Sequential(nn.ReLU())
""" + NEEDS_ARGS


def run(*args: object):
    return invoke("doctor", *args)


def test_doctor_prints_the_verdict_applies_the_fix_and_saves(net_file, tmp_path):
    out = tmp_path / "fixed.pt"
    result = run(f"{net_file}:sigmoid_net", "--input-shape", "64,64", "--fix", "--save", out)
    assert result.exit_code == 0, result.output
    assert "verdict: vanishing" in result.stdout
    assert "proposed fix:" in result.stdout and "centred sigmoid inputs" in result.stdout
    assert "after the fix: healthy" in result.stdout
    model = load_model(f"{net_file}:sigmoid_net")
    model.load_state_dict(torch.load(out))
    x = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))  # the doctor's batch
    assert diagnose(model, x).verdict == "healthy"


def test_doctor_writes_png_and_html_profiles(net_file, tmp_path):
    png, page = tmp_path / "profile.png", tmp_path / "report.html"
    result = run(f"{net_file}:healthy", "--input-shape", "16,64", "--png", png, "--html", page)
    assert result.exit_code == 0, result.output
    assert "verdict: healthy" in result.stdout and "no fix needed" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    assert "<img alt='per-layer profiles' src='data:image/png;base64," in text
    assert "healthy" in text and "<table>" in text


def test_doctor_reads_a_batch_from_a_data_set(net_file):
    result = run(f"{net_file}:healthy", "--input-shape", "32,64", "--data", "digits")
    assert result.exit_code == 0, result.output
    assert "verdict: healthy" in result.stdout


def test_doctor_takes_a_package_module_factory(tmp_path, monkeypatch):
    (tmp_path / "doctor_nets_xyz.py").write_text(textwrap.dedent(NET))
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run("doctor_nets_xyz:healthy", "--input-shape", "8,64")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(("args", "message"), [
    (["{file}:sigmoid_net", "--input-shape", "8,100"],
     "input of shape (8, 100) does not fit Sequential: layer '0' (Linear) expects inputs of "
     "shape (*, 64), got (8, 100)"),
    (["{file}:no_params", "--input-shape", "8,64"], "Sequential has no parameters"),
    (["{file}:sigmoid_nt", "--input-shape", "8,64"], "did you mean 'sigmoid_net'?"),
    (["{file}:needs_args", "--input-shape", "8,64"], "needs arguments (width)"),
    (["{file}", "--input-shape", "8,64"], "is not FILE.py:factory"),
    (["{dir}/missing.py:build", "--input-shape", "8,64"], "no such file"),
    (["{file}:healthy", "--input-shape", "8"], "--input-shape '8' must be a batch size"),
    (["{file}:healthy", "--input-shape", "8,784", "--data", "digits"],
     "examples of shape 784 (--input-shape) want 784 values per example; digits examples are "
     "1x8x8 (64 values)"),
    (["{file}:healthy", "--input-shape", "8,64", "--data", "digitz"], "did you mean 'digits'?"),
    (["{file}:healthy", "--input-shape", "8,64", "--save", "x.pt"], "give --fix too"),
    (["{file}:healthy", "--input-shape", "8,64", "--fix", "--fix-with", "lsv"],
     "did you mean 'lsuv'?"),
])
def test_bad_input_is_one_error_line(net_file, args, message):
    args = [a.format(file=net_file, dir=net_file.parent) for a in args]
    assert_one_error_line(run(*args), message)


def test_loading_errors_are_model_load_errors(net_file):
    with pytest.raises(ModelLoadError, match="not a factory or a model"):
        load_model(f"{net_file}:math")
