"""Node "DWGF Sampler (custom sampling)": DWGF as a SAMPLER for ComfyUI's SamplerCustom and
SamplerCustomAdvanced, so a graph brings its own sigmas (scheduler), guider and noise."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import torch

from ..dwgf.degradation import Degradation
from ..dwgf.errors import require
from ..dwgf.flow import FULL_DECODER_STEPS, DWGFConfig, run_dwgf
from ..dwgf.particles import initial_particles
from ..dwgf.schedule import NoiseLevel
from . import comfy_adapter
from .common import CATEGORY
from .memory_guard import RunMemory
from .restoration import MeasurementBatch, require_finite_inputs, run_in_comfyui
from .sampler_inputs import (
    FASTEST,
    detail_inputs,
    dwgf_method_inputs,
    dwgf_settings,
    fast_inputs,
    memory_inputs,
    problem_inputs,
)


def levels_from_sigmas(model: Any, sigmas: torch.Tensor) -> list[NoiseLevel]:
    """The user's ComfyUI sigmas as DWGF's noise levels (the final 0 dropped): ``ᾱ = 1 / (1 + σ²)`` for
    eps/v models, the VP equivalent of flow time ``σ = t`` for flow models (``comfy_adapter``)."""
    alpha_bars = comfy_adapter.alpha_bars_from_model_sigmas(model, sigmas)
    require(len(alpha_bars) >= 1, "sigmas: the schedule has no noise level above 0: use at least one step")
    return [NoiseLevel(alpha_bar=a) for a in alpha_bars]


class DWGFCustomSampler:
    """DWGF as a SAMPLER: the degradation and measurement are bound here, the rest comes from the graph."""

    DESCRIPTION = (
        "DWGF for ComfyUI's custom-sampling nodes (SamplerCustom, SamplerCustomAdvanced): connect this SAMPLER, "
        "your own SIGMAS (any scheduler; one DWGF iteration per noise level), guider or cfg, and noise. The "
        "latent_image sets the particles: an empty latent of the restored image's size with a batch of N gives "
        "N particles. Decode with Particle Decode, setting particles_per_image to N."
    )
    CATEGORY = CATEGORY
    FUNCTION = "sampler"
    RETURN_TYPES = ("SAMPLER",)
    RETURN_NAMES = ("sampler",)
    OUTPUT_TOOLTIPS = ("For the sampler input of SamplerCustom or SamplerCustomAdvanced.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        shared = problem_inputs()
        required = {name: shared[name] for name in ("vae", "degradation", "measurement")}
        return {"required": {**required, **dwgf_method_inputs()},
                "optional": {**memory_inputs(), **fast_inputs(), **detail_inputs()}}

    def sampler(self, vae: Any, degradation: Degradation, measurement: torch.Tensor, learning_rate: float,
                prior_weight: float, ae_weight: float, decoder_noise: float,
                memory: str = FASTEST, memory_check: bool = True, fast_vae: Any = None,
                full_decoder_steps: int = FULL_DECODER_STEPS, detail: float = 0.0) -> tuple[Any]:
        require_finite_inputs(detail=detail)
        config, run_memory = dwgf_settings(memory, memory_check, learning_rate, prior_weight, ae_weight, decoder_noise,
                                           full_decoder_steps=full_decoder_steps, detail=detail)
        require(measurement.ndim == 4 and measurement.shape[0] == 1,
                "measurement: the custom-sampling DWGF restores one image per run; use the DWGF Sampler for a batch")
        return (comfy_adapter.custom_sampler(functools.partial(run_on_sigmas, vae, degradation, measurement, config,
                                                               run_memory, fast_vae=fast_vae)),)


def run_on_sigmas(vae: Any, degradation: Degradation, measurement: torch.Tensor, config: DWGFConfig,
                  memory: RunMemory, model: Any, denoiser: Any, unit_noise: torch.Tensor | None, sigmas: torch.Tensor,
                  seed: int, device: torch.device, on_step: Any, fast_vae: Any = None) -> torch.Tensor:
    """DWGF over the user's sigmas, its particles those of ``unit_noise`` (ComfyUI's custom-sampling call)."""
    problem = MeasurementBatch.prepare(model, vae, degradation, measurement)
    require(unit_noise is not None, "this ComfyUI did not hand the sampler its noise: update ComfyUI")
    particles, *shape = unit_noise.shape
    require(tuple(shape) == problem.latent_shape,
            f"latent_image: the latent is {tuple(shape)} per particle but restoring this "
            f"{problem.image_size[0]}x{problem.image_size[1]} image needs {problem.latent_shape}: use an "
            "empty latent of the restored image's size (for the demo model, its empty_latent output)")
    levels = levels_from_sigmas(model, sigmas)
    config = dataclasses.replace(config, particles=particles, steps=min(len(levels), 998), seed=seed)
    start = unit_noise.detach().float()
    if not bool(start.abs().sum() > 0):  # add_noise off: the seeded start DWGF uses anyway
        start = initial_particles(particles, problem.latent_shape, seed)
    ((operator, y),) = list(problem.measurements())
    if fast_vae is not None and fast_vae is not vae:
        comfy_adapter.check_fast_vae(fast_vae, vae, model)
    return run_in_comfyui(run_dwgf, config, levels, problem.latent_shape, model, vae, memory, operator, y, denoiser,
                          device, on_step, initial=start, fast_vae=fast_vae)


NODE_CLASS_MAPPINGS = {"DWGF_CustomSampler": DWGFCustomSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"DWGF_CustomSampler": "DWGF Sampler (custom sampling)"}
