"""Full-size Stable Diffusion networks with random weights, as real ComfyUI objects.

No checkpoint can be downloaded here, so the real architectures (SD 1.5, SD 2.1 with
v-prediction, SDXL) are built from their published hyper-parameters with ComfyUI's own classes
and filled with random weights. They exercise the shapes, dtypes, conditioning and the cost of the
real networks; their outputs mean nothing. Used by tests and by ``bench/``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

_COMMON = {"use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
           "legacy": False, "in_channels": 4, "model_channels": 320, "use_temporal_attention": False,
           "use_temporal_resblock": False}

UNET_CONFIGS: dict[str, dict[str, Any]] = {
    "sd15": {**_COMMON, "adm_in_channels": None, "num_res_blocks": [2, 2, 2, 2],
             "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "channel_mult": [1, 2, 4, 4],
             "transformer_depth_middle": 1, "use_linear_in_transformer": False, "context_dim": 768,
             "num_heads": 8, "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]},
    "sd21v": {**_COMMON, "adm_in_channels": None, "num_res_blocks": [2, 2, 2, 2],
              "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "channel_mult": [1, 2, 4, 4],
              "transformer_depth_middle": 1, "use_linear_in_transformer": True, "context_dim": 1024,
              "num_head_channels": 64, "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]},
    "sdxl": {**_COMMON, "num_classes": "sequential", "adm_in_channels": 2816, "num_res_blocks": [2, 2, 2],
             "transformer_depth": [0, 0, 2, 2, 10, 10], "channel_mult": [1, 2, 4], "transformer_depth_middle": 10,
             "use_linear_in_transformer": True, "context_dim": 2048, "num_head_channels": 64,
             "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10]},
}

SD_VAE_DDCONFIG = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                   "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}


@dataclass
class RandomSD:
    """A MODEL, a VAE and CONDITIONING of one SD family, with random weights."""

    family: str
    model: Any
    vae: Any
    positive: Any
    negative: Any


def randomize_(module: torch.nn.Module, seed: int) -> None:
    """Fill weights in place: fan-in scaled normals, unit norm scales, zero biases.

    ComfyUI's layers skip initialisation (fresh weights can be NaN), and a plain small normal
    would let activations vanish or explode through 20+ blocks.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.ndim >= 2:
                fan_in = math.prod(param.shape[1:])
                values = torch.randn(param.shape, generator=generator) / math.sqrt(fan_in)
            elif name.endswith("bias"):
                values = torch.zeros(param.shape)
            else:
                values = torch.ones(param.shape)
            param.copy_(values.to(param.dtype))


def build_model(family: str, dtype: torch.dtype = torch.float32, seed: int = 0) -> Any:
    """A ``ModelPatcher`` over the family's ``BaseModel`` (SD 2.1 with v-prediction)."""
    import comfy.model_base
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    classes = {"sd15": comfy.supported_models.SD15, "sd21v": comfy.supported_models.SD20,
               "sdxl": comfy.supported_models.SDXL}
    config = classes[family](dict(UNET_CONFIGS[family]))
    config.set_inference_dtype(dtype, None)
    offload = comfy.model_management.unet_offload_device()
    if family == "sd21v":
        base = comfy.model_base.BaseModel(config, model_type=comfy.model_base.ModelType.V_PREDICTION, device=offload)
    else:
        base = config.get_model({}, "", device=offload)
    randomize_(base.diffusion_model, seed)
    base.diffusion_model.to(dtype)
    return comfy.model_patcher.ModelPatcher(base, load_device=comfy.model_management.get_torch_device(),
                                            offload_device=offload)


def build_vae(seed: int = 1, dtype: torch.dtype | None = None) -> Any:
    """The SD/SDXL KL-f8 VAE (83 M parameters) with random weights."""
    import comfy.sd

    vae = comfy.sd.VAE(sd={}, config={"params": {"ddconfig": dict(SD_VAE_DDCONFIG), "embed_dim": 4}}, dtype=dtype)
    randomize_(vae.first_stage_model, seed)
    return vae


def conditioning(family: str, batch: int = 1, tokens: int = 77, seed: int = 2) -> Any:
    """CONDITIONING with the family's context width (and SDXL's pooled vector)."""
    width = UNET_CONFIGS[family]["context_dim"]
    generator = torch.Generator().manual_seed(seed)
    extras: dict[str, Any] = {}
    if family == "sdxl":
        extras["pooled_output"] = torch.randn(batch, 1280, generator=generator)
    return [[torch.randn(batch, tokens, width, generator=generator), extras]]


def build_random_sd(family: str, dtype: torch.dtype = torch.float32) -> RandomSD:
    return RandomSD(family, build_model(family, dtype), build_vae(), conditioning(family, seed=2),
                    conditioning(family, seed=3))
