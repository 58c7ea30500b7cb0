"""Draw samples of the embedded demo model with ComfyUI's stock KSampler and VAEDecode.

Writes a grid (one row per prompt: "digit 0" … "digit 9", "photo"; one column per seed) and prints
how often the digits are recognised as the prompted class by a nearest-class-mean classifier
fitted on the training digits: the numbers quoted in the README.

    .venv/bin/python tools/render_default_model_samples.py --out workflows/images/default_model_samples.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import comfyui_env  # noqa: E402


def training_digit_means(heldout_indices: list[int]) -> torch.Tensor:
    """Per-class mean of the training digits as 32×32 grey images (the held-out ones excluded)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    train = np.setdiff1d(np.arange(len(digits.target)), np.asarray(heldout_indices))
    small = torch.from_numpy(digits.images[train]).float().div(16).unsqueeze(1)
    grey = torch.nn.functional.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    return torch.stack([grey[torch.from_numpy(digits.target[train] == c)].mean(0) for c in range(10)])


def classify(images: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    return torch.cdist(images.float().mean(-1).flatten(1), means.flatten(1)).argmin(1)


def grid(rows: list[torch.Tensor], zoom: int, gap: int = 2) -> np.ndarray:
    """IMAGE batches (one per row) → one uint8 picture, nearest-neighbour zoomed."""
    tiles = [torch.cat([torch.nn.functional.pad(im.permute(2, 0, 1), (0, gap, 0, gap), value=1.0)
                        for im in row], dim=2) for row in rows]
    picture = torch.cat(tiles, dim=1)
    picture = picture.repeat_interleave(zoom, 1).repeat_interleave(zoom, 2)
    return (picture.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=comfyui_env.PACK_ROOT / "workflows" / "images"
                        / "default_model_samples.png")
    parser.add_argument("--columns", type=int, default=10, help="samples per prompt shown in the grid")
    parser.add_argument("--scored", type=int, default=50, help="samples per digit scored for accuracy")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=3.0)
    parser.add_argument("--sampler", default="euler")
    parser.add_argument("--scheduler", default="normal")
    parser.add_argument("--zoom", type=int, default=3)
    parser.add_argument("--prior", default="epsilon", help="the demo model's prior: epsilon or 'flow matching'")
    parser.add_argument("--prompts", nargs="*", default=None, help="only these prompts (default: all)")
    options = parser.parse_args()

    from PIL import Image

    torch.set_num_threads(2)
    nodes = comfyui_env.import_comfyui()
    loader = nodes.NODE_CLASS_MAPPINGS["DWGF_DemoModel"]()
    demo = comfyui_env.pack_submodule("dwgf.demo_model")
    config = demo.load_config()
    means = training_digit_means(config["split"]["digits"]["heldout_indices"])
    rows, accuracy = [], {}
    with torch.inference_mode():
        for index, prompt in enumerate(config["prompts"]):
            if options.prompts and prompt not in options.prompts:
                continue
            count = options.scored if prompt.startswith("digit") else options.columns
            model, vae, positive, negative, latent, *_ = loader.load(prompt, max(count, options.columns), options.prior)
            samples = nodes.KSampler().sample(model, 1234 + index, options.steps, options.cfg, options.sampler,
                                              options.scheduler, positive, negative, latent)[0]
            images = nodes.VAEDecode().decode(vae, samples)[0]
            rows.append(images[:options.columns])
            if prompt.startswith("digit"):
                digit = int(prompt.split()[-1])
                accuracy[digit] = float((classify(images, means) == digit).float().mean())
    options.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid(rows, options.zoom)).save(options.out)
    print(f"wrote {options.out}")
    print(f"{options.sampler}/{options.scheduler}, {options.steps} steps, CFG {options.cfg}: class accuracy per digit "
          + ", ".join(f"{d}: {a:.2f}" for d, a in sorted(accuracy.items()))
          + (f"; mean {sum(accuracy.values()) / len(accuracy):.3f} over {options.scored} samples per digit"
             if accuracy else ""))


if __name__ == "__main__":
    main()
