"""Qwen-Image, Flux.2 and HunyuanImage 2.1: real transformers (1 block of each kind) and their real VAEs, random
weights, as the ComfyUI objects a user's loaders give (issue 27 item 2).

The three image families ComfyUI 0.3.75 runs outside the SD / Flux.1 latent spaces:

* **Qwen-Image** (``comfy.supported_models.QwenImage``; MMDiT, hidden 3072 = 24 heads x 128, Qwen2.5-VL-7B hidden
  states of width 3584, ``ModelSamplingFlux`` with shift 1.15) on the **Wan 2.1 causal video VAE**: 16-channel
  latents with a time axis (``Wan21``, ``latent_dimensions`` 3), 8x8 pixels per latent pixel, one image being
  one latent frame ``(N, 16, 1, H/8, W/8)``; its network takes that 5-D layout;
* **Flux.2 dev** (``Flux2``; double/single-stream at hidden 6144 = 48 heads x 128, shared modulation, SiLU-gated
  MLPs at ratio 3, no biases, guidance embedding, Mistral hidden states of width 15360, shift 2.02) on its own
  VAE: Flux.1's autoencoder with 32 channels whose latents are 2x2 patches normalised by a batch norm's running
  statistics, 128 channels at 16x16 pixels per latent pixel;
* **HunyuanImage 2.1** (``HunyuanImage21``; HunyuanVideo's double/single-stream blocks at hidden 3584 = 28 heads
  x 128, 2-D rotary axes, a ByT5 glyph input, Qwen2.5-VL hidden states of width 3584, rectified flow with
  shift 5) on its x32 VAE: 64 channels, 32x32 pixels per latent pixel.

Each transformer is built through its ``comfy.supported_models`` class and ``get_model`` with the configuration
``comfy.model_detection`` writes for the published files, at full width but with 1 block (``DEPTHS``; the
published counts in ``FULL_DEPTHS``), filled by ``sd_architectures.randomize_``. Each VAE is a state dict with
the published file's keys and shapes, random values, handed to ``comfy.sd.VAE(sd=...)`` so ComfyUI's own
detection makes it (exactly the object Load VAE gives). Their outputs mean nothing. Used by
``tests/test_new_latent_families.py``.
"""

from __future__ import annotations

from typing import Any

import sd_architectures
import torch

FAMILIES = ("qwen_image", "flux2", "hunyuan_image21")
MODEL_CLASSES = {"qwen_image": "QwenImage", "flux2": "Flux2", "hunyuan_image21": "HunyuanImage21"}
NAMES = {"qwen_image": "Qwen-Image", "flux2": "Flux.2", "hunyuan_image21": "HunyuanImage 2.1"}

# comfy.model_detection's configs for the published files (Qwen-Image: ``txt_norm.weight``; Flux.2:
# ``double_stream_modulation_img.lin.weight``; HunyuanImage 2.1: HunyuanVideo's keys with 64-channel 2-D patches)
CONFIGS: dict[str, dict[str, Any]] = {
    "qwen_image": {"image_model": "qwen_image", "in_channels": 64},
    "flux2": {"image_model": "flux2", "axes_dim": [32, 32, 32, 32], "num_heads": 48, "mlp_ratio": 3.0, "theta": 2000,
              "out_channels": 128, "global_modulation": True, "vec_in_dim": None, "mlp_silu_act": True,
              "qkv_bias": False, "ops_bias": False, "default_ref_method": "index", "ref_index_scale": 10.0,
              "in_channels": 128, "hidden_size": 6144, "context_in_dim": 15360, "patch_size": 1,
              "guidance_embed": True},
    "hunyuan_image21": {"image_model": "hunyuan_video", "in_channels": 64, "patch_size": [1, 1], "out_channels": 64,
                        "vec_in_dim": None, "axes_dim": [64, 64], "meanflow": False, "context_in_dim": 3584,
                        "hidden_size": 3584, "mlp_ratio": 4.0, "num_heads": 28, "theta": 256, "qkv_bias": True,
                        "byt5": True, "guidance_embed": False, "use_cond_type_embedding": False,
                        "vision_in_dim": None},
}
DEPTHS = {"qwen_image": {"num_layers": 1}, "flux2": {"depth": 1, "depth_single_blocks": 1},
          "hunyuan_image21": {"depth": 1, "depth_single_blocks": 1}}
FULL_DEPTHS = {"qwen_image": {"num_layers": 60}, "flux2": {"depth": 8, "depth_single_blocks": 48},
               "hunyuan_image21": {"depth": 20, "depth_single_blocks": 40}}
CONTEXT_WIDTH = {"qwen_image": 3584, "flux2": 15360, "hunyuan_image21": 3584}
VAE_DOWNSCALE = {"qwen_image": 8, "flux2": 16, "hunyuan_image21": 32}
LATENT_CHANNELS = {"qwen_image": 16, "flux2": 128, "hunyuan_image21": 64}


def model_class(family: str) -> Any:
    """The family's class in ``comfy.supported_models`` (``None`` in a ComfyUI that predates it)."""
    import comfy.supported_models

    return getattr(comfy.supported_models, MODEL_CLASSES[family], None)


def build_model(family: str, dtype: torch.dtype = torch.bfloat16, seed: int = 0) -> Any:
    """A ``ModelPatcher`` over ComfyUI's ``BaseModel`` of the family (1 block, random weights)."""
    import comfy.model_management
    import comfy.model_patcher

    cls = model_class(family)
    if cls is None:
        raise NotImplementedError(f"this ComfyUI has no comfy.supported_models.{MODEL_CLASSES[family]}")
    unet_config = {**CONFIGS[family], **DEPTHS[family]}
    config = cls(dict(unet_config))
    config.unet_config.update(unet_config)
    config.set_inference_dtype(dtype, None)
    offload = comfy.model_management.unet_offload_device()
    base = config.get_model({}, "", device=offload)
    sd_architectures.randomize_(base.diffusion_model, seed)
    base.diffusion_model.to(dtype)
    return comfy.model_patcher.ModelPatcher(base, load_device=comfy.model_management.get_torch_device(),
                                            offload_device=offload)


def vae_state_dict(family: str, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random weights under the published VAE file's keys (and shapes)."""
    if family == "qwen_image":  # Wan 2.1's VAE (the one Qwen-Image ships): dim 96, 16 latent channels
        from comfy.ldm.wan.vae import WanVAE

        network = WanVAE(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                         temperal_downsample=[False, True, True], dropout=0.0)
    elif family == "flux2":  # Flux.1's autoencoder at 32 channels, latents as 2x2 patches under a batch norm
        from comfy.ldm.models.autoencoder import AutoencoderKL

        ddconfig = {**sd_architectures.FLOW_VAE_DDCONFIG, "z_channels": 32, "batch_norm_latent": True}
        network = AutoencoderKL(ddconfig=ddconfig, embed_dim=32)
    else:  # HunyuanImage 2.1's x32 VAE, as comfy.sd.VAE builds it for a 64-channel decoder.conv_in
        from comfy.ldm.models.autoencoder import AutoencodingEngine

        ddconfig = {"block_out_channels": [128, 256, 512, 512, 1024, 1024], "in_channels": 3, "out_channels": 3,
                    "num_res_blocks": 2, "ffactor_spatial": 32, "downsample_match_channel": True,
                    "upsample_match_channel": True, "z_channels": 64}
        network = AutoencodingEngine(
            regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
            encoder_config={"target": "comfy.ldm.hunyuan_video.vae.Encoder", "params": ddconfig},
            decoder_config={"target": "comfy.ldm.hunyuan_video.vae.Decoder", "params": ddconfig})
    sd_architectures.randomize_(network, seed)
    with torch.no_grad():
        for name, param in network.named_parameters():
            if name.endswith("gamma"):  # Wan's RMS norm scales (shaped (C, 1, 1[, 1])): 1, as for other norms
                param.fill_(1.0)
        bn = getattr(network, "bn", None)
        if bn is not None:  # running statistics of a trained file: unit variance, zero mean
            bn.running_var.fill_(1.0)
    return {key: value.detach().clone().contiguous() for key, value in network.state_dict().items()}


def build_vae(family: str, seed: int = 1) -> Any:
    """The family's VAE as ``comfy.sd.VAE(sd=...)`` builds it from a file (Load VAE's path)."""
    import comfy.sd

    return comfy.sd.VAE(sd=vae_state_dict(family, seed))


def conditioning(family: str, batch: int = 1, tokens: int = 16, seed: int = 2) -> Any:
    """CONDITIONING as the family's text encoder hands it over: a language model's hidden states, no pooled
    vector; Flux.2's FluxGuidance value; HunyuanImage 2.1's attention mask."""
    generator = torch.Generator().manual_seed(seed)
    extras: dict[str, Any] = {"pooled_output": None}
    if family == "flux2":
        extras["guidance"] = 4.0  # what FluxGuidance puts on the positive
    if family == "hunyuan_image21":
        extras["attention_mask"] = torch.ones(batch, tokens, dtype=torch.long)
    return [[torch.randn(batch, tokens, CONTEXT_WIDTH[family], generator=generator), extras]]


def build(family: str, dtype: torch.dtype = torch.bfloat16) -> sd_architectures.RandomSD:
    """MODEL, VAE, positive and negative CONDITIONING of the family (random weights)."""
    return sd_architectures.RandomSD(family, build_model(family, dtype), build_vae(family),
                                     conditioning(family, seed=2), conditioning(family, seed=3))
