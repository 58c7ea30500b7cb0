"""A real ComfyUI server runs the pack's API workflows; results come back through the HTTP API."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from comfyui_env import comfyui_root, is_comfyui_2024
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.server


def load_workflow(name: str) -> dict:
    return json.loads((REPO / "workflows" / "api" / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def input_picture(server) -> np.ndarray:
    """A 64² 8-bit RGB picture in the server's input folder, named as the workflows expect."""
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(server.input_dir / "dwgf_demo_input.png")
    return pixels


def fetch_images(server, result) -> dict[str, np.ndarray]:
    """Every output image of a run, downloaded through /view, keyed by filename prefix."""
    images = {}
    for entry in result.output_images():
        pixels = np.asarray(Image.open(io.BytesIO(server.view(entry))).convert("RGB"))
        images[entry["filename"].rsplit("_", 2)[0]] = pixels
    return images


def test_server_loaded_the_pack_without_import_failure(server) -> None:
    log = server.log_text()
    assert "comfyui-dwgf" in log
    assert not [line for line in log.splitlines() if "IMPORT FAILED" in line and "dwgf" in line]
    nodes = server.get_json("/object_info")
    assert nodes["DWGF_DegradationOperator"]["display_name"] == "Degradation Operator"


def test_box_inpainting_workflow_returns_the_measurement(server, input_picture) -> None:
    prompt = load_workflow("degrade_box_inpainting")
    prompt["2"]["inputs"]["sigma_y"] = 0.0
    result = server.run(prompt, timeout=120)
    images = fetch_images(server, result)
    assert set(images) == {"measurement", "pseudo_inverse"}
    measured = images["measurement"].astype(int)
    hole = np.zeros((64, 64), dtype=bool)
    hole[16:48, 16:48] = True  # centre box, half the side
    assert np.abs(measured[~hole] - input_picture[~hole].astype(int)).max() <= 1  # 8-bit rounding
    assert set(np.unique(measured[hole])) <= {127, 128}  # mid-grey fill
    assert any(event["type"] == "executed" for event in result.events)


def test_super_resolution_workflow_downsizes_by_four(server, input_picture) -> None:
    result = server.run(load_workflow("degrade_sr_x4"), timeout=120)
    images = fetch_images(server, result)
    assert images["measurement"].shape == (16, 16, 3)
    assert images["pseudo_inverse"].shape == (64, 64, 3)


def test_bad_input_is_a_node_error_and_the_server_lives_on(server, input_picture) -> None:
    sys.path.insert(0, str(REPO / "tools"))
    from comfy_server import PromptFailed, PromptRejected

    prompt = load_workflow("degrade_sr_x4")
    prompt["2"]["inputs"].update(operator="gaussian blur", kernel_size=81)
    with pytest.raises(PromptFailed, match="kernel 81x81 is larger than the 64x64 image"):
        server.run(prompt, timeout=120)
    prompt["2"]["inputs"]["sigma_y"] = -1.0  # below the input's min: ComfyUI's own validation
    with pytest.raises(PromptRejected) as rejected:
        server.queue(prompt)
    assert "sigma_y" in json.dumps(rejected.value.details)
    assert server.alive()
    assert fetch_images(server, server.run(load_workflow("degrade_sr_x4"), timeout=120))


DEMO_WORKFLOWS = ("demo_box_inpainting", "demo_mask_inpainting", "demo_super_resolution_x4", "demo_deblurring",
                  "demodetail_box_inpainting", "demodetail_super_resolution_x4",
                  pytest.param("demoflow_box_inpainting", marks=pytest.mark.skipif(
                      is_comfyui_2024(comfyui_root()), reason="the 2024 ComfyUI has no flow-matching models")))
DEMO_OUTPUTS = ["1_clean", "2_measurement", "3_pseudo_inverse", "4_dwgf_mean", *["5_dwgf_particles"] * 4, "6_spread"]
TEST_STEPS = 10


def quick(prompt: dict, steps: int = TEST_STEPS, seed: int = 0) -> dict:
    """A demo workflow on one image with fewer flow steps (the graph is otherwise as shipped: the
    fast_vae stays wired, so the fast path runs through the real server, the last
    full_decoder_steps iterations through the full VAE). Preset 'custom', or the shipped 'fast'
    preset would set its own step count."""
    assert prompt["4"]["inputs"]["fast_vae"] == ["1", 5]
    prompt["4"]["inputs"].update(preset="custom", steps=steps, seed=seed)
    if prompt["2"]["class_type"] == "DWGF_DemoHeldOutImages":
        prompt["2"]["inputs"]["count"] = 1
    return prompt


@pytest.fixture(scope="module")
def masked_example(server) -> np.ndarray:
    """The mask-inpainting demo's input (RGBA, transparent = hole) in the server's input folder."""
    path = REPO / "workflows" / "inputs" / "dwgf_demo_masked.png"
    server.upload_image(path)
    return np.asarray(Image.open(path))


@pytest.mark.parametrize("name", DEMO_WORKFLOWS)
def test_demo_workflow_runs_through_the_api(server, masked_example, name: str) -> None:
    """POST /prompt, progress on the websocket every step, images back through /history and /view."""
    events: list[dict] = []
    result = server.run(quick(load_workflow(name)), timeout=300, on_event=events.append)
    kinds = [event["type"] for event in events]
    assert kinds[0] in ("execution_start", "status") and "execution_error" not in kinds
    sampler_progress = [e["data"]["value"] for e in events if e["type"] == "progress" and e["data"].get("node") in
                        (None, "4")]
    assert set(range(1, TEST_STEPS + 1)) <= set(sampler_progress)  # the sampler reported every step
    executed = {e["data"]["node"] for e in events if e["type"] == "executed"}
    assert executed == {"6", "7", "8", "9", "10", "11"}  # every Save Image node
    assert result.history["status"]["status_str"] == "success"
    names = sorted(entry["filename"].rsplit("_", 2)[0].split("/")[-1] for entry in result.output_images())
    assert names == DEMO_OUTPUTS
    images = {key.split("/")[-1]: value for key, value in fetch_images(server, result).items()}
    clean, measurement, mean = images["1_clean"], images["2_measurement"], images["4_dwgf_mean"]
    assert clean.shape == mean.shape == images["6_spread"].shape == (32, 32, 3)
    known = np.ones((32, 32), dtype=bool)
    if name in ("demo_box_inpainting", "demoflow_box_inpainting", "demodetail_box_inpainting"):
        known[8:24, 8:24] = False  # centre box, half the side
    elif name == "demo_mask_inpainting":
        known = masked_example[..., 3] >= 128  # LoadImage's MASK is 1 where the PNG is transparent
        assert np.array_equal(clean, masked_example[..., :3])
    if name.endswith("inpainting"):  # paste_known_pixels: the measured pixels come back exactly
        assert np.abs(mean[known].astype(int) - clean[known].astype(int)).max() <= 1
        assert np.abs(mean[~known].astype(int) - 128).mean() > 10  # and the hole was filled, not left grey
    if name.endswith("super_resolution_x4"):
        assert measurement.shape == (8, 8, 3)
    if name == "demo_deblurring":
        assert measurement.shape == (32, 32, 3) and np.abs(measurement.astype(int) - clean).mean() > 3


def test_interrupt_stops_a_run_and_the_next_prompt_runs(server) -> None:
    prompt = quick(load_workflow("demo_super_resolution_x4"), steps=998, seed=123)
    progress: list[int] = []

    def interrupt_on_first_step(event: dict) -> None:
        if event["type"] == "progress" and not progress:
            progress.append(event["data"]["value"])
            server.interrupt()

    result = server.run(prompt, timeout=300, on_event=interrupt_on_first_step)
    kinds = [event["type"] for event in result.events]
    assert kinds[-1] == "execution_interrupted" and "execution_success" not in kinds
    reached = [e["data"]["value"] for e in result.events if e["type"] == "progress"]
    assert max(reached) < 998  # stopped before the end, however fast the machine
    assert result.output_images() == [] or "4_dwgf_mean" not in json.dumps(result.output_images())
    follow_up = server.run(quick(load_workflow("demo_super_resolution_x4"), steps=3, seed=124), timeout=300)
    assert len(follow_up.output_images()) == len(DEMO_OUTPUTS)


def test_bad_inputs_come_back_as_node_errors_naming_the_input(server) -> None:
    from comfy_server import PromptRejected

    prompt = load_workflow("demo_box_inpainting")
    prompt["2"]["inputs"]["count"] = 0  # below min (and now no output is valid, so nothing is queued)
    prompt["3"]["inputs"]["operator"] = "inpaint circle"  # not a choice
    prompt["4"]["inputs"]["particles"] = 0  # below min
    prompt["5"]["inputs"]["vae"] = ["1", 0]  # a MODEL into the VAE input
    with pytest.raises(PromptRejected) as rejected:
        server.queue(prompt)
    details = rejected.value.details
    assert details["error"]["type"] == "prompt_outputs_failed_validation"
    found = {(node, e["type"], e["extra_info"]["input_name"])
             for node, entry in details["node_errors"].items() for e in entry["errors"]}
    assert found == {("2", "value_smaller_than_min", "count"), ("3", "value_not_in_list", "operator"),
                     ("4", "value_smaller_than_min", "particles"), ("5", "return_type_mismatch", "vae")}
    assert details["node_errors"]["4"]["class_type"] == "DWGF_Sampler"


RSS_GROWTH_BOUND_MB = 20.0


def test_twenty_prompts_leave_the_servers_memory_flat(server) -> None:
    """Each prompt has a new seed, so the sampler, decoder and savers really run every time."""
    def small(seed: int) -> dict:
        prompt = quick(load_workflow("demo_box_inpainting"), steps=2, seed=seed)
        prompt["4"]["inputs"]["particles"] = 2
        return prompt

    for seed in range(1000, 1003):  # warm-up: model load, allocator pools, first-run caches
        server.run(small(seed), timeout=300)
    from soak import rss_mb

    before = rss_mb(server.process.pid)
    for seed in range(2000, 2020):
        server.run(small(seed), timeout=300)
    after = rss_mb(server.process.pid)
    print(f"server RSS before {before:.1f} MB, after 20 prompts {after:.1f} MB")
    assert after - before < RSS_GROWTH_BOUND_MB
