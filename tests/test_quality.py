"""DWGF on the embedded demo model restores better than the measurement alone (issue 4, item 8).

For box inpainting and ×4 average-pool super-resolution, the particle mean of the real DWGF
Sampler → Particle Decode must beat the *measurement-only* estimate ``D(E(A†y))`` (ComfyUI's stock
VAEEncode → VAEDecode of the Degradation Operator's pseudo-inverse image: what a user gets with no
diffusion prior) in PSNR by a margin, on held-out photo crops.

Protocol: demo model "unconditional", cfg 1, σ_y = 0.001, seed 0; DWGF as the demo workflows and
the editor run it (SETTINGS: the *recommended* preset — 50 iterations, ``D(E(·))`` every 4th — with
METHOD.md's reference weights w 0.15, c_ae 0.1, lr 1, σ_dec 0.01, N = 4); box fraction 0.5; ×4.
The crops (TEST_INDICES 7, 9, 10, 12: the Picos, the cups, the cat and the astronaut) are not the
ones the settings sweep used (0–6) nor the benchmark's (14–63).

Measured on the shipped model (torch 2 CPU, ComfyUI 0.3.75), particle-mean PSNR against the
measurement-only PSNR, mean over the 4 crops, and the paired per-crop gain:

=================  ========  =================  ====================  ===========================
task               DWGF      measurement-only   gain (mean ± std)     per-crop gains
=================  ========  =================  ====================  ===========================
box inpainting     19.41 dB  17.78 dB           1.63 ± 1.49 dB        2.97, 1.34, −0.34, 2.57
SR ×4 avg-pool     20.83 dB  19.95 dB           0.88 ± 1.58 dB        −0.10, 0.89, 3.11, −0.39
=================  ========  =================  ====================  ===========================

(100 plain iterations, which this test ran before session 7 at 2.5× the cost: +2.21 and +0.87 dB.)
The *fast* preset with the demo model's tiny VAE (issue 25; 35 iterations from a warm start, the
tiny VAE in all but the last 5) on the same crops: box +2.27 dB (per crop 6.05, 0.33, 0.73, 1.98),
×4 SR +0.63 dB (−0.41, 0.32, 2.36, 0.27); floors MIN_FAST_GAIN_DB 1.0 and 0.3.
The thresholds (MIN_GAIN_DB) are about half the measured mean gains: the runs are seeded and
repeat exactly here, but another torch build or device changes the floating-point path of a
chaotic flow, which moves single crops by a few tenths of a dB.

Gaussian deblurring (9×9, σ = 1.5 px) is not asserted: on the current model, whose autoencoder
reproduces photos at 27 dB, DWGF at these settings is *behind* the measurement-only estimate on
these crops — −2.07 ± 1.56 dB at σ_y = 0.001 and −1.15 ± 0.92 dB at σ_y = 0.05 (100 plain
iterations: −1.74 and −0.80); on the benchmark's 50 crops (σ_y 0.05, DWGF-50, two seeds) it is
+0.39 dB ahead, winning 21 of 50 (``bench/results/quality.md``): too close to assert. Runtime under
a minute per task on 2 cores, hence ``slow``.
"""

from __future__ import annotations

import pytest
import torch
from comfyui_env import call_node, node_defaults

from dwgf.metrics import psnr

pytestmark = pytest.mark.slow

CLEAN = "clean (simulate the measurement)"
TEST_INDICES = [7, 9, 10, 12]
SETTINGS = {"preset": "recommended", "steps": 50, "particles": 4, "learning_rate": 1.0, "prior_weight": 0.15,
            "ae_weight": 0.1, "decoder_noise": 0.01, "cfg": 1.0, "seed": 0}
TASKS = {
    "box inpainting": {"operator": "inpaint box (centre)", "box_fraction": 0.5},
    "SR x4 avg-pool": {"operator": "super-resolution avg-pool", "scale_factor": 4},
}
# Minimum mean PSNR gain (dB) of the DWGF particle mean over the measurement-only estimate, set
# with a safety margin below the gain measured on TEST_INDICES (see the module docstring).
MIN_GAIN_DB = {"box inpainting": 1.0, "SR x4 avg-pool": 0.4}
MIN_FAST_GAIN_DB = {"box inpainting": 1.0, "SR x4 avg-pool": 0.3}  # about half the measured gains (docstring)


def psnr_per_image(estimate: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) per image of ComfyUI IMAGE batches in [0, 1] (the estimate clamped to [0, 1])."""
    return psnr(estimate[..., :3].clamp(0, 1).permute(0, 3, 1, 2), clean.permute(0, 3, 1, 2))


@pytest.fixture(scope="module")
def clean(comfy_nodes) -> torch.Tensor:
    photos, _ = call_node("DWGF_DemoHeldOutImages", which="photos", start=0, count=10000)
    return photos[TEST_INDICES].contiguous()


def restore(comfy_nodes, demo: dict, clean: torch.Tensor, task: str,
            **sampler: object) -> tuple[torch.Tensor, torch.Tensor]:
    """(DWGF particle mean, measurement-only estimate) as IMAGE batches, through the real nodes;
    ``sampler`` overrides SETTINGS (the fast preset and its fast_vae)."""
    inputs = {**node_defaults("DWGF_DegradationOperator"), **TASKS[task]}
    inputs.update(image=clean, image_is=CLEAN, sigma_y=0.001, seed=0)
    degradation, measurement, pseudo_inverse = call_node("DWGF_DegradationOperator", **inputs)
    torch.manual_seed(0)  # some ComfyUI copies sample the VAE posterior with the global RNG (0.3.75 takes its mean)
    (latent,) = call_node("VAEEncode", vae=demo["vae"], pixels=pseudo_inverse)
    (measurement_only,) = call_node("VAEDecode", vae=demo["vae"], samples=latent)
    (particles,) = call_node("DWGF_Sampler", model=demo["model"], positive=demo["positive"],
                             negative=demo["negative"], vae=demo["vae"], degradation=degradation,
                             measurement=measurement, **{**SETTINGS, **sampler})
    _, mean, _ = call_node("DWGF_ParticleDecode", particles=particles, vae=demo["vae"],
                           paste_known_pixels=False, degradation=degradation, measurement=measurement)
    return mean, measurement_only


@pytest.mark.parametrize("task", list(TASKS))
def test_dwgf_beats_the_measurement_alone(comfy_nodes, demo, clean, task) -> None:
    mean, measurement_only = restore(comfy_nodes, demo, clean, task)
    dwgf_psnr, baseline_psnr = psnr_per_image(mean, clean), psnr_per_image(measurement_only, clean)
    gain = dwgf_psnr - baseline_psnr
    assert torch.isfinite(dwgf_psnr).all()
    assert gain.mean().item() >= MIN_GAIN_DB[task], (
        f"{task}: DWGF mean {dwgf_psnr.mean():.2f} dB vs measurement-only {baseline_psnr.mean():.2f} dB; "
        f"per-image gains {[round(g, 2) for g in gain.tolist()]} dB, required mean >= {MIN_GAIN_DB[task]} dB")


@pytest.fixture(scope="module")
def fast_vae(comfy_nodes):
    """The demo model's tiny VAE (the DWGF Demo Model node's sixth output)."""
    return call_node("DWGF_DemoModel", prompt="unconditional", batch_size=1)[5]


@pytest.mark.parametrize("task", list(TASKS))
def test_the_fast_preset_also_beats_the_measurement_alone(comfy_nodes, demo, clean, fast_vae, task) -> None:
    """Issue 25: the *fast* preset with the demo model's tiny VAE (the demo templates' setting)."""
    mean, measurement_only = restore(comfy_nodes, demo, clean, task, preset="fast", fast_vae=fast_vae)
    gain = psnr_per_image(mean, clean) - psnr_per_image(measurement_only, clean)
    assert gain.mean().item() >= MIN_FAST_GAIN_DB[task], (
        f"{task}: per-image gains {[round(g, 2) for g in gain.tolist()]} dB, required mean >= "
        f"{MIN_FAST_GAIN_DB[task]} dB")
