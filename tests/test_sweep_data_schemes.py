"""Data-dependent inits in sweeps are calibrated on real training data, not on a dummy input."""

import pytest
import torch

from initlab import data
from initlab.sweep.engine import CALIBRATION_BATCH, build_model
from initlab.sweep.spec import RunConfig


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def test_lsuv_in_a_sweep_gives_unit_output_std_on_the_calibration_batch(digits):
    config = RunConfig(dataset="digits", init="lsuv", activation="tanh", depth=6, width=64,
                       lr=0.1, steps=1)
    model = build_model(config, digits)
    with torch.no_grad():
        out = model(digits.x_train[:CALIBRATION_BATCH])
    # LSUV's own tolerance is 0.05 on the batch it calibrated on.
    assert abs(float(out.std()) - 1.0) <= 0.05


def test_same_seed_same_weights_for_data_dependent_inits(digits):
    config = RunConfig(dataset="digits", init="propagate", activation="sigmoid", depth=4,
                       width=32, lr=0.1, steps=1, seed=3)
    first, second = build_model(config, digits), build_model(config, digits)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
