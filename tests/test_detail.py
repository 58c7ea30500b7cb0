"""The ``detail`` finish (issue 26, :mod:`dwgf.detail`) on exact models: off means today's run bit
for bit; unguided, it samples the prior around each particle with the variance the prior gives;
its data steps keep the measured pixels; bad settings are named."""

from __future__ import annotations

import math

import pytest
import torch
from doubles import GaussianPriorDenoiser

from dwgf import detail, flow
from dwgf.errors import DWGFInputError
from dwgf.operators import Inpainting, centered_box_mask

pytestmark = pytest.mark.usefixtures("single_thread")

SHAPE = (3, 8, 8)


class IdentityAutoencoder:
    """``D(z) = z``, ``E(x) = x``: the latent is the image, so pixel errors are latent errors."""

    latent_channels = 3
    downscale = 1

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x


def box_problem(seed: int = 0) -> tuple[Inpainting, torch.Tensor, torch.Tensor]:
    """A centred 4×4 hole in an 8×8 image; ``(operator, y, clean)``."""
    clean = torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(seed)) * 0.5
    known = ~centered_box_mask(8, 8, 0.5).bool()
    operator = Inpainting(known)
    return operator, operator.forward(clean), clean


def test_detail_zero_is_the_run_without_it() -> None:
    operator, y, _ = box_problem()
    runs = []
    for config in (flow.DWGFConfig(steps=6, seed=3), flow.DWGFConfig(steps=6, seed=3, detail=0.0, detail_steps=4)):
        runs.append(flow.run_dwgf(GaussianPriorDenoiser(), IdentityAutoencoder(), config, SHAPE, operator, y))
    assert torch.equal(runs[0], runs[1])
    with_detail = flow.run_dwgf(GaussianPriorDenoiser(), IdentityAutoencoder(),
                                flow.DWGFConfig(steps=6, seed=3, detail=0.3), SHAPE, operator, y)
    assert not torch.equal(runs[0], with_detail)


@pytest.mark.parametrize("start", [100, 300])
def test_unguided_finish_samples_the_prior_around_the_particle(start: int) -> None:
    """From the mode of a ``N(0, I)`` prior, re-noising to ``t_d`` and sampling ``p(z0 | z_t)`` exactly
    gives variance ``ᾱ σ² + σ² = 1 − ᾱ²``. With the exact denoiser, DDPM steps approach it as they
    get finer (measured: 10 steps 0.81–0.85 of it, 50 steps 0.95–0.96): the finish is a sampler,
    not a denoiser back to the mode, and its only shortfall is discretisation."""
    denoiser = GaussianPriorDenoiser()
    ratios = []
    for steps in (10, 50):
        settings = detail.DetailSettings(amount=0.2, start_timestep=start, steps=steps, guidance_steps=0,
                                         polish_steps=0)
        finished = detail.add_detail(denoiser, IdentityAutoencoder(), torch.zeros((2000, *SHAPE)), settings, seed=0)
        alpha_bar = float(denoiser.alphas_cumprod[start])
        assert abs(float(finished.mean())) < 0.01
        ratios.append(finished.var().item() / (1.0 - alpha_bar**2))
    assert 0.75 < ratios[0] < ratios[1] < 1.0, ratios
    assert ratios[1] > 0.9, ratios


def test_data_steps_keep_the_measured_pixels_and_the_hole_varies() -> None:
    """Started at the truth, the unguided finish moves the measured pixels (RMS 0.57); the data steps
    of the default finish keep them (0.03 at detail 0.2, measured), while the hole's particles still
    differ as the prior lets them (std 0.54 either way: the data term does not reach the hole)."""
    operator, y, clean = box_problem()
    z = clean.repeat(8, 1, 1, 1)
    hole = ~operator.known_mask()[0, 0].bool()
    errors = {}
    for steps in (0, detail.DEFAULT_GUIDANCE_STEPS):
        polish = 0 if steps == 0 else detail.DEFAULT_POLISH_STEPS
        settings = detail.DetailSettings(amount=0.2, guidance_steps=steps, polish_steps=polish)
        finished = detail.add_detail(GaussianPriorDenoiser(), IdentityAutoencoder(), z, settings, 0, operator, y)
        errors[steps] = math.sqrt(float((operator.forward(finished) - y).square().mean()))
        assert finished[:, :, hole].std(0).mean() > 0.4
    assert errors[0] > 0.4 and errors[detail.DEFAULT_GUIDANCE_STEPS] < 0.1, errors


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_bad_detail_is_named(value: float) -> None:
    with pytest.raises(DWGFInputError, match="detail"):
        flow.DWGFConfig(detail=value)


def test_detail_settings_are_named() -> None:
    with pytest.raises(DWGFInputError, match="detail_polish_lr"):
        detail.DetailSettings(amount=0.2, polish_lr=0.0)


def test_bad_detail_steps_are_named() -> None:
    with pytest.raises(DWGFInputError, match="detail_steps"):
        flow.DWGFConfig(detail=0.5, detail_steps=0)


def test_finish_levels_run_down_to_zero() -> None:
    levels = detail.finish_levels(GaussianPriorDenoiser().alphas_cumprod, detail.DetailSettings(amount=0.5))
    timesteps = [level.timestep for level in levels]
    assert timesteps[0] == detail.START_TIMESTEP and timesteps[-1] == 0
    assert timesteps == sorted(set(timesteps), reverse=True) and len(timesteps) == detail.DEFAULT_STEPS


def test_the_memory_modes_give_the_same_finish() -> None:
    """One particle at a time (the flow's 'less memory' chunking) is the same gradient in pieces."""
    operator, y, clean = box_problem()
    z = clean.repeat(4, 1, 1, 1) + 0.1 * torch.randn((4, *SHAPE), generator=torch.Generator().manual_seed(1))
    settings = detail.DetailSettings(amount=0.2)
    whole = detail.add_detail(GaussianPriorDenoiser(), IdentityAutoencoder(), z, settings, 0, operator, y)
    chunked = detail.add_detail(GaussianPriorDenoiser(), IdentityAutoencoder(), z, settings, 0, operator, y, chunk=1)
    torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-5)
    assert not torch.equal(whole, z)
