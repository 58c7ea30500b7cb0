"""What the tests of full-size architectures with random weights share (test_flow_architectures,
test_flow_families, test_new_latent_families, test_accepted_families): building the networks once
per family and freeing them after, a small ×4 super-resolution problem, and one DWGF Sampler run."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any

import torch


def built_once(build: Callable[[], Any]) -> Iterator[Any]:
    """For a module fixture: the networks ``build()`` makes (under inference mode, as ComfyUI loads
    them), freed after the module, so the next family's weights never sit beside them."""
    with torch.inference_mode():
        built = build()
    yield built
    import comfy.model_management

    comfy.model_management.unload_all_models()  # ComfyUI's loaded-model list would keep the networks alive
    del built
    gc.collect()


def super_resolution_problem(comfy_nodes: Any, height: int = 64, width: int = 64,
                             operator: str = "super-resolution avg-pool") -> tuple[Any, torch.Tensor]:
    """``(degradation, measurement)`` of a seeded random photo through the real Degradation Operator
    (×4, σ_y 0.001)."""
    image = torch.rand(1, height, width, 3, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        degradation, measurement, _ = comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_DegradationOperator"]().build(
            image, "clean (simulate the measurement)", operator, 4, 61, 3.0, 0.5, 0.3, 0.5, 0.001, 0)
    return degradation, measurement


def run_dwgf_node(comfy_nodes: Any, built: Any, cfg: float = 1.0, particles: int = 2, steps: int = 2,
                  inputs: tuple[Any, torch.Tensor] | None = None) -> dict:
    """The DWGF Sampler node on ``built``'s model and VAE (METHOD.md's weights, a few steps); its LATENT."""
    degradation, measurement = inputs or super_resolution_problem(comfy_nodes)
    with torch.inference_mode():
        (latent,) = comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_Sampler"]().sample(
            built.model, built.positive, built.negative, built.vae, degradation, measurement, seed=0, steps=steps,
            particles=particles, learning_rate=1.0, prior_weight=0.15, ae_weight=0.1, decoder_noise=0.01, cfg=cfg)
    return latent
