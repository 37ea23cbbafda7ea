"""Gains and Gaussian moments against closed forms and an independent integration.

The reference is ``scipy.integrate.quad`` over plain-``math`` re-implementations of every
activation and its derivative (nothing from torch or initlab), split at each function's
kinks, so a wrong formula in the registry or a wrong quadrature in ``initlab.gains`` shows.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy import integrate
from torch import nn

from initlab import activations, gains

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
TOLERANCE = 1e-6  # the accuracy target for every moment and gain


def _sigmoid(x: float) -> float:
    return 0.5 * (1.0 + math.tanh(0.5 * x))  # overflow-free logistic


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _leaky(alpha: float):
    return (lambda x: x if x > 0 else alpha * x), (lambda x: 1.0 if x > 0 else alpha)


def _elu(alpha: float, scale: float = 1.0):
    return (lambda x: scale * (x if x > 0 else alpha * math.expm1(x)),
            lambda x: scale * (1.0 if x > 0 else alpha * math.exp(x)))


_C = math.sqrt(2.0 / math.pi)


def _gelu_tanh(x: float) -> float:
    return 0.5 * x * (1.0 + math.tanh(_C * (x + 0.044715 * x**3)))


def _gelu_tanh_derivative(x: float) -> float:
    t = math.tanh(_C * (x + 0.044715 * x**3))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _C * (1.0 + 3 * 0.044715 * x * x)


def _mish_derivative(x: float) -> float:
    t = math.tanh(_softplus(x))
    return t + x * (1.0 - t * t) * _sigmoid(x)


def _hardswish_derivative(x: float) -> float:
    return 0.0 if x < -3 else 1.0 if x > 3 else (2 * x + 3) / 6


# name -> (phi, phi', points where phi or phi' is not smooth)
REFERENCE = {
    "identity": (lambda x: x, lambda x: 1.0, ()),
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * (1 - _sigmoid(x)), ()),
    "tanh": (math.tanh, lambda x: 1.0 - math.tanh(x) ** 2, ()),
    "relu": (lambda x: max(x, 0.0), lambda x: float(x > 0), (0.0,)),
    "leaky_relu": (*_leaky(0.01), (0.0,)),
    "prelu": (*_leaky(0.25), (0.0,)),
    "elu": (*_elu(1.0), (0.0,)),
    "celu": (*_elu(1.0), (0.0,)),  # CELU with alpha = 1 is ELU
    "selu": (*_elu(SELU_ALPHA, SELU_SCALE), (0.0,)),
    "gelu": (lambda x: x * _cdf(x), lambda x: _cdf(x) + x * _pdf(x), ()),
    "gelu_tanh": (_gelu_tanh, _gelu_tanh_derivative, ()),
    "silu": (lambda x: x * _sigmoid(x), lambda x: _sigmoid(x) * (1 + x * (1 - _sigmoid(x))), ()),
    "mish": (lambda x: x * math.tanh(_softplus(x)), _mish_derivative, ()),
    "softplus": (_softplus, _sigmoid, ()),
    "softsign": (lambda x: x / (1 + abs(x)), lambda x: 1 / (1 + abs(x)) ** 2, (0.0,)),
    "hardtanh": (lambda x: min(max(x, -1.0), 1.0), lambda x: float(-1 < x < 1), (-1.0, 1.0)),
    "hardswish": (lambda x: x * min(max(x + 3, 0.0), 6.0) / 6, _hardswish_derivative,
                  (-3.0, 3.0)),
    "hardsigmoid": (lambda x: min(max(x + 3, 0.0), 6.0) / 6, lambda x: float(-3 < x < 3) / 6,
                    (-3.0, 3.0)),
    "relu6": (lambda x: min(max(x, 0.0), 6.0), lambda x: float(0 < x < 6), (0.0, 6.0)),
}


def quad_expectation(f, kinks=()) -> float:
    """E[f(z)], z ~ N(0, 1), by adaptive quadrature on pieces split at the kinks.

    [-40, 40] holds all of the mass that float64 can see (the density at 40 is e^-800).
    """
    cuts = sorted({-40.0, 0.0, *kinks, 40.0})
    return sum(integrate.quad(lambda z: f(z) * _pdf(z), a, b, epsabs=1e-13, epsrel=1e-12,
                              limit=200)[0] for a, b in zip(cuts[:-1], cuts[1:], strict=True))


def test_reference_covers_every_builtin_activation():
    assert set(REFERENCE) <= set(activations.names())


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_moments_match_independent_quadrature(name):
    phi, dphi, kinks = REFERENCE[name]
    m = gains.moments(name)
    assert m.mean == pytest.approx(quad_expectation(phi, kinks), abs=TOLERANCE)
    assert m.second_moment == pytest.approx(quad_expectation(lambda x: phi(x) ** 2, kinks),
                                            abs=TOLERANCE)
    assert m.derivative_second_moment == pytest.approx(
        quad_expectation(lambda x: dphi(x) ** 2, kinks), abs=TOLERANCE)
    assert m.variance == pytest.approx(m.second_moment - m.mean**2, abs=1e-15)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_gains_match_independent_quadrature(name):
    phi, dphi, kinks = REFERENCE[name]
    forward = 1 / math.sqrt(quad_expectation(lambda x: phi(x) ** 2, kinks))
    backward = 1 / math.sqrt(quad_expectation(lambda x: dphi(x) ** 2, kinks))
    assert gains.gain(name, "forward") == pytest.approx(forward, abs=TOLERANCE)
    assert gains.gain(name, "backward") == pytest.approx(backward, abs=TOLERANCE)


@pytest.mark.parametrize(("spec", "closed"), [
    ("identity", 1.0),
    ("relu", math.sqrt(2.0)),
    ("leaky_relu", math.sqrt(2.0 / (1 + 0.01**2))),
    (nn.LeakyReLU(0.2), math.sqrt(2.0 / (1 + 0.2**2))),
    (nn.PReLU(init=0.25), math.sqrt(2.0 / (1 + 0.25**2))),  # 0.25 is exact in float32
])
def test_closed_form_gains(spec, closed):
    # Piecewise-linear: |phi'| and |phi(z)/z| coincide, so forward and backward gains agree.
    assert gains.gain(spec, "forward") == pytest.approx(closed, abs=1e-12)
    assert gains.gain(spec, "backward") == pytest.approx(closed, abs=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.01, 0.2, 1.0])
def test_quadrature_path_on_rectifiers_as_plain_callables(alpha):
    # gain() short-circuits the registered names; here the quadrature itself is checked
    # against E[leaky(z)^2] = E[leaky'(z)^2] = (1 + alpha^2) / 2, E[leaky(z)] = (1-alpha)/sqrt(2pi).
    def leaky(x):
        return F.leaky_relu(x, alpha)

    second = gains.gaussian_expectation(lambda x: leaky(x) ** 2, kinks=(0.0,))
    mean = gains.gaussian_expectation(leaky, kinks=(0.0,))
    assert second == pytest.approx((1 + alpha**2) / 2, abs=1e-12)
    assert mean == pytest.approx((1 - alpha) / math.sqrt(2 * math.pi), abs=1e-12)
    # and through gain(): a plain callable is no registered entry, so it is integrated
    assert gains.gain(leaky) == pytest.approx(math.sqrt(2 / (1 + alpha**2)), abs=1e-9)
    assert gains.gain(leaky, "backward") == pytest.approx(math.sqrt(2 / (1 + alpha**2)),
                                                          abs=1e-9)


def test_quadrature_rule_integrates_gaussian_moments():
    # E[z^(2k)] = (2k-1)!! for both rules (Hermite without kinks, Legendre panels with them).
    for kinks in [(), (0.0,), (-1.0, 2.5)]:
        x, w = gains.quadrature_rule(kinks)
        assert x.dtype == w.dtype == torch.float64
        for k, exact in [(0, 1.0), (1, 1.0), (2, 3.0), (3, 15.0)]:
            assert float((w * x ** (2 * k)).sum()) == pytest.approx(exact, rel=1e-10)


def test_selu_forward_gain_is_one():
    # SELU's constants make (mean 0, second moment 1) a fixed point: LeCun normal (gain 1).
    m = gains.moments("selu")
    assert m.mean == pytest.approx(0.0, abs=TOLERANCE)
    assert m.second_moment == pytest.approx(1.0, abs=TOLERANCE)
    assert gains.gain("selu") == pytest.approx(1.0, abs=TOLERANCE)


@pytest.mark.parametrize(("name", "torch_value"), [
    ("tanh", 5 / 3), ("sigmoid", 1.0), ("selu", 3 / 4)])
def test_where_torch_calculate_gain_differs(name, torch_value):
    assert torch.nn.init.calculate_gain(name) == pytest.approx(torch_value)
    assert gains.torch_gain(name) == pytest.approx(torch_value)
    phi, _, kinks = REFERENCE[name]
    exact = 1 / math.sqrt(quad_expectation(lambda x: phi(x) ** 2, kinks))
    assert gains.gain(name) == pytest.approx(exact, abs=TOLERANCE)
    assert abs(gains.gain(name) - torch_value) > 0.05  # a real difference, not rounding


@pytest.mark.parametrize("name", ["identity", "relu", "leaky_relu"])
def test_where_torch_calculate_gain_agrees(name):
    assert gains.torch_gain(name) == pytest.approx(gains.gain(name), abs=1e-12)


@pytest.mark.parametrize("name", ["gelu", "silu", "elu", "mish", "softplus"])
def test_torch_has_no_gain_where_initlab_does(name):
    with pytest.raises(ValueError):
        torch.nn.init.calculate_gain(name)
    assert gains.torch_gain(name) is None
    assert math.isfinite(gains.gain(name)) and gains.gain(name) > 0


def test_custom_callable_gain():
    # x * tanh(x) is smooth and even: E[(z tanh z)^2] by the independent integration.
    def xtanh(x):
        return x * torch.tanh(x)

    expected = 1 / math.sqrt(quad_expectation(lambda x: (x * math.tanh(x)) ** 2))
    assert gains.gain(xtanh) == pytest.approx(expected, abs=TOLERANCE)
    with pytest.raises(ValueError):
        torch.nn.init.calculate_gain("xtanh")
    assert gains.torch_gain(xtanh) is None


def test_registered_module_uses_its_own_parameters():
    phi, _ = _elu(0.5)
    expected = 1 / math.sqrt(quad_expectation(lambda x: phi(x) ** 2, (0.0,)))
    assert gains.gain(nn.ELU(alpha=0.5)) == pytest.approx(expected, abs=TOLERANCE)


def test_non_finite_activation_is_an_error():
    # log is NaN for z < 0: E[log(z)^2] under N(0, 1) does not exist.
    with pytest.raises(ValueError, match="not finite"):
        gains.gain(torch.log)
    with pytest.raises(ValueError, match="not finite"):
        gains.moments(torch.log)


def test_zero_function_has_no_gain_and_bad_kind_is_named():
    with pytest.raises(ValueError, match="zero forward second moment"):
        gains.gain(torch.zeros_like)
    with pytest.raises(ValueError, match="'fwd'"):
        gains.gain("tanh", kind="fwd")


def test_table_lists_every_activation_with_torchs_value():
    rows = {row.activation: row for row in gains.table(sorted(REFERENCE))}
    assert set(rows) == set(REFERENCE)
    assert rows["tanh"].torch == pytest.approx(5 / 3)
    assert rows["gelu"].torch is None
    assert rows["relu"].forward == pytest.approx(math.sqrt(2))
    assert rows["sigmoid"].mean == pytest.approx(0.5, abs=TOLERANCE)


def test_functional_leaky_relu_passed_as_a_callable():
    assert gains.gain(F.leaky_relu) == pytest.approx(math.sqrt(2 / (1 + 0.01**2)), abs=1e-9)


def test_callable_named_like_a_closed_form_is_integrated():
    def relu(x):  # not a rectifier at all
        return torch.tanh(x)

    assert gains.gain(relu) == pytest.approx(gains.gain("tanh"), abs=TOLERANCE)


def test_non_finite_error_names_the_activation():
    with pytest.raises(ValueError, match="'log'"):
        gains.gain(torch.log)
