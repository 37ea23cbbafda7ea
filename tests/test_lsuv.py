"""LSUV (Mishkin & Matas 2016) on real digits: every layer's output std is checked by plain
forward hooks written here (independent of LSUV's own measuring code), on the batch LSUV used
and on fresh batches; order, skipping, errors, modes and determinism.

Inputs are sklearn's bundled 8x8 digits (real images, no download), standardized, shuffled
with a fixed seed: batch A (256 examples) calibrates, batches B and C (256 each) are fresh.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from initlab.adaptive import lsuv
from initlab.models import mlp

TOL = 0.05
# On a fresh batch of 256 digits a layer's output std differs from the calibration batch's by
# the sampling error of a std estimated from 256 examples: measured at most 0.02 over 51 layers,
# 3 init seeds and 5 fresh batches (50-layer ReLU MLP). 0.1 leaves a 5x margin and still fails
# for an uncalibrated net (torch's default init gives std 0.5-0.7 per layer).
FRESH_TOL = 0.1
LAYERS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return ((x - x.mean()) / x.std())[order], torch.tensor(data.target)[order]


def output_stds(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """std of every layer's output (attention: its first output) on one forward pass."""
    stds: dict[str, float] = {}

    def record(name):
        def hook(_module, _inputs, output) -> None:
            output = output[0] if isinstance(output, tuple) else output
            stds.setdefault(name, float(output.double().std(correction=0)))
        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in model.named_modules()
               if isinstance(m, LAYERS + (nn.MultiheadAttention,))
               and not n.endswith("out_proj")]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return stds


def cnn() -> nn.Module:
    """Conv, strided conv, transposed conv (upsampling back to 8x8), conv, linear head."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(32, 16, 2, stride=2), nn.ReLU(),
        nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
    )


@pytest.mark.parametrize("build", [lambda: mlp(64, [256] * 50, 10, "relu", init=None),
                                   cnn], ids=["mlp-50-relu", "cnn"])
def test_every_layer_within_tol_on_its_batch_and_close_on_fresh_ones(digits, build):
    x, y = digits
    model = build().eval()
    result = lsuv(model, (x[:256], y[:256]), tol=TOL)
    layers = [n for n, m in model.named_modules() if isinstance(m, LAYERS)]
    assert [r.name for r in result.rows] == layers  # each a Sequential: execution order
    assert result.converged
    on_batch = output_stds(model, x[:256])
    assert set(on_batch) == set(layers)
    assert all(abs(s - 1.0) <= TOL for s in on_batch.values()), on_batch
    for fresh in (x[256:512], x[512:768]):
        stds = output_stds(model, fresh)
        assert all(abs(s - 1.0) <= FRESH_TOL for s in stds.values()), stds
    assert model.training is False


class Reordered(nn.Module):
    """``second`` is registered first but runs last: registration order is the wrong order."""

    def __init__(self):
        super().__init__()
        self.second = nn.Linear(64, 32)
        self.first = nn.Linear(64, 64)

    def forward(self, x):
        return self.second(torch.relu(self.first(x.flatten(1))))


def test_layers_are_calibrated_in_execution_order(digits):
    x = 3 * digits[0][:256]  # std 3 input: the first layer's rescaling then matters downstream
    model = Reordered()
    result = lsuv(model, x)
    assert [r.name for r in result.rows] == ["first", "second"]
    stds = output_stds(model, x)
    # Calibrated in registration order, ``second`` would be left at about 1/3.
    assert abs(stds["first"] - 1) <= TOL and abs(stds["second"] - 1) <= TOL


def test_attention_out_projection_and_transformer_layers(digits):
    x = digits[0][:64].reshape(64, 8, 8)  # 8 tokens (image rows) of 8 pixels

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(8, 32)
            self.attn = nn.MultiheadAttention(32, 4, batch_first=True)
            self.block = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)

        def forward(self, tokens):
            h = self.embed(tokens)
            h = self.attn(h, h, h, need_weights=False)[0]
            return self.block(h)

    torch.manual_seed(0)
    model = Encoder().eval()  # eval: torch's fused fast path would skip the inner layers' hooks
    result = lsuv(model, x)
    names = [r.name for r in result.rows]
    assert names == ["embed", "attn.out_proj", "block.self_attn.out_proj", "block.linear1",
                     "block.linear2"]
    assert all(abs(r.final_std - 1) <= TOL for r in result.rows)
    attn_out = model.attn(*[model.embed(x)] * 3, need_weights=False)[0].detach()
    assert abs(float(attn_out.double().std(correction=0)) - 1) <= TOL


def test_zero_variance_layer_warns_and_is_skipped(digits):
    x = digits[0][:256]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16),
                          nn.ReLU(), nn.Linear(16, 10))
    with torch.no_grad():  # a dead layer: every unit of "1" is negative, so "3" sees zeros
        model[1].bias.fill_(-1e3)
        model[3].bias.zero_()
    dead = model[3].weight.detach().clone()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = lsuv(model, x, orthogonal_first=False)
    messages = [str(w.message) for w in caught]
    # "5" sees relu(0) = 0 too: its output is its bias, constant over the batch.
    for layer in ("3", "5"):
        assert any(f"layer '{layer}' (Linear) has zero output variance" in m for m in messages)
    status = {r.name: r.status for r in result.rows}
    assert status["3"] == status["5"] == "skipped: zero variance"
    assert torch.equal(model[3].weight, dead)  # never divided by zero
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert status["1"] == "converged"


def test_dataloader_first_batch_and_same_seed_same_weights(digits):
    x, y = digits
    loader = DataLoader(TensorDataset(x[:512], y[:512]), batch_size=128)
    by_loader, by_tensor = mlp(64, [64] * 4, 10, init=None), mlp(64, [64] * 4, 10, init=None)
    lsuv(by_loader, loader, generator=7)
    lsuv(by_tensor, x[:128], generator=torch.Generator().manual_seed(7))
    for a, b in zip(by_loader.parameters(), by_tensor.parameters(), strict=True):
        assert torch.equal(a, b)


def test_empty_dataloader_is_a_clear_error():
    loader = DataLoader(TensorDataset(torch.empty(0, 64)), batch_size=8)
    with pytest.raises(ValueError, match="DataLoader yielded nothing"):
        lsuv(mlp(64, [16], 10, init=None), loader)


def test_mode_and_running_statistics_are_restored(digits):
    x = digits[0][:128]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5),
                          nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    model.train()
    model[3].eval()  # a mixed state must come back as it was
    modes = [m.training for m in model.modules()]
    stats = [b.clone() for b in model.buffers()]
    result = lsuv(model, x)
    assert result.converged
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(a, b) for a, b in zip(model.buffers(), stats, strict=True))


def test_without_orthogonal_pre_init_only_the_scale_changes(digits):
    x = digits[0][:256]
    model = mlp(64, [128] * 6, 10, "tanh", init=None)  # torch's default init, non-zero biases
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = lsuv(model, x, orthogonal_first=False, tol=0.01)
    assert result.converged
    for name, param in model.named_parameters():
        if name.endswith("bias"):
            assert torch.equal(param, before[name])
        else:  # collinear with the old weight: cosine 1
            cos = torch.nn.functional.cosine_similarity(param.detach().flatten(),
                                                        before[name].flatten(), dim=0)
            assert float(cos) == pytest.approx(1.0, abs=1e-6)
    assert all(abs(s - 1) <= 0.01 for s in output_stds(model, x).values())


def test_bad_arguments_are_named():
    model = mlp(64, [16], 10, init=None)
    x = torch.randn(8, 64)
    with pytest.raises(ValueError, match="target_std must be a positive finite number, got 0"):
        lsuv(model, x, target_std=0)
    with pytest.raises(ValueError, match="max_iters must be an int >= 1, got 0"):
        lsuv(model, x, max_iters=0)
    with pytest.raises(TypeError, match="must be a tensor, an \\(x, y\\) batch or a DataLoader"):
        lsuv(model, 3.0)


def test_result_prints_as_a_table(digits):
    result = lsuv(mlp(64, [32, 32], 10, init=None), digits[0][:64])
    text = str(result)
    assert "iterations" in text and "final std" in text
    assert all(row.name in text for row in result.rows)
    assert len(result.to_dicts()) == 3
