"""The activation registry: every entry's function, derivative and facts, checked independently."""

import math

import pytest
import torch
from torch import nn

from initlab import activations

ARTICLE = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu"]
GRID = torch.linspace(-6, 6, 2001, dtype=torch.float64)


def autograd_derivative(fn, x):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(x).sum(), x)
    return grad


def test_registry_has_the_article_and_modern_activations():
    expected = set(ARTICLE) | {"selu", "gelu", "gelu_tanh", "silu", "mish", "softplus", "celu",
                               "softsign", "hardtanh", "hardswish", "hardsigmoid", "relu6",
                               "prelu"}
    assert expected <= set(activations.names())


def test_article_parameters():
    assert activations.get("leaky_relu").params == {"alpha": 0.01}
    assert activations.get("elu").params == {"alpha": 1.0}


@pytest.mark.parametrize("name", activations.names())
def test_function_matches_its_module(name):
    act = activations.get(name)
    module = act.module().double()
    torch.testing.assert_close(act.fn(GRID), module(GRID))


@pytest.mark.parametrize("name", activations.names())
def test_derivative_matches_autograd(name):
    act = activations.get(name)
    # Away from kinks, where the derivative is defined. 1e-7 relative: torch's own hardsigmoid
    # backward multiplies by a single-precision 1/6; every other entry agrees to float64 rounding.
    away = GRID[torch.stack([(GRID - k).abs() > 1e-3 for k in act.kinks]).all(0)] \
        if act.kinks else GRID
    torch.testing.assert_close(act.derivative(away), autograd_derivative(act.fn, away),
                               rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("name", activations.names())
def test_output_range_holds(name):
    act = activations.get(name)
    lo, hi = act.output_range
    y = act.fn(torch.linspace(-50, 50, 100001, dtype=torch.float64))
    # Ranges of GELU, SiLU, Mish, Hardswish are their minima to 4 digits.
    assert y.min() >= lo - 1e-3 and y.max() <= hi + 1e-12


@pytest.mark.parametrize("name", activations.names())
def test_monotonic_and_zero_centred_facts(name):
    act = activations.get(name)
    y = act.fn(GRID)
    assert bool((y.diff() >= -1e-15).all()) == act.monotonic
    odd = torch.allclose(act.fn(-GRID), -y)
    assert odd == act.zero_centred


def test_saturating_facts_follow_the_derivative():
    for name in activations.names():
        act = activations.get(name)
        d = act.derivative(torch.tensor([-1e4, 1e4], dtype=torch.float64)).abs()
        assert bool((d < 1e-6).all()) == act.saturating, name


def test_resolve_reads_module_parameters():
    assert activations.resolve(nn.LeakyReLU(0.2)).params == {"alpha": 0.2}
    assert activations.resolve(nn.ELU(alpha=0.5)).params == {"alpha": 0.5}
    assert activations.resolve(nn.GELU(approximate="tanh")).name == "gelu_tanh"
    assert activations.resolve(nn.ReLU6()).name == "relu6"  # not its base class Hardtanh
    assert activations.resolve(nn.Tanh).name == "tanh"
    assert activations.resolve("Swish").name == "silu"


def test_resolve_custom_callable_and_register():
    act = activations.resolve(torch.sin)
    assert act.name == "sin" and act.output_range is None
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)
    torch.testing.assert_close(act.derivative(x), torch.cos(x))
    try:
        entry = activations.register("sin_test", torch.sin, output_range=(-1.0, 1.0))
        assert activations.get("sin_test") is entry
    finally:
        activations._REGISTRY.pop("sin_test")


def test_unknown_name_names_the_closest_match():
    with pytest.raises(ValueError, match=r"'tanhh'.*did you mean 'tanh'.*valid:.*relu"):
        activations.get("tanhh")


def test_selu_constants():
    # Klambauer et al. 2017 give alpha and lambda to 1e-10 or better.
    assert math.isclose(activations.SELU_ALPHA, 1.6732632423543772, rel_tol=1e-15)
    x = torch.tensor([-1.0], dtype=torch.float64)
    expected = activations.SELU_SCALE * activations.SELU_ALPHA * (math.exp(-1.0) - 1)
    assert math.isclose(float(activations.get("selu").fn(x)), expected, rel_tol=1e-12)
