"""Build the editor (UI) twins of the API workflows, their template thumbnails and the README screenshot.

The API files in ``workflows/api/`` are written by hand and are the source of truth. For each one
this tool starts a real ComfyUI server, asks the real editor (headless Chromium) for each node's
natural size, lays the graph out left to right, and writes ``workflows/<name>.json`` in the
editor's format (``tools/ui_workflow.py``) with a note that says how to use it. Current ComfyUI
lists ``workflows/*.json`` as the pack's templates and shows ``<name>.jpg`` beside each, so the tool
also screenshots each graph in the editor into ``workflows/<name>.jpg``; then it runs the demo
box-inpainting graph in the editor and screenshots the result for the README
(``workflows/images/editor_demo_box_inpainting.png``). It also writes the example input of the
mask-inpainting demo, ``workflows/inputs/dwgf_demo_masked.png``.

    .venv/bin/python tools/make_workflows.py            # everything (about 2 minutes on 2 idle cores)
    .venv/bin/python tools/make_workflows.py --no-run   # graphs and thumbnails only (20 s)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from comfy_server import ComfyServer  # noqa: E402
from comfyui_env import PACK_ROOT  # noqa: E402
from editor import Editor  # noqa: E402
from ui_workflow import api_to_ui, columns  # noqa: E402

WORKFLOWS = PACK_ROOT / "workflows"
API_DIR = WORKFLOWS / "api"
INPUTS_DIR = WORKFLOWS / "inputs"
MASKED_EXAMPLE = "dwgf_demo_masked.png"
README_WORKFLOW = "demo_box_inpainting"
README_SCREENSHOT = WORKFLOWS / "images" / f"editor_{README_WORKFLOW}.png"
COLUMN_GAP, ROW_GAP, TITLE = 70, 50, 30
NOTE_HEIGHT = 230
SAVE_SIZE = (300, 300)
THUMBNAIL_SIZE = (640, 400)

TASKS = {
    "box_inpainting": "Box inpainting: the Degradation Operator simulates the measurement by blanking a box "
                      "({box}); DWGF fills it.",
    "mask_inpainting": "Free-form inpainting: Load Image's MASK (its transparent pixels, or what you paint in "
                       "the mask editor: white = fill) marks the region to fill.",
    "super_resolution_x4": "x4 super-resolution: the output is 4 times larger than the measurement.",
    "deblurring": "Deblurring: Gaussian blur with the kernel set in the Degradation Operator.",
}
FAMILIES = {
    "demo": "Runs as is on the embedded demo model (32x32 images, a demonstration prior), the DWGF Sampler's "
            "'fast' preset, 4 particles: a few seconds per image on 2 CPU cores. Saves clean, measurement, "
            "A†y, DWGF mean, particles and spread.",
    "demoflow": "Runs as is on the embedded demo model's flow-matching prior (its rectified-flow twin: the "
                "noise levels of an SD3/Flux-style model, ComfyUI 0.3.x or later), the 'fast' preset, 4 "
                "particles: the same graph as demo_box_inpainting with the Demo Model's prior set to "
                "'flow matching'. Saves clean, measurement, A†y, DWGF mean, particles and spread.",
    "demodetail": "Runs as is on the embedded demo model, the 'fast' preset, 4 particles, with the DWGF Sampler's "
                  "'detail' finish ({detail}: measured on the demo model, 0.2 suits inpainting and 0.5 "
                  "super-resolution; 0 = the plain run): each particle is a sharp sample and their mean stays close "
                  "to the plain run's. Saves clean, measurement, A†y, DWGF mean, particles and spread.",
    "sd15": "SD 1.5 through ComfyUI's own loaders: choose your checkpoint in Load Checkpoint and your photo in "
            "Load Image (about 512x512, sides a multiple of 8{lowres}). The empty prompt on positive and negative "
            "with cfg 1 is the method's reference; the 'fast' preset (set preset to 'reference', with fast_vae "
            "disconnected, for the paper's 998 iterations), 4 particles.",
    "custom": "DWGF inside ComfyUI's own custom sampling: the DWGF Sampler (custom sampling) node is the SAMPLER "
              "of a stock SamplerCustom, with the schedule from BasicScheduler (any scheduler works; one DWGF "
              "iteration per noise level) and the particles from the demo model's empty latent (batch 4 = 4 "
              "particles; set Particle Decode's particles_per_image to the same). Runs as is on the demo model.",
    "sd3": "SD3.5 medium (a rectified-flow MMDiT) through ComfyUI's own loaders: choose your checkpoint (one "
           "with its text encoders) in Load Checkpoint and your photo in Load Image (about 1024x1024, sides a "
           "multiple of 8{lowres}). DWGF runs on the model's own flow-matching noise levels (shift 3); empty "
           "prompt, cfg 1, the 'fast' preset, 4 particles, 'least memory'.",
    "flux": "Flux dev (rectified flow, guidance-distilled) through ComfyUI's own loaders: the transformer in "
            "Load Diffusion Model, T5-XXL and CLIP-L in DualCLIPLoader, ae.safetensors in Load VAE, your photo "
            "in Load Image (about 1024x1024{lowres}). Guidance is FluxGuidance's input (3.5), so cfg stays 1: "
            "one transformer pass per iteration. The 'fast' preset, 4 particles, 'least memory'.",
    "sdxl": "SDXL through ComfyUI's own loaders: choose your checkpoint in Load Checkpoint and your photo in "
            "Load Image (about 1024x1024, sides a multiple of 8{lowres}). The sampler's memory is set to 'least "
            "memory' (the lowest peak for 1024²); the 'fast' preset, 4 particles.",
    "zimage": "Z-Image (a rectified-flow NextDiT) through ComfyUI's own loaders: the model in Load Diffusion Model, "
              "Qwen3-4B in Load CLIP (type lumina2), Flux.1's ae.safetensors in Load VAE, your photo in Load Image "
              "(about 1024x1024{lowres}). Empty prompt, cfg 1 (Z-Image has no guidance input), the 'fast' preset, "
              "4 particles, 'least memory'.",
    "qwenimage": "Qwen-Image (a rectified-flow MMDiT on Wan 2.1's VAE) through ComfyUI's own loaders: the model in "
                 "Load Diffusion Model, Qwen2.5-VL 7B in Load CLIP (type qwen_image), qwen_image_vae.safetensors in "
                 "Load VAE, your photo in Load Image (about 1024x1024{lowres}). Empty prompt, cfg 1, the 'fast' "
                 "preset, 4 particles, 'least memory'.",
    "flux2": "Flux.2 dev (rectified flow, guidance-distilled, 128-channel latents) through ComfyUI's own loaders: the "
             "transformer in Load Diffusion Model, Mistral 3 Small in Load CLIP (type flux2), flux2-vae.safetensors "
             "in Load VAE, your photo in Load Image (about 1024x1024{lowres}). Guidance is FluxGuidance's input "
             "(4.0), so cfg stays 1. The 'fast' preset, 4 particles, 'least memory'.",
}
# The fast path (issue 25): which tiny VAE of the model's latent space feeds the sampler's fast_vae.
TINY_VAES = {"sd15": "taesd", "sdxl": "taesdxl", "sd3": "taesd3", "flux": "taef1", "zimage": "taef1"}
NO_TINY_VAE = ("No fast path: ComfyUI 0.3.75's Load VAE offers no tiny VAE for this latent space, so the full VAE "
               "decodes in every iteration (the 'fast' preset's other savings still apply).")
FAST_PATH_DEMO = ("Fast path: the Demo Model's fast_vae (its tiny VAE) feeds the sampler's fast_vae, so every "
                  "iteration but the last full_decoder_steps decodes through it{preset}; Particle Decode "
                  "decodes with the full VAE. Disconnect fast_vae{recommended} to run the full VAE throughout.")
FAST_PATH_TINY = ("Fast path: Load VAE '{tiny}' (a tiny VAE of the same latent space) feeds the sampler's "
                  "fast_vae, so every iteration but the last full_decoder_steps decodes through it (the 'fast' "
                  "preset sets how many); the full VAE stays on the sampler's vae and on Particle Decode. '{tiny}' "
                  "needs {tiny}_encoder.safetensors and {tiny}_decoder.safetensors from "
                  "github.com/madebyollin/taesd in ComfyUI/models/vae_approx/ (the files ComfyUI's previews "
                  "use){newer}. Disconnect fast_vae and choose preset 'recommended' to run the full VAE "
                  "throughout.")


DISTRIBUTED = {
    "particles": "ComfyUI-Distributed (install it beside the pack; enable a master and workers in its panel): one "
                 "photo, every machine draws its own particles. Distributed Seed gives the master the seed and "
                 "worker k seed + k (so each image's seed is known: master first, then the workers in order); the "
                 "Distributed Collector gathers every machine's particles on the master; Expect Images stops the "
                 "run if a machine's images are missing (saving those that arrived); Particle Mean and Spread pools "
                 "them. Particles of one photo are coupled, so each machine keeps its own; set images_per_machine "
                 "to the sampler's particles.",
    "batch": "ComfyUI-Distributed (install it beside the pack; enable a master and workers in its panel): "
             "different photos on every machine, collected back in order (master first, then the workers). "
             "Distributed Value gives each machine its photos ({share}); each photo's measurement noise is seeded by "
             "the photo itself, so it is the same on any machine. Expect Images stops the run if a machine's images "
             "are missing (saving those that arrived); set images_per_machine to one machine's share.",
}


def distributed_note(name: str) -> str:
    _, kind, family = name.split("_", 2)
    share = ("the held-out crops from 'start': master 0, worker 1 3, worker 2 6, 3 each" if family == "demo"
             else "a file name in ComfyUI/input on each machine: photo_1.png on the master, photo_2.png and "
                  "photo_3.png on workers 1 and 2")
    model = FAMILIES[family].split(":")[0].split(",")[0] if family != "demo" else "Runs as is on the demo model"
    return DISTRIBUTED[kind].format(share=share) + " " + model + ("." if not model.endswith(".") else "")


def note_text(name: str) -> str:
    if name.startswith("distributed_"):
        return distributed_note(name)
    family, task = name.split("_", 1)
    text = TASKS[task].format(box="the centre half" if family in ("demo", "demoflow", "demodetail", "custom")
                              else "the paper's reference box")
    lowres = ""
    if task == "super_resolution_x4":
        lowres = ": load the LOW-resolution photo, 128x128 for a 512 result" if family == "sd15" else \
            ": load the LOW-resolution photo, 256x256 for a 1024 result"
    elif task in ("mask_inpainting", "deblurring") and family != "demo":
        lowres = "; 'already degraded' uses your photo itself as the measurement"
    detail = "detail 0.2" if task.endswith("inpainting") else "detail 0.5"
    text += " " + FAMILIES[family].format(lowres=lowres, detail=detail) + " " + fast_path_text(family)
    if name == "demo_mask_inpainting":
        text += f" Copy workflows/inputs/{MASKED_EXAMPLE} from the pack into ComfyUI/input/ (or upload it)."
    return text


def fast_path_text(family: str) -> str:
    """What the template's fast_vae is wired to, where its files go, and how to turn it off."""
    if family in ("qwenimage", "flux2"):
        return NO_TINY_VAE
    if family in TINY_VAES:
        newer = ", listed by ComfyUI from mid-2024 on" if family in ("sd3", "flux", "zimage") else ""
        return FAST_PATH_TINY.format(tiny=TINY_VAES[family], newer=newer)
    if family == "custom":  # no presets on the custom-sampling node
        return FAST_PATH_DEMO.format(preset=" (full_decoder_steps 0: the tiny VAE in every iteration)",
                                     recommended="")
    return FAST_PATH_DEMO.format(preset=" (the 'fast' preset sets how many)",
                                 recommended=" and choose preset 'recommended'")


def template_names() -> list[str]:
    """Every API workflow that has an editor twin (the ``degrade_*`` ones are test inputs only)."""
    return sorted(path.stem for path in API_DIR.glob("*.json") if not path.stem.startswith("degrade_"))


def single_machine_names() -> list[str]:
    """The templates a stock ComfyUI with the pack can load (the ``distributed_*`` ones need ComfyUI-Distributed)."""
    return [name for name in template_names() if not name.startswith("distributed_")]


def layout(prompt: dict[str, Any], sizes: dict[str, list[float]]) -> tuple[dict[str, tuple[float, float]],
                                                                          tuple[float, float, float]]:
    """Columns by depth, nodes stacked in id order, the Save Image nodes in a two-wide grid on the
    right (big enough to show their pictures); returns the positions and the note's place under
    the first column (x, y, width)."""
    depth = columns(prompt)
    saves = sorted((n for n, entry in prompt.items() if entry["class_type"] == "SaveImage"), key=int)
    x, positions = 0.0, {}
    bottom_of_first, first_width = 0.0, 0.0
    for column in sorted({depth[n] for n in prompt if n not in saves}):
        members = sorted((n for n in prompt if depth[n] == column and n not in saves), key=int)
        y = 0.0
        for node_id in members:
            positions[node_id] = (x, y + TITLE)
            y += sizes[node_id][1] + TITLE + ROW_GAP
        if column == 0:
            bottom_of_first, first_width = y, max(sizes[n][0] for n in members)
        x += max(sizes[n][0] for n in members) + COLUMN_GAP
    for index, node_id in enumerate(saves):
        sizes[node_id] = list(SAVE_SIZE)
        row, col = divmod(index, 2)
        positions[node_id] = (x + col * (SAVE_SIZE[0] + 30), TITLE + row * (SAVE_SIZE[1] + TITLE + 30))
    return positions, (0.0, bottom_of_first + TITLE, first_width)


def text_width(entry: dict[str, Any]) -> float:
    """Room for the longest text widget value next to its label (the editor does not widen for it)."""
    texts = [value for value in entry["inputs"].values() if isinstance(value, str)]
    return 7.0 * max(map(len, texts), default=0) + 110.0


def note_height(text: str, width: float) -> float:
    """Tall enough for the note's text at the editor's note font (about 6.5 px a character, 16 px a line)."""
    per_line = max(1, int((width - 20) / 6.5))
    return max(NOTE_HEIGHT, 40.0 + 16.0 * -(-len(text) // per_line))


def build_ui(name: str, object_info: dict[str, Any], editor: Editor) -> dict[str, Any]:
    prompt = json.loads((API_DIR / f"{name}.json").read_text())
    editor.load(api_to_ui(prompt, object_info))
    sizes = {node_id: [max(size[0], 315.0, text_width(prompt[node_id])), size[1]]
             for node_id, size in editor.computed_sizes().items()}
    positions, (note_x, note_y, note_width) = layout(prompt, sizes)
    text = note_text(name)
    notes = [{"pos": (note_x, note_y), "size": (note_width, note_height(text, note_width)), "text": text}]
    return api_to_ui(prompt, object_info, positions, {k: tuple(v) for k, v in sizes.items()}, notes)


def write_masked_example() -> Path:
    """A held-out photo crop (never seen in training) whose transparent brush stroke is the hole."""
    import numpy as np
    from PIL import Image, ImageDraw

    sys.path.insert(0, str(PACK_ROOT))
    from dwgf import demo_model  # the pure core; imports no ComfyUI

    crop = demo_model.load_heldout("photos").images[4].numpy()
    rgb = (crop * 255).round().clip(0, 255).astype(np.uint8)
    alpha = Image.new("L", (rgb.shape[1], rgb.shape[0]), 255)
    ImageDraw.Draw(alpha).line([(5, 9), (12, 20), (20, 13), (27, 24)], fill=0, width=5, joint="curve")
    target = INPUTS_DIR / MASKED_EXAMPLE
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.dstack([rgb, np.asarray(alpha)])).save(target)
    return target


def save_thumbnail(editor: Editor, target: Path) -> None:
    from PIL import Image

    editor.fit_view(margin=20)
    shot = editor.screenshot(target.with_suffix(".png"))
    Image.open(shot).convert("RGB").resize(THUMBNAIL_SIZE, Image.LANCZOS).save(target, quality=88)
    shot.unlink()


def run_in_editor(editor: Editor, ui: dict[str, Any]) -> None:
    """Queue the graph on the canvas and wait until every Save Image node shows its pictures (the
    canvas loads a node's pictures only while the node is in view)."""
    editor.fit_view(margin=20)
    editor.queue()
    for node in ui["nodes"]:
        if node["type"] == "SaveImage":
            editor.wait_for_node_images(node["id"], timeout_s=3600)
    editor.wait(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-run", action="store_true", help="skip the run for the README screenshot")
    parser.add_argument("names", nargs="*", help="workflow names (default: all in workflows/api/)")
    args = parser.parse_args()
    example = write_masked_example()
    print(f"wrote {example}")
    import tempfile

    from distributed import snapshot, unpack

    scratch = tempfile.TemporaryDirectory(prefix="dwgf-make-workflows-")  # removed when the run ends
    archive = snapshot()  # the distributed templates need ComfyUI-Distributed's node definitions
    extra = [unpack(archive, Path(scratch.name))] if archive else []
    with scratch, ComfyServer(extra_custom_nodes=extra) as server, \
            Editor(server.base_url, width=1600, height=1000) as editor:
        server.upload_image(example)
        object_info = server.get_json("/object_info")
        for name in args.names or template_names():
            ui = build_ui(name, object_info, editor)
            (WORKFLOWS / f"{name}.json").write_text(json.dumps(ui, indent=1, ensure_ascii=False) + "\n")
            editor.load(ui)
            editor.hide_menus()
            save_thumbnail(editor, WORKFLOWS / f"{name}.jpg")
            print(f"wrote workflows/{name}.json and .jpg")
            if name == README_WORKFLOW and not args.no_run:
                run_in_editor(editor, ui)
                editor.fit_view(margin=30)
                editor.screenshot(README_SCREENSHOT)
                print(f"wrote {README_SCREENSHOT}")


if __name__ == "__main__":
    main()
