"""The particle repulsion (issue 16): its gradient in closed form, its groups, its schedule, and
what it is for — on a bimodal prior with no measurement, particles started in one mode stay there
without it and reach the other mode with it."""

from __future__ import annotations

import pytest
import torch
from doubles import TwoModeDenoiser

from dwgf import flow, repulsion
from dwgf.errors import DWGFInputError
from dwgf.schedule import NoiseLevel

pytestmark = pytest.mark.usefixtures("single_thread")


def test_gradient_matches_the_closed_form() -> None:
    """``∂L/∂z_i = −(4γ/(N² h)) Σ_j k_ij (z_i − z_j)`` with the median bandwidth ``h`` held fixed."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 2, 3, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    gamma = 0.7
    repulsion.repulsion_loss(z, 1, gamma).backward()
    flat = z.detach().reshape(5, -1)
    squared = torch.cdist(flat, flat).square()
    h = squared[~torch.eye(5, dtype=torch.bool)].median() / torch.log(torch.tensor(6.0, dtype=torch.float64))
    kernel = torch.exp(-squared / h)
    expected = -(4 * gamma / (25 * h)) * (kernel.sum(1, keepdim=True) * flat - kernel @ flat)
    assert torch.allclose(z.grad.reshape(5, -1), expected, rtol=1e-4, atol=1e-7)  # computed in float32


def test_descent_moves_the_closest_pair_apart() -> None:
    z = torch.tensor([[0.0, 0.0], [0.1, 0.0], [3.0, 0.0], [0.0, 1.0]]).view(4, 1, 1, 2).requires_grad_(True)
    repulsion.repulsion_loss(z, 1, 1.0).backward()
    step, points = -z.grad.view(4, 2), z.detach().view(4, 2)
    # d/dτ ‖z_0 − z_1‖² along the descent direction is positive
    assert torch.dot(points[0] - points[1], step[0] - step[1]) > 0


def test_groups_repel_only_within_themselves() -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(6, 1, 2, 2, generator=g).requires_grad_(True)
    (2 * repulsion.repulsion_loss(z, 2, 0.5)).backward()  # the flow scales each loss by its groups
    for k in range(2):
        alone = z.detach()[3 * k:3 * k + 3].clone().requires_grad_(True)
        repulsion.repulsion_loss(alone, 1, 0.5).backward()
        assert torch.allclose(z.grad[3 * k:3 * k + 3], alone.grad, rtol=1e-5, atol=1e-8)


def test_one_particle_or_zero_weight_is_no_term() -> None:
    z = torch.randn(4, 1, 2, 2, requires_grad=True)
    assert not repulsion.repulsion_loss(z, 4, 1.0).requires_grad
    assert not repulsion.repulsion_loss(z, 1, 0.0).requires_grad


def test_schedule_fades_with_the_noise() -> None:
    level = NoiseLevel(0.64)
    assert repulsion.repulsion_scale(2.0, "constant", level) == 2.0
    assert repulsion.repulsion_scale(2.0, "high noise", level) == pytest.approx(2.0 * 0.36)
    with pytest.raises(DWGFInputError, match="repulsion_schedule"):
        flow.DWGFConfig(repulsion=1.0, repulsion_schedule="sometimes")
    with pytest.raises(DWGFInputError, match="repulsion"):
        flow.DWGFConfig(repulsion=-1.0)


def particles_in_the_starting_mode(weight: float, seed: int, particles: int = 8) -> int:
    """A prior-only DWGF sweep from t = 400 on ``½N(μ, 0.09 I) + ½N(−μ, 0.09 I)``, μ = (2, 0), all
    particles started at μ: how many end in μ's half-plane."""
    mu = torch.tensor([2.0, 0.0]).view(1, 1, 2)
    config = flow.DWGFConfig(particles=particles, steps=100, first_timestep=400, lr=0.05, prior_weight=1.0,
                             ae_weight=0.0, seed=seed, repulsion=weight, repulsion_schedule="constant")
    start = mu.expand(particles, 1, 1, 2) + 0.1 * torch.randn(particles, 1, 1, 2,
                                                              generator=torch.Generator().manual_seed(seed))
    z = flow.run_dwgf(TwoModeDenoiser(mu, 0.3), None, config, (1, 1, 2), initial=start)
    return int((z[..., 0] > 0).sum())


def test_repulsion_covers_both_modes_where_the_flow_alone_stays_in_one() -> None:
    """Measured: without repulsion all 8 particles stay in the starting mode for every seed; with
    weight 5, 1–3 of 8 cross to the other mode for every seed."""
    seeds = range(6)
    without = [particles_in_the_starting_mode(0.0, s) for s in seeds]
    with_it = [particles_in_the_starting_mode(5.0, s) for s in seeds]
    assert without == [8] * len(seeds)
    assert all(count <= 7 for count in with_it), with_it
    assert all(count >= 4 for count in with_it), with_it  # it spreads, it does not flip them all over
