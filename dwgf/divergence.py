"""Noticing that a run went NaN or infinite, and saying where: shared by DWGF and PSLD.

Each sampler logs its per-step loss terms into a tensor on the device; looking at it costs one
host-device synchronisation, so the samplers look every few steps (or every step when a callback
already pays for one) and name the first bad step and term in their own words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .schedule import NoiseLevel


def all_finite(history: torch.Tensor, z: torch.Tensor, upto: int) -> bool:
    """Whether the logged terms of steps ``0 … upto`` and the latents are all finite (one sync)."""
    return bool(torch.isfinite(history[: upto + 1]).all() & torch.isfinite(z.detach()).all())


def first_bad_step(history: torch.Tensor, upto: int, names: Sequence[str]) -> tuple[int, list[str]]:
    """The first step whose logged terms are not all finite (``upto`` if none) and those terms' names."""
    rows = torch.isfinite(history[: upto + 1]).all(1).cpu()
    bad = (~rows).nonzero().flatten()
    step = int(bad[0]) if bad.numel() else upto
    values = history[step].cpu().tolist()
    return step, [name for name, value in zip(names, values, strict=True) if not math.isfinite(value)]


def describe_level(level: NoiseLevel) -> str:
    """Where in the schedule a step was, for error messages."""
    return f"timestep {level.timestep}" if level.timestep is not None else f"alpha_bar {level.alpha_bar:.4g}"
