"""initlab.plan: the scheme, gain, fans and std chosen for every parameter of each model of
issue 2, and what apply() does with them (seeding, overrides, diff, no change before apply).

Gains are checked against initlab.gains (itself checked against closed forms and scipy in
test_gains.py); fans against hand-computed values; applied weights against the std column.
"""

from __future__ import annotations

import copy
import math
import re
import sys

import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, stats
from torch import nn

import initlab.plan  # noqa: F401  (the module; `initlab.plan` the attribute is the function)
from initlab import gain, init, models

P = sys.modules["initlab.plan"]
ARTICLE_ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu"]


def _rows(plan) -> dict:
    return {row.name: row for row in plan.rows}


def _param(model: nn.Module, row) -> torch.Tensor:
    return dict(model.named_parameters())[f"{row.module}.{row.param}".lstrip(".")][row.rows]


def _rms(t: torch.Tensor) -> float:
    return float(t.detach().double().pow(2).mean().sqrt())


def _relative_tolerance(n: int) -> float:
    # The sample RMS of n i.i.d. zero-mean draws has relative sd <= 1/sqrt(2n) for normal
    # draws (less for uniform and truncated normal); 6 sd makes a false failure ~1e-9.
    return 6 / math.sqrt(2 * n)


def _fresh(model: nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- the models


@pytest.mark.parametrize("activation", ARTICLE_ACTIVATIONS)
def test_article_mlp(activation):
    model = models.mlp(784, [256], 10, activation, init=None)
    rows = _rows(P.plan(model))
    hidden, output = rows["1.weight"], rows["3.weight"]
    assert (hidden.fan_in, hidden.fan_out, hidden.shape) == (784, 256, (256, 784))
    assert hidden.activation == activation
    assert hidden.gain == pytest.approx(gain(activation), rel=1e-12)
    assert hidden.std == pytest.approx(gain(activation) / math.sqrt(784), rel=1e-12)
    assert (output.activation, output.gain) == (None, 1.0)
    assert output.std == pytest.approx(1 / math.sqrt(256), rel=1e-12)
    assert rows["1.bias"].scheme == rows["3.bias"].scheme == "zeros"
    assert set(rows) == {"1.weight", "1.bias", "3.weight", "3.bias"}


def test_relu_gives_he_and_selu_gives_lecun():
    for act, expected in [(nn.ReLU(), math.sqrt(2 / 64)), (nn.SELU(), math.sqrt(1 / 64))]:
        model = nn.Sequential(nn.Linear(64, 32), act, nn.Linear(32, 1))
        assert _rows(P.plan(model))["0.weight"].std == pytest.approx(expected, rel=1e-6)


def test_cnn_conv_batchnorm_relu_applied():
    model = models.vgg((3, 8, 8), 10, "relu", depth=1, width=8, init=None)
    plan = P.plan(model)
    plan.apply(torch.Generator().manual_seed(0))
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            row = _rows(plan)[f"{name}.weight"]
            c_in = module.in_channels
            assert (row.fan_in, row.activation) == (c_in * 9, "relu")
            assert row.std == pytest.approx(math.sqrt(2 / (c_in * 9)), rel=1e-12)
        if isinstance(module, nn.BatchNorm2d):
            assert torch.equal(module.weight, torch.ones_like(module.weight))
            assert torch.equal(module.bias, torch.zeros_like(module.bias))


def test_residual_cnn_branch_end_is_the_norm_not_the_shortcut():
    model = models.resnet((3, 8, 8), 10, "relu", depth=1, width=4, stages=2, init=None)
    plan = P.plan(model, zero_residual=True)
    rows = _rows(plan)
    assert rows["stages.1.0.shortcut.0.weight"].scheme != "zeros"
    assert rows["stages.1.0.shortcut.1.weight"].scheme != "zeros"
    assert rows["stages.1.0.conv2.weight"].scheme != "zeros"  # the norm after it is the end
    assert plan.graph.residual_ends == {"stages.0.0.bn2", "stages.1.0.bn2"}


def test_zero_residual_zeroes_the_last_norm_of_each_branch():
    model = models.resnet((3, 8, 8), 10, "relu", depth=1, width=4, stages=2, init=None)
    P.plan(model, zero_residual=True).apply(0)
    block = model.stages[1][0]
    assert torch.count_nonzero(block.bn2.weight) == 0
    assert torch.equal(block.shortcut[1].weight, torch.ones_like(block.shortcut[1].weight))
    model.eval()
    x = torch.randn(2, 4, 8, 8)
    assert torch.allclose(block(x), F.relu(block.shortcut(x)))  # the block starts as identity


class PlainResidual(nn.Module):
    """relu(conv2(relu(conv1(x))) + proj(x)): the branch ends in a convolution."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.proj = nn.Conv2d(3, 8, 1)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))) + self.proj(x))
        return self.head(x.mean((2, 3)))


def test_zero_residual_zeroes_the_branch_conv_not_the_projection():
    model = PlainResidual()
    P.plan(model, zero_residual=True).apply(0)
    assert torch.count_nonzero(model.conv2.weight) == 0
    assert torch.count_nonzero(model.proj.weight) == model.proj.weight.numel()
    assert torch.count_nonzero(model.conv1.weight) == model.conv1.weight.numel()
    P.plan(model).apply(0)
    assert torch.count_nonzero(model.conv2.weight) == model.conv2.weight.numel()


def test_zero_output():
    model = models.mlp(20, [16], 3, "tanh", init=None)
    plan = P.plan(model, zero_output=True)
    assert _rows(plan)["3.weight"].scheme == "zeros"
    plan.apply(0)
    assert torch.count_nonzero(model[3].weight) == 0
    assert torch.count_nonzero(model[1].weight) == model[1].weight.numel()


@pytest.mark.parametrize("num_layers", [1, 2])
def test_lstm_classifier_per_gate_blocks(num_layers):
    model = models.rnn((1, 12, 10), 5, "lstm", depth=num_layers, width=16, init=None)
    plan = P.plan(model)
    rows = _rows(plan)
    plan.apply(torch.Generator().manual_seed(1))
    lstm = model.rnn
    for layer in range(num_layers):
        n_in = 10 if layer == 0 else 16
        for i, gate in enumerate("ifgo"):
            w_ih = rows[f"rnn.weight_ih_l{layer}[{gate}]"]
            w_hh = rows[f"rnn.weight_hh_l{layer}[{gate}]"]
            assert (w_ih.shape, w_ih.fan_in, w_ih.fan_out) == ((16, n_in), n_in, 16)
            assert w_ih.std == pytest.approx(1 / math.sqrt(n_in), rel=1e-12)
            assert w_hh.scheme.startswith("orthogonal") and w_hh.shape == (16, 16)
            block = slice(16 * i, 16 * (i + 1))
            recurrent = getattr(lstm, f"weight_hh_l{layer}")[block].detach()
            assert torch.allclose(recurrent.T @ recurrent, torch.eye(16), atol=1e-5)
            bias_ih = getattr(lstm, f"bias_ih_l{layer}")[block]
            assert torch.all(bias_ih == (1.0 if gate == "f" else 0.0))
            assert torch.all(getattr(lstm, f"bias_hh_l{layer}")[block] == 0.0)
        # the four recurrent blocks are drawn independently, not one matrix cut in four
        w = getattr(lstm, f"weight_hh_l{layer}").detach()
        assert not torch.allclose(w[:16], w[16:32])
    assert rows["head.weight"].gain == 1.0


def test_transformer_encoder_rows():
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, activation="gelu",
                                       batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    plan = P.plan(encoder)
    rows = _rows(plan)
    for i in range(2):
        linear1, linear2 = rows[f"layers.{i}.linear1.weight"], rows[f"layers.{i}.linear2.weight"]
        assert linear1.activation == "gelu"
        assert linear1.std == pytest.approx(gain("gelu") / math.sqrt(32), rel=1e-12)
        assert (linear2.gain, linear2.fan_in) == (1.0, 64)
        for part in "qkv":
            row = rows[f"layers.{i}.self_attn.in_proj_weight[{part}]"]
            assert (row.shape, row.fan_in, row.fan_out, row.gain) == ((32, 32), 32, 32, 1.0)
        assert rows[f"layers.{i}.norm1.weight"].scheme.startswith(("constant", "ones"))
    plan.apply(0)
    # torch's own construction deep-copies one layer: every layer starts identical. Not here.
    assert not torch.equal(encoder.layers[0].linear1.weight, encoder.layers[1].linear1.weight)


def test_unet_transposed_fans():
    model = models.unet(1, 3, width=4, depth=2, activation="relu", init=None, image_size=8)
    rows = _rows(P.plan(model))
    for name, module in model.named_modules():
        if isinstance(module, nn.ConvTranspose2d):
            c_in, c_out = module.in_channels, module.out_channels  # weight: (in, out, 2, 2)
            row = rows[f"{name}.weight"]
            # kernel 2, stride 2: each output sums one tap per dim, each input feeds all 4
            assert (row.fan_in, row.fan_out) == (c_in, c_out * 4)
            generic = torch.nn.init._calculate_fan_in_and_fan_out(module.weight)
            assert generic == (c_out * 4, c_in * 4)  # swapped, and blind to the stride
            assert row.std == pytest.approx(1 / math.sqrt(c_in), rel=1e-12)


def test_functional_activation_gains():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c, self.d = (nn.Linear(16, 16) for _ in range(4))

        def forward(self, x):
            x = torch.tanh(self.a(x))
            x = self.b(x).sigmoid()
            x = F.leaky_relu(self.c(x), 0.2)
            return F.relu(self.d(x))

    rows = _rows(P.plan(Functional()))
    assert rows["a.weight"].gain == pytest.approx(gain("tanh"))
    assert rows["b.weight"].gain == pytest.approx(gain("sigmoid"))
    assert rows["c.weight"].gain == pytest.approx(math.sqrt(2 / (1 + 0.2**2)), rel=1e-12)
    assert rows["d.weight"].gain == pytest.approx(math.sqrt(2), rel=1e-12)


def test_untraceable_model_warns_and_still_plans():
    class Untraceable(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.act, self.head = nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)

        def forward(self, x):
            h = self.act(self.body(x))
            return self.head(h) if h.sum() >= 0 else self.head(-h)

    with pytest.warns(UserWarning, match="guessed from hooks: body, head"):
        rows = _rows(P.plan(Untraceable(), torch.randn(2, 4)))
    assert rows["body.weight"].gain == pytest.approx(gain("tanh"))
    assert rows["head.weight"].gain == 1.0


def test_fan_out_mode_uses_the_backward_gain():
    model = nn.Sequential(nn.Linear(30, 20), nn.Tanh(), nn.Linear(20, 5))
    row = _rows(P.plan(model, mode="fan_out"))["0.weight"]
    assert row.gain == pytest.approx(gain("tanh", "backward"))
    assert row.std == pytest.approx(gain("tanh", "backward") / math.sqrt(20), rel=1e-12)


def test_strided_conv_fan_out_counts_the_stride_and_prints_exactly():
    # a strided conv's fan_out is (out/groups) * prod(k/s), the mean number of outputs one
    # input feeds: for the k = s = 4 patch embedding each input feeds one output per channel
    model = models.transformer((3, 8, 8), 10, "gelu", depth=1, width=32, patch=4, init=None)
    patch = _rows(P.plan(model, mode="fan_out"))["patch.weight"]
    generic = torch.nn.init._calculate_fan_in_and_fan_out(model.patch.weight)
    assert (patch.fan_in, patch.fan_out) == (3 * 16, 32) and generic == (3 * 16, 32 * 16)
    assert patch.std == pytest.approx(1 / math.sqrt(32), rel=1e-12)  # no activation: gain 1
    # kernel 3, stride 2: 2049 * 9/4 = 4610.25, shown in full (not "4610")
    model = nn.Sequential(nn.Conv2d(3, 2049, 3, stride=2), nn.ReLU())
    plan = P.plan(model, mode="fan_out")
    row = _rows(plan)["0.weight"]
    assert (row.fan_in, row.fan_out) == (27, 4610.25)
    assert row.std == pytest.approx(gain("relu", "backward") / math.sqrt(4610.25), rel=1e-12)
    assert "4610.25" in str(plan) and "4610 " not in str(plan)


def test_forward_schemes_scale_by_fan_in():
    # propagate: data with E[x^2] = 2^2 + 0.5^2 = 4.25 (measured here in plain torch) needs
    # gain 1 / sqrt(E[x^2]); critical, no activation: the linear net's critical sigma_w2 is 1
    model = nn.Sequential(nn.Linear(30, 10))
    x = 2 * torch.randn(256, 30, generator=torch.Generator().manual_seed(0)) + 0.5
    expected = 1 / math.sqrt(float(x.double().pow(2).mean())) / math.sqrt(30)
    assert _rows(P.plan(model, x, scheme="propagate"))["0.weight"].std == \
        pytest.approx(expected, rel=1e-6)
    assert _rows(P.plan(model, scheme="critical"))["0.weight"].std == \
        pytest.approx(1 / math.sqrt(30), rel=1e-12)


@pytest.mark.parametrize("scheme", ["critical", "propagate", "lsuv"])
@pytest.mark.parametrize("mode", ["fan_out", "fan_avg"])
def test_forward_schemes_refuse_another_fan_mode(scheme, mode):
    # their gain is defined for std = gain / sqrt(fan_in): over fan_out = 10, Linear(30, 10)
    # would get sqrt(3) times the std they mean (0.316 for 0.183), so plan refuses it
    model = nn.Sequential(nn.Linear(30, 10))
    with pytest.raises(ValueError, match=rf"mode='{mode}' does not fit scheme='{scheme}'.*"
                                         r"use mode='fan_in'"):
        P.plan(model, torch.randn(4, 30), scheme=scheme, mode=mode)


# --------------------------------------------------------------------------- mode and gain agree


def _tanh_gains() -> tuple[float, float]:
    """tanh's forward and backward gains, 1/sqrt(E[tanh(z)^2]) and 1/sqrt(E[tanh'(z)^2]) for
    z ~ N(0, 1), by scipy quadrature (independent of initlab.gains; accurate to ~1e-10)."""
    def moment(f):
        return integrate.quad(lambda z: f(z) * stats.norm.pdf(z), -math.inf, math.inf)[0]

    forward = moment(lambda z: math.tanh(z) ** 2)
    backward = moment(lambda z: (1 - math.tanh(z) ** 2) ** 2)
    return 1 / math.sqrt(forward), 1 / math.sqrt(backward)


def _tanh_layer(n_in: int = 30, n_out: int = 10) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, n_out), nn.Tanh())


def _std(model, **options) -> float:
    return _rows(P.plan(model, **options))["0.weight"].std


def test_a_named_scheme_takes_the_plans_mode_with_the_gain_for_that_fan():
    # Linear(30, 10) then tanh over fan_out: the backward gain over fan_out = 10 (0.464), not
    # over the scheme's default fan_in = 30 (0.268), nor He's sqrt(2) over fan_in (0.258)
    forward, backward = _tanh_gains()
    model = _tanh_layer()
    for scheme, expected in [("variance_scaling", backward / math.sqrt(10)),
                             ({"name": "he_normal", "gain": "auto"}, backward / math.sqrt(10)),
                             ("kaiming_normal", math.sqrt(2 / 10)),  # He's fixed gain sqrt(2)
                             ("he_uniform", math.sqrt(2 / 10))]:
        row = _rows(P.plan(model, scheme=scheme, mode="fan_out"))["0.weight"]
        assert "mode=fan_out" in row.scheme, scheme
        assert row.std == pytest.approx(expected, rel=1e-8), scheme
    # without a mode a scheme keeps its own fan, fan_in here, and the forward gain
    assert _std(model, scheme="variance_scaling") == pytest.approx(forward / math.sqrt(30),
                                                                   rel=1e-8)
    assert "mode=fan_out" in str(P.plan(model, mode="fan_out"))  # the title says the mode


def test_fan_out_weights_are_drawn_with_the_backward_gain_over_fan_out():
    model = _tanh_layer(3000, 1000)
    _, backward = _tanh_gains()
    P.plan(model, scheme="variance_scaling", mode="fan_out").apply(0)
    # 3e6 truncated-normal draws: the sample RMS is within 6 sd (0.25%) of the std
    assert _rms(model[0].weight) == pytest.approx(backward / math.sqrt(1000),
                                                  rel=_relative_tolerance(3_000_000))


def test_fan_avg_gain_is_glorots_compromise_of_the_forward_and_backward_variances():
    # the variance over fan_avg is the harmonic mean of forward g_f^2 / fan_in and backward
    # g_b^2 / fan_out, as Glorot's 2 / (fan_in + fan_out) is that of 1 / fan_in and 1 / fan_out
    forward, backward = _tanh_gains()
    expected = math.sqrt(2 / (30 / forward**2 + 10 / backward**2))
    model = _tanh_layer()
    assert _std(model, mode="fan_avg") == pytest.approx(expected, rel=1e-8)
    assert _std(model, scheme=init.get("xavier_normal", gain="auto")) == \
        pytest.approx(expected, rel=1e-8)  # xavier's own fan is fan_avg
    # ReLU's gains are equal (sqrt(2)): Glorot's variance times 2
    relu = nn.Sequential(nn.Linear(30, 10), nn.ReLU())
    assert _std(relu, mode="fan_avg") == pytest.approx(math.sqrt(2 * 2 / 40), rel=1e-12)


@pytest.mark.parametrize(("scheme", "mode", "why"), [
    ("xavier_normal", "fan_out", "which divides by fan_avg: use mode='fan_avg' or leave mode out"),
    ("glorot_uniform", "fan_in", "which divides by fan_avg: use mode='fan_avg'"),
    ("lecun_uniform", "fan_avg", "which divides by fan_in: use mode='fan_in'"),
    ("orthogonal", "fan_in", "which is not scaled by a fan: leave mode out"),
    ("zeros", "fan_out", "which is not scaled by a fan: leave mode out"),
    ("he_normal(gain=1.414, mode=fan_in)", "fan_out", "which divides by fan_in"),
    ("torch_default", "fan_in", "which runs each module's own reset_parameters"),
])
def test_a_mode_the_scheme_cannot_follow_is_refused(scheme, mode, why):
    # each would draw what it draws without the mode: the mode silently ignored
    spec = init.get("he_normal") if scheme.startswith("he_normal(") else scheme
    with pytest.raises(ValueError, match=re.escape(f"mode={mode!r} does not fit "
                                                   f"scheme={scheme!r}, {why}")) as error:
        P.plan(_tanh_layer(), scheme=spec, mode=mode)
    assert "auto, he_normal, he_uniform, variance_scaling" in str(error.value)  # the choices


def test_a_mode_a_fixed_fan_scheme_already_has_is_accepted():
    model = _tanh_layer()
    for scheme, mode in [("xavier_normal", "fan_avg"), ("lecun_normal", "fan_in"),
                         (init.get("he_normal", mode="fan_out"), "fan_out")]:
        assert _std(model, scheme=scheme, mode=mode) == _std(model, scheme=scheme)


def test_an_override_gets_the_gain_for_its_own_fan():
    forward, backward = _tanh_gains()
    model = _tanh_layer()
    # by name it takes the plan's mode: backward gain over fan_out (before: over fan_in, 0.268)
    row = _rows(P.plan(model, mode="fan_out", overrides={"0": "variance_scaling"}))["0.weight"]
    assert "mode=fan_out" in row.scheme
    assert row.std == pytest.approx(backward / math.sqrt(10), rel=1e-8)
    # an Initializer keeps its own fan, and gets the gain for that fan whatever the plan's
    fan_in = init.get("variance_scaling")
    assert _std(model, mode="fan_out", overrides={"0": fan_in}) == \
        pytest.approx(forward / math.sqrt(30), rel=1e-8)
    fan_out = init.get("he_normal", gain="auto", mode="fan_out")
    assert _std(model, overrides={"0": fan_out}) == pytest.approx(backward / math.sqrt(10),
                                                                  rel=1e-8)
    # a scheme that fixes its fan keeps it in a fan_out plan: Xavier, gain 1, over fan_avg
    assert _std(model, mode="fan_out", overrides={"0": "xavier_normal"}) == \
        pytest.approx(math.sqrt(2 / 40), rel=1e-12)


def test_an_override_over_another_fan_cannot_take_a_forward_only_gain():
    model = _tanh_layer()
    x = torch.randn(16, 30, generator=torch.Generator().manual_seed(0))
    fan_out = init.get("variance_scaling", mode="fan_out")
    with pytest.raises(ValueError, match=r"override '0' -> variance_scaling\(.*mode=fan_out.*\) "
                                         r"on 0\.weight: scheme='propagate' gives this layer a "
                                         r"gain for std = gain / sqrt\(fan_in\) only"):
        P.plan(model, x, scheme="propagate", overrides={"0": fan_out})
    # over fan_in the override keeps critical's gain (tanh, sigma_b2 = 0: sigma_w2 = 1)
    assert _std(model, scheme="critical", overrides={"0": "variance_scaling"}) == \
        pytest.approx(1 / math.sqrt(30), rel=1e-9)


# --------------------------------------------------------------------------- apply


def test_plan_changes_nothing_until_apply():
    model = models.vgg((1, 8, 8), 4, "tanh", depth=1, width=4, init=None)
    before = _fresh(model)
    plan = P.plan(model, overrides={"classifier.?": "xavier_uniform"})
    str(plan)
    assert _same(before, model.state_dict())
    plan.apply(0)
    assert not _same(before, model.state_dict())


def test_same_generator_same_numbers_different_seed_different():
    a = models.resnet((3, 8, 8), 10, "relu", depth=1, width=4, init=None)
    b = copy.deepcopy(a)
    P.plan(a).apply(torch.Generator().manual_seed(7))
    P.plan(b).apply(torch.Generator().manual_seed(7))
    assert _same(a.state_dict(), b.state_dict())
    P.plan(b).apply(7)  # an int is a seed: the same numbers again
    assert _same(a.state_dict(), b.state_dict())
    P.plan(b).apply(torch.Generator().manual_seed(8))
    assert not torch.equal(a.fc.weight, b.fc.weight)
    assert not torch.equal(a.stem[0].weight, b.stem[0].weight)


def test_apply_leaves_the_global_rng_alone():
    model = models.rnn((1, 4, 4), 2, "lstm", depth=1, width=8, init=None)
    state = torch.random.get_rng_state()
    for scheme in ("auto", "torch_default"):
        P.plan(model, scheme=scheme).apply(3)
    assert torch.equal(state, torch.random.get_rng_state())


def test_torch_default_is_seeded_and_is_the_modules_own_reset():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 4 * 4, 10))
    plan = P.plan(model, scheme="torch_default")
    assert [r.scheme for r in plan.rows] == ["torch_default"] * 3
    first = _fresh(plan.apply(torch.Generator().manual_seed(5)))
    assert _same(first, _fresh(P.plan(model, scheme="torch_default").apply(5)))
    assert not _same(first, _fresh(P.plan(model, scheme="torch_default").apply(6)))
    # each module's seed is drawn from the plan's generator in order; with that seed set,
    # the module's own reset_parameters gives exactly the planned numbers
    reference = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(5)
    for module in (reference[0], reference[1], reference[4]):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        module.reset_parameters()
    assert _same(first, reference.state_dict())


def test_std_column_matches_the_applied_weights():
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Conv2d(32, 16, 3, groups=4), nn.SELU(),
        nn.ConvTranspose2d(16, 24, 4, stride=2), nn.Flatten(), nn.Linear(24 * 10 * 10, 64),
        nn.Tanh(), nn.Linear(64, 300))
    schemes = ["auto", "xavier_uniform", "he_uniform", "lecun_normal", "variance_scaling",
               "orthogonal", "trunc_normal", "uniform", "normal"]
    for scheme in schemes:
        plan = P.plan(model, scheme=scheme)
        plan.apply(torch.Generator().manual_seed(0))
        checked = 0
        for row in plan.rows:
            if row.std is None:
                continue
            values = _param(model, row)
            if row.std == 0:
                assert torch.count_nonzero(values) == 0, (scheme, row.name)
            else:
                tol = 1e-6 if scheme == "orthogonal" else _relative_tolerance(values.numel())
                assert _rms(values) == pytest.approx(row.std, rel=tol), (scheme, row.name)
                checked += 1
        assert checked == 5, scheme  # every weight layer


def test_std_column_of_an_orthogonal_override_on_a_conv():
    model = nn.Sequential(nn.Conv2d(8, 16, 3), nn.ReLU(), nn.Conv2d(16, 4, 1))
    plan = P.plan(model, overrides={"0": "orthogonal"})
    plan.apply(0)
    assert _rms(model[0].weight) == pytest.approx(_rows(plan)["0.weight"].std, rel=1e-6)


# --------------------------------------------------------------------------- overrides, diff


def test_overrides_by_glob_and_by_type():
    model = models.vgg((1, 8, 8), 4, "relu", depth=1, width=4, init=None)
    plan = P.plan(model, overrides={"classifier.?": "xavier_uniform", nn.Conv2d: "orthogonal",
                                    "features.0.weight": "zeros"})
    rows = _rows(plan)
    assert rows["classifier.1.weight"].scheme.startswith("xavier_uniform")
    assert rows["classifier.3.weight"].scheme.startswith("xavier_uniform")
    assert rows["features.0.weight"].scheme == "orthogonal(gain=1)"  # first matching key wins
    assert rows["features.3.weight"].scheme == "orthogonal(gain=1)"
    assert rows["features.1.weight"].scheme.startswith(("constant", "ones"))  # norm untouched
    plan.apply(0)
    w = model.features[3].weight.detach().flatten(1)
    assert torch.allclose(w @ w.T, torch.eye(4), atol=1e-5)
    # an override by parameter name reaches a bias, too
    rows = _rows(P.plan(model, overrides={"classifier.1.bias": "ones"}))
    assert rows["classifier.1.bias"].scheme == "ones"
    assert rows["classifier.3.bias"].scheme == "zeros"


def test_override_glob_over_a_subtree_keeps_biases():
    model = models.vgg((1, 8, 8), 4, "relu", depth=1, width=4, init=None)
    P.plan(model, overrides={"classifier.*": "xavier_uniform"}).apply(0)
    assert torch.count_nonzero(model.classifier[1].bias) == 0


def test_override_with_a_configured_scheme_and_an_initializer():
    from initlab import init

    model = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 2))
    rows = _rows(P.plan(model, overrides={"0": {"name": "normal", "std": 0.5},
                                          "2": init.get("constant", value=0.25)}))
    assert rows["0.weight"].std == 0.5
    assert rows["2.weight"].scheme == "constant(value=0.25)"


def test_override_of_an_lstm_by_name_keeps_its_biases():
    model = models.rnn((1, 4, 4), 2, "lstm", depth=1, width=8, init=None)
    rows = _rows(P.plan(model, overrides={"rnn": "xavier_normal"}))
    assert rows["rnn.weight_ih_l0[i]"].scheme.startswith("xavier_normal")
    assert rows["rnn.bias_ih_l0[f]"].scheme == "constant(value=1)"


def test_diff_lists_exactly_the_changed_rows():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    base = P.plan(model)
    assert base.diff(P.plan(model)) == []
    changed = base.diff(P.plan(model, overrides={"2": "zeros"}))
    assert [name for name, _, _ in changed] == ["2.weight"]
    _, mine, theirs = changed[0]
    assert (mine["scheme"], theirs["scheme"], theirs["std"]) == ("auto", "zeros", 0.0)


def test_plan_prints_as_a_table():
    text = str(P.plan(models.mlp(784, [256], 10, "tanh", init=None)))
    for piece in ("parameter", "fan_in", "std", "1.weight", "256x784", "tanh", "1.593"):
        assert piece in text


# --------------------------------------------------------------------------- errors


def test_unknown_scheme_names_the_closest_match():
    model = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"'he_norml'; did you mean 'he_normal'\?"):
        P.plan(model, scheme="he_norml")
    with pytest.raises(ValueError, match=r"did you mean 'xavier_uniform'\?"):
        P.plan(model, overrides={"0": "xavier_unifrom"})
    with pytest.raises(ValueError, match=r"did you mean 'fan_in'\?"):
        P.plan(model, mode="fan_inn")


@pytest.mark.parametrize("scheme", ["kaiming_normal", "glorot_uniform", "he_normal_object"])
def test_scheme_aliases_and_initializers_are_accepted(scheme):
    from initlab import init

    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
    spec = init.get("he_normal") if scheme == "he_normal_object" else scheme
    expected = init.get(spec).std(init.Fans(16, 8))
    assert _rows(P.plan(model, scheme=spec))["0.weight"].std == pytest.approx(expected)
