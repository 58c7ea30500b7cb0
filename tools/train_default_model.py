"""Train the pack's embedded default model: a small SD-style latent diffusion model.

Nobody can download Stable Diffusion weights on the machines this pack is developed and tested
on, yet the demo, the tests and the benchmarks need a real latent diffusion prior. This script
trains one from data that PyPI packages ship, with ComfyUI's own network classes, so the state
dicts load unchanged into ``comfy.sd.VAE`` and an SD1.5-style ``BaseModel``:

* an ``AutoencoderKL`` (4 latent channels, downscale 4: 32×32 RGB ↔ 4×8×8), whose latents are
  standardised by construction so that ComfyUI's fixed SD1.5 scale factor 0.18215 gives
  unit-variance model-space latents;
* an ``openaimodel.UNetModel`` with cross-attention, epsilon prediction on SD's 1000-step
  scaled-linear schedule, conditioned on a learned per-class context ("prompt") with a learned
  unconditional context for classifier-free guidance.

Data (two kinds in one model, one prompt each class):

* sklearn's ``load_digits`` (8×8, bilinearly upsampled to 32×32 RGB): prompts "digit 0" …
  "digit 9". Semantic classes, so samples can be scored by a classifier.
* 32×32 crops at several scales of the natural photographs bundled in the scikit-image wheel:
  prompt "photo". Real detail, so restoration benchmarks on them say something about the prior.
  Whole photographs are held out.

The split (held-out digit indices, held-out photographs) is written into ``model.json``; the
held-out images the benchmarks use go to ``heldout.safetensors``. Neither network sees them.

Run ``make train-model`` (seeded, ``torch.set_num_threads(2)``). Measured for the shipped weights on
2 cores shared with other busy processes: autoencoder 8.5 min, UNet 21 min, 30 min in all; on an idle
machine the per-step timings give about 18 min. ``--reuse-vae`` retrains the UNet only, reading back
the autoencoder and ``autoencoder_training.json`` the first phase wrote.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Sleeping (not spinning) OpenMP workers: with 2 threads on 2 cores, any other busy process
# otherwise slows every step several-fold. Must be set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import comfyui_env  # noqa: E402

PACK_ROOT = comfyui_env.PACK_ROOT
DEFAULT_OUT = PACK_ROOT / "dwgf" / "default_model"

IMAGE_SIZE = 32
DOWNSCALE = 4
LATENT_CHANNELS = 4
SD15_SCALE_FACTOR = 0.18215  # ComfyUI's SD15 latent format; fixed, so the AE is standardised to it
DIGIT_PROMPTS = [f"digit {d}" for d in range(10)]
PHOTO_PROMPT = "photo"
PROMPTS = [*DIGIT_PROMPTS, PHOTO_PROMPT]
CONTEXT_TOKENS = 4

# Natural photographs in the scikit-image wheel (no pooch download). Whole images are held out.
TRAIN_PHOTOS = ["astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
                "motorcycle_left", "motorcycle_right", "brick", "grass", "gravel", "moon", "coins",
                "cell", "clock", "text", "page", "microaneurysms"]
HELDOUT_PHOTOS = ["chelsea", "coffee", "camera"]
HELDOUT_DIGITS = 300
HELDOUT_PHOTO_CROPS_PER_IMAGE = 32
HELDOUT_MIN_CROP_STD = 0.04  # held-out crops are chosen to carry detail, so benchmarks are informative

AE_DDCONFIG = {"double_z": True, "z_channels": LATENT_CHANNELS, "resolution": IMAGE_SIZE, "in_channels": 3,
               "out_ch": 3, "ch": 32, "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [],
               "dropout": 0.0}
UNET_CONFIG = {"image_size": IMAGE_SIZE // DOWNSCALE, "in_channels": LATENT_CHANNELS,
               "out_channels": LATENT_CHANNELS, "model_channels": 32, "num_res_blocks": [1, 1],
               "channel_mult": [1, 2], "transformer_depth": [1, 1], "transformer_depth_output": [1, 1, 1, 1],
               "transformer_depth_middle": 1, "context_dim": 64, "num_heads": 8, "num_head_channels": -1,
               "use_spatial_transformer": True, "use_linear_in_transformer": False, "legacy": False,
               "adm_in_channels": None, "use_temporal_attention": False, "use_temporal_resblock": False,
               "use_checkpoint": False}


@dataclass
class Settings:
    seed: int = 0
    ae_steps: int = 900
    ae_batch: int = 32
    ae_lr: float = 1e-3
    kl_weight: float = 1e-6
    unet_steps: int = 2000
    unet_batch: int = 128
    unet_lr: float = 1e-3
    uncond_probability: float = 0.1
    ema_decay: float = 0.999
    photo_latent_pool: int = 12000


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
def load_digits_32() -> tuple[torch.Tensor, np.ndarray]:
    """sklearn's digits as (N, 3, 32, 32) in [-1, 1] (white ink on black) and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.from_numpy(digits.images).float().div(16.0).unsqueeze(1)
    big = F.interpolate(small, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return big.clamp(0, 1).repeat(1, 3, 1, 1) * 2 - 1, digits.target.astype(np.int64)


def split_digits(labels: np.ndarray, seed: int) -> np.ndarray:
    """Held-out digit indices: a seeded, class-stratified sample of ``HELDOUT_DIGITS``."""
    rng = np.random.default_rng(seed)
    per_class = HELDOUT_DIGITS // 10
    held = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)]
    return np.sort(np.concatenate(held))


def load_photo(name: str) -> torch.Tensor:
    """A scikit-image photograph as (3, H, W) in [0, 1] (grey ones repeated to RGB)."""
    from skimage import data

    if name.startswith("motorcycle_"):
        left, right, _ = data.stereo_motorcycle()
        image = left if name.endswith("left") else right
    else:
        image = getattr(data, name)()
    array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
    if array.ndim == 2:
        array = array.unsqueeze(-1).repeat(1, 1, 3)
    return array[..., :3].permute(2, 0, 1).contiguous()


def photo_pyramid(names: list[str]) -> list[torch.Tensor]:
    """Each photo at scales 1, 1/2, 1/4, 1/8 (area-averaged) while at least 48 px on each side.

    Crops of the coarser scales hold whole objects and edges; of the finer ones, texture.
    """
    levels = []
    for name in names:
        image = load_photo(name)
        for factor in (1, 2, 4, 8):
            h, w = image.shape[1] // factor, image.shape[2] // factor
            if min(h, w) < 48:
                break
            levels.append(F.interpolate(image[None], size=(h, w), mode="area")[0] if factor > 1 else image)
    return levels


def random_photo_crops(levels: list[torch.Tensor], count: int, generator: torch.Generator,
                       flips: bool = True) -> torch.Tensor:
    """``count`` random 32×32 crops, uniform over (image, scale) then position, in [-1, 1]."""
    crops = torch.empty(count, 3, IMAGE_SIZE, IMAGE_SIZE)
    picks = torch.randint(len(levels), (count,), generator=generator)
    for i, pick in enumerate(picks.tolist()):
        level = levels[pick]
        top = int(torch.randint(level.shape[1] - IMAGE_SIZE + 1, (1,), generator=generator))
        left = int(torch.randint(level.shape[2] - IMAGE_SIZE + 1, (1,), generator=generator))
        crop = level[:, top:top + IMAGE_SIZE, left:left + IMAGE_SIZE]
        if flips and bool(torch.rand((), generator=generator) < 0.5):
            crop = crop.flip(-1)
        crops[i] = crop
    return crops * 2 - 1


def heldout_photo_crops(seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Detailed crops (std > ``HELDOUT_MIN_CROP_STD``) of the held-out photographs, with sources."""
    generator = torch.Generator().manual_seed(seed + 1)
    crops, sources = [], []
    for index, name in enumerate(HELDOUT_PHOTOS):
        levels = photo_pyramid([name])
        kept = 0
        while kept < HELDOUT_PHOTO_CROPS_PER_IMAGE:
            crop = random_photo_crops(levels, 1, generator, flips=False)
            if float(crop.std()) / 2 > HELDOUT_MIN_CROP_STD:
                crops.append(crop)
                sources.append(index)
                kept += 1
    return torch.cat(crops), np.asarray(sources, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Networks (ComfyUI's own classes)
# ---------------------------------------------------------------------------------------------
def import_comfy_networks():
    """ComfyUI's AutoencoderKL and UNetModel classes and its weight-init-free ops."""
    root = comfyui_env.comfyui_root()
    sys.path.insert(0, str(root))
    from comfy.cli_args import args

    args.cpu = True
    import comfy.ops
    from comfy.ldm.models.autoencoder import AutoencoderKL
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    return AutoencoderKL, UNetModel, comfy.ops.disable_weight_init


def initialise(module: torch.nn.Module) -> None:
    """PyTorch's default initialisation: ComfyUI's layers skip it (fresh weights may be NaN)."""
    for layer in module.modules():
        for base in (torch.nn.Conv2d, torch.nn.Linear, torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.Embedding):
            if isinstance(layer, base):
                base.reset_parameters(layer)
                break


def make_attention_backward_safe(unet: torch.nn.Module) -> None:
    """The 2024 ComfyUI's BasicTransformerBlock does ``x += n`` in place, which breaks autograd;
    cloning the input of the blocks' LayerNorms keeps the saved tensors intact."""
    def clone_input(_module, inputs):
        return (inputs[0].clone(), *inputs[1:])

    for block in unet.modules():
        if type(block).__name__ == "BasicTransformerBlock":
            for name in ("norm1", "norm2", "norm3"):
                norm = getattr(block, name, None)
                if norm is not None:
                    norm.register_forward_pre_hook(clone_input)


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def cosine_lr(step: int, total: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))


def sd_alphas_cumprod() -> torch.Tensor:
    """SD's 1000-step scaled-linear schedule (what ComfyUI's ModelSamplingDiscrete builds)."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


# ---------------------------------------------------------------------------------------------
# Autoencoder
# ---------------------------------------------------------------------------------------------
def train_autoencoder(ae_class, settings: Settings, digits: torch.Tensor, photo_levels: list[torch.Tensor],
                      generator: torch.Generator, log) -> torch.nn.Module:
    """L1 + MSE reconstruction and a small KL; a quarter digits, three quarters photo crops per batch
    (photos are by far the harder half)."""
    ae = ae_class(ddconfig=AE_DDCONFIG, embed_dim=LATENT_CHANNELS)
    initialise(ae)
    ae.train()
    optimiser = torch.optim.Adam(ae.parameters(), lr=settings.ae_lr)
    quarter = settings.ae_batch // 4
    for step in range(settings.ae_steps):
        for group in optimiser.param_groups:
            group["lr"] = cosine_lr(step, settings.ae_steps, settings.ae_lr)
        pick = torch.randint(len(digits), (quarter,), generator=generator)
        batch = torch.cat([digits[pick], random_photo_crops(photo_levels, settings.ae_batch - quarter, generator)])
        moments = ae.quant_conv(ae.encoder(batch))
        mean, logvar = moments.chunk(2, dim=1)
        logvar = logvar.clamp(-30, 20)
        latent = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator)
        reconstruction = ae.decode(latent)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum((1, 2, 3)).mean()
        loss = (reconstruction - batch).abs().mean() + 0.5 * (reconstruction - batch).pow(2).mean() \
            + settings.kl_weight * kl
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if step % 100 == 0 or step == settings.ae_steps - 1:
            log(f"AE step {step:5d}  loss {loss.item():.4f}  kl {kl.item():.1f}")
    return ae.eval()


@torch.no_grad()
def encode_moments(ae: torch.nn.Module, images: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and log-variance of ``images`` (raw latents, before any scale factor)."""
    means, logvars = [], []
    for start in range(0, len(images), batch):
        moments = ae.quant_conv(ae.encoder(images[start:start + batch]))
        mean, logvar = moments.chunk(2, dim=1)
        means.append(mean)
        logvars.append(logvar.clamp(-30, 20))
    return torch.cat(means), torch.cat(logvars)


@torch.no_grad()
def standardise_latents(ae: torch.nn.Module, sample_images: torch.Tensor) -> dict[str, list[float]]:
    """Fold a per-channel affine map into ``quant_conv``/``post_quant_conv`` (an exact
    reparametrisation) so that raw latents have mean 0 and std 1/0.18215: then ComfyUI's SD1.5
    ``process_in`` (× 0.18215) hands the sampler unit-variance latents, as SD's own VAE does."""
    mean, _ = encode_moments(ae, sample_images)
    centre = mean.mean((0, 2, 3))
    spread = mean.std((0, 2, 3))
    gain = 1.0 / (SD15_SCALE_FACTOR * spread)  # new = (old - centre) * gain
    c = LATENT_CHANNELS
    qw, qb = ae.quant_conv.weight, ae.quant_conv.bias
    qw[:c] *= gain.view(-1, 1, 1, 1)
    qb[:c] = (qb[:c] - centre) * gain
    qb[c:] += 2 * torch.log(gain)  # the posterior std scales with the mean
    pw, pb = ae.post_quant_conv.weight, ae.post_quant_conv.bias
    pb += (pw[:, :, 0, 0] * centre.view(1, -1)).sum(1)
    pw /= gain.view(1, -1, 1, 1)
    return {"centre": centre.tolist(), "std": spread.tolist()}


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean per-image PSNR of images in [-1, 1], measured in [0, 1]."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).flatten(1).mean(1)
    return float((10 * torch.log10(1 / mse.clamp_min(1e-10))).mean())


# ---------------------------------------------------------------------------------------------
# UNet
# ---------------------------------------------------------------------------------------------
def train_unet(unet_class, operations, settings: Settings, digit_moments, digit_labels: torch.Tensor,
               photo_moments, generator: torch.Generator, log) -> tuple[torch.nn.Module, torch.Tensor]:
    """Epsilon prediction on the SD schedule; class contexts learned jointly; EMA weights returned."""
    unet = unet_class(**UNET_CONFIG, operations=operations)
    initialise(unet)
    with torch.no_grad():  # the last conv only: zeroing out's GroupNorm too would kill its gradient
        unet.out[-1].weight.zero_()
        unet.out[-1].bias.zero_()
    make_attention_backward_safe(unet)
    unet.train()
    contexts = torch.nn.Parameter(torch.randn(len(PROMPTS) + 1, CONTEXT_TOKENS, UNET_CONFIG["context_dim"],
                                              generator=generator))
    ema = copy.deepcopy(unet).eval()
    ema_contexts = contexts.detach().clone()
    for p in ema.parameters():
        p.requires_grad_(False)
    optimiser = torch.optim.Adam([*unet.parameters(), contexts], lr=settings.unet_lr)
    alphas_cumprod = sd_alphas_cumprod()
    photo_class = PROMPTS.index(PHOTO_PROMPT)
    uncond = len(PROMPTS)
    half = settings.unet_batch // 2
    digit_mean, digit_logvar = digit_moments
    photo_mean, photo_logvar = photo_moments
    for step in range(settings.unet_steps):
        for group in optimiser.param_groups:
            group["lr"] = cosine_lr(step, settings.unet_steps, settings.unet_lr)
        d = torch.randint(len(digit_mean), (half,), generator=generator)
        p = torch.randint(len(photo_mean), (settings.unet_batch - half,), generator=generator)
        mean = torch.cat([digit_mean[d], photo_mean[p]])
        logvar = torch.cat([digit_logvar[d], photo_logvar[p]])
        z0 = SD15_SCALE_FACTOR * (mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator))
        labels = torch.cat([digit_labels[d], torch.full((len(p),), photo_class)])
        labels = torch.where(torch.rand(len(labels), generator=generator) < settings.uncond_probability,
                             torch.full_like(labels, uncond), labels)
        t = torch.randint(1000, (len(z0),), generator=generator)
        a = alphas_cumprod[t].view(-1, 1, 1, 1)
        noise = torch.randn(z0.shape, generator=generator)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        prediction = unet(zt, t.float(), context=contexts[labels])
        loss = (prediction - noise).pow(2).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        decay = min(settings.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, q in zip(ema.parameters(), unet.parameters(), strict=True):
                e.lerp_(q, 1 - decay)
            ema_contexts.lerp_(contexts.detach(), 1 - decay)
        if step % 100 == 0 or step == settings.unet_steps - 1:
            log(f"UNet step {step:5d}  loss {loss.item():.4f}")
    return ema, ema_contexts


@torch.no_grad()
def denoising_error_ratios(unet, contexts, moments, labels, train_moments, timesteps, generator) -> dict:
    """Held-out MSE of the UNet's ẑ0 over that of the per-dimension Gaussian (Wiener) denoiser
    fitted on training latents — the best predictor that knows only first and second moments."""
    alphas_cumprod = sd_alphas_cumprod()
    z0 = SD15_SCALE_FACTOR * moments[0]
    train_z = SD15_SCALE_FACTOR * train_moments[0]
    mu, var = train_z.mean(0), train_z.var(0)
    result = {}
    for t in timesteps:
        a = float(alphas_cumprod[t])
        noise = torch.randn(z0.shape, generator=generator)
        zt = a**0.5 * z0 + (1 - a) ** 0.5 * noise
        eps = unet(zt, torch.full((len(z0),), float(t)), context=contexts[labels])
        model_z0 = (zt - (1 - a) ** 0.5 * eps) / a**0.5
        wiener = mu + a**0.5 * var / (a * var + 1 - a) * (zt - a**0.5 * mu)
        result[str(t)] = float((model_z0 - z0).pow(2).mean() / (wiener - z0).pow(2).mean())
    return result


# ---------------------------------------------------------------------------------------------
# Writing the files
# ---------------------------------------------------------------------------------------------
def to_uint8_hwc(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] → (N, H, W, 3) uint8, ComfyUI's IMAGE layout."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def half_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to(torch.float16).contiguous() for k, v in module.state_dict().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the weights and model.json")
    parser.add_argument("--seed", type=int, default=Settings.seed)
    parser.add_argument("--ae-steps", type=int, default=Settings.ae_steps)
    parser.add_argument("--unet-steps", type=int, default=Settings.unet_steps)
    parser.add_argument("--smoke", action="store_true", help="a few steps only, to check the script runs")
    parser.add_argument("--reuse-vae", action="store_true",
                        help="keep the autoencoder already in --out (its own seeded phase) and train the UNet only")
    options = parser.parse_args()
    settings = Settings(seed=options.seed, ae_steps=options.ae_steps, unet_steps=options.unet_steps)
    if options.smoke:
        settings.ae_steps, settings.unet_steps, settings.photo_latent_pool = 3, 3, 256

    from safetensors.torch import load_file, save_file

    torch.set_num_threads(2)
    torch.manual_seed(settings.seed)
    started = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - started:7.1f}s] {message}", flush=True)

    ae_class, unet_class, operations = import_comfy_networks()
    digits, labels = load_digits_32()
    heldout_index = split_digits(labels, settings.seed)
    train_mask = np.ones(len(labels), bool)
    train_mask[heldout_index] = False
    train_digits, train_labels = digits[train_mask], torch.from_numpy(labels[train_mask])
    photo_levels = photo_pyramid(TRAIN_PHOTOS)
    heldout_photos, heldout_sources = heldout_photo_crops(settings.seed)
    log(f"data: {len(train_digits)} train / {len(heldout_index)} held-out digits; {len(photo_levels)} photo "
        f"levels from {len(TRAIN_PHOTOS)} photos; {len(heldout_photos)} held-out crops of {HELDOUT_PHOTOS}")

    out: Path = options.out
    out.mkdir(parents=True, exist_ok=True)
    # Each phase has its own seeded generator, so --reuse-vae gives the UNet of a full run.
    ae_record = out / "autoencoder_training.json"
    if options.reuse_vae:
        ae = ae_class(ddconfig=AE_DDCONFIG, embed_dim=LATENT_CHANNELS)
        ae.load_state_dict({k: v.float() for k, v in load_file(str(out / "vae.safetensors")).items()})
        ae.eval()
        ae_seconds, latent_stats = (json.loads(ae_record.read_text())[k] for k in ("seconds", "latent_stats"))
        log("reusing the autoencoder in " + str(out))
    else:
        ae = train_autoencoder(ae_class, settings, train_digits, photo_levels,
                               torch.Generator().manual_seed(settings.seed), log)
        ae_seconds = time.time() - started
        stats_crops = random_photo_crops(photo_levels, 2000, torch.Generator().manual_seed(settings.seed + 2))
        latent_stats = standardise_latents(ae, torch.cat([train_digits, stats_crops]))
        save_file(half_state_dict(ae), str(out / "vae.safetensors"))
        ae = ae.half().float()  # measure and train on exactly the shipped (fp16) weights
        ae_record.write_text(json.dumps({"seconds": ae_seconds, "latent_stats": latent_stats}))
    generator = torch.Generator().manual_seed(settings.seed + 3)
    photo_pool = random_photo_crops(photo_levels, settings.photo_latent_pool, generator)
    heldout_digits = digits[heldout_index]
    with torch.no_grad():
        ae_psnr = {name: psnr(ae.decode(encode_moments(ae, images)[0]), images)
                   for name, images in (("digits", heldout_digits), ("photos", heldout_photos))}
    log(f"AE done in {ae_seconds:.0f}s; held-out PSNR {ae_psnr}; latent stats {latent_stats}")

    unet_started = time.time()
    digit_moments = encode_moments(ae, train_digits)
    photo_moments = encode_moments(ae, photo_pool)
    unet, contexts = train_unet(unet_class, operations, settings, digit_moments, train_labels, photo_moments,
                                generator, log)
    unet_seconds = time.time() - unet_started

    eval_generator = torch.Generator().manual_seed(settings.seed + 7)
    timesteps = [50, 200, 400, 600, 800]
    denoising = {
        "digits": denoising_error_ratios(unet, contexts, encode_moments(ae, heldout_digits),
                                         torch.from_numpy(labels[heldout_index]), digit_moments, timesteps,
                                         eval_generator),
        "photos": denoising_error_ratios(unet, contexts, encode_moments(ae, heldout_photos),
                                         torch.full((len(heldout_photos),), PROMPTS.index(PHOTO_PROMPT)),
                                         photo_moments, timesteps, eval_generator),
    }
    log(f"UNet done in {unet_seconds:.0f}s; held-out denoising error / Wiener: {denoising}")

    save_file(half_state_dict(unet), str(out / "unet.safetensors"))
    save_file({"context": contexts.to(torch.float16).contiguous()}, str(out / "contexts.safetensors"))
    save_file({"digits": to_uint8_hwc(heldout_digits),
               "digit_labels": torch.from_numpy(labels[heldout_index]).contiguous(),
               "photos": to_uint8_hwc(heldout_photos),
               "photo_sources": torch.from_numpy(heldout_sources).contiguous()},
              str(out / "heldout.safetensors"))
    config = {
        "description": "DWGF demo model: a small SD-style latent diffusion model trained by "
                       "tools/train_default_model.py on sklearn digits and scikit-image photo crops.",
        "image_size": IMAGE_SIZE,
        "downscale_ratio": DOWNSCALE,
        "latent_channels": LATENT_CHANNELS,
        "latent_scale_factor": SD15_SCALE_FACTOR,
        "vae": {"ddconfig": AE_DDCONFIG, "embed_dim": LATENT_CHANNELS},
        "unet": UNET_CONFIG,
        "schedule": {"prediction": "epsilon", "timesteps": 1000, "beta_schedule": "scaled_linear",
                     "linear_start": 0.00085, "linear_end": 0.012},
        "prompts": PROMPTS,
        "unconditional_index": len(PROMPTS),
        "context_tokens": CONTEXT_TOKENS,
        "files": {"vae": "vae.safetensors", "unet": "unet.safetensors", "contexts": "contexts.safetensors",
                  "heldout": "heldout.safetensors"},
        "split": {
            "digits": {"source": "sklearn.datasets.load_digits", "count": len(labels),
                       "heldout_indices": heldout_index.tolist(),
                       "note": "training digits are all the other indices"},
            "photos": {"source": "skimage.data", "train": TRAIN_PHOTOS, "heldout": HELDOUT_PHOTOS,
                       "heldout_crops_per_image": HELDOUT_PHOTO_CROPS_PER_IMAGE,
                       "heldout_min_crop_std": HELDOUT_MIN_CROP_STD},
        },
        "training": {
            "settings": settings.__dict__,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "autoencoder_seconds": round(ae_seconds, 1),
            "unet_seconds": round(unet_seconds, 1),
            "autoencoder_parameters": parameter_count(ae),
            "unet_parameters": parameter_count(unet),
            "latent_standardisation": latent_stats,
        },
        "measured": {"autoencoder_heldout_psnr_db": ae_psnr, "denoising_mse_over_wiener": denoising},
    }
    (out / "model.json").write_text(json.dumps(config, indent=1) + "\n")
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
