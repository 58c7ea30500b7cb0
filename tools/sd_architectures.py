"""Full-size Stable Diffusion networks with random weights, as real ComfyUI objects.

No checkpoint can be downloaded here, so the real architectures (SD 1.5, SD 2.1 with
v-prediction, SDXL) are built from their published hyper-parameters with ComfyUI's own classes
and filled with random weights. They exercise the shapes, dtypes, conditioning and the cost of the
real networks; their outputs mean nothing. Used by tests and by ``bench/``.

The flow-matching families (issue 18) keep their real width but fewer blocks, so they run on a CPU:
SD3 medium's MMDiT (hidden 1536, 24 heads, shift 3) with 2 of its 24 joint blocks, and Flux dev
(hidden 3072, 24 heads, guidance embedding) with 1 of 19 double-stream and 1 of 38 single-stream
blocks; both with the 16-channel VAE and their own latent scale and shift. Issue 27 adds the other
families ComfyUI 0.3.75 runs in Flux's latent space, the same way: Z-Image (NextDiT, hidden 3840, 30
heads, Qwen3-4B hidden states), Lumina 2 (NextDiT, hidden 2304, 24 heads with 8 key/value heads,
Gemma 2 2B hidden states) and Chroma (Flux's blocks at hidden 3072 without the pooled vector, modulated
by its distilled-guidance approximator; T5-XXL tokens), each with 1 main block (and 1 of each refiner).

The tiny autoencoders DWGF can use for its early iterations (issue 25) are ComfyUI's own TAESD class
loaded the way ComfyUI's Load VAE node loads ``taesd``, ``taesdxl``, ``taesd3`` and ``taef1``: random
encoder and decoder files with the published keys in a ``vae_approx`` folder, read by ``VAELoader``.
"""

from __future__ import annotations

import atexit
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
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

# The flow-matching transformers, at full width (ComfyUI's detection of the published checkpoints),
# with the block counts of ``FLOW_DEPTHS`` (the published ones in ``FULL_DEPTHS``).
FLOW_CONFIGS: dict[str, dict[str, Any]] = {
    "sd3": {"in_channels": 16, "out_channels": 16, "patch_size": 2, "depth": 24, "input_size": None,
            "adm_in_channels": 2048, "num_patches": 36864, "pos_embed_max_size": 192,
            "pos_embed_scaling_factor": None, "x_block_self_attn_layers": [],
            "context_embedder_config": {"target": "torch.nn.Linear",
                                        "params": {"in_features": 4096, "out_features": 1536}}},
    "flux": {"image_model": "flux", "guidance_embed": True, "in_channels": 16, "out_channels": 16,
             "patch_size": 2, "hidden_size": 3072, "num_heads": 24, "mlp_ratio": 4.0, "axes_dim": [16, 56, 56],
             "theta": 10000, "qkv_bias": True, "context_in_dim": 4096, "vec_in_dim": 768},
    # ComfyUI's detection of a NextDiT file (``cap_embedder.1.weight``): dim 3840 is Z-Image (its
    # ``cap_pad_token`` adds the padding to 32 tokens), dim 2304 the original Lumina 2
    "zimage": {"image_model": "lumina2", "patch_size": 2, "in_channels": 16, "dim": 3840, "cap_feat_dim": 2560,
               "qk_norm": True, "n_heads": 30, "n_kv_heads": 30, "axes_dims": [32, 48, 48],
               "axes_lens": [1536, 512, 512], "rope_theta": 256.0, "ffn_dim_multiplier": 8.0 / 3.0,
               "z_image_modulation": True, "time_scale": 1000.0, "pad_tokens_multiple": 32},
    "lumina2": {"image_model": "lumina2", "patch_size": 2, "in_channels": 16, "dim": 2304, "cap_feat_dim": 2304,
                "qk_norm": True, "n_heads": 24, "n_kv_heads": 8, "axes_dims": [32, 32, 32],
                "axes_lens": [300, 512, 512], "rope_theta": 10000.0, "ffn_dim_multiplier": 4.0},
    # a Flux-layout file with ``distilled_guidance_layer`` keys: 64 = 16 channels × a 2×2 patch, no vector_in
    "chroma": {"image_model": "chroma", "in_channels": 64, "out_channels": 64, "patch_size": 2, "hidden_size": 3072,
               "num_heads": 24, "mlp_ratio": 4.0, "axes_dim": [16, 56, 56], "theta": 10000, "qkv_bias": True,
               "context_in_dim": 4096, "in_dim": 64, "out_dim": 3072, "hidden_dim": 5120, "n_layers": 5},
}
FLOW_DEPTHS = {"sd3": {"num_blocks": 2}, "flux": {"depth": 1, "depth_single_blocks": 1},
               "zimage": {"n_layers": 1, "n_refiner_layers": 1}, "lumina2": {"n_layers": 1, "n_refiner_layers": 1},
               "chroma": {"depth": 1, "depth_single_blocks": 1}}
FULL_DEPTHS = {"sd3": {"num_blocks": 24}, "flux": {"depth": 19, "depth_single_blocks": 38},
               "zimage": {"n_layers": 30, "n_refiner_layers": 2}, "lumina2": {"n_layers": 26, "n_refiner_layers": 2},
               "chroma": {"depth": 19, "depth_single_blocks": 38}}
# (token width, pooled width or None): T5-XXL with CLIP L+G / CLIP L; Qwen3-4B's and Gemma 2 2B's hidden
# states; T5-XXL alone (Chroma dropped Flux's pooled CLIP vector)
FLOW_CONTEXT = {"sd3": (4096, 2048), "flux": (4096, 768), "zimage": (2560, None), "lumina2": (2304, None),
                "chroma": (4096, None)}
FLOW_TEXT_MASK = ("zimage", "lumina2")  # their language-model text encoders also return an attention mask
FLOW_MODEL_CLASSES = {"sd3": "SD3", "flux": "Flux", "zimage": "ZImage", "lumina2": "Lumina2", "chroma": "Chroma"}
FLOW_VAE_DDCONFIG = {"double_z": True, "z_channels": 16, "resolution": 256, "in_channels": 3, "out_ch": 3,
                     "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [],
                     "dropout": 0.0}
FLOW_FAMILIES = tuple(FLOW_CONFIGS)

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
    would let activations vanish or explode through 20+ blocks. Floating-point buffers are zeroed:
    SD3's ``pos_embed`` is ``torch.empty`` until a checkpoint fills it, so it held whatever memory it
    got (NaN after some other tests had run).
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
        for buffer in module.buffers():  # e.g. SD3's pos_embed: torch.empty, which a checkpoint would fill
            if buffer.is_floating_point():
                buffer.zero_()


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


def flow_model_class(family: str) -> Any:
    """The family's class in ``comfy.supported_models`` (``None`` in a ComfyUI that predates it)."""
    import comfy.supported_models

    return getattr(comfy.supported_models, FLOW_MODEL_CLASSES[family], None)


def flow_model_config(family: str, full_depth: bool = False) -> Any:
    """ComfyUI's model config of a flow family with this module's (or the published) block counts."""
    model_class = flow_model_class(family)
    if model_class is None:
        raise NotImplementedError(f"this ComfyUI has no comfy.supported_models.{FLOW_MODEL_CLASSES[family]}")
    unet_config = {**FLOW_CONFIGS[family], **(FULL_DEPTHS if full_depth else FLOW_DEPTHS)[family]}
    config = model_class(dict(unet_config))
    config.unet_config.update(unet_config)
    return config


def build_flow_model(family: str, dtype: torch.dtype = torch.bfloat16, seed: int = 0) -> Any:
    """A ``ModelPatcher`` over ComfyUI's ``BaseModel`` of a flow family (reduced depth, random weights)."""
    import comfy.model_management
    import comfy.model_patcher

    config = flow_model_config(family)
    config.set_inference_dtype(dtype, None)
    offload = comfy.model_management.unet_offload_device()
    base = config.get_model({}, "", device=offload)
    randomize_(base.diffusion_model, seed)
    base.diffusion_model.to(dtype)
    return comfy.model_patcher.ModelPatcher(base, load_device=comfy.model_management.get_torch_device(),
                                            offload_device=offload)


def build_vae(seed: int = 1, dtype: torch.dtype | None = None, latent_channels: int = 4) -> Any:
    """The SD/SDXL KL-f8 VAE (83 M parameters; 4 latent channels) or SD3/Flux's (16), random weights.

    SD3's and Flux's VAE has no quant convolutions; it is built the way a user's file loads: a state
    dict with its real keys handed to ``comfy.sd.VAE``, whose detection makes the engine.
    """
    import comfy.sd

    if latent_channels == 4:
        vae = comfy.sd.VAE(sd={}, config={"params": {"ddconfig": dict(SD_VAE_DDCONFIG), "embed_dim": 4}},
                           dtype=dtype)
        randomize_(vae.first_stage_model, seed)
        return vae
    from comfy.ldm.models.autoencoder import AutoencodingEngine

    ddconfig = {**FLOW_VAE_DDCONFIG, "z_channels": latent_channels}
    blueprint = AutoencodingEngine(
        regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
        encoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Encoder", "params": ddconfig},
        decoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Decoder", "params": ddconfig})
    randomize_(blueprint, seed)
    return comfy.sd.VAE(sd=blueprint.state_dict(), dtype=dtype)


def conditioning(family: str, batch: int = 1, tokens: int = 77, seed: int = 2) -> Any:
    """CONDITIONING with the family's context width (and SDXL's, SD3's and Flux's pooled vector; the text
    encoder's attention mask for Z-Image and Lumina 2)."""
    generator = torch.Generator().manual_seed(seed)
    extras: dict[str, Any] = {}
    if family in FLOW_CONTEXT:  # as CLIPTextEncode gives it: a pooled_output entry even when it is None
        width, pooled = FLOW_CONTEXT[family]
        extras["pooled_output"] = None if pooled is None else torch.randn(batch, pooled, generator=generator)
        if family in FLOW_TEXT_MASK:  # one prompt, no padding: all ones
            extras["attention_mask"] = torch.ones(batch, tokens, dtype=torch.long)
        if family == "flux":
            extras["guidance"] = 3.5  # what FluxGuidance puts on the positive
        return [[torch.randn(batch, tokens, width, generator=generator), extras]]
    width = UNET_CONFIGS[family]["context_dim"]
    if family == "sdxl":
        extras["pooled_output"] = torch.randn(batch, 1280, generator=generator)
    return [[torch.randn(batch, tokens, width, generator=generator), extras]]


def build_random_sd(family: str, dtype: torch.dtype = torch.float32) -> RandomSD:
    if family in FLOW_FAMILIES:
        return RandomSD(family, build_flow_model(family, dtype), build_vae(latent_channels=16),
                        conditioning(family, tokens=16, seed=2), conditioning(family, tokens=16, seed=3))
    return RandomSD(family, build_model(family, dtype), build_vae(), conditioning(family, seed=2),
                    conditioning(family, seed=3))


# ComfyUI's tiny VAEs (``comfy.taesd.taesd.TAESD``): latent channels; the scale and shift ComfyUI's
# ``VAELoader.load_taesd`` sets are read from ComfyUI itself
TAESD_CHANNELS = {"taesd": 4, "taesdxl": 4, "taesd3": 16, "taef1": 16}
FAMILY_TAESD = {"sd15": "taesd", "sd21v": "taesd", "sdxl": "taesdxl", "sd3": "taesd3", "flux": "taef1",
                "zimage": "taef1", "lumina2": "taef1", "chroma": "taef1"}  # the last three: Flux's latent space
_TAESD_FOLDER: list[Path] = []  # the vae_approx folder this process registered with ComfyUI


def write_taesd_files(name: str, folder: Path, seed: int = 5) -> None:
    """``{name}_encoder.safetensors`` and ``{name}_decoder.safetensors`` with random weights, keyed as the
    published files (the TAESD ``Encoder`` / ``Decoder`` ``nn.Sequential`` of this ComfyUI copy)."""
    import inspect

    import safetensors.torch
    from comfy.taesd import taesd

    channels = TAESD_CHANNELS[name]
    if "latent_channels" in inspect.signature(taesd.Encoder).parameters:
        parts = {"encoder": taesd.Encoder(latent_channels=channels), "decoder": taesd.Decoder(latent_channels=channels)}
    elif channels == 4:  # the 2024 copy: 4 latent channels only
        parts = {"encoder": taesd.Encoder(), "decoder": taesd.Decoder()}
    else:
        raise NotImplementedError(f"this ComfyUI's TAESD has 4 latent channels only; {name} needs {channels}")
    folder.mkdir(parents=True, exist_ok=True)
    for offset, (part, network) in enumerate(parts.items()):
        randomize_(network, seed + offset)
        weights = {key: value.contiguous() for key, value in network.state_dict().items()}
        safetensors.torch.save_file(weights, str(folder / f"{name}_{part}.safetensors"))


def build_taesd(name: str, seed: int = 5) -> Any:
    """ComfyUI's TAESD ``name`` (taesd, taesdxl, taesd3, taef1) with random weights, built by ComfyUI's own
    ``VAELoader`` from files in a ``vae_approx`` folder (so the state dict, ``vae_scale`` and
    ``vae_shift`` are exactly what Load VAE gives). Needs ComfyUI imported (``comfyui_env``)."""
    import folder_paths

    import nodes

    if not _TAESD_FOLDER:
        _TAESD_FOLDER.append(Path(tempfile.mkdtemp(prefix="dwgf-vae-approx-")))
        atexit.register(shutil.rmtree, _TAESD_FOLDER[0], ignore_errors=True)  # 38 MB a run otherwise
        folder_paths.add_model_folder_path("vae_approx", str(_TAESD_FOLDER[0]))
    folder = _TAESD_FOLDER[0]
    write_taesd_files(name, folder, seed)
    invalidate = getattr(folder_paths, "filename_list_cache", None)
    if isinstance(invalidate, dict):
        invalidate.pop("vae_approx", None)
    (vae,) = nodes.VAELoader().load_vae(name)
    return vae


def write_random_checkpoint(family: str, path: Path, seed: int = 0) -> Path:
    """A single-file checkpoint of ``family`` (``sd15``) with random UNet, VAE and text-encoder weights,
    written by ComfyUI's own ``save_checkpoint``, so a server's stock *Load Checkpoint* loads it the
    way it loads a user's file (the soak test and bench, issue 29). The UNet is stored in fp16 (the
    published files' dtype); ComfyUI converts on load. Needs ComfyUI imported (``comfyui_env``)."""
    import comfy.sd
    import comfy.supported_models

    require_family = {"sd15": comfy.supported_models.SD15}
    if family not in require_family:
        raise NotImplementedError(f"random checkpoints are written for {sorted(require_family)}, not {family!r}")
    with torch.no_grad():  # the 2024 copy's CLIP writes its weights in place while it is built
        model = build_model(family, torch.float16, seed=seed)
        vae = build_vae(seed=seed + 1)
        clip_target = require_family[family](dict(UNET_CONFIGS[family])).clip_target()
        clip = comfy.sd.CLIP(target=clip_target)
        randomize_(clip.cond_stage_model, seed + 2)
        path.parent.mkdir(parents=True, exist_ok=True)
        comfy.sd.save_checkpoint(str(path), model, clip=clip, vae=vae)
    return path


if __name__ == "__main__":  # python tools/sd_architectures.py sd15 OUT.safetensors: a random checkpoint file
    import sys

    import comfyui_env

    comfyui_env.import_comfyui()
    print(write_random_checkpoint(sys.argv[1], Path(sys.argv[2])))
