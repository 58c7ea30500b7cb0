"""Distil the demo model's tiny autoencoder (``dwgf/tiny_autoencoder.py``) from its full one.

DWGF back-propagates through the decoder for every particle at every iteration; the tiny
autoencoder is the DWGF Sampler's optional ``fast_vae`` for the demo model, as ComfyUI's TAESD is
for SD. It shares the demo autoencoder's latent space (4×16×16 for 32×32 images, SD1.5 scale
0.18215), so it is trained to imitate the full networks, not the images:

* decoder target ``D(z)``, the full decoder's output, on latents that cover what a DWGF run
  decodes: posterior means ``E(x)`` of training crops, those plus Gaussian noise of scales
  log-uniform in [0.03, 2] (model space), and rectified-flow interpolants ``(1 - t) E(x) + t ε``
  (t uniform: the flow starts from N(0, I));
* encoder target: the full encoder's posterior mean on the same crops.

Plain MSE for both (no Jacobian-matching term). Data: the demo model's own training split (the
train photographs of ``tools/photo_sources.py`` and the train digits; never the held-out photos
nor scikit-learn's sample images). The held-out crops of ``heldout.safetensors`` only measure.

Writes ``dwgf/default_model/tiny_vae.safetensors`` (float16, measured against float32) and the
``"tiny_vae"`` section of ``model.json`` (architecture, training record, measurements).
Resumable (``tools/train_checkpoint.py``). ``make train-tiny-vae``; ``--measure-only`` re-measures
the shipped file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo_data  # noqa: E402
import train_default_model as eps_training  # noqa: E402
from train_checkpoint import Phase  # noqa: E402

sys.path.insert(0, str(eps_training.PACK_ROOT))
from dwgf import demo_model, tiny_autoencoder  # noqa: E402
from dwgf.memory import saved_bytes_of  # noqa: E402

SCALE = eps_training.SD15_SCALE_FACTOR
FILE_NAME = "tiny_vae.safetensors"
ARCHITECTURE = {
    "latent_channels": eps_training.LATENT_CHANNELS,
    "encoder": {"channels": [32, 64], "blocks": [1, 2]},  # full resolution, then latent resolution
    "decoder": {"channels": [64, 32], "blocks": [2, 0]},  # latent resolution, then full resolution
    "vae_scale": SCALE,
    "vae_shift": 0.0,
}
PARTICLES = 4
MEMORY_BUDGET_BYTES = 8 * 2**30


@dataclass
class TinySettings:
    seed: int = 0
    steps: int = 2200
    batch: int = 32
    lr: float = 2e-3
    photo_pool: int = 12000
    noise_min: float = 0.03
    noise_max: float = 2.0
    # fractions of each decoder batch: clean E(x), E(x) + noise, flow interpolants (the rest)
    clean_fraction: float = 0.375
    noisy_fraction: float = 0.375


def load_full_autoencoder(folder: Path) -> torch.nn.Module:
    """The shipped demo AutoencoderKL (ComfyUI's class), float32, frozen."""
    from safetensors.torch import load_file

    ae_class, _, _ = eps_training.import_comfy_networks()
    config = json.loads((folder / "model.json").read_text())
    ae = ae_class(ddconfig=config["vae"]["ddconfig"], embed_dim=config["vae"]["embed_dim"])
    ae.load_state_dict({k: v.float() for k, v in load_file(str(folder / "vae.safetensors")).items()})
    for parameter in ae.parameters():
        parameter.requires_grad_(False)
    return ae.eval()


def decoder_latents(mean: torch.Tensor, settings: TinySettings, generator: torch.Generator) -> torch.Tensor:
    """Model-space latents a DWGF run decodes: clean means, noisy means, flow interpolants."""
    n = len(mean)
    clean, noisy = int(n * settings.clean_fraction), int(n * settings.noisy_fraction)
    noise = torch.randn(mean.shape, generator=generator)
    log_min, log_max = torch.log(torch.tensor(settings.noise_min)), torch.log(torch.tensor(settings.noise_max))
    sigma = torch.exp(log_min + (log_max - log_min) * torch.rand(noisy, 1, 1, 1, generator=generator))
    t = torch.rand(n - clean - noisy, 1, 1, 1, generator=generator)
    return torch.cat([mean[:clean],
                      mean[clean:clean + noisy] + sigma * noise[clean:clean + noisy],
                      (1 - t) * mean[clean + noisy:] + t * noise[clean + noisy:]])


def train(tiny: torch.nn.Module, full: torch.nn.Module, images: torch.Tensor, means: torch.Tensor,
          settings: TinySettings, work: Path, log) -> float:
    """MSE to the full decoder's output and to the full encoder's mean; returns training seconds."""
    tiny.train()
    optimiser = torch.optim.Adam(tiny.parameters(), lr=settings.lr)
    generator = torch.Generator().manual_seed(settings.seed + 21)
    phase = Phase("tiny_vae", work, settings.steps, {"tiny": tiny}, optimiser, generator, log)

    def step(index: int) -> str:
        for group in optimiser.param_groups:
            group["lr"] = eps_training.cosine_lr(index, settings.steps, settings.lr, warmup=50)
        pick = torch.randint(len(images), (settings.batch,), generator=generator)
        x, mean = images[pick], means[pick]
        z = decoder_latents(mean, settings, generator)
        with torch.no_grad():
            target = full.decode(z / SCALE)
        decoder_loss = (tiny.decode_model_space(z) - target).pow(2).mean()
        encoder_loss = (tiny.encode_model_space(x) - mean).pow(2).mean()
        optimiser.zero_grad(set_to_none=True)
        (decoder_loss + encoder_loss).backward()
        optimiser.step()
        return f"decoder mse {decoder_loss.item():.5f}  encoder mse {encoder_loss.item():.5f}"

    seconds = phase.run(step)
    tiny.eval()
    return seconds


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------
def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean per-image PSNR of images in [-1, 1] (both clamped, as ComfyUI's VAEDecode does), in [0, 1] units."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).flatten(1).mean(1)
    return float((10 * torch.log10(1 / mse.clamp_min(1e-10))).mean())


@torch.no_grad()
def measure_quality(tiny: torch.nn.Module, full: torch.nn.Module, seed: int) -> dict:
    """Held-out photo crops: round trips against the photos and against the full round trip;
    decode agreement on E(x), on noisy E(x) and on flow interpolants."""
    photos = demo_model.load_heldout("photos").images.permute(0, 3, 1, 2) * 2 - 1
    mean = eps_training.encode_moments(full, photos)[0] * SCALE
    full_round_trip = full.decode(mean / SCALE)
    tiny_round_trip = tiny.decode(tiny.encode(photos))
    generator = torch.Generator().manual_seed(seed + 31)
    noise = torch.randn(mean.shape, generator=generator)

    def agreement(z: torch.Tensor) -> float:
        return round(psnr_db(tiny.decode_model_space(z), full.decode(z / SCALE)), 2)

    return {
        "heldout_photo_crops": len(photos),
        "round_trip_psnr_db": {"tiny_vs_photos": round(psnr_db(tiny_round_trip, photos), 2),
                               "full_vs_photos": round(psnr_db(full_round_trip, photos), 2),
                               "tiny_vs_full_round_trip": round(psnr_db(tiny_round_trip, full_round_trip), 2)},
        "decode_psnr_tiny_vs_full_db": {
            "clean_latents_E(x)": agreement(mean),
            **{f"E(x)+{s}*noise": agreement(mean + s * noise) for s in (0.1, 0.3, 1.0)},
            **{f"flow_interpolant_t={t}": agreement((1 - t) * mean + t * noise) for t in (0.5, 0.9)},
            "pure_noise_N(0,I)": agreement(noise),
        },
        "encoder_latent_rmse_model_space": round(float((tiny.encode(photos) * SCALE - mean).pow(2).mean().sqrt()), 4),
    }


def _vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure_one(kind: str, side: int, repeats: int, folder: Path) -> dict:
    """Forward + backward (w.r.t. the latents) of one decoder on ``PARTICLES`` images of side
    ``side``: seconds, saved-for-backward bytes, and peak resident memory above the start (this
    process only; address space capped at the start plus ``MEMORY_BUDGET_BYTES``)."""
    torch.set_num_threads(1)
    if kind == "full":
        network = load_full_autoencoder(folder)
        decode = network.decode
    else:
        from safetensors.torch import load_file

        record = json.loads((folder / "model.json").read_text())["tiny_vae"]
        network = tiny_autoencoder.build_tiny_autoencoder(record["architecture"],
                                                          load_file(str(folder / record["file"])))
        decode = network.decode
    weights = list(network.parameters())
    z = torch.randn(PARTICLES, eps_training.LATENT_CHANNELS, side // 2, side // 2)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    start_kib = _vm_kib("VmRSS")
    limit = _vm_kib("VmSize") * 1024 + MEMORY_BUDGET_BYTES
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        seconds = []
        for _ in range(repeats):
            began = time.perf_counter()
            latent = z.clone().requires_grad_(True)
            decode(latent).square().mean().backward()
            seconds.append(time.perf_counter() - began)
        peak = (_vm_kib("VmHWM") - start_kib) * 1024
        saved = saved_bytes_of(decode, z, weights)
    except (MemoryError, RuntimeError) as error:
        return {"fits_in_8_gib": False, "error": str(error).splitlines()[0][:160]}
    return {"fits_in_8_gib": True, "seconds": round(min(seconds), 4), "peak_resident_mib": round(peak / 2**20, 1),
            "saved_for_backward_mib": round(saved / 2**20, 1)}


def measure_cost(folder: Path, log) -> dict:
    """Each (decoder, side) in a fresh process, so peak memory is that decoder's alone."""
    plan = [("full", 32, 5), ("tiny", 32, 5), ("full", 128, 2), ("tiny", 128, 3), ("full", 256, 1),
            ("tiny", 256, 2), ("tiny", 512, 1), ("tiny", 1024, 1)]
    result: dict = {"particles": PARTICLES, "threads": 1, "device": "cpu", "float32": True}
    for kind, side, repeats in plan:
        run = subprocess.run([sys.executable, __file__, "--measure-one", kind, str(side), str(repeats),
                              "--out", str(folder)], capture_output=True, text=True)
        lines = run.stdout.strip().splitlines()
        measured = json.loads(lines[-1]) if run.returncode == 0 and lines else \
            {"fits_in_8_gib": False, "error": f"exit {run.returncode}: {run.stderr.strip()[-160:]}"}
        result.setdefault(f"{side}x{side}", {})[kind] = measured
        log(f"{kind} decoder fwd+bwd, {PARTICLES} x {side}^2: {measured}")
    for entry in result.values():
        if isinstance(entry, dict) and "seconds" in entry.get("full", {}) and "seconds" in entry.get("tiny", {}):
            entry["speedup"] = round(entry["full"]["seconds"] / entry["tiny"]["seconds"], 1)
            entry["saved_memory_ratio"] = round(entry["full"]["saved_for_backward_mib"]
                                                / entry["tiny"]["saved_for_backward_mib"], 1)
    fitting = [int(key.split("x")[0]) for key, entry in result.items()
               if isinstance(entry, dict) and entry.get("tiny", {}).get("fits_in_8_gib")]
    result["tiny_largest_side_measured_within_8_gib"] = max(fitting) if fitting else None
    return result


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=eps_training.DEFAULT_OUT, help="the demo model's folder")
    parser.add_argument("--work", type=Path, default=eps_training.DEFAULT_WORK, help="checkpoints")
    parser.add_argument("--photos", type=Path, default=eps_training.DEFAULT_PHOTO_CACHE)
    parser.add_argument("--seed", type=int, default=TinySettings.seed)
    parser.add_argument("--steps", type=int, default=TinySettings.steps)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--measure-only", action="store_true", help="re-measure the shipped tiny_vae.safetensors")
    parser.add_argument("--skip-cost", action="store_true", help="quality only (no time / memory runs)")
    parser.add_argument("--measure-one", nargs=3, metavar=("KIND", "SIDE", "REPEATS"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.measure_one:
        kind, side, repeats = options.measure_one
        print(json.dumps(measure_one(kind, int(side), int(repeats), options.out)))
        return

    from safetensors.torch import load_file, save_file

    settings = TinySettings(seed=options.seed, steps=options.steps)
    torch.set_num_threads(options.threads)
    torch.manual_seed(settings.seed)
    started = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - started:7.1f}s] {message}", flush=True)

    folder: Path = options.out
    full = load_full_autoencoder(folder)
    config = json.loads((folder / "model.json").read_text())
    if options.measure_only:
        record = config["tiny_vae"]
        tiny = tiny_autoencoder.build_tiny_autoencoder(record["architecture"],
                                                       load_file(str(folder / record["file"])))
        seconds = record["training"]["seconds"]
    else:
        digits, labels = demo_data.load_digits(eps_training.IMAGE_SIZE)
        train_mask = torch.ones(len(labels), dtype=torch.bool)
        train_mask[torch.from_numpy(demo_data.split_digits(labels, 0))] = False  # the demo model's split
        pyramids, train_names = demo_data.photo_pyramids("train", options.photos)
        crops = demo_data.random_crops(pyramids, settings.photo_pool, eps_training.IMAGE_SIZE,
                                       torch.Generator().manual_seed(settings.seed + 20))
        images = torch.cat([digits[train_mask], crops])
        means = eps_training.encode_moments(full, images)[0] * SCALE
        log(f"data: {len(crops)} crops of {len(train_names)} train photographs and {int(train_mask.sum())} "
            f"train digits, encoded (model-space latent std {float(means.std()):.3f})")
        tiny = tiny_autoencoder.build_tiny_autoencoder(ARCHITECTURE)
        log(f"tiny autoencoder: {tiny_autoencoder.parameter_count(tiny)} parameters")
        seconds = train(tiny, full, images, means, settings, options.work / f"tiny-vae-seed{settings.seed}", log)
        float32_quality = measure_quality(tiny, full, settings.seed)
        weights = {k: v.detach().to(torch.float16).contiguous() for k, v in tiny.state_dict().items()}
        tiny.load_state_dict({k: v.float() for k, v in weights.items()})  # measure the shipped fp16 weights
        save_file(weights, str(folder / FILE_NAME))
        record = {
            "description": "tiny autoencoder of the demo latent space (dwgf/tiny_autoencoder.py, TAESD-like: "
                           "convolutions and ReLU residual blocks, no attention, no normalisation), distilled "
                           "from the full one by tools/train_tiny_autoencoder.py; the DWGF Sampler's fast_vae",
            "architecture": ARCHITECTURE,
            "file": FILE_NAME,
            "parameters": tiny_autoencoder.parameter_count(tiny),
            "decoder_parameters": tiny_autoencoder.parameter_count(tiny.tiny_decoder),
            "training": {"settings": settings.__dict__, "seconds": round(seconds, 1), "threads": options.threads,
                         "torch": torch.__version__, "loss": "MSE to the full decoder's output and to the full "
                         "encoder's posterior mean (model space); no Jacobian term",
                         "data": "the demo model's train photographs and train digits (never held-out ones)"},
            "measured": {"float32_before_fp16_storage": float32_quality},
        }
        log(f"trained in {seconds:.0f} s; float32 {float32_quality}")
    quality = measure_quality(tiny, full, settings.seed)
    log(f"shipped (fp16) weights: {quality}")
    record.setdefault("measured", {}).update(quality)
    record["file_megabytes"] = round((folder / record["file"]).stat().st_size / 2**20, 2)
    write_section(folder, record)  # the cost runs below read the tiny autoencoder through it
    if not options.skip_cost:
        record["measured"]["decoder_forward_backward"] = measure_cost(folder, log)
        write_section(folder, record)
    log(f"wrote {folder / record['file']} and model.json's tiny_vae section")


def write_section(folder: Path, record: dict) -> None:
    """Set model.json's ``tiny_vae`` section, leaving every other entry as it is."""
    config = json.loads((folder / "model.json").read_text())
    config["tiny_vae"] = record
    (folder / "model.json").write_text(json.dumps(config, indent=1) + "\n")


if __name__ == "__main__":
    main()
