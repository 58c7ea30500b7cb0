"""Issue 15's cost savings in the core, on the exact linear problem of ``test_flow.py``: the
encoder–decoder reconstruction reused between refreshes, the warped time sweep, the warm start."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch
from doubles import GaussianPriorDenoiser
from test_flow import LinearAutoencoder, LinearProblem

from dwgf import flow, latent_data, schedule, warm_start
from dwgf.errors import DWGFInputError
from dwgf.particles import initial_particles

pytestmark = pytest.mark.usefixtures("single_thread")


def run(problem: LinearProblem, steps: int = 12, **settings: object) -> tuple[torch.Tensor, LinearAutoencoder]:
    ae = LinearAutoencoder(problem.W, problem.latent_shape, problem.image_shape)
    config = flow.DWGFConfig(particles=4, steps=steps, seed=2, **settings)
    z = flow.run_dwgf(GaussianPriorDenoiser(), ae, config, problem.latent_shape, problem.operator, problem.y)
    return z, ae


@pytest.mark.parametrize("every", [2, 5])
def test_reconstruction_is_recomputed_only_every_kth_iteration(every: int) -> None:
    problem = LinearProblem()
    reference, ae_reference = run(problem)
    reused, ae_reused = run(problem, ae_every=every)
    refreshes = math.ceil(12 / every)
    assert (ae_reference.encodes, ae_reference.decodes_without_grad) == (12, 12)
    assert (ae_reused.encodes, ae_reused.decodes_without_grad) == (refreshes, refreshes)
    assert ae_reused.decodes_with_grad == 12  # the data term still decodes the current particles
    assert not torch.allclose(reused, reference)  # the stale reconstruction is really used


def test_reused_reconstruction_is_the_last_refresh_exactly() -> None:
    """Iteration 2 of an ``ae_every = 2`` run must use iteration 1's ``D(E(x + n))``: replaying the
    first iteration's reconstruction by hand gives the same particles to rounding."""
    problem = LinearProblem()
    reused, _ = run(problem, steps=2, ae_every=2)
    ae = LinearAutoencoder(problem.W, problem.latent_shape, problem.image_shape)
    stale: list[torch.Tensor] = []
    real = flow.reconstruct

    def remember_first(autoencoder, x_noisy):  # noqa: ANN001, ANN202
        if not stale:
            stale.append(real(autoencoder, x_noisy))
        return stale[0]

    flow.reconstruct = remember_first
    try:
        config = flow.DWGFConfig(particles=4, steps=2, seed=2)
        by_hand = flow.run_dwgf(GaussianPriorDenoiser(), ae, config, problem.latent_shape, problem.operator,
                                problem.y)
    finally:
        flow.reconstruct = real
    assert torch.allclose(reused, by_hand, rtol=1e-5, atol=1e-6)


def test_reuse_works_with_particle_chunks() -> None:
    problem = LinearProblem()
    whole, _ = run(problem, ae_every=3)
    chunked, ae = run(problem, ae_every=3, particle_chunk=1)
    assert torch.allclose(whole, chunked, rtol=1e-4, atol=1e-5)
    assert ae.encodes == 4 * 4  # 4 refreshes of 4 one-particle chunks


@pytest.mark.parametrize("power", [0.5, 2.0, 3.0])
@pytest.mark.parametrize("steps", [2, 10, 50, 400, 998])
def test_warped_sweeps_keep_the_range_and_stay_distinct(power: float, steps: int) -> None:
    timesteps = schedule.evenly_spaced_timesteps(steps, power=power)
    assert len(timesteps) == steps and timesteps[0] == 999 and timesteps[-1] == 2
    assert all(a > b for a, b in pairwise(timesteps))


def test_power_moves_iterations_towards_low_or_high_noise() -> None:
    even = schedule.evenly_spaced_timesteps(50)
    low = schedule.evenly_spaced_timesteps(50, power=2.0)
    high = schedule.evenly_spaced_timesteps(50, power=0.5)
    assert sum(t < 500 for t in low) >= sum(t < 500 for t in even) + 8  # 35 of 50 against 25
    assert sum(t > 500 for t in high) >= sum(t > 500 for t in even) + 8
    config = flow.DWGFConfig(steps=50, time_power=2.0)
    assert [lv.timestep for lv in flow.dwgf_levels(schedule.sd_alphas_cumprod(), config)] == low


def test_warm_start_is_the_encoded_pseudo_inverse_plus_seeded_noise() -> None:
    problem = LinearProblem()
    ae = problem.autoencoder
    image = problem.operator.pseudo_inverse(problem.y).clamp(-1, 1)
    # an inpainting problem: the hole is filled with the known pixels' mean colour (the test below)
    expected = ae.encode(latent_data.mean_colour_fill(image, problem.operator.known_mask()))
    exact = warm_start.warm_start_particles(ae, problem.operator, problem.y, 3, seed=4, spread=0.0)
    assert exact.shape == (3, *problem.latent_shape)
    assert torch.allclose(exact, expected.expand(3, -1, -1, -1))
    noisy = warm_start.warm_start_particles(ae, problem.operator, problem.y, 3, seed=4, spread=0.5)
    assert torch.allclose(noisy - exact, 0.5 * initial_particles(3, problem.latent_shape, 4))


def test_warm_start_repeats_each_measurement_for_its_particles() -> None:
    problem = LinearProblem()
    ys = torch.cat([problem.y, 0.5 * problem.y])
    start = warm_start.warm_start_particles(problem.autoencoder, problem.operator, ys, 2, seed=0, spread=0.0)
    assert start.shape == (4, *problem.latent_shape)
    assert torch.equal(start[0], start[1]) and torch.equal(start[2], start[3])
    assert not torch.allclose(start[0], start[2])


@pytest.mark.parametrize(("denoise", "steps", "first"), [(1.0, 50, 999), (0.5, 50, 500), (0.3, 25, 301),
                                                         (0.01, 50, 51)])
def test_start_timestep_follows_denoise_and_leaves_room_for_the_steps(denoise: float, steps: int,
                                                                      first: int) -> None:
    assert warm_start.start_timestep(denoise, 2, steps) == first
    flow.DWGFConfig(steps=steps, first_timestep=first)  # a valid sweep


@pytest.mark.parametrize("denoise", [0.0, -0.5, 1.5, float("nan")])
def test_bad_denoise_is_named(denoise: float) -> None:
    with pytest.raises(DWGFInputError, match="denoise"):
        warm_start.start_timestep(denoise, 2, 50)


@pytest.mark.parametrize(("field", "value"), [("ae_every", 0), ("time_power", 0.0), ("time_power", float("inf"))])
def test_bad_saving_settings_are_named(field: str, value: object) -> None:
    with pytest.raises(DWGFInputError, match=field):
        flow.DWGFConfig(**{field: value})


def test_warm_start_setting_starts_the_run_at_the_encoded_measurement() -> None:
    """``warm_start=True`` in the config is the same run as passing the warm start as ``initial``."""
    problem = LinearProblem()
    config = flow.DWGFConfig(particles=3, steps=5, seed=6, first_timestep=400, warm_start=True)
    by_config = flow.run_dwgf(GaussianPriorDenoiser(), problem.autoencoder, config, problem.latent_shape,
                              problem.operator, problem.y)
    start = warm_start.warm_start_particles(problem.autoencoder, problem.operator, problem.y, 3, seed=6)
    by_hand = flow.run_dwgf(GaussianPriorDenoiser(), problem.autoencoder,
                            flow.DWGFConfig(particles=3, steps=5, seed=6, first_timestep=400), problem.latent_shape,
                            problem.operator, problem.y, initial=start)
    assert torch.equal(by_config, by_hand)
    with pytest.raises(DWGFInputError, match="warm start"):
        flow.run_dwgf(GaussianPriorDenoiser(), problem.autoencoder, config, problem.latent_shape)


def test_the_warm_start_of_inpainting_encodes_the_hole_filled_with_the_known_mean_colour() -> None:
    """Issue 25: not the grey hole of ``A†y``: the known pixels' mean colour, per image and channel."""
    from dwgf.operators import Inpainting

    problem = LinearProblem()
    ae = problem.autoencoder
    known = torch.ones(problem.operator.height, problem.operator.width, dtype=torch.bool)
    known[1:3, 1:3] = False
    operator = Inpainting(known)
    image = torch.rand(1, 3, *known.shape, generator=torch.Generator().manual_seed(3)) * 2 - 1
    y = operator.forward(image)
    filled = operator.pseudo_inverse(y).clone()
    filled[:, :, ~known] = image[:, :, known].mean(-1)[..., None]
    start = warm_start.warm_start_particles(ae, operator, y, 2, seed=0, spread=0.0)
    assert torch.allclose(start, ae.encode(filled).expand(2, -1, -1, -1), atol=1e-6)
