"""The last wrong answers (issue 29), through a real ComfyUI server: a setting that contradicts what
the graph made is refused with the right culprit, and a preset that overrides an input says so.

Each test is one finding: what a user sent, what must come back, and (for refusals) that the server
runs the next prompt (``failure`` of ``test_reliability``).
"""

from __future__ import annotations

import json
import struct
import time

import pytest
from comfyui_env import comfyui_root
from test_custom_sampling import custom_prompt
from test_reliability import failure, held_out, restoration

pytestmark = pytest.mark.server

TEXT_FRAME = 3  # ComfyUI's BinaryEventTypes.TEXT: a node's progress text, shown on the node
PRESET_SIDE = 8  # the preset runs' photo side


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A server of its own for this file's prompts."""
    from comfy_server import ComfyServer

    with ComfyServer(workdir=tmp_path_factory.mktemp("wrong_answers")) as server:
        yield server


# -- 1. Particle Decode's particles_per_image against the LATENT's record ----------------------
@pytest.mark.parametrize(("photos", "value", "expected"), [
    (2, 4, ["particles_per_image: 4 contradicts the LATENT, which the sampler made as 2 images x 2 particles",
            "blend the particles of 2 different images"]),
    (1, 1, ["particles_per_image: 1 contradicts the LATENT, which the sampler made as 1 image x 2 particles",
            "its own 'mean', with an all-black spread"]),
    (1, 3, ["particles_per_image: 3 contradicts the LATENT, which the sampler made as 1 image x 2 particles",
            "3 does not divide its 2 latents"]),
], ids=["blends-two-photos", "each-particle-a-mean", "divides-nothing"])
def test_particles_per_image_that_contradicts_the_latent_is_refused(served, photos: int, value: int,
                                                                    expected: list[str]) -> None:
    prompt = restoration(held_out(photos), ["2", 0], sampler={"particles": 2})
    prompt["5"]["inputs"].update(particles_per_image=value, paste_known_pixels=False)  # else a wrong culprit
    message = failure(served, prompt)
    for part in expected:
        assert part in message
    assert "set particles_per_image to 0 (as recorded) or 2" in message
    assert "batching node" not in message and "Repeat Latent Batch" not in message


def test_particles_per_image_that_agrees_with_the_latent_runs(served) -> None:
    prompt = restoration(held_out(2), ["2", 0], sampler={"particles": 2})
    prompt["5"]["inputs"]["particles_per_image"] = 2
    assert served.run(prompt, silence=300).history["status"]["status_str"] == "success"


def test_particles_per_image_that_does_not_divide_a_samplercustom_batch_names_the_values_that_do(served) -> None:
    """SamplerCustom's LATENT records nothing: the value must divide its batch (2 particles here)."""
    prompt = custom_prompt(advanced=False)
    prompt["1"]["inputs"]["batch_size"] = 2
    prompt["5"]["inputs"]["steps"] = 2
    prompt["7"]["inputs"]["particles_per_image"] = 3
    message = failure(served, prompt)
    assert "particles_per_image: 3 does not divide the LATENT's batch of 2 latents" in message
    assert "use one that divides it (1, 2)" in message
    assert "batching node" not in message and "Repeat Latent Batch" not in message


# -- 2. tiny images: the image size is the culprit, not a mask nobody connected -----------------------
def tiny(side: int) -> dict:
    """A held-out photo scaled to side × side (node 2)."""
    return {"8": held_out()["2"],
            "2": {"class_type": "ImageScale", "inputs": {"image": ["8", 0], "upscale_method": "bilinear",
                                                         "width": side, "height": side, "crop": "disabled"}}}


@pytest.mark.parametrize(("side", "operator", "settings", "expected"), [
    (1, "inpaint box (centre)", {},
     ["image: this 1x1 image is too small for 'inpaint box (centre)' with box_fraction 0.5",
      "use an image of at least 2x2 for this box_fraction"]),
    (1, "inpaint random pixels", {},
     ["image: this 1x1 image is too small for 'inpaint random pixels' with keep_probability 0.3 and seed 0",
      "the random mask hides every pixel", "smallest square image that works is 2x2"]),
    (2, "inpaint random pixels", {"keep_probability": 0.99},
     ["image: this 2x2 image is too small for 'inpaint random pixels' with keep_probability 0.99 and seed 0",
      "the random mask keeps every pixel", "smallest square image that works is 8x8",
      "another seed may work at this size"]),
    (1, "inpaint box (DWGF reference)", {},
     ["image: this 1x1 image is too small for 'inpaint box (DWGF reference)'", "use an image of at least 2x2"]),
], ids=["centre-box", "random-pixels-all-hidden", "random-pixels-all-kept", "reference-box"])
def test_a_tiny_image_names_its_size_and_the_smallest_that_works(served, side: int, operator: str, settings: dict,
                                                                 expected: list[str]) -> None:
    message = failure(served, restoration(tiny(side), ["2", 0], operator=operator, degradation=settings))
    for part in expected:
        assert part.lower() in message.lower()
    # no mask is connected: the mask is not the culprit
    assert "paint only the region" not in message.lower() and "inpainting mask hides" not in message


# -- 3. a preset that overrides the inputs says so -------------------------------------------------
def run_with_node_texts(server, prompt: dict) -> tuple[dict, list[tuple[str, str]]]:
    """Run ``prompt`` reading the websocket as the editor does: its history and every node text
    (ComfyUI's progress text frames) as ``(node, text)``."""
    import websocket

    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/ws?clientId={server.client_id}", timeout=300)
    texts: list[tuple[str, str]] = []
    try:
        prompt_id = server.queue(prompt)
        while True:
            message = ws.recv()
            if isinstance(message, bytes):
                if struct.unpack(">I", message[:4])[0] == TEXT_FRAME:
                    (length,) = struct.unpack(">I", message[4:8])
                    texts.append((message[8:8 + length].decode(), message[8 + length:].decode()))
                continue
            event = json.loads(message)
            data = event.get("data", {})
            if data.get("prompt_id") == prompt_id and (
                    event["type"] in ("execution_success", "execution_error", "execution_interrupted")
                    or (event["type"] == "executing" and data.get("node") is None)):
                break
    finally:
        ws.close()
    deadline = time.monotonic() + 30
    while not (history := server.history(prompt_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert history["status"]["status_str"] == "success"
    return history, texts


def has_progress_text(root) -> bool:
    """ComfyUI 0.3.x shows a node's progress text; the March-2024 copy has no such message."""
    return "def send_progress_text" in (root / "server.py").read_text()


def preset_run(sampler: dict) -> dict:
    """A restoration of an 8x8 photo with one particle: a preset's 25 iterations take seconds."""
    return restoration(tiny(PRESET_SIDE), ["2", 0], sampler={"particles": 1, **sampler})


def test_a_preset_that_overrides_steps_says_so_on_the_node_and_in_the_log(served) -> None:
    """'draft' runs 25 iterations from denoise 0.5 whatever the steps and denoise inputs say (here 1
    and 0.7); the inputs left at their widget defaults (ae_every) are not named."""
    prompt = preset_run({"preset": "draft", "steps": 1, "denoise": 0.7})
    history, texts = run_with_node_texts(served, prompt)
    (note,) = history["outputs"]["4"]["text"]
    assert note.startswith("preset 'draft' runs with steps 25 (the steps input says 1), "
                           "denoise 0.5 (the denoise input says 0.7)")
    assert "set preset to 'custom' to run the inputs as given" in note
    assert "ae_every" not in note  # the draft's ae_every is the input's 1
    assert f"DWGF Sampler: {note}" in served.log_text()
    if has_progress_text(comfyui_root()):
        assert ("4", note) in texts


@pytest.mark.parametrize("sampler", [
    {"preset": "custom", "steps": 2},
    {"preset": "draft", "steps": 25, "denoise": 0.5, "ae_every": 1},
    {"preset": "draft", "steps": 998, "denoise": 1.0, "ae_every": 1},
], ids=["custom", "preset-agrees-with-inputs", "untouched-widget-defaults"])
def test_a_preset_that_agrees_with_the_inputs_says_nothing(served, sampler: dict) -> None:
    history, texts = run_with_node_texts(served, preset_run(sampler))
    assert "text" not in history["outputs"].get("4", {})
    assert not [text for node, text in texts if node == "4"]
