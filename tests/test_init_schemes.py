"""Init schemes: distributions (moments + KS), exact structure, equivalence with
torch.nn.init, the gain contract, configs, names and bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from initlab import init
from initlab.init import TRUNCATED_NORMAL_STD, Fans, variance_scaling

SHAPE = (1024, 512)  # 2**19 draws for the moments; fan_in 512, fan_out 1024, fan_avg 768
N = math.prod(SHAPE)
FI, FO = 512, 1024
KS_N = 2**16


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def draw(scheme: init.Initializer, **kwargs) -> torch.Tensor:
    return scheme(torch.empty(SHAPE, dtype=torch.float64), generator=gen(), **kwargs)


# --------------------------------------------------------------------------- distributions

# Each case: the scheme and the distribution it must produce, written from the
# papers' formulas (not from the code).
s2 = math.sqrt(2.0)
CASES = {
    "xavier_uniform": (
        init.XavierUniform(),
        stats.uniform(-(a := math.sqrt(6 / (FI + FO))), 2 * a),
    ),
    "xavier_normal_gain3": (init.XavierNormal(3.0), stats.norm(0, 3 * math.sqrt(2 / (FI + FO)))),
    "he_uniform_fan_out": (
        init.HeUniform(mode="fan_out"),
        stats.uniform(-(b := s2 * math.sqrt(3 / FO)), 2 * b),
    ),
    "he_normal": (init.HeNormal(), stats.norm(0, s2 / math.sqrt(FI))),
    "lecun_uniform": (init.LecunUniform(), stats.uniform(-(c := math.sqrt(3 / FI)), 2 * c)),
    "lecun_normal": (init.LecunNormal(), stats.norm(0, 1 / math.sqrt(FI))),
    # JAX semantics: N(0, s^2) cut at +-2s, s = sqrt(scale/n) / .8796..., so std is sqrt(scale/n)
    "variance_scaling_trunc": (
        init.VarianceScaling(2.0, "fan_avg"),
        stats.truncnorm(-2, 2, scale=math.sqrt(2 / 768) / TRUNCATED_NORMAL_STD),
    ),
    "uniform": (init.Uniform(0.3), stats.uniform(-0.3, 0.6)),
    "normal": (init.Normal(0.05, mean=0.2), stats.norm(0.2, 0.05)),
    "trunc_normal_default": (init.TruncNormal(0.02), stats.truncnorm(-2, 2, scale=0.02)),
    "trunc_normal_asymmetric": (
        init.TruncNormal(1.0, mean=0.5, a=-1.0, b=3.0),
        stats.truncnorm(-1.5, 2.5, loc=0.5, scale=1.0),
    ),
}


def test_truncation_constant_is_the_std_of_a_normal_cut_at_two():
    assert stats.truncnorm(-2, 2).std() == pytest.approx(TRUNCATED_NORMAL_STD, rel=1e-15)


@pytest.mark.parametrize(("scheme", "dist"), CASES.values(), ids=CASES.keys())
def test_moments_within_five_standard_errors(scheme, dist):
    x = draw(scheme)
    sigma = dist.std()
    kurtosis = float(dist.stats(moments="k")) + 3.0
    # Standard errors over n iid draws: mean sigma/sqrt(n); sample std
    # sigma*sqrt((kurtosis-1)/(4n)) (delta method). 5 SE: a false failure rate < 1e-6.
    assert abs(x.mean().item() - dist.mean()) < 5 * sigma / math.sqrt(N)
    assert abs(x.std().item() - sigma) < 5 * sigma * math.sqrt((kurtosis - 1) / (4 * N))


@pytest.mark.parametrize(("scheme", "dist"), CASES.values(), ids=CASES.keys())
def test_shape_passes_kolmogorov_smirnov(scheme, dist):
    # Under the right distribution the p-value is uniform on [0, 1]: p > 1e-3 fails
    # one seed in a thousand; the seed is fixed, so the outcome is too. 2**16 draws
    # keep scipy's truncnorm cdf fast and still detect a 1% shape error (next test).
    sample = draw(scheme).flatten()[:KS_N].numpy()
    assert stats.kstest(sample, dist.cdf).pvalue > 1e-3


def test_ks_test_has_the_power_to_tell_normal_from_truncated_normal():
    # The negative control for the test above: the same std, the wrong shape.
    x = draw(init.VarianceScaling(2.0, "fan_avg", "normal")).flatten()[:KS_N].numpy()
    _, dist = CASES["variance_scaling_trunc"]
    assert stats.kstest(x, dist.cdf).pvalue < 1e-6


@pytest.mark.parametrize(("scheme", "dist"), CASES.values(), ids=CASES.keys())
def test_std_method_is_the_distributions_std(scheme, dist):
    assert scheme.std(Fans(FI, FO)) == pytest.approx(dist.std(), rel=1e-12)


def test_orthogonal_std_is_the_root_mean_square_entry():
    # ||W||_F^2 = gain^2 * min(rows, cols): the RMS entry is exact, not statistical.
    for shape, groups in [((64, 32), 1), ((32, 64), 1), ((12, 4, 3), 3), ((8, 4, 3, 3), 1)]:
        w = init.Orthogonal(2.0)(torch.empty(shape, dtype=torch.float64), groups=groups)
        rms = w.pow(2).mean().sqrt().item()
        fans = init.tensor_fans(shape, groups=groups)
        assert init.Orthogonal(2.0).std(fans, shape=shape, groups=groups) == pytest.approx(rms)
    w = init.DeltaOrthogonal(2.0)(torch.empty(12, 4, 3, 3, dtype=torch.float64), groups=2)
    fans = init.tensor_fans(w.shape, groups=2)
    assert init.DeltaOrthogonal(2.0).std(fans) == pytest.approx(w.pow(2).mean().sqrt().item())


# --------------------------------------------------------------------------- gain contract


def test_auto_gain_takes_the_supplied_gain_and_numeric_gain_ignores_it():
    fans = Fans(FI, FO)
    auto = init.VarianceScaling(1.0, "fan_in", "normal")
    assert auto.std(fans) == pytest.approx(1 / math.sqrt(FI))  # no supplied gain: 1
    assert auto.std(fans, gain=3.0) == pytest.approx(3 / math.sqrt(FI))
    assert torch.equal(draw(auto, gain=3.0), draw(init.HeNormal(3.0)))
    assert torch.equal(draw(init.HeNormal(gain="auto"), gain=3.0), draw(init.HeNormal(3.0)))
    assert torch.equal(draw(init.HeNormal(), gain=3.0), draw(init.HeNormal()))
    assert init.HeNormal().std(fans, gain=3.0) == pytest.approx(s2 / math.sqrt(FI))


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, "big", None, True])
def test_gains_must_be_positive_and_finite(bad):
    with pytest.raises(ValueError, match="gain must be a positive finite number"):
        init.XavierNormal(bad)
    if bad is not None:  # None is "not supplied" at call time
        with pytest.raises(ValueError, match="gain"):
            init.VarianceScaling()(torch.empty(3, 3), gain=bad)


# --------------------------------------------------------------------------- torch equivalence


def same_seed(ours, theirs, shape=(64, 48)) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = torch.empty(shape), torch.empty(shape)
    ours(a, gen(7))
    theirs(b, gen(7))
    return a, b


leaky = math.sqrt(2 / (1 + 5))  # torch's gain for leaky_relu(a=sqrt(5)), the nn.Linear default
EQUIVALENT = {
    "xavier_uniform": (
        lambda t, g: init.XavierUniform(1.7)(t, generator=g),
        lambda t, g: nn.init.xavier_uniform_(t, 1.7, generator=g),
    ),
    "xavier_normal": (
        lambda t, g: init.xavier_normal_(t, 0.5, g),
        lambda t, g: nn.init.xavier_normal_(t, 0.5, generator=g),
    ),
    "kaiming_uniform_linear_default": (
        lambda t, g: init.HeUniform(leaky)(t, generator=g),
        lambda t, g: nn.init.kaiming_uniform_(t, a=math.sqrt(5), generator=g),
    ),
    "kaiming_normal_fan_out": (
        lambda t, g: init.he_normal_(t, mode="fan_out", generator=g),
        lambda t, g: nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu", generator=g),
    ),
    "lecun_normal_is_kaiming_linear": (
        lambda t, g: init.lecun_normal_(t, generator=g),
        lambda t, g: nn.init.kaiming_normal_(t, nonlinearity="linear", generator=g),
    ),
    "lecun_uniform_is_kaiming_linear": (
        lambda t, g: init.lecun_uniform_(t, generator=g),
        lambda t, g: nn.init.kaiming_uniform_(t, nonlinearity="linear", generator=g),
    ),
    "uniform": (
        lambda t, g: init.Uniform(0.3)(t, generator=g),
        lambda t, g: nn.init.uniform_(t, -0.3, 0.3, generator=g),
    ),
    "normal": (
        lambda t, g: init.Normal(0.1, 2.0)(t, generator=g),
        lambda t, g: nn.init.normal_(t, 2.0, 0.1, generator=g),
    ),
    "trunc_normal": (
        lambda t, g: init.TruncNormal(0.5, 0.1, -0.2, 0.9)(t, generator=g),
        lambda t, g: nn.init.trunc_normal_(t, 0.1, 0.5, -0.2, 0.9, generator=g),
    ),
    "orthogonal": (
        lambda t, g: init.orthogonal_(t, 1.3, g),
        lambda t, g: nn.init.orthogonal_(t, 1.3, generator=g),
    ),
    "zeros": (lambda t, g: init.Zeros()(t), lambda t, g: nn.init.zeros_(t)),
    "ones": (lambda t, g: init.Ones()(t), lambda t, g: nn.init.ones_(t)),
    "constant": (lambda t, g: init.Constant(0.7)(t), lambda t, g: nn.init.constant_(t, 0.7)),
    "identity_matrix": (lambda t, g: init.identity_(t), lambda t, g: nn.init.eye_(t)),
}


@pytest.mark.parametrize(("ours", "theirs"), EQUIVALENT.values(), ids=EQUIVALENT.keys())
@pytest.mark.parametrize("shape", [(64, 48), (48, 64)])
def test_same_numbers_as_torch_where_definitions_coincide(ours, theirs, shape):
    a, b = same_seed(ours, theirs, shape)
    # Same draws; the scale is computed by a different float64 formula (e.g.
    # sqrt(3 * g^2 / n) vs sqrt(3) * g * sqrt(2 / (fi + fo))) and may differ in
    # the last bit, so allow a few float32 ulps.
    torch.testing.assert_close(a, b, rtol=5e-7, atol=0)


@pytest.mark.parametrize("shape", [(16, 4, 3, 3), (4, 16, 3), (12, 12)])
def test_orthogonal_is_bit_identical_to_torch(shape):
    a, b = same_seed(
        lambda t, g: init.orthogonal_(t, generator=g),
        lambda t, g: nn.init.orthogonal_(t, generator=g),
        shape,
    )
    assert torch.equal(a, b)


def test_dirac_with_groups_is_torch_dirac():
    a, b = torch.empty(8, 2, 3, 3), torch.empty(8, 2, 3, 3)
    init.get("dirac")(a, groups=2)
    nn.init.dirac_(b, groups=2)
    assert torch.equal(a, b)


# --------------------------------------------------------------------------- exact structure


@pytest.mark.parametrize("shape", [(96, 40), (40, 96), (30, 4, 3, 3), (12, 2, 5)])
def test_orthogonal_rows_or_columns_are_orthonormal(shape):
    w = init.Orthogonal(2.5)(torch.empty(shape), generator=gen()).reshape(shape[0], -1)
    small = w if w.shape[0] <= w.shape[1] else w.T  # W W^T = g^2 I or W^T W = g^2 I
    eye = torch.eye(small.shape[0])
    torch.testing.assert_close(small @ small.T / 2.5**2, eye, atol=1e-5, rtol=0)


def test_orthogonal_per_group_blocks():
    w = init.Orthogonal()(torch.empty(12, 2, 3), generator=gen(), groups=3).reshape(3, 4, 6)
    for block in w:
        torch.testing.assert_close(block @ block.T, torch.eye(4), atol=1e-5, rtol=0)
    assert not torch.allclose(w[0], w[1])  # independent draws, not one matrix repeated


def test_orthogonal_keeps_low_precision_weights_orthogonal():
    w = init.Orthogonal()(torch.empty(64, 32, dtype=torch.bfloat16), generator=gen()).float()
    torch.testing.assert_close(w.T @ w, torch.eye(32), atol=3e-2, rtol=0)


def test_delta_orthogonal_is_an_orthogonal_matrix_at_the_centre_tap():
    w = init.DeltaOrthogonal(1.5)(torch.empty(32, 16, 3, 3), generator=gen())
    centre = w[:, :, 1, 1]
    torch.testing.assert_close(centre.T @ centre, 1.5**2 * torch.eye(16), atol=1e-5, rtol=0)
    off_centre = w.clone()
    off_centre[:, :, 1, 1] = 0
    assert not off_centre.any()


def test_delta_orthogonal_conv_is_an_isometry():
    # Xiao et al. 2018: with out >= in and 'same' padding, ||conv(x)|| = gain * ||x||.
    w = init.delta_orthogonal_(torch.empty(24, 8, 3, 3), 2.0, gen())
    x = torch.randn(2, 8, 11, 11, generator=gen(1))
    y = F.conv2d(x, w, padding=1)
    torch.testing.assert_close(y.norm(), 2.0 * x.norm(), rtol=1e-5, atol=0)


def test_delta_orthogonal_uses_diracs_centre_and_groups():
    w = init.DeltaOrthogonal()(torch.empty(8, 3, 4, 2), generator=gen(), groups=2)
    d = nn.init.dirac_(torch.empty(8, 3, 4, 2), groups=2)
    assert torch.equal(w.abs().sum((0, 1)) > 0, d.sum((0, 1)) > 0)  # same tap (k // 2)
    for block in w[:, :, 2, 1].reshape(2, 4, 3):
        torch.testing.assert_close(block.T @ block, torch.eye(3), atol=1e-5, rtol=0)


def test_identity_conv_passes_channels_through_scaled():
    conv = nn.Conv2d(4, 8, 3, padding=1, groups=2, bias=False)
    init.get("identity", gain=3.0)(conv.weight, groups=2)
    x = torch.randn(1, 4, 5, 5, generator=gen())
    y = conv(x).detach()
    # group g: output channels 4g, 4g+1 copy input channels 2g, 2g+1; the rest are 0
    torch.testing.assert_close(y[:, [0, 1, 4, 5]], 3.0 * x, rtol=0, atol=0)
    assert not y[:, [2, 3, 6, 7]].any()


# --------------------------------------------------------------------------- randomness


RANDOM = [n for n in init.names() if n not in ("zeros", "ones", "constant", "identity")]


@pytest.mark.parametrize("name", RANDOM)
def test_randomness_only_from_the_generator(name):
    scheme = init.get(name)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = scheme(torch.empty(16, 8, 3), generator=gen(5))
    b = scheme(torch.empty(16, 8, 3), generator=gen(5))
    c = scheme(torch.empty(16, 8, 3), generator=gen(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator was not touched


def test_fills_parameters_in_place_without_autograd_history():
    linear = nn.Linear(8, 4)
    weight = linear.weight
    out = init.get("he_uniform")(weight, generator=gen())
    assert out is weight and out.grad_fn is None and weight.requires_grad


# --------------------------------------------------------------------------- configs and names


NON_DEFAULT = {
    "zeros": {},
    "ones": {},
    "constant": {"value": -0.5},
    "uniform": {"a": 0.25},
    "normal": {"std": 0.2, "mean": 1.0},
    "trunc_normal": {"std": 0.1, "mean": 0.0, "a": -0.1, "b": 0.3},
    "variance_scaling": {"scale": 2.0, "mode": "fan_avg", "distribution": "uniform", "gain": 1.5},
    "xavier_uniform": {"gain": "auto"},
    "xavier_normal": {"gain": 5 / 3},
    "he_uniform": {"gain": 1.2, "mode": "fan_out"},
    "he_normal": {"gain": "auto", "mode": "fan_avg"},
    "lecun_uniform": {"gain": 0.9},
    "lecun_normal": {"gain": "auto"},
    "orthogonal": {"gain": 1.1},
    "delta_orthogonal": {"gain": 2.0},
    "identity": {"gain": 0.5},
}


def test_every_scheme_has_a_round_trip_case():
    assert sorted(NON_DEFAULT) == init.names()


@pytest.mark.parametrize("name", init.names())
@pytest.mark.parametrize("defaults", [True, False])
def test_config_round_trips_through_json(name, defaults):
    scheme = init.get(name) if defaults else init.get(name, **NON_DEFAULT[name])
    config = json.loads(json.dumps(scheme.get_config()))
    assert config["name"] == name
    rebuilt = init.get(config)
    assert rebuilt == scheme and hash(rebuilt) == hash(scheme) and repr(rebuilt) == repr(scheme)
    assert init.get(rebuilt) is rebuilt


# The fan each definition divides by (Glorot & Bengio: fan_avg, LeCun: fan_in, He and
# variance_scaling: their mode, fan_in by default); absent: not scaled by a fan.
FAN_MODES = {"xavier_uniform": "fan_avg", "xavier_normal": "fan_avg", "lecun_uniform": "fan_in",
             "lecun_normal": "fan_in", "he_uniform": "fan_in", "he_normal": "fan_in",
             "variance_scaling": "fan_in"}


@pytest.mark.parametrize("name", init.names())
@pytest.mark.parametrize("defaults", [True, False])
def test_fan_mode_is_the_fan_the_std_divides_by(name, defaults):
    scheme = init.get(name) if defaults else init.get(name, **NON_DEFAULT[name])
    mode = scheme.params.get("mode", FAN_MODES.get(name))
    assert scheme.fan_mode == mode
    # std * sqrt(n) is the same for every pair of fans, n counted by hand from the fan named;
    # a scheme with no fan mode has the same std whatever the fans
    count = {"fan_in": lambda f: f.fan_in, "fan_out": lambda f: f.fan_out,
             "fan_avg": lambda f: (f.fan_in + f.fan_out) / 2, None: lambda f: 1}[mode]
    fans = [Fans(8, 32), Fans(32, 8), Fans(20, 20), Fans(3, 50)]
    stds = [scheme.std(f, 1.5, shape=(16, 16)) for f in fans]
    if name == "identity":  # deterministic: no std at all
        assert stds == [None] * 4
        return
    scaled = [std * math.sqrt(count(f)) for std, f in zip(stds, fans, strict=True)]
    assert scaled == pytest.approx([scaled[0]] * 4, rel=1e-12)


def test_repr_is_readable():
    assert (
        repr(init.get("kaiming_normal", mode="fan_out"))
        == "he_normal(gain=1.41421, mode='fan_out')"
    )
    assert repr(init.get("zeros")) == "zeros()"


@pytest.mark.parametrize(
    ("alias", "cls"),
    [
        ("glorot_uniform", init.XavierUniform),
        ("glorot_normal", init.XavierNormal),
        ("kaiming_uniform", init.HeUniform),
        ("Kaiming_Normal", init.HeNormal),
        ("truncated_normal", init.TruncNormal),
        ("dirac", init.Identity),
        ("eye", init.Identity),
    ],
)
def test_aliases(alias, cls):
    assert type(init.get(alias)) is cls
    assert init.get({"name": alias}) == cls()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: init.get("he_norml"), "unknown init scheme 'he_norml'; did you mean 'he_normal'"),
        (lambda: init.get("glorot_unifrm"), "did you mean 'glorot_uniform'"),
        (lambda: init.get("orthogonal", gian=2.0), "did you mean 'gain'"),
        (lambda: init.get({"gain": 2.0}), "needs a 'name' key"),
        (lambda: init.get(init.Zeros(), value=1.0), "ready scheme"),
        (
            lambda: init.HeNormal(mode="fan_inn"),
            "unknown fan mode 'fan_inn'; did you mean 'fan_in'",
        ),
        (lambda: init.VarianceScaling(distribution="normla"), "did you mean 'normal'"),
        (lambda: init.VarianceScaling(scale=-2.0), "scale must be a positive finite number"),
        (lambda: init.TruncNormal(a=1.0, b=-1.0), "a < b"),
        (lambda: init.Normal(std=0.0), "std must be a positive finite number"),
        (lambda: init.Constant(math.nan), "value must be a finite number"),
    ],
)
def test_bad_input_names_the_value_and_the_closest_choice(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        call()


def test_non_name_identifier_is_a_type_error():
    with pytest.raises(TypeError, match="int"):
        init.get(3)


# --------------------------------------------------------------------------- shapes


FAN_BASED = [
    "xavier_uniform",
    "xavier_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "variance_scaling",
]


@pytest.mark.parametrize("name", FAN_BASED)
def test_fan_based_schemes_need_two_dims_or_given_fans(name):
    with pytest.raises(ValueError, match=r"at least 2 dims.*\(5,\)"):
        init.get(name)(torch.empty(5))
    bias = init.get(name)(torch.empty(10_000), fans=Fans(4, 4), generator=gen())
    # 10**4 draws: the sample std's relative SE is <= 0.71% (normal), so 5% is > 7 SE.
    assert bias.std().item() == pytest.approx(init.get(name).std(Fans(4, 4)), rel=0.05)


@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        ("orthogonal", (7,), r"at least 2 dims, got shape \(7,\)"),
        ("delta_orthogonal", (4, 4), r"3, 4 or 5 dims.*\(4, 4\).*use orthogonal"),
        ("identity", (4,), r"2 to 5 dims"),
    ],
)
def test_structured_schemes_refuse_shapes_they_cannot_take(name, shape, message):
    with pytest.raises(ValueError, match=message):
        init.get(name)(torch.empty(shape))


@pytest.mark.parametrize("name", ["orthogonal", "delta_orthogonal", "identity"])
def test_groups_must_divide_the_rows(name):
    with pytest.raises(ValueError, match="groups=4 does not divide"):
        init.get(name)(torch.empty(6, 2, 3), groups=4)


@pytest.mark.parametrize("name", init.names())
@pytest.mark.parametrize("shape", [(0, 4, 3, 3), (4, 0, 3)])
def test_empty_tensors_come_back_unchanged(name, shape):
    tensor = torch.empty(shape)
    assert init.get(name)(tensor, generator=gen()) is tensor
    assert tensor.shape == shape


def test_meta_tensors_are_left_alone():
    meta = torch.empty(64, 32, device="meta")
    assert variance_scaling(meta, 2.0) is meta
    assert init.get("orthogonal")(meta) is meta
