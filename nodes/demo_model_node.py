"""Nodes "DWGF Demo Model" and "DWGF Demo Held-out Images": the small latent diffusion model the
pack ships (trained by ``tools/train_default_model.py``) as real ComfyUI objects, and the images it
never saw, so every workflow runs without downloading Stable Diffusion."""

from __future__ import annotations

from typing import Any

import torch

from ..dwgf import demo_model, tiny_autoencoder
from ..dwgf.errors import require
from . import comfy_adapter
from .common import CATEGORY

UNCONDITIONAL = demo_model.UNCONDITIONAL


def _prompt_choices() -> list[str]:
    """The shipped prompts; a fallback list keeps the node listable if the files are missing."""
    try:
        return demo_model.prompts()
    except Exception:  # the loader itself then reports the missing files with a clear message
        return ["photo"]


class DemoModel:
    """Builds MODEL, VAE and CONDITIONING from the embedded demo model's files."""

    DESCRIPTION = (
        "Loads the small latent diffusion model embedded in the pack (32x32 RGB images; trained here on "
        "natural photographs that scikit-image and Debian wallpaper packages ship, and sklearn digits) "
        "as a real ComfyUI MODEL (SD1.5-style UNet, epsilon prediction, 1000-step scaled-linear "
        "schedule), VAE (AutoencoderKL, 4 latent channels, downscale 2) and CONDITIONING for a prompt "
        "and for 'unconditional' (the negative for CFG). The stock KSampler, VAEEncode and VAEDecode "
        "work on it unchanged. Note: its latents are image size / 2 (4x16x16), so use the empty_latent "
        "output (EmptyLatentImage assumes /8). The optional prior 'flow matching' loads its rectified-flow "
        "twin instead (same autoencoder and data; SD3-style flow-matching noise levels). The fast_vae output "
        "is the demo model's tiny autoencoder (TAESD-like, same latent space, distilled from the full one) "
        "for the DWGF Sampler's fast_vae input."
    )
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("MODEL", "VAE", "CONDITIONING", "CONDITIONING", "LATENT", "VAE")  # append only: links index outputs
    RETURN_NAMES = ("model", "vae", "positive", "negative", "empty_latent", "fast_vae")
    OUTPUT_TOOLTIPS = (
        "The diffusion model (ModelPatcher over an SD1.5-family BaseModel).",
        "The autoencoder (comfy.sd.VAE, 32x32 images <-> 4x16x16 latents).",
        "The context of the chosen prompt.",
        "The unconditional context, for classifier-free guidance.",
        "A batch of empty 4x16x16 latents (32x32 images) for KSampler.",
        "The demo model's tiny autoencoder (comfy.sd.VAE over a TAESD-like network of the same 4x16x16 "
        "latent space, several times cheaper to back-propagate through): connect it to the DWGF Sampler's "
        "fast_vae input, and the vae output to its vae input.",
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "prompt": (_prompt_choices() + [UNCONDITIONAL], {
                    "default": "photo",
                    "tooltip": "What to condition on: 'photo' (natural-image crops), 'digit 0' ... 'digit 9', "
                               "or 'unconditional'. DWGF's reference uses no guidance."}),
                "batch_size": ("INT", {"default": 4, "min": 1, "max": 256,
                                       "tooltip": "Number of latents in the empty_latent output."}),
            },
            "optional": {
                "prior": (list(demo_model.PRIORS), {
                    "default": "epsilon",
                    "tooltip": "epsilon: the UNet on SD 1.5's schedule (eps prediction). flow matching: its "
                               "rectified-flow twin on the same autoencoder and data (v = noise - latent, "
                               "ComfyUI's SD3-style ModelSamplingDiscreteFlow), to try SD3/Flux-style models."}),
            },
        }

    def load(self, prompt: str, batch_size: int,
             prior: str = "epsilon") -> tuple[Any, Any, list, list, dict[str, torch.Tensor], Any]:
        config = demo_model.load_config()
        require(prompt in [*config["prompts"], UNCONDITIONAL],
                f"prompt {prompt!r} is unknown to the demo model: choose one of {config['prompts']}")
        require(prior in demo_model.PRIORS, f"prior {prior!r} is unknown: choose one of {demo_model.PRIORS}")
        flow = demo_model.flow_sampling() if prior == "flow matching" else None
        model = comfy_adapter.build_sd15_style_model(config["unet"], demo_model.load_tensors("unet", prior),
                                                     vae_downscale=config["downscale_ratio"], flow_sampling=flow)
        require(abs(comfy_adapter.latent_scale_factor(model) - config["latent_scale_factor"]) < 1e-9,
                "this ComfyUI's SD1.5 latent scale differs from the one the demo model was trained for")
        vae = comfy_adapter.build_kl_vae(demo_model.load_tensors("vae"), config["vae"]["ddconfig"],
                                         config["vae"]["embed_dim"], config["downscale_ratio"])
        positive = comfy_adapter.conditioning_from_context(demo_model.prompt_context(prompt, prior))
        negative = comfy_adapter.conditioning_from_context(demo_model.prompt_context(UNCONDITIONAL, prior))
        side = config["image_size"] // config["downscale_ratio"]
        latent = comfy_adapter.empty_latent(batch_size, config["latent_channels"], side, side)
        return (model, vae, positive, negative, latent, load_fast_vae(config))


def load_fast_vae(config: dict[str, Any]) -> Any:
    """The tiny autoencoder as a ComfyUI VAE (frozen weights: the sampler differentiates w.r.t. latents)."""
    network = tiny_autoencoder.build_tiny_autoencoder(demo_model.tiny_vae_architecture(),
                                                      demo_model.load_tiny_vae_tensors())
    network.requires_grad_(False)
    return comfy_adapter.build_tiny_vae(network, config["latent_channels"], config["downscale_ratio"])


class DemoHeldOutImages:
    """Held-out test images of the demo model, as an IMAGE batch."""

    DESCRIPTION = (
        "Images the demo model never saw in training (32x32): crops of seven whole held-out photographs "
        "(two dogs, a mountain landscape, the astronaut, coloured cups, a meadow, a cat, a coffee cup) "
        "or held-out sklearn digits. Use them as clean images for the Degradation Operator, to test and "
        "benchmark restoration with the demo model."
    )
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("images", "labels")
    OUTPUT_TOOLTIPS = ("The held-out images (batch, 32, 32, 3) in [0, 1].",
                       "One label per image (source photograph or digit class), comma-separated.")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "which": (list(demo_model.HELDOUT_SETS), {
                    "default": "photos",
                    "tooltip": "photos: crops with real detail (informative for restoration); digits: "
                               "bilinearly upsampled 8x8 digits (easy for super-resolution and mild blur)."}),
                "start": ("INT", {"default": 0, "min": 0, "max": 10000,
                                  "tooltip": "Index of the first image in the held-out set."}),
                "count": ("INT", {"default": 4, "min": 1, "max": 1000,
                                  "tooltip": "How many consecutive images to output."}),
            },
        }

    def load(self, which: str, start: int, count: int) -> tuple[torch.Tensor, str]:
        heldout = demo_model.load_heldout(which)
        total = len(heldout.labels)
        require(start < total, f"start={start} but the held-out {which} set has {total} images")
        stop = min(total, start + count)
        return (heldout.images[start:stop].contiguous(), ", ".join(heldout.labels[start:stop]))


NODE_CLASS_MAPPINGS = {"DWGF_DemoModel": DemoModel, "DWGF_DemoHeldOutImages": DemoHeldOutImages}
NODE_DISPLAY_NAME_MAPPINGS = {"DWGF_DemoModel": "DWGF Demo Model",
                              "DWGF_DemoHeldOutImages": "DWGF Demo Held-out Images"}
