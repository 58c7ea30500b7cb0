"""A degradation: which operator, built for which image size, and how it was measured.

This is what travels between nodes as ``DWGF_DEGRADATION``. It is built either from a clean image
(the measurement is simulated with seeded noise) or around a photo that is already degraded (the
photo *is* the measurement: a small image for super-resolution, an image with a hole for
inpainting), so the same samplers serve both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from . import operators as ops
from .errors import DWGFInputError, require

OPERATOR_KINDS: tuple[str, ...] = (
    "inpaint box (DWGF reference)",
    "inpaint box (centre)",
    "inpaint random pixels",
    "inpaint mask",
    "super-resolution avg-pool",
    "super-resolution bicubic",
    "gaussian blur",
    "motion blur",
    "denoise",
    "colorize",
)

INPAINTING_KINDS = {k for k in OPERATOR_KINDS if k.startswith("inpaint")}
SUPER_RESOLUTION_KINDS = {"super-resolution avg-pool", "super-resolution bicubic"}


@dataclass(frozen=True)
class OperatorSettings:
    """The user's choice of operator and its parameters (independent of image size)."""

    kind: str
    scale_factor: int = 4
    kernel_size: int = 61
    blur_sigma: float = 3.0
    motion_intensity: float = 0.5
    keep_probability: float = 0.3
    box_fraction: float = 0.5
    seed: int = 0
    padding: str = "reflect"


def build_operator(settings: OperatorSettings, height: int, width: int,
                   fill_mask: torch.Tensor | None = None) -> ops.LinearOperator:
    """The operator for a clean image of ``height × width``.

    ``fill_mask`` is a ComfyUI MASK (1 = region to fill), required by "inpaint mask".
    """
    kind = settings.kind
    require(kind in OPERATOR_KINDS, f"operator {kind!r} is unknown: choose one of {', '.join(OPERATOR_KINDS)}")
    require(settings.padding in ops.PADDINGS, f"padding must be one of {ops.PADDINGS}, got {settings.padding!r}")
    if kind == "inpaint mask":
        require(fill_mask is not None, "operator 'inpaint mask' needs a mask: connect a MASK "
                "(white = region to fill) to the Degradation Operator's mask input")
        mask_h, mask_w = fill_mask.shape[-2:]
        require((mask_h, mask_w) == (height, width),
                f"mask is {mask_h}x{mask_w} but the image is {height}x{width}: use a mask of the image's "
                "size (e.g. from the same LoadImage, or resize it)")
        return ops.Inpainting(ops.known_from_comfy_mask(fill_mask))
    if kind == "inpaint box (DWGF reference)":
        return ops.Inpainting(ops.reference_box_mask(height, width))
    if kind == "inpaint box (centre)":
        return ops.Inpainting(ops.centered_box_mask(height, width, settings.box_fraction))
    if kind == "inpaint random pixels":
        return ops.Inpainting(ops.random_mask(height, width, settings.keep_probability, settings.seed))
    if kind == "super-resolution avg-pool":
        return ops.AveragePoolSR(height, width, settings.scale_factor)
    if kind == "super-resolution bicubic":
        return ops.BicubicSR(height, width, settings.scale_factor, padding=settings.padding)
    if kind == "gaussian blur":
        return ops.GaussianBlur(height, width, settings.kernel_size, settings.blur_sigma, padding=settings.padding)
    if kind == "motion blur":
        return ops.MotionBlur(height, width, settings.kernel_size, settings.motion_intensity,
                              settings.seed, padding=settings.padding)
    if kind == "denoise":
        return ops.Denoising(height, width)
    if kind == "colorize":
        return ops.Colorization(height, width)
    raise DWGFInputError(f"operator {kind!r} is not implemented")  # pragma: no cover


def clean_size_for_measurement(settings: OperatorSettings, height: int, width: int) -> tuple[int, int]:
    """The restored image's size when the user's photo of ``height × width`` is the measurement."""
    if settings.kind in SUPER_RESOLUTION_KINDS:
        return height * settings.scale_factor, width * settings.scale_factor
    return height, width


@dataclass(frozen=True)
class Degradation:
    """An operator with the noise level its measurement was simulated with (0 if unknown)."""

    operator: ops.LinearOperator
    sigma_y: float = 0.0
    settings: OperatorSettings | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def measurement_from_image(self, image: torch.Tensor) -> torch.Tensor:
        """``y`` from a picture of the measurement ``(N, 3, h, w)`` in [-1, 1]."""
        require(bool(torch.isfinite(image).all()), "measurement image contains NaN or infinite values")
        return self.operator.from_image(image)

    def describe(self) -> str:
        return f"{self.operator.describe()} on {self.operator.height}x{self.operator.width}, σ_y={self.sigma_y:g}"
