"""Node "DWGF Sampler": the gradient flow in place of a KSampler."""

from __future__ import annotations

from typing import Any

import torch

from ..dwgf.degradation import Degradation
from ..dwgf.errors import require
from ..dwgf.flow import DWGFConfig, run_dwgf
from ..dwgf.schedule import reference_levels
from . import comfy_adapter
from .common import CATEGORY, DEGRADATION_TYPE
from .memory_guard import MEMORY_CHECK_TOOLTIP, RunMemory
from .restoration import MeasurementBatch, require_finite_inputs, sample_each_measurement


def sampler_inputs() -> dict[str, Any]:
    """The inputs both samplers share: the model, the VAE and the restoration problem."""
    return {
        "model": ("MODEL", {"tooltip": "The diffusion model (SD 1.x, 2.x eps or v, SDXL), as loaded by "
                                       "Load Checkpoint or the DWGF Demo Model."}),
        "positive": ("CONDITIONING", {"tooltip": "Prompt conditioning. The method's reference uses an empty "
                                                 "prompt and no guidance."}),
        "negative": ("CONDITIONING", {"tooltip": "Negative/unconditional prompt; used only when cfg > 1."}),
        "vae": ("VAE", {"tooltip": "The VAE that belongs to the model; the data term runs through its decoder."}),
        "degradation": (DEGRADATION_TYPE, {"tooltip": "The forward operator, from a Degradation Operator node."}),
        "measurement": ("IMAGE", {"tooltip": "The measurement y as a picture (the Degradation Operator's "
                                             "'measurement' output, or your degraded photo). A batch restores "
                                             "each image in turn."}),
        "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                         "tooltip": "Seed of the starting particles and of every noise draw; the same seed "
                                    "gives the same particles."}),
    }


MEMORY_MODES: dict[str, tuple[int, bool]] = {
    # name: (particle_chunk, checkpoint_decoder)
    "fastest (all particles at once)": (0, False),
    "less memory (one particle at a time)": (1, False),
    "least memory (one particle at a time, decoder checkpointing)": (1, True),
}
MEMORY_TOOLTIP = (
    "Trade speed for memory; the result is the same up to rounding. 'fastest' runs the networks on all "
    "particles at once: memory grows with the number of particles. 'less memory' runs them on one particle "
    "at a time, so memory no longer grows with particles, at about the same speed (SD 1.5 at 512² with "
    "4 particles: an estimated 7-11 GB). 'least memory' also checkpoints every VAE decoder block and "
    "recomputes it for the gradient: about a third of the memory of 'less memory' for roughly 10 % more "
    "time (for SDXL at 1024² or small cards)."
)


class DWGFSampler:
    """Restores an image by DWGF: N latent particles follow a regularised Wasserstein gradient flow."""

    DESCRIPTION = (
        "Diffusion-regularized Wasserstein Gradient Flow (Wang & Akyildiz 2025). N latent particles "
        "descend the measurement misfit through the VAE decoder, an encoder-decoder prior term and the "
        "diffusion model's prior at noise levels sweeping from high to low, coupled by a particle-mixture "
        "score; Adam integrates the flow. Outputs the particles as a LATENT batch for Particle Decode. "
        "Defaults are the paper's reference run (SD 2.1 at 512²: 998 steps, 4 particles)."
    )
    CATEGORY = CATEGORY
    FUNCTION = "sample"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("particles",)
    OUTPUT_TOOLTIPS = ("All particles of every measurement image (image-major), for Particle Decode.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        required = sampler_inputs()
        required.update({
            "steps": ("INT", {"default": 998, "min": 1, "max": 998,
                              "tooltip": "Iterations, one per diffusion time from t=999 down to t=2 "
                                         "(reference 998; fewer are spread over the same range). Fast "
                                         "preset: 50 matched 998 on the demo model's benchmark at 1/20 "
                                         "of the cost; for SD try 100-250 before the full 998."}),
            "particles": ("INT", {"default": 4, "min": 1, "max": 64,
                                  "tooltip": "Number of particles N (reference 4). Each costs one decoder "
                                             "forward and backward per step."}),
            "learning_rate": ("FLOAT", {"default": 1.0, "min": 0.0001, "max": 10.0, "step": 0.01,
                                        "tooltip": "Adam's learning rate (reference 1.0)."}),
            "prior_weight": ("FLOAT", {"default": 0.15, "min": 0.0, "max": 100.0, "step": 0.005,
                                       "tooltip": "w, the weight of the diffusion prior (reference 0.15 for SD "
                                                  "at 512²; it need not transfer across latent sizes: "
                                                  "sweep it for a new model)."}),
            "ae_weight": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 100.0, "step": 0.01,
                                    "tooltip": "c_ae, the weight of the encoder-decoder prior-score term "
                                               "(reference 0.1; 0 switches it off)."}),
            "decoder_noise": ("FLOAT", {"default": 0.01, "min": 0.0, "max": 1.0, "step": 0.001,
                                        "tooltip": "σ_dec, the noise added to the decoded image in the data "
                                                   "and encoder-decoder terms (reference 0.01)."}),
            "cfg": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 30.0, "step": 0.1, "round": 0.01,
                              "tooltip": "Classifier-free guidance scale for the prior's noise prediction. "
                                         "1 = none (the reference)."}),
        })
        optional = {"memory": (list(MEMORY_MODES), {"default": next(iter(MEMORY_MODES)), "tooltip": MEMORY_TOOLTIP}),
                    "memory_check": ("BOOLEAN", {"default": True, "tooltip": MEMORY_CHECK_TOOLTIP})}
        return {"required": required, "optional": optional}

    def sample(self, model: Any, positive: Any, negative: Any, vae: Any, degradation: Degradation,
               measurement: torch.Tensor, seed: int, steps: int, particles: int, learning_rate: float,
               prior_weight: float, ae_weight: float, decoder_noise: float, cfg: float,
               memory: str = next(iter(MEMORY_MODES)), memory_check: bool = True) -> tuple[dict]:
        require(memory in MEMORY_MODES, f"memory must be one of {list(MEMORY_MODES)}, got {memory!r}")
        require_finite_inputs(cfg=cfg, learning_rate=learning_rate, prior_weight=prior_weight, ae_weight=ae_weight,
                              decoder_noise=decoder_noise)
        chunk, checkpointed = MEMORY_MODES[memory]
        others = tuple((name, *mode) for name, mode in MEMORY_MODES.items() if name != memory)
        run_memory = RunMemory(memory, chunk, checkpointed, check=bool(memory_check), alternatives=others)
        config = DWGFConfig(particles=particles, steps=steps, lr=learning_rate, prior_weight=prior_weight,
                            ae_weight=ae_weight, decoder_noise=decoder_noise, seed=seed, particle_chunk=chunk,
                            checkpoint_decoder=checkpointed)
        problem = MeasurementBatch.prepare(model, vae, degradation, measurement)
        levels = reference_levels(comfy_adapter.model_alphas_cumprod(model), config.steps,
                                  config.first_timestep, config.last_timestep)

        def solve(denoiser, autoencoder, operator, y, device, callback):
            return run_dwgf(denoiser, autoencoder, config, problem.latent_shape, operator, y,
                            levels=levels, device=device, callback=callback)

        return (sample_each_measurement(model, positive, negative, vae, problem, cfg, seed, levels, particles,
                                        solve, run_memory),)


NODE_CLASS_MAPPINGS = {"DWGF_Sampler": DWGFSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"DWGF_Sampler": "DWGF Sampler"}
