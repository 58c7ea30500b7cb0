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
