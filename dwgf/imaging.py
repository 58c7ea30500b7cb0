"""Conversions between ComfyUI's IMAGE layout and the core's image tensors.

ComfyUI's IMAGE is float ``(B, H, W, C)`` in [0, 1]; the core works on ``(B, 3, H, W)`` in
[-1, 1], the scale METHOD.md defines measurements and noise in. The layout is a plain tensor
convention, not a ComfyUI internal, so it lives here.
"""

from __future__ import annotations

import torch

from .errors import require


def bhwc_unit_to_bchw_signed(image: torch.Tensor, what: str = "image") -> torch.Tensor:
    """``(B, H, W, C)`` in [0, 1] → ``(B, 3, H, W)`` in [-1, 1] (alpha dropped, grey repeated)."""
    require(image.ndim == 4, f"{what} must be a ComfyUI IMAGE (batch, height, width, channels); "
            f"got shape {tuple(image.shape)}")
    require(bool(torch.isfinite(image).all()), f"{what} contains NaN or infinite values: check the "
            "node that produced it")
    channels = image.shape[-1]
    require(channels in (1, 3, 4), f"{what} has {channels} channels; expected 1, 3 or 4")
    rgb = image[..., :3] if channels >= 3 else image.expand(*image.shape[:-1], 3)
    return rgb.permute(0, 3, 1, 2).float() * 2.0 - 1.0


def bchw_signed_to_bhwc_unit(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` in [-1, 1] → ComfyUI IMAGE ``(B, H, W, 3)`` float32 in [0, 1], on the CPU."""
    return ((x.detach().float().clamp(-1, 1) + 1.0) / 2.0).permute(0, 2, 3, 1).contiguous().cpu()
