"""Is the demo autoencoder mirror-symmetric? ``E(x)`` against the mirrored ``E(mirror(x))`` on the
held-out photo crops, per latent column: the evidence the README gives for why the epsilon UNet,
trained on mirrored latents, draws frames at the image border.

    .venv/bin/python tools/check_autoencoder_mirror.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import comfyui_env  # noqa: E402
from comfyui_env import call_node  # noqa: E402


def main() -> None:
    comfyui_env.import_comfyui()
    _, vae, *_ = call_node("DWGF_DemoModel", prompt="unconditional", batch_size=1)
    photos, _ = call_node("DWGF_DemoHeldOutImages", which="photos", start=0, count=10000)
    (latent,) = call_node("VAEEncode", vae=vae, pixels=photos)
    (mirrored,) = call_node("VAEEncode", vae=vae, pixels=photos.flip(2).contiguous())
    z, z_mirror = latent["samples"], mirrored["samples"].flip(-1)
    scale = z.std()
    per_column = (z - z_mirror).square().mean((0, 1, 2)).sqrt() / scale
    print(f"{len(photos)} held-out crops; RMS of E(x) - mirror(E(mirror(x))) per latent column, in latent stds:")
    print(" ".join(f"{v:.2f}" for v in per_column.tolist()))
    first, last = z[..., 0].mean((0, 2)), z[..., -1].mean((0, 2))
    print("mean latent per channel, left column:", " ".join(f"{v:+.1f}" for v in first.tolist()))
    print("mean latent per channel, right column:", " ".join(f"{v:+.1f}" for v in last.tolist()))


if __name__ == "__main__":
    main()
