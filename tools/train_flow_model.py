"""Train the demo model's flow-matching twin: a rectified-flow UNet on the demo autoencoder's latents.

Issue 18: DWGF on flow-matching models (SD3, Flux). No such checkpoint can be downloaded here, so
the pack ships a small one, trained on exactly the data and split of the epsilon demo model
(``tools/train_default_model.py``) and in the latent space of its autoencoder (loaded from
``dwgf/default_model/vae.safetensors``, unchanged), so the two priors can be compared on the same
held-out crops.

* Network: the same ComfyUI ``openaimodel.UNetModel`` configuration as the epsilon UNet, which it
  starts from (weights and prompt contexts; a fine-tune, not a training from scratch: it halves the
  CPU time, and the comparison is between parametrisations rather than between two trainings).
* Objective: rectified flow as SD3 and Flux train it: ``z_t = (1 − t) z0 + t ε``, the network
  predicts the velocity ``v = ε − z0`` from ``(z_t, 1000 t)``, plain MSE; ``t`` uniform on (0, 1).
  This is what ComfyUI's ``ModelSamplingDiscreteFlow`` + ``CONST`` expect (``ẑ0 = z_t − t v``,
  network timestep ``1000 t``), with shift 1 (the latents are 16×16; SD3's shift 3 is for 128²).

Writes ``unet_flow.safetensors`` and ``contexts_flow.safetensors`` (fp16) next to the epsilon model
and a ``"flow"`` section in its ``model.json``. Resumable like the other script; ``make train-flow-model``.
"""

from __future__ import annotations

import argparse
import json
import os
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

FLOW_SAMPLING = {"prediction": "flow", "model_sampling": "ModelSamplingDiscreteFlow", "shift": 1.0,
                 "multiplier": 1000}


@dataclass
class FlowSettings:
    seed: int = 0
    steps: int = 1500
    batch: int = 64
    lr: float = 4e-4
    uncond_probability: float = 0.1
    ema_decay: float = 0.998
    photo_latent_pool: int = 20000
    digit_fraction: float = 0.25


def load_shipped(folder: Path, ae_class, unet_class, operations) -> tuple:
    """The epsilon demo model's autoencoder, UNet and prompt contexts, in float32."""
    from safetensors.torch import load_file

    config = json.loads((folder / "model.json").read_text())
    ae = ae_class(ddconfig=config["vae"]["ddconfig"], embed_dim=config["vae"]["embed_dim"])
    ae.load_state_dict({k: v.float() for k, v in load_file(str(folder / "vae.safetensors")).items()})
    unet = unet_class(**config["unet"], operations=operations)
    unet.load_state_dict({k: v.float() for k, v in load_file(str(folder / "unet.safetensors")).items()})
    contexts = load_file(str(folder / "contexts.safetensors"))["context"].float()
    return config, ae.eval(), unet, contexts


def train_flow(unet: torch.nn.Module, contexts: torch.Tensor, settings: FlowSettings, digit_moments, digit_labels,
               photo_moments, work: Path, log) -> tuple[torch.nn.Module, torch.Tensor, float]:
    """Velocity regression on rectified-flow interpolants; EMA weights returned. Resumable."""
    generator = torch.Generator().manual_seed(settings.seed + 11)
    eps_training.make_attention_backward_safe(unet)
    unet.train()
    contexts, ema, ema_contexts, optimiser = eps_training.trainable_with_ema(unet, contexts, settings.lr)
    phase = Phase("flow_unet", work, settings.steps,
                  {"unet": unet, "ema": ema, "contexts": contexts, "ema_contexts": ema_contexts},
                  optimiser, generator, log)

    def step(index: int) -> str:
        for group in optimiser.param_groups:
            group["lr"] = eps_training.cosine_lr(index, settings.steps, settings.lr, warmup=50)
        z0, labels = eps_training.latent_batch(generator, settings.batch, settings.digit_fraction, digit_moments,
                                               digit_labels, photo_moments, settings.uncond_probability,
                                               mirror_photos=False)
        t = torch.rand(len(z0), generator=generator).clamp(1e-3, 1.0)
        noise = torch.randn(z0.shape, generator=generator)
        tt = t.view(-1, 1, 1, 1)
        zt = (1 - tt) * z0 + tt * noise
        velocity = unet(zt, 1000.0 * t, context=contexts[labels])
        loss = (velocity - (noise - z0)).pow(2).mean()
        eps_training.optimise_with_ema(loss, optimiser, unet, ema, contexts, ema_contexts, index, settings.ema_decay)
        return f"loss {loss.item():.4f}"

    seconds = phase.run(step)
    return ema, ema_contexts, seconds


@torch.no_grad()
def flow_denoising_error_ratios(unet, contexts, moments, labels, train_moments, sd_timesteps, generator) -> dict:
    """Held-out MSE of the flow UNet's ẑ0 over the per-dimension Wiener denoiser's, at the flow times
    with the same signal-to-noise ratio as SD's timesteps ``sd_timesteps`` (``t = s / (1 + s)``,
    ``s = sqrt((1 − ᾱ)/ᾱ)``), so the figures compare with the epsilon UNet's."""
    alphas_cumprod = eps_training.sd_alphas_cumprod().double()
    scale = eps_training.SD15_SCALE_FACTOR
    z0 = scale * moments[0]
    train_z = scale * train_moments[0]
    mu, var = train_z.mean(0), train_z.var(0)
    result = {}
    for step in sd_timesteps:
        a = float(alphas_cumprod[step])
        s = ((1 - a) / a) ** 0.5
        t = s / (1 + s)
        noise = torch.randn(z0.shape, generator=generator)
        zt = (1 - t) * z0 + t * noise
        velocity = unet(zt, torch.full((len(z0),), 1000.0 * t), context=contexts[labels])
        model_z0 = zt - t * velocity
        alpha, sigma = 1 - t, t
        wiener = mu + alpha * var / (alpha**2 * var + sigma**2) * (zt - alpha * mu)
        result[str(step)] = float((model_z0 - z0).pow(2).mean() / (wiener - z0).pow(2).mean())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=eps_training.DEFAULT_OUT,
                        help="the epsilon demo model's folder (read; the flow weights are written into it)")
    parser.add_argument("--work", type=Path, default=eps_training.DEFAULT_WORK, help="checkpoints")
    parser.add_argument("--photos", type=Path, default=eps_training.DEFAULT_PHOTO_CACHE)
    parser.add_argument("--seed", type=int, default=FlowSettings.seed)
    parser.add_argument("--steps", type=int, default=FlowSettings.steps)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="a few steps only, written to --work, not the model")
    options = parser.parse_args()
    settings = FlowSettings(seed=options.seed, steps=3 if options.smoke else options.steps)
    if options.smoke:
        settings.photo_latent_pool = 256

    from safetensors.torch import save_file

    torch.set_num_threads(options.threads)
    torch.manual_seed(settings.seed)
    started = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - started:7.1f}s] {message}", flush=True)

    work: Path = options.work / f"flow-seed{settings.seed}{'-smoke' if options.smoke else ''}"
    ae_class, unet_class, operations = eps_training.import_comfy_networks()
    config, ae, unet, contexts = load_shipped(options.model, ae_class, unet_class, operations)
    digits, labels = demo_data.load_digits(eps_training.IMAGE_SIZE)
    heldout_index = demo_data.split_digits(labels, settings.seed)
    train_mask = torch.ones(len(labels), dtype=torch.bool)
    train_mask[torch.from_numpy(heldout_index)] = False
    train_digits, train_labels = digits[train_mask], torch.from_numpy(labels)[train_mask]
    pyramids, _ = demo_data.photo_pyramids("train", options.photos)
    heldout_pyramids, _ = demo_data.photo_pyramids("heldout", options.photos)
    heldout_photos, _ = demo_data.heldout_crops(heldout_pyramids, eps_training.IMAGE_SIZE, settings.seed)
    photo_pool = demo_data.random_crops(pyramids, settings.photo_latent_pool, eps_training.IMAGE_SIZE,
                                        torch.Generator().manual_seed(settings.seed + 4))
    digit_moments = eps_training.encode_moments(ae, train_digits)
    photo_moments = eps_training.encode_moments(ae, photo_pool)
    log(f"data: {len(train_digits)} digits, {len(photo_pool)} photo crops encoded; {len(heldout_photos)} held out")

    flow_unet, flow_contexts, seconds = train_flow(unet, contexts, settings, digit_moments, train_labels,
                                                   photo_moments, work, log)
    flow_unet = flow_unet.half().float()  # measure exactly the shipped fp16 weights
    flow_contexts = flow_contexts.half().float()
    photo_class = eps_training.PROMPTS.index(eps_training.PHOTO_PROMPT)
    measured = flow_denoising_error_ratios(
        flow_unet, flow_contexts, eps_training.encode_moments(ae, heldout_photos),
        torch.full((len(heldout_photos),), photo_class), photo_moments, [50, 100, 200, 300, 400, 500, 600, 800],
        torch.Generator().manual_seed(settings.seed + 7))
    log(f"flow UNet: {seconds:.0f} s of training; held-out photo denoising error / Wiener: {measured}")

    out = work if options.smoke else options.model
    out.mkdir(parents=True, exist_ok=True)
    save_file(eps_training.half_state_dict(flow_unet), str(out / "unet_flow.safetensors"))
    save_file({"context": flow_contexts.to(torch.float16).contiguous()}, str(out / "contexts_flow.safetensors"))
    config["flow"] = {
        "description": "rectified-flow twin of the UNet (tools/train_flow_model.py): same network, data, "
                       "split and autoencoder; fine-tuned from the epsilon UNet to predict v = eps - z0",
        "sampling": FLOW_SAMPLING,
        "files": {"unet": "unet_flow.safetensors", "contexts": "contexts_flow.safetensors"},
        "training": {"settings": settings.__dict__, "seconds": round(seconds, 1), "threads": options.threads,
                     "initialised_from": "unet.safetensors"},
        "measured": {"photos_denoising_mse_over_wiener_at_sd_equivalent_timesteps": measured},
    }
    (out / "model.json").write_text(json.dumps(config, indent=1) + "\n")
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
