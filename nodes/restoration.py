"""What the samplers share: checking a restoration problem against the model and VAE, and the
LATENT layout of particles."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..dwgf.degradation import Degradation
from ..dwgf.errors import DWGFInputError, require
from ..dwgf.imaging import bhwc_unit_to_bchw_signed
from ..dwgf.operators import on_canvas
from . import comfy_adapter
from .memory_guard import RunMemory, check_run_memory
from .out_of_memory import RunShape, explain_out_of_memory


@dataclass(frozen=True)
class MeasurementBatch:
    """The measurement images of one sampler call, checked against the operator, model and VAE.

    Any image size works: when the VAE's factor does not divide it, the problem is solved on the
    next larger canvas it does divide (``dwgf.operators.OnCanvas``: the extra pixels are not
    measured) and Particle Decode crops the result back to ``image_size``.
    """

    degradation: Degradation
    images: torch.Tensor  # (B, 3, h, w) in [-1, 1]
    latent_shape: tuple[int, int, int]
    image_size: tuple[int, int]
    factor: int

    @classmethod
    def prepare(cls, model: Any, vae: Any, degradation: Degradation, measurement: torch.Tensor) -> MeasurementBatch:
        comfy_adapter.check_diffusion_model(model)
        comfy_adapter.check_vae_matches_model(vae, model)
        images = bhwc_unit_to_bchw_signed(measurement, "measurement")
        operator = degradation.operator
        operator.check_measurement_image(images)
        factor = comfy_adapter.vae_downscale_ratio(vae)
        canvas = on_canvas(operator, factor)
        latent_shape = (comfy_adapter.model_latent_channels(model), canvas.height // factor, canvas.width // factor)
        image_size = degradation.image_size or (operator.height, operator.width)
        return cls(degradation, images, latent_shape, image_size, factor)

    def measurements(self) -> Iterator[tuple[Any, torch.Tensor]]:
        """Each measurement image's operator (on the VAE's canvas) and ``y``, in turn (batch 1)."""
        for index in range(self.images.shape[0]):
            yield (on_canvas(self.degradation.operator_for(index), self.factor),
                   self.degradation.measurement_from_image(self.images[index:index + 1], index))


PARTICLES_KEY = "dwgf_particles"
IMAGES_KEY = "dwgf_images"
VAE_KEY = "dwgf_vae"
IMAGE_SIZE_KEY = "dwgf_image_size"
BATCHING_NODES = "Repeat Latent Batch, Latent Batch, Latent From Batch, Rebatch Latents"
PARTICLES_PER_IMAGE_MAX = 64  # Particle Decode's particles_per_image input


def particles_latent(samples: torch.Tensor, particles: int, images: int, vae: Any,
                     image_size: tuple[int, int]) -> dict[str, Any]:
    """A LATENT whose batch holds ``particles`` consecutive particles for each of ``images``
    measurement images, remembering the VAE it belongs to (checked by Particle Decode) and the
    photo's size (the latents may cover a slightly larger canvas)."""
    return {"samples": samples, PARTICLES_KEY: int(particles), IMAGES_KEY: int(images),
            VAE_KEY: comfy_adapter.vae_identity(vae), IMAGE_SIZE_KEY: [int(image_size[0]), int(image_size[1])]}


def crop_to_image_size(images: torch.Tensor, latent: dict[str, Any]) -> torch.Tensor:
    """Decoded particles (ComfyUI IMAGE layout) cut back to the photo's size, when it was padded."""
    size = latent.get(IMAGE_SIZE_KEY)
    if size is None:
        return images
    return images[:, : int(size[0]), : int(size[1]), :]


def divisors(number: int, largest: int = PARTICLES_PER_IMAGE_MAX) -> list[int]:
    """The whole numbers up to ``largest`` that divide ``number`` (the particles_per_image values that work)."""
    return [value for value in range(1, min(number, largest) + 1) if number % value == 0]


def particles_per_image(latent: dict[str, Any], given: int = 0) -> int:
    """How many consecutive latents belong to one image: as the sampler recorded it; ``given`` (> 0)
    must agree with that record. A LATENT without a record (from SamplerCustom with the DWGF
    SAMPLER) takes ``given``, which must divide its batch, or 1 (every latent its own image).

    A record that no longer matches the batch means a batching node changed it."""
    given = int(given)
    require(given >= 0, f"particles_per_image is {given}: use 0 (as the sampler recorded it) or a positive count")
    batch = int(latent["samples"].shape[0])
    recorded, images = latent.get(PARTICLES_KEY), latent.get(IMAGES_KEY)
    if recorded is None:
        count = given or 1
        require(batch % count == 0,
                f"particles_per_image: {count} does not divide the LATENT's batch of {batch} latents (this LATENT "
                f"does not record how many particles it holds, as one from SamplerCustom): use one that divides "
                f"it ({', '.join(map(str, divisors(batch)))}), normally the batch size of the empty latent the "
                "sampler started from")
        return count
    recorded = int(recorded)
    made = recorded * int(images) if images is not None else None
    require(recorded >= 1 and batch % recorded == 0 and (made is None or batch == made),
            f"particles: the LATENT holds {batch} latents, but the sampler made {made or '?'} "
            f"({images or '?'} images x {recorded} particles); a batching node between the sampler and "
            f"Particle Decode ({BATCHING_NODES}) changed it: connect the sampler's output directly")
    images = batch // recorded
    if given and given != recorded:
        raise DWGFInputError(
            f"particles_per_image: {given} contradicts the LATENT, which the sampler made as {images} "
            f"image{'s' if images != 1 else ''} x {recorded} particles ({contradiction(given, recorded, batch)}): "
            f"set particles_per_image to 0 (as recorded) or {recorded}")
    return recorded


def contradiction(given: int, recorded: int, batch: int) -> str:
    """What Particle Decode would have made of ``given`` particles per image where the sampler made
    ``recorded``: the silent wrong answer the refusal prevents."""
    if batch % given:
        return f"{given} does not divide its {batch} latents"
    if given % recorded == 0:
        return f"one 'mean' would blend the particles of {given // recorded} different images"
    if given == 1:
        return "each particle would be its own 'mean', with an all-black spread"
    if recorded % given == 0:
        return f"each image's {recorded} particles would give {recorded // given} separate 'means'"
    return f"groups of {given} would mix the particles of different images"


def check_vae_of_particles(latent: dict[str, Any], vae: Any) -> None:
    """Particle Decode's VAE must be the kind the particles were made with."""
    made_with = latent.get(VAE_KEY)
    if made_with is None:
        return
    given = comfy_adapter.vae_identity(vae)
    require(given == made_with,
            f"vae: these particles were made with a VAE of {made_with['latent_channels']} latent channels and "
            f"downscale {made_with['downscale']}, but this VAE has {given['latent_channels']} and "
            f"{given['downscale']}: connect the VAE the sampler used")


def require_finite_inputs(**values: float) -> None:
    """NaN or infinite sampler settings are named before the run (ComfyUI's min/max checks let NaN
    through), so a run never fails later with the blame on another input."""
    for name, value in values.items():
        require(isinstance(value, (int, float)) and math.isfinite(value),
                f"{name} is {value!r}: it must be a finite number. A NaN or infinite value usually comes from "
                f"a math or primitive node wired into '{name}', or from NaN in an API prompt")


def sample_each_measurement(run: Callable, config: Any, levels: list, problem: MeasurementBatch, model: Any,
                            positive: Any, negative: Any, vae: Any, cfg: float, memory: RunMemory,
                            differentiable_model: bool = False, fast_vae: Any = None) -> dict[str, Any]:
    """Run a core sampler (``run_dwgf`` or ``run_psld`` with its ``config``) once per measurement image
    as a ComfyUI sampler over ``levels``; returns the particles LATENT.

    Before the first run the memory guard compares the estimated working memory with what the device
    has free (``memory``); Cancel is honoured inside every network call. ``fast_vae`` (DWGF only) is
    the tiny VAE of the early iterations (issue 25), checked against the model and VAE before any run.
    """
    comfy_adapter.check_guidance(model, cfg)
    if fast_vae is not None and fast_vae is not vae:
        comfy_adapter.check_fast_vae(fast_vae, vae, model)
    sigmas = torch.tensor([level.k_sigma for level in levels], dtype=torch.float64)
    results = [comfy_adapter.sample_with_comfyui(
        model, positive, negative, cfg, sigmas, (config.particles, *problem.latent_shape), config.seed,
        functools.partial(run_in_comfyui, run, config, levels, problem.latent_shape, model, vae, memory, operator, y,
                          fast_vae=fast_vae),
        differentiable_model=differentiable_model) for operator, y in problem.measurements()]
    return particles_latent(torch.cat(results), config.particles, len(results), vae, problem.image_size)


def run_in_comfyui(run: Callable, config: Any, levels: list, latent_shape: tuple[int, int, int], model: Any,
                   vae: Any, memory: RunMemory, operator: Any, y: torch.Tensor, denoiser: Any, device: torch.device,
                   on_step: Callable, initial: torch.Tensor | None = None, fast_vae: Any = None) -> torch.Tensor:
    """One core run inside ComfyUI's sampler: the VAE (and fast VAE) made differentiable, the memory
    checked, the networks interruptible, running out of memory explained; returns model-space latents."""
    autoencoder = comfy_adapter.prepare_vae(vae, model)
    extra: dict[str, Any] = {}
    fast = None
    if fast_vae is not None:
        fast = comfy_adapter.prepare_fast_vae(fast_vae, vae, model, autoencoder)
        extra["fast_autoencoder"] = fast
    full_decoder_steps = getattr(config, "full_decoder_steps", 0)
    if getattr(config, "detail", 0.0) > 0:  # the detail finish decodes through the full VAE with gradient
        full_decoder_steps = max(full_decoder_steps, 1)
    check_run_memory(autoencoder, latent_shape, config.particles, memory, device, fast_autoencoder=fast,
                     full_decoder_steps=full_decoder_steps)
    shape = RunShape(latent_shape[1] * autoencoder.downscale, latent_shape[2] * autoencoder.downscale,
                     config.particles, memory, device, fast is not None and fast is not autoencoder,
                     full_decoder_steps)
    with comfy_adapter.interruptible_networks(vae, model, fast_vae), explain_out_of_memory(shape):
        return run(denoiser, autoencoder, config, latent_shape, operator, y.to(device), levels=levels, device=device,
                   callback=on_step, initial=None if initial is None else initial.to(device), **extra)
