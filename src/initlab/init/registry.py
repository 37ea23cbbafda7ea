"""Schemes by name: ``get("he_normal")``, ``get({"name": "orthogonal", "gain": 2.0})``.

Aliases follow the other libraries' names (``glorot_*`` for ``xavier_*``,
``kaiming_*`` for ``he_*``, ``truncated_normal``, ``dirac``/``eye``).
Unknown names and parameters are answered with the closest valid one.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

from initlab._names import unknown
from initlab.init.schemes import (
    Constant,
    DeltaOrthogonal,
    HeNormal,
    HeUniform,
    Identity,
    Initializer,
    LecunNormal,
    LecunUniform,
    Normal,
    Ones,
    Orthogonal,
    TruncNormal,
    Uniform,
    VarianceScaling,
    XavierNormal,
    XavierUniform,
    Zeros,
)

_SCHEMES: dict[str, type[Initializer]] = {
    cls.name: cls
    for cls in (
        Zeros,
        Ones,
        Constant,
        Uniform,
        Normal,
        TruncNormal,
        VarianceScaling,
        XavierUniform,
        XavierNormal,
        HeUniform,
        HeNormal,
        LecunUniform,
        LecunNormal,
        Orthogonal,
        DeltaOrthogonal,
        Identity,
    )
}

ALIASES: Mapping[str, str] = {
    "glorot_uniform": "xavier_uniform",
    "glorot_normal": "xavier_normal",
    "kaiming_uniform": "he_uniform",
    "kaiming_normal": "he_normal",
    "truncated_normal": "trunc_normal",
    "dirac": "identity",
    "eye": "identity",
}


def names() -> list[str]:
    """The canonical scheme names (aliases excluded), sorted."""
    return sorted(_SCHEMES)


def scheme_class(name: str) -> type[Initializer]:
    """The class registered under ``name`` or one of its aliases (case-insensitive)."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in _SCHEMES:
        raise unknown("init scheme", name, [*_SCHEMES, *ALIASES])
    return _SCHEMES[key]


def get(identifier: str | Mapping[str, object] | Initializer, **kwargs: object) -> Initializer:
    """A scheme from a name (plus parameters), a config dict or a scheme itself.

    >>> get("kaiming_normal", mode="fan_out")
    he_normal(gain=1.41421, mode='fan_out')
    >>> get(get("orthogonal", gain=2.0).get_config())
    orthogonal(gain=2)
    """
    if isinstance(identifier, Initializer):
        if kwargs:
            raise ValueError(f"parameters {sorted(kwargs)} given with a ready scheme {identifier}")
        return identifier
    if isinstance(identifier, Mapping):
        if "name" not in identifier:
            raise ValueError(f"an init scheme config needs a 'name' key, got {dict(identifier)!r}")
        config = dict(identifier)
        name = config.pop("name")
        kwargs = {**config, **kwargs}
    elif isinstance(identifier, str):
        name = identifier
    else:
        raise TypeError(
            "an init scheme is a name, a config dict or an Initializer, "
            f"got {type(identifier).__name__}: {identifier!r}"
        )
    cls = scheme_class(name)
    allowed = list(inspect.signature(cls).parameters)
    for key in kwargs:
        if key not in allowed:
            raise unknown(f"parameter of init scheme {cls.name!r}", key, allowed)
    return cls(**kwargs)
