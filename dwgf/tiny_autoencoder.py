"""A TAESD-like tiny autoencoder for any power-of-two latent space (no ComfyUI here).

DWGF back-propagates through the VAE decoder for every particle at every iteration; a full
decoder's GroupNorms and mid-block attention make that the dominant cost, and the attention's
memory grows with the square of the latent size. A tiny autoencoder of the *same* latent space
(distilled from the full one, as TAESD is for SD) can stand in for most iterations. This is
TAESD's recipe, sized by an architecture dict so ``model.json`` can describe it: plain 3×3
convolutions and ReLU residual blocks, no attention, no normalisation, so its cost and the
memory it saves for backward grow linearly with the image area.

The interface is that of ComfyUI's ``comfy.taesd.taesd.TAESD``, so it drops into ``comfy.sd.VAE``:
``decode(raw latent) -> image in [-1, 1]`` and ``encode(image in [-1, 1]) -> raw latent``, where
a raw latent is what a ComfyUI LATENT holds; the networks themselves work on model-space latents
``(raw - vae_shift) * vae_scale`` (≈ unit variance), and the decoder starts with TAESD's latent
clamp ``tanh(x / 3) * 3``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

LATENT_MAGNITUDE = 3.0  # TAESD's soft clamp of model-space latents


def conv(n_in: int, n_out: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=bias)


class Clamp(nn.Module):
    """TAESD's soft clamp: the flow starts far off the data manifold (N(0, I) latents), where a
    tiny decoder was never trained; tanh keeps its inputs in the range it knows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / LATENT_MAGNITUDE) * LATENT_MAGNITUDE


class Block(nn.Module):
    """TAESD's residual block: three 3×3 convolutions, ReLU, a 1×1 skip when the width changes."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(conv(n_in, n_out), nn.ReLU(), conv(n_out, n_out), nn.ReLU(), conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.conv(x) + self.skip(x))


def _levels(part: dict[str, Any]) -> list[tuple[int, int]]:
    channels, blocks = list(part["channels"]), list(part["blocks"])
    if len(channels) != len(blocks) or not channels:
        raise ValueError(f"an encoder/decoder needs one block count per channel level, got {part}")
    return list(zip(channels, blocks, strict=True))


def build_encoder(part: dict[str, Any], latent_channels: int) -> nn.Sequential:
    """Image in [0, 1] → model-space latent: levels from full resolution down, a stride-2
    convolution between levels."""
    levels = _levels(part)
    layers: list[nn.Module] = [conv(3, levels[0][0]), nn.ReLU()]
    previous = levels[0][0]
    for index, (channels, blocks) in enumerate(levels):
        if index:
            layers.append(conv(previous, channels, stride=2, bias=False))
        layers += [Block(channels, channels) for _ in range(blocks)]
        previous = channels
    layers.append(conv(previous, latent_channels))
    return nn.Sequential(*layers)


def build_decoder(part: dict[str, Any], latent_channels: int) -> nn.Sequential:
    """Model-space latent → image in [0, 1]: levels from latent resolution up, nearest ×2, a
    convolution and a ReLU between levels (so a level of zero blocks still adds a non-linearity)."""
    levels = _levels(part)
    layers: list[nn.Module] = [Clamp(), conv(latent_channels, levels[0][0]), nn.ReLU()]
    previous = levels[0][0]
    for index, (channels, blocks) in enumerate(levels):
        if index:
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), conv(previous, channels, bias=False), nn.ReLU()]
        layers += [Block(channels, channels) for _ in range(blocks)]
        previous = channels
    layers.append(conv(previous, 3))
    return nn.Sequential(*layers)


class TinyAutoencoder(nn.Module):
    """ComfyUI's TAESD interface over :func:`build_encoder` / :func:`build_decoder`.

    ``vae_scale`` / ``vae_shift`` are buffers (saved in the state dict, never trained): model-space
    latent = (raw - vae_shift) * vae_scale, as ComfyUI's latent formats define it.
    """

    def __init__(self, architecture: dict[str, Any]) -> None:
        super().__init__()
        self.architecture = dict(architecture)
        self.latent_channels = int(architecture["latent_channels"])
        self.downscale_ratio = 2 ** (len(architecture["decoder"]["channels"]) - 1)
        encoder_ratio = 2 ** (len(architecture["encoder"]["channels"]) - 1)
        if encoder_ratio != self.downscale_ratio:
            raise ValueError(f"encoder (×{encoder_ratio}) and decoder (×{self.downscale_ratio}) disagree")
        self.tiny_encoder = build_encoder(architecture["encoder"], self.latent_channels)
        self.tiny_decoder = build_decoder(architecture["decoder"], self.latent_channels)
        self.register_buffer("vae_scale", torch.tensor(float(architecture.get("vae_scale", 1.0))))
        self.register_buffer("vae_shift", torch.tensor(float(architecture.get("vae_shift", 0.0))))

    def decode(self, raw_latent: torch.Tensor) -> torch.Tensor:
        """Raw latent (a LATENT's samples) → image in [-1, 1]."""
        return self.decode_model_space((raw_latent - self.vae_shift) * self.vae_scale)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Image in [-1, 1] → raw latent."""
        return self.encode_model_space(image) / self.vae_scale + self.vae_shift

    def decode_model_space(self, latent: torch.Tensor) -> torch.Tensor:
        return self.tiny_decoder(latent).sub(0.5).mul(2)

    def encode_model_space(self, image: torch.Tensor) -> torch.Tensor:
        return self.tiny_encoder(image * 0.5 + 0.5)


def build_tiny_autoencoder(architecture: dict[str, Any],
                           state_dict: dict[str, torch.Tensor] | None = None) -> TinyAutoencoder:
    """The network an architecture dict (``model.json``'s ``tiny_vae.architecture``) describes,
    with ``state_dict`` loaded strictly (in float32) when given, in eval mode."""
    network = TinyAutoencoder(architecture)
    if state_dict is not None:
        network.load_state_dict({k: v.float() for k, v in state_dict.items()}, strict=True)
    return network.eval()


def parameter_count(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())
