"""Node "Particle Decode": every particle as an image, their mean, and where they disagree."""

from __future__ import annotations

from typing import Any

import torch

from ..dwgf.degradation import Degradation
from ..dwgf.errors import require
from ..dwgf.operators import Inpainting
from . import comfy_adapter
from .common import CATEGORY, DEGRADATION_TYPE
from .out_of_memory import DecodeShape, explain_out_of_memory
from .restoration import check_vae_of_particles, crop_to_image_size
from .restoration import particles_per_image as particles_in_latent


def paste_measured_pixels(images: torch.Tensor, degradation: Degradation, measurement: torch.Tensor,
                       particles: int) -> torch.Tensor:
    """Put the exactly measured pixels of an inpainting problem back (ComfyUI IMAGE layout)."""
    if not isinstance(degradation.operator, Inpainting):
        return images
    require(images.shape[0] == measurement.shape[0] * particles,
            f"measurement has {measurement.shape[0]} images but the particles belong to "
            f"{images.shape[0] // particles}: connect the measurement the sampler used")
    require(tuple(measurement.shape[1:3]) == tuple(images.shape[1:3]),
            f"measurement is {measurement.shape[1]}x{measurement.shape[2]} but the particles decode to "
            f"{images.shape[1]}x{images.shape[2]}: connect the measurement the sampler used")
    known = torch.stack([degradation.operator_for(i).known for i in range(measurement.shape[0])])
    known = known.to(images.device)[..., None].float().repeat_interleave(particles, dim=0)
    source = measurement[..., :3].to(images).repeat_interleave(particles, dim=0)
    return known * source + (1 - known) * images


NORMALISED = "normalised (brightest pixel = white)"
ABSOLUTE = "absolute (standard deviation, image units)"
SPREAD_SCALES = (NORMALISED, ABSOLUTE)


def particle_statistics(images: torch.Tensor, particles: int,
                        scale: str = NORMALISED) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean of its particles, and their per-pixel spread (standard deviation across
    particles, averaged over channels): normalised to [0, 1] per image, or ``ABSOLUTE`` in the
    image's own [0, 1] units, so maps of different runs can be compared."""
    require(scale in SPREAD_SCALES, f"spread_scale must be one of {list(SPREAD_SCALES)}, got {scale!r}")
    grouped = images.view(-1, particles, *images.shape[1:])
    mean = grouped.mean(1)
    spread = grouped.std(1, unbiased=False).mean(-1, keepdim=True) if particles > 1 else torch.zeros_like(mean[..., :1])
    if scale == NORMALISED:
        spread = spread / spread.flatten(1).amax(1).clamp_min(1e-8).view(-1, 1, 1, 1)
    return mean, spread.clamp(0, 1).expand(*spread.shape[:-1], 3).contiguous()


class ParticleDecode:
    """Decodes DWGF/PSLD particles: all of them, their mean, and a spread (uncertainty) map."""

    DESCRIPTION = (
        "Decodes the particles of a DWGF or PSLD Sampler with the VAE. Outputs every particle, the "
        "per-image particle mean, and a per-pixel spread map (standard deviation across particles, "
        "scaled so the largest value is white): where the posterior is uncertain. For inpainting it "
        "can paste the measured pixels back exactly."
    )
    CATEGORY = CATEGORY
    FUNCTION = "decode"
    RETURN_TYPES = ("IMAGE", "IMAGE", "IMAGE")
    RETURN_NAMES = ("particles", "mean", "spread")
    OUTPUT_TOOLTIPS = (
        "Every particle as an image (image-major: all particles of the first measurement, then the next).",
        "The mean of each image's particles.",
        "Per-pixel standard deviation across particles: scaled to [0, 1] per image (white = most uncertain), "
        "or in image units with spread_scale 'absolute'.",
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "particles": ("LATENT", {"tooltip": "The LATENT output of a DWGF or PSLD Sampler."}),
                "vae": ("VAE", {"tooltip": "The VAE the sampler used."}),
                "paste_known_pixels": ("BOOLEAN", {"default": False, "tooltip":
                                       "Inpainting only: replace the measured pixels by the measurement "
                                       "(needs degradation and measurement). Other operators are unchanged."}),
            },
            "optional": {
                "degradation": (DEGRADATION_TYPE, {"tooltip": "The degradation the sampler used (for pasting)."}),
                "measurement": ("IMAGE", {"tooltip": "The measurement the sampler used (for pasting)."}),
                "particles_per_image": ("INT", {"default": 0, "min": 0, "max": 64, "tooltip":
                                        "0 = as the DWGF/PSLD Sampler recorded it (any other value must agree "
                                        "with that record). For a LATENT from SamplerCustom with the DWGF custom "
                                        "SAMPLER, which records nothing: the batch size of its empty latent."}),
                "spread_scale": (list(SPREAD_SCALES), {"default": NORMALISED, "tooltip":
                                 "How the spread map is scaled: normalised per image (the brightest pixel white: "
                                 "shows where, not how much), or absolute: the standard deviation in image units "
                                 "(0-1), the same scale for every run, so maps can be compared."}),
            },
        }

    def decode(self, particles: dict[str, Any], vae: Any, paste_known_pixels: bool,
               degradation: Degradation | None = None,
               measurement: torch.Tensor | None = None,
               particles_per_image: int = 0,
               spread_scale: str = NORMALISED) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        count = particles_in_latent(particles, particles_per_image)
        check_vae_of_particles(particles, vae)
        samples, factor = particles["samples"], comfy_adapter.vae_downscale_ratio(vae)
        shape = DecodeShape(samples.shape[-2] * factor, samples.shape[-1] * factor, samples.shape[0], samples.device)
        with explain_out_of_memory(shape):
            images = crop_to_image_size(comfy_adapter.decode_latents(vae, samples), particles)
        if paste_known_pixels:
            require(degradation is not None and measurement is not None,
                    "paste_known_pixels needs the degradation and the measurement inputs connected")
            images = paste_measured_pixels(images, degradation, measurement, count)
        mean, spread = particle_statistics(images, count, spread_scale)
        return images, mean, spread


NODE_CLASS_MAPPINGS = {"DWGF_ParticleDecode": ParticleDecode}
NODE_DISPLAY_NAME_MAPPINGS = {"DWGF_ParticleDecode": "Particle Decode"}
