"""The two things the samplers need from a latent diffusion model, as small protocols.

The ComfyUI adapter (``nodes/comfy_adapter.py``) fulfils them with ComfyUI's MODEL and VAE; the
tests fulfil them with exact linear-Gaussian models whose answers are known in closed form.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Denoiser(Protocol):
    """A diffusion model seen the k-diffusion way.

    ``denoise(x, sigma)`` takes noisy latents ``x = z + sigma * eps`` (model space, i.e. already
    multiplied by the VAE scale factor) with ``sigma`` a 1-D tensor of one value per batch item,
    and returns the denoised estimate ``ẑ0``. Conditioning and guidance are the implementer's.
    ``alphas_cumprod`` is the model's discrete schedule ``ᾱ_t``, ``t = 0 … T−1``.
    """

    alphas_cumprod: torch.Tensor

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Autoencoder(Protocol):
    """A VAE in model space: ``decode`` is differentiable, ``encode`` need not be.

    ``decode(z)`` maps scaled latents ``(N, C, h, w)`` to images ``(N, 3, H, W)`` in [-1, 1]
    (unclamped, so gradients flow); ``encode(x)`` maps images back to scaled latents.
    """

    latent_channels: int
    downscale: int

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...
