"""Building blocks of API-format prompts for the pack's nodes, shared by the server tests and tools.

Every widget input is spelled out (ComfyUI's validator and the editor both want them all); callers
override only what their graph is about.
"""

from __future__ import annotations

from typing import Any

CLEAN = "clean (simulate the measurement)"


def degradation_inputs(image: list, operator: str, **overrides: Any) -> dict[str, Any]:
    """Inputs of a Degradation Operator on ``image`` (a link), noise-free, demo-sized blur."""
    inputs = {"image": image, "image_is": CLEAN, "operator": operator, "scale_factor": 4, "kernel_size": 9,
              "blur_sigma": 1.0, "motion_intensity": 0.5, "keep_probability": 0.3, "box_fraction": 0.5,
              "sigma_y": 0.0, "seed": 0, "padding": "reflect", "mask_threshold": 0.5}
    inputs.update(overrides)
    return inputs


def dwgf_sampler_inputs(degradation_node: str = "3", model_node: str = "1", steps: int = 2, particles: int = 2,
                        **overrides: Any) -> dict[str, Any]:
    """Inputs of a DWGF Sampler fed by the demo model ``model_node`` (MODEL 0, VAE 1, unconditional
    CONDITIONING 3) and the Degradation Operator ``degradation_node``; the demo settings."""
    inputs = {"model": [model_node, 0], "positive": [model_node, 3], "negative": [model_node, 3],
              "vae": [model_node, 1], "degradation": [degradation_node, 0], "measurement": [degradation_node, 1],
              "seed": 0, "steps": steps, "particles": particles, "learning_rate": 1.0, "prior_weight": 0.15,
              "ae_weight": 0.1, "decoder_noise": 0.01, "cfg": 1.0, "memory": "fastest (all particles at once)",
              "memory_check": True}
    inputs.update(overrides)
    return inputs
