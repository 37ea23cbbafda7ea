"""Sweep specs: grid expansion, content identity, and pointed validation errors."""

import itertools
import math

import pytest
from typer.testing import CliRunner

import initlab.cli.sweep  # noqa: F401  (registers the `sweep` and `runs` commands)
from initlab.cli._app import app
from initlab.sweep.executors import get_executor
from initlab.sweep.runner import load_data
from initlab.sweep.spec import RunConfig, SpecError, SweepSpec

GRID = {"dataset": "digits", "inits": "he_normal,xavier_normal", "activations": "relu,tanh",
        "depths": 2, "widths": 64, "steps": 60}


def problems(values: dict) -> list[str]:
    with pytest.raises(SpecError) as info:
        SweepSpec.parse(values, "test")
    return info.value.problems


def test_flags_expand_to_the_full_grid_once_per_config():
    configs = SweepSpec.parse(GRID).expand()
    pairs = {(c.init, c.activation) for c in configs}
    assert pairs == set(itertools.product(["he_normal", "xavier_normal"], ["relu", "tanh"]))
    assert len(configs) == 4
    assert len({c.key() for c in configs}) == 4
    assert all(c.depth == 2 and c.width == 64 and c.steps == 60 and c.dataset == "digits"
               for c in configs)


def test_seeds_multiply_the_grid_and_shared_settings_reach_every_run():
    spec = SweepSpec.parse({**GRID, "seeds": "0,1,2", "lrs": [0.05, 0.1], "batch_size": 32,
                            "data_seed": 7})
    configs = spec.expand()
    assert len(configs) == 4 * 3 * 2
    assert {c.batch_size for c in configs} == {32}
    assert {c.data_seed for c in configs} == {7}


def test_yaml_and_flags_name_the_same_sweep(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("steps: 60\nwidths: [64]\ndepths: [2]\nactivations: [relu, tanh]\n"
                    "inits: [he_normal, xavier_normal]\ndataset: digits\n")
    from_file, from_flags = SweepSpec.from_yaml(path), SweepSpec.parse(GRID)
    assert from_file.key() == from_flags.key()
    assert [c.key() for c in from_file.expand()] == [c.key() for c in from_flags.expand()]
    assert SweepSpec.parse({**GRID, "steps": 61}).key() != from_flags.key()


def test_overrides_replace_the_file_values(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("dataset: digits\nsteps: 60\n")
    assert SweepSpec.from_yaml(path, {"steps": 10}).steps == 10


def test_run_key_is_sha256_of_canonical_json():
    import hashlib
    import json

    config = SweepSpec.parse(GRID).expand()[0]
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    assert config.key() == hashlib.sha256(canonical.encode()).hexdigest()[:16]


def test_unknown_key_names_the_closest_valid_key(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("dataset: digits\nactivation: [relu]\n")
    with pytest.raises(SpecError) as info:
        SweepSpec.from_yaml(path)
    message = str(info.value)
    assert "unknown key 'activation'" in message
    assert "did you mean 'activations'?" in message
    assert str(path) in message


def test_unknown_init_names_the_closest_scheme_and_its_position():
    (line,) = problems({**GRID, "inits": "he_normal,he_norml"})
    assert line.startswith("inits[1] = 'he_norml'")
    assert "did you mean 'he_normal'?" in line


def test_plan_level_schemes_and_aliases_are_accepted():
    spec = SweepSpec.parse({**GRID, "inits": "auto,torch_default,lsuv,kaiming_normal"})
    assert spec.inits == ["auto", "torch_default", "lsuv", "kaiming_normal"]


def test_unknown_activation_and_dataset_name_the_closest_match():
    found = problems({**GRID, "activations": "relu,tanhh", "dataset": "digit"})
    assert any(p.startswith("activations[1] = 'tanhh'") and "did you mean 'tanh'?" in p
               for p in found)
    assert any(p.startswith("dataset = 'digit'") and "did you mean 'digits'?" in p
               for p in found)


def test_every_problem_is_reported_at_once():
    found = problems({**GRID, "depths": "0,2", "widths": 0, "lrs": [-0.1], "optimizers": "adamw",
                      "colour": "red"})
    joined = "\n".join(found)
    assert len(found) == 5, joined
    for expected in ("depths[0] = '0'", "widths[0] = 0", "lrs[0] = -0.1",
                     "optimizers[0] = 'adamw'", "did you mean 'adam'?", "unknown key 'colour'"):
        assert expected in joined


@pytest.mark.parametrize(("change", "expected"), [
    ({"epochs": 2.0}, "give steps (60) or epochs (2), not both"),
    ({"depths": "2,2"}, "lists 2 more than once"),
    ({"model": "lstm", "activations": "relu"}, "model 'lstm' cannot use activation(s) 'relu'"),
    ({"model": "mlpp"}, "did you mean 'mlp'?"),
    ({"target_accuracy": 1.5}, "target_accuracy = 1.5"),
    ({"inits": []}, "inits = []"),
])
def test_impossible_combinations_are_refused(change, expected):
    assert expected in "\n".join(problems({**GRID, **change}))


def test_epochs_become_steps_from_the_training_set_size():
    spec = SweepSpec.parse({**{k: v for k, v in GRID.items() if k != "steps"}, "epochs": 1.5,
                            "batch_size": 100})
    assert spec.expand(1000)[0].steps == math.ceil(1.5 * 1000 / 100)
    with pytest.raises(ValueError, match="training set size"):
        spec.expand()


def test_steps_default_when_neither_steps_nor_epochs_given():
    assert SweepSpec.parse({"dataset": "digits"}).steps == 500


def test_a_batch_larger_than_the_training_set_is_refused_not_clamped():
    spec = SweepSpec.parse({**GRID, "limit": 50, "batch_size": 64})
    with pytest.raises(SpecError, match=r"batch_size = 64: larger than the 50 training"):
        load_data(spec)


def test_run_configs_are_frozen_and_refuse_unknown_fields():
    config = SweepSpec.parse(GRID).expand()[0]
    with pytest.raises(ValueError):
        config.depth = 3
    with pytest.raises(ValueError):
        RunConfig(**config.model_dump(), colour="red")


def test_the_cli_reports_a_bad_flag_before_anything_runs(tmp_path):
    store = tmp_path / "runs.db"
    result = CliRunner().invoke(app, ["sweep", "--dataset", "digits", "--inits", "he_norml",
                                      "--activations", "relu", "--steps", "5",
                                      "--store", str(store)])
    assert result.exit_code == 2
    assert "did you mean 'he_normal'?" in result.output
    assert not store.exists()


def test_executor_name_and_options_are_checked_before_anything_runs(tmp_path):
    store = tmp_path / "runs.db"
    result = CliRunner().invoke(app, ["sweep", "--dataset", "digits", "--steps", "5",
                                      "--executor", "local", "--address", "auto",
                                      "--store", str(store)])
    assert result.exit_code == 2
    assert "the 'local' executor does not take the options 'address'" in result.output
    assert not store.exists()
    with pytest.raises(ValueError, match="unknown executor 'lokal'; did you mean 'local'?"):
        get_executor("lokal")
