"""Restoring a region of a large photo: a window around the mask at the model's working size, and
the result composited back with a feathered seam.

A 3000×2000 photo with a small scratch should not be restored whole: SD was trained near 512²
(SDXL near 1024²) and a decoder backward at full size fits no card. So a square window around the
mask (its bounding box plus context) is cut out, resized to the working size when it is larger,
restored, resized back and blended in with ``α`` = the mask grown and blurred by ``feather``
pixels: 1 on the mask, falling to 0 within ``2·feather`` pixels of it, 0 everywhere else — so every
pixel farther than that from the mask, and every pixel outside the window, is the photo's own.
Images are ``(B, C, H, W)`` tensors, masks ``(H, W)`` with 1 = fill.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import require


@dataclass(frozen=True)
class Window:
    """Where the restored window sits in the photo, and the size it was restored at."""

    top: int
    left: int
    height: int
    width: int
    work_height: int
    work_width: int
    photo_height: int
    photo_width: int

    @property
    def resized(self) -> bool:
        return (self.work_height, self.work_width) != (self.height, self.width)


def window_around(mask: torch.Tensor, work_size: int, context: float, threshold: float = 0.5) -> Window:
    """A square window centred on the mask's bounding box, at least ``work_size`` on a side and
    ``context`` times the box's larger side beyond it; clamped to the photo. Windows larger than
    ``work_size`` are restored at ``work_size`` (their working size keeps the aspect ratio)."""
    require(mask.ndim == 2, f"mask must be one (H, W) mask, got shape {tuple(mask.shape)}")
    require(work_size >= 8, f"working size must be at least 8 pixels, got {work_size}")
    filled = (mask >= threshold).nonzero()
    require(filled.numel() > 0, "mask: nothing to restore: no pixel of the mask reaches the threshold; "
            "paint the region to fill in ComfyUI's mask editor")
    photo_h, photo_w = mask.shape
    (y0, x0), (y1, x1) = filled.min(0).values.tolist(), filled.max(0).values.tolist()
    box = max(y1 - y0 + 1, x1 - x0 + 1)
    side = max(work_size, int(round(box * (1 + 2 * context))))
    height, width = min(side, photo_h), min(side, photo_w)
    top = min(max((y0 + y1 + 1) // 2 - height // 2, 0), photo_h - height)
    left = min(max((x0 + x1 + 1) // 2 - width // 2, 0), photo_w - width)
    scale = min(1.0, work_size / max(height, width))
    work_h, work_w = max(1, round(height * scale)), max(1, round(width * scale))
    return Window(top, left, height, width, work_h, work_w, photo_h, photo_w)


def crop(images: torch.Tensor, window: Window) -> torch.Tensor:
    """The window of ``images`` at its working size (area-averaged when it shrinks)."""
    part = images[..., window.top:window.top + window.height, window.left:window.left + window.width]
    if not window.resized:
        return part
    return F.interpolate(part, size=(window.work_height, window.work_width), mode="area")


def feathered_alpha(mask: torch.Tensor, feather: int, threshold: float = 0.5) -> torch.Tensor:
    """``(H, W)`` blend weights: 1 on the mask, 0 from ``2·feather`` pixels away, smooth between."""
    hard = (mask >= threshold).float()[None, None]
    if feather <= 0:
        return hard[0, 0]
    side = 2 * feather + 1
    grown = F.max_pool2d(hard, side, stride=1, padding=feather)
    blurred = F.avg_pool2d(F.pad(grown, (feather,) * 4, mode="replicate"), side, stride=1)
    return torch.maximum(blurred, hard)[0, 0].clamp(0, 1)


def stitch(photo: torch.Tensor, restored: torch.Tensor, window: Window, alpha: torch.Tensor) -> torch.Tensor:
    """The photo with ``restored`` (the window at its working size) blended in by ``alpha``.

    Where ``alpha`` is 0 the photo's values are returned as they are (bit for bit)."""
    require(tuple(photo.shape[-2:]) == (window.photo_height, window.photo_width),
            f"photo is {photo.shape[-2]}x{photo.shape[-1]} but the window was cut from a "
            f"{window.photo_height}x{window.photo_width} photo: connect the photo the crop was made from")
    require(tuple(restored.shape[-2:]) == (window.work_height, window.work_width),
            f"the restored window is {restored.shape[-2]}x{restored.shape[-1]} but was cut at "
            f"{window.work_height}x{window.work_width}: connect the restoration of this crop")
    if window.resized:
        restored = F.interpolate(restored, size=(window.height, window.width), mode="bicubic",
                                 align_corners=False, antialias=False).clamp(0, 1)
    batch = max(photo.shape[0], restored.shape[0])
    out = photo.expand(batch, *photo.shape[1:]).clone()
    rows = slice(window.top, window.top + window.height)
    cols = slice(window.left, window.left + window.width)
    a = alpha[rows, cols].to(photo)
    inside = out[..., rows, cols]
    blended = inside * (1 - a) + restored.to(photo).expand(batch, *restored.shape[1:]) * a
    out[..., rows, cols] = torch.where(a > 0, blended, inside)
    return out
