"""Test doubles the core tests share (``tests/test_flow.py``, ``tests/test_psld.py``)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from dwgf.schedule import sd_alphas_cumprod


class DenoiserCall(NamedTuple):
    batch: int
    grad_enabled: bool  # gradients were on, or the input required them
    keeps_graph: bool  # the output carries an autograd graph


class GaussianPriorDenoiser:
    """The exact denoiser of a ``N(0, I)`` latent: ``E[z | z + s ε] = x / (1 + s²)``; records every call."""

    def __init__(self) -> None:
        self.alphas_cumprod = sd_alphas_cumprod()
        self.calls: list[DenoiserCall] = []

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.record(x, x / (1.0 + sigma**2).view(-1, *[1] * (x.ndim - 1)))

    def record(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        self.calls.append(DenoiserCall(x.shape[0], torch.is_grad_enabled() or x.requires_grad, out.requires_grad))
        return out


class BrokenDenoiser(GaussianPriorDenoiser):
    """Returns NaN from its fifth call on."""

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        out = super().denoise(x, sigma)
        return out * float("nan") if len(self.calls) >= 5 else out


class TwoModeDenoiser:
    """The exact denoiser of the bimodal prior ``½ N(μ, s²I) + ½ N(−μ, s²I)``, k-diffusion form:
    ``E[z | x = z + k ε]`` is each mode's Wiener estimate weighted by the mode's responsibility."""

    def __init__(self, mu: torch.Tensor, s: float) -> None:
        self.mu, self.s = mu, s
        self.alphas_cumprod = sd_alphas_cumprod()

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        k = sigma.view(-1, *[1] * (x.ndim - 1)).to(x.dtype)
        variance = self.s**2 + k**2
        logits, estimates = [], []
        for centre in (self.mu, -self.mu):
            centre = centre.reshape(1, *x.shape[1:]).to(x.dtype)
            logits.append(-(x - centre).square().flatten(1).sum(1) / (2 * variance.flatten()))
            estimates.append(centre + self.s**2 / variance * (x - centre))
        weights = torch.softmax(torch.stack(logits, 1), 1).view(-1, 2, *[1] * (x.ndim - 1))
        return weights[:, 0] * estimates[0] + weights[:, 1] * estimates[1]
