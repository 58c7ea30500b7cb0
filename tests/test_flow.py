"""DWGF against ground truth: a linear-Gaussian problem whose answers are known in closed form.

The latent prior is ``N(0, I)``, so the exact k-diffusion denoiser is ``ẑ0 = x / (1 + s²)`` and
the exact noise prediction is ``ε_θ = σ z_t``. The decoder is an injective matrix ``D(z) = W z``,
the encoder its pseudo-inverse, and the operator a real :class:`dwgf.operators.Inpainting` that
keeps a subset of pixels, so ``B = A W`` and the data term's normalisation (``m`` measured
elements, not all pixels) changes the answer.
"""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch
from doubles import BrokenDenoiser, GaussianPriorDenoiser

from dwgf import flow, operators, schedule
from dwgf.errors import DWGFInputError, DWGFRunError
from dwgf.particles import initial_particles
from dwgf.schedule import NoiseLevel, constant_levels, sd_alphas_cumprod

pytestmark = pytest.mark.usefixtures("single_thread")


# --------------------------------------------------------------------------------------------
# Exact models
# --------------------------------------------------------------------------------------------
class LinearAutoencoder:
    """``D(z) = W z`` (injective, ``d_x > d_z``) and ``E = W⁺``, on image-shaped tensors."""

    latent_channels = 1
    downscale = 1

    def __init__(self, W: torch.Tensor, latent_shape: tuple[int, ...], image_shape: tuple[int, ...]) -> None:
        self.W, self.W_pinv = W, torch.linalg.pinv(W)
        self.latent_shape, self.image_shape = latent_shape, image_shape
        self.decodes_with_grad = self.decodes_without_grad = self.encodes = 0

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and z.requires_grad:
            self.decodes_with_grad += 1
        else:
            self.decodes_without_grad += 1
        return (z.flatten(1) @ self.W.T).view(z.shape[0], *self.image_shape)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self.encodes += 1
        return (x.flatten(1) @ self.W_pinv.T).view(x.shape[0], *self.latent_shape)


class LinearProblem:
    """A 6-dimensional latent, 3×4×4 images, inpainting that keeps 6 of 16 pixels (m = 18)."""

    latent_shape = (1, 2, 3)
    image_shape = (3, 4, 4)

    def __init__(self, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.d_z, self.d_x = 6, 48
        self.W = torch.randn(self.d_x, self.d_z, generator=g)
        known = torch.zeros(16, dtype=torch.bool)
        known[torch.randperm(16, generator=g)[:6]] = True
        self.operator = operators.Inpainting(known.view(4, 4))
        self.autoencoder = LinearAutoencoder(self.W, self.latent_shape, self.image_shape)
        basis = self.W.T.reshape(self.d_z, *self.image_shape)
        self.B = self.operator.forward(basis).reshape(self.d_z, -1).T  # B = A W, m × d_z
        self.m = self.B.shape[0]
        # A large clean latent: the flow is affine in z, so its noise does not grow with z*,
        # and the relative error of a time average shrinks (same iterations, tighter test).
        z_clean = 10.0 * torch.randn(self.d_z, generator=g)
        self.y = (self.B @ z_clean + 0.1 * torch.randn(self.m, generator=g)).view(1, 3, -1)

    def stationary_point(self, prior_coefficient: float, data_normaliser: float | None = None) -> torch.Tensor:
        """``(BᵀB/m + c I)⁻¹ Bᵀy/m``: where the expected gradient-descent update vanishes."""
        norm = self.m if data_normaliser is None else data_normaliser
        lhs = self.B.T @ self.B / norm + prior_coefficient * torch.eye(self.d_z)
        return torch.linalg.solve(lhs, self.B.T @ self.y.flatten() / norm)


def time_average(problem: LinearProblem, config: flow.DWGFConfig, alpha_bar: float, iterations: int,
                 burn_in: int, operator: operators.LinearOperator | None = None,
                 measurement: torch.Tensor | None = None) -> torch.Tensor:
    """Run at a fixed noise level and average the (single) particle after the burn-in."""
    total = torch.zeros(problem.d_z, dtype=torch.float64)

    def accumulate(k: int, steps: int, z: torch.Tensor, info: dict) -> None:
        nonlocal total
        if k >= burn_in:
            total += z.flatten().double()

    flow.run_dwgf(GaussianPriorDenoiser(), problem.autoencoder, config, problem.latent_shape,
                  operator or problem.operator, problem.y if measurement is None else measurement,
                  levels=constant_levels(alpha_bar, iterations), callback=accumulate)
    return (total / (iterations - burn_in)).float()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# --------------------------------------------------------------------------------------------
# (a) The stationary point at a fixed noise level
# --------------------------------------------------------------------------------------------
ALPHA_BAR = 0.3  # not 0.5, where σ = α would hide a σ/α swap; here σ = 0.84, α = 0.55
PRIOR_WEIGHT = 5.0  # prior coefficient w(1−ᾱ)/d_z = 0.58, comparable to BᵀB/m (eigenvalues 0.24 … 1.8)
GD_CONFIG = flow.DWGFConfig(particles=1, steps=1, lr=0.3, prior_weight=PRIOR_WEIGHT, ae_weight=1.0,
                            decoder_noise=0.05, optimizer="sgd", seed=1)
TOLERANCE = 0.005


def test_fixed_noise_gradient_descent_reaches_closed_form_stationary_point() -> None:
    """One particle, plain gradient descent, fixed ᾱ: the expected update is affine in z,
    ``E[Δz] = −lr [(BᵀB/m + w(1−ᾱ)/d_z I) z − Bᵀy/m]`` (the encoder–decoder term has mean zero for
    an injective linear decoder), so the long-run average of the iterates is z*.

    Measured: relative error 0.14 % after 2000 iterations (0.24 % after 1000). The nearest wrong
    formula — σ² instead of σ in the prior weight — moves z* by 7.8 %; missing 1/α 25 %, α/σ for
    σ/α 35 %, a data mean over all pixels 42 %. A 0.5 % tolerance separates them all.
    """
    problem = LinearProblem()
    expected = problem.stationary_point(PRIOR_WEIGHT * (1 - ALPHA_BAR) / problem.d_z)
    average = time_average(problem, GD_CONFIG, ALPHA_BAR, iterations=2000, burn_in=100)
    assert relative_error(average, expected) < TOLERANCE

    # What the same run would be compared with if the method were written down wrongly: each of
    # these stationary points is far outside the tolerance, so the assertion above discriminates.
    a, s, w, d_z = math.sqrt(ALPHA_BAR), math.sqrt(1 - ALPHA_BAR), PRIOR_WEIGHT, problem.d_z
    wrong = {
        "σ² instead of σ": problem.stationary_point(w * s**3 / d_z),
        "missing 1/α": problem.stationary_point(w * s**2 * a / d_z),
        "α/σ instead of σ/α": problem.stationary_point(w * a**2 / d_z),
        "twice the prior weight": problem.stationary_point(2 * w * s**2 / d_z),
        "mean over all pixels": problem.stationary_point(w * s**2 / d_z, data_normaliser=problem.d_x),
    }
    for name, wrong_point in wrong.items():
        assert relative_error(average, wrong_point) > 10 * TOLERANCE, name


_CORRECT_PRIOR_LOSS = flow.prior_loss


def _prior_loss_sigma_squared(z, eps_model, eps_mixture, level, weight):  # noqa: ANN001, ANN202
    """The prior term with σ² where σ belongs (one σ too many)."""
    return level.sigma * _CORRECT_PRIOR_LOSS(z, eps_model, eps_mixture, level, weight)


def _prior_loss_without_alpha(z, eps_model, eps_mixture, level, weight):  # noqa: ANN001, ANN202
    return level.alpha * _CORRECT_PRIOR_LOSS(z, eps_model, eps_mixture, level, weight)


def _prior_loss_wrong_sign(z, eps_model, eps_mixture, level, weight):  # noqa: ANN001, ANN202
    return -_CORRECT_PRIOR_LOSS(z, eps_model, eps_mixture, level, weight)


class MaskMultiply(operators.LinearOperator):
    """The mistake METHOD.md warns about: a full-size masked image, so the mean runs over all pixels."""

    def __init__(self, inpainting: operators.Inpainting) -> None:
        super().__init__(inpainting.height, inpainting.width, inpainting.channels)
        self.inpainting = inpainting

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inpainting.adjoint(self.inpainting.forward(x))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.forward(y)


@pytest.mark.parametrize("mutant", ["sigma-squared", "no-alpha", "wrong-sign", "mean-over-all-pixels"])
def test_closed_form_check_fails_for_a_wrong_implementation(mutant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The acceptance test above really fails for the classic slips, run for real (measured relative
    errors to z*: σ² instead of σ 7.8 %, missing 1/α 25 %, mask-multiply with a mean over all
    pixels 42 %; the wrong sign makes the particle diverge, DWGFRunError at step 430)."""
    problem = LinearProblem()
    expected = problem.stationary_point(PRIOR_WEIGHT * (1 - ALPHA_BAR) / problem.d_z)
    operator, measurement = problem.operator, problem.y
    if mutant == "sigma-squared":
        monkeypatch.setattr(flow, "prior_loss", _prior_loss_sigma_squared)
    elif mutant == "no-alpha":
        monkeypatch.setattr(flow, "prior_loss", _prior_loss_without_alpha)
    elif mutant == "wrong-sign":
        monkeypatch.setattr(flow, "prior_loss", _prior_loss_wrong_sign)
    else:
        operator, measurement = MaskMultiply(problem.operator), problem.operator.adjoint(problem.y)
    try:
        average = time_average(problem, GD_CONFIG, ALPHA_BAR, 1000, 100, operator, measurement)
    except DWGFRunError:
        return  # diverged: certainly not z*
    assert relative_error(average, expected) > 5 * TOLERANCE


# --------------------------------------------------------------------------------------------
# (b) The particle-mixture score keeps the particles spread like the prior
# --------------------------------------------------------------------------------------------
def prior_only_run(coupled: bool, start_scale: float, iterations: int = 600, gain: float = 0.2,
                   alpha_bar: float = 0.1, particles: int = 64) -> torch.Tensor:
    """Data and encoder–decoder terms off; gradient descent whose per-step contraction of the
    single-particle flow is ``gain`` (``lr · w(1−ᾱ)/(N d_z) = gain``)."""
    latent_shape, d_z, w = (1, 2, 2), 4, 1.0
    config = flow.DWGFConfig(particles=particles, steps=1, lr=gain * particles * d_z / (w * (1 - alpha_bar)),
                             prior_weight=w, ae_weight=0.0, optimizer="sgd", seed=3, particle_coupling=coupled)
    start = start_scale * torch.randn(particles, *latent_shape, generator=torch.Generator().manual_seed(5))
    return flow.run_dwgf(GaussianPriorDenoiser(), None, config, latent_shape,
                         levels=constant_levels(alpha_bar, iterations), initial=start).flatten(1)


def test_mixture_score_spreads_particles_like_the_prior() -> None:
    """64 particles started collapsed (standard deviation 0.1) spread out to the prior N(0, I) at
    ᾱ = 0.1. Measured: per-dimension variances 1.009–1.016, |mean| ≤ 0.0015 after 600 iterations
    (from the prior itself they stay there: 1.009–1.016)."""
    z = prior_only_run(coupled=True, start_scale=0.1)
    variance = z.var(0)
    assert ((variance > 0.85) & (variance < 1.15)).all(), variance
    assert z.mean(0).abs().max() < 0.15


def test_independent_particles_collapse_to_the_mode() -> None:
    """Without the coupling (ε̂ = ε, score distillation) the same particles, even started from the
    prior itself, collapse towards 0. The theory for this affine flow: stationary variance
    ``gain · (ᾱ/(1−ᾱ)) / (2 − gain)`` = 0.0123 for gain 0.2, ᾱ = 0.1; measured per-dimension
    variances 0.011–0.015 (mean 0.0128)."""
    z = prior_only_run(coupled=False, start_scale=1.0)
    variance = z.var(0)
    predicted = 0.2 * (0.1 / 0.9) / (2 - 0.2)
    assert (variance < 0.05).all(), variance
    assert float(variance.mean()) == pytest.approx(predicted, rel=0.35)


# --------------------------------------------------------------------------------------------
# The terms, one by one
# --------------------------------------------------------------------------------------------
def test_mixture_score_is_the_gradient_of_the_log_mixture_density() -> None:
    """ŝ_i = ∇ log((1/N) Σ_j N(z_t^i; α z^j, σ² I)), compared with autograd in float64."""
    g = torch.Generator().manual_seed(0)
    level = NoiseLevel(0.3)
    z = torch.randn(5, 2, 3, 2, generator=g, dtype=torch.float64)
    z_t = (level.alpha * z + level.sigma * torch.randn(z.shape, generator=g, dtype=torch.float64))
    probe = z_t.clone().requires_grad_(True)
    d = z[0].numel()
    squared = (probe.flatten(1)[:, None, :] - level.alpha * z.flatten(1)[None, :, :]).square().sum(-1)
    log_density = torch.logsumexp(-squared / (2 * level.sigma**2), dim=1) - math.log(5) \
        - 0.5 * d * math.log(2 * math.pi * level.sigma**2)
    (expected,) = torch.autograd.grad(log_density.sum(), probe)
    assert torch.allclose(flow.mixture_score(z_t, z, level), expected, atol=1e-12, rtol=1e-10)


def test_mixture_score_of_one_particle_is_minus_noise_over_sigma() -> None:
    g = torch.Generator().manual_seed(1)
    level = NoiseLevel(0.7)
    z, eps = torch.randn(1, 4, 3, 3, generator=g), torch.randn(1, 4, 3, 3, generator=g)
    z_t = level.alpha * z + level.sigma * eps
    assert torch.allclose(flow.mixture_noise(z_t, z, level), eps, atol=1e-5)
    assert torch.allclose(flow.mixture_score(z_t, z, level), -eps / level.sigma, atol=1e-5)


def test_mixture_weights_stay_finite_at_low_noise_in_high_dimension() -> None:
    """t = 2 of SD (σ ≈ 0.04) with an SD-sized latent: logits ~10⁷, still a clean softmax."""
    level = schedule.levels_from_timesteps(sd_alphas_cumprod(), [2])[0]
    g = torch.Generator().manual_seed(2)
    z = torch.randn(4, 4, 64, 64, generator=g)
    z_t = level.alpha * z + level.sigma * torch.randn(z.shape, generator=g)
    weights = flow.mixture_weights(z_t, z, level)
    assert torch.isfinite(weights).all()
    assert torch.allclose(weights, torch.eye(4, dtype=weights.dtype), atol=1e-12)  # each sees itself


def test_model_noise_uses_the_k_diffusion_form() -> None:
    """For the N(0, I) prior the true noise prediction is ε_θ = σ z_t (VP form)."""
    denoiser = GaussianPriorDenoiser()
    level = schedule.levels_from_timesteps(denoiser.alphas_cumprod, [500])[0]
    z_t = torch.randn(3, 4, 5, 6, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(flow.model_noise(denoiser, z_t, level), level.sigma * z_t, atol=1e-5)


def test_prior_loss_gradient_matches_method() -> None:
    """∂L_prior/∂z_i = w (σ/α)(ε_θ^i − ε̂^i) / (N d_z)."""
    g = torch.Generator().manual_seed(4)
    level, w = NoiseLevel(0.4), 0.15
    z = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64).requires_grad_(True)
    eps_model, eps_mixture = torch.randn(2, *z.shape, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad(flow.prior_loss(z, eps_model, eps_mixture, level, w), z)
    expected = w * (level.sigma / level.alpha) * (eps_model - eps_mixture) / z.numel()
    assert torch.allclose(grad, expected, atol=0, rtol=1e-12)


def test_data_loss_averages_over_measured_elements_only() -> None:
    known = operators.centered_box_mask(8, 8, 0.5)
    op = operators.Inpainting(known)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 3, 8, 8, generator=g)
    y = op.forward(torch.randn(1, 3, 8, 8, generator=g))
    kept = int(known.sum())
    expected = 0.5 * ((op.adjoint(y) - x) * known).square().sum() / (4 * 3 * kept)
    assert flow.data_loss(op, y, x) == pytest.approx(float(expected), rel=1e-5)
    full_mean = 0.5 * ((op.adjoint(y) - x) * known).square().mean()
    assert float(full_mean) < 0.8 * float(expected)  # the masked full-image mean is another number
    assert flow.data_loss(op, y.expand(4, -1, -1), x) == pytest.approx(float(expected), rel=1e-5)


def test_data_loss_names_a_shape_mismatch() -> None:
    op = operators.Inpainting(operators.centered_box_mask(8, 8, 0.5))
    y = torch.zeros(1, 3, 5)
    with pytest.raises(DWGFInputError, match="measurement has shape"):
        flow.data_loss(op, y, torch.zeros(1, 3, 8, 8))


def test_autoencoder_loss_gradient_is_the_reconstruction_residual() -> None:
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64).requires_grad_(True)
    x_de = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    (grad,) = torch.autograd.grad(flow.autoencoder_loss(x, x_de), x)
    assert torch.allclose(grad, (x - x_de).detach() / x.numel())


# --------------------------------------------------------------------------------------------
# The loop: cost, reproducibility, divergence, callback
# --------------------------------------------------------------------------------------------
def test_each_network_runs_once_per_iteration_and_only_z_needs_grad() -> None:
    problem = LinearProblem()
    denoiser = GaussianPriorDenoiser()
    config = flow.DWGFConfig(particles=3, steps=7)
    flow.run_dwgf(denoiser, problem.autoencoder, config, problem.latent_shape, problem.operator, problem.y)
    ae = problem.autoencoder
    assert len(denoiser.calls) == 7 and all(c.batch == 3 and not c.grad_enabled for c in denoiser.calls)
    assert (ae.decodes_with_grad, ae.decodes_without_grad, ae.encodes) == (7, 7, 7)


def test_same_seed_gives_identical_particles() -> None:
    problem = LinearProblem()

    def run(seed: int) -> torch.Tensor:
        config = flow.DWGFConfig(particles=4, steps=20, seed=seed)
        return flow.run_dwgf(GaussianPriorDenoiser(), problem.autoencoder, config, problem.latent_shape,
                             problem.operator, problem.y)

    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))
    assert torch.equal(initial_particles(4, (2, 3), 11), initial_particles(4, (2, 3), 11))


class ReplayedNoise:
    """Hands out preset draws in order (``ε`` then the decoder noise), scaled as asked."""

    def __init__(self, *draws: torch.Tensor) -> None:
        self.draws = list(draws)

    def normal(self, shape: tuple[int, ...], scale: float = 1.0) -> torch.Tensor:
        draw = self.draws.pop(0)
        assert tuple(draw.shape) == tuple(shape)
        return draw * scale


def test_groups_get_exactly_the_gradient_of_their_own_run() -> None:
    """Three measurements in one run: each group of particles couples only with itself, sees its
    own measurement, and receives the gradient it gets alone (the loss scaling is right)."""
    problem = LinearProblem()
    groups, n = 3, 4
    g = torch.Generator().manual_seed(5)
    z_all = torch.randn(groups * n, *problem.latent_shape, generator=g)
    eps = torch.randn_like(z_all)
    decoder_noise = torch.randn(groups * n, *problem.image_shape, generator=g)
    measurements = problem.y + torch.randn(groups, *problem.y.shape[1:], generator=g)
    config = flow.DWGFConfig(particles=n, steps=1, prior_weight=2.0, ae_weight=0.5, decoder_noise=0.05)
    level = constant_levels(0.4, 1)[0]

    def gradient(z: torch.Tensor, y: torch.Tensor, count: int, noise: ReplayedNoise) -> torch.Tensor:
        z = z.clone().requires_grad_(True)
        run = flow._Problem(GaussianPriorDenoiser(), problem.autoencoder, problem.operator, y, config, count)
        flow.iteration_gradient(run, z, level, noise)
        return z.grad

    together = gradient(z_all, measurements.repeat_interleave(n, 0), groups,
                           ReplayedNoise(eps, decoder_noise))
    for k in range(groups):
        part = slice(k * n, (k + 1) * n)
        alone = gradient(z_all[part], measurements[k:k + 1], 1, ReplayedNoise(eps[part], decoder_noise[part]))
        assert torch.allclose(together[part], alone, rtol=1e-5, atol=1e-7), k
    # the coupling matters: mixing all 12 particles as one group gives a different gradient
    mixed = gradient(z_all, measurements.repeat_interleave(n, 0), 1, ReplayedNoise(eps, decoder_noise))
    assert not torch.allclose(mixed, together * (1 / groups), rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("chunk, checkpointed", [(1, False), (3, False), (2, True)])
def test_chunking_and_checkpointing_change_memory_not_the_result(chunk: int, checkpointed: bool) -> None:
    problem = LinearProblem()

    def run(**memory: object) -> tuple[torch.Tensor, LinearAutoencoder]:
        ae = LinearAutoencoder(problem.W, problem.latent_shape, problem.image_shape)
        config = flow.DWGFConfig(particles=4, steps=15, seed=3, **memory)
        z = flow.run_dwgf(GaussianPriorDenoiser(), ae, config, problem.latent_shape, problem.operator, problem.y)
        return z, ae

    reference, ae_reference = run()
    chunked, ae_chunked = run(particle_chunk=chunk, checkpoint_decoder=checkpointed)
    assert torch.allclose(chunked, reference, rtol=1e-4, atol=1e-5)
    chunks = -(-4 // chunk)
    recomputed = 2 if checkpointed else 1  # the checkpoint re-runs the decoder forward in the backward
    assert ae_reference.decodes_with_grad == 15
    assert ae_chunked.decodes_with_grad == 15 * chunks * recomputed
    assert ae_chunked.encodes == 15 * chunks


def test_groups_run_end_to_end_with_one_measurement_each() -> None:
    problem = LinearProblem()
    measurements = torch.cat([problem.y, 2 * problem.y])
    config = flow.DWGFConfig(particles=2, steps=10)
    z = flow.run_dwgf(GaussianPriorDenoiser(), problem.autoencoder, config, problem.latent_shape,
                      problem.operator, measurements, groups=2)
    assert z.shape == (4, *problem.latent_shape) and torch.isfinite(z).all()
    with pytest.raises(DWGFInputError, match="batch of 1 or of 4"):
        flow.run_dwgf(GaussianPriorDenoiser(), problem.autoencoder, config, problem.latent_shape,
                      problem.operator, torch.cat([measurements, problem.y]), groups=2)


def test_reference_schedule_and_callback() -> None:
    """The default sweep runs t = 999 → 2; the callback sees every step with float losses."""
    problem = LinearProblem()
    seen: list[tuple[int, int, dict]] = []
    config = flow.DWGFConfig(particles=2, steps=12)
    z = flow.run_dwgf(GaussianPriorDenoiser(), problem.autoencoder, config, problem.latent_shape,
                      problem.operator, problem.y, callback=lambda k, n, z, info: seen.append((k, n, info)))
    assert z.shape == (2, *problem.latent_shape) and z.dtype == torch.float32 and not z.requires_grad
    assert [k for k, _, _ in seen] == list(range(12)) and {n for _, n, _ in seen} == {12}
    assert seen[0][2]["timestep"] == 999 and seen[-1][2]["timestep"] == 2
    info = seen[0][2]
    assert all(isinstance(info[key], float) for key in ("loss", "loss_obs", "loss_prior", "loss_ae"))
    assert info["loss"] == pytest.approx(info["loss_obs"] + info["loss_prior"] + 0.1 * info["loss_ae"])


def test_callback_can_stop_the_run() -> None:
    problem = LinearProblem()

    class StopRunError(Exception):
        pass

    def stop_at_three(k: int, n: int, z: torch.Tensor, info: dict) -> None:
        if k == 3:
            raise StopRunError

    with pytest.raises(StopRunError):
        flow.run_dwgf(GaussianPriorDenoiser(), problem.autoencoder, flow.DWGFConfig(steps=10),
                      problem.latent_shape, problem.operator, problem.y, callback=stop_at_three)


@pytest.mark.parametrize("with_callback", [False, True])
def test_nan_stops_the_run_with_the_step_and_cause(with_callback: bool) -> None:
    problem = LinearProblem()
    callback = (lambda k, n, z, info: None) if with_callback else None
    with pytest.raises(DWGFRunError, match=r"step 5 of 30 .*loss_prior.*diffusion model"):
        flow.run_dwgf(BrokenDenoiser(), problem.autoencoder, flow.DWGFConfig(steps=30), problem.latent_shape,
                      problem.operator, problem.y, callback=callback)


def test_runaway_learning_rate_is_reported() -> None:
    problem = LinearProblem()
    config = flow.DWGFConfig(particles=1, steps=1, lr=50.0, optimizer="sgd")
    with pytest.raises(DWGFRunError, match="lower lr"):
        flow.run_dwgf(GaussianPriorDenoiser(), problem.autoencoder, config, problem.latent_shape,
                      problem.operator, problem.y, levels=constant_levels(0.5, 400))


def test_low_precision_decoder_still_gives_float32_losses() -> None:
    problem = LinearProblem()

    class BFloat16Decoder(LinearAutoencoder):
        def decode(self, z: torch.Tensor) -> torch.Tensor:
            return super().decode(z).to(torch.bfloat16)

    ae = BFloat16Decoder(problem.W, problem.latent_shape, problem.image_shape)
    infos: list[dict] = []
    z = flow.run_dwgf(GaussianPriorDenoiser(), ae, flow.DWGFConfig(particles=2, steps=5), problem.latent_shape,
                      problem.operator, problem.y, callback=lambda k, n, z, info: infos.append(info))
    assert z.dtype == torch.float32 and len(infos) == 5
    assert all(math.isfinite(i["loss"]) for i in infos)


def test_runs_inside_inference_mode() -> None:
    """ComfyUI executes nodes under torch.inference_mode(), so the operator and the measurement
    arrive as inference tensors (which autograd refuses to save); the flow still gets its gradient."""
    problem = LinearProblem()
    with torch.inference_mode():
        known = torch.zeros(4, 4, dtype=torch.bool)
        known[1:3] = True
        made_in_inference = [operators.Inpainting(known), operators.GaussianBlur(4, 4, 3, 1.0),
                             operators.AveragePoolSR(4, 4, 2), operators.Denoising(4, 4)]
        for op in made_in_inference:
            y = op.forward(torch.zeros(1, *problem.image_shape))
            z = flow.run_dwgf(GaussianPriorDenoiser(), problem.autoencoder, flow.DWGFConfig(particles=2, steps=5),
                              problem.latent_shape, op, y)
            assert torch.isfinite(z).all(), op.name


# --------------------------------------------------------------------------------------------
# Schedule and settings
# --------------------------------------------------------------------------------------------
def test_reference_schedule_is_999_down_to_2() -> None:
    assert schedule.evenly_spaced_timesteps(998) == list(range(999, 1, -1))


@pytest.mark.parametrize("steps", [1, 2, 3, 50, 97, 500, 997])
def test_shorter_schedules_spread_over_the_same_range(steps: int) -> None:
    timesteps = schedule.evenly_spaced_timesteps(steps)
    assert len(timesteps) == steps and timesteps[0] == 999
    assert steps == 1 or timesteps[-1] == 2
    assert all(a > b for a, b in pairwise(timesteps))
    gaps = [a - b for a, b in pairwise(timesteps)]
    assert steps == 1 or max(gaps) - min(gaps) <= 1


def test_schedule_levels_follow_the_model() -> None:
    table = sd_alphas_cumprod()
    levels = schedule.reference_levels(table, 10)
    assert [lv.timestep for lv in levels] == schedule.evenly_spaced_timesteps(10)
    assert levels[0].alpha_bar == pytest.approx(float(table[999]))
    assert levels[0].k_sigma == pytest.approx(math.sqrt((1 - float(table[999])) / float(table[999])))
    with pytest.raises(DWGFInputError, match="outside the model's schedule"):
        schedule.levels_from_timesteps(table[:500], [999])


@pytest.mark.parametrize(("field", "value", "named"), [
    ("particles", 0, "particles"),
    ("steps", 999, "steps"),
    ("lr", 0.0, "lr"),
    ("lr", float("nan"), "lr"),
    ("prior_weight", -1.0, "prior_weight"),
    ("decoder_noise", -0.1, "decoder_noise"),
    ("optimizer", "lbfgs", "optimizer"),
    ("betas", (0.9, 1.0), "betas"),
    ("first_timestep", 2, "first_timestep"),
])
def test_bad_settings_name_the_setting(field: str, value: object, named: str) -> None:
    with pytest.raises(DWGFInputError, match=named):
        flow.DWGFConfig(**{field: value})


def test_bad_inputs_are_named() -> None:
    problem = LinearProblem()
    denoiser, ae = GaussianPriorDenoiser(), problem.autoencoder
    config = flow.DWGFConfig(particles=2, steps=3)
    with pytest.raises(DWGFInputError, match="both the operator and the measurement"):
        flow.run_dwgf(denoiser, ae, config, problem.latent_shape, problem.operator, None)
    with pytest.raises(DWGFInputError, match="batch of 1 or of 2"):
        flow.run_dwgf(denoiser, ae, config, problem.latent_shape, problem.operator, problem.y.expand(3, -1, -1))
    with pytest.raises(DWGFInputError, match="NaN"):
        flow.run_dwgf(denoiser, ae, config, problem.latent_shape, problem.operator, problem.y * float("nan"))
    with pytest.raises(DWGFInputError, match="need the VAE"):
        flow.run_dwgf(denoiser, None, config, problem.latent_shape, problem.operator, problem.y)
