"""The real ComfyUI editor page, in headless Chromium, served by the test server: every shipped
workflow loads with no missing node types and queues exactly its API twin; the demo-model graphs
run from the editor and their output images appear in the canvas; current ComfyUI's template
browser lists the pack's graphs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

from comfyui_env import PACK_FOLDER_NAME, comfyui_root, is_comfyui_2024  # noqa: E402
from editor import CHROMIUM, Editor, chromium_available  # noqa: E402
from make_workflows import MASKED_EXAMPLE, THUMBNAIL_SIZE, single_machine_names, template_names  # noqa: E402
from ui_workflow import split_undefined_inputs  # noqa: E402

pytestmark = [pytest.mark.server, pytest.mark.browser]
WORKFLOWS = REPO / "workflows"
OLD_COMFYUI = is_comfyui_2024(comfyui_root())
NAMES = single_machine_names()  # the distributed_* ones need ComfyUI-Distributed (tests/test_distributed.py)
DEMO_NAMES = [name for name in NAMES if name.startswith("demo_")]
# Flux's loaders and FluxGuidance came after the March-2024 ComfyUI: its editor would show them missing.
LOADABLE = [pytest.param(name, marks=pytest.mark.skipif(OLD_COMFYUI, reason="the 2024 ComfyUI has no Flux nodes"))
            if name.startswith("flux_") else
            pytest.param(name, marks=pytest.mark.skipif(OLD_COMFYUI, reason="the 2024 ComfyUI's Load CLIP has no "
                                                                           "types for these models"))
            if name.startswith(("zimage_", "qwenimage_", "flux2_")) else name for name in NAMES]
TEST_STEPS = 5
EDITOR_ONLY_INPUTS = {("LoadImage", "upload")}  # the 2024 page sends its upload button; ComfyUI ignores it


def read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def editor(server):
    if not chromium_available():  # a failure, not a skip: `make test` installs it (`make browser`)
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make browser` (apt-get install chromium)")
    server.upload_image(WORKFLOWS / "inputs" / MASKED_EXAMPLE)
    with Editor(server.base_url) as page:
        yield page


def test_the_page_is_comfyuis_editor_with_the_pack(editor) -> None:
    assert editor.page.evaluate("() => typeof window.app.graphToPrompt") == "function"
    assert editor.missing_node_types({"nodes": [{"type": "DWGF_Sampler"}, {"type": "DWGF_NoSuchNode"}]}) == [
        "DWGF_NoSuchNode"]  # the check can fail
    assert editor.page_errors == []


@pytest.fixture(scope="module")
def object_info(server) -> dict:
    return server.get_json("/object_info")


@pytest.mark.parametrize("name", LOADABLE)
def test_workflow_loads_in_the_editor_and_queues_its_api_twin(editor, object_info, name: str) -> None:
    ui = read(WORKFLOWS / f"{name}.json")
    assert editor.missing_node_types(ui) == []
    editor.load(ui)
    assert editor.loaded_node_types() == {str(node["id"]): node["type"] for node in ui["nodes"]}
    queued, editor_only = split_undefined_inputs(editor.graph_to_prompt(), object_info)
    assert queued == read(WORKFLOWS / "api" / f"{name}.json")
    assert editor_only <= EDITOR_ONLY_INPUTS
    assert editor.page_errors == []


@pytest.mark.parametrize("name", DEMO_NAMES)
def test_demo_workflow_runs_from_the_editor_and_shows_its_images(editor, server, name: str, tmp_path) -> None:
    ui = read(WORKFLOWS / f"{name}.json")
    editor.load(ui)
    editor.set_widget(4, "preset", "custom")  # node 4 is the DWGF Sampler in every demo graph; 'custom', or
    editor.set_widget(4, "steps", TEST_STEPS)  # the shipped 'fast' preset would set its own step count
    if ui["nodes"][1]["type"] == "DWGF_DemoHeldOutImages":
        editor.set_widget(2, "count", 1)
    queued = editor.graph_to_prompt()["4"]["inputs"]
    assert (queued["preset"], queued["steps"], queued["fast_vae"]) == ("custom", TEST_STEPS, ["1", 5])
    editor.fit_view()
    editor.queue()
    mean = editor.wait_for_node_images(9, timeout_s=300)  # node 9 saves the DWGF mean
    assert [(image["width"], image["height"]) for image in mean] == [(32, 32)]
    assert "/view?" in mean[0]["src"] and "4_dwgf_mean" in mean[0]["src"]
    particles = editor.wait_for_node_images(10, timeout_s=60)
    assert len(particles) == 4  # one picture per particle
    editor.screenshot(tmp_path / f"{name}.png")
    assert editor.page_errors == []


@pytest.mark.skipif(is_comfyui_2024(comfyui_root()), reason="the 2024 editor has no template browser")
def test_current_editor_lists_the_pack_templates_and_opens_one(editor, object_info) -> None:
    """Sidebar → Templates → comfyui-dwgf shows every graph with its thumbnail; a click loads it."""
    page = editor.page
    page.get_by_text("Templates", exact=True).first.click()
    page.get_by_text(PACK_FOLDER_NAME, exact=True).first.click()
    search = page.get_by_placeholder("Search")
    for name in template_names():  # the dialog renders a page of cards at a time: find each by its name
        search.fill(name)
        page.get_by_text(name, exact=True).first.wait_for(state="attached")
    search.fill("demo_box_inpainting")
    page.wait_for_function(  # the cards' pictures are our <name>.jpg thumbnails (fetched as blobs)
        "width => Array.from(document.images).some(i => i.src.startsWith('blob:') && i.naturalWidth === width)",
        arg=THUMBNAIL_SIZE[0])
    page.get_by_text("demo_box_inpainting", exact=True).first.click()
    page.wait_for_function("() => window.app.graph._nodes.some(n => n.type === 'DWGF_Sampler')")
    queued, _ = split_undefined_inputs(editor.graph_to_prompt(), object_info)
    assert queued == read(WORKFLOWS / "api" / "demo_box_inpainting.json")
    assert editor.page_errors == []
