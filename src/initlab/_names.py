"""Name lookup with pointed errors, shared by every registry in initlab.

A bad name is answered with the value that was given, every valid choice and
the closest match (``difflib``), so ``get("he_norml")`` says
``unknown init scheme 'he_norml'; did you mean 'he_normal'? valid: ...``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The valid choice nearest to ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown(kind: str, name: object, choices: Iterable[str]) -> ValueError:
    """A ValueError naming the bad value, the closest match and all valid choices."""
    choices = sorted(set(choices))
    hint = closest(str(name), choices)
    did_you_mean = f"; did you mean {hint!r}?" if hint else ""
    return ValueError(f"unknown {kind} {name!r}{did_you_mean} valid: {', '.join(choices)}")
