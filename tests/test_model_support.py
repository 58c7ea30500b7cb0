"""Every model family ComfyUI loads: the samplers run on it, or refuse it up front by name (issue 27).

A row per class of ComfyUI 0.3.75's ``comfy.supported_models.models`` (and a few variants the same
class loads from other checkpoints), each built as its real ``BaseModel`` through the family's own
``get_model`` and wrapped in a ``ModelPatcher`` (``tools/model_families.py``: no weights, the network
left out with ComfyUI's ``disable_unet_model_creation`` flag, the config's channel counts as ComfyUI's
detection writes them). A refused family goes through the DWGF Sampler node and must raise a
DWGFInputError naming the family and the reason before any work; an accepted one passes the check and
its noise table reads as a decreasing ``ᾱ``. Rows whose class the March-2024 ComfyUI lacks are skipped.
"""

from __future__ import annotations

import inspect
import re

import comfyui_env
import model_families
import pytest
import torch
from comfyui_env import call_node, node_defaults

TIME_AXIS = "have a time axis"
SEQUENCE = "are a 1-D sequence"
AUDIO = "is an audio model"
EDM = "continuous-time EDM noise levels"
IMAGE_INPUT = "takes an input image besides the latent"
LATENT_SPACE = "is not one the pack decodes yet"
DISCRETE, FLOW = "runs (discrete)", "runs (flow)"

# family (or variant) → "runs (…)" or the reason fragment its refusal must carry
EXPECTED = {
    "LotusD": "image-to-image predictor", "Stable_Zero123": IMAGE_INPUT, "SD15_instructpix2pix": IMAGE_INPUT,
    "SD15": DISCRETE, "SD20": DISCRETE, "SD21UnclipL": DISCRETE, "SD21UnclipH": DISCRETE,
    "SDXL_instructpix2pix": IMAGE_INPUT, "SDXLRefiner": DISCRETE, "SDXL": DISCRETE, "SSD1B": DISCRETE,
    "KOALA_700M": DISCRETE, "KOALA_1B": DISCRETE, "Segmind_Vega": DISCRETE, "SD_X4Upscaler": IMAGE_INPUT,
    "Stable_Cascade_C": "stage of a cascade", "Stable_Cascade_B": "stage of a cascade",
    "SV3D_u": EDM, "SV3D_p": EDM, "SD3": FLOW, "StableAudio": AUDIO, "AuraFlow": FLOW,
    "PixArtAlpha": DISCRETE, "PixArtSigma": DISCRETE, "HunyuanDiT": DISCRETE, "HunyuanDiT1": DISCRETE,
    "FluxInpaint": FLOW, "Flux": FLOW, "FluxSchnell": FLOW, "GenmoMochi": TIME_AXIS, "LTXV": TIME_AXIS,
    "HunyuanVideo15_SR_Distilled": TIME_AXIS, "HunyuanVideo15": TIME_AXIS, "HunyuanImage21Refiner": TIME_AXIS,
    "HunyuanImage21": FLOW, "HunyuanVideoSkyreelsI2V": TIME_AXIS, "HunyuanVideoI2V": TIME_AXIS,
    "HunyuanVideo": TIME_AXIS, "CosmosT2V": TIME_AXIS, "CosmosI2V": TIME_AXIS, "CosmosT2IPredict2": TIME_AXIS,
    "CosmosI2VPredict2": TIME_AXIS, "ZImage": FLOW, "Lumina2": FLOW, "WAN22_T2V": TIME_AXIS,
    "WAN21_T2V": TIME_AXIS, "WAN21_I2V": TIME_AXIS, "WAN21_FunControl2V": TIME_AXIS, "WAN21_Vace": TIME_AXIS,
    "WAN21_Camera": TIME_AXIS, "WAN22_Camera": TIME_AXIS, "WAN22_S2V": TIME_AXIS, "WAN21_HuMo": TIME_AXIS,
    "WAN22_Animate": TIME_AXIS, "Hunyuan3Dv2mini": SEQUENCE, "Hunyuan3Dv2": SEQUENCE, "Hunyuan3Dv2_1": SEQUENCE,
    "HiDream": FLOW, "Chroma": FLOW, "ChromaRadiance": "works on pixels directly", "ACEStep": AUDIO,
    "Omnigen2": FLOW, "QwenImage": FLOW, "Flux2": FLOW, "SVD_img2vid": EDM,
    # variants of those classes
    "SD15 inpainting (in_channels 9)": DISCRETE, "SDXL Playground v2.5 (EDM)": EDM,
    "SDXL v-prediction EDM (CosXL)": EDM, "SDXL v-prediction": DISCRETE, "Flux control (in_channels 32)": IMAGE_INPUT,
}
ROWS = [model_families.Row(name, name) for name in EXPECTED if name not in {v.name for v in model_families.VARIANTS}]
ROWS += list(model_families.VARIANTS)


def test_every_family_comfyui_loads_has_a_row(comfy_nodes) -> None:
    import comfy.supported_models

    names = [cls.__name__ for cls in comfy.supported_models.models]
    assert set(names) <= set(EXPECTED), f"families without a row: {sorted(set(names) - set(EXPECTED))}"


def _model(row: model_families.Row):
    import comfy.supported_models

    if getattr(comfy.supported_models, row.family, None) is None:
        pytest.skip(f"this ComfyUI ({comfy.supported_models.__file__}) has no comfy.supported_models.{row.family} "
                    "(added after March 2024)")
    source = inspect.getsource(comfy.supported_models)
    unread = [key for key in row.state_dict_keys if f'"{key}"' not in source and f"'{key}'" not in source]
    if unread:
        pytest.skip(f"this ComfyUI does not read the checkpoint key(s) {unread}: it loads {row.name} as plain "
                    f"{row.family}")
    return model_families.build(row)


@pytest.fixture(scope="module")
def problem(comfy_nodes, demo):
    images, _ = call_node("DWGF_DemoHeldOutImages", which="photos", start=0, count=1)
    inputs = {**node_defaults("DWGF_DegradationOperator"), "image": images,
              "image_is": "clean (simulate the measurement)", "operator": "inpaint box (centre)"}
    degradation, measurement, _ = call_node("DWGF_DegradationOperator", **inputs)
    return degradation, measurement


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_family_runs_or_is_refused_by_name(row, comfy_nodes, demo, problem) -> None:
    adapter = comfyui_env.pack_submodule("nodes.comfy_adapter")
    model = _model(row)
    facts, support = adapter.model_support_of(model)
    expected = EXPECTED[row.name]
    if expected in (DISCRETE, FLOW):
        assert support.status == expected, f"{row.name}: {support.reason}"
        if not adapter.fills_missing_inpaint_mask(model):  # the March-2024 copy: an inpainting model needs a mask
            errors = comfyui_env.pack_submodule("dwgf.errors")
            with pytest.raises(errors.DWGFInputError, match="does not fill a missing mask"):
                adapter.check_diffusion_model(model)
            return
        adapter.check_diffusion_model(model)
        alpha_bars = adapter.model_alphas_cumprod(model)
        assert alpha_bars.shape[0] >= 2 and torch.isfinite(alpha_bars).all()
        assert (alpha_bars[1:] <= alpha_bars[:-1]).all() and 0 < float(alpha_bars[-1]) < float(alpha_bars[0]) <= 1
        return
    assert support.status == "refused" and expected in support.reason, f"{row.name}: {support.reason}"
    degradation, measurement = problem
    errors = comfyui_env.pack_submodule("dwgf.errors")  # the pack's own DWGFInputError, as ComfyUI imported it
    inputs = {**node_defaults("DWGF_Sampler"), "model": model, "positive": demo["positive"],
              "negative": demo["negative"], "vae": demo["vae"], "degradation": degradation,
              "measurement": measurement}
    with pytest.raises(errors.DWGFInputError) as raised:
        call_node("DWGF_Sampler", **inputs)
    message = str(raised.value)
    assert f"ComfyUI's {row.family} " in message and re.search(re.escape(expected), message), message
    assert "instead" in message, message
