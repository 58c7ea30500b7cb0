"""The shipped workflows: editor (UI) files and API files agree, every graph is valid for the real
ComfyUI's node definitions, and current ComfyUI lists them as the pack's templates with thumbnails."""

from __future__ import annotations

import copy
import json
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

from comfyui_env import PACK_FOLDER_NAME, comfyui_root, is_comfyui_2024  # noqa: E402
from make_workflows import MASKED_EXAMPLE, THUMBNAIL_SIZE, single_machine_names, template_names  # noqa: E402
from ui_workflow import ui_to_api, validate_prompt  # noqa: E402

pytestmark = pytest.mark.server
WORKFLOWS = REPO / "workflows"
ALL_NAMES = template_names()
# The distributed_* templates need ComfyUI-Distributed's nodes: tests/test_distributed.py checks them on its master.
NAMES = single_machine_names()
DISTRIBUTED_NAMES = [f"distributed_{kind}_{family}" for kind in ("batch", "particles")
                     for family in ("demo", "sd15", "sdxl")]
# the newer flow-matching models (issue 27): Load Diffusion Model + Load CLIP + Load VAE
NEWER_FAMILIES = ("zimage_", "qwenimage_", "flux2_")
SD_NAMES = [name for name in NAMES if name.startswith(("sd15_", "sdxl_", "sd3_", "flux_", *NEWER_FAMILIES))]
FLUX_NAMES = [name for name in NAMES if name.startswith("flux_")]
# Flux's loaders and FluxGuidance came after the March-2024 ComfyUI (SD3's graph is SDXL's with another file);
# so did Load CLIP's types for the newer models.
NEEDS_FLUX_NODES = pytest.mark.skipif(is_comfyui_2024(comfyui_root()), reason="the 2024 ComfyUI has no Flux nodes")
NEEDS_NEWER_NODES = pytest.mark.skipif(is_comfyui_2024(comfyui_root()),
                                       reason="the 2024 ComfyUI's Load CLIP has no types for these models")


def flux_aware(names: list[str]) -> list:
    """Workflow names as parameters, the Flux and newer models' ones skipped on the 2024 ComfyUI."""
    return [pytest.param(name, marks=NEEDS_FLUX_NODES) if name.startswith("flux_")
            else pytest.param(name, marks=NEEDS_NEWER_NODES) if name.startswith(NEWER_FAMILIES) else name
            for name in names]
TASKS = ("box_inpainting", "mask_inpainting", "super_resolution_x4", "deblurring")


def read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def object_info(server) -> dict:
    return server.get_json("/object_info")


def test_every_task_ships_for_every_model_with_ui_api_and_thumbnail() -> None:
    expected = [f"{family}_{task}" for family in ("demo", "sd15", "sdxl", "sd3", "flux") for task in TASKS]
    # the newer models (issue 27): box and mask inpainting and x4 super-resolution
    expected += [f"{family}{task}" for family in NEWER_FAMILIES for task in TASKS if task != "deblurring"]
    # plus DWGF inside SamplerCustom, box inpainting on the demo model's flow-matching prior, and the
    # detail finish on the demo model (issue 26)
    assert NAMES == sorted([*expected, "custom_box_inpainting", "demoflow_box_inpainting",
                            "demodetail_box_inpainting", "demodetail_super_resolution_x4"])
    assert ALL_NAMES == sorted([*NAMES, *DISTRIBUTED_NAMES])  # plus ComfyUI-Distributed's (issue 28)
    assert sorted(path.stem for path in WORKFLOWS.glob("*.json")) == ALL_NAMES  # the templates ComfyUI lists
    for name in ALL_NAMES:
        thumbnail = Image.open(WORKFLOWS / f"{name}.jpg")
        assert (thumbnail.format, thumbnail.size) == ("JPEG", THUMBNAIL_SIZE)
    masked = Image.open(WORKFLOWS / "inputs" / MASKED_EXAMPLE)
    assert masked.mode == "RGBA" and masked.size == (32, 32)
    hole = np.asarray(masked.getchannel("A")) < 128  # LoadImage's MASK: 1 where transparent
    assert 0.05 < hole.mean() < 0.5


@pytest.mark.parametrize("name", flux_aware(NAMES))
def test_ui_workflow_converts_to_its_api_twin(name: str, object_info: dict) -> None:
    ui, api = read(WORKFLOWS / f"{name}.json"), read(WORKFLOWS / "api" / f"{name}.json")
    assert ui_to_api(ui, object_info) == api


def test_the_twin_check_sees_drift(object_info: dict) -> None:
    """A changed widget value, a re-routed link or a new widget in the node all break the match."""
    ui, api = read(WORKFLOWS / "demo_box_inpainting.json"), read(WORKFLOWS / "api" / "demo_box_inpainting.json")
    sampler = next(node for node in ui["nodes"] if node["type"] == "DWGF_Sampler")
    changed = copy.deepcopy(ui)
    next(node for node in changed["nodes"] if node["id"] == sampler["id"])["widgets_values"][2] = 99  # steps
    assert ui_to_api(changed, object_info)["4"]["inputs"]["steps"] == 99
    rerouted = copy.deepcopy(ui)
    positive_link = next(link for link in rerouted["links"] if link[3] == sampler["id"] and link[4] == 1)
    positive_link[2] = 2  # the demo model's prompt conditioning instead of the unconditional one
    assert ui_to_api(rerouted, object_info)["4"]["inputs"]["positive"] == ["1", 2] != api["4"]["inputs"]["positive"]
    grown = copy.deepcopy(object_info)
    grown["DWGF_Sampler"]["input"]["required"] = {"new_knob": ["INT", {}], **grown["DWGF_Sampler"]["input"]["required"]}
    grown["DWGF_Sampler"].pop("input_order", None)
    stored = len(sampler["widgets_values"])
    with pytest.raises(ValueError, match=f"stores {stored} widget values but the server.s definition has {stored + 1}"):
        ui_to_api(ui, grown)


TINY_VAES = {"sd15": "taesd", "sdxl": "taesdxl", "sd3": "taesd3", "flux": "taef1",  # ComfyUI's Load VAE names
             "zimage": "taef1"}
NO_TINY_VAE = ("qwenimage", "flux2")  # ComfyUI 0.3.75's Load VAE has no tiny VAE for their latent spaces


@pytest.mark.parametrize("name", NAMES)
def test_every_template_wires_the_fast_path(name: str) -> None:
    """Issue 25: the sampler's fast_vae comes from a tiny VAE of the model's latent space (Load VAE's
    taesd / taesdxl / taesd3 / taef1, or the Demo Model's fast_vae, output 5), the full VAE stays on
    vae, and the DWGF Sampler runs the 'fast' preset (the custom-sampling node has no presets)."""
    prompt = read(WORKFLOWS / "api" / f"{name}.json")
    [sampler] = [entry for entry in prompt.values() if entry["class_type"] in ("DWGF_Sampler", "DWGF_CustomSampler")]
    inputs = sampler["inputs"]
    if name.split("_", 1)[0] in NO_TINY_VAE:
        assert "fast_vae" not in inputs and inputs["preset"] == "fast"
        return
    source_id, slot = inputs["fast_vae"]
    source = prompt[source_id]
    family = name.split("_", 1)[0]
    if family in TINY_VAES:
        assert (source["class_type"], slot, source["inputs"]["vae_name"]) == ("VAELoader", 0, TINY_VAES[family])
    else:
        assert (source["class_type"], slot) == ("DWGF_DemoModel", 5)
        assert inputs["vae"] == [source_id, 1]  # the demo model's full VAE
    assert inputs["fast_vae"] != inputs["vae"]
    assert isinstance(inputs["full_decoder_steps"], int)
    if sampler["class_type"] == "DWGF_Sampler":
        assert inputs["preset"] == "fast"
    else:
        assert inputs["full_decoder_steps"] == 0


@pytest.mark.parametrize("name", flux_aware(sorted(path.stem for path in (WORKFLOWS / "api").glob("*.json")
                                                 if path.stem not in DISTRIBUTED_NAMES)))
def test_api_workflow_is_valid_for_the_servers_nodes(name: str, object_info: dict) -> None:
    """Node types exist, every required input is there, values fit their types, ranges and choices
    (file names aside), and every link comes from an output of the type the input takes."""
    assert validate_prompt(read(WORKFLOWS / "api" / f"{name}.json"), object_info) == []


def test_the_validator_catches_bad_graphs(object_info: dict) -> None:
    prompt = read(WORKFLOWS / "api" / "sd15_box_inpainting.json")
    prompt["4"]["inputs"]["vae"] = ["1", 1]  # CLIP into a VAE input
    prompt["3"]["inputs"]["operator"] = "inpaint circle"
    prompt["4"]["inputs"]["steps"] = 0
    del prompt["5"]["inputs"]["paste_known_pixels"]
    prompt["6"]["class_type"] = "CLIPTextEncodeXL"
    problems = "\n".join(validate_prompt(prompt, object_info))
    assert "(DWGF_Sampler).vae: expects VAE, node 1 output 1 gives CLIP" in problems
    assert "(DWGF_DegradationOperator).operator: 'inpaint circle' is not one of" in problems
    assert "(DWGF_Sampler).steps: 0 is outside [1, 998]" in problems
    assert "(DWGF_ParticleDecode).paste_known_pixels: required input missing" in problems
    assert "unknown node type 'CLIPTextEncodeXL'" in problems


# The tiny VAE of the fast path (node 12; Flux's node 15) is one more model file: no models/vae_approx here.
MISSING_FILES = {"1": ["ckpt_name"], "2": ["image"], "12": ["vae_name"]}
FLUX_MISSING_FILES = {"1": ["unet_name"], "2": ["image"], "12": ["clip_name1", "clip_name2"], "13": ["vae_name"],
                      "15": ["vae_name"]}
NEWER_MISSING_FILES = {"1": ["unet_name"], "2": ["image"], "12": ["clip_name"], "13": ["vae_name"], "15": ["vae_name"]}


@pytest.mark.parametrize("name", flux_aware(SD_NAMES))
def test_comfyui_rejects_sd_workflows_only_for_their_missing_files(name: str, server) -> None:
    """ComfyUI's own validator, on a server with no checkpoints and no such photo: the only errors
    name the model files (the checkpoint; Flux's transformer, text encoders and VAE; the tiny VAE)
    and the image; every other input of every node passes."""
    from comfy_server import PromptRejected

    prompt = read(WORKFLOWS / "api" / f"{name}.json")
    prompt["2"]["inputs"]["image"] = "dwgf-no-such-photo.png"  # so no output is valid and nothing runs
    with pytest.raises(PromptRejected) as rejected:
        server.queue(prompt)
    node_errors = rejected.value.details["node_errors"]
    named = {node: [e["extra_info"]["input_name"] for e in found["errors"]] for node, found in node_errors.items()}
    expected = dict(FLUX_MISSING_FILES if name in FLUX_NAMES
                    else NEWER_MISSING_FILES if name.startswith(NEWER_FAMILIES) else MISSING_FILES)
    if name.split("_", 1)[0] in NO_TINY_VAE:
        del expected["15"]
    if is_comfyui_2024(comfyui_root()):  # its validator walks required inputs only: fast_vae is optional
        del expected[prompt["4"]["inputs"]["fast_vae"][0]]
    assert {node: sorted(inputs) for node, inputs in named.items()} == expected
    assert all(error["type"] == "value_not_in_list" for node in node_errors.values() for error in node["errors"]
               if node["class_type"] != "LoadImage")


@pytest.mark.skipif(is_comfyui_2024(comfyui_root()), reason="the 2024 ComfyUI has no custom-node templates")
def test_current_comfyui_lists_the_templates_with_their_thumbnails(server) -> None:
    listed = server.get_json("/workflow_templates")
    assert sorted(listed[PACK_FOLDER_NAME]) == ALL_NAMES
    for name in ALL_NAMES:
        base = f"{server.base_url}/api/workflow_templates/{PACK_FOLDER_NAME}/{name}"
        with urllib.request.urlopen(base + ".json") as response:
            assert json.loads(response.read()) == read(WORKFLOWS / f"{name}.json")
        with urllib.request.urlopen(base + ".jpg") as response:  # the frontend's <name>.jpg convention
            assert response.headers["Content-Type"] == "image/jpeg"
            assert response.read() == (WORKFLOWS / f"{name}.jpg").read_bytes()
