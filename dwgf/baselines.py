"""Baselines the benchmarks compare the samplers with."""

from __future__ import annotations

from typing import Protocol

import torch

from .protocols import Autoencoder


class PseudoInverting(Protocol):
    """What the baseline needs from an operator: ``A† y``."""

    def pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor: ...


@torch.no_grad()
def measurement_only_estimate(autoencoder: Autoencoder, operator: PseudoInverting, y: torch.Tensor) -> torch.Tensor:
    """``D(E(A† y))``: the measurement's pseudo-inverse moved to the VAE's nearest image.

    What the measurement alone gives with no diffusion prior at all — the floor a sampler must beat.
    Images ``(N, 3, H, W)``, float32, unclamped.
    """
    with torch.inference_mode(False):  # ComfyUI may hand over inference tensors; the result is ordinary
        image = operator.pseudo_inverse(y.detach().clone().float())
        return autoencoder.decode(autoencoder.encode(image)).to(torch.float32)
