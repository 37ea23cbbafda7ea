"""Model builders: output shapes on real images, hand-computed parameter counts, seeded
determinism, gradients through every parameter, and pointed errors.

Inputs are sklearn's bundled 8x8 digits (real images, no download) and the same digits
resized to 28x28 (MNIST's shape).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from initlab import models
from initlab.models.patch_transformer import default_heads

SHAPES = [(1, 8, 8), (1, 28, 28)]
CLASSES = 10


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """Eight standardized 8x8 digit images (N, 1, 8, 8) and their labels."""
    data = load_digits()
    x = torch.tensor(data.images[:8], dtype=torch.float32).unsqueeze(1)
    return (x - x.mean()) / x.std(), torch.tensor(data.target[:8])


def images(digits, shape: tuple[int, int, int]) -> torch.Tensor:
    x, _ = digits
    return x if shape[1:] == x.shape[2:] else F.interpolate(x, size=shape[1:], mode="bilinear")


def small(name: str, shape=(1, 8, 8), *, seed: int = 0, activation: str | None = None,
          depth: int = 2, width: int = 8) -> nn.Module:
    allowed = models.activations_for(name)
    act = activation or (allowed[0] if allowed else "tanh")
    return models.build(name, shape, CLASSES, activation=act, depth=depth, width=width,
                        seed=seed)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


# ---------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("shape", SHAPES, ids=["8x8", "28x28"])
@pytest.mark.parametrize("name", models.names())
def test_output_shape_on_real_images(name, shape, digits):
    x = images(digits, shape)
    y = small(name, shape)(x)
    expected = (len(x), CLASSES, *shape[1:]) if name == "unet" else (len(x), CLASSES)
    assert tuple(y.shape) == expected
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("image_size,depth", [(28, 3), (8, 3), (7, 1)])
def test_unet_keeps_odd_sizes(image_size, depth):
    # 28 -> 14 -> 7 -> 3 pools to an odd size: the upsampled 6 is padded back to 7.
    model = models.unet(2, 3, width=4, depth=depth, image_size=image_size)
    y = model(torch.randn(2, 2, image_size, image_size, generator=torch.Generator().manual_seed(0)))
    assert tuple(y.shape) == (2, 3, image_size, image_size)


@pytest.mark.parametrize("in_shape", [(40,), (3, 40)])
def test_rnn_reads_one_dimensional_signals(in_shape):
    model = models.rnn(in_shape, 5, "gru", depth=1, width=6)
    assert tuple(model(torch.zeros(4, *in_shape)).shape) == (4, 5)
    assert model.rnn.input_size == (in_shape[0] if len(in_shape) == 2 else 1)


def test_rnn_steps_are_image_rows():
    # Step h of the sequence must be row h of every channel: [x[c=0, h, :], x[c=1, h, :]].
    model = models.rnn((2, 5, 3), 4, "lstm", depth=1, width=6)
    x = torch.randn(3, 2, 5, 3, generator=torch.Generator().manual_seed(1))
    seen = []
    handle = model.rnn.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    model(x)
    handle.remove()
    expected = torch.stack([torch.cat([x[:, 0, h], x[:, 1, h]], dim=1) for h in range(5)], dim=1)
    torch.testing.assert_close(seen[0], expected, rtol=0, atol=0)


def test_transformer_tokens_are_patches():
    model = models.transformer((3, 28, 28), 10, "gelu", depth=1, width=32, patch=4)
    assert model.pos.num_embeddings == (28 // 4) ** 2
    assert model.encoder.layers[0].self_attn.num_heads == default_heads(32) == 2


# -------------------------------------------------------------------- parameter counts


def test_mlp_is_the_articles_model():
    model = models.mlp(784, [256], 10, "relu")
    layers = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in layers] == [(784, 256), (256, 10)]
    assert [type(m) for m in model] == [nn.Flatten, nn.Linear, nn.ReLU, nn.Linear]
    assert n_params(model) == 784 * 256 + 256 + 256 * 10 + 10 == 203_530


def test_mlp_deep_flat_layout_and_bias_option():
    model = models.mlp(64, [32, 16, 16], 10, "leaky_relu", bias=False)
    acts = [m for m in model if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 3 and all(a.negative_slope == 0.01 for a in acts)
    assert n_params(model) == 64 * 32 + 32 * 16 + 16 * 16 + 16 * 10
    assert all(m.bias is None for m in model if isinstance(m, nn.Linear))


def test_mlp_gives_each_layer_its_own_parametric_activation():
    model = models.mlp(64, [32, 16], 10, "prelu")
    prelus = [m for m in model if isinstance(m, nn.PReLU)]
    assert len(prelus) == 2 and prelus[0].weight is not prelus[1].weight
    assert n_params(model) == linear(64, 32) + linear(32, 16) + linear(16, 10) + 2


def test_small_vgg_parameter_count():
    # 1x8x8 input, 2 stages of 2 convs, width 4: channels 1 -> 4 -> 4 | pool 4x4 | 4 -> 8 -> 8
    # | pool 2x2; convs have no bias (batch norm follows), each BatchNorm2d has 2 * C.
    model = models.vgg((1, 8, 8), 10, "relu", depth=2, width=4)
    convs = 9 * (1 * 4 + 4 * 4 + 4 * 8 + 8 * 8)
    norms = 2 * (4 + 4 + 8 + 8)
    classifier = linear(8 * 2 * 2, 16) + linear(16, 10)
    assert n_params(model) == convs + norms + classifier == 1790


def test_vgg_without_batch_norm_has_conv_biases():
    model = models.vgg((3, 8, 8), 5, "tanh", depth=1, width=4, batch_norm=False)
    expected = (9 * 3 * 4 + 4) + (9 * 4 * 4 + 4) + linear(4 * 4 * 4, 16) + linear(16, 5)
    assert n_params(model) == expected


def test_resnet_blocks_and_projection_shortcuts():
    model = models.resnet((1, 8, 8), 10, "relu", depth=2, width=4)
    blocks = [m for m in model.modules() if isinstance(m, models.BasicBlock)]
    assert len(blocks) == 3 * 2  # 3 stages x depth blocks: ResNet-(6 * 2 + 2)
    projections = [b for b in blocks if not isinstance(b.shortcut, nn.Identity)]
    assert len(projections) == 2  # the first block of stages 2 and 3 halves the map

    def block(c_in, c_out):
        shortcut = c_in * c_out + 2 * c_out if c_in != c_out else 0
        return 9 * c_in * c_out + 9 * c_out * c_out + 4 * c_out + shortcut

    stem = 9 * 1 * 4 + 2 * 4
    stages = block(4, 4) * 2 + block(4, 8) + block(8, 8) + block(8, 16) + block(16, 16)
    assert n_params(model) == stem + stages + linear(16, 10)


def test_resnet18_parameter_count():
    # torchvision's resnet18 has 11,689,512 parameters; the CIFAR stem (3x3, 64 channels)
    # saves 3 * 64 * (49 - 9) = 7,680 and a 10-class head 512 * 990 + 990 = 507,870.
    with torch.device("meta"):
        model = models.resnet18(num_classes=10, in_channels=3, init=None)
    assert n_params(model) == 11_689_512 - 7_680 - 507_870 == 11_173_962


def test_transformer_parameter_counts():
    def encoder_layer(w):  # attention 4w^2 + 4w, feed-forward 8w^2 + 5w, two LayerNorms 4w
        return 12 * w * w + 13 * w

    model = models.transformer((1, 8, 8), 10, "gelu", depth=2, width=16, patch=4)
    expected = (linear(16, 16) + 4 * 16 + 2 * encoder_layer(16) + 2 * 16 + linear(16, 10))
    assert n_params(model) == expected
    with torch.device("meta"):
        big = models.big_transformer(init=None)
    w = 768
    embed = linear(3 * 4 * 4, w) + 64 * w
    assert n_params(big) == embed + 14 * encoder_layer(w) + 2 * w + linear(w, 10)
    assert 95e6 < n_params(big) < 105e6


# ---------------------------------------------------------------------- determinism


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", models.names())
def test_same_seed_same_weights_different_seed_different(name):
    a, b, c = (state(small(name, seed=s)) for s in (7, 7, 8))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    weights = [k for k, v in a.items() if v.dim() >= 2]
    assert weights and all(not torch.equal(a[k], c[k]) for k in weights)


def test_builders_leave_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    for name in models.names():
        small(name)
    assert torch.equal(torch.rand(5), expected)


def test_builder_initializes_through_init_model():
    from initlab.plan import init_model

    built = models.mlp(64, [32], 10, "tanh", init="xavier_normal", seed=3)
    by_hand = models.mlp(64, [32], 10, "tanh", init=None, seed=3)
    init_model(by_hand, torch.zeros(2, 64), scheme="xavier_normal",
               generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(p, q) for p, q in zip(built.parameters(), by_hand.parameters(),
                                                 strict=True))


def test_auto_init_gives_he_std_before_relu():
    # "auto" before ReLU is He init: std = sqrt(2 / fan_in) (He et al. 2015), vs PyTorch's
    # default 1 / sqrt(3 * fan_in), 2.4x smaller. 200,704 samples: the sample std's relative
    # error is about 1 / sqrt(2 n) = 0.16%, so 2% is a > 10-sigma band.
    first = models.mlp(784, [256], 10, "relu")[1].weight
    assert first.std().item() == pytest.approx(math.sqrt(2 / 784), rel=0.02)


@pytest.mark.parametrize("name", ["vgg", "resnet", "unet"])
def test_batch_norm_statistics_are_fresh(name):
    norms = [m for m in small(name).modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms
    for m in norms:
        assert torch.equal(m.running_mean, torch.zeros_like(m.running_mean))
        assert torch.equal(m.running_var, torch.ones_like(m.running_var))
        assert m.num_batches_tracked.item() == 0


# ------------------------------------------------------------------ forward / backward


@pytest.mark.parametrize("name", models.names())
def test_forward_backward_reaches_every_parameter(name, digits):
    x, labels = digits
    model = small(name)
    logits = model(x)
    if name == "unet":  # per-pixel classes: the digit's intensity quantized into 10 levels
        target = ((x[:, 0] - x.min()) / (x.max() - x.min()) * 9.999).long()
    else:
        target = labels
    loss = F.cross_entropy(logits, target)
    loss.backward()
    assert torch.isfinite(loss)
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


# ---------------------------------------------------------------------------- errors


def test_unknown_model_name_points_to_the_closest():
    with pytest.raises(ValueError, match=r"unknown model 'resnt'; did you mean 'resnet'\?"):
        models.build("resnt", (1, 8, 8), 10, activation="relu", depth=1, width=4)


def test_lstm_rejects_an_activation_it_cannot_use():
    assert models.activations_for("lstm") == ["tanh"]
    assert models.activations_for("mlp") is None
    with pytest.raises(ValueError, match="'relu'.*tanh"):
        models.build("lstm", (1, 8, 8), 10, activation="relu", depth=1, width=4)


def test_unknown_activation_and_cell_are_named():
    with pytest.raises(ValueError, match="did you mean 'relu'"):
        models.mlp(4, [4], 2, "rleu")
    with pytest.raises(ValueError, match="did you mean 'gru'"):
        models.rnn((1, 8, 8), 10, "gruu")


def test_conv_models_need_images():
    with pytest.raises(ValueError, match=r"vgg needs image inputs.*\(40,\)"):
        models.build("vgg", (40,), 10, activation="relu", depth=1, width=4)


def test_transformer_heads_must_divide_width():
    with pytest.raises(ValueError, match="width 30 is not divisible by heads=4"):
        models.transformer((1, 8, 8), 10, depth=1, width=30, heads=4)
