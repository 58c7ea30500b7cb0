"""Which noise level each DWGF iteration uses.

METHOD.md's reference run visits the diffusion times deterministically downwards, one iteration
each: ``t = 999, 998, …, 2`` (998 iterations). A shorter run spreads its iterations evenly over the
same range. The tests also need a *fixed* noise level, where the flow's stationary point is known
in closed form, so a schedule is simply a list of :class:`NoiseLevel` — one per iteration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch

from .errors import require, require_whole

REFERENCE_FIRST_TIMESTEP = 999
REFERENCE_LAST_TIMESTEP = 2


def sd_alphas_cumprod(steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> torch.Tensor:
    """Stable Diffusion's ``ᾱ_t``: scaled-linear betas (linear in sqrt(β)) from 0.00085 to 0.012, float64."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, 0)


@dataclass(frozen=True)
class NoiseLevel:
    """One diffusion time: ``z_t = α z + σ ε`` with ``α = sqrt(ᾱ)``, ``σ = sqrt(1 − ᾱ)``.

    Plain floats, so the inner loop never waits on the GPU to learn its own constants.
    """

    alpha_bar: float
    timestep: int | None = None

    @property
    def alpha(self) -> float:
        return math.sqrt(self.alpha_bar)

    @property
    def sigma(self) -> float:
        return math.sqrt(1.0 - self.alpha_bar)

    @property
    def k_sigma(self) -> float:
        """The k-diffusion noise level ``s = σ / α`` the denoiser is called with."""
        return self.sigma / self.alpha


def evenly_spaced_timesteps(
    steps: int, first: int = REFERENCE_FIRST_TIMESTEP, last: int = REFERENCE_LAST_TIMESTEP, power: float = 1.0
) -> list[int]:
    """``steps`` distinct integer timesteps from ``first`` down to ``last``, evenly spread.

    ``steps = first − last + 1`` gives every timestep (the reference: 998 steps = 999 … 2).
    ``power`` p ≠ 1 warps the spacing to ``last + (first − last)(1 − u)^p`` for evenly spaced ``u``:
    p > 1 crowds the timesteps towards ``last`` (low noise), p < 1 towards ``first``. Where rounding
    would repeat a timestep the repeat moves to the next free one, so the steps stay distinct.
    """
    require(isinstance(steps, int) and steps >= 1, f"steps must be a whole number >= 1, got {steps!r}")
    require(0 <= last < first, f"the timestep range must run downwards: first ({first}) must exceed "
            f"last ({last}), and last must be >= 0")
    available = first - last + 1
    require(steps <= available, f"steps ({steps}) exceeds the {available} distinct timesteps from "
            f"{first} to {last}: use at most {available} steps")
    if steps == 1:
        return [first]
    u = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
    spread = last + (first - last) * (1.0 - u) ** power
    timesteps = torch.floor(spread + 0.5).long().tolist()
    if power != 1.0:
        timesteps = _distinct_downwards(timesteps, first, last)
    assert all(a > b for a, b in pairwise(timesteps)), "internal: timesteps not strictly decreasing"
    return timesteps


def _distinct_downwards(timesteps: list[int], first: int, last: int) -> list[int]:
    """Rounded warped timesteps made strictly decreasing: each is at most one below its predecessor
    and at least as far above ``last`` as there are steps still to come."""
    result: list[int] = []
    count = len(timesteps)
    for index, t in enumerate(timesteps):
        ceiling = first if not result else result[-1] - 1
        floor = last + (count - 1 - index)
        result.append(max(min(t, ceiling), floor))
    return result


def levels_from_timesteps(alphas_cumprod: torch.Tensor, timesteps: Sequence[int]) -> list[NoiseLevel]:
    """Look the timesteps up in the model's discrete schedule ``ᾱ_t``."""
    table = alphas_cumprod.detach().to("cpu", torch.float64)
    require(table.ndim == 1 and table.numel() > 0, "the model's alphas_cumprod must be a non-empty 1-D tensor")
    size = table.numel()
    bad = [t for t in timesteps if not 0 <= t < size]
    require(not bad, f"timesteps {bad[:3]} are outside the model's schedule of {size} steps "
            f"(0 … {size - 1}): lower the first timestep")
    values = table[list(timesteps)].tolist()
    require(all(0.0 < a < 1.0 for a in values), "the model's alphas_cumprod must lie strictly between 0 and 1 "
            "at the visited timesteps: check the model's sampling settings")
    return [NoiseLevel(a, int(t)) for a, t in zip(values, timesteps, strict=True)]


def reference_levels(
    alphas_cumprod: torch.Tensor,
    steps: int,
    first: int = REFERENCE_FIRST_TIMESTEP,
    last: int = REFERENCE_LAST_TIMESTEP,
    power: float = 1.0,
) -> list[NoiseLevel]:
    """The deterministic downward sweep of METHOD.md, shortened to ``steps`` iterations (``power``:
    :func:`evenly_spaced_timesteps`)."""
    return levels_from_timesteps(alphas_cumprod, evenly_spaced_timesteps(steps, first, last, power))


def constant_levels(alpha_bar: float, steps: int) -> list[NoiseLevel]:
    """The same noise level for every iteration (the tests' fixed-``ᾱ`` flow)."""
    require(0.0 < alpha_bar < 1.0, f"alpha_bar must lie strictly between 0 and 1, got {alpha_bar}")
    require(steps >= 1, f"steps must be >= 1, got {steps}")
    return [NoiseLevel(float(alpha_bar))] * steps


def require_timestep_sweep(steps: int, first: int, last: int, reference_last: int) -> None:
    """Check a downward sweep of ``steps`` distinct timesteps from ``first`` to ``last``."""
    require_whole(last, "last_timestep", 0, f"use a timestep >= 0 (reference: {reference_last})")
    require_whole(first, "first_timestep", last + 1,
                  f"the sweep runs downwards, so first_timestep must exceed last_timestep ({last})")
    available = first - last + 1
    require(steps <= available,
            f"steps ({steps}) exceeds the {available} distinct timesteps from {first} to {last}: "
            f"use at most {available} steps")
