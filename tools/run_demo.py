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
LABEL_WIDTH = 150
ROW_LABELS = {"1_clean": "clean (held out)", "2_measurement": "measurement y", "3_pseudo_inverse": "A\u2020y",
              "4_dwgf_mean": "DWGF: particle mean", "5_dwgf_particles": "DWGF: particle {}",
              "6_spread": "spread (std)"}


def grid_rows(images: list[Path]) -> list[tuple[str, list[Path]]]:
    """(label, one picture per restored image) rows: each output is a row, except the particles,
    which become one row per particle (they come image-major), so every row is as wide as the
    number of images."""
    outputs: dict[str, list[Path]] = {}
    for path in sorted(images):
        outputs.setdefault(path.name.rsplit("_", 2)[0], []).append(path)
    columns = min(len(paths) for paths in outputs.values())
    rows = []
    for name, paths in outputs.items():
        label = ROW_LABELS.get(name, name)
        per_image = len(paths) // columns
        if per_image == 1:
            rows.append((label, paths))
            continue
        for particle in range(per_image):
            rows.append((label.format(particle + 1), paths[particle::per_image]))
    return rows


def save_grid(images: list[Path], target: Path) -> None:
    """A labelled grid: one column per restored image, one row per output (each particle its own
    row), every cell the same size (the largest image zoomed ×4; smaller ones, such as a
    super-resolution measurement, zoomed to fill it), nearest-neighbour pixels."""
    from PIL import Image, ImageDraw

    rows = grid_rows(images)
    pictures = [(label, [Image.open(p).convert("RGB") for p in paths]) for label, paths in rows]
    cell = max(max(im.width, im.height) for _, ims in pictures for im in ims) * GRID_ZOOM
    gap = 4
    columns = max(len(ims) for _, ims in pictures)
    grid = Image.new("RGB", (LABEL_WIDTH + columns * (cell + gap), len(pictures) * (cell + gap)), "white")
    draw = ImageDraw.Draw(grid)
    for row, (label, ims) in enumerate(pictures):
        top = row * (cell + gap)
        draw.text((6, top + cell // 2 - 6), label, fill="black")
        for col, im in enumerate(ims):
            zoom = cell // max(im.width, im.height)  # a smaller measurement fills the cell too
            zoomed = im.resize((im.width * zoom, im.height * zoom), Image.NEAREST)
            grid.paste(zoomed, (LABEL_WIDTH + col * (cell + gap), top))
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
