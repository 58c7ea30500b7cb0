"""The demo model's flow-matching prior (issue 18): a rectified-flow twin of the UNet on the same
autoencoder and data (``tools/train_flow_model.py``), loaded by the DWGF Demo Model node as a real
ComfyUI flow model, and DWGF restoring held-out photos with it.

Thresholds were set from measurements of the shipped weights (stated next to each) with a margin.
Held-out images only; crops 7, 9, 10, 12 as in ``test_quality.py``.
"""

from __future__ import annotations

import pytest
import torch
from comfyui_env import call_node, comfyui_root, is_comfyui_2024, node_defaults
from test_default_model import heldout, nearest_class_mean_classifier

from dwgf.metrics import psnr

pytestmark = pytest.mark.slow
OLD_COMFYUI = is_comfyui_2024(comfyui_root())
FLOW = "flow matching"
# Held-out MSE of ẑ0 over the Wiener denoiser's at the flow times with the SNR of SD's timesteps; measured
# 0.282 / 0.260 / 0.333 / 0.501 (the eps prior: 0.288 / 0.266 / 0.343 / 0.533), ComfyUI 0.3.75.
SD_TIMESTEPS_MAX_RATIO = {100: 0.40, 300: 0.38, 500: 0.45, 700: 0.65}
MIN_SAMPLE_ACCURACY = 0.9  # stock KSampler digits recognised as the prompt; measured 1.000 (40 samples)
# DWGF ('recommended') over the measurement alone, box inpainting, mean over the 4 crops; measured
# 2.88 dB (28.99, 17.52, 14.74, 21.40 against 22.76, 15.31, 14.66, 18.40): about half, as in test_quality.py.
MIN_GAIN_DB = 1.4
TEST_INDICES = [7, 9, 10, 12]
SAMPLES_PER_DIGIT = 4  # 40 samples: the eps prior's test draws 80; CI time


@pytest.fixture(scope="module")
def loader(comfy_nodes):
    if OLD_COMFYUI:
        pytest.skip("the 2024 ComfyUI has no flow-matching models")
    return comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_DemoModel"]()


@pytest.mark.skipif(not OLD_COMFYUI, reason="the refusal is for ComfyUI before flow-matching models")
def test_old_comfyui_refuses_the_flow_prior_with_the_fix(comfy_nodes, core) -> None:
    with pytest.raises(core.errors.DWGFInputError, match="predates flow-matching models.*update ComfyUI"):
        call_node("DWGF_DemoModel", prompt="photo", batch_size=1, prior=FLOW)


def test_flow_prior_is_a_comfyui_flow_matching_model(loader, comfy_nodes) -> None:
    import comfy.model_sampling
    import comfyui_env

    adapter = comfyui_env.pack_submodule("nodes.comfy_adapter")
    with torch.inference_mode():
        model, vae, positive, _, latent, *_ = loader.load("photo", 2, FLOW)
        eps_model = loader.load("photo", 1)[0]
    sampling = model.model.model_sampling
    assert isinstance(sampling, comfy.model_sampling.CONST)
    assert isinstance(sampling, comfy.model_sampling.ModelSamplingDiscreteFlow) and sampling.shift == 1.0
    assert adapter.is_flow_model(model) and not adapter.is_flow_model(eps_model)
    times = adapter.model_flow_times(model)
    torch.testing.assert_close(times, torch.arange(1, 1001, dtype=torch.float64) / 1000)
    assert latent["samples"].shape == (2, 4, 16, 16)
    flow_weights = dict(model.model.diffusion_model.named_parameters())
    eps_weights = dict(eps_model.model.diffusion_model.named_parameters())
    assert flow_weights.keys() == eps_weights.keys()
    assert not torch.equal(flow_weights["out.2.weight"], eps_weights["out.2.weight"])


def test_flow_unet_denoises_heldout_latents_better_than_gaussian_baseline(loader, comfy_nodes) -> None:
    """ComfyUI's own flow call (``z_t = (1 − t) z0 + t ε`` → ẑ0) on held-out photo latents, at the flow
    times with the SNR of SD's timesteps, against the oracle per-dimension Wiener denoiser."""
    images, _ = heldout(comfy_nodes, "photos")
    generator = torch.Generator().manual_seed(0)
    ratios = {}
    with torch.inference_mode():
        model, vae, positive, *_ = loader.load("photo", 1, FLOW)
        eps_model = loader.load("photo", 1)[0]
        z0 = model.model.process_latent_in(comfy_nodes.VAEEncode().encode(vae, images)[0]["samples"])
        context = positive[0][0].expand(len(z0), -1, -1)
        mean, var = z0.mean(0), z0.var(0)
        for step in SD_TIMESTEPS_MAX_RATIO:
            s = float(eps_model.model.model_sampling.sigma(torch.tensor(float(step))))
            t = s / (1 + s)
            x_t = (1 - t) * z0 + t * torch.randn(z0.shape, generator=generator)
            denoised = model.model.apply_model(x_t, torch.full((len(x_t),), t), c_crossattn=context)
            alpha = 1 - t
            wiener = mean + alpha * var / (alpha**2 * var + t**2) * (x_t - alpha * mean)
            ratios[step] = float((denoised - z0).pow(2).mean() / (wiener - z0).pow(2).mean())
    print(f"flow prior, photos: held-out denoising MSE / Wiener MSE at SD-equivalent timesteps: {ratios}")
    for step, limit in SD_TIMESTEPS_MAX_RATIO.items():
        assert ratios[step] < limit, (step, ratios)


def test_stock_ksampler_draws_the_prompted_digit_from_the_flow_prior(loader, comfy_nodes, demo_files) -> None:
    """Stock KSampler (euler, 20 steps on the flow model's own schedule, CFG 3) + VAEDecode."""
    classify = nearest_class_mean_classifier(demo_files)
    correct = 0
    with torch.inference_mode():
        for digit in range(10):
            model, vae, positive, negative, latent, *_ = loader.load(f"digit {digit}", SAMPLES_PER_DIGIT, FLOW)
            samples = comfy_nodes.KSampler().sample(model, 1000 + digit, 20, 3.0, "euler", "normal",
                                                    positive, negative, latent)[0]
            images = comfy_nodes.VAEDecode().decode(vae, samples)[0]
            correct += int((classify(images) == digit).sum())
    accuracy = correct / (10 * SAMPLES_PER_DIGIT)
    print(f"flow prior: KSampler class accuracy {accuracy:.3f}")
    assert accuracy >= MIN_SAMPLE_ACCURACY


@pytest.fixture(scope="module")
def demo_files(core):
    return core.demo_model


def test_dwgf_on_the_flow_prior_beats_the_measurement_alone(loader, comfy_nodes) -> None:
    """Box inpainting of held-out crops through the real nodes on the flow prior ('recommended' preset):
    the particle mean beats stock VAEEncode → VAEDecode of ``A†y`` by a margin, paired per crop."""
    photos, _ = call_node("DWGF_DemoHeldOutImages", which="photos", start=0, count=10000)
    clean = photos[TEST_INDICES].contiguous()
    with torch.inference_mode():
        model, vae, _, negative, *_ = loader.load("unconditional", 1, FLOW)
    inputs = {**node_defaults("DWGF_DegradationOperator"), "operator": "inpaint box (centre)", "box_fraction": 0.5}
    inputs.update(image=clean, image_is="clean (simulate the measurement)", sigma_y=0.001, seed=0)
    degradation, measurement, pseudo_inverse = call_node("DWGF_DegradationOperator", **inputs)
    torch.manual_seed(0)
    (latent,) = call_node("VAEEncode", vae=vae, pixels=pseudo_inverse)
    (measurement_only,) = call_node("VAEDecode", vae=vae, samples=latent)
    settings = {**node_defaults("DWGF_Sampler"), "preset": "recommended", "seed": 0}
    (particles,) = call_node("DWGF_Sampler", model=model, positive=negative, negative=negative, vae=vae,
                             degradation=degradation, measurement=measurement, **settings)
    _, mean, _ = call_node("DWGF_ParticleDecode", particles=particles, vae=vae, paste_known_pixels=False,
                           degradation=degradation, measurement=measurement)

    def per_image(estimate: torch.Tensor) -> torch.Tensor:
        return psnr(estimate[..., :3].clamp(0, 1).permute(0, 3, 1, 2), clean.permute(0, 3, 1, 2))

    gains = per_image(mean) - per_image(measurement_only)
    print(f"flow prior, box inpainting: DWGF {per_image(mean).tolist()} vs measurement-only "
          f"{per_image(measurement_only).tolist()}; gain {float(gains.mean()):.2f} dB")
    assert float(gains.mean()) > MIN_GAIN_DB
