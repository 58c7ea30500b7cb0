"""PSLD against independent computations: finite differences, DDIM in closed form, exact errors.

The exact DDIM checks use the ``N(0, I)`` latent prior, whose k-diffusion denoiser is
``ẑ0 = x / (1 + s²)``; with ``x = z_t/α`` and ``1 + s² = 1/α²`` that is ``ẑ0 = α z_t`` and
``ε = σ z_t``, so one deterministic DDIM step is ``z_prev = (α_prev α + σ_prev σ) z_t`` and a run
multiplies ``z_T`` by the product of these factors (the last step goes to ``α = 1, σ = 0``).
The gradient check uses a small *nonlinear* denoiser and decoder, so the gradient really has to
run through the model, the decoder and the encoder to match.
"""

from __future__ import annotations

import math

import pytest
import torch
from doubles import BrokenDenoiser, GaussianPriorDenoiser

from dwgf import baselines, operators, psld, schedule
from dwgf.errors import DWGFInputError, DWGFRunError
from dwgf.particles import initial_particles
from dwgf.schedule import NoiseLevel, sd_alphas_cumprod

LATENT = (1, 2, 3)
IMAGE = (3, 4, 4)


pytestmark = pytest.mark.usefixtures("single_thread")


# --------------------------------------------------------------------------------------------
# Small models
# --------------------------------------------------------------------------------------------
class TanhDenoiser(GaussianPriorDenoiser):
    """A nonlinear stand-in for a UNet: ``(x + 0.5 tanh(M x)) / (1 + s²)`` per sample."""

    def __init__(self, dim: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.M = torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype) / math.sqrt(dim)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        out = (flat + 0.5 * torch.tanh(flat @ self.M.to(x).T)).view_as(x)
        return self.record(x, out / (1.0 + sigma**2).view(-1, *[1] * (x.ndim - 1)))


class TinyAutoencoder:
    """``D(z) = W z + c tanh(W z)`` (``c = 0``: linear) and ``E(x) = P x``; ``P = W⁺`` by default."""

    latent_channels = 1
    downscale = 1

    def __init__(self, W: torch.Tensor, P: torch.Tensor | None = None, c: float = 0.0) -> None:
        self.W, self.P, self.c = W, torch.linalg.pinv(W) if P is None else P, c
        self.decodes_with_grad = self.encodes_with_grad = 0

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        self.decodes_with_grad += int(z.requires_grad)
        wz = z.flatten(1) @ self.W.to(z).T
        return (wz + self.c * torch.tanh(wz)).view(z.shape[0], *IMAGE)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self.encodes_with_grad += int(x.requires_grad)
        return (x.flatten(1) @ self.P.to(x).T).view(x.shape[0], *LATENT)


class NoGradEncoder(TinyAutoencoder):
    """Encodes under ``no_grad`` as the ComfyUI VAE does; optionally offers the differentiable one."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return super().encode(x)


class WithDifferentiableEncoder(NoGradEncoder):
    def encode_differentiable(self, x: torch.Tensor) -> torch.Tensor:
        return TinyAutoencoder.encode(self, x)


def random_matrix(rows: int, cols: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def inpainting() -> operators.Inpainting:
    known = torch.zeros(16, dtype=torch.bool)
    known[torch.randperm(16, generator=torch.Generator().manual_seed(3))[:6]] = True
    return operators.Inpainting(known.view(4, 4))


OPERATORS = {
    "inpainting": inpainting,
    "average_pool_sr": lambda: operators.AveragePoolSR(4, 4, 2),
    "gaussian_blur": lambda: operators.GaussianBlur(4, 4, 3, 1.0),
}


def d_z() -> int:
    return math.prod(LATENT)


def d_x() -> int:
    return math.prod(IMAGE)


# --------------------------------------------------------------------------------------------
# Step 5: the whole step against finite differences
# --------------------------------------------------------------------------------------------
def objective_by_hand(denoiser, ae, op, y, z_t, level, omega, gamma):
    """METHOD.md's ``ω Σ e_m + γ Σ e_g`` and ``(ε, ẑ0)``, composed independently of dwgf.psld."""
    s = level.sigma / level.alpha
    x = z_t / level.alpha
    eps = (x - denoiser.denoise(x, torch.full((z_t.shape[0],), s, dtype=z_t.dtype))) / s
    z0 = (z_t - level.sigma * eps) / level.alpha
    image = ae.decode(z0)
    e_m = (y - op.forward(image)).flatten(1).square().sum(1).sqrt()
    glued = op.adjoint(y) + image - op.adjoint(op.forward(image))
    e_g = (ae.encode(glued) - z0).flatten(1).square().sum(1).sqrt()
    return float((omega * e_m + gamma * e_g).sum()), eps, z0


def central_differences(f, z: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    grad = torch.zeros_like(z)
    flat, out = z.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        plus, minus = flat.clone(), flat.clone()
        plus[i] += h
        minus[i] -= h
        out[i] = (f(plus.view_as(z)) - f(minus.view_as(z))) / (2 * h)
    return grad


@pytest.mark.parametrize("name", list(OPERATORS))
def test_step_matches_finite_differences_through_model_decoder_and_encoder(name: str) -> None:
    """z_prev = α_prev ẑ0 + σ_prev ε − ∇(ω e_m + γ e_g), the gradient by central differences in float64."""
    op = OPERATORS[name]()
    denoiser = TanhDenoiser(d_z())
    ae = TinyAutoencoder(random_matrix(d_x(), d_z(), 1), P=random_matrix(d_z(), d_x(), 2) / d_x(), c=0.5)
    y = op.forward(torch.randn(1, *IMAGE, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    level, level_prev = schedule.levels_from_timesteps(sd_alphas_cumprod(), [600, 500])
    omega, gamma = 1.0, 0.1
    z_t = torch.randn(2, *LATENT, generator=torch.Generator().manual_seed(5), dtype=torch.float64)

    problem = psld.PSLDProblem(denoiser, ae, op, y, omega, gamma)
    step = psld.psld_step(problem, z_t, level, level_prev)

    def f(z):
        return objective_by_hand(denoiser, ae, op, y, z, level, omega, gamma)[0]

    grad = central_differences(f, z_t)
    _, eps, z0 = objective_by_hand(denoiser, ae, op, y, z_t, level, omega, gamma)
    expected = level_prev.alpha * z0 + level_prev.sigma * eps - grad
    relative = float((step.gradient - grad).abs().max() / grad.abs().max())
    assert relative < 1e-6, relative
    assert torch.allclose(step.z_prev, expected, rtol=1e-6, atol=1e-9)
    assert step.z_prev.dtype == torch.float64 and not step.z_prev.requires_grad
    # the gluing term and the model's Jacobian both matter here, so a shortcut would fail:
    without_gluing = psld.psld_step(psld.PSLDProblem(denoiser, ae, op, y, omega, 0.0), z_t, level, level_prev)
    assert float((without_gluing.gradient - grad).abs().max() / grad.abs().max()) > 1e-3


def test_norms_are_per_sample_so_samples_do_not_interact() -> None:
    """A batch of 3 gives each sample exactly what it gets alone (a batch-wide norm would not)."""
    op = inpainting()
    y = op.forward(torch.randn(1, *IMAGE, generator=torch.Generator().manual_seed(6)))
    ae = TinyAutoencoder(random_matrix(d_x(), d_z(), 1, torch.float32), c=0.5)
    config = psld.PSLDConfig(particles=3, steps=8, omega=0.5, gamma=0.1)
    start = initial_particles(3, LATENT, 9)
    together = psld.run_psld(TanhDenoiser(d_z(), dtype=torch.float32), ae, config, LATENT, op, y, initial=start)
    alone_config = psld.PSLDConfig(particles=1, steps=8, omega=0.5, gamma=0.1)
    for i in range(3):
        alone = psld.run_psld(TanhDenoiser(d_z(), dtype=torch.float32), ae, alone_config, LATENT, op, y,
                              initial=start[i : i + 1])
        assert torch.allclose(together[i : i + 1], alone, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Step 1: DDIM
# --------------------------------------------------------------------------------------------
def test_step_without_weights_is_the_plain_ddim_update() -> None:
    denoiser = TanhDenoiser(d_z())
    level, level_prev = schedule.levels_from_timesteps(sd_alphas_cumprod(), [700, 650])
    z_t = torch.randn(2, *LATENT, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    op = inpainting()
    problem = psld.PSLDProblem(denoiser, None, op, op.forward(torch.zeros(1, *IMAGE, dtype=torch.float64)), 0.0, 0.0)
    step = psld.psld_step(problem, z_t, level, level_prev)
    _, eps, z0 = objective_by_hand(denoiser, TinyAutoencoder(random_matrix(d_x(), d_z(), 1)), op,
                                   problem.measurement, z_t, level, 0.0, 0.0)
    assert torch.allclose(step.z_prev, level_prev.alpha * z0 + level_prev.sigma * eps, rtol=1e-12, atol=1e-12)
    assert not any(c.keeps_graph for c in denoiser.calls)  # no graph is built for plain DDIM
    assert torch.equal(step.gradient, torch.zeros_like(z_t))


def test_ddim_on_the_gaussian_prior_by_hand() -> None:
    """ᾱ = 0.36 (α 0.6, σ 0.8) → 0.64 (α 0.8, σ 0.6) → 1: factors 0.48 + 0.48 = 0.96, then 0.8."""
    z_T = initial_particles(2, LATENT, 3)
    levels = [NoiseLevel(0.36, 20), NoiseLevel(0.64, 10)]
    seen: list[torch.Tensor] = []
    z = psld.run_psld(GaussianPriorDenoiser(), None, psld.PSLDConfig(particles=2, seed=3), LATENT,
                      levels=levels, callback=lambda k, n, z, info: seen.append(z.clone()))
    assert torch.allclose(seen[0], 0.96 * z_T, atol=1e-6)
    assert torch.allclose(z, 0.768 * z_T, atol=1e-6)


def test_ddim_with_zero_weights_follows_the_closed_form_on_the_sd_schedule() -> None:
    """z_0 = Π_k (α_{k+1} α_k + σ_{k+1} σ_k) z_T over 10 steps 999 → 0 → clean, operator present."""
    op = inpainting()
    y = op.forward(torch.zeros(1, *IMAGE))
    config = psld.PSLDConfig(particles=2, steps=10, omega=0.0, gamma=0.0, seed=11)
    denoiser = GaussianPriorDenoiser()
    z = psld.run_psld(denoiser, None, config, LATENT, op, y)
    levels = psld.psld_levels(denoiser.alphas_cumprod, config)
    assert [lv.timestep for lv in levels] == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    ab = [float(sd_alphas_cumprod()[t]) for t in (999, 888, 777, 666, 555, 444, 333, 222, 111, 0)]
    factor = math.sqrt(ab[-1])  # the last step, to α = 1 and σ = 0, keeps α_0 of the last level
    for a, b in zip(ab, ab[1:], strict=False):
        factor *= math.sqrt(a * b) + math.sqrt((1 - a) * (1 - b))
    assert torch.allclose(z, factor * initial_particles(2, LATENT, 11), rtol=1e-5, atol=1e-6)
    assert len(denoiser.calls) == 10 and not any(c.keeps_graph for c in denoiser.calls)


def test_default_schedule_runs_999_to_0_then_to_clean() -> None:
    levels = psld.psld_levels(sd_alphas_cumprod(), psld.PSLDConfig())
    assert [lv.timestep for lv in levels] == list(range(999, -1, -1))
    pairs = list(psld.transitions(levels[-2:]))
    assert pairs[-1][1] == psld.CLEAN and psld.CLEAN.alpha == 1.0 and psld.CLEAN.sigma == 0.0
    assert [lv.timestep for lv in psld.psld_levels(sd_alphas_cumprod(), psld.PSLDConfig(steps=4))] == [999, 666, 333, 0]


# --------------------------------------------------------------------------------------------
# Steps 3 and 4: the two errors
# --------------------------------------------------------------------------------------------
def linear_case(seed: int = 12):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(d_x(), d_z(), generator=g, dtype=torch.float64)
    z0 = torch.randn(2, *LATENT, generator=g, dtype=torch.float64)
    return TinyAutoencoder(W), W, z0, g


def test_measurement_error_is_the_unsquared_norm_per_sample() -> None:
    ae, W, z0, g = linear_case()
    op = operators.AveragePoolSR(4, 4, 2)
    y = torch.randn(1, 3, 2, 2, generator=g, dtype=torch.float64)
    image = psld.decode(ae, z0)
    expected = torch.stack([torch.sqrt(((y[0] - op.forward((W @ z0[i].flatten()).view(1, *IMAGE))[0]) ** 2).sum())
                            for i in range(2)])
    assert torch.allclose(psld.measurement_error(op, y, image), expected, rtol=1e-12)
    with pytest.raises(DWGFInputError, match="measurement has shape"):
        psld.measurement_error(op, torch.zeros(1, 3, 3, 3, dtype=torch.float64), image)


def test_gluing_error_vanishes_for_a_consistent_measurement_and_is_exact_otherwise() -> None:
    """Inpainting with E = W⁺ (E∘D = I): y = A D(ẑ0) glues back to ẑ0 itself, so e_g = 0; for any
    other y, e_g = ‖W⁺ Aᵀ(y − A W ẑ0)‖ since AᵀA is the mask."""
    ae, W, z0, g = linear_case()
    op = inpainting()
    image = psld.decode(ae, z0)
    consistent = op.forward(image)
    assert float(psld.gluing_error(ae, op, op.adjoint(consistent), image, z0).max()) < 1e-12
    y = torch.randn(1, *consistent.shape[1:], generator=g, dtype=torch.float64)
    e_g = psld.gluing_error(ae, op, op.adjoint(y), image, z0)
    W_pinv = torch.linalg.pinv(W)
    expected = torch.stack([torch.linalg.vector_norm(W_pinv @ op.adjoint(y - op.forward(image[i : i + 1])).flatten())
                            for i in range(2)])
    assert torch.allclose(e_g, expected, rtol=1e-10)
    assert float(e_g.min()) > 0.1


def test_gluing_error_with_the_identity_operator_encodes_the_measurement() -> None:
    """A = I: the glued image is y whatever x̂ is, so e_g = ‖E(y) − ẑ0‖."""
    ae, W, z0, g = linear_case()
    op = operators.Denoising(4, 4)
    y = torch.randn(1, *IMAGE, generator=g, dtype=torch.float64)
    expected = (torch.linalg.pinv(W) @ y.flatten() - z0.flatten(1)).norm(dim=1)
    assert torch.allclose(psld.gluing_error(ae, op, op.adjoint(y), psld.decode(ae, z0), z0), expected, rtol=1e-10)


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
def measured_problem(seed: int = 0):
    op = inpainting()
    W = random_matrix(d_x(), d_z(), seed, torch.float32)
    z_clean = 2.0 * torch.randn(1, *LATENT, generator=torch.Generator().manual_seed(seed + 1))
    y = op.forward((z_clean.flatten(1) @ W.T).view(1, *IMAGE))
    return op, W, y


def final_measurement_error(omega: float, gamma: float, steps: int = 50) -> float:
    op, W, y = measured_problem()
    ae = TinyAutoencoder(W)
    z = psld.run_psld(GaussianPriorDenoiser(), ae, psld.PSLDConfig(particles=4, steps=steps, omega=omega, gamma=gamma),
                      LATENT, op, y)
    return float(psld.measurement_error(op, y, ae.decode(z)).mean())


def test_the_correction_pulls_samples_towards_the_measurement() -> None:
    plain, guided = final_measurement_error(0.0, 0.0), final_measurement_error(0.1, 0.01)
    assert guided < 0.2 * plain, (plain, guided)


def test_each_network_runs_once_per_step_and_the_callback_sees_every_step() -> None:
    op, W, y = measured_problem()
    ae, denoiser = TinyAutoencoder(W), GaussianPriorDenoiser()
    seen: list[tuple[int, int, dict]] = []
    config = psld.PSLDConfig(particles=2, steps=6, omega=0.1, gamma=0.01)
    z = psld.run_psld(denoiser, ae, config, LATENT, op, y, callback=lambda k, n, z, info: seen.append((k, n, info)))
    assert z.shape == (2, *LATENT) and z.dtype == torch.float32 and not z.requires_grad
    assert [c.keeps_graph for c in denoiser.calls] == [True] * 6
    assert (ae.decodes_with_grad, ae.encodes_with_grad) == (6, 6)
    assert [k for k, _, _ in seen] == list(range(6)) and {n for _, n, _ in seen} == {6}
    assert [info["timestep"] for _, _, info in seen] == [999, 799, 599, 400, 200, 0]
    last = seen[-1][2]
    assert last["timestep_prev"] == -1 and last["alpha_bar_prev"] == 1.0
    assert last["loss"] == pytest.approx(0.1 * last["measurement_error"] + 0.01 * last["gluing_error"])
    assert all(isinstance(last[key], float) for key in psld.SUMMARY_NAMES)
    assert last["denoised"].shape == (2, *LATENT)


def test_same_seed_gives_identical_samples() -> None:
    op, W, y = measured_problem()

    def run(seed: int) -> torch.Tensor:
        config = psld.PSLDConfig(particles=2, steps=5, seed=seed)
        return psld.run_psld(TanhDenoiser(d_z(), dtype=torch.float32), TinyAutoencoder(W, c=0.5), config, LATENT, op, y)

    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))


def test_runs_inside_inference_mode() -> None:
    """ComfyUI builds operators and measurements under inference_mode; the gradient still flows."""
    _, W, _ = measured_problem()
    ae = TinyAutoencoder(W)  # the models' own weights are the adapter's business (comfy_adapter)
    with torch.inference_mode():
        for op in (inpainting(), operators.GaussianBlur(4, 4, 3, 1.0), operators.AveragePoolSR(4, 4, 2)):
            y = op.forward(torch.ones(1, *IMAGE))
            z = psld.run_psld(GaussianPriorDenoiser(), ae, psld.PSLDConfig(particles=2, steps=3),
                              LATENT, op, y)
            assert torch.isfinite(z).all() and not z.is_inference(), op.name


@pytest.mark.parametrize("with_callback", [False, True])
def test_nan_stops_the_run_with_the_step_and_cause(with_callback: bool) -> None:
    op, W, y = measured_problem()
    callback = (lambda k, n, z, info: None) if with_callback else None
    with pytest.raises(DWGFRunError, match=r"step 5 of 30 .*denoised.*diffusion model"):
        psld.run_psld(BrokenDenoiser(), TinyAutoencoder(W), psld.PSLDConfig(steps=30), LATENT, op, y,
                      callback=callback)


def test_runaway_weights_are_reported() -> None:
    op, W, y = measured_problem()
    with pytest.raises(DWGFRunError, match="omega or gamma too large"):
        psld.run_psld(GaussianPriorDenoiser(), TinyAutoencoder(W), psld.PSLDConfig(steps=20, omega=1e38),
                      LATENT, op, y)


# --------------------------------------------------------------------------------------------
# Settings, inputs, protocols
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("field", "value", "named"), [
    ("particles", 0, "particles"),
    ("steps", 0, "steps"),
    ("steps", 1001, "steps"),
    ("omega", -1.0, "omega"),
    ("omega", float("nan"), "omega"),
    ("gamma", float("inf"), "gamma"),
    ("seed", 1.5, "seed"),
    ("first_timestep", 0, "first_timestep"),
    ("check_every", 0, "check_every"),
])
def test_bad_settings_name_the_setting(field: str, value: object, named: str) -> None:
    with pytest.raises(DWGFInputError, match=named):
        psld.PSLDConfig(**{field: value})


def test_bad_inputs_are_named() -> None:
    op, W, y = measured_problem()
    denoiser, ae, config = GaussianPriorDenoiser(), TinyAutoencoder(W), psld.PSLDConfig(particles=2, steps=3)
    with pytest.raises(DWGFInputError, match="both the operator and the measurement"):
        psld.run_psld(denoiser, ae, config, LATENT, op, None)
    with pytest.raises(DWGFInputError, match="batch of 1 or of 2"):
        psld.run_psld(denoiser, ae, config, LATENT, op, y.expand(3, -1, -1))
    with pytest.raises(DWGFInputError, match="connect an autoencoder"):
        psld.run_psld(denoiser, None, config, LATENT, op, y)
    with pytest.raises(DWGFInputError, match="initial"):
        psld.run_psld(denoiser, ae, config, LATENT, op, y, initial=torch.zeros(3, *LATENT))


def test_networks_without_gradient_are_refused_and_differentiable_methods_preferred() -> None:
    op, W, y = measured_problem()
    config = psld.PSLDConfig(particles=1, steps=2)
    with pytest.raises(DWGFInputError, match="encode_differentiable"):
        psld.run_psld(GaussianPriorDenoiser(), NoGradEncoder(W), config, LATENT, op, y)
    z = psld.run_psld(GaussianPriorDenoiser(), NoGradEncoder(W), psld.PSLDConfig(steps=2, gamma=0.0), LATENT, op, y)
    assert torch.isfinite(z).all()  # no gluing term, no encoder needed
    reference = psld.run_psld(GaussianPriorDenoiser(), TinyAutoencoder(W), config, LATENT, op, y)
    assert torch.equal(psld.run_psld(GaussianPriorDenoiser(), WithDifferentiableEncoder(W), config, LATENT, op, y),
                       reference)

    class NoGradDenoiser(GaussianPriorDenoiser):
        def denoise(self, x, sigma):
            with torch.no_grad():
                return super().denoise(x, sigma)

    with pytest.raises(DWGFInputError, match="denoise_differentiable"):
        psld.run_psld(NoGradDenoiser(), TinyAutoencoder(W), config, LATENT, op, y)

    class SplitDenoiser(NoGradDenoiser):
        def denoise_differentiable(self, x, sigma):
            return GaussianPriorDenoiser.denoise(self, x, sigma)

    assert torch.equal(psld.run_psld(SplitDenoiser(), TinyAutoencoder(W), config, LATENT, op, y), reference)


def test_reference_weights_follow_the_operator() -> None:
    assert psld.reference_weights(inpainting()) == (0.1, 0.01)
    assert psld.reference_weights(operators.AveragePoolSR(4, 4, 2)) == (1.0, 0.1)
    assert (psld.PSLDConfig().omega, psld.PSLDConfig().gamma, psld.PSLDConfig().steps) == (1.0, 0.1, 1000)


# --------------------------------------------------------------------------------------------
# The measurement-only baseline
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["inpainting", "average_pool_sr"])
def test_measurement_only_estimate_is_the_projected_pseudo_inverse(name: str) -> None:
    """D(E(A† y)) = W W⁺ A† y for a linear VAE; A† is the scatter (inpainting) or nearest upsampling."""
    op = OPERATORS[name]()
    W = random_matrix(d_x(), d_z(), 13)
    y = op.forward(torch.randn(2, *IMAGE, generator=torch.Generator().manual_seed(14), dtype=torch.float64))
    by_hand = op.adjoint(y) if name == "inpainting" else y.repeat_interleave(2, -1).repeat_interleave(2, -2)
    expected = (by_hand.flatten(1) @ (W @ torch.linalg.pinv(W)).T).view(2, *IMAGE)
    estimate = baselines.measurement_only_estimate(TinyAutoencoder(W), op, y)
    assert estimate.dtype == torch.float32 and estimate.shape == (2, *IMAGE)
    assert torch.allclose(estimate.double(), expected, rtol=1e-5, atol=1e-5)
