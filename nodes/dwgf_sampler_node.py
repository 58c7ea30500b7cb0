"""Node "DWGF Sampler": the gradient flow in place of a KSampler."""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..dwgf.degradation import Degradation
from ..dwgf.flow import FULL_DECODER_STEPS, dwgf_levels, run_dwgf
from ..dwgf.presets import CUSTOM, preset_override_note, preset_overrides, preset_settings
from ..dwgf.schedule import REFERENCE_LAST_TIMESTEP
from ..dwgf.warm_start import start_timestep
from . import comfy_adapter
from .common import CATEGORY
from .restoration import MeasurementBatch, require_finite_inputs, sample_each_measurement
from .sampler_inputs import (
    FASTEST,
    detail_inputs,
    dwgf_method_inputs,
    dwgf_settings,
    fast_inputs,
    memory_inputs,
    preset_inputs,
    problem_inputs,
    repulsion_inputs,
)

LOGGER = logging.getLogger(__name__)


class DWGFSampler:
    """Restores an image by DWGF: N latent particles follow a regularised Wasserstein gradient flow."""

    DESCRIPTION = (
        "Diffusion-regularized Wasserstein Gradient Flow (Wang & Akyildiz 2025). N latent particles "
        "descend the measurement misfit through the VAE decoder, an encoder-decoder prior term and the "
        "diffusion model's prior at noise levels sweeping from high to low, coupled by a particle-mixture "
        "score; Adam integrates the flow. Outputs the particles as a LATENT batch for Particle Decode. "
        "The 'recommended' preset runs 50 iterations at 1/28 of the paper's reference run (998 steps, "
        "4 particles; the 'reference' preset), measured on the demo model (README, 'Quality against cost')."
    )
    CATEGORY = CATEGORY
    FUNCTION = "sample"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("particles",)
    OUTPUT_TOOLTIPS = ("All particles of every measurement image (image-major), for Particle Decode.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        required = problem_inputs()
        required.update({
            "steps": ("INT", {"default": 998, "min": 1, "max": 998,
                              "tooltip": "Iterations, one per diffusion time from t=999 down to t=2 "
                                         "(reference 998; fewer are spread over the same range). Used when "
                                         "preset is 'custom'; the other presets set it."}),
            "particles": ("INT", {"default": 4, "min": 1, "max": 64,
                                  "tooltip": "Number of particles N (reference 4). Each costs one decoder "
                                             "forward and backward per step."}),
            **dwgf_method_inputs(),
            "cfg": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 30.0, "step": 0.1, "round": 0.01,
                              "tooltip": "Classifier-free guidance scale for the prior's noise prediction. "
                                         "1 = none (the reference)."}),
        })
        return {"required": required,
                "optional": {**memory_inputs(), **preset_inputs(), **repulsion_inputs(), **fast_inputs(),
                             **detail_inputs()}}

    @classmethod
    def input_defaults(cls) -> dict[str, Any]:
        """Each input's widget default: a preset's note names only the values a user changed."""
        inputs = cls.INPUT_TYPES()
        return {name: spec[1].get("default") for group in inputs.values() for name, spec in group.items()
                if len(spec) > 1 and isinstance(spec[1], dict)}

    def sample(self, model: Any, positive: Any, negative: Any, vae: Any, degradation: Degradation,
               measurement: torch.Tensor, seed: int, steps: int, particles: int, learning_rate: float,
               prior_weight: float, ae_weight: float, decoder_noise: float, cfg: float,
               memory: str = FASTEST, memory_check: bool = True, preset: str = CUSTOM, denoise: float = 1.0,
               ae_every: int = 1, repulsion: float = 0.0, repulsion_schedule: str = "high noise",
               fast_vae: Any = None, full_decoder_steps: int = FULL_DECODER_STEPS,
               detail: float = 0.0) -> tuple[dict] | dict:
        """An API prompt without ``preset`` runs as before the presets existed ('custom'); one without
        ``fast_vae`` as before the fast path existed. A preset that runs other steps, denoise or
        ae_every (or, with a fast_vae, full_decoder_steps) than a user set (not the widget's default) is
        told on the node and in the log; the node then returns ComfyUI's ``{"ui": ..., "result": ...}``."""
        require_finite_inputs(cfg=cfg, denoise=denoise, repulsion=repulsion, detail=detail)
        defaults = self.input_defaults()
        overrides = [(name, given, used) for name, given, used
                     in preset_overrides(preset, steps, denoise, ae_every, full_decoder_steps)
                     if given != defaults[name]  # a value the user set, not the untouched widget
                     and (name != "full_decoder_steps" or fast_vae is not None)]  # ignored without one
        note = preset_override_note(preset, overrides) if overrides else None
        if note:
            LOGGER.warning("DWGF Sampler: %s", note)
            comfy_adapter.show_text_on_node(note)
        steps, denoise, ae_every, full_decoder_steps = preset_settings(preset, steps, denoise, ae_every,
                                                                       full_decoder_steps)
        first = start_timestep(denoise, REFERENCE_LAST_TIMESTEP, steps)
        config, run_memory = dwgf_settings(memory, memory_check, learning_rate, prior_weight, ae_weight,
                                           decoder_noise, particles=particles, steps=steps, seed=seed,
                                           first_timestep=first, ae_every=ae_every, warm_start=denoise < 1.0,
                                           repulsion=repulsion, repulsion_schedule=repulsion_schedule,
                                           full_decoder_steps=full_decoder_steps, detail=detail)
        problem = MeasurementBatch.prepare(model, vae, degradation, measurement)
        levels = dwgf_levels(comfy_adapter.model_alphas_cumprod(model), config)
        result = (sample_each_measurement(run_dwgf, config, levels, problem, model, positive, negative, vae, cfg,
                                          run_memory, fast_vae=fast_vae),)
        # ComfyUI keeps a node's "ui" text in the prompt's history; callers outside ComfyUI get the plain
        # tuple when the preset and the inputs agree
        return {"ui": {"text": [note]}, "result": result} if note else result


NODE_CLASS_MAPPINGS = {"DWGF_Sampler": DWGFSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"DWGF_Sampler": "DWGF Sampler"}
