"""Errors a user can act on.

Every check on user input raises :class:`DWGFInputError` with a message that names the input and
says how to fix it, so ComfyUI shows a sentence instead of a stack trace from deep inside torch.
"""

from __future__ import annotations

import math
from typing import Any


class DWGFInputError(ValueError):
    """Bad input to a node or to the core: the message names the input and the fix."""


class DWGFRunError(RuntimeError):
    """A run that went wrong part-way (NaN loss, divergence): the message names the likely cause."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`DWGFInputError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise DWGFInputError(message)


def require_whole(value: Any, name: str, minimum: int, fix: str) -> None:
    require(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
            f"{name} must be a whole number >= {minimum}, got {value!r}: {fix}")


def require_finite(value: Any, name: str, fix: str, positive: bool = False) -> None:
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (value > 0 if positive else value >= 0)
    require(ok, f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}: {fix}")
