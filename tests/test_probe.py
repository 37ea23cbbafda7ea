"""``initlab.probe.diagnose``: verdicts on known cases, fixes that heal them, numbers checked
against plain PyTorch, and a probe that leaves no trace on the model."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab.plan import InitPlan, init_model
from initlab.probe import diagnose, find_sites, leftover_hooks
from initlab.probe.recorder import Recorder
from initlab.probe.report import LayerRow
from initlab.probe.stats import FIELDS, facts, forward_stats
from initlab.probe.verdict import TOLERANCE, judge

D_IN, WIDTH, DEPTH, BATCH = 32, 64, 8, 64

X = torch.randn(BATCH, D_IN, generator=torch.Generator().manual_seed(1))


def deep_mlp(act: type[nn.Module], depth: int = DEPTH) -> nn.Sequential:
    layers, d = [], D_IN
    for _ in range(depth):
        layers += [nn.Linear(d, WIDTH), act()]
        d = WIDTH
    return nn.Sequential(*layers, nn.Linear(d, 10))


def filled(model: nn.Sequential, *, std=None, xavier_gain=None, bias=0.0) -> nn.Sequential:
    """Weights N(0, std^2) or Xavier normal with ``xavier_gain``, biases ``bias``; seeded."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                out_f, in_f = layer.weight.shape
                s = std if std is not None else xavier_gain * math.sqrt(2 / (in_f + out_f))
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * s)
                layer.bias.fill_(bias)
    return model


def rows(report, kind):
    return [r for r in report.layers if r.kind == kind]


# ---------------------------------------------------------------- known cases and their fixes

def vanishing_sigmoid():
    return filled(deep_mlp(nn.Sigmoid), xavier_gain=1.0)


def exploding_relu():
    return filled(deep_mlp(nn.ReLU), std=1.0)


def dead_relu():
    return filled(deep_mlp(nn.ReLU), std=math.sqrt(2 / WIDTH), bias=-10.0)


def saturated_tanh():
    return filled(deep_mlp(nn.Tanh), std=1.0)


def test_deep_sigmoid_with_xavier_is_vanishing():
    report = diagnose(vanishing_sigmoid(), X)
    assert report.verdict == "vanishing"
    first = rows(report, "layer")[0]
    # sigma' <= 1/4 and Xavier gain 1: each layer multiplies the gradient norm by ~0.25, so
    # after 7 layers the first layer gets ~0.25**7 = 6e-5 of the deepest layer's gradient:
    # far below 1, and below the rule's 1/10 by two decades at least.
    assert first.backward_ratio < 1e-3


def test_deep_relu_with_unit_normal_weights_is_exploding():
    report = diagnose(exploding_relu(), X)
    assert report.verdict == "exploding"
    # N(0, 1) weights with fan_in 64 multiply the RMS by sqrt(64 / 2) = 5.7 per ReLU layer:
    # after 9 layers the output is ~5.7**8 * sqrt(32) = 6e6 times the input's RMS.
    assert rows(report, "layer")[-1].forward_ratio > 1e5


def test_relu_with_large_negative_bias_is_dead():
    report = diagnose(dead_relu(), X)
    assert report.verdict == "dead"
    # pre-activations have std ~1.4 and mean -10: not one ReLU output is non-zero
    assert all(r.zero == 1.0 and r.dead == 1.0 for r in rows(report, "activation"))


def test_tanh_with_large_weights_is_saturated():
    report = diagnose(saturated_tanh(), X)
    assert report.verdict == "saturated"
    # pre-activation std ~ sqrt(64 * E[tanh^2]) ~ 7.5: P(|h| > atanh(0.99) = 2.65) ~ 0.72
    assert all(r.saturated > 0.5 for r in rows(report, "activation"))


@pytest.mark.parametrize("build", [vanishing_sigmoid, exploding_relu, dead_relu, saturated_tanh])
def test_applying_the_proposed_fix_gives_a_healthy_model(build):
    model = build()
    report = diagnose(model, X)
    assert isinstance(report.fixes, InitPlan) and report.fix_notes
    checked = report.check_fix(generator=0)  # on a deep copy: the model is still sick
    assert checked.verdict == "healthy", checked.reason
    assert diagnose(model, X).verdict == report.verdict
    report.fixes.apply(generator=0)
    assert diagnose(model, X).verdict == "healthy"


def test_sigmoid_fix_centres_the_inputs_of_sigmoid_fed_layers():
    model = vanishing_sigmoid()
    diagnose(model, X).fixes.apply(generator=0)
    second = model[2]  # reads sigmoid outputs: bias = -E[sigmoid(z)] * W.1 = -0.5 * row sums
    torch.testing.assert_close(second.bias, -0.5 * second.weight.sum(1))
    assert torch.all(model[0].bias == 0)  # reads the data: no centring


@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh, nn.GELU, nn.SELU, nn.LeakyReLU])
def test_mlps_after_init_model_are_healthy(act):
    model = deep_mlp(act)
    init_model(model, generator=0)
    report = diagnose(model, X)
    assert report.verdict == "healthy", report.reason
    assert report.fixes is None


def _models():
    from initlab import models

    shape = (1, 12, 12)
    return {
        "vgg (BatchNorm)": lambda: models.vgg(shape, 10, "relu", depth=2, width=8),
        "resnet": lambda: models.resnet(shape, 10, "relu", depth=1, width=8),
        "lstm": lambda: models.rnn(shape, 10, "lstm", depth=2, width=32),
        "gru": lambda: models.rnn(shape, 10, "gru", depth=2, width=32),
        "transformer": lambda: models.transformer(shape, 10, "gelu", depth=2, width=32),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_initlab_models_are_healthy(name):
    model = _models()[name]()
    report = diagnose(model, torch.randn(8, 1, 12, 12, generator=torch.Generator().manual_seed(0)))
    assert report.verdict == "healthy", report.reason
    assert leftover_hooks(model) == []


# ---------------------------------------------------------------- numbers against plain PyTorch

class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(D_IN, 48), nn.Linear(48, 48), nn.Linear(48, 5)

    def forward(self, x):
        return self.fc3(torch.tanh(self.fc2(F.relu(self.fc1(x)))))


def test_statistics_match_a_plain_pytorch_computation():
    torch.manual_seed(0)
    model, target = Small(), torch.randn(BATCH, 5, generator=torch.Generator().manual_seed(2))
    report = diagnose(model, X, target)  # float targets: MSE
    by_name = {r.name: r for r in report.layers}
    h1 = model.fc1(X)
    a1 = F.relu(h1)
    h2 = model.fc2(a1)
    a2 = torch.tanh(h2)
    y = model.fc3(a2)
    loss = F.mse_loss(y, target)
    grads = torch.autograd.grad(loss, [h1, h2, y, model.fc1.weight, model.fc2.weight])
    # float32 reductions in a different order: agree to a few ulps relative
    close = dict(rel=1e-5, abs=1e-7)
    for name, value, grad in (("fc1", h1, grads[0]), ("fc2", h2, grads[1]), ("fc3", y, grads[2])):
        row = by_name[name]
        assert row.mean == pytest.approx(value.mean().item(), **close)
        assert row.std == pytest.approx(value.std(correction=0).item(), **close)
        assert row.rms == pytest.approx(value.pow(2).mean().sqrt().item(), **close)
        assert row.p50 == pytest.approx(value.flatten().quantile(0.5).item(), **close)
        assert row.p99 == pytest.approx(value.flatten().quantile(0.99).item(), **close)
        assert row.grad_norm == pytest.approx(grad.norm().item(), **close)
    assert by_name["fc1"].weight_grad_norm == pytest.approx(grads[3].norm().item(), **close)
    assert by_name["fc2"].grad_to_weight == pytest.approx(
        (grads[4].norm() / model.fc2.weight.norm()).item(), **close)
    assert by_name["fc2"].forward_gain == pytest.approx((h2.pow(2).mean() / h1.pow(2).mean())
                                                        .sqrt().item(), **close)
    relu = by_name["fc1->relu"]  # functional activations found by torch.fx
    assert relu.zero == pytest.approx((a1 == 0).float().mean().item())
    assert relu.dead == pytest.approx((a1 == 0).all(0).float().mean().item())
    tanh = by_name["fc2->tanh"]
    assert tanh.saturated == pytest.approx((a2.abs() >= 0.99).float().mean().item())
    assert report.loss == pytest.approx(loss.item(), rel=1e-6)


@pytest.mark.parametrize("mean, std", [(0.99, 1e-3), (-3e4, 0.5), (0.0, 1.0), (0.0, 1e24),
                                       (3e20, 1e19)])
def test_mean_and_std_survive_a_large_mean_or_an_exploding_signal(mean, std):
    # sigmoid outputs near 0.99 with std 1e-3 (mean^2 / var ~ 1e6): E[y^2] - E[y]^2 in
    # float32 loses ~13% of the variance there; an exploding signal (std 1e24) overflows
    # float32 when squared. The shifted, scaled sums must agree with a float64 computation
    # to 1e-5 relative (float32 cascaded sums of 2^18 terms: ~1e-7)
    y = mean + std * torch.randn(1 << 18, generator=torch.Generator().manual_seed(0))
    stats = dict(zip(FIELDS, forward_stats(y).tolist(), strict=True))
    exact = y.double()
    # a mean near 0 is known to float32's resolution of the spread: 1e-6 std absolute
    assert stats["mean"] == pytest.approx(exact.mean().item(), rel=1e-6, abs=1e-6 * std)
    assert stats["std"] == pytest.approx(exact.std(correction=0).item(), rel=1e-5)


def test_expected_fractions_match_closed_forms():
    from scipy.special import ndtr

    from initlab.activations import get

    # the grid integrates indicators of intervals exactly up to one cell of mass (< 2e-4)
    tol = 2e-4
    assert facts(get("relu")).live == pytest.approx(0.5, abs=tol)
    assert facts(get("relu6")).live == pytest.approx(0.5, abs=tol)
    assert facts(get("tanh")).responsive == pytest.approx(
        2 * ndtr(math.atanh(0.99)) - 1, abs=tol)
    assert facts(get("sigmoid")).responsive == pytest.approx(
        2 * ndtr(math.log(0.99 / 0.01)) - 1, abs=tol)
    assert not facts(get("gelu")).dead_capable and facts(get("relu")).dead_capable


def _row(kind, rms=1.0, grad=1.0, **kw) -> LayerRow:
    return LayerRow(index=0, name="x", kind=kind, module_type="Linear", activation=None, call=0,
                    shape=(1,), rms=rms, grad_norm=grad, **kw)


@pytest.mark.parametrize(("factor", "verdict"), [(TOLERANCE * 0.99, "healthy"),
                                                  (TOLERANCE * 1.01, "exploding"),
                                                  (0.99 / TOLERANCE, "vanishing"),
                                                  (1.01 / TOLERANCE, "healthy")])
def test_the_decade_rule_on_the_forward_ratio(factor, verdict):
    layers = [_row("layer", rms=1.0), _row("layer", rms=factor), _row("layer", rms=1.0)]
    assert judge(layers, input_rms=1.0)[0] == verdict


def test_the_head_is_not_judged_backwards_and_zero_gradients_are_not_vanishing():
    layers = [_row("layer", grad=1.0), _row("layer", grad=1.0), _row("layer", grad=50.0)]
    assert judge(layers, 1.0)[0] == "healthy"  # a global pool before the head shrinks by sqrt(P)
    layers = [_row("layer", grad=0.0), _row("layer", grad=1.0), _row("layer", grad=1.0)]
    assert judge(layers, 1.0)[0] == "healthy"  # e.g. zero_residual: nothing reaches it yet


# ---------------------------------------------------------------- the probe leaves no trace

class WithState(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.head(self.drop(self.act(self.bn(self.conv(x)))).flatten(1))


def test_model_state_is_restored():
    torch.manual_seed(0)
    model = WithState()
    model.eval()
    model.drop.train()  # mixed modes come back as they were
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    x = torch.randn(16, 1, 6, 6)
    rng = torch.get_rng_state()
    diagnose(model, x)
    assert leftover_hooks(model) == []
    assert [m.training for m in model.modules()] == [False, False, False, False, True, False]
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())
    assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_same_seed_same_report_dropout_included():
    torch.manual_seed(0)
    model, x = WithState(), torch.randn(16, 1, 6, 6)
    first, second = diagnose(model, x, seed=3).to_dicts(), diagnose(model, x, seed=3).to_dicts()
    assert repr(first) == repr(second)  # repr: NaN fields compare equal
    assert repr(first) != repr(diagnose(model, x, seed=4).to_dicts())  # another dropout mask


def test_outputs_and_gradients_are_bit_identical_with_the_probe():
    torch.manual_seed(0)
    for model, x in ((WithState().eval(), torch.randn(8, 1, 6, 6)), (Small(), X)):
        sites, _ = find_sites(model)
        plain = model(x)
        plain_grads = torch.autograd.grad(plain.sum(), list(model.parameters()))
        with Recorder(sites) as recorder:
            probed = model(x)
            probed_grads = torch.autograd.grad(probed.sum(), list(model.parameters()))
        assert recorder.events  # the hooks did fire
        assert torch.equal(plain, probed)
        assert all(torch.equal(a, b) for a, b in zip(plain_grads, probed_grads, strict=True))
        assert leftover_hooks(model) == []


class Failing(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(D_IN, 8)

    def forward(self, x):
        raise RuntimeError("boom") if self.fc(x).sum() > -1e9 else None


def test_hooks_are_removed_when_the_forward_raises():
    model = Failing()
    with pytest.raises(ValueError, match="boom"):
        diagnose(model, X)
    assert leftover_hooks(model) == []
    assert torch.backends.mha.get_fastpath_enabled()


class FastpathSpy(nn.Module):
    """Records whether the attention fast path was enabled while the model ran."""

    def __init__(self):
        super().__init__()
        self.seen = []
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

    def forward(self, x):
        if isinstance(x, torch.Tensor):  # not torch.fx's tracing proxy
            self.seen.append(torch.backends.mha.get_fastpath_enabled())
        return self.encoder(x)


def test_transformer_fast_path_is_off_while_probing_and_unfired_hooks_are_reported():
    model = FastpathSpy()
    before = torch.backends.mha.get_fastpath_enabled()
    report = diagnose(model, torch.randn(4, 5, 16), train=False)
    assert model.seen == [False]
    assert torch.backends.mha.get_fastpath_enabled() == before
    # attention calls its out_proj's weight directly: that hook never fires, and says so
    assert "encoder.layers.0.self_attn.out_proj (NonDynamicallyQuantizableLinear)" in \
        report.unfired
    # the layer's functional activation (relu) is derived from linear1's output
    assert any(r.name == "encoder.layers.1.linear1->relu" for r in report.layers)


class BareLSTM(nn.Module):
    def __init__(self, cell=nn.LSTM):
        super().__init__()
        self.rnn = cell(6, 12, batch_first=True)

    def forward(self, x):
        return self.rnn(x)  # a tuple: (output, state)


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
def test_recurrent_tuple_outputs(cell):
    report = diagnose(BareLSTM(cell), torch.randn(4, 7, 6))
    (row,) = rows(report, "layer")
    assert row.shape == (4, 7, 12) and math.isfinite(row.grad_norm)


def test_a_module_called_twice_gives_two_rows():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.act = nn.Linear(D_IN, 16), nn.Linear(16, 4), nn.ReLU()

        def forward(self, x):
            return self.act(self.b(self.act(self.a(x))))

    labels = [r.label for r in diagnose(Shared(), X).layers]
    assert labels == ["a", "act", "b", "act#2"]


# ---------------------------------------------------------------- bad input

def test_wrong_input_shape_names_expected_and_given_shapes():
    model = deep_mlp(nn.ReLU, depth=2)
    with pytest.raises(ValueError) as error:
        diagnose(model, torch.randn(BATCH, 100))
    message = str(error.value)
    assert "(*, 32)" in message and "(64, 100)" in message and "'0' (Linear)" in message
    assert leftover_hooks(model) == []


def test_a_model_without_parameters_gets_a_plain_message():
    with pytest.raises(ValueError, match="Sequential has no parameters"):
        diagnose(nn.Sequential(nn.ReLU()), X)


def test_inputs_must_be_tensors():
    with pytest.raises(TypeError, match="got list"):
        diagnose(deep_mlp(nn.ReLU, 1), [[1.0, 2.0]])


def test_report_as_dicts_and_dataframe():
    report = diagnose(exploding_relu(), X)
    dicts = report.to_dicts()
    assert len(dicts) == len(report.layers) and dicts[0]["label"] == "0"
    assert {"mean", "std", "dead", "saturated", "grad_norm", "verdict"} <= set(dicts[0])
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="to_dicts"):
            report.to_dataframe()
    else:
        assert list(report.to_dataframe()["label"]) == [d["label"] for d in dicts]
    assert "exploding" in str(report)
