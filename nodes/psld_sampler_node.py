"""Node "PSLD Sampler": the PSLD baseline (Rout et al. 2023), wired like the DWGF Sampler."""

from __future__ import annotations

from typing import Any

import torch

from ..dwgf.degradation import Degradation
from ..dwgf.psld import PSLDConfig, psld_levels, reference_weights, run_psld
from . import comfy_adapter
from .common import CATEGORY
from .memory_guard import MEMORY_CHECK_TOOLTIP, RunMemory
from .restoration import MeasurementBatch, require_finite_inputs, sample_each_measurement
from .sampler_inputs import problem_inputs

AUTO = -1.0


class PSLDSampler:
    """Restores an image by PSLD: DDIM with measurement and gluing gradients through UNet, decoder, encoder."""

    DESCRIPTION = (
        "Posterior Sampling with Latent Diffusion (Rout et al. 2023), the baseline DWGF is compared with. "
        "Each DDIM step (eta = 0) is corrected by the gradient of the measurement error ||y - A(D(z0))|| and of "
        "the 'gluing' error that keeps z0 a fixed point of encode(measurement-projected decode), taken through "
        "the UNet, decoder and encoder — so it needs more memory per sample than DWGF. Outputs the samples "
        "as a LATENT batch for Particle Decode."
    )
    CATEGORY = CATEGORY
    FUNCTION = "sample"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("particles",)
    OUTPUT_TOOLTIPS = ("All samples of every measurement image (image-major), for Particle Decode.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        required = problem_inputs()
        required.update({
            "steps": ("INT", {"default": 1000, "min": 1, "max": 1000,
                              "tooltip": "DDIM steps from t=999 down to t=0 (reference 1000)."}),
            "particles": ("INT", {"default": 1, "min": 1, "max": 64,
                                  "tooltip": "Independent samples per measurement image, run as one batch."}),
            "omega": ("FLOAT", {"default": AUTO, "min": AUTO, "max": 100.0, "step": 0.01,
                                "tooltip": "ω, weight of the measurement error. -1 = the paper's value for the "
                                           "operator: 0.1 for inpainting, 1 for super-resolution/deblurring."}),
            "gamma": ("FLOAT", {"default": AUTO, "min": AUTO, "max": 100.0, "step": 0.001,
                                "tooltip": "γ, weight of the gluing error. -1 = the paper's value for the "
                                           "operator: 0.01 for inpainting, 0.1 for super-resolution/deblurring."}),
            "cfg": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 30.0, "step": 0.1, "round": 0.01,
                              "tooltip": "Classifier-free guidance scale; 1 = none."}),
        })
        return {"required": required,
                "optional": {"memory_check": ("BOOLEAN", {"default": True, "tooltip": MEMORY_CHECK_TOOLTIP})}}

    def sample(self, model: Any, positive: Any, negative: Any, vae: Any, degradation: Degradation,
               measurement: torch.Tensor, seed: int, steps: int, particles: int, omega: float, gamma: float,
               cfg: float, memory_check: bool = True) -> tuple[dict]:
        require_finite_inputs(omega=omega, gamma=gamma, cfg=cfg)
        reference_omega, reference_gamma = reference_weights(degradation.operator)
        config = PSLDConfig(particles=particles, steps=steps, seed=seed,
                            omega=reference_omega if omega < 0 else omega,
                            gamma=reference_gamma if gamma < 0 else gamma)
        problem = MeasurementBatch.prepare(model, vae, degradation, measurement)
        levels = psld_levels(comfy_adapter.model_alphas_cumprod(model), config)
        memory = RunMemory("all samples at once", 0, psld=True, check=bool(memory_check))
        return (sample_each_measurement(run_psld, config, levels, problem, model, positive, negative, vae, cfg,
                                        memory, differentiable_model=True),)


NODE_CLASS_MAPPINGS = {"DWGF_PSLDSampler": PSLDSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"DWGF_PSLDSampler": "PSLD Sampler"}
