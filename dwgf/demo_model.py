"""The embedded demo model's files: where they are and how to read them (no ComfyUI here).

``tools/train_default_model.py`` writes a small SD-style latent diffusion model into
``dwgf/default_model/``: an AutoencoderKL (``vae.safetensors``), a UNet (``unet.safetensors``),
the learned per-prompt contexts (``contexts.safetensors``), held-out images for tests and
benchmarks (``heldout.safetensors``) and ``model.json`` with the architectures, the train /
held-out split, and what was measured. The ComfyUI side (``nodes/comfy_adapter.py``) turns these
into a MODEL, VAE and CONDITIONING; everything here is plain tensors and JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from .errors import require

MODEL_DIR = Path(__file__).resolve().parent / "default_model"
CONFIG_FILE = "model.json"
UNCONDITIONAL = "unconditional"
HELDOUT_SETS = ("photos", "digits")


@lru_cache(maxsize=1)
def load_config() -> dict[str, Any]:
    """``model.json``: architectures, prompts, file names, split and training record."""
    path = MODEL_DIR / CONFIG_FILE
    require(path.is_file(), f"the demo model is missing ({path}): run `make train-model` or reinstall the pack")
    return json.loads(path.read_text())


def prompts() -> list[str]:
    """The prompts (classes) the demo model was trained with, in context-table order."""
    return list(load_config()["prompts"])


PRIORS = ("epsilon", "flow matching")  # the UNet (unet.safetensors) and its rectified-flow twin


def has_flow_prior() -> bool:
    """Whether ``tools/train_flow_model.py`` has written the flow-matching twin into the model folder."""
    return "flow" in load_config()


def _flow_section() -> dict[str, Any]:
    """``model.json``'s "flow" section, or a clear error when the twin was never trained."""
    require(has_flow_prior(), "the demo model has no flow-matching prior: run `make train-flow-model`")
    return load_config()["flow"]


def flow_sampling() -> dict[str, float]:
    """The flow prior's ComfyUI sampling settings (``shift``, ``multiplier``)."""
    sampling = _flow_section()["sampling"]
    return {"shift": float(sampling["shift"]), "multiplier": float(sampling["multiplier"])}


def load_tensors(role: str, prior: str = "epsilon") -> dict[str, torch.Tensor]:
    """The tensors of one shipped file: ``role`` is "vae", "unet", "contexts" or "heldout"; ``prior``
    "flow matching" picks the rectified-flow twin's "unet" and "contexts"."""
    from safetensors.torch import load_file

    require(prior in PRIORS, f"prior must be one of {PRIORS}, got {prior!r}")
    files = _flow_section()["files"] if prior == "flow matching" and role in ("unet", "contexts") \
        else load_config()["files"]
    return load_file(str(MODEL_DIR / files[role]))


def prompt_context(prompt: str, prior: str = "epsilon") -> torch.Tensor:
    """The learned context ``(1, tokens, context_dim)`` float32 of a prompt or of "unconditional"."""
    config = load_config()
    names = [*config["prompts"], UNCONDITIONAL]
    require(prompt in names, f"prompt {prompt!r} is not one the demo model knows: choose one of {names}")
    table = load_tensors("contexts", prior)["context"]
    index = config["unconditional_index"] if prompt == UNCONDITIONAL else config["prompts"].index(prompt)
    return table[index:index + 1].float()


@dataclass(frozen=True)
class HeldOutImages:
    """Held-out images (never seen in training) as ComfyUI IMAGE tensors ``(N, H, W, 3)`` in [0, 1]."""

    images: torch.Tensor
    labels: list[str]


def load_heldout(which: str) -> HeldOutImages:
    """The held-out "photos" (crops of whole held-out photographs) or "digits", with a label each."""
    require(which in HELDOUT_SETS, f"held-out set must be one of {HELDOUT_SETS}, got {which!r}")
    tensors = load_tensors("heldout")
    if which == "digits":
        labels = [f"digit {int(d)}" for d in tensors["digit_labels"]]
        return HeldOutImages(tensors["digits"].float() / 255.0, labels)
    sources = load_config()["split"]["photos"]["heldout"]
    labels = [sources[int(s)] for s in tensors["photo_sources"]]
    return HeldOutImages(tensors["photos"].float() / 255.0, labels)


def has_tiny_vae() -> bool:
    """Whether ``tools/train_tiny_autoencoder.py`` has written the tiny autoencoder into the model folder."""
    return "tiny_vae" in load_config()


def tiny_vae_architecture() -> dict[str, Any]:
    """The tiny autoencoder's architecture dict (for ``dwgf.tiny_autoencoder.build_tiny_autoencoder``)."""
    require(has_tiny_vae(), "the demo model has no tiny autoencoder (model.json has no \"tiny_vae\" section): "
                            "run `make train-tiny-vae`")
    return dict(load_config()["tiny_vae"]["architecture"])


def load_tiny_vae_tensors() -> dict[str, torch.Tensor]:
    """The tiny autoencoder's weights (float16 as shipped), with a clear error when the file is missing."""
    from safetensors.torch import load_file

    architecture_known = has_tiny_vae()
    path = MODEL_DIR / load_config()["tiny_vae"]["file"] if architecture_known else None
    require(path is not None and path.is_file(),
            f"the demo model's tiny autoencoder is missing ({path or 'no tiny_vae section in model.json'}): "
            "run `make train-tiny-vae` or reinstall the pack")
    return load_file(str(path))
