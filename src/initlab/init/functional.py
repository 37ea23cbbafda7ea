"""In-place shortcuts in the style of ``torch.nn.init``: each one line over its scheme.

Fans default to the tensor's shape (:func:`initlab.init.tensor_fans`); pass
``fans=`` (from :func:`initlab.init.param_blocks`) for transposed, grouped or strided
convolutions, whose fans the shape alone cannot tell (a bare tensor has no stride:
``he_normal_(conv.weight, mode="fan_out")`` is torch's stride-blind
``kaiming_normal_``, while ``initlab.plan`` counts the stride).
"""

from __future__ import annotations

import torch
from torch import Tensor

from initlab.init.fans import Fans
from initlab.init.schemes import (
    SQRT2,
    DeltaOrthogonal,
    HeNormal,
    HeUniform,
    Identity,
    LecunNormal,
    LecunUniform,
    Orthogonal,
    XavierNormal,
    XavierUniform,
)


def xavier_uniform_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    fans: Fans | None = None,
) -> Tensor:
    """:class:`~initlab.init.schemes.XavierUniform` in place."""
    return XavierUniform(gain)(tensor, fans=fans, generator=generator)


def xavier_normal_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    fans: Fans | None = None,
) -> Tensor:
    """:class:`~initlab.init.schemes.XavierNormal` in place."""
    return XavierNormal(gain)(tensor, fans=fans, generator=generator)


def he_uniform_(
    tensor: Tensor,
    gain: float = SQRT2,
    mode: str = "fan_in",
    generator: torch.Generator | None = None,
    *,
    fans: Fans | None = None,
) -> Tensor:
    """:class:`~initlab.init.schemes.HeUniform` in place."""
    return HeUniform(gain, mode)(tensor, fans=fans, generator=generator)


def he_normal_(
    tensor: Tensor,
    gain: float = SQRT2,
    mode: str = "fan_in",
    generator: torch.Generator | None = None,
    *,
    fans: Fans | None = None,
) -> Tensor:
    """:class:`~initlab.init.schemes.HeNormal` in place."""
    return HeNormal(gain, mode)(tensor, fans=fans, generator=generator)


def lecun_uniform_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    fans: Fans | None = None,
) -> Tensor:
    """:class:`~initlab.init.schemes.LecunUniform` in place."""
    return LecunUniform(gain)(tensor, fans=fans, generator=generator)


def lecun_normal_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    fans: Fans | None = None,
) -> Tensor:
    """:class:`~initlab.init.schemes.LecunNormal` in place."""
    return LecunNormal(gain)(tensor, fans=fans, generator=generator)


def orthogonal_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    groups: int = 1,
) -> Tensor:
    """:class:`~initlab.init.schemes.Orthogonal` in place."""
    return Orthogonal(gain)(tensor, generator=generator, groups=groups)


def delta_orthogonal_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    groups: int = 1,
) -> Tensor:
    """:class:`~initlab.init.schemes.DeltaOrthogonal` in place."""
    return DeltaOrthogonal(gain)(tensor, generator=generator, groups=groups)


def identity_(tensor: Tensor, gain: float = 1.0, *, groups: int = 1) -> Tensor:
    """:class:`~initlab.init.schemes.Identity` in place (``eye_`` / ``dirac_`` times gain)."""
    return Identity(gain)(tensor, groups=groups)
