"""Train the pack's embedded default model: a small SD-style latent diffusion model.

Nobody can download Stable Diffusion weights on the machines this pack is developed and tested
on, yet the demo, the tests and the benchmarks need a real latent diffusion prior. This script
trains one from data that packages ship, with ComfyUI's own network classes, so the state dicts
load unchanged into ``comfy.sd.VAE`` and an SD1.5-style ``BaseModel``:

* an ``AutoencoderKL`` (4 latent channels, downscale 2: 32×32 RGB ↔ 4×16×16), whose latents are
  standardised by construction so that ComfyUI's fixed SD1.5 scale factor 0.18215 gives
  unit-variance model-space latents;
* an ``openaimodel.UNetModel`` with cross-attention, epsilon prediction on SD's 1000-step
  scaled-linear schedule, conditioned on a learned per-class context ("prompt") with a learned
  unconditional context for classifier-free guidance.

Data (``tools/demo_data.py``; one prompt per class):

* sklearn's ``load_digits`` (8×8, bilinearly upsampled to 32×32 RGB): prompts "digit 0" …
  "digit 9". Semantic classes, so samples can be scored by a classifier.
* 32×32 crops at seven scales of the natural photographs of ``tools/photo_sources.py``
  (scikit-image, mate-backgrounds, plasma-workspace-wallpapers, lomiri-wallpapers): prompt
  "photo". Seven whole photographs are held out. scikit-learn's sample images are never used.

Why 32×32 images and downscale 2 rather than 64×64 and downscale 4 (issue 11 prefers the latter):
both give 16×16 latents, but a ×4 autoencoder of this size did not come near 27 dB within the
CPU budget (24.4 dB after 900 steps; 17.3 dB after 300 steps of a 3.8 M-parameter one at 1.7 s a
step), and every DWGF iteration decodes at image size, so 64×64 images make every test and
benchmark about four times slower. See the README.

Resumable (``tools/train_checkpoint.py``): each phase saves its state to ``--work`` every 100
steps; run the same command again after an interruption and it carries on. ``make train-model``.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import comfyui_env  # noqa: E402
import demo_data  # noqa: E402
import photo_sources  # noqa: E402
from train_checkpoint import Phase  # noqa: E402

PACK_ROOT = comfyui_env.PACK_ROOT
DEFAULT_OUT = PACK_ROOT / "dwgf" / "default_model"
DEFAULT_WORK = Path.home() / ".cache" / "dwgf-train"
DEFAULT_PHOTO_CACHE = Path.home() / ".cache" / "dwgf-photos"

IMAGE_SIZE = 32
DOWNSCALE = 2
LATENT_SIZE = IMAGE_SIZE // DOWNSCALE
LATENT_CHANNELS = 4
SD15_SCALE_FACTOR = 0.18215  # ComfyUI's SD15 latent format; fixed, so the AE is standardised to it
DIGIT_PROMPTS = [f"digit {d}" for d in range(10)]
PHOTO_PROMPT = "photo"
PROMPTS = [*DIGIT_PROMPTS, PHOTO_PROMPT]
CONTEXT_TOKENS = 4
BORDER = 2  # pixels: issue 11's border-tint check compares these with the interior

AE_DDCONFIG = {"double_z": True, "z_channels": LATENT_CHANNELS, "resolution": IMAGE_SIZE, "in_channels": 3,
               "out_ch": 3, "ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [],
               "dropout": 0.0}
UNET_CONFIG = {"image_size": LATENT_SIZE, "in_channels": LATENT_CHANNELS,
               "out_channels": LATENT_CHANNELS, "model_channels": 64, "num_res_blocks": [1, 1, 1],
               "channel_mult": [1, 2, 2], "transformer_depth": [0, 1, 1],
               "transformer_depth_output": [0, 0, 1, 1, 1, 1],
               "transformer_depth_middle": 1, "context_dim": 64, "num_heads": 4, "num_head_channels": -1,
               "use_spatial_transformer": True, "use_linear_in_transformer": False, "legacy": False,
               "adm_in_channels": None, "use_temporal_attention": False, "use_temporal_resblock": False,
               "use_checkpoint": False}


@dataclass
class Settings:
    seed: int = 0
    ae_steps: int = 1200
    ae_batch: int = 32
    ae_lr: float = 1e-3
    kl_weight: float = 1e-6
    unet_steps: int = 2000
    unet_batch: int = 64
    unet_lr: float = 8e-4
    uncond_probability: float = 0.1
    ema_decay: float = 0.999
    photo_latent_pool: int = 20000
    digit_fraction: float = 0.25  # of each UNet batch; the autoencoder sees 1/8 digits
    unet_seconds_per_step_estimate: float = 1.2  # for the ETA while the autoencoder trains
    decoder_steps: int = 2000
    decoder_lr: float = 4e-4
    decoder_seconds_per_step_estimate: float = 0.45
    border_weight: float = 2.0  # loss weight of the outer BORDER pixels while the decoder is refined


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
def autoencoder_batch(digits: torch.Tensor, pyramids: list, size: int, generator: torch.Generator) -> torch.Tensor:
    """One autoencoder batch: an eighth digits, the rest photo crops (the harder part)."""
    eighth = size // 8
    pick = torch.randint(len(digits), (eighth,), generator=generator)
    return torch.cat([digits[pick], demo_data.random_crops(pyramids, size - eighth, IMAGE_SIZE, generator)])


def border_mask(size: int = IMAGE_SIZE, border: int = BORDER) -> torch.Tensor:
    """True on the outer ``border`` pixels of a size×size image."""
    edge = torch.zeros(size, size, dtype=torch.bool)
    edge[:border], edge[-border:], edge[:, :border], edge[:, -border:] = True, True, True, True
    return edge


def train_autoencoder(ae_class, settings: Settings, digits: torch.Tensor, pyramids: list,
                      work: Path, log) -> tuple[torch.nn.Module, float]:
    """L1 + MSE reconstruction and a small KL; an eighth digits, the rest photo crops per batch
    (photos are by far the harder part). Resumable; returns the network and its training seconds."""
    ae = ae_class(ddconfig=AE_DDCONFIG, embed_dim=LATENT_CHANNELS)
    initialise(ae)
    ae.train()
    optimiser = torch.optim.Adam(ae.parameters(), lr=settings.ae_lr)
    generator = torch.Generator().manual_seed(settings.seed)
    phase = Phase("autoencoder", work, settings.ae_steps, {"ae": ae}, optimiser, generator, log,
                  later_seconds_per_step=lambda: settings.unet_steps * settings.unet_seconds_per_step_estimate
                  + settings.decoder_steps * settings.decoder_seconds_per_step_estimate)

    def step(index: int) -> str:
        for group in optimiser.param_groups:
            group["lr"] = cosine_lr(index, settings.ae_steps, settings.ae_lr)
        batch = autoencoder_batch(digits, pyramids, settings.ae_batch, generator)
        moments = ae.quant_conv(ae.encoder(batch))
        mean, logvar = moments.chunk(2, dim=1)
        logvar = logvar.clamp(-30, 20)
        latent = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator)
        reconstruction = ae.decode(latent)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum((1, 2, 3)).mean()
        error = reconstruction - batch
        loss = error.abs().mean() + error.pow(2).mean() + settings.kl_weight * kl
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return f"loss {loss.item():.4f}  kl {kl.item():.1f}"

    seconds = phase.run(step)
    return ae.eval(), seconds


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
               photo_moments, work: Path, log) -> tuple[torch.nn.Module, torch.Tensor, float]:
    """Epsilon prediction on the SD schedule; class contexts learned jointly; EMA weights returned.
    Resumable; also returns the training seconds."""
    generator = torch.Generator().manual_seed(settings.seed + 3)
    unet = unet_class(**UNET_CONFIG, operations=operations)
    initialise(unet)
    with torch.no_grad():  # the last conv only: zeroing out's GroupNorm too would kill its gradient
        unet.out[-1].weight.zero_()
        unet.out[-1].bias.zero_()
    make_attention_backward_safe(unet)
    unet.train()
    initial_contexts = torch.randn(len(PROMPTS) + 1, CONTEXT_TOKENS, UNET_CONFIG["context_dim"], generator=generator)
    contexts, ema, ema_contexts, optimiser = trainable_with_ema(unet, initial_contexts, settings.unet_lr)
    phase = Phase("unet", work, settings.unet_steps,
                  {"unet": unet, "ema": ema, "contexts": contexts, "ema_contexts": ema_contexts},
                  optimiser, generator, log,
                  later_seconds_per_step=lambda: settings.decoder_steps * settings.decoder_seconds_per_step_estimate)
    alphas_cumprod = sd_alphas_cumprod()

    def step(index: int) -> str:
        for group in optimiser.param_groups:
            group["lr"] = cosine_lr(index, settings.unet_steps, settings.unet_lr)
        z0, labels = latent_batch(generator, settings.unet_batch, settings.digit_fraction, digit_moments, digit_labels,
                                  photo_moments, settings.uncond_probability, mirror_photos=True)
        t = torch.randint(1000, (len(z0),), generator=generator)
        a = alphas_cumprod[t].view(-1, 1, 1, 1)
        noise = torch.randn(z0.shape, generator=generator)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        prediction = unet(zt, t.float(), context=contexts[labels])
        loss = (prediction - noise).pow(2).mean()
        optimise_with_ema(loss, optimiser, unet, ema, contexts, ema_contexts, index, settings.ema_decay)
        return f"loss {loss.item():.4f}"

    seconds = phase.run(step)
    return ema, ema_contexts, seconds


def trainable_with_ema(network: torch.nn.Module, initial_contexts: torch.Tensor,
                       lr: float) -> tuple[torch.nn.Parameter, torch.nn.Module, torch.Tensor, torch.optim.Optimizer]:
    """The prompt contexts as a parameter, frozen EMA copies of the network and the contexts, and one
    Adam optimiser over the network and the contexts."""
    contexts = torch.nn.Parameter(initial_contexts.clone())
    ema = copy.deepcopy(network).eval()
    for parameter in ema.parameters():
        parameter.requires_grad_(False)
    return contexts, ema, contexts.detach().clone(), torch.optim.Adam([*network.parameters(), contexts], lr=lr)


def latent_batch(generator: torch.Generator, batch: int, digit_fraction: float, digit_moments, digit_labels,
                 photo_moments, uncond_probability: float, mirror_photos: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One UNet batch: ``digit_fraction`` digits, the rest photo latents, each drawn from its posterior and
    scaled to model space; labels (a prompt index, or the unconditional one with ``uncond_probability``).
    ``mirror_photos`` flips half the photo latents left-right (the epsilon UNet's augmentation)."""
    digit_count = int(batch * digit_fraction)
    digit_mean, digit_logvar = digit_moments
    photo_mean, photo_logvar = photo_moments
    d = torch.randint(len(digit_mean), (digit_count,), generator=generator)
    p = torch.randint(len(photo_mean), (batch - digit_count,), generator=generator)
    mean = torch.cat([digit_mean[d], photo_mean[p]])
    logvar = torch.cat([digit_logvar[d], photo_logvar[p]])
    z0 = SD15_SCALE_FACTOR * (mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator))
    if mirror_photos:
        flip = torch.rand(len(z0), generator=generator) < 0.5  # photos and their mirror images
        flip[:digit_count] = False
        z0 = torch.where(flip.view(-1, 1, 1, 1), z0.flip(-1), z0)
    labels = torch.cat([digit_labels[d], torch.full((len(p),), PROMPTS.index(PHOTO_PROMPT))])
    labels = torch.where(torch.rand(len(labels), generator=generator) < uncond_probability,
                         torch.full_like(labels, len(PROMPTS)), labels)
    return z0, labels


def optimise_with_ema(loss: torch.Tensor, optimiser: torch.optim.Optimizer, network: torch.nn.Module,
                      ema: torch.nn.Module, contexts: torch.Tensor, ema_contexts: torch.Tensor, index: int,
                      ema_decay: float) -> None:
    """One Adam step on the network and the contexts, then their exponential moving averages (the decay
    ramps up over the first steps)."""
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    decay = min(ema_decay, (1 + index) / (10 + index))
    with torch.no_grad():
        for e, q in zip(ema.parameters(), network.parameters(), strict=True):
            e.lerp_(q, 1 - decay)
        ema_contexts.lerp_(contexts.detach(), 1 - decay)


def refine_decoder(ae: torch.nn.Module, settings: Settings, digits: torch.Tensor, pyramids: list, work: Path,
                   log) -> tuple[torch.nn.Module, float]:
    """Train the decoder further with the encoder frozen, as Stability AI's ft-MSE decoder was made
    for SD: the latents (and so the UNet trained on them) are unchanged, only reconstruction gets
    better. MSE-weighted loss (PSNR is what the benchmarks read), the outer ``BORDER`` pixels
    weighted ``border_weight`` (zero padding makes borders the hardest part)."""
    for parameter in ae.parameters():
        parameter.requires_grad_(False)
    trained = [*ae.decoder.parameters(), *ae.post_quant_conv.parameters()]
    for parameter in trained:
        parameter.requires_grad_(True)
    ae.decoder.train()
    optimiser = torch.optim.Adam(trained, lr=settings.decoder_lr)
    generator = torch.Generator().manual_seed(settings.seed + 5)
    phase = Phase("decoder", work, settings.decoder_steps, {"ae": ae}, optimiser, generator, log)
    weight = torch.where(border_mask(), settings.border_weight, 1.0)
    weight = weight / weight.mean()

    def step(index: int) -> str:
        for group in optimiser.param_groups:
            group["lr"] = cosine_lr(index, settings.decoder_steps, settings.decoder_lr)
        batch = autoencoder_batch(digits, pyramids, settings.ae_batch, generator)
        with torch.no_grad():
            mean, logvar = encode_moments(ae, batch)
            latent = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator)
        error = ae.decode(latent) - batch
        loss = (error.pow(2) * weight).mean() + 0.25 * (error.abs() * weight).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return f"loss {loss.item():.4f}"

    seconds = phase.run(step)
    for parameter in ae.parameters():
        parameter.requires_grad_(False)
    return ae.eval(), seconds


def measure_autoencoder(ae: torch.nn.Module, heldout_digits: torch.Tensor, heldout_photos: torch.Tensor) -> dict:
    """Held-out PSNR of the reconstruction from the posterior mean: digits, photos (mean and worst
    crop), and photos' outer BORDER pixels against the interior."""
    with torch.no_grad():
        photo_reconstruction = ae.decode(encode_moments(ae, heldout_photos)[0])
        photo_psnr = per_image_psnr(photo_reconstruction, heldout_photos)
        return {
            "digits": psnr(ae.decode(encode_moments(ae, heldout_digits)[0]), heldout_digits),
            "photos": float(photo_psnr.mean()),
            "photos_worst": float(photo_psnr.min()),
            "photos_per_crop": [round(float(v), 2) for v in photo_psnr],
            "photos_border_vs_interior": border_and_interior_psnr(photo_reconstruction, heldout_photos),
        }


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


def border_and_interior_psnr(reconstruction: torch.Tensor, images: torch.Tensor, border: int = 2) -> dict:
    """PSNR over the outer ``border`` pixels and over the rest: a tinted border shows up here."""
    error = ((reconstruction.clamp(-1, 1) - images) / 2).pow(2).mean(1)
    edge = border_mask(error.shape[-1], border)
    return {"border": float(10 * torch.log10(1 / error[:, edge].mean())),
            "interior": float(10 * torch.log10(1 / error[:, ~edge].mean()))}


def per_image_psnr(reconstruction: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    mse = ((reconstruction.clamp(-1, 1) - images) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the weights and model.json")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="checkpoints (resumed from if present)")
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTO_CACHE, help="downloaded Debian packages")
    parser.add_argument("--seed", type=int, default=Settings.seed)
    parser.add_argument("--ae-steps", type=int, default=Settings.ae_steps)
    parser.add_argument("--unet-steps", type=int, default=Settings.unet_steps)
    parser.add_argument("--smoke", action="store_true", help="a few steps only, to check the script runs")
    options = parser.parse_args()
    settings = Settings(seed=options.seed, ae_steps=options.ae_steps, unet_steps=options.unet_steps)
    if options.smoke:
        settings.ae_steps, settings.unet_steps, settings.decoder_steps, settings.photo_latent_pool = 3, 3, 3, 256

    from safetensors.torch import save_file

    torch.set_num_threads(2)
    torch.manual_seed(settings.seed)
    started = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - started:7.1f}s] {message}", flush=True)

    work: Path = options.work / f"seed{settings.seed}"
    ae_class, unet_class, operations = import_comfy_networks()
    digits, labels = demo_data.load_digits(IMAGE_SIZE)
    heldout_index = demo_data.split_digits(labels, settings.seed)
    train_mask = np.ones(len(labels), bool)
    train_mask[heldout_index] = False
    train_digits, train_labels = digits[train_mask], torch.from_numpy(labels[train_mask])
    pyramids, train_names = demo_data.photo_pyramids("train", options.photos)
    heldout_pyramids, heldout_names = demo_data.photo_pyramids("heldout", options.photos)
    heldout_photos, heldout_sources = demo_data.heldout_crops(heldout_pyramids, IMAGE_SIZE, settings.seed)
    log(f"data: {len(train_digits)} train / {len(heldout_index)} held-out digits; {len(train_names)} train "
        f"photographs ({sum(map(len, pyramids))} pyramid levels); {len(heldout_photos)} held-out crops of "
        f"{heldout_names}")

    ae, ae_seconds = train_autoencoder(ae_class, settings, train_digits, pyramids, work, log)
    stats_crops = demo_data.random_crops(pyramids, 2000, IMAGE_SIZE, torch.Generator().manual_seed(settings.seed + 2))
    latent_stats = standardise_latents(ae, torch.cat([train_digits, stats_crops]))
    vae_weights = half_state_dict(ae)
    ae = ae.half().float()  # measure and train on exactly the shipped (fp16) weights
    heldout_digits = digits[heldout_index]
    ae_measured = measure_autoencoder(ae, heldout_digits, heldout_photos)
    log(f"AE: {ae_seconds:.0f} s of training; held-out {ae_measured}; latent stats {latent_stats}")

    generator = torch.Generator().manual_seed(settings.seed + 4)
    photo_pool = demo_data.random_crops(pyramids, settings.photo_latent_pool, IMAGE_SIZE, generator)
    digit_moments = encode_moments(ae, train_digits)
    photo_moments = encode_moments(ae, photo_pool)
    unet, contexts, unet_seconds = train_unet(unet_class, operations, settings, digit_moments, train_labels,
                                              photo_moments, work, log)

    eval_generator = torch.Generator().manual_seed(settings.seed + 7)
    timesteps = [50, 100, 200, 300, 400, 500, 600, 800]
    denoising = {
        "digits": denoising_error_ratios(unet, contexts, encode_moments(ae, heldout_digits),
                                         torch.from_numpy(labels[heldout_index]), digit_moments, timesteps,
                                         eval_generator),
        "photos": denoising_error_ratios(unet, contexts, encode_moments(ae, heldout_photos),
                                         torch.full((len(heldout_photos),), PROMPTS.index(PHOTO_PROMPT)),
                                         photo_moments, timesteps, eval_generator),
    }
    log(f"UNet: {unet_seconds:.0f} s of training; held-out denoising error / Wiener: {denoising}")

    ae, decoder_seconds = refine_decoder(ae, settings, train_digits, pyramids, work, log)
    vae_weights = half_state_dict(ae)
    ae = ae.half().float()
    refined = measure_autoencoder(ae, heldout_digits, heldout_photos)
    log(f"decoder refined: {decoder_seconds:.0f} s of training; held-out {refined}")

    out: Path = options.out
    out.mkdir(parents=True, exist_ok=True)
    save_file(vae_weights, str(out / "vae.safetensors"))
    save_file(half_state_dict(unet), str(out / "unet.safetensors"))
    save_file({"context": contexts.to(torch.float16).contiguous()}, str(out / "contexts.safetensors"))
    save_file({"digits": to_uint8_hwc(heldout_digits),
               "digit_labels": torch.from_numpy(labels[heldout_index]).contiguous(),
               "photos": to_uint8_hwc(heldout_photos),
               "photo_sources": torch.from_numpy(heldout_sources).contiguous()},
              str(out / "heldout.safetensors"))
    import skimage

    sources = {p.name: {"package": "scikit-image" if p.source == "skimage" else p.source,
                        "version": skimage.__version__ if p.source == "skimage" else p.version,
                        "path": p.path, "licence": p.licence, "kind": p.kind, "split": p.split}
               for p in photo_sources.PHOTOS}
    config = {
        "description": "DWGF demo model: a small SD-style latent diffusion model trained by "
                       "tools/train_default_model.py on sklearn digits and natural photographs that "
                       "scikit-image and Debian wallpaper packages ship.",
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
            "photos": {"train": train_names, "heldout": heldout_names,
                       "heldout_crops_per_photo": demo_data.HELDOUT_CROPS_PER_PHOTO,
                       "heldout_min_crop_std": demo_data.HELDOUT_MIN_CROP_STD,
                       "pyramid_short_sides": list(demo_data.PYRAMID_SHORT_SIDES),
                       "note": "held-out crop i comes from held-out photograph i mod 7; "
                               "scikit-learn's sample images (china, flower) are never used",
                       "sources": sources},
        },
        "training": {
            "settings": settings.__dict__,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "autoencoder_seconds": round(ae_seconds, 1),
            "unet_seconds": round(unet_seconds, 1),
            "decoder_refinement_seconds": round(decoder_seconds, 1),
            "autoencoder_parameters": parameter_count(ae),
            "unet_parameters": parameter_count(unet),
            "latent_standardisation": latent_stats,
        },
        "measured": {"autoencoder_heldout_psnr_db": refined, "autoencoder_before_decoder_refinement": ae_measured,
                     "denoising_mse_over_wiener": denoising},
    }
    (out / "model.json").write_text(json.dumps(config, indent=1) + "\n")
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
