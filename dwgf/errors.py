"""Errors a user can act on.

Every check on user input raises :class:`DWGFInputError` with a message that names the input and
says how to fix it, so ComfyUI shows a sentence instead of a stack trace from deep inside torch.
"""

from __future__ import annotations


class DWGFInputError(ValueError):
    """Bad input to a node or to the core: the message names the input and the fix."""


class DWGFRunError(RuntimeError):
    """A run that went wrong part-way (NaN loss, divergence): the message names the likely cause."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`DWGFInputError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise DWGFInputError(message)
