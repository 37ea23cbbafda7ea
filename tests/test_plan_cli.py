"""``initlab plan``: load a model from a spec, print its plan, apply and save it; bad input is
one plain error line, never a traceback."""

from __future__ import annotations

import math

import pytest
import torch

import initlab.cli.plan  # noqa: F401  (registers the command)
from _cli import NEEDS_ARGS, assert_one_error_line, invoke
from initlab.plan import plan as make_plan

NET = """
import torch
from torch import nn


def build():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 16),
                         nn.Tanh(), nn.Linear(16, 3))


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.act, self.head = nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2)

    def forward(self, x):
        h = self.act(self.body(x))
        return self.head(h) if h.sum() >= 0 else self.head(-h)


def broken():
    raise RuntimeError("no weights today")


def not_a_model():
    return 42
""" + NEEDS_ARGS


def run(*args: object):
    return invoke("plan", *args)


def _build():
    namespace: dict = {}
    exec(NET, namespace)  # the same factory, built in-process
    return namespace["build"]()


def test_prints_the_plan_from_a_file_spec(net_file):
    result = run(f"{net_file}:build")
    assert result.exit_code == 0, result.output
    for piece in ("InitPlan", "0.weight", "4x1x3x3", "relu", "3.weight", "tanh", "5.weight"):
        assert piece in result.stdout
    assert f"{math.sqrt(2 / 9):.4g}" in result.stdout  # He std of the conv: sqrt(2 / (1*3*3))


def test_module_spec(net_file, monkeypatch):
    monkeypatch.syspath_prepend(str(net_file.parent))
    result = run("net:build", "--scheme", "xavier_uniform")
    assert result.exit_code == 0, result.output
    assert "xavier_uniform" in result.stdout and "scheme=xavier_uniform" in result.stdout


def test_mode_and_repeated_overrides(net_file):
    result = run(f"{net_file}:build", "--mode", "fan_out", "--override", "5=zeros",
                 "--override", "Conv2d=orthogonal")
    assert result.exit_code == 0, result.output
    lines = {line.split()[1]: line for line in result.stdout.splitlines()
             if line.startswith("│ ") and "." in line.split()[1]}
    assert "zeros" in lines["5.weight"]
    assert "orthogonal" in lines["0.weight"]
    assert "auto" in lines["3.weight"]


def test_apply_seed_save_writes_the_planned_weights(net_file, tmp_path):
    out = tmp_path / "sub" / "init.pt"
    result = run(f"{net_file}:build", "--apply", "--seed", "4", "--save", str(out))
    assert result.exit_code == 0, result.output
    assert "seed 4" in result.stdout and str(out) in result.stdout
    saved = torch.load(out, weights_only=True)
    expected = make_plan(_build()).apply(torch.Generator().manual_seed(4)).state_dict()
    assert saved.keys() == expected.keys()
    assert all(torch.equal(saved[k], expected[k]) for k in saved)
    other = make_plan(_build()).apply(torch.Generator().manual_seed(5)).state_dict()
    assert not torch.equal(saved["3.weight"], other["3.weight"])


def test_untraceable_model_warns_with_input_shape(net_file):
    result = run(f"{net_file}:Untraceable", "--input-shape", "5")
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "guessed from hooks: body, head" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["{dir}/missing.py:build"], "no such file"),
    (["{file}"], "FILE.py:factory"),
    (["{file}:buid"], "did you mean 'build'?"),
    (["{file}:broken"], "RuntimeError: no weights today"),
    (["{file}:not_a_model"], "not a torch.nn.Module"),
    (["{file}:needs_args"], "needs arguments (width)"),
    (["no_such_package_xyz.nets:build"], "cannot import module 'no_such_package_xyz.nets'"),
    (["{file}:build", "--scheme", "he_norml"], "did you mean 'he_normal'?"),
    (["{file}:build", "--mode", "fan_inn"], "did you mean 'fan_in'?"),
    (["{file}:build", "--scheme", "critical", "--mode", "fan_out"],
     "does not fit scheme='critical'"),
    (["{file}:build", "--override", "head"], "is not GLOB=SCHEME"),
    (["{file}:build", "--input-shape", "1,x"], "is not comma-separated integers"),
    (["{file}:build", "--save", "out.pt"], "add --apply"),
])
def test_bad_input_is_one_error_line(net_file, args, message):
    args = [a.format(file=net_file, dir=net_file.parent) for a in args]
    assert_one_error_line(run(*args), message)
