"""The README's main job: a real headless ComfyUI runs the pack's API workflows and writes images.

Starts ComfyUI's own server (vendored 2024 copy, or ``DWGF_COMFYUI_ROOT``) on a free loopback
port with the pack installed, puts the demo input into its input folder, submits each workflow
of ``DEMO_WORKFLOWS`` through ``POST /prompt``, follows it on the websocket, and downloads every
output image through ``/history`` and ``/view`` into ``--out``.
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

DEMO_WORKFLOWS = ("degrade_box_inpainting", "degrade_sr_x4")
DEMO_INPUT_NAME = "dwgf_demo_input.png"


def write_demo_input(folder: Path) -> Path:
    """The demo's input picture: scikit-image's public-domain astronaut, 128²."""
    import numpy as np
    import skimage.data
    from PIL import Image

    picture = Image.fromarray(np.asarray(skimage.data.astronaut())).resize((128, 128), Image.LANCZOS)
    target = folder / DEMO_INPUT_NAME
    picture.save(target)
    return target


def run(out: Path, workflows: tuple[str, ...]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    root = comfyui_root()
    print(f"ComfyUI {comfyui_version(root)} at {root}")
    with ComfyServer() as server:
        print(f"server up on {server.base_url} (log: {server.log_path})")
        write_demo_input(server.input_dir)
        for name in workflows:
            prompt = json.loads((PACK_ROOT / "workflows" / "api" / f"{name}.json").read_text())
            started = time.perf_counter()
            result = server.run(prompt)
            images = result.output_images()
            for image in images:
                target = out / name / Path(image.get("subfolder", "")).name / image["filename"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(server.view(image))
                written.append(target)
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
