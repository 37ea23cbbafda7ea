"""Fans and packed blocks per module kind, against hand-computed values and
against fans *measured* by running the real module (ones in, ones as weights);
for strided convolutions also against the gradient variance (fan_out) and for
strided transposed ones against the output variance (fan_in) they give."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab.init import Block, Fans, he_normal_, param_blocks, tensor_fans

torch_fans = nn.init._calculate_fan_in_and_fan_out


# --------------------------------------------------------------------------- tensor_fans


@pytest.mark.parametrize("shape", [(3, 5), (4, 3, 5), (8, 4, 3, 3), (8, 4, 2, 3, 3), (7, 1)])
def test_tensor_fans_match_torch_for_ungrouped_weights(shape):
    assert tensor_fans(shape) == Fans(*torch_fans(torch.empty(shape)))


def test_tensor_fans_grouped_and_transposed_by_hand():
    # Conv2d(6, 12, 3, groups=3) weight (12, 2, 3, 3): in/g * 9 = 18, out/g * 9 = 36
    assert tensor_fans((12, 2, 3, 3), groups=3) == Fans(18, 36)
    # ConvTranspose2d(6, 12, 3, groups=3) weight (6, 4, 3, 3): in/g * 9 = 18, out/g * 9 = 36
    assert tensor_fans((6, 4, 3, 3), transposed=True, groups=3) == Fans(18, 36)


def test_tensor_fans_strided_transposed_by_hand():
    # ConvTranspose2d(6, 4, 2, stride=2): one tap per dim reaches each output: 6 * (2/2)^2
    assert tensor_fans((6, 4, 2, 2), transposed=True, stride=2) == Fans(6, 16)
    # ConvTranspose2d(6, 4, 3, stride=2): 1.5 taps per dim on average: 6 * 1.5^2 = 13.5
    assert tensor_fans((6, 4, 3, 3), transposed=True, stride=(2, 2)) == Fans(13.5, 36)
    # ConvTranspose1d(8, 2, 4, stride=2, groups=2): 4/2 * 4 taps = 8; whole counts stay ints
    fans = tensor_fans((8, 1, 4), transposed=True, groups=2, stride=2)
    assert fans == Fans(8, 4) and isinstance(fans.fan_in, int)


def test_tensor_fans_strided_conv_by_hand():
    # ViT patch embedding Conv2d(3, 768, 16, stride=16): each input pixel feeds one output per
    # output channel: fan_out 768, where torch's stride-blind 768 * 256 is 256x too large
    assert tensor_fans((768, 3, 16, 16), stride=16) == Fans(3 * 256, 768)
    # ResNet downsampling Conv2d(64, 128, 3, stride=2, padding=1): 128 * (3/2)^2 = 288
    assert tensor_fans((128, 64, 3, 3), stride=(2, 2)) == Fans(576, 288)
    # Conv2d(6, 4, 3, stride=2, groups=2): (4/2) * 2.25 = 4.5, a float; fan_in 3 * 9 stays
    fans = tensor_fans((4, 3, 3, 3), groups=2, stride=2)
    assert fans == Fans(27, 4.5) and isinstance(fans.fan_in, int)
    # Conv1d(4, 6, 2, stride=3): 6 * 2/3 = 4, whole, so an int
    fans = tensor_fans((6, 4, 2), stride=3)
    assert fans == Fans(8, 4) and isinstance(fans.fan_out, int)


def test_tensor_fans_take_numpy_ints_and_a_linear_unit_stride():
    assert tensor_fans((8, 4, 3, 3), stride=np.int64(2)) == Fans(36, 18)
    assert tensor_fans((8, 4), stride=(1,)) == tensor_fans((8, 4)) == Fans(4, 8)


@pytest.mark.parametrize(
    ("shape", "kwargs", "match"),
    [
        ((6, 4, 3, 3), {"transposed": True, "stride": (2,)}, r"\(2 of them\).*got \(2,\)"),
        ((6, 4, 3), {"transposed": True, "stride": 0}, "got 0"),
        ((6, 4, 3, 3), {"stride": (2, 0)}, r"got \(2, 0\)"),
        ((6, 4), {"stride": 2}, r"shape \(6, 4\) \(0 of them\).*1 without .*got 2"),
        ((6, 4, 3, 3), {"stride": 2.0}, "got 2.0"),  # a float, not a TypeError
        ((6, 4, 3, 3), {"stride": True}, "got True"),
    ],
)
def test_tensor_fans_refuse_a_bad_stride_naming_it(shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tensor_fans(shape, **kwargs)


@pytest.mark.parametrize("shape", [(), (5,)])
def test_tensor_fans_refuse_fewer_than_two_dims_naming_the_shape(shape):
    with pytest.raises(ValueError, match=re_shape(shape)):
        tensor_fans(shape)


def test_tensor_fans_refuse_groups_that_do_not_divide():
    with pytest.raises(ValueError, match="groups=4"):
        tensor_fans((6, 2, 3), groups=4)
    with pytest.raises(ValueError, match="positive int"):
        tensor_fans((6, 2, 3), groups=0)


def re_shape(shape: tuple[int, ...]) -> str:
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


# --------------------------------------------------------------------------- measured fans


def measured_fans(module: nn.modules.conv._ConvNd, size: int) -> Fans:
    """Fans counted by the module itself. With every weight and input equal to 1 and a zero
    bias, an output equals the number of (input channel, tap) terms summed into it (fan-in),
    and the gradient of sum(outputs) at an input the number of (output channel, tap) terms it
    feeds (fan-out). Each is averaged over a window of 2 * stride consecutive interior
    positions per dim, every residue mod the stride twice: the mean count the fans are. The
    counts are whole numbers, exact in float32; their mean is taken in float64."""
    with torch.no_grad():
        module.weight.fill_(1.0)
        if module.bias is not None:
            module.bias.zero_()
    x = torch.ones(1, module.in_channels, *[size] * len(module.stride), requires_grad=True)
    y = module(x)
    y.sum().backward()
    return Fans(window_mean(y.detach(), module.stride), window_mean(x.grad, module.stride))


def window_mean(counts: torch.Tensor, stride: tuple[int, ...]) -> float:
    """Mean of channel 0 over 2 * stride positions per dim around the centre."""
    spatial = counts.shape[2:]
    assert all(n // 2 - s >= 0 and n // 2 + s <= n for n, s in zip(spatial, stride, strict=True))
    window = tuple(slice(n // 2 - s, n // 2 + s) for n, s in zip(spatial, stride, strict=True))
    return counts[(0, 0, *window)].double().mean().item()


CONVS = [  # (module, input size per spatial dim)
    pytest.param(lambda: nn.Conv1d(4, 6, 5), 15, id="conv1d"),
    pytest.param(lambda: nn.Conv2d(6, 12, 3, groups=3), 9, id="conv2d-grouped"),
    pytest.param(lambda: nn.Conv2d(8, 16, 3, groups=8), 9, id="depthwise"),
    pytest.param(lambda: nn.Conv3d(2, 4, 3, bias=False), 9, id="conv3d"),
    pytest.param(lambda: nn.ConvTranspose1d(4, 6, 5), 15, id="convT1d"),
    pytest.param(lambda: nn.ConvTranspose2d(6, 12, 3, groups=3), 9, id="convT2d-grouped"),
    pytest.param(lambda: nn.ConvTranspose3d(2, 4, 3, bias=False), 9, id="convT3d"),
]
STRIDED_CONVS = [  # fan_out: the mean number of outputs an input feeds, (out/g) * prod(k/s)
    pytest.param(lambda: nn.Conv2d(6, 4, 3, 2, 1), 16, id="k3s2p1-resnet"),
    pytest.param(lambda: nn.Conv2d(6, 4, 1, stride=2), 16, id="k1s2-shortcut-gaps"),
    pytest.param(lambda: nn.Conv2d(3, 8, 4, stride=4), 40, id="k4s4-patch-embed"),
    pytest.param(lambda: nn.Conv2d(6, 4, 2, stride=3), 30, id="k2s3-gaps"),
    pytest.param(lambda: nn.Conv2d(6, 4, 3, stride=2, groups=2), 16, id="k3s2-g2"),
    pytest.param(lambda: nn.Conv2d(4, 4, 3, stride=2, groups=4), 16, id="k3s2-depthwise"),
    pytest.param(lambda: nn.Conv2d(6, 4, 3, stride=2, dilation=2), 20, id="k3s2d2"),
    pytest.param(lambda: nn.Conv2d(6, 4, 3, 2, 1, padding_mode="reflect"), 16, id="reflect"),
    pytest.param(lambda: nn.Conv2d(6, 4, (3, 2), stride=(2, 1)), 16, id="anisotropic"),
    pytest.param(lambda: nn.Conv1d(4, 6, 5, stride=3, padding=2), 30, id="1d-k5s3"),
    pytest.param(lambda: nn.Conv3d(2, 3, 3, stride=2), 14, id="3d-k3s2"),
]
STRIDED_TRANSPOSED = [  # fan_in: the mean number of terms an output sums, (in/g) * prod(k/s)
    pytest.param(lambda: nn.ConvTranspose2d(6, 4, 2, stride=2), 12, id="T-k2s2-unet"),
    pytest.param(lambda: nn.ConvTranspose2d(6, 4, 3, 2, 1, output_padding=1), 12, id="T-k3s2"),
    pytest.param(lambda: nn.ConvTranspose2d(6, 4, 4, stride=2, padding=1), 12, id="T-k4s2"),
    pytest.param(lambda: nn.ConvTranspose2d(6, 4, 3, stride=1), 12, id="T-k3s1"),
    pytest.param(lambda: nn.ConvTranspose2d(6, 4, 3, stride=2, groups=2), 12, id="T-k3s2-g2"),
    pytest.param(lambda: nn.ConvTranspose2d(4, 4, 3, stride=2, groups=4), 12, id="T-depthwise"),
    pytest.param(lambda: nn.ConvTranspose2d(6, 4, 1, stride=2), 12, id="T-k1s2-gaps"),
    pytest.param(lambda: nn.ConvTranspose2d(6, 4, 2, stride=3), 12, id="T-k2s3-gaps"),
    pytest.param(lambda: nn.ConvTranspose2d(6, 4, 3, stride=2, dilation=2), 12, id="T-k3s2d2"),
    pytest.param(lambda: nn.ConvTranspose2d(6, 4, (3, 2), stride=(2, 1)), 12, id="T-anisotropic"),
    pytest.param(lambda: nn.ConvTranspose1d(4, 6, 5, stride=3, padding=2), 16, id="T-1d-k5s3"),
    pytest.param(lambda: nn.ConvTranspose3d(2, 3, 3, stride=2), 8, id="T-3d-k3s2"),
]


@pytest.mark.parametrize(("make", "size"), CONVS + STRIDED_CONVS + STRIDED_TRANSPOSED)
def test_conv_fans_equal_the_mean_counts_the_module_computes_with(make, size):
    module = make()
    (block,) = param_blocks(module, "weight")
    assert tuple(block.fans) == pytest.approx(tuple(measured_fans(module, size)), rel=1e-12)
    assert block.groups == module.groups
    if module.bias is not None:
        assert param_blocks(module, "bias")[0].fans == block.fans


@pytest.mark.parametrize(("make", "size"), STRIDED_CONVS)
def test_strided_conv_and_its_transpose_mirror_each_other(make, size):
    # ConvTranspose with the same k, s, d, p is the adjoint of the conv (its input gradient):
    # the conv's fan_out is its transpose's fan_in, with the channels swapped.
    conv = make()
    adjoint = {3: nn.ConvTranspose1d, 4: nn.ConvTranspose2d, 5: nn.ConvTranspose3d}
    transpose = adjoint[conv.weight.dim()](conv.out_channels, conv.in_channels, conv.kernel_size,
                                           conv.stride, dilation=conv.dilation, groups=conv.groups)
    fans, mirrored = param_blocks(conv, "weight")[0].fans, param_blocks(transpose, "weight")[0].fans
    assert (fans.fan_in, fans.fan_out) == (mirrored.fan_out, mirrored.fan_in)


def test_unet_upsampler_sums_exactly_one_tap_per_dim_at_every_output():
    conv = nn.ConvTranspose2d(6, 4, 2, stride=2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    counts = conv(torch.ones(1, 6, 5, 5))
    assert (counts == 6).all()  # in_channels terms: fan_in 6, not 6 * 4
    assert param_blocks(conv, "weight")[0].fans == Fans(6, 16)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: nn.ConvTranspose2d(64, 64, 2, stride=2), id="k2s2"),
        pytest.param(lambda: nn.ConvTranspose2d(64, 64, 3, 2, 1, output_padding=1), id="k3s2"),
        pytest.param(lambda: nn.ConvTranspose2d(64, 64, 4, stride=2, padding=1), id="k4s2"),
    ],
)
def test_he_normal_then_relu_keeps_the_second_moment_through_an_upsampler(make):
    # He et al. (2015): W ~ N(0, 2 / fan_in), x with E[x^2] = q, then E[relu(Wx)^2] = q when
    # fan_in is the mean number of terms per output. Averaged over positions: the k3s2 outputs
    # sum 1, 2 or 4 taps. The crop [2:-2] drops the borders and keeps an even number of
    # positions per dim, so both residues mod 2 count equally. Tolerance 10%: the estimate
    # varies mainly with the weight draw, the mean of 64 * 64 * 4 squared weights per phase,
    # relative sd sqrt(2 / 16384) ~ 1.1%, plus ~1% from the 262k input entries: > 5 sd. The
    # stride-blind fan (in * k^2, torch's convention) gives 1/4 of q here.
    conv = make()
    (block,) = param_blocks(conv, "weight")
    x = torch.randn(16, 64, 16, 16, generator=torch.Generator().manual_seed(1))
    q_in = x.pow(2).mean().item()
    ratios = {}
    for label, fans in (("strided", block.fans), ("blind", tensor_fans(conv.weight.shape,
                                                                          transposed=True))):
        he_normal_(conv.weight, fans=fans, generator=torch.Generator().manual_seed(0))
        nn.init.zeros_(conv.bias)
        with torch.no_grad():
            y = F.relu(conv(x))[..., 2:-2, 2:-2]
        ratios[label] = y.pow(2).mean().item() / q_in
    assert ratios["strided"] == pytest.approx(1.0, rel=0.1)
    assert ratios["blind"] == pytest.approx(0.25, rel=0.1)


@pytest.mark.parametrize(
    ("make", "blind_ratio"),
    [
        pytest.param(lambda: nn.Conv2d(64, 64, 3, 2, 1), 1 / 4, id="k3s2p1-resnet"),
        pytest.param(lambda: nn.Conv2d(64, 64, 1, stride=2), 1 / 4, id="k1s2-shortcut"),
        pytest.param(lambda: nn.Conv2d(64, 64, 4, stride=4), 1 / 16, id="k4s4-patch-embed"),
    ],
)
def test_he_normal_fan_out_keeps_the_gradients_second_moment_through_a_strided_conv(
    make, blind_ratio
):
    # He et al. (2015), backward: y = W relu(x), upstream gradient u with E[u^2] = q. The
    # gradient at input i is relu'(x_i) times a sum of n_i terms W * u, n_i the (output
    # channel, tap) pairs it feeds, so E[dx^2] = 1/2 * n_i * Var(W) * q, and W ~ N(0, 2 /
    # fan_out) keeps q when fan_out is the mean of n_i over positions: (out) * prod(k/s).
    # The crop of `stride` per side drops the padded border and keeps a multiple of the
    # stride per dim, so every residue counts equally (k3s2 inputs feed 1, 2 or 4 outputs per
    # channel; k1s2 inputs 1 or none). Tolerance 10%: the estimate varies mainly with the
    # weight draw, the mean of >= 4096 squared weights, relative sd <= sqrt(2 / 4096) ~ 2.2%
    # (k1s2), plus < 1% from the >= 32k upstream entries and the 400k ReLU masks: > 4 sd.
    # torch's stride-blind fan_out (out * prod(k)) gives 1 / prod(s) of q.
    conv = make()
    (block,) = param_blocks(conv, "weight")
    s = conv.stride[0]
    x = torch.randn(8, 64, 32, 32, generator=torch.Generator().manual_seed(1), requires_grad=True)
    n_out = 32 // s
    upstream = torch.randn(8, 64, n_out, n_out, generator=torch.Generator().manual_seed(2))
    ratios = {}
    for label, fans in (("strided", block.fans), ("blind", tensor_fans(conv.weight.shape))):
        he_normal_(conv.weight, mode="fan_out", fans=fans,
                   generator=torch.Generator().manual_seed(0))
        nn.init.zeros_(conv.bias)
        (grad,) = torch.autograd.grad((conv(F.relu(x)) * upstream).sum(), x)
        ratios[label] = grad[..., s:-s, s:-s].pow(2).mean().item() / upstream.pow(2).mean().item()
    assert ratios["strided"] == pytest.approx(1.0, rel=0.1)
    assert ratios["blind"] == pytest.approx(blind_ratio, rel=0.1)


def test_linear_fans_equal_measured():
    linear = nn.Linear(20, 30, bias=False)
    with torch.no_grad():
        linear.weight.fill_(1.0)
    x = torch.ones(1, 20, requires_grad=True)
    linear(x).sum().backward()
    measured = Fans(round(linear(x)[0, 0].item()), round(x.grad[0, 0].item()))
    assert param_blocks(linear, "weight") == [Block(slice(None), measured, "weight")]


def test_embedding_fans_are_those_of_a_linear_layer_on_one_hot_inputs():
    embedding = nn.Embedding(100, 16)
    one_hot = F.one_hot(torch.tensor([7]), 100).float().requires_grad_()
    y = one_hot @ torch.ones_like(embedding.weight)  # what embedding(7) computes
    y.sum().backward()
    measured = Fans(round(y[0, 0].item()), round(one_hot.grad[0, 7].item()))
    assert measured == Fans(1, 16)
    assert param_blocks(embedding, "weight") == [Block(slice(None), measured, "embedding")]


# --------------------------------------------------------------------------- hand values


@pytest.mark.parametrize(
    ("module", "name", "fans", "groups", "torch_says"),
    [
        (nn.Linear(20, 30), "weight", Fans(20, 30), 1, (20, 30)),
        (nn.Bilinear(5, 7, 3), "weight", Fans(35, 21), 1, (35, 21)),
        (nn.Conv2d(6, 12, (3, 5), groups=3), "weight", Fans(30, 60), 3, (30, 180)),
        (nn.Conv2d(8, 16, 3, groups=8), "weight", Fans(9, 18), 8, (9, 144)),
        (nn.Conv2d(3, 96, 16, stride=16), "weight", Fans(768, 96), 1, (768, 96 * 256)),
        (nn.Conv2d(64, 128, 3, 2, 1), "weight", Fans(576, 288), 1, (576, 1152)),
        (nn.ConvTranspose1d(4, 6, 5), "weight", Fans(20, 30), 1, (30, 20)),
        (nn.ConvTranspose2d(6, 12, 3, groups=3), "weight", Fans(18, 36), 3, (36, 54)),
        (nn.Embedding(100, 16), "weight", Fans(1, 16), 1, (16, 100)),
    ],
)
def test_fans_by_hand_and_where_torch_differs(module, name, fans, groups, torch_says):
    (block,) = param_blocks(module, name)
    assert (block.fans, block.groups) == (fans, groups)
    assert torch_fans(getattr(module, name)) == torch_says


def test_bias_gets_the_fans_of_its_weight():
    conv = nn.ConvTranspose2d(6, 12, 3, groups=3)
    assert param_blocks(conv, "bias") == [Block(slice(None), Fans(18, 36), "bias")]


@pytest.mark.parametrize(
    ("module", "name", "role"),
    [
        (nn.LayerNorm((4, 5)), "weight", "elementwise"),
        (nn.LayerNorm(5), "bias", "bias"),
        (nn.BatchNorm2d(3), "weight", "elementwise"),
        (nn.GroupNorm(2, 4), "bias", "bias"),
        (nn.PReLU(3), "weight", "elementwise"),
    ],
)
def test_per_feature_parameters_have_unit_fans(module, name, role):
    assert param_blocks(module, name) == [Block(slice(None), Fans(1, 1), role)]


# --------------------------------------------------------------------------- RNN blocks


def test_lstm_blocks_per_gate_layer_and_direction():
    lstm = nn.LSTM(10, 20, num_layers=2, bidirectional=True)
    gates = ["i", "f", "g", "o"]
    rows = [slice(0, 20), slice(20, 40), slice(40, 60), slice(60, 80)]
    expected = {
        "weight_ih_l0": ("input", Fans(10, 20)),
        "weight_hh_l0_reverse": ("recurrent", Fans(20, 20)),
        "weight_ih_l1": ("input", Fans(40, 20)),  # both directions of layer 0 feed it
        "weight_ih_l1_reverse": ("input", Fans(40, 20)),
        "bias_hh_l1": ("bias", Fans(20, 20)),
        "bias_ih_l1_reverse": ("bias", Fans(40, 20)),
    }
    for name, (role, fans) in expected.items():
        assert param_blocks(lstm, name) == [
            Block(r, fans, role, g) for r, g in zip(rows, gates, strict=True)
        ]


def test_lstm_with_projection():
    lstm = nn.LSTM(10, 20, proj_size=5)
    assert {b.fans for b in param_blocks(lstm, "weight_hh_l0")} == {Fans(5, 20)}
    assert param_blocks(lstm, "weight_hr_l0") == [
        Block(slice(0, 5), Fans(20, 5), "projection", None)
    ]


def test_gru_rnn_and_cells():
    assert [b.gate for b in param_blocks(nn.GRU(3, 4), "weight_ih_l0")] == ["r", "z", "n"]
    assert param_blocks(nn.RNN(3, 4, num_layers=2), "weight_ih_l1") == [
        Block(slice(0, 4), Fans(4, 4), "input", None)
    ]
    assert [b.fans for b in param_blocks(nn.LSTMCell(3, 4), "weight_ih")] == [Fans(3, 4)] * 4
    assert [b.rows for b in param_blocks(nn.GRUCell(3, 4), "bias_hh")] == [
        slice(0, 4),
        slice(4, 8),
        slice(8, 12),
    ]
    assert param_blocks(nn.RNNCell(3, 4), "weight_hh") == [
        Block(slice(0, 4), Fans(4, 4), "recurrent", None)
    ]


def gate_bias(module: nn.Module, name: str, values: dict[str, float]) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
        bias = getattr(module, name)
        for block in param_blocks(module, name):
            block.of(bias).fill_(values[block.gate])


def test_lstm_gate_labels_drive_the_gates_they_name():
    # Forget gate open, input gate shut, output gate open, zero weights:
    # c1 = 1 * c0 + 0 * g = c0 and h1 = tanh(c0). Any swapped label breaks it.
    lstm = nn.LSTM(2, 3)
    gate_bias(lstm, "bias_ih_l0", {"i": -50.0, "f": 50.0, "g": 50.0, "o": 50.0})
    c0 = torch.full((1, 1, 3), 0.7)
    _, (h1, c1) = lstm(torch.zeros(1, 1, 2), (torch.zeros(1, 1, 3), c0))
    torch.testing.assert_close(c1, c0)
    torch.testing.assert_close(h1, torch.tanh(c0))


def test_gru_gate_labels_drive_the_gates_they_name():
    # Update gate z saturated at 1 keeps the state: h1 = z * h0 + (1 - z) * n = h0.
    gru = nn.GRU(2, 3)
    gate_bias(gru, "bias_hh_l0", {"r": 0.0, "z": 50.0, "n": 5.0})
    h0 = torch.full((1, 1, 3), -0.4)
    _, h1 = gru(torch.zeros(1, 1, 2), h0)
    torch.testing.assert_close(h1, h0)


# --------------------------------------------------------------------------- attention


def test_attention_in_proj_split_into_q_k_v():
    mha = nn.MultiheadAttention(16, 4)
    rows = [slice(0, 16), slice(16, 32), slice(32, 48)]
    assert param_blocks(mha, "in_proj_weight") == [
        Block(r, Fans(16, 16), g, g) for r, g in zip(rows, "qkv", strict=True)
    ]
    assert [b.role for b in param_blocks(mha, "in_proj_bias")] == ["bias"] * 3
    assert param_blocks(mha, "out_proj.weight") == [Block(slice(None), Fans(16, 16), "weight")]


def test_attention_with_kdim_and_vdim():
    mha = nn.MultiheadAttention(16, 4, kdim=8, vdim=12, add_bias_kv=True)
    fans = {"q": Fans(16, 16), "k": Fans(8, 16), "v": Fans(12, 16)}
    for p in "qkv":
        assert param_blocks(mha, f"{p}_proj_weight") == [Block(slice(None), fans[p], p, p)]
    assert [(b.gate, b.fans) for b in param_blocks(mha, "in_proj_bias")] == list(fans.items())
    assert param_blocks(mha, "bias_k") == [Block(slice(None), fans["k"], "bias", "k")]


# --------------------------------------------------------------------------- whole models


class Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(6, 4, 5))
        self.bias = nn.Parameter(torch.empty(6))
        self.temperature = nn.Parameter(torch.empty(()))


MODELS = {
    "transformer": lambda: nn.TransformerEncoder(
        nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), 2
    ),
    "lstm-bi-proj": lambda: nn.LSTM(8, 12, num_layers=2, bidirectional=True, proj_size=4),
    "cnn": lambda: nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.ConvTranspose2d(8, 4, 2, stride=2)
    ),
    "custom": Custom,
}


@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
def test_blocks_tile_every_parameter_exactly_once(make):
    model = make()
    for name, param in model.named_parameters():
        covered = torch.zeros(param.shape[0] if param.dim() else 1)
        for block in param_blocks(model, name):
            covered[block.rows] += 1
            assert block.fans.fan_in > 0 and block.fans.fan_out > 0
        assert (covered == 1).all(), name


def test_unknown_module_uses_generic_rules():
    custom = Custom()
    assert param_blocks(custom, "weight") == [Block(slice(None), Fans(20, 30), "weight")]
    assert param_blocks(custom, "bias")[0].fans == Fans(20, 30)
    (scalar,) = param_blocks(custom, "temperature")
    assert (scalar.role, scalar.fans) == ("elementwise", Fans(1, 1))
    scalar.of(custom.temperature).data.fill_(3.0)  # a 0-dim view still writes through
    assert custom.temperature.item() == 3.0


def test_block_view_writes_into_the_parameter():
    gru = nn.GRU(3, 4)
    n_block = param_blocks(gru, "weight_hh_l0")[2]
    with torch.no_grad():
        n_block.of(gru.weight_hh_l0).fill_(2.0)
    assert (gru.weight_hh_l0[8:] == 2.0).all() and (gru.weight_hh_l0[:8] != 2.0).all()


# --------------------------------------------------------------------------- bad input


def test_unknown_parameter_names_the_closest():
    with pytest.raises(ValueError, match="did you mean 'weight'"):
        param_blocks(nn.Linear(2, 3), "wieght")
    with pytest.raises(ValueError, match="did you mean 'out_proj'"):
        param_blocks(nn.MultiheadAttention(8, 2), "out_prj.weight")


def test_lazy_parameters_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="lazy"):
        param_blocks(nn.LazyLinear(4), "weight")


def test_fan_counts_by_mode():
    from initlab.init import fan_count

    assert [fan_count(Fans(3, 5), m) for m in ("fan_in", "fan_out", "fan_avg")] == [3, 5, 4]
    with pytest.raises(ValueError, match="did you mean 'fan_avg'"):
        fan_count(Fans(3, 5), "fan_average")
    assert math.isclose(fan_count(Fans(3, 4), "fan_avg"), 3.5)
