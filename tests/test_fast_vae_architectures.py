"""ComfyUI's own tiny VAE (TAESD) as DWGF's fast autoencoder (issue 25), in the latent spaces of SD 1.5,
SDXL, SD3 and Flux.

Each TAESD is ComfyUI's ``comfy.taesd.taesd.TAESD`` with random weights, loaded by ComfyUI's own
``VAELoader`` from encoder and decoder files with the published keys (``tools/sd_architectures.py``),
so ``vae_scale`` and ``vae_shift`` are what Load VAE sets. The MODEL only lends its latent format and
noise schedule, so it is ComfyUI's real model class built on the ``meta`` device (no weights); the
full VAE is the real KL-f8 architecture with random weights. Latents are 4×4 (32² images).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

# ComfyUI's VAELoader.load_taesd: (latent channels, vae_scale, vae_shift) of each tiny VAE
PUBLISHED = {"taesd": (4, 0.18215, 0.0), "taesdxl": (4, 0.13025, 0.0), "taesd3": (16, 1.5305, 0.0609),
             "taef1": (16, 0.3611, 0.1159)}
FAMILIES = ("sd15", "sdxl", "sd3", "flux")
LATENT = 4  # 32² images: the smallest the full VAE's three downsamplings take


def model_on_meta(family: str) -> object:
    """ComfyUI's MODEL (``ModelPatcher`` over the family's ``BaseModel``), its network on the meta device."""
    import comfy.model_patcher
    import comfy.supported_models
    import sd_architectures

    if family in sd_architectures.FLOW_FAMILIES:
        config = sd_architectures.flow_model_config(family)
    else:
        classes = {"sd15": comfy.supported_models.SD15, "sdxl": comfy.supported_models.SDXL}
        config = classes[family](dict(sd_architectures.UNET_CONFIGS[family]))
    config.set_inference_dtype(torch.float32, None)
    base = config.get_model({}, "", device=torch.device("meta"))
    return comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


@pytest.fixture(scope="module")
def full_vaes(comfy_nodes) -> dict[int, object]:
    """The full KL-f8 VAE of each latent width, built once (random weights)."""
    return {}


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, comfy_nodes, full_vaes) -> dict:
    import comfy.supported_models
    import comfyui_env
    import sd_architectures

    name = request.param
    if name in sd_architectures.FLOW_FAMILIES and not hasattr(comfy.supported_models, "SD3"):
        pytest.skip("this ComfyUI predates SD3 and Flux, and its TAESD has 4 latent channels only")
    tiny_name = sd_architectures.FAMILY_TAESD[name]
    channels = PUBLISHED[tiny_name][0]
    with torch.inference_mode():
        tiny = sd_architectures.build_taesd(tiny_name)
        if channels not in full_vaes:
            full_vaes[channels] = sd_architectures.build_vae(latent_channels=channels)
    model = model_on_meta(name)
    adapter = comfyui_env.pack_submodule("nodes.comfy_adapter")
    return {"name": name, "tiny_name": tiny_name, "tiny": tiny, "vae": full_vaes[channels], "model": model,
            "channels": channels, "adapter": adapter, "latent_format": model.model.latent_format}


def test_the_tiny_vae_is_comfyuis_taesd_with_the_loaders_scale_and_shift(family) -> None:
    from comfy.taesd.taesd import TAESD

    network = family["tiny"].first_stage_model
    channels, scale, shift = PUBLISHED[family["tiny_name"]]
    assert type(network) is TAESD
    assert family["adapter"].vae_latent_channels(family["tiny"]) == channels
    assert family["adapter"].vae_downscale_ratio(family["tiny"]) == 8
    assert float(network.vae_scale.detach()) == pytest.approx(scale)
    assert float(getattr(network, "vae_shift", torch.zeros(())).detach()) == pytest.approx(shift)
    latent_format = family["latent_format"]  # the model's own latent space is the tiny VAE's
    assert float(latent_format.scale_factor) == pytest.approx(scale)
    assert float(getattr(latent_format, "shift_factor", 0.0) or 0.0) == pytest.approx(shift)


def test_prepare_vae_decodes_and_encodes_like_comfyuis_taesd(family, single_thread) -> None:
    """``decode`` is TAESD's own decode of the raw latent (ComfyUI's VAE Decode, before its clamp), and
    ``encode`` undoes TAESD's scale and shift into the model's latent space."""
    adapter, vae, latent_format = family["adapter"], family["tiny"], family["latent_format"]
    autoencoder = adapter.prepare_fast_vae(vae, family["vae"], family["model"],
                                           adapter.prepare_vae(family["vae"], family["model"]))
    assert autoencoder.latent_channels == family["channels"] and autoencoder.downscale == 8
    z = torch.randn(2, family["channels"], LATENT, LATENT, generator=torch.Generator().manual_seed(0))
    image = torch.rand(2, 3, 8 * LATENT, 8 * LATENT, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        decoded = autoencoder.decode(z)
        raw = latent_format.process_out(z)
        expected = vae.first_stage_model.decode(raw).float()
        encoded = autoencoder.encode(image)
        network = vae.first_stage_model
        direct = network.taesd_encoder(image * 0.5 + 0.5).float()  # (E/scale + shift − shift)·scale
    assert decoded.shape == (2, 3, 8 * LATENT, 8 * LATENT) and decoded.dtype == torch.float32
    assert torch.allclose(decoded, expected, atol=1e-5)
    with torch.inference_mode():  # ComfyUI's own VAE Decode: the same image in [0, 1], clamped
        comfy_images = vae.decode(raw).reshape(-1, 8 * LATENT, 8 * LATENT, 3)
    assert torch.allclose(comfy_images.movedim(-1, 1).float(), ((decoded + 1) / 2).clamp(0, 1), atol=1e-4)
    assert encoded.shape == z.shape
    assert torch.allclose(encoded, direct, atol=1e-4 * max(1.0, direct.abs().max().item()))
    assert torch.allclose(encoded, latent_format.process_in(network.encode(image)).float(), atol=1e-5)


class PriorOnTheModelsSchedule:
    """The exact denoiser of a ``N(0, I)`` latent on the model's own noise schedule (the network is on meta)."""

    def __init__(self, alphas_cumprod: torch.Tensor) -> None:
        self.alphas_cumprod = alphas_cumprod

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return x / (1.0 + sigma**2).view(-1, *[1] * (x.ndim - 1))


def count_calls(module: torch.nn.Module, calls: list[int]) -> object:
    return module.register_forward_hook(lambda *_: calls.append(1))


def test_short_dwgf_run_with_taesd_as_the_fast_autoencoder(family, core, single_thread) -> None:
    """Three iterations, the last through the full VAE: TAESD decodes the first two (with graph, and for
    D(E(·))), the full VAE the last; the particles stay finite."""
    flow, operators = core.flow, core.operators
    adapter, model = family["adapter"], family["model"]
    full = adapter.prepare_vae(family["vae"], model)
    fast = adapter.prepare_fast_vae(family["tiny"], family["vae"], model, full)
    operator = operators.Inpainting(operators.centered_box_mask(8 * LATENT, 8 * LATENT, 0.5))
    image = torch.rand(1, 3, 8 * LATENT, 8 * LATENT, generator=torch.Generator().manual_seed(2)) * 2 - 1
    measurement = operator.forward(image)
    config = flow.DWGFConfig(particles=1, steps=3, seed=0, full_decoder_steps=1)
    decoders = {"fast": [], "full": []}
    handles = [count_calls(family["tiny"].first_stage_model.taesd_decoder, decoders["fast"]),
               count_calls(family["vae"].first_stage_model.decoder, decoders["full"])]
    try:
        z = flow.run_dwgf(PriorOnTheModelsSchedule(adapter.model_alphas_cumprod(model)), full, config,
                          (family["channels"], LATENT, LATENT), operator, measurement, device="cpu",
                          fast_autoencoder=fast)
    finally:
        for handle in handles:
            handle.remove()
    assert z.shape == (1, family["channels"], LATENT, LATENT) and z.dtype == torch.float32
    assert torch.isfinite(z).all()
    # D(z) with graph and D(E(·)) each iteration (ae_every 1): two TAESD iterations, one full one
    assert (len(decoders["fast"]), len(decoders["full"])) == (4, 2)
