"""The two things the samplers need from a latent diffusion model, as small protocols.

The ComfyUI adapter (``nodes/comfy_adapter.py``) fulfils them with ComfyUI's MODEL and VAE; the
tests fulfil them with exact linear-Gaussian models whose answers are known in closed form.

DWGF never differentiates through the denoiser or the encoder, so their plain methods may run
under ``torch.no_grad()``. PSLD back-propagates through both (METHOD.md, PSLD step 5); it calls
the optional ``denoise_differentiable`` / ``encode_differentiable`` of the two protocols below
when an implementer provides them, and otherwise the plain method, which must then keep the graph
(PSLD checks this and says so when it does not).
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
    ``alphas_cumprod`` is the model's discrete schedule ``ᾱ_t``, ``t = 0 … T−1`` (for a rectified-flow
    model, the variance-preserving equivalent of its times, and ``denoise`` converts each call:
    :mod:`dwgf.parametrisation`). Optional:
    ``denoise_differentiable(x, sigma)``, the same call keeping the autograd graph from ``x`` to ``ẑ0``
    (PSLD's gradient runs through it; a ``denoise`` that keeps the graph serves as well).
    """

    alphas_cumprod: torch.Tensor

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Autoencoder(Protocol):
    """A VAE in model space: ``decode`` is differentiable, ``encode`` need not be.

    ``decode(z)`` maps scaled latents ``(N, C, h, w)`` to images ``(N, 3, H, W)`` in [-1, 1]
    (unclamped, so gradients flow); ``encode(x)`` maps images back to scaled latents. Optional:
    ``decode_checkpointed(z)``, the same decode keeping fewer activations for the backward (used
    by DWGF's ``checkpoint_decoder``), and ``encode_differentiable(x)``, ``encode`` with gradient (the
    same deterministic posterior mean, for PSLD's gluing term).
    """

    latent_channels: int
    downscale: int

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...
