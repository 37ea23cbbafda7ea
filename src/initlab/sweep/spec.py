"""What a sweep runs: a validated grid (``SweepSpec``) and the runs it expands to (``RunConfig``).

A spec is a grid over init scheme x activation x depth x width x learning rate x
optimizer x seed, plus the settings every run shares (data set, steps or epochs,
batch size, eval interval). It comes from a YAML file (:meth:`SweepSpec.from_yaml`),
from CLI flags or from a dict (:meth:`SweepSpec.parse`), and is checked before
anything runs; every problem is reported at once, pointing at the bad value::

    invalid sweep spec spec.yaml (2 problems):
      - activation: unknown key 'activation'; did you mean 'activations'? valid: ...
      - inits[1] = 'he_norml': unknown init scheme 'he_norml'; did you mean 'he_normal'? ...

Identity is content: ``RunConfig.key()`` and ``SweepSpec.key()`` are the first 16 hex
digits of the SHA-256 of the canonical JSON (sorted keys, defaults filled in), so the
same command, or the same grid written as YAML, names the same sweep and the same runs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from initlab import activations, data, init, models
from initlab._names import unknown

#: Schemes that ``initlab.plan`` resolves itself, on top of the names of ``initlab.init``.
PLAN_SCHEMES = ("auto", "torch_default", "lsuv", "critical", "propagate")
OPTIMIZERS = ("sgd", "momentum", "adam")
#: Training length when a spec gives neither ``steps`` nor ``epochs``.
DEFAULT_STEPS = 500

Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
Rate = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class SpecError(ValueError):
    """An invalid sweep spec; ``problems`` holds one pointed line per bad value."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = problems
        where = f" {source}" if source else ""
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        super().__init__(f"invalid sweep spec{where} ({count}):\n"
                         + "\n".join(f"  - {p}" for p in problems))


def _digest(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_init(name: str) -> str:
    """``name`` when ``initlab.plan`` accepts it as a scheme; else a pointed ValueError."""
    if name in PLAN_SCHEMES:
        return name
    try:
        init.get(name)
    except (ValueError, KeyError, TypeError):
        raise unknown("init scheme", name, [*init.names(), *PLAN_SCHEMES]) from None
    return name


def check_activation(name: str) -> str:
    """``name`` when it is a registered activation (aliases too); else a pointed ValueError."""
    activations.get(name)
    return name


def check_dataset(name: str) -> str:
    """``name`` when ``initlab.data.load`` knows it; else a pointed ValueError."""
    if name not in data.names():
        raise unknown("dataset", name, data.names())
    return name


def check_model(name: str) -> str:
    """``name`` when ``initlab.models.build`` knows it; else a pointed ValueError."""
    if name not in models.names():
        raise unknown("model", name, models.names())
    return name


def check_optimizer(name: str) -> str:
    """``name`` when it is one of :data:`OPTIMIZERS`; else a pointed ValueError."""
    if name not in OPTIMIZERS:
        raise unknown("optimizer", name, OPTIMIZERS)
    return name


InitName = Annotated[str, AfterValidator(check_init)]
ActivationName = Annotated[str, AfterValidator(check_activation)]
DatasetName = Annotated[str, AfterValidator(check_dataset)]
ModelName = Annotated[str, AfterValidator(check_model)]
OptimizerName = Annotated[str, AfterValidator(check_optimizer)]


class _Shared(BaseModel):
    """The settings every run of a sweep shares."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetName = "auto"
    data_dir: str | None = None
    limit: Positive | None = None
    model: ModelName = "mlp"
    data_seed: NonNegative = 0
    batch_size: Positive = 128
    eval_every: Positive = 50
    log_every: Positive = 10
    target_accuracy: float = Field(0.8, gt=0, le=1)


class RunConfig(_Shared):
    """One training run: one model, one init, one activation, one seed.

    ``seed`` seeds the init; ``data_seed`` seeds the split and the minibatch order and is
    shared by every run of a sweep, so runs differ only in what the grid varies.
    ``depth`` is the number of hidden layers, ``width`` their size.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    init: InitName
    activation: ActivationName
    depth: Positive
    width: Positive
    lr: Rate
    optimizer: Literal["sgd", "momentum", "adam"] = "sgd"
    seed: NonNegative = 0
    steps: Positive

    def key(self) -> str:
        """16 hex digits of SHA-256 over the canonical JSON of this config."""
        return _digest(self.model_dump(mode="json"))

    def label(self) -> str:
        """A short human name: ``he_normal/relu d2 w64 lr0.1 sgd s0``."""
        return (f"{self.init}/{self.activation} d{self.depth} w{self.width} "
                f"lr{self.lr:g} {self.optimizer} s{self.seed}")


_GRIDS = ("inits", "activations", "depths", "widths", "lrs", "optimizers", "seeds")


class SweepSpec(_Shared):
    """A grid of runs. Every list is one axis; a scalar or a comma-separated string is read
    as a list (``inits: he_normal, xavier_normal``). Give ``steps`` or ``epochs`` (default
    :data:`DEFAULT_STEPS` steps); epochs become steps once the training set size is known.
    """

    name: str | None = None
    inits: list[InitName] = Field(default_factory=lambda: ["auto"], min_length=1)
    activations: list[ActivationName] = Field(default_factory=lambda: ["relu"], min_length=1)
    depths: list[Positive] = Field(default_factory=lambda: [1], min_length=1)
    widths: list[Positive] = Field(default_factory=lambda: [256], min_length=1)
    lrs: list[Rate] = Field(default_factory=lambda: [0.1], min_length=1)
    optimizers: list[OptimizerName] = Field(default_factory=lambda: ["sgd"], min_length=1)
    seeds: list[NonNegative] = Field(default_factory=lambda: [0], min_length=1)
    steps: Positive | None = None
    epochs: float | None = Field(None, gt=0, allow_inf_nan=False)

    @field_validator(*_GRIDS, mode="before")
    @classmethod
    def _as_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, (int, float)):
            return [value]
        return value

    @field_validator(*_GRIDS)
    @classmethod
    def _no_repeats(cls, values: list) -> list:
        repeated = sorted({repr(v) for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"lists {', '.join(repeated)} more than once; each grid value "
                             "must appear once (a repeat would be the same run)")
        return values

    @model_validator(mode="after")
    def _model_takes_activations(self) -> SweepSpec:
        allowed = models.activations_for(self.model)
        refused = [a for a in self.activations if allowed is not None and a not in allowed]
        if refused:
            raise ValueError(f"model {self.model!r} cannot use activation(s) "
                             f"{', '.join(map(repr, refused))}; it takes {', '.join(allowed)}")
        return self

    @model_validator(mode="after")
    def _length(self) -> SweepSpec:
        if self.steps is not None and self.epochs is not None:
            raise ValueError(f"give steps ({self.steps}) or epochs ({self.epochs:g}), not both")
        if self.steps is None and self.epochs is None:
            self.steps = DEFAULT_STEPS
        return self

    @classmethod
    def parse(cls, values: Mapping[str, Any], source: str | None = None) -> SweepSpec:
        """A validated spec from a mapping; a :class:`SpecError` listing every problem."""
        if not isinstance(values, Mapping):
            raise SpecError([f"a sweep spec is a mapping of keys to values, got "
                             f"{type(values).__name__}"], source)
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            raise SpecError([_problem(e) for e in exc.errors()], source) from None

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> SweepSpec:
        """A validated spec from a YAML file (a mapping of the fields of this class), with
        ``overrides`` (e.g. CLI flags) replacing the file's values."""
        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise SpecError([str(exc)], str(path)) from None
        if values is not None and not isinstance(values, Mapping):
            raise SpecError([f"a sweep spec is a mapping of keys to values, got "
                             f"{type(values).__name__}"], str(path))
        return cls.parse({**(values or {}), **(overrides or {})}, str(path))

    def key(self) -> str:
        """The sweep's identity: 16 hex digits of SHA-256 over its canonical JSON."""
        return _digest(self.model_dump(mode="json"))

    def title(self) -> str:
        """The name, or one made from the grid: ``mlp on digits: 2 inits x 2 activations``."""
        if self.name:
            return self.name
        axes = [f"{len(getattr(self, g))} {g}" for g in _GRIDS if len(getattr(self, g)) > 1]
        return f"{self.model} on {self.dataset}" + (f": {' x '.join(axes)}" if axes else "")

    def steps_for(self, train_size: int | None) -> int:
        """Training steps per run: ``steps``, or ceil(epochs * train_size / batch)."""
        if self.epochs is None:
            return self.steps  # type: ignore[return-value]
        if train_size is None:
            raise ValueError("a spec given in epochs needs the training set size to count steps")
        return max(1, math.ceil(self.epochs * train_size / self.batch_size))

    def expand(self, train_size: int | None = None) -> list[RunConfig]:
        """Every run of the grid, one per combination and seed, shapes outermost.

        ``train_size`` (examples in the training split) is needed only for specs in epochs.
        """
        steps = self.steps_for(train_size)
        shared = self.model_dump(include=set(_Shared.model_fields))
        axes = itertools.product(self.depths, self.widths, self.optimizers, self.lrs,
                                 self.activations, self.inits, self.seeds)
        return [RunConfig(**shared, steps=steps, depth=d, width=w, optimizer=o, lr=lr,
                          activation=a, init=i, seed=s)
                for d, w, o, lr, a, i, s in axes]


def _problem(error: Mapping[str, Any]) -> str:
    """One pydantic error as a line that names the key, the bad value and the fix."""
    loc = error["loc"]
    if error["type"] == "extra_forbidden":
        key = str(loc[-1])
        return f"{key}: {unknown('key', key, SweepSpec.model_fields)}"
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    where = where.lstrip(".")
    message = error["msg"].removeprefix("Value error, ")
    if not where:
        return message
    value = error.get("input")
    shown = "" if isinstance(value, dict) else f" = {value!r}"
    return f"{where}{shown}: {message}"
