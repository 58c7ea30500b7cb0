"""A repulsion between particles (issue 16; not in METHOD.md): diversity where the measurement allows it.

DWGF's particle-mixture score already pushes particles apart where the model's score pulls them
together, but the paper names mode seeking as the method's weakness: particles that end up alike.
This adds a kernel potential between the particles of one measurement, as in SVGD's repulsive
term and Corso et al.'s particle guidance (2023):

    L_rep = γ(t) · (1/N²) Σ_ij k(z_i, z_j),    k(a, b) = exp(−‖a − b‖² / h),

with the bandwidth ``h`` set each iteration by the median heuristic, ``median_{i≠j} ‖z_i − z_j‖² /
log(N + 1)`` (held constant in the gradient), so the force acts at the particles' own scale
whatever the latent size. Its gradient on ``z_i``, ``−(4γ/(N² h)) Σ_j k_ij (z_i − z_j)``, points
away from the particles nearest to it. ``γ(t)`` is the weight times the schedule: ``constant``, or
``high noise`` (``× σ_t²``), which fades the push as the sweep reaches the fine detail, where it
would cost fidelity.
"""

from __future__ import annotations

import math

import torch

from .errors import require
from .schedule import NoiseLevel

REPULSION_SCHEDULES: tuple[str, ...] = ("constant", "high noise")


def repulsion_scale(weight: float, schedule: str, level: NoiseLevel) -> float:
    """``γ(t)``: the weight, times ``σ_t²`` for the ``high noise`` schedule."""
    require(schedule in REPULSION_SCHEDULES,
            f"repulsion_schedule must be one of {REPULSION_SCHEDULES}, got {schedule!r}")
    return weight * (level.sigma**2 if schedule == "high noise" else 1.0)


def median_bandwidth(squared: torch.Tensor) -> torch.Tensor:
    """The median heuristic per group from ``(G, N, N)`` squared distances (diagonal excluded),
    ``median / log(N + 1)``, floored so identical particles do not divide by zero."""
    n = squared.shape[-1]
    off_diagonal = squared[:, ~torch.eye(n, dtype=torch.bool, device=squared.device)].view(squared.shape[0], -1)
    median = off_diagonal.median(dim=1).values
    return (median / math.log(n + 1)).clamp_min(1e-12).detach()


def repulsion_loss(z: torch.Tensor, groups: int, scale: float) -> torch.Tensor:
    """``scale · mean over groups of (1/N²) Σ_ij k(z_i, z_j)`` with each group's median bandwidth;
    zero (no graph) for one particle per group or ``scale`` 0."""
    per_group = z.shape[0] // groups
    if per_group < 2 or scale == 0:
        return z.new_zeros(())
    flat = z.float().reshape(groups, per_group, -1)
    # column by column: direct differences (no cancellation), memory of one (G, N, d) at a time
    squared = torch.stack([(flat - flat[:, j:j + 1]).square().sum(-1) for j in range(per_group)], dim=-1)
    kernel = torch.exp(-squared / median_bandwidth(squared).view(-1, 1, 1))
    return scale * kernel.mean()
