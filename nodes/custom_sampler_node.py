"""Node "DWGF Sampler (custom sampling)": DWGF as a SAMPLER for ComfyUI's SamplerCustom and
SamplerCustomAdvanced, so a graph brings its own sigmas (scheduler), guider and noise."""

from __future__ import annotations

from typing import Any

import torch

from ..dwgf.degradation import Degradation
from ..dwgf.errors import require
from ..dwgf.flow import DWGFConfig, run_dwgf
from ..dwgf.particles import initial_particles
from ..dwgf.schedule import NoiseLevel
from . import comfy_adapter
from .common import CATEGORY, DEGRADATION_TYPE
from .dwgf_sampler_node import MEMORY_MODES, DWGFSampler
from .memory_guard import RunMemory, check_run_memory
from .restoration import MeasurementBatch, require_finite_inputs

METHOD_INPUTS = ("learning_rate", "prior_weight", "ae_weight", "decoder_noise")


def levels_from_sigmas(sigmas: torch.Tensor) -> list[NoiseLevel]:
    """The user's k-diffusion sigmas as DWGF's noise levels, ``ᾱ = 1 / (1 + σ²)`` (the final 0 dropped)."""
    values = [float(s) for s in sigmas.detach().cpu().tolist() if float(s) > 0]
    require(len(values) >= 1, "sigmas: the schedule has no noise level above 0: use at least one step")
    return [NoiseLevel(alpha_bar=1.0 / (1.0 + s * s)) for s in values]


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
        full = DWGFSampler.INPUT_TYPES()
        required = {name: full["required"][name] for name in ("vae", "degradation", "measurement", *METHOD_INPUTS)}
        required["degradation"] = (DEGRADATION_TYPE, full["required"]["degradation"][1])
        return {"required": required, "optional": dict(full["optional"])}

    def sampler(self, vae: Any, degradation: Degradation, measurement: torch.Tensor, learning_rate: float,
                prior_weight: float, ae_weight: float, decoder_noise: float,
                memory: str = next(iter(MEMORY_MODES)), memory_check: bool = True) -> tuple[Any]:
        require(memory in MEMORY_MODES, f"memory must be one of {list(MEMORY_MODES)}, got {memory!r}")
        require_finite_inputs(learning_rate=learning_rate, prior_weight=prior_weight, ae_weight=ae_weight,
                              decoder_noise=decoder_noise)
        require(measurement.ndim == 4 and measurement.shape[0] == 1,
                "measurement: the custom-sampling DWGF restores one image per run; use the DWGF Sampler for a batch")
        chunk, checkpointed = MEMORY_MODES[memory]
        run_memory = RunMemory(memory, chunk, checkpointed, check=bool(memory_check))

        def run(model, denoiser, unit_noise, sigmas, seed, device, on_step) -> torch.Tensor:
            problem = MeasurementBatch.prepare(model, vae, degradation, measurement)
            require(unit_noise is not None, "this ComfyUI did not hand the sampler its noise: update ComfyUI")
            particles, *shape = unit_noise.shape
            require(tuple(shape) == problem.latent_shape,
                    f"latent_image: the latent is {tuple(shape)} per particle but restoring this "
                    f"{problem.image_size[0]}x{problem.image_size[1]} image needs {problem.latent_shape}: use an "
                    "empty latent of the restored image's size (for the demo model, its empty_latent output)")
            levels = levels_from_sigmas(sigmas)
            config = DWGFConfig(particles=particles, steps=min(len(levels), 998), lr=learning_rate,
                                prior_weight=prior_weight, ae_weight=ae_weight, decoder_noise=decoder_noise,
                                seed=seed, particle_chunk=chunk, checkpoint_decoder=checkpointed)
            start = unit_noise.detach().float()
            if not bool(start.abs().sum() > 0):  # add_noise off: the seeded start DWGF uses anyway
                start = initial_particles(particles, problem.latent_shape, seed)
            autoencoder = comfy_adapter.prepare_vae(vae, model)
            check_run_memory(autoencoder, problem.latent_shape, particles, run_memory, device)
            ((operator, y),) = list(problem.measurements())
            with comfy_adapter.interruptible_networks(vae, model):
                return run_dwgf(denoiser, autoencoder, config, problem.latent_shape, operator, y.to(device),
                                levels=levels, device=device, initial=start.to(device),
                                callback=lambda k, total, z, info: on_step(k, info.get("denoised", z)))

        return (comfy_adapter.custom_sampler(run),)


NODE_CLASS_MAPPINGS = {"DWGF_CustomSampler": DWGFCustomSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"DWGF_CustomSampler": "DWGF Sampler (custom sampling)"}
