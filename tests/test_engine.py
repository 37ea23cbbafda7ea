"""The vectorized engine against the reference loop (plain PyTorch, autograd, torch.optim).

Tolerances: both engines run fp32 on the same data in the same order; they differ only in
how the matmuls are blocked (one wide / batched matmul vs one per model) and in the order
of a few additions, i.e. by float32 rounding (~1e-7 relative per operation). Over 100
steps of training that stays below the 1e-5 relative the issue asks for; gradients of one
step agree to ~1e-6 relative.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from initlab import activations, data, models
from initlab.sweep.engine import (
    DIVERGENCE_FACTOR,
    batch_order,
    eval_steps,
    group_key,
    train_group,
    train_reference,
)
from initlab.sweep.spec import RunConfig
from initlab.sweep.stacked import StackedMLP, StackedOptimizer

LOSS_RTOL = 1e-5

# (init, activation, lr multiplier): inits, activations and learning rates all mixed, with
# two models sharing an activation so that sub-groups hold more than one model.
MIX = [("he_normal", "relu", 1.0), ("xavier_normal", "tanh", 0.5), ("auto", "sigmoid", 2.0),
       ("xavier_uniform", "elu", 1.0), ("he_uniform", "relu", 0.7),
       ("auto", "leaky_relu", 1.0), ("torch_default", "gelu", 1.5)]
BASE_LR = {"sgd": 0.1, "momentum": 0.02, "adam": 1e-3}


@pytest.fixture(scope="module")
def digits() -> data.Dataset:
    return data.load("digits", seed=0)


def config(**kw) -> RunConfig:
    base = dict(dataset="digits", init="he_normal", activation="relu", depth=2, width=32,
                lr=0.1, steps=100, batch_size=32, eval_every=25, log_every=1)
    return RunConfig(**{**base, **kw})


def losses(result) -> torch.Tensor:
    return torch.tensor([v for _, v in result.losses], dtype=torch.float64)


def assert_same_run(vec, ref) -> None:
    """Two RunResults of one config: same logged steps, losses within LOSS_RTOL, same
    evaluation steps and accuracies (predictions may flip only on exact rounding ties),
    same per-layer statistics."""
    assert [s for s, _ in vec.losses] == [s for s, _ in ref.losses]
    torch.testing.assert_close(losses(vec), losses(ref), rtol=LOSS_RTOL, atol=0)
    assert [e["step"] for e in vec.evals] == [e["step"] for e in ref.evals]
    for ev, er in zip(vec.evals, ref.evals, strict=True):
        for key in ("train_acc", "val_acc", "test_acc"):
            assert ev[key] == pytest.approx(er[key], abs=0.01)
        assert ev["val_loss"] == pytest.approx(er["val_loss"], rel=LOSS_RTOL)
    assert (vec.status, vec.diverged_at, vec.steps_to_target) == \
        (ref.status, ref.diverged_at, ref.steps_to_target)
    assert [(s["phase"], s["name"]) for s in vec.layer_stats] == \
        [(s["phase"], s["name"]) for s in ref.layer_stats]
    for sv, sr in zip(vec.layer_stats, ref.layer_stats, strict=True):
        assert sv["act_std"] == pytest.approx(sr["act_std"], rel=1e-4)
        assert sv["grad_norm"] == pytest.approx(sr["grad_norm"], rel=1e-4)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_vectorized_engine_matches_reference_loop(digits, optimizer):
    configs = [config(init=i, activation=a, lr=BASE_LR[optimizer] * f, optimizer=optimizer,
                      seed=n) for n, (i, a, f) in enumerate(MIX)]
    assert len({group_key(c) for c in configs}) == 1
    vectorized = train_group(configs, digits)
    for config_, vec in zip(configs, vectorized, strict=True):
        ref = train_reference(config_, digits)
        assert (vec.config, vec.engine, ref.engine) == (config_, "vectorized", "reference")
        assert vec.status == "finished" and len(vec.losses) == 100
        assert_same_run(vec, ref)


def test_divergent_model_is_frozen_and_the_others_equal_their_solo_runs(digits):
    calm = [config(init="he_normal", activation="relu", lr=0.05, steps=40),
            config(init="xavier_normal", activation="tanh", lr=0.1, steps=40, seed=1)]
    wild = config(init="he_normal", activation="relu", lr=1e4, steps=40, seed=2)
    together = train_group([calm[0], wild, calm[1]], digits)
    assert [r.status for r in together] == ["finished", "diverged", "finished"]
    for config_, vec in zip(calm, [together[0], together[2]], strict=True):
        assert_same_run(vec, train_reference(config_, digits))
    solo = train_reference(wild, digits)
    blown = together[1]
    assert blown.diverged_at is not None and blown.diverged_at == solo.diverged_at
    assert_same_run(blown, solo)
    last_step, last_loss = blown.losses[-1]
    assert last_step == blown.diverged_at
    initial = blown.losses[0][1]
    assert not math.isfinite(last_loss) or last_loss > DIVERGENCE_FACTOR * initial
    assert all(e["step"] <= blown.diverged_at for e in blown.evals)
    assert {s["phase"] for s in blown.layer_stats} == {"init"}


def test_stacked_gradients_equal_autograd():
    # every parameter-free activation of the registry (their kernels differ: from the output,
    # from a saved input, softsign's closed-form derivative), relu twice (a 2-model segment)
    acts = ["relu", *[a for a in activations.names() if a != "prelu"]]
    nets = [models.mlp(12, [16, 16], 5, a, init="he_normal", seed=i) for i, a in enumerate(acts)]
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(9, 12, generator=gen), torch.randint(0, 5, (9,), generator=gen)
    stacked = StackedMLP(nets, "cpu")
    logits, cache = stacked.forward(x)
    loss, grad_logits = stacked.loss(logits, y)
    grads = stacked.backward(cache, grad_logits)
    for k, net in enumerate(nets):
        ref_loss = F.cross_entropy(net(x), y)
        ref_loss.backward()
        torch.testing.assert_close(loss[k], ref_loss.detach(), rtol=1e-6, atol=0)
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        for lin, gw, gb in zip(linears, grads[0::2], grads[1::2], strict=True):
            torch.testing.assert_close(gw[k], lin.weight.grad, rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(gb[k, :, 0], lin.bias.grad, rtol=1e-5, atol=1e-7)


def test_nan_in_one_model_never_reaches_the_others():
    nets = [models.mlp(6, [8, 8], 3, a, init="xavier_normal", seed=i)
            for i, a in enumerate(["tanh", "tanh", "relu"])]
    x, y = torch.randn(4, 6, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0])

    def one_step(poison: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        stacked = StackedMLP(nets, "cpu")
        if poison:  # model 1: NaN in its first layer, Inf in its output layer
            stacked.weights[0][1].fill_(math.nan)
            stacked.weights[2][1].fill_(math.inf)
        logits, cache = stacked.forward(x)
        _, grad_logits = stacked.loss(logits, y)
        grads = stacked.backward(cache, grad_logits)
        StackedOptimizer("sgd", stacked).step(cache, grad_logits, torch.tensor([0.1, 0.0, 0.1]))
        return grads, stacked.parameters()

    clean_grads, clean_params = one_step(poison=False)
    grads, params = one_step(poison=True)
    assert not torch.isfinite(grads[0][1]).all()  # the poison did spread within model 1
    for got, want in zip(grads + params, clean_grads + clean_params, strict=True):
        assert torch.equal(got[0], want[0]) and torch.equal(got[2], want[2])


def test_group_key_stacks_what_may_differ_and_separates_the_rest():
    a = config()
    same = [config(init="xavier_normal"), config(activation="tanh"), config(lr=0.3),
            config(seed=4), config(target_accuracy=0.5)]
    different = [config(depth=3), config(width=16), config(optimizer="adam"), config(steps=50),
                 config(batch_size=16), config(data_seed=1), config(dataset="synthetic")]
    assert all(group_key(c) == group_key(a) for c in same)
    assert all(group_key(c) != group_key(a) for c in different)
    prelu = config(activation="prelu")  # a learnable activation cannot be stacked
    assert group_key(prelu)[0] == "reference"
    assert group_key(prelu) != group_key(config(activation="prelu", seed=1))


def test_unstackable_configs_fall_back_to_the_reference_loop(digits):
    configs = [config(activation="prelu", steps=5), config(steps=5), config(steps=5, seed=1)]
    results = train_group(configs, digits)
    assert [r.engine for r in results] == ["reference", "vectorized", "vectorized"]
    assert [r.config for r in results] == configs


def test_records_follow_the_schedule(digits):
    c = config(steps=23, eval_every=10, log_every=4, target_accuracy=0.5)
    for result in train_group([c, config(steps=23, eval_every=10, log_every=4, seed=1,
                                         target_accuracy=0.5)], digits)[:1] + \
            [train_reference(c, digits)]:
        assert [s for s, _ in result.losses] == [0, 4, 8, 12, 16, 20, 22]
        assert [e["step"] for e in result.evals] == eval_steps(c) == [0, 10, 20, 23]
        first = next(e["step"] for e in result.evals if e["val_acc"] >= 0.5)
        assert result.steps_to_target == first
        assert [(s["phase"], s["layer"]) for s in result.layer_stats] == \
            [(p, i) for p in ("init", "end") for i in range(3)]
        assert all(s["act_std"] > 0 and s["grad_norm"] > 0 for s in result.layer_stats)


def test_layer_stats_match_a_direct_computation(digits):
    c = config(activation="tanh", init="xavier_normal", steps=1)
    result = train_reference(c, digits)
    net = models.build("mlp", digits.input_shape, digits.num_classes, activation="tanh",
                       depth=2, width=32, init="xavier_normal", seed=0)
    x, y = digits.x_train[:32].reshape(32, -1), digits.y_train[:32]
    h1 = torch.tanh(net[1](x))
    h2 = torch.tanh(net[3](h1))
    logits = net[5](h2)
    F.cross_entropy(logits, y).backward()
    init = [s for s in result.layer_stats if s["phase"] == "init"]
    for stat, out, lin in zip(init, [h1, h2, logits], [net[1], net[3], net[5]], strict=True):
        assert stat["act_std"] == pytest.approx(out.std().item(), rel=1e-6)
        assert stat["grad_norm"] == pytest.approx(lin.weight.grad.norm().item(), rel=1e-6)


def test_batch_order_is_seeded_epochs_of_permutations():
    order = batch_order(10, 4, 5, seed=3)
    assert order.shape == (5, 4)
    flat = order.flatten()
    assert sorted(flat[:10].tolist()) == list(range(10))
    assert sorted(flat[10:20].tolist()) == list(range(10))
    assert torch.equal(order, batch_order(10, 4, 5, seed=3))
    assert not torch.equal(order, batch_order(10, 4, 5, seed=4))
