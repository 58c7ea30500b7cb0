"""PSLD: posterior sampling with latent diffusion (Rout et al. 2023), as METHOD.md states it.

Deterministic DDIM (η = 0) with a gradient correction. Each step ``t → t_prev`` has its terms in
functions named after METHOD.md's numbered steps:

1. :func:`predict_noise`      — ``ε = UNet(z_t, t)`` and ``ẑ0 = (z_t − σ_t ε)/α_t``, with gradient;
   :func:`ddim_step`          — the plain DDIM step ``z' = α_prev ẑ0 + σ_prev ε`` (detached)
2. :func:`decode`             — ``x̂ = D(ẑ0)``, differentiable
3. :func:`measurement_error`  — ``e_m = ‖y − A(x̂)‖₂`` per sample (a norm, not squared)
4. :func:`glued_image` and :func:`gluing_error` — ``e_g = ‖E(Aᵀy + (I − AᵀA) x̂) − ẑ0‖₂`` per sample
5. :func:`psld_step`          — ``z_{t_prev} = z' − ∇_{z_t}(ω e_m + γ e_g)``, the gradient running
   through the UNet, the decoder and the encoder;
   :func:`run_psld`           — the loop over the timesteps.

Schedule convention: ``steps`` timesteps spread evenly from 999 down to 0 (1000 steps visit every
one, the reference). Each step goes to the next timestep of the list; the last goes to
``t_prev = −1``, read as ``ᾱ_prev = 1`` (``α_prev = 1``, ``σ_prev = 0``), so the output is the
final clean latent ``ẑ0`` minus its last correction.

The ``N`` samples (particles) are independent: the norms are taken per sample and the gradient of
their sum is each sample's own gradient. The latents stay float32 whatever the model's dtype, so
the errors and gradients are float32 too (float64 when the caller passes float64 latents).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import torch

from .errors import DWGFInputError, require, require_finite, require_whole
from .operators import Inpainting
from .protocols import Autoencoder, Denoiser
from .run_inputs import (
    device_for_run,
    latent_shape_for_run,
    measurement_for_run,
    operator_for_run,
    starting_particles,
)
from .sampling import StepCallback, Terms, k_diffusion_noise, measure, run_steps
from .schedule import NoiseLevel, evenly_spaced_timesteps, levels_from_timesteps, require_timestep_sweep

PSLD_FIRST_TIMESTEP = 999
PSLD_LAST_TIMESTEP = 0
CLEAN = NoiseLevel(1.0, timestep=-1)
"""The level after the last step: ``t_prev = −1``, ``ᾱ_prev = 1`` (no noise left)."""

INPAINTING_WEIGHTS: tuple[float, float] = (0.1, 0.01)
"""METHOD.md's ``(ω, γ)`` for box inpainting."""
RESTORATION_WEIGHTS: tuple[float, float] = (1.0, 0.1)
"""METHOD.md's ``(ω, γ)`` for super-resolution and deblurring."""


def reference_weights(operator: object) -> tuple[float, float]:
    """The reference ``(ω, γ)`` for an operator: inpainting's, else super-resolution/deblurring's."""
    return INPAINTING_WEIGHTS if isinstance(operator, Inpainting) else RESTORATION_WEIGHTS


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PSLDConfig:
    """PSLD's settings; the defaults are METHOD.md's reference (1000 DDIM steps, ω = 1, γ = 0.1).

    ``particles`` independent samples share one run (a batch); ``omega`` (ω) weighs the measurement
    error and ``gamma`` (γ) the gluing error — both 0 is plain DDIM. ``check_every`` is how often
    (in steps) the run looks for NaN when no callback is attached; looking costs a synchronisation.
    """

    particles: int = 1
    steps: int = 1000
    omega: float = RESTORATION_WEIGHTS[0]
    gamma: float = RESTORATION_WEIGHTS[1]
    seed: int = 0
    first_timestep: int = PSLD_FIRST_TIMESTEP
    last_timestep: int = PSLD_LAST_TIMESTEP
    check_every: int = 50

    def __post_init__(self) -> None:
        require_whole(self.particles, "particles", 1, "use at least 1 sample")
        require_whole(self.steps, "steps", 1, "use at least 1 step (the reference uses 1000)")
        require_finite(self.omega, "omega",
                       fix="use a weight >= 0 (reference: 1 for super-resolution and deblurring, "
                           "0.1 for box inpainting)")
        require_finite(self.gamma, "gamma",
                       fix="use a weight >= 0 (reference: 0.1 for super-resolution and deblurring, 0.01 for box "
                           "inpainting; 0 switches the gluing term off)")
        require(isinstance(self.seed, int), f"seed must be a whole number, got {self.seed!r}")
        require_timestep_sweep(self.steps, self.first_timestep, self.last_timestep, reference_last=0)
        require_whole(self.check_every, "check_every", 1, "check for NaN at least every 1 step")


# --------------------------------------------------------------------------------------------
# The problem one run works on
# --------------------------------------------------------------------------------------------
class Projecting(Protocol):
    """What PSLD needs from an operator: ``A`` (measured elements only) and its exact adjoint ``Aᵀ``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor: ...

    def adjoint(self, y: torch.Tensor) -> torch.Tensor: ...


@dataclass
class PSLDProblem:
    """The models, the measurement and the two weights; ``Aᵀy`` is computed once here.

    With no operator (or ``ω = γ = 0``) there is nothing to correct and each step is plain DDIM.
    """

    denoiser: Denoiser
    autoencoder: Autoencoder | None
    operator: Projecting | None
    measurement: torch.Tensor | None
    omega: float
    gamma: float
    measurement_adjoint: torch.Tensor | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.guided and self.gamma > 0:
            self.measurement_adjoint = self.operator.adjoint(self.measurement)

    @property
    def guided(self) -> bool:
        """Whether the gradient correction runs at all."""
        return self.operator is not None and (self.omega > 0 or self.gamma > 0)


# --------------------------------------------------------------------------------------------
# The terms of one step (METHOD.md, PSLD steps 1–4)
# --------------------------------------------------------------------------------------------
def predict_noise(denoiser: Denoiser, z_t: torch.Tensor, level: NoiseLevel,
                  differentiable: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 1: ``(ε, ẑ0)`` by the k-diffusion route (:func:`dwgf.sampling.k_diffusion_noise`), with
    gradient when ``differentiable``. ``(z_t − σ ε)/α`` is exactly the denoiser's ``ẑ0``, which is
    returned as it is (no rounding from the cancellation at high noise)."""
    return k_diffusion_noise(functools.partial(_denoise, denoiser, differentiable=differentiable), z_t, level)


def _denoise(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, differentiable: bool) -> torch.Tensor:
    if not differentiable:
        with torch.no_grad():
            return denoiser.denoise(x, sigmas)
    method = getattr(denoiser, "denoise_differentiable", None) or denoiser.denoise
    denoised = method(x, sigmas)
    if x.requires_grad and not denoised.requires_grad:
        raise DWGFInputError(
            "the diffusion model returned ẑ0 without a gradient: PSLD back-propagates through the model, so "
            "its denoiser must keep the autograd graph (give it a denoise_differentiable method; see "
            "dwgf/protocols.py)")
    return denoised


def ddim_step(denoised: torch.Tensor, eps: torch.Tensor, level_prev: NoiseLevel) -> torch.Tensor:
    """Step 1, the plain DDIM (η = 0) step: ``z' = α_prev ẑ0 + σ_prev ε``.

    Callers pass detached tensors: the update itself builds no graph.
    """
    return level_prev.alpha * denoised + level_prev.sigma * eps


def decode(autoencoder: Autoencoder, denoised: torch.Tensor) -> torch.Tensor:
    """Step 2: ``x̂ = D(ẑ0)``, differentiable, in the latents' dtype (float32 in a run)."""
    return autoencoder.decode(denoised).to(denoised.dtype)


def measurement_error(operator: Projecting, measurement: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Step 3: ``e_m = ‖y − A(x̂)‖₂`` per sample, shape ``(N,)`` — a norm, not squared.

    ``y`` of batch 1 is shared by all samples; ``A`` returns only the measured elements.
    """
    predicted = measure(operator, measurement, image)
    residual = measurement.to(predicted.dtype) - predicted
    return torch.linalg.vector_norm(residual.expand_as(predicted).flatten(1), dim=1)


def glued_image(operator: Projecting, measurement_adjoint: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Step 4, the image part: ``Aᵀy + (I − AᵀA) x̂`` — the measurement pasted over ``x̂``.

    For inpainting ``AᵀA`` is the mask and this is the known pixels in place; for other operators
    it is METHOD.md's approximation, since ``AᵀA`` is then not a projection.
    """
    return measurement_adjoint.to(image.dtype) + image - operator.adjoint(operator.forward(image))


def encode(autoencoder: Autoencoder, image: torch.Tensor) -> torch.Tensor:
    """``E(x)`` with gradient: ``encode_differentiable`` when the autoencoder has one (see protocols)."""
    method = getattr(autoencoder, "encode_differentiable", None) or autoencoder.encode
    latent = method(image)
    if image.requires_grad and not latent.requires_grad:
        raise DWGFInputError(
            "the VAE encoder returned a latent without a gradient: PSLD's gluing term back-propagates through "
            "the encoder (give the autoencoder an encode_differentiable method; see dwgf/protocols.py), or set "
            "gamma to 0")
    return latent.to(image.dtype)


def gluing_error(autoencoder: Autoencoder, operator: Projecting, measurement_adjoint: torch.Tensor,
                 image: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """Step 4: ``e_g = ‖E(Aᵀy + (I − AᵀA) x̂) − ẑ0‖₂`` per sample, shape ``(N,)``.

    Zero when ``ẑ0`` is a fixed point of encode ∘ (measurement-projected decode): the term glues
    the measured and the generated parts of the image into one latent.
    """
    latent = encode(autoencoder, glued_image(operator, measurement_adjoint, image))
    return torch.linalg.vector_norm((latent - denoised).flatten(1), dim=1)


# --------------------------------------------------------------------------------------------
# One step (step 5) and the loop
# --------------------------------------------------------------------------------------------
class StepResult(NamedTuple):
    """One step's outcome, all detached: the new latents and what made them.

    ``measurement_error`` and ``gluing_error`` are per sample ``(N,)``, zero where not computed
    (no operator, or a zero weight); ``gradient`` is ``∇_{z_t}(ω e_m + γ e_g)``.
    """

    z_prev: torch.Tensor
    denoised: torch.Tensor
    measurement_error: torch.Tensor
    gluing_error: torch.Tensor
    gradient: torch.Tensor


def psld_step(problem: PSLDProblem, z_t: torch.Tensor, level: NoiseLevel, level_prev: NoiseLevel) -> StepResult:
    """Step 5: ``z_{t_prev} = z' − ∇_{z_t}(ω Σ e_m + γ Σ e_g)``.

    The sum over samples gives each sample its own gradient (they never interact). One graph spans
    UNet → decoder → encoder and is freed as soon as the gradient is taken.
    """
    z_t = z_t.detach()
    zeros = z_t.new_zeros(z_t.shape[0])
    if not problem.guided:
        eps, denoised = predict_noise(problem.denoiser, z_t, level, differentiable=False)
        return StepResult(ddim_step(denoised, eps, level_prev), denoised, zeros, zeros, torch.zeros_like(z_t))

    z_t.requires_grad_(True)
    eps, denoised = predict_noise(problem.denoiser, z_t, level)
    z_ddim = ddim_step(denoised.detach(), eps.detach(), level_prev)
    image = decode(problem.autoencoder, denoised)
    e_m = measurement_error(problem.operator, problem.measurement, image)
    e_g = (gluing_error(problem.autoencoder, problem.operator, problem.measurement_adjoint, image, denoised)
           if problem.gamma > 0 else zeros)
    objective = (problem.omega * e_m + problem.gamma * e_g).sum()
    (gradient,) = torch.autograd.grad(objective, z_t)
    return StepResult(z_ddim - gradient, denoised.detach(), e_m.detach(), e_g.detach(), gradient)


def transitions(levels: Sequence[NoiseLevel]) -> Iterator[tuple[NoiseLevel, NoiseLevel]]:
    """``(level, level_prev)`` pairs: each level to the next, the last to :data:`CLEAN`."""
    levels = list(levels)
    yield from zip(levels, [*levels[1:], CLEAN], strict=True)


def psld_levels(alphas_cumprod: torch.Tensor, config: PSLDConfig) -> list[NoiseLevel]:
    """``config.steps`` timesteps spread evenly from ``first_timestep`` down to ``last_timestep``."""
    timesteps = evenly_spaced_timesteps(config.steps, config.first_timestep, config.last_timestep)
    return levels_from_timesteps(alphas_cumprod, timesteps)


SUMMARY_NAMES: tuple[str, ...] = ("denoised_abs_mean", "measurement_error", "gluing_error", "gradient_norm")


def _summary(step: StepResult) -> torch.Tensor:
    """Per-step means over the samples, one float32 row (no synchronisation)."""
    return torch.stack((step.denoised.abs().mean(), step.measurement_error.mean(), step.gluing_error.mean(),
                        torch.linalg.vector_norm(step.gradient.flatten(1), dim=1).mean())).float()


def run_psld(
    denoiser: Denoiser,
    autoencoder: Autoencoder | None,
    config: PSLDConfig,
    latent_shape: Sequence[int],
    operator: Projecting | None = None,
    measurement: torch.Tensor | None = None,
    *,
    levels: Sequence[NoiseLevel] | None = None,
    callback: StepCallback | None = None,
    device: torch.device | str | None = None,
    initial: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run PSLD and return the clean latents ``(N, *latent_shape)``, float32, detached.

    ``latent_shape`` is one sample's shape; decode the result with :func:`dwgf.flow.decode_particles`.
    ``operator`` and ``measurement`` (batch 1 or ``N``) give the correction; leave both out for plain
    DDIM. ``levels`` overrides the visited noise levels (default: :func:`psld_levels`); the last
    always steps to ``ᾱ = 1``. ``initial`` overrides the seeded ``z_T ~ N(0, I)``. ``callback``
    (:class:`dwgf.sampling.StepCallback`) gets ``z_{t_prev}`` and, besides the means over samples
    of :data:`SUMMARY_NAMES` and ``loss`` (= ω e_m + γ e_g), ``timestep_prev``, ``alpha_bar_prev``
    and ``denoised``, this step's ``ẑ0`` tensor, for previews.
    """
    shape = latent_shape_for_run(latent_shape, "sample")
    require((operator is None) == (measurement is None),
            "give both the operator and the measurement for the correction, or neither for plain DDIM")
    require(autoencoder is not None or operator is None or (config.omega == 0 and config.gamma == 0),
            "PSLD's correction decodes (and encodes) through the VAE: connect an autoencoder")
    device = device_for_run(device, measurement)
    levels = list(levels) if levels is not None else psld_levels(denoiser.alphas_cumprod, config)
    require(len(levels) > 0, "the noise schedule is empty: use at least 1 step")

    terms = Terms("PSLD", SUMMARY_NAMES, (0.0, config.omega, config.gamma, 0.0), _CAUSES, "the latents",
                  "the correction step overflowed: omega or gamma too large",
                  f"Try a lower omega (now {config.omega}) or gamma (now {config.gamma})", first_only=True)
    steps = _steps(denoiser, autoencoder, config, operator, measurement, levels, device, initial, shape)
    return run_steps(steps, levels, terms, config.check_every, callback, device)


def _steps(denoiser: Denoiser, autoencoder: Autoencoder | None, config: PSLDConfig, operator: Projecting | None,
           measurement: torch.Tensor | None, levels: list[NoiseLevel], device: torch.device,
           initial: torch.Tensor | None, shape: tuple[int, ...]) -> Iterator:
    """Step 5 at every level; yields ``(z_{t_prev}, summary, info)``."""
    n = config.particles
    problem = PSLDProblem(denoiser, autoencoder, operator_for_run(operator, device),
                          measurement_for_run(measurement, n, device), float(config.omega), float(config.gamma))
    z = starting_particles(initial, n, shape, config.seed, device)
    for level, level_prev in transitions(levels):
        step = psld_step(problem, z, level, level_prev)
        z = step.z_prev
        yield z, _summary(step), {"timestep": level.timestep, "timestep_prev": level_prev.timestep,
                                  "alpha_bar": level.alpha_bar, "alpha_bar_prev": level_prev.alpha_bar,
                                  "denoised": step.denoised}


_CAUSES = {  # the likely cause of a divergence, by the first term that went bad (terms in causal order)
    "denoised_abs_mean": "the diffusion model returned NaN or infinite values (a float16 model can overflow; "
                         "try another precision)",
    "measurement_error": "the decoder: the VAE overflowed decoding ẑ0 (a float16 VAE often does; try a float32 "
                         "or bfloat16 VAE)",
    "gluing_error": "the encoder: the VAE overflowed encoding the glued image (a float16 VAE often does)",
    "gradient_norm": "the gradient through the model and the VAE overflowed: omega or gamma too large",
}
