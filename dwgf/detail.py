"""The ``detail`` finish (issue 26; not in METHOD.md): sharp samples that still agree with ``y``.

DWGF is mode-seeking: its particles are sharp in PSNR and soft to the eye, and their mean is softer
still. The finish re-noises each final particle to a low diffusion time ``t_d`` and walks back to
``t = 0`` with ancestral (DDPM, DDIM η = 1) steps of the diffusion model; at every step the
denoised estimate ``ẑ0`` takes ``guidance_steps`` Adam steps down the data term
``mean((y − A(D(ẑ0)))²) / 2`` through the decoder (DWGF's own term); a final ``polish_steps``
small Adam steps bring the result back to the measurement:

    z_t = α_d z + σ_d ξ;   for each level:  ẑ0 = guide(denoise(z_t));
    z_{t'} = α' ẑ0 + sqrt(σ'² − c²) ε + c ξ',   c = sqrt(σ'²/σ² · (1 − ᾱ/ᾱ')),   ε = (z_t − α ẑ0) / σ;
    the last level's ``ẑ0``, polished, is the particle.

Where the detail comes from, measured on the demo model (README, "Detail"): **not** from the prior
alone — with the data steps off (``guidance_steps`` 0, the prior around each particle, like a stock
KSampler at low denoise) the demo model's particles come out *blurrier*, because its denoiser
smooths at every noise level. It comes from the data steps being Adam steps: an Adam step moves
every latent element by about its learning rate, in the direction of its gradient's sign, however
small that gradient is — a perturbation at a set scale, shaped by the measurement's residual, that
the decoder renders as texture and the next diffusion step tidies. ``amount`` (the node's
``detail``) is that learning rate: the size of the detail. It raises the particles' high-frequency
power and brings the distribution of their 7×7 detail patches several times closer to that of
clean photographs, at a cost in the particles' PSNR; the mean of the particles stays close to the
plain run's. ``amount`` 0 skips the finish entirely: a run with ``detail = 0`` is exactly the run
without it. Each particle gets its own noise, so the particles of one measurement differ in detail.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .errors import require, require_finite, require_whole
from .particles import NoiseSource
from .protocols import Autoencoder, Denoiser
from .run_inputs import measurement_for_run, operator_for_run
from .sampling import k_diffusion_noise, measure
from .schedule import NoiseLevel, levels_from_timesteps

# Chosen on the demo model's settings crops 0–6 (box inpainting, ×4 bicubic and ×8 SR; README, "Detail"):
# t_d from 100 to 250 changed little; 2 data steps per level and 10 polishing steps of lr 0.02 (20 of 0.01
# the same) kept the residual at or below the plain run's at amount 0.2
START_TIMESTEP = 175
DEFAULT_STEPS = 10
DEFAULT_GUIDANCE_STEPS = 2
DEFAULT_POLISH_STEPS = 10
DEFAULT_POLISH_LR = 0.02
MAX_AMOUNT = 1.0


@dataclass(frozen=True)
class DetailSettings:
    """The finish: ``amount`` (the data steps' Adam learning rate; 0 = off), ``steps`` ancestral steps
    from ``start_timestep`` to 0 with ``guidance_steps`` data steps each (0 = unguided: the prior
    alone), then ``polish_steps`` data steps of learning rate ``polish_lr``."""

    amount: float = 0.0
    start_timestep: int = START_TIMESTEP
    steps: int = DEFAULT_STEPS
    guidance_steps: int = DEFAULT_GUIDANCE_STEPS
    polish_steps: int = DEFAULT_POLISH_STEPS
    polish_lr: float = DEFAULT_POLISH_LR

    def __post_init__(self) -> None:
        require_finite(self.amount, "detail", fix=f"use a value from 0 (off) to {MAX_AMOUNT:g}")
        require(0.0 <= self.amount <= MAX_AMOUNT,
                f"detail must lie between 0 (off) and {MAX_AMOUNT:g}, got {self.amount}: about 0.2 suits "
                "inpainting and 0.5 super-resolution on the demo model (README, 'Detail')")
        require_whole(self.start_timestep, "detail_start_timestep", 1, "use a positive timestep (default 175)")
        require_whole(self.steps, "detail_steps", 1, "use at least 1 step of the finish")
        require_whole(self.guidance_steps, "detail_guidance_steps", 0,
                      "use 0 (unguided) or more data steps per finishing step")
        require_whole(self.polish_steps, "detail_polish_steps", 0, "use 0 or more final data steps")
        require_finite(self.polish_lr, "detail_polish_lr", positive=True,
                       fix="use a positive learning rate for the final data steps")

    @property
    def active(self) -> bool:
        return self.amount > 0.0


def finish_levels(alphas_cumprod: torch.Tensor, settings: DetailSettings) -> list[NoiseLevel]:
    """The finish's noise levels: ``settings.steps`` distinct timesteps from ``t_d`` down to 0 (fewer
    when ``t_d`` is small)."""
    first = min(settings.start_timestep, alphas_cumprod.numel() - 1)
    count = min(settings.steps, first + 1)
    timesteps = sorted({round(first * (1.0 - k / max(count - 1, 1))) for k in range(count)}, reverse=True)
    return levels_from_timesteps(alphas_cumprod, timesteps)


Decode = Callable[[torch.Tensor], torch.Tensor]


def guide(z0: torch.Tensor, decode: Decode, operator: object, measurement: torch.Tensor, steps: int, lr: float,
          chunk: int = 0) -> torch.Tensor:
    """``steps`` Adam steps of ``z0`` down the data term through ``decode`` (no prior: the diffusion
    steps around it are the prior). Each particle's step is its own (Adam is elementwise). The
    decoder sees ``chunk`` particles at a time (0 = all), as the flow's ``memory`` setting says, and
    each chunk's graph is freed by its own backward: the same gradient in pieces."""
    if steps == 0 or operator is None:
        return z0
    z = z0.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    total = z.shape[0]
    size = total if chunk <= 0 else min(chunk, total)
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            for start in range(0, total, size):
                stop = min(start + size, total)
                y = measurement if measurement.shape[0] == 1 else measurement[start:stop]
                predicted = measure(operator, y, decode(z[start:stop]).to(torch.float32))
                loss = 0.5 * (y - predicted.float()).square().mean() * ((stop - start) / total)
                torch.autograd.backward(loss, inputs=[z])
            optimizer.step()
    return z.detach()


@torch.no_grad()
def ancestral_step(z_t: torch.Tensor, z0: torch.Tensor, level: NoiseLevel, after: NoiseLevel,
                   noise: NoiseSource) -> torch.Tensor:
    """DDIM with η = 1 from ``level`` to the lower noise ``after``, around the estimate ``z0``."""
    eps = (z_t - level.alpha * z0) / level.sigma
    spread = math.sqrt(max(after.sigma**2 / level.sigma**2 * (1.0 - level.alpha_bar / after.alpha_bar), 0.0))
    keep = math.sqrt(max(after.sigma**2 - spread**2, 0.0))
    return after.alpha * z0 + keep * eps + spread * noise.normal(z0.shape)


def add_detail(denoiser: Denoiser, autoencoder: Autoencoder | None, z: torch.Tensor, settings: DetailSettings,
               seed: int, operator: object | None = None, measurement: torch.Tensor | None = None,
               levels: Sequence[NoiseLevel] | None = None, chunk: int = 0,
               decode: Decode | None = None) -> torch.Tensor:
    """The finish on final particles ``z`` (any batch; ``measurement`` of batch 1 or one per particle);
    returns new particles, detached. ``settings.amount`` 0 returns ``z`` itself. ``chunk`` and
    ``decode`` (default ``autoencoder.decode``; DWGF passes its checkpointed decode in its least-memory
    mode) keep the data steps within the flow's memory."""
    if not settings.active:
        return z
    levels = list(levels) if levels is not None else finish_levels(denoiser.alphas_cumprod, settings)
    with torch.inference_mode(False):  # ComfyUI runs nodes in inference mode; the data steps need a graph
        if operator is not None:
            operator = operator_for_run(operator, z.device)
            measurement = measurement_for_run(measurement, z.shape[0], z.device)
        decode = decode if decode is not None else (autoencoder.decode if autoencoder is not None else None)
        return _finish(denoiser, decode, z, settings, seed, operator, measurement, levels, chunk)


def _finish(denoiser: Denoiser, decode: Decode | None, z: torch.Tensor, settings: DetailSettings, seed: int,
            operator: object | None, measurement: torch.Tensor | None, levels: list[NoiseLevel],
            chunk: int) -> torch.Tensor:
    noise = NoiseSource(int(seed) + 0xDE7A11, z.device)
    with torch.no_grad():
        z_t = levels[0].alpha * z.detach().float() + levels[0].sigma * noise.normal(z.shape)
    z0 = z_t
    for index, level in enumerate(levels):
        with torch.no_grad():
            z0 = k_diffusion_noise(denoiser.denoise, z_t, level)[1].float()
        z0 = guide(z0, decode, operator, measurement, settings.guidance_steps, settings.amount, chunk)
        if index + 1 < len(levels):
            z_t = ancestral_step(z_t, z0, level, levels[index + 1], noise)
    return guide(z0, decode, operator, measurement, settings.polish_steps, settings.polish_lr, chunk)
