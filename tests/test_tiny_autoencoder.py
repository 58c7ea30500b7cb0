"""The demo model's tiny autoencoder (the Demo Model node's ``fast_vae``), through the real ComfyUI.

Thresholds are set from measurements of the shipped weights (stated next to each; 84 held-out
photo crops, never trained on), with a margin, so they fail on a regression of the weights, the
loader or ComfyUI's handling of the VAE, not on noise.
"""

from __future__ import annotations

import json

import pytest
import torch
from test_default_model import decode, encode  # the stock VAEEncode / VAEDecode calls

# -- thresholds (shipped fp16 weights, torch 2.14.1, ComfyUI 0.3.75) ------------------------------
MAX_TINY_MEGABYTES = 2.5  # the model folder's 32 MB budget; measured: 0.98 MB
MAX_FOLDER_MEGABYTES = 32.0
MIN_ROUND_TRIP_PSNR_DB = 22.5  # tiny VAEEncode → VAEDecode vs the photos; measured: 23.29 dB
MIN_DECODE_PSNR_DB = 22.0  # tiny VAEDecode of the full VAEEncode's latents vs the photos; measured: 22.85 dB
MIN_AGREEMENT_PSNR_DB = 24.8  # tiny vs full VAEDecode of the same latents; measured: 25.60 dB
MIN_SAVED_MEMORY_RATIO = 5.5  # full / tiny saved-for-backward, 4 particles, 64×64; measured: 6.56 (86.1 / 13.1 MiB)
PARTICLES = 4


@pytest.fixture(scope="module")
def demo_outputs(comfy_nodes) -> tuple:
    """The DWGF Demo Model node's outputs, built in inference mode as ComfyUI runs nodes."""
    with torch.inference_mode():
        return comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_DemoModel"]().load("photo", 1)


@pytest.fixture(scope="module")
def photos(comfy_nodes) -> torch.Tensor:
    node = comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_DemoHeldOutImages"]()
    with torch.inference_mode():
        return node.load("photos", 0, 10000)[0]


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean per-image PSNR of IMAGE batches in [0, 1]."""
    from dwgf.metrics import psnr

    return float(psnr(a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2)).mean())


def test_shipped_tiny_vae_is_a_small_safetensors_described_in_model_json(core):
    folder = core.demo_model.MODEL_DIR
    record = json.loads((folder / "model.json").read_text())["tiny_vae"]
    assert record["file"].endswith(".safetensors")
    assert (folder / record["file"]).stat().st_size / 2**20 < MAX_TINY_MEGABYTES
    assert sum(p.stat().st_size for p in folder.iterdir()) / 2**20 < MAX_FOLDER_MEGABYTES
    network = core.tiny_autoencoder.build_tiny_autoencoder(core.demo_model.tiny_vae_architecture(),
                                                           core.demo_model.load_tiny_vae_tensors())
    assert network.downscale_ratio == 2 and network.latent_channels == 4
    names = {type(m).__name__ for m in network.modules()}
    assert not names & {"GroupNorm", "BatchNorm2d", "LayerNorm", "MultiheadAttention"}, names


def test_demo_model_appends_fast_vae_as_a_comfy_vae_of_its_latent_space(comfy_nodes, demo_outputs):
    import comfy.sd

    node = comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_DemoModel"]
    assert node.RETURN_NAMES[:5] == ("model", "vae", "positive", "negative", "empty_latent")  # links stay valid
    assert node.RETURN_NAMES[5] == "fast_vae" and node.RETURN_TYPES[5] == "VAE"
    assert len(node.OUTPUT_TOOLTIPS) == len(node.RETURN_TYPES)
    fast_vae = demo_outputs[5]
    assert isinstance(fast_vae, comfy.sd.VAE)
    assert fast_vae.downscale_ratio == 2 and fast_vae.upscale_ratio == 2 and fast_vae.latent_channels == 4
    assert fast_vae.patcher.model is fast_vae.first_stage_model  # ComfyUI loads the network actually run
    assert type(fast_vae.first_stage_model).__name__ == "TinyAutoencoder"


def test_fast_vae_round_trip_reproduces_heldout_photos(comfy_nodes, demo_outputs, photos):
    """Stock VAEEncode → VAEDecode, both through the tiny autoencoder."""
    fast_vae = demo_outputs[5]
    latents = encode(comfy_nodes, fast_vae, photos)
    assert latents.shape == (len(photos), 4, 16, 16)
    assert psnr_db(decode(comfy_nodes, fast_vae, latents), photos) > MIN_ROUND_TRIP_PSNR_DB


def test_fast_vae_decodes_the_full_encoders_latents_like_the_full_decoder(comfy_nodes, demo_outputs, photos):
    """The same LATENT decoded by both VAEs: the tiny one reproduces the photo and agrees with the full one."""
    vae, fast_vae = demo_outputs[1], demo_outputs[5]
    latents = encode(comfy_nodes, vae, photos)
    fast = decode(comfy_nodes, fast_vae, latents)
    assert psnr_db(fast, photos) > MIN_DECODE_PSNR_DB
    assert psnr_db(fast, decode(comfy_nodes, vae, latents)) > MIN_AGREEMENT_PSNR_DB


def test_tiny_decoder_saves_several_times_less_for_backward(demo_outputs, single_thread):
    """What DWGF pays per iteration: the graph of a decode of every particle (weights left out)."""
    from comfyui_env import pack_submodule

    from dwgf.memory import saved_bytes_of

    adapter = pack_submodule("nodes.comfy_adapter")
    full, tiny = demo_outputs[1].first_stage_model, demo_outputs[5].first_stage_model
    for network in (full, tiny):
        adapter.make_trainable_copy_of_weights(network)  # built in inference mode, as ComfyUI does
    z = torch.randn(PARTICLES, 4, 32, 32)
    full_bytes = saved_bytes_of(full.decode, z, list(full.parameters()))
    tiny_bytes = saved_bytes_of(tiny.decode, z, list(tiny.parameters()))
    assert full_bytes > MIN_SAVED_MEMORY_RATIO * tiny_bytes, (full_bytes, tiny_bytes)
