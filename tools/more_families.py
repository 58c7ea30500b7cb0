"""The other image families ComfyUI 0.3.75 loads and the pack accepts, as real networks with random weights.

``tools/sd_architectures.py`` builds SD 1.5, SD 2.1, SDXL, SD3, Flux dev, Z-Image, Lumina 2 and Chroma;
this module builds the rest of the families ``nodes/model_support.py`` accepts (issue 27), each through
its own ``comfy.supported_models`` class and ``get_model`` (so the ``BaseModel`` subclass, prediction
type, noise table, latent format, ``extra_conds`` and concatenated inputs are ComfyUI's), with the
network configuration ComfyUI's detection (``comfy.model_detection``) writes for the published files,
at their width but with fewer blocks (``Family.depth`` against ``Family.full_depth``), random weights:

* the DiTs in SD's 4-channel latent space: AuraFlow (MMDiT, rectified flow, Pile-T5 tokens), PixArt α
  and Σ (eps, T5-XXL tokens, a learned-variance half of the output), Hunyuan-DiT 1.0 and 1.1/1.2
  (v-prediction, CLIP-like and mT5 tokens with their masks, a learned-variance half of the output);
* the transformers in Flux's 16-channel latent space: HiDream (MoE double/single-stream blocks, T5 and
  Llama 3 hidden states of every layer, pooled CLIP), OmniGen2 (Qwen 2.5 hidden states and their mask),
  Flux schnell (no guidance input, unshifted time table) and Flux Fill (96 input channels: the latent,
  the masked image's latent and the 8×8 pixel mask, which ComfyUI fills as "inpaint everything");
* the UNets, with every block of the published layout but a base width of 64 channels instead of 320
  (``SMALL_UNET_CHANNELS``; the text and pooled widths and 64-channel heads kept): SD 2.1 unCLIP (L and H;
  v-prediction, a zero image embedding when no unCLIP conditioning is given), the SDXL refiner and the
  distilled SDXLs (SSD-1B, Segmind Vega, KOALA 700M / 1B, each with its own transformer depths, residual
  blocks and middle block), and SD 1.5 inpainting (9 input channels).

``build(name)`` returns ``sd_architectures.RandomSD`` (MODEL, VAE of its latent space, positive and
negative CONDITIONING as that family's text encoder and CLIPTextEncode hand them over). Their outputs
mean nothing. Used by ``tests/test_accepted_families.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sd_architectures
import torch

# UNets as ComfyUI's detection writes them (comfy/model_detection.py, unet_config_from_diffusers_unet)
_UNET = {"use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
         "legacy": False, "in_channels": 4, "model_channels": 320, "use_linear_in_transformer": True,
         "num_head_channels": 64, "use_temporal_attention": False, "use_temporal_resblock": False}
_SDXL_LIKE = {**_UNET, "num_classes": "sequential", "adm_in_channels": 2816, "context_dim": 2048,
              "channel_mult": [1, 2, 4]}
_SD21_UNCLIP = {**_UNET, "num_classes": "sequential", "num_res_blocks": [2, 2, 2, 2],
                "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "channel_mult": [1, 2, 4, 4],
                "transformer_depth_middle": 1, "context_dim": 1024,
                "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]}
# (the published transformer depths per input block, middle, output block): the distilled SDXLs differ in
# these, in their residual blocks and in whether the middle block exists (-1: no attention, -2: none)
_SDXL_LAYOUTS = {
    "SDXLRefiner": ([0, 0, 4, 4, 4, 4, 0, 0], 4, [0, 0, 0, 4, 4, 4, 4, 4, 4, 0, 0, 0]),
    "SSD1B": ([0, 0, 2, 2, 4, 4], -1, [0, 0, 0, 1, 1, 2, 10, 4, 4]),
    "Segmind_Vega": ([0, 0, 1, 1, 2, 2], -1, [0, 0, 0, 1, 1, 1, 2, 2, 2]),
    "KOALA_700M": ([0, 2, 5], -2, [0, 0, 2, 2, 5, 5]),
    "KOALA_1B": ([0, 2, 6], 6, [0, 0, 2, 2, 6, 6]),
}
_SDXL_RES_BLOCKS = {"SDXLRefiner": [2, 2, 2, 2], "SSD1B": [2, 2, 2], "Segmind_Vega": [2, 2, 2],
                    "KOALA_700M": [1, 1, 1], "KOALA_1B": [1, 1, 1]}


# The UNets are built at this base width instead of 320 (384 for the refiner): the layouts, the text and
# pooled widths (context_dim, adm_in_channels) and the 64-channel heads stay ComfyUI's
SMALL_UNET_CHANNELS = 64


def _sdxl_like(name: str) -> dict[str, Any]:
    depth_in, middle, depth_out = _SDXL_LAYOUTS[name]
    config = {**_SDXL_LIKE, "num_res_blocks": _SDXL_RES_BLOCKS[name], "transformer_depth": depth_in,
              "transformer_depth_middle": middle, "transformer_depth_output": depth_out}
    if name == "SDXLRefiner":
        config.update({"adm_in_channels": 2560, "context_dim": 1280, "channel_mult": [1, 2, 4, 4]})
    return config


@dataclass(frozen=True)
class Family:
    """One family: its ``comfy.supported_models`` class, network config, conditioning and latent space."""

    name: str  # the comfy.supported_models class
    config: dict[str, Any]  # ComfyUI's detection of the published files, with the reduced depth
    depth: dict[str, Any] = field(default_factory=dict)  # the depth keys as built here
    full_depth: dict[str, Any] = field(default_factory=dict)  # the published depth keys
    context: tuple[int, int] = (77, 768)  # the text encoder's (tokens, width)
    pooled: int | None = None  # the pooled vector's width (CONDITIONING "pooled_output")
    extras: dict[str, tuple[int, ...]] = field(default_factory=dict)  # other CONDITIONING tensors: shape
    masks: tuple[str, ...] = ()  # CONDITIONING attention masks (all ones: one prompt, no padding)
    guidance: float | None = None  # FluxGuidance's value on the positive (guidance-distilled Flux)
    latent_channels: int = 4
    image_size: int = 64  # the square image size (pixels) the tests run at
    state_dict: dict[str, Any] = field(default_factory=dict)  # keys get_model reads (SD 2.x: eps or v)
    dtype: torch.dtype = torch.bfloat16
    peculiarity: str = ""  # what the noise-prediction test checks beyond the common path

    @property
    def learned_sigma(self) -> bool:
        """PixArt and Hunyuan-DiT predict a variance too: the network's output has twice the latent
        channels, and its forward (inside ComfyUI's ``apply_model``) keeps the first half."""
        return self.name.startswith(("PixArt", "HunyuanDiT"))


# SD 2.x's get_model tells eps from v by this bias's spread (std > 0.09: v), as for the published files
_V_PREDICTION_KEY = {"output_blocks.11.1.transformer_blocks.0.norm1.bias": torch.linspace(-1.0, 1.0, 8)}
_FLUX = sd_architectures.FLOW_CONFIGS["flux"]
# PixArt's positional embedding divides by round(latent side / 64) patches (pixartms.forward_orig, base_size):
# zero below a 33-pixel latent side (Python rounds 0.5 to 0), which ComfyUI's own samplers hit as well (a
# ZeroDivisionError below 264x264 images); the tests use 320x320 images (40x40 latents)
PIXART_SMALLEST = 320

FAMILIES: dict[str, Family] = {f.name: f for f in (
    # AuraFlow: detection reads cond_seq_dim, max_seq and the block counts (4 joint + 32 single); dim 3072, 12 heads
    Family("AuraFlow", {"cond_seq_dim": 2048, "max_seq": 4096, "in_channels": 4, "out_channels": 4},
           {"n_double_layers": 1, "n_layers": 2}, {"n_double_layers": 4, "n_layers": 36}, context=(256, 2048),
           peculiarity="AuraFlow's shifted discrete flow table (shift 1.73)"),
    Family("PixArtAlpha", {"image_model": "pixart_alpha", "num_heads": 16, "patch_size": 2, "hidden_size": 1152,
                           "in_channels": 4, "model_max_length": 120, "input_size": 128, "pe_interpolation": 2,
                           "micro_condition": True}, {"depth": 1}, {"depth": 28}, context=(120, 4096),
           image_size=PIXART_SMALLEST, peculiarity="learned-variance output channels"),
    Family("PixArtSigma", {"image_model": "pixart_sigma", "num_heads": 16, "patch_size": 2, "hidden_size": 1152,
                           "in_channels": 4, "model_max_length": 300, "micro_condition": False},
           {"depth": 1}, {"depth": 28}, context=(300, 4096), image_size=PIXART_SMALLEST,
           peculiarity="learned-variance output channels"),
    # Hunyuan-DiT 1.1 / 1.2 (DiT-g/2): 4 of 40 blocks keep one long skip connection
    Family("HunyuanDiT", {"image_model": "hydit", "hidden_size": 1408, "mlp_ratio": 4.3637},
           {"depth": 4}, {"depth": 40}, context=(77, 1024), extras={"conditioning_mt5xl": (1, 256, 2048)},
           masks=("attention_mask", "attention_mask_mt5xl"), peculiarity="learned-variance output channels"),
    # Hunyuan-DiT 1.0: image size and style conditions in its extra vector (3968 = 1024 + 6 * 256 + 1408)
    Family("HunyuanDiT1", {"image_model": "hydit1", "hidden_size": 1408, "mlp_ratio": 4.3637, "size_cond": True,
                           "use_style_cond": True}, {"depth": 4}, {"depth": 40}, context=(77, 1024),
           extras={"conditioning_mt5xl": (1, 256, 2048)}, masks=("attention_mask", "attention_mask_mt5xl"),
           peculiarity="learned-variance output channels"),
    # HiDream I1: 16 double + 32 single blocks, each fed one Llama 3 layer (llama_layers), 4 routed experts
    Family("HiDream", {"image_model": "hidream", "attention_head_dim": 128, "axes_dims_rope": [64, 32, 32],
                       "caption_channels": [4096, 4096], "max_resolution": [128, 128], "in_channels": 16,
                       "num_attention_heads": 20, "num_routed_experts": 4, "num_activated_experts": 2,
                       "out_channels": 16, "patch_size": 2, "text_emb_dim": 2048},
           {"num_layers": 1, "num_single_layers": 1, "llama_layers": [0, 31]},
           {"num_layers": 16, "num_single_layers": 32, "llama_layers": "one Llama layer per block (48)"},
           context=(128, 4096), pooled=2048, extras={"conditioning_llama3": (1, 32, 16, 4096)}, latent_channels=16,
           peculiarity="negated output"),
    Family("Omnigen2", {"image_model": "omnigen2", "axes_dim_rope": [40, 40, 40], "axes_lens": [1024, 1664, 1664],
                        "ffn_dim_multiplier": None, "hidden_size": 2520, "in_channels": 16, "multiple_of": 256,
                        "norm_eps": 1e-05, "num_attention_heads": 21, "num_kv_heads": 7, "out_channels": None,
                        "patch_size": 2, "text_feat_dim": 2048, "timestep_scale": 1000.0},
           {"num_layers": 1, "num_refiner_layers": 1}, {"num_layers": 32, "num_refiner_layers": 2},
           context=(16, 2048), masks=("attention_mask",), latent_channels=16,
           peculiarity="reversed time, negated output"),
    Family("FluxSchnell", {**_FLUX, "guidance_embed": False}, {"depth": 1, "depth_single_blocks": 1},
           {"depth": 19, "depth_single_blocks": 38}, context=(16, 4096), pooled=768, latent_channels=16,
           peculiarity="unshifted discrete flow table (shift 1), no guidance input"),
    # Flux.1 Fill dev: 96 = 16 latent + 16 masked-image latent + 64 (the 8x8 pixel mask of each latent pixel)
    Family("FluxInpaint", {**_FLUX, "in_channels": 96}, {"depth": 1, "depth_single_blocks": 1},
           {"depth": 19, "depth_single_blocks": 38}, context=(16, 4096), pooled=768, guidance=30.0, latent_channels=16,
           peculiarity="concatenated image and mask channels"),
    Family("SD21UnclipL", {**_SD21_UNCLIP, "adm_in_channels": 1536}, {"model_channels": SMALL_UNET_CHANNELS},
           {"model_channels": 320}, context=(77, 1024),
           state_dict=_V_PREDICTION_KEY, dtype=torch.float32, peculiarity="zero unCLIP image embedding"),
    Family("SD21UnclipH", {**_SD21_UNCLIP, "adm_in_channels": 2048}, {"model_channels": SMALL_UNET_CHANNELS},
           {"model_channels": 320}, context=(77, 1024),
           state_dict=_V_PREDICTION_KEY, dtype=torch.float32, peculiarity="zero unCLIP image embedding"),
    *(Family(name, _sdxl_like(name), {"model_channels": SMALL_UNET_CHANNELS},
             {"model_channels": 384 if name == "SDXLRefiner" else 320},
             context=(77, 1280 if name == "SDXLRefiner" else 2048),
             pooled=1280, dtype=torch.float32, peculiarity="its own UNet layout")
      for name in _SDXL_LAYOUTS),
    Family("SD15", {**_UNET, "in_channels": 9, "adm_in_channels": None, "num_res_blocks": [2, 2, 2, 2],
                    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "channel_mult": [1, 2, 4, 4],
                    "transformer_depth_middle": 1, "use_linear_in_transformer": False, "context_dim": 768,
                    "num_heads": 8, "num_head_channels": -1,
                    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]},
           {"model_channels": SMALL_UNET_CHANNELS}, {"model_channels": 320},
           dtype=torch.float32, peculiarity="concatenated mask and masked-image channels"),
)}
# the support table's row name where it is not the class's (SD15 above is the 9-channel inpainting variant)
ROW_NAMES = {"SD15": "SD15 inpainting (in_channels 9)"}


def model_class(name: str) -> Any:
    """The family's class in ``comfy.supported_models`` (``None`` in a ComfyUI that predates it)."""
    import comfy.supported_models

    return getattr(comfy.supported_models, name, None)


def model_config(name: str) -> Any:
    family = FAMILIES[name]
    cls = model_class(name)
    if cls is None:
        raise NotImplementedError(f"this ComfyUI has no comfy.supported_models.{name}")
    unet_config = {**family.config, **{k: v for k, v in family.depth.items() if not isinstance(v, str)}}
    config = cls(dict(unet_config))
    config.unet_config.update(unet_config)  # a class's own unet_config keys must not override the network's
    for key, value in getattr(cls, "unet_extra_config", {}).items():
        config.unet_config[key] = value
    return config


def build_model(name: str, seed: int = 0) -> Any:
    """A ``ModelPatcher`` over ComfyUI's ``BaseModel`` of the family (reduced depth, random weights)."""
    import comfy.model_management
    import comfy.model_patcher

    family = FAMILIES[name]
    config = model_config(name)
    config.set_inference_dtype(family.dtype, None)
    offload = comfy.model_management.unet_offload_device()
    base = config.get_model(dict(family.state_dict), "", device=offload)
    sd_architectures.randomize_(base.diffusion_model, seed)
    base.diffusion_model.to(family.dtype)
    return comfy.model_patcher.ModelPatcher(base, load_device=comfy.model_management.get_torch_device(),
                                            offload_device=offload)


def conditioning(name: str, seed: int) -> list:
    """CONDITIONING as the family's text encoder and CLIPTextEncode (and FluxGuidance) give it."""
    family = FAMILIES[name]
    generator = torch.Generator().manual_seed(seed)
    tokens, width = family.context
    extras: dict[str, Any] = {"pooled_output": None if family.pooled is None
                              else torch.randn(1, family.pooled, generator=generator)}
    for key, shape in family.extras.items():
        extras[key] = torch.randn(shape, generator=generator)
    for key in family.masks:  # each mask covers its own token sequence
        length = family.extras["conditioning_mt5xl"][1] if key.endswith("mt5xl") else tokens
        extras[key] = torch.ones(1, length, dtype=torch.long)
    if family.guidance is not None:
        extras["guidance"] = family.guidance
    return [[torch.randn(1, tokens, width, generator=generator), extras]]


def narrow_sd_vae(seed: int = 1, width: int = 32) -> Any:
    """SD's KL-f8 VAE architecture at a quarter of its width (``ch`` 32, not 128), random weights: the
    same latent space and ×8 factor for the families that must run at 320² (PixArt), where the full
    decoder's backward would dominate the test's time."""
    import comfy.sd

    ddconfig = {**sd_architectures.SD_VAE_DDCONFIG, "ch": width}
    vae = comfy.sd.VAE(sd={}, config={"params": {"ddconfig": ddconfig, "embed_dim": 4}})
    sd_architectures.randomize_(vae.first_stage_model, seed)
    return vae


def build(name: str, seed: int = 0) -> sd_architectures.RandomSD:
    """MODEL, VAE (SD's 4-channel KL-f8 — narrowed for the families tested at 320² — or the 16-channel one
    of Flux's latent space), CONDITIONING."""
    family = FAMILIES[name]
    vae = (narrow_sd_vae() if family.image_size > 64 and family.latent_channels == 4
           else sd_architectures.build_vae(latent_channels=family.latent_channels))
    return sd_architectures.RandomSD(name, build_model(name, seed), vae,
                                     conditioning(name, seed + 2), conditioning(name, seed + 3))
