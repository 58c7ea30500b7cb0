"""Every image-model family ComfyUI loads, as the MODEL a loader would hand the samplers, without weights.

``build(row)`` makes a family's real ``BaseModel`` through its own ``comfy.supported_models`` class
(``get_model``, so the subclass, ``model_type``, sampling object, latent format, config flags and
concatenated inputs are ComfyUI's) and wraps it in a ``ModelPatcher`` as a loader does. The network
itself is left out with ComfyUI's own ``disable_unet_model_creation`` config flag (meant for loaders that
bring their own network): no weights exist here, a full-size transformer would not fit two shared cores,
and the support check reads nothing from the network. The channel counts are the ones
``comfy.model_detection`` writes into the config for the published files (``in_channels`` /
``out_channels``, per latent pixel). Used by ``tests/test_model_support.py`` and
``tools/model_support_table.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Config channel counts as comfy.model_detection sets them for each family's published files
# (None: detection leaves the key out). A class whose own unet_config names in_channels keeps it.
DETECTED_CHANNELS: dict[str, tuple[int | None, int | None]] = {
    "SD3": (16, 16), "AuraFlow": (4, None), "PixArtAlpha": (4, None), "PixArtSigma": (4, None),
    "HunyuanDiT": (None, None), "HunyuanDiT1": (None, None), "StableAudio": (None, None),
    "Flux": (16, 16), "FluxSchnell": (16, 16), "FluxInpaint": (96, 16), "Flux2": (128, 128),
    "Chroma": (64, 64), "ChromaRadiance": (3, 3), "Lumina2": (16, None), "ZImage": (16, None),
    "HiDream": (16, 16), "Omnigen2": (16, None), "QwenImage": (64, None), "ACEStep": (8, 8),
    "GenmoMochi": (12, None), "LTXV": (None, None), "HunyuanVideo": (16, 16), "HunyuanVideoI2V": (33, 16),
    "HunyuanVideoSkyreelsI2V": (32, 16), "HunyuanImage21": (64, 64), "HunyuanImage21Refiner": (64, 64),
    "HunyuanVideo15": (32, 32), "HunyuanVideo15_SR_Distilled": (98, 32), "CosmosT2V": (16, 16),
    "CosmosI2V": (17, 16), "CosmosT2IPredict2": (16, 16), "CosmosI2VPredict2": (17, 16),
    "Hunyuan3Dv2": (64, None), "Hunyuan3Dv2_1": (64, None), "Hunyuan3Dv2mini": (64, None),
    "Stable_Cascade_C": (None, None), "Stable_Cascade_B": (None, None),
}  # UNet families (SD 1.x/2.x, SDXL and their offshoots, SVD, Zero123, x4 upscaler): in_channels, 4 out

# The demo model's UNet shape, for the one family whose get_model reads the network's dtype (Zero123).
TINY_UNET = {"image_size": 8, "model_channels": 32, "num_res_blocks": [1], "channel_mult": [1],
             "transformer_depth": [1], "transformer_depth_output": [1, 1], "transformer_depth_middle": 1,
             "use_spatial_transformer": True, "use_linear_in_transformer": False, "legacy": False,
             "context_dim": 768, "use_temporal_attention": False, "use_temporal_resblock": False,
             "use_checkpoint": False}


@dataclass(frozen=True)
class Row:
    """One line of the support table: a family of ``comfy.supported_models.models``, or a variant of one
    that ComfyUI's detection builds from the same class (``unet_config`` / ``state_dict`` keys)."""

    name: str
    family: str  # the comfy.supported_models class
    unet_config: dict[str, Any] = field(default_factory=dict)
    state_dict_keys: tuple[str, ...] = ()  # checkpoint keys that make the class pick another model type
    note: str = ""


# Variants the table shows besides the families: the same class, told apart by the checkpoint.
VARIANTS = (
    Row("SD15 inpainting (in_channels 9)", "SD15", {"in_channels": 9}, note="SD 1.5 inpainting checkpoints"),
    Row("SDXL Playground v2.5 (EDM)", "SDXL", state_dict_keys=("edm_mean", "edm_std"),
        note="Playground v2.5: SDXL with edm_mean / edm_std keys"),
    Row("SDXL v-prediction EDM (CosXL)", "SDXL", state_dict_keys=("edm_vpred.sigma_max",),
        note="CosXL: SDXL with edm_vpred.sigma_max"),
    Row("SDXL v-prediction", "SDXL", state_dict_keys=("v_pred",), note="SDXL with a v_pred key (NoobAI-style)"),
    Row("Flux control (in_channels 32)", "Flux", {"in_channels": 32}, note="Flux.1 Canny / Depth dev"),
)


def family_rows(supported_models: Any) -> list[Row]:
    """A row per class in this ComfyUI's ``comfy.supported_models.models``, in its order, then the variants."""
    return [Row(cls.__name__, cls.__name__) for cls in supported_models.models] + list(VARIANTS)


def _state_dict(row: Row, torch: Any) -> dict[str, Any]:
    if row.family == "StableAudio":  # its get_model loads the seconds_start / seconds_total embedders
        import comfy.ldm.audio.embedders

        weights = comfy.ldm.audio.embedders.NumberConditioner(768, min_val=0, max_val=512).state_dict()
        return {f"conditioner.conditioners.{name}.{k}": v for name in ("seconds_start", "seconds_total")
                for k, v in weights.items()}
    if row.family == "Stable_Zero123":  # its get_model copies the context projection in
        return {"cc_projection.weight": torch.zeros(768, 772), "cc_projection.bias": torch.zeros(768)}
    values = {"edm_vpred.sigma_max": torch.tensor(160.0), "edm_mean": torch.zeros(1, 4, 1, 1),
              "edm_std": torch.ones(1, 4, 1, 1), "v_pred": torch.tensor([])}
    # SD 2.x's model_type tells eps from v by this bias's spread (the 2024 copy reads it unconditionally): eps
    return {"output_blocks.11.1.transformer_blocks.0.norm1.bias": torch.zeros(8),
            **{key: values[key] for key in row.state_dict_keys}}


def unet_config(row: Row, model_class: Any) -> dict[str, Any]:
    own = dict(model_class.unet_config)
    latent_channels = getattr(model_class.latent_format, "latent_channels", 4)
    if "in_channels" not in own or row.family in DETECTED_CHANNELS:
        detected = DETECTED_CHANNELS.get(row.family, (own.get("in_channels", latent_channels), latent_channels))
        named = zip(("in_channels", "out_channels"), detected, strict=True)
        config = {**own, **{key: value for key, value in named if value is not None}}
    else:
        config = {**own, "out_channels": latent_channels}
    config.update(row.unet_config)
    if row.family == "Stable_Zero123":  # get_model reads the network's dtype: a tiny real UNet
        return {**config, **TINY_UNET}
    return {**config, "disable_unet_model_creation": True}


def build(row: Row) -> Any:
    """The row's MODEL: ``ModelPatcher`` over the family's own ``BaseModel`` (on the CPU, built inside
    ``torch.inference_mode()`` as ComfyUI's loaders run)."""
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models
    import torch

    model_class = getattr(comfy.supported_models, row.family)
    with torch.inference_mode():
        config = model_class(unet_config(row, model_class))
        config.set_inference_dtype(torch.float32, None)
        try:
            base = config.get_model(_state_dict(row, torch), "", device=torch.device("cpu"))
        except AttributeError as error:  # its get_model touches the network (the 2024 copy's Stable Cascade):
            if "diffusion_model" not in str(error):  # the default-size one, on the meta device (no memory)
                raise
            config.unet_config.pop("disable_unet_model_creation")
            with torch.device("meta"):
                base = config.get_model(_state_dict(row, torch), "")
            base.model_sampling = comfy.model_base.model_sampling(config, base.model_type)  # its table, on the CPU
        return comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"),
                                                offload_device=torch.device("cpu"))
