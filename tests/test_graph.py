"""Which activation follows each layer: torch.fx tracing, torch's composites, and the
fallbacks (forward hooks, then registration order) with their warning.

Expectations are written by hand from each model's forward pass.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab import models
from initlab.graph import following_activations, layer_graph

ARTICLE_ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu"]


def _names(model: nn.Module, kind: type[nn.Module]) -> list[str]:
    return [name for name, m in model.named_modules() if type(m) is kind]


def _act(following: dict, layer: str) -> str | None:
    act = following[layer]
    return None if act is None else act.name


@pytest.mark.parametrize("activation", ARTICLE_ACTIVATIONS)
def test_article_mlp(activation):
    model = models.mlp(784, [256], 10, activation, init=None)
    hidden, output = _names(model, nn.Linear)
    graph = layer_graph(model)
    assert graph.method == "fx"
    assert _act(graph.following, hidden) == activation
    assert graph.following[output] is None
    assert graph.output_layers == {output}
    assert graph.guessed == []


def test_cnn_conv_batchnorm_relu():
    model = models.vgg((1, 8, 8), 10, "relu", depth=2, width=4, init=None)
    following = following_activations(model)
    convs = _names(model, nn.Conv2d)
    linears = _names(model, nn.Linear)
    assert len(convs) == 4
    assert all(_act(following, c) == "relu" for c in convs)  # through BatchNorm2d
    assert _act(following, linears[0]) == "relu"  # through MaxPool2d and Flatten
    assert following[linears[1]] is None


def test_residual_cnn_and_its_branch_ends():
    model = models.resnet((3, 8, 8), 10, "relu", depth=1, width=4, stages=2, init=None)
    graph = layer_graph(model)
    # conv2 -> bn2 -> (+ shortcut) -> act2, and the projection shortcut also reaches act2
    for name in _names(model, nn.Conv2d):
        assert _act(graph.following, name) == "relu", name
    assert graph.following["fc"] is None
    assert graph.output_layers == {"fc"}
    # the last module of each residual branch is bn2, never the projection shortcut
    assert graph.residual_ends == {"stages.0.0.bn2", "stages.1.0.bn2"}


def test_functional_activations():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c, self.d, self.e = (nn.Linear(8, 8) for _ in range(5))
            self.f = nn.Linear(8, 2)
            self.drop = nn.Dropout(0.1)

        def forward(self, x):
            x = F.relu(self.a(x))
            x = torch.tanh(self.b(x))
            x = self.c(x).sigmoid()
            x = F.leaky_relu(self.d(x), 0.2)
            x = self.drop(self.e(x).view(-1, 8)).relu_()  # through a reshape and dropout
            return self.f(x)

    following = following_activations(Functional())
    assert {k: _act(following, k) for k in "abcdef"} == {
        "a": "relu", "b": "tanh", "c": "sigmoid", "d": "leaky_relu", "e": "relu", "f": None}
    assert following["d"].params["alpha"] == 0.2  # the call's own slope, not the default


def test_lstm_classifier():
    model = models.rnn((1, 8, 8), 10, "lstm", depth=1, width=16, init=None)
    graph = layer_graph(model)
    assert graph.method == "fx"
    assert graph.following == {"head": None}
    assert graph.output_layers == {"head"}


@pytest.mark.parametrize(("activation", "expected"), [
    ("relu", "relu"), ("gelu", "gelu"), (nn.GELU(approximate="tanh"), "gelu_tanh"),
    (F.silu, "silu")])
def test_transformer_encoder(activation, expected):
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, activation=activation,
                                       batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's composites are known: nothing is guessed
        graph = layer_graph(encoder)
    for i in range(2):
        assert _act(graph.following, f"layers.{i}.linear1") == expected
        assert graph.following[f"layers.{i}.linear2"] is None
        assert graph.following[f"layers.{i}.self_attn.out_proj"] is None
    assert graph.guessed == []


def test_transformer_encoder_inside_a_traced_model():
    model = models.transformer((1, 8, 8), 10, "gelu", depth=2, width=16, patch=4, init=None)
    graph = layer_graph(model)
    assert graph.method == "fx"
    linear1 = [n for n in _names(model, nn.Linear) if n.endswith("linear1")]
    assert len(linear1) == 2
    assert all(_act(graph.following, n) == "gelu" for n in linear1)
    assert graph.following["patch"] is None  # patch embedding: added to positions, then norms
    assert graph.following["head"] is None


def test_unet_with_transposed_convolutions():
    model = models.unet(1, 3, width=4, depth=2, activation="relu", init=None, image_size=8)
    following = following_activations(model)
    ups = _names(model, nn.ConvTranspose2d)
    convs = _names(model, nn.Conv2d)
    assert len(ups) == 2
    # an upsampling is concatenated with a skip and convolved: a linear continuation
    assert all(following[u] is None for u in ups)
    assert all(_act(following, c) == "relu" for c in convs if c != "head")
    assert following["head"] is None


class Untraceable(nn.Module):
    """Data-dependent control flow (fx cannot trace it); modules registered out of order."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(8, 2)
        self.unused = nn.Tanh()
        self.body = nn.Linear(4, 8)
        self.act = nn.ReLU()

    def forward(self, x):
        h = self.act(self.body(x))
        if h.sum() >= 0:  # always true, but fx cannot know
            h = h * 1.0
        return self.head(h)


def test_fallback_to_forward_hooks_warns_and_names_the_guessed_layers():
    with pytest.warns(UserWarning, match=r"guessed from hooks: .*head") as record:
        graph = layer_graph(Untraceable(), torch.randn(3, 4))
    assert "body" in str(record[0].message)
    assert graph.method == "hooks"
    assert set(graph.guessed) == {"body", "head"}
    # execution order is right: body -> ReLU, head -> output
    assert _act(graph.following, "body") == "relu"
    assert graph.following["head"] is None


def test_fallback_to_registration_order_without_an_example_input():
    with pytest.warns(UserWarning, match=r"guessed from registration order: .*body"):
        graph = layer_graph(Untraceable())
    assert graph.method == "registration order"
    # registration order is only a guess: head was registered before a (never used) Tanh
    assert _act(graph.following, "head") == "tanh"
    assert _act(graph.following, "body") == "relu"


class UntraceableWithState(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.bn, self.drop, self.b = nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(), \
            nn.Linear(8, 2)

    def forward(self, x):
        h = self.drop(torch.relu(self.bn(self.a(x))))
        return self.b(h) if h.sum() >= 0 else -self.b(h)


def test_hooks_fallback_leaves_the_model_and_global_rng_alone():
    model = UntraceableWithState()
    batch = torch.randn(16, 4, generator=torch.Generator().manual_seed(0)) + 3.0
    state, rng = copy.deepcopy(model.state_dict()), torch.random.get_rng_state()
    with pytest.warns(UserWarning):
        layer_graph(model, batch)
    assert torch.equal(rng, torch.random.get_rng_state())
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
