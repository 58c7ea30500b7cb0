"""A real ComfyUI server runs the pack's API workflows; results come back through the HTTP API."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
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
    prompt["2"]["inputs"]["scale_factor"] = 3
    with pytest.raises(PromptFailed, match="scale factor 3 does not divide"):
        server.run(prompt, timeout=120)
    prompt["2"]["inputs"]["sigma_y"] = -1.0  # below the input's min: ComfyUI's own validation
    with pytest.raises(PromptRejected) as rejected:
        server.queue(prompt)
    assert "sigma_y" in json.dumps(rejected.value.details)
    assert server.alive()
    assert fetch_images(server, server.run(load_workflow("degrade_sr_x4"), timeout=120))


def test_dwgf_demo_workflow_runs_on_the_server(server) -> None:
    """The README's main job in small: DWGF on the demo model through the HTTP API."""
    prompt = load_workflow("demo_box_inpainting")
    prompt["2"]["inputs"]["count"] = 1
    prompt["4"]["inputs"]["steps"] = 8
    progress: list[int] = []
    result = server.run(prompt, timeout=300,
                        on_event=lambda e: progress.append(e["data"]["value"]) if e["type"] == "progress" else None)
    names = sorted(entry["filename"].rsplit("_", 2)[0] for entry in result.output_images())
    assert names == ["1_clean", "2_measurement", "3_pseudo_inverse", "4_dwgf_mean", *["5_dwgf_particles"] * 4,
                     "6_spread"]
    assert set(range(1, 9)) <= set(progress)  # the sampler's progress reached the websocket every step
    mean = fetch_images(server, result)["4_dwgf_mean"]
    assert mean.shape == (32, 32, 3)
