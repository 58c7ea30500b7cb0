"""What the samplers share: checking a restoration problem against the model and VAE, and the
LATENT layout of particles."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..dwgf.degradation import Degradation
from ..dwgf.errors import require
from ..dwgf.imaging import comfy_image_to_signed
from . import comfy_adapter

PARTICLES_KEY = "dwgf_particles"


@dataclass(frozen=True)
class MeasurementBatch:
    """The measurement images of one sampler call, checked against the operator, model and VAE."""

    degradation: Degradation
    images: torch.Tensor  # (B, 3, h, w) in [-1, 1]
    latent_shape: tuple[int, int, int]

    @classmethod
    def prepare(cls, model: Any, vae: Any, degradation: Degradation, measurement: torch.Tensor) -> MeasurementBatch:
        comfy_adapter.check_diffusion_model(model)
        comfy_adapter.check_vae_matches_model(vae, model)
        images = comfy_image_to_signed(measurement, "measurement")
        operator = degradation.operator
        operator.check_measurement_image(images)
        factor = comfy_adapter.vae_downscale_ratio(vae)
        require(operator.height % factor == 0 and operator.width % factor == 0,
                f"the restored image would be {operator.height}x{operator.width}, which the VAE's downscale "
                f"factor {factor} does not divide: crop or resize the image to a multiple of {factor} "
                f"(e.g. {operator.height - operator.height % factor}x{operator.width - operator.width % factor}) "
                "before the Degradation Operator")
        latent_shape = (comfy_adapter.model_latent_channels(model), operator.height // factor, operator.width // factor)
        return cls(degradation, images, latent_shape)

    def measurements(self) -> Iterator[torch.Tensor]:
        """``y`` of each measurement image in turn, batch 1."""
        for index in range(self.images.shape[0]):
            yield self.degradation.measurement_from_image(self.images[index:index + 1])


def particles_latent(samples: torch.Tensor, particles: int) -> dict[str, Any]:
    """A LATENT whose batch holds ``particles`` consecutive particles per measurement image."""
    return {"samples": samples, PARTICLES_KEY: int(particles)}


def particles_per_image(latent: dict[str, Any]) -> int:
    """How many consecutive latents belong to one image (1 for a LATENT from elsewhere)."""
    count = int(latent.get(PARTICLES_KEY, 1))
    batch = latent["samples"].shape[0]
    require(count >= 1 and batch % count == 0,
            f"particles: the LATENT holds {batch} latents, not a whole number of groups of {count} particles; "
            "connect the sampler's output directly, without batching nodes in between")
    return count


def sample_each_measurement(model: Any, positive: Any, negative: Any, vae: Any, problem: MeasurementBatch,
                            cfg: float, seed: int, levels: list, particles: int, solve: Callable,
                            differentiable_model: bool = False) -> dict[str, Any]:
    """Run a core sampler once per measurement image through ComfyUI; returns the particles LATENT.

    ``solve(denoiser, autoencoder, y, device, callback)`` is the core run (DWGF or PSLD) and returns
    model-space latents; its callback's ``info["denoised"]`` (if any) is what the live preview shows.
    """
    sigmas = torch.tensor([level.k_sigma for level in levels], dtype=torch.float64)
    results = []
    for y in problem.measurements():
        def run(denoiser: Any, device: torch.device, on_step: Callable, y: torch.Tensor = y) -> torch.Tensor:
            autoencoder = comfy_adapter.prepare_vae(vae, model)
            return solve(denoiser, autoencoder, y.to(device), device,
                         lambda k, total, z, info: on_step(k, info.get("denoised", z)))

        results.append(comfy_adapter.sample_with_comfyui(
            model, positive, negative, cfg, sigmas, (particles, *problem.latent_shape), seed, run,
            differentiable_model=differentiable_model))
    return particles_latent(torch.cat(results), particles)
