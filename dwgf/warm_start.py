"""A warm start for DWGF (issue 15; not in METHOD.md): begin from the measurement instead of noise.

METHOD.md starts the particles at ``N(0, I)`` and sweeps the whole diffusion range, t = 999 … 2.
Most of a restoration is already in the measurement, so — like a KSampler's ``denoise`` — a warm
start begins the particles at the encoded pseudo-inverse ``E(A†y)`` plus a little noise, and the
sweep at a lower diffusion time: ``denoise`` = 1 is the reference's cold start, 0.5 starts at
t ≈ 500 and spends all iterations below it.
"""

from __future__ import annotations

from typing import Any

import torch

from .errors import require, require_finite
from .latent_data import image_known_mask, mean_colour_fill
from .particles import initial_particles
from .protocols import Autoencoder
from .schedule import REFERENCE_FIRST_TIMESTEP

WARM_SPREAD = 0.5  # std of the particles' starting noise around E(A†y), in latent units


def start_timestep(denoise: float, last: int, steps: int, first: int = REFERENCE_FIRST_TIMESTEP) -> int:
    """The sweep's first timestep for a ``denoise`` in (0, 1]: ``last + round(denoise · (first − last))``,
    raised where needed so ``steps`` distinct timesteps still fit above ``last``."""
    require_finite(denoise, "denoise", positive=True, fix="use a value in (0, 1]; 1 is the reference's cold start")
    require(denoise <= 1.0, f"denoise must be at most 1 (the whole sweep), got {denoise}")
    return max(last + round(denoise * (first - last)), last + steps - 1)


@torch.no_grad()
def warm_start_particles(autoencoder: Autoencoder, operator: Any, measurement: torch.Tensor, particles: int,
                         seed: int, spread: float = WARM_SPREAD) -> torch.Tensor:
    """``E(A†y) + spread · N(0, I)``: ``particles`` consecutive starting latents per measurement
    (batch ``G`` measurements → ``G · particles``), float32 on the measurement's device.

    The noise is the seeded start of :func:`dwgf.particles.initial_particles`, so the particles
    differ and a seed gives the same start everywhere. ``A†y`` is clamped to the image range the
    encoder was trained on; for inpainting its hole (mid-grey in ``A†y``) is first filled with the
    known pixels' mean colour, as a user pre-fills a hole (issue 25: the grey start cost the warm
    start about 1 dB on box inpainting and left dark fills).
    """
    require_finite(spread, "spread", fix="use a standard deviation >= 0")
    image = operator.pseudo_inverse(measurement.float()).clamp(-1.0, 1.0)
    known = image_known_mask(operator)
    if known is not None:
        image = mean_colour_fill(image, known.to(image))
    encoded = autoencoder.encode(image).float()
    start = encoded.repeat_interleave(particles, dim=0)
    noise = initial_particles(start.shape[0], tuple(start.shape[1:]), seed, start.device)
    return start + spread * noise
