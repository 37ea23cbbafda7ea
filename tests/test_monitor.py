"""``initlab.monitor``: records every ``every`` training steps, numbers equal to a plain PyTorch
computation, hooks gone afterwards, histories in the sweep's SQLite file, figures."""

from __future__ import annotations

import copy
import sqlite3

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab.plan import init_model
from initlab.probe import leftover_hooks
from initlab.probe.monitor import HISTORY_TABLE, monitor, read_history

BATCH = 32


def make_model() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(),
                          nn.Linear(32, 4))
    init_model(model, generator=0)
    return model


def batches(n: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(n):
        yield torch.randn(BATCH, 16, generator=generator), \
            torch.randint(0, 4, (BATCH,), generator=generator)


def train(model, steps: int, mon_kwargs: dict | None = None, *, validate_every: int = 0):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with monitor(model, **(mon_kwargs or {})) as mon:
        for step, (x, y) in enumerate(batches(steps)):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if validate_every and step % validate_every == 0:
                model.eval()
                with torch.no_grad():
                    model(x)
                model.train()
    return mon


def test_records_every_n_training_steps_only():
    mon = train(make_model(), 25, dict(every=10), validate_every=3)
    assert mon.steps == 25  # eval forwards under no_grad are not steps
    assert sorted({row["step"] for row in mon.history}) == [0, 10, 20]
    assert [step for step, _, _ in mon.verdicts] == [0, 10, 20]
    # five probed modules per recorded step, in execution order
    assert [r["label"] for r in mon.history if r["step"] == 10] == ["0", "1", "2", "3", "4"]


def test_step_zero_matches_plain_pytorch():
    model = make_model()
    start = copy.deepcopy(model)
    mon = train(model, 3, dict(every=10))
    x, y = next(batches(1))
    h0 = start[0](x)
    a1 = start[1](h0)
    h2 = start[2](a1)
    a3 = start[3](h2)
    out = start[4](a3)
    loss = F.cross_entropy(out, y)
    grads = torch.autograd.grad(loss, [h0, h2, out, start[0].weight, start[2].weight])
    step0 = {r["label"]: r for r in mon.history if r["step"] == 0}
    close = dict(rel=1e-5, abs=1e-7)  # float32 reductions in another order: a few ulps
    assert step0["0"]["std"] == pytest.approx(h0.std(correction=0).item(), **close)
    assert step0["0"]["grad_norm"] == pytest.approx(grads[0].norm().item(), **close)
    assert step0["2"]["grad_norm"] == pytest.approx(grads[1].norm().item(), **close)
    assert step0["4"]["grad_norm"] == pytest.approx(grads[2].norm().item(), **close)
    assert step0["0"]["weight_grad_norm"] == pytest.approx(grads[3].norm().item(), **close)
    assert step0["2"]["weight_grad_norm"] == pytest.approx(grads[4].norm().item(), **close)
    assert step0["1"]["dead"] == pytest.approx((a1 == 0).all(0).float().mean().item())
    assert step0["3"]["saturated"] == pytest.approx((a3.abs() >= 0.99).float().mean().item())
    # histograms: 40 equal bins over the activation's range, as numpy counts them
    counts, _ = np.histogram(a3.detach().numpy(), bins=40, range=(-1.0, 1.0))
    assert (step0["3"]["hist_lo"], step0["3"]["hist_hi"]) == (-1.0, 1.0)
    np.testing.assert_array_equal(step0["3"]["hist"], counts)


def test_hooks_are_removed_after_the_block_and_after_an_exception():
    model = make_model()
    train(model, 2, dict(every=1))
    assert leftover_hooks(model) == []
    with pytest.raises(RuntimeError, match="stop"), monitor(model, every=1):
        model(torch.randn(2, 16)).sum().backward()
        raise RuntimeError("stop")
    assert leftover_hooks(model) == []


def test_flushes_keep_every_record():
    mon = train(make_model(), 9, dict(every=2, flush_every=2))
    assert sorted({row["step"] for row in mon.history}) == [0, 2, 4, 6, 8]


def test_history_goes_into_the_sweep_store_file(tmp_path):
    path = tmp_path / "runs.db"
    with sqlite3.connect(path) as db:  # a sweep store's own table is left alone
        db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, status TEXT)")
        db.execute("INSERT INTO runs VALUES (7, 'finished')")
    mon = train(make_model(), 12, dict(every=5, store=path, run=7, label="mlp"))
    stored = read_history(path, run=7)
    assert len(stored) == len(mon.history) == 15
    assert [(r["step"], r["name"]) for r in stored] == \
        [(r["step"], r["label"]) for r in mon.history]
    assert stored[0]["std"] == pytest.approx(mon.history[0]["std"], rel=1e-12)
    assert stored[3]["hist"] == pytest.approx(mon.history[3]["hist"])
    assert np.isnan(stored[0]["dead"])  # NULL comes back as NaN
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT * FROM runs").fetchall() == [(7, "finished")]
        assert db.execute(f"SELECT COUNT(*) FROM {HISTORY_TABLE} WHERE label='mlp'").fetchone() \
            == (15,)
    assert read_history(path, run=8) == []


def test_figures_are_written(tmp_path):
    mon = train(make_model(), 6, dict(every=2))
    mon.plot(tmp_path / "stats.png")
    mon.plot_histograms(tmp_path / "colorful.png")
    for name in ("stats.png", "colorful.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no monitor history for 'nope'"):
        mon.plot_histograms(sites=["nope"])


@pytest.mark.parametrize(("option", "value"), [("every", 0), ("flush_every", -1), ("bins", 1.5)])
def test_bad_options_name_the_value(option, value):
    with pytest.raises(ValueError, match=f"{option} must be a positive int, got {value}"):
        monitor(make_model(), **{option: value})
