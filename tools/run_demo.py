"""The README's main job: a real headless ComfyUI runs the pack's API workflows and writes images.

Starts ComfyUI's own server (vendored 2024 copy, or ``DWGF_COMFYUI_ROOT``) on a free loopback
port with the pack installed, submits each workflow of ``DEMO_WORKFLOWS`` (DWGF on the embedded
demo model and its held-out images) through ``POST /prompt``, follows it on the websocket, and
downloads every output image through ``/history`` and ``/view`` into ``--out``, with one grid
picture per workflow.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from comfy_server import ComfyServer  # noqa: E402
from comfyui_env import PACK_ROOT, comfyui_root, comfyui_version  # noqa: E402

DEMO_WORKFLOWS = ("demo_box_inpainting", "demo_super_resolution_x4")
GRID_ZOOM = 4


def save_grid(images: list[Path], target: Path) -> None:
    """One row per output (clean, measurement, A†y, DWGF mean, particles, spread), zoomed ×4."""
    from PIL import Image

    rows: dict[str, list[Path]] = {}
    for path in sorted(images):
        rows.setdefault(path.name.rsplit("_", 2)[0], []).append(path)
    pictures = {name: [Image.open(p).convert("RGB") for p in paths] for name, paths in rows.items()}
    cell = max(max(im.width, im.height) for ims in pictures.values() for im in ims) * GRID_ZOOM
    width = cell * max(len(ims) for ims in pictures.values())
    grid = Image.new("RGB", (width, cell * len(pictures)), "white")
    for row, ims in enumerate(pictures.values()):
        for col, im in enumerate(ims):
            zoomed = im.resize((im.width * GRID_ZOOM, im.height * GRID_ZOOM), Image.NEAREST)
            grid.paste(zoomed, (col * cell, row * cell))
    grid.save(target)


def run(out: Path, workflows: tuple[str, ...]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    root = comfyui_root()
    print(f"ComfyUI {comfyui_version(root)} at {root}")
    with ComfyServer() as server:
        print(f"server up on {server.base_url} (log: {server.log_path})")
        for name in workflows:
            prompt = json.loads((PACK_ROOT / "workflows" / "api" / f"{name}.json").read_text())
            started = time.perf_counter()
            result = server.run(prompt)
            images = result.output_images()
            saved = []
            for image in images:
                target = out / name / image["filename"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(server.view(image))
                saved.append(target)
            save_grid(saved, out / f"{name}_grid.png")
            written += [*saved, out / f"{name}_grid.png"]
            print(f"{name}: {len(images)} images in {time.perf_counter() - started:.1f}s")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=PACK_ROOT / "out" / "demo", help="folder for the images")
    parser.add_argument("--workflow", action="append", help="API workflow name(s) in workflows/api/")
    args = parser.parse_args()
    written = run(args.out.resolve(), tuple(args.workflow or DEMO_WORKFLOWS))
    print(f"wrote {len(written)} images under {args.out.resolve()}:")
    for path in written:
        print(f"  {path}")


if __name__ == "__main__":
    main()
