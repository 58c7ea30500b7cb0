"""Flow-matching noise levels in the core (issue 18): the VP-equivalent table and the claim that
DWGF's update is the same whether written in flow form or at the VP level with the same ``σ/α``."""

from __future__ import annotations

import pytest
import torch
from doubles import GaussianPriorDenoiser

from dwgf import flow, parametrisation
from dwgf.errors import DWGFInputError
from dwgf.particles import NoiseSource
from dwgf.schedule import NoiseLevel, reference_levels

pytestmark = pytest.mark.usefixtures("single_thread")


def discrete_flow_times(shift: float = 1.0, steps: int = 1000) -> torch.Tensor:
    """ComfyUI's ModelSamplingDiscreteFlow table: ``t_i = shift·u / (1 + (shift − 1) u)``, ``u = (i+1)/steps``."""
    u = torch.arange(1, steps + 1, dtype=torch.float64) / steps
    return shift * u / (1 + (shift - 1) * u)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_table_has_the_same_signal_to_noise_ratio_as_each_flow_time(shift: float) -> None:
    times = discrete_flow_times(shift)
    alpha_bar = parametrisation.flow_alphas_cumprod(times)
    s = ((1 - alpha_bar) / alpha_bar).sqrt()
    torch.testing.assert_close(s[:-1], times[:-1] / (1 - times[:-1]), rtol=1e-9, atol=0)
    assert float(times[-1]) == 1.0  # pure noise on top: moved halfway to 1 from the level below
    torch.testing.assert_close(parametrisation.flow_time_from_alpha_bar(alpha_bar[-1:]),
                               (times[-2:-1] + 1) / 2, rtol=1e-12, atol=0)
    assert bool((alpha_bar[1:] < alpha_bar[:-1]).all()) and bool(((alpha_bar > 0) & (alpha_bar < 1)).all())
    torch.testing.assert_close(parametrisation.flow_time_from_alpha_bar(alpha_bar[:-1]), times[:-1],
                               rtol=1e-10, atol=0)


def test_a_flow_table_that_does_not_increase_is_refused() -> None:
    with pytest.raises(DWGFInputError, match="increase strictly"):
        parametrisation.flow_alphas_cumprod(torch.tensor([0.1, 0.3, 0.2, 1.0]))
    with pytest.raises(DWGFInputError, match=r"\(0, 1\]"):
        parametrisation.finite_flow_times(torch.tensor([0.5, 1.5]))


def test_flow_input_is_the_same_noisy_latent_rescaled() -> None:
    z, eps = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    t = torch.tensor([0.1, 0.5, 0.9])
    s = parametrisation.k_sigma_from_flow_time(t)
    x = z + s.view(-1, 1, 1, 1) * eps
    tt = t.view(-1, 1, 1, 1)
    torch.testing.assert_close(parametrisation.flow_input_from_k(x, s), (1 - tt) * z + tt * eps)
    torch.testing.assert_close(parametrisation.flow_time_from_k_sigma(s), t)


def flow_form_prior_gradient(z: torch.Tensor, eps: torch.Tensor, t: float, weight: float) -> torch.Tensor:
    """METHOD.md's prior gradient written directly in flow form for a ``N(0, I)`` latent:
    ``z_t = (1 − t) z + t ε``, ``ẑ0 = E[z | z_t] = α z_t / (α² + σ²)``, ``ε_θ = (z_t − α ẑ0)/σ``, the mixture
    ``ε̂ = (z_t − α Σ_j π_ij z^j)/σ``; gradient ``w (σ/α)(ε_θ − ε̂) / (N d)``. No VP level appears."""
    alpha, sigma = 1.0 - t, t
    z64, eps64 = z.double(), eps.double()
    z_t = alpha * z64 + sigma * eps64
    denoised = alpha * z_t / (alpha**2 + sigma**2)
    eps_model = (z_t - alpha * denoised) / sigma
    flat_t, flat_z = z_t.flatten(1), (alpha * z64).flatten(1)
    weights = torch.softmax(-torch.cdist(flat_t, flat_z).square() / (2 * sigma**2), dim=1)
    eps_mixture = (z_t - alpha * (weights @ z64.flatten(1)).view_as(z64)) / sigma
    return weight * (sigma / alpha) * (eps_model - eps_mixture) / z.numel()


@pytest.mark.parametrize("t", [0.05, 0.4, 0.8, 0.995])
def test_dwgf_prior_gradient_at_the_vp_equivalent_level_equals_the_flow_form(t: float) -> None:
    """The core, at ``ᾱ = (1−t)²/((1−t)² + t²)`` with the k-diffusion denoiser, gives the gradient of
    the update written in flow form with the same ε (:mod:`dwgf.parametrisation`'s claim)."""
    z = torch.randn(4, 4, 3, 3, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    config = flow.DWGFConfig(particles=4, steps=1, seed=5, ae_weight=0.0, prior_weight=0.15)
    problem = flow._Problem(GaussianPriorDenoiser(), None, None, None, config)
    alpha_bar = float(parametrisation.flow_alphas_cumprod(torch.tensor([t, 1.0], dtype=torch.float64))[0])
    level = NoiseLevel(alpha_bar)
    flow.iteration_gradient(problem, z, level, NoiseSource(5, "cpu"))
    eps = NoiseSource(5, "cpu").normal(z.shape)  # the same first draw the iteration made
    expected = flow_form_prior_gradient(z.detach(), eps, t, 0.15)
    # float32 in the core: ε_θ − ε̂ is a difference of O(1) noises that shrinks like 1/s at high noise
    torch.testing.assert_close(z.grad.double(), expected, rtol=1e-3, atol=1e-3 * float(expected.abs().max()))
    assert level.k_sigma == pytest.approx(t / (1 - t), rel=1e-9)


def test_prior_gradient_needs_only_the_denoised_estimate_and_the_mixture_mean() -> None:
    """``w (σ/α)(ε_θ − ε̂) = w (Σ_j π_ij z^j − ẑ0)``: no α or σ left, which is why the update is the
    same for every parametrisation (checked here at an eps level of SD's table)."""
    denoiser = GaussianPriorDenoiser()
    level = reference_levels(denoiser.alphas_cumprod, 3, 900, 100)[1]
    z = torch.randn(4, 4, 3, 3, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    config = flow.DWGFConfig(particles=4, steps=1, seed=3, ae_weight=0.0, prior_weight=0.3)
    flow.iteration_gradient(flow._Problem(denoiser, None, None, None, config), z, level, NoiseSource(3, "cpu"))
    eps = NoiseSource(3, "cpu").normal(z.shape)
    z_t = level.alpha * z.detach() + level.sigma * eps
    denoised = denoiser.denoise(z_t / level.alpha, torch.full((4,), level.k_sigma))
    weights = flow.mixture_weights(z_t, z, level).float()
    mixture_mean = (weights @ z.detach().flatten(1)).view_as(z)
    torch.testing.assert_close(z.grad, 0.3 * (mixture_mean - denoised) / z.numel(), rtol=1e-4, atol=1e-10)
