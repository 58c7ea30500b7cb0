"""The DWGF Sampler's fast path (issue 25) inside the real ComfyUI, on the embedded demo model.

A ``fast_vae`` replaces the full VAE in every iteration but the last ``full_decoder_steps``. These
tests check that the input changes nothing when it is the full VAE itself, that the last
iterations really use the full VAE, and that a tiny VAE of another latent space is refused with an
error naming both sides. (The demo model's own tiny VAE: ``test_tiny_autoencoder.py``; the real
SD/SDXL/SD3/Flux architectures with ComfyUI's TAESD: ``test_fast_vae_architectures.py``.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from comfyui_env import call_node, node_defaults

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

CLEAN = "clean (simulate the measurement)"


def random_taesd(name: str):
    """ComfyUI's TAESD ``name`` with random weights, loaded by its own Load VAE node (both copies)."""
    import sd_architectures

    with torch.inference_mode():
        return sd_architectures.build_taesd(name)


@pytest.fixture(scope="module")
def problem(comfy_nodes):
    photos, _ = call_node("DWGF_DemoHeldOutImages", which="photos", start=0, count=1)
    inputs = {**node_defaults("DWGF_DegradationOperator"), "image": photos, "image_is": CLEAN,
              "operator": "inpaint box (centre)"}
    degradation, measurement, _ = call_node("DWGF_DegradationOperator", **inputs)
    return degradation, measurement


def dwgf(demo, problem, **overrides):
    degradation, measurement = problem
    inputs = dict(model=demo["model"], positive=demo["negative"], negative=demo["negative"], vae=demo["vae"],
                  degradation=degradation, measurement=measurement, seed=3, steps=8, particles=2,
                  learning_rate=1.0, prior_weight=0.15, ae_weight=0.1, decoder_noise=0.01, cfg=1.0,
                  preset="custom", ae_every=3)
    inputs.update(overrides)
    return call_node("DWGF_Sampler", **inputs)[0]["samples"]


def test_the_full_vae_as_fast_vae_gives_exactly_the_run_without_it(comfy_nodes, demo, problem) -> None:
    without = dwgf(demo, problem)
    same = dwgf(demo, problem, fast_vae=demo["vae"], full_decoder_steps=3)
    assert torch.equal(without, same)


def test_the_fast_vae_runs_the_early_iterations_and_the_full_vae_the_last(comfy_nodes, demo, problem) -> None:
    """A tiny VAE (random weights: a different decoder) changes the particles; with every iteration
    on the full VAE (full_decoder_steps = steps) it changes nothing."""
    tiny = random_taesd("taesd")
    tiny.downscale_ratio = tiny.upscale_ratio = 2  # stands in for the demo's ×2 grid: TAESD is fully convolutional
    without = dwgf(demo, problem)
    all_full = dwgf(demo, problem, fast_vae=tiny, full_decoder_steps=8)
    assert torch.equal(without, all_full)
    mostly_fast = dwgf(demo, problem, fast_vae=tiny, full_decoder_steps=2)
    assert torch.isfinite(mostly_fast).all()
    assert not torch.allclose(mostly_fast, without, atol=1e-3)


def test_a_tiny_vae_of_another_grid_is_refused_naming_both(comfy_nodes, demo, problem) -> None:
    with pytest.raises(ValueError, match=r"fast_vae: it has 4 latent channels at 8x8 .* VAE \(and MODEL\) have 4 "
                                         r"channels at 2x2"):
        dwgf(demo, problem, fast_vae=random_taesd("taesd"))


def test_a_tiny_vae_of_another_latent_scale_is_refused_naming_both(comfy_nodes, demo, problem) -> None:
    """taesdxl's latents are SDXL's (scale 0.13025); the demo model's are SD 1.5's (0.18215)."""
    tiny = random_taesd("taesdxl")
    tiny.downscale_ratio = tiny.upscale_ratio = 2
    with pytest.raises(ValueError, match=r"scales latents by 0\.13025 .* taesdxl \(SDXL\), but the MODEL's latents "
                                         r"are scaled by 0\.18215 .* connect taesd \(SD 1\.x/2\.x\)"):
        dwgf(demo, problem, fast_vae=tiny)


def test_the_custom_sampling_node_takes_the_fast_vae(comfy_nodes, demo, problem) -> None:
    node = comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_CustomSampler"]
    optional = node.INPUT_TYPES()["optional"]
    assert optional["fast_vae"][0] == "VAE" and optional["full_decoder_steps"][0] == "INT"
