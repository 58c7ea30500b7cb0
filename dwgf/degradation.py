"""A degradation: which operator, built for which image size, and how it was measured.

This is what travels between nodes as ``DWGF_DEGRADATION``. It is built either from a clean image
(the measurement is simulated with seeded noise) or around a photo that is already degraded (the
photo *is* the measurement: a small image for super-resolution, an image with a hole for
inpainting), so the same samplers serve both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import operators as ops
from .errors import DWGFInputError, require


@dataclass(frozen=True)
class OperatorSettings:
    """The user's choice of operator (an id of :data:`OPERATORS`) and its parameters (independent of image size)."""

    kind: str
    scale_factor: int = 4
    kernel_size: int = 61
    blur_sigma: float = 3.0
    motion_intensity: float = 0.5
    keep_probability: float = 0.3
    box_fraction: float = 0.5
    seed: int = 0
    padding: str = "reflect"
    mask_threshold: float = 0.5


NO_PAINTED_MASK = (
    "this image has no painted mask (Load Image gives an empty 64x64 mask for a picture without "
    "transparency). Paint the region to fill: right-click the Load Image node, choose 'Open in "
    "MaskEditor', paint over the region and press 'Save' (or load a PNG whose hole is transparent)")
SOFT_VALUE_MARGIN = 0.01  # values within this of 0 or 1 count as hard (8-bit and JPEG rounding)
SOFT_MASK_WARNING_SHARE = 0.1  # warn when more than this share of the painted pixels is soft


def fill_masks_for_images(fill_mask: torch.Tensor | None, images: int, height: int, width: int,
                          threshold: float) -> list[torch.Tensor]:
    """One ``(H, W)`` fill mask per image from a MASK batch: one each when the batch sizes match,
    the single mask for all when there is one; anything else is an error naming both sizes."""
    require(fill_mask is not None, "operator 'inpaint mask' needs a mask: connect a MASK "
            "(white = region to fill) to the Degradation Operator's mask input")
    require(fill_mask.ndim in (2, 3), f"mask must be (H, W) or (B, H, W); got shape {tuple(fill_mask.shape)}")
    require(bool(torch.isfinite(fill_mask).all()), "mask contains NaN or infinite values")
    masks = fill_mask if fill_mask.ndim == 3 else fill_mask[None]
    require(masks.shape[0] in (1, images),
            f"mask: the mask batch holds {masks.shape[0]} masks but the image batch {images} images: connect "
            "one mask per image (a batch of the same size) or a single mask for all of them")
    mask_h, mask_w = masks.shape[-2:]
    if not bool((masks > 0).any()):
        raise DWGFInputError(f"mask: {NO_PAINTED_MASK}")
    require((mask_h, mask_w) == (height, width),
            f"mask is {mask_h}x{mask_w} but the image is {height}x{width}: use a mask of the image's "
            "size (e.g. the MASK output of the Load Image node that loads this picture, or resize it)")
    for index, mask in enumerate(masks):
        largest = float(mask.max())
        where = f" (mask {index + 1} of {masks.shape[0]})" if masks.shape[0] > 1 else ""
        require(largest > 0 or masks.shape[0] == 1, f"mask{where}: {NO_PAINTED_MASK}")
        require(largest >= threshold,
                f"mask{where}: no pixel reaches mask_threshold {threshold:g} (the largest value is "
                f"{largest:.3g}): lower mask_threshold, or paint the region with full opacity")
    return [masks[i if masks.shape[0] > 1 else 0] for i in range(images)]


def soft_mask_share(fill_mask: torch.Tensor) -> float:
    """The share of the painted pixels (> 0) whose value is neither 0 nor 1 (a soft brush, a
    gradient, JPEG noise): those are read through the threshold."""
    painted = fill_mask > SOFT_VALUE_MARGIN
    soft = painted & (fill_mask < 1 - SOFT_VALUE_MARGIN)
    return float(soft.sum()) / max(1, int(painted.sum()))


def _inpaint_mask(settings: OperatorSettings, height: int, width: int,
                  fill_mask: torch.Tensor | None) -> ops.LinearOperator:
    (mask,) = fill_masks_for_images(fill_mask, 1, height, width, settings.mask_threshold)
    return ops.Inpainting(ops.known_from_fill_mask(mask, settings.mask_threshold))


Builder = Callable[[OperatorSettings, int, int, torch.Tensor | None], ops.LinearOperator]
OPERATORS: dict[str, Builder] = {  # stable id → the operator for a clean image of height × width
    "inpaint_box_reference": lambda s, h, w, m: ops.Inpainting(ops.reference_box_mask(h, w)),
    "inpaint_box_centre": lambda s, h, w, m: ops.Inpainting(ops.centered_box_mask(h, w, s.box_fraction)),
    "inpaint_random_pixels": lambda s, h, w, m: ops.Inpainting(ops.random_mask(h, w, s.keep_probability, s.seed)),
    "inpaint_mask": _inpaint_mask,
    "super_resolution_avg_pool": lambda s, h, w, m: ops.AveragePoolSR(h, w, s.scale_factor),
    "super_resolution_bicubic": lambda s, h, w, m: ops.BicubicSR(h, w, s.scale_factor, padding=s.padding),
    "gaussian_blur": lambda s, h, w, m: ops.GaussianBlur(h, w, s.kernel_size, s.blur_sigma, padding=s.padding),
    "motion_blur": lambda s, h, w, m: ops.MotionBlur(h, w, s.kernel_size, s.motion_intensity, s.seed,
                                                     padding=s.padding),
    "denoise": lambda s, h, w, m: ops.Denoising(h, w),
    "colorize": lambda s, h, w, m: ops.Colorization(h, w),
}
SUPER_RESOLUTION = {"super_resolution_avg_pool", "super_resolution_bicubic"}


def build_operator(settings: OperatorSettings, height: int, width: int,
                   fill_mask: torch.Tensor | None = None) -> ops.LinearOperator:
    """The operator for a clean image of ``height × width``.

    ``fill_mask`` is one ``(H, W)`` fill mask (1 = region to fill; see
    :func:`fill_masks_for_images`), required by "inpaint_mask" and read through
    ``settings.mask_threshold``.
    """
    require(settings.kind in OPERATORS, f"operator {settings.kind!r} is unknown: choose one of {', '.join(OPERATORS)}")
    require(settings.padding in ops.PADDINGS, f"padding must be one of {ops.PADDINGS}, got {settings.padding!r}")
    return OPERATORS[settings.kind](settings, height, width, fill_mask)


def clean_size_for_measurement(settings: OperatorSettings, height: int, width: int) -> tuple[int, int]:
    """The restored image's size when the user's photo of ``height × width`` is the measurement."""
    if settings.kind in SUPER_RESOLUTION:
        return height * settings.scale_factor, width * settings.scale_factor
    return height, width


@dataclass(frozen=True)
class Degradation:
    """An operator with the noise level its measurement was simulated with (0 if unknown).

    ``operators`` holds one operator per image when the images of a batch have their own masks;
    empty when ``operator`` serves every image. ``image_size`` is the photo's size when the operator
    works on a larger canvas (a scale factor that does not divide it); ``None`` when they agree.
    """

    operator: ops.LinearOperator
    sigma_y: float = 0.0
    operators: tuple[ops.LinearOperator, ...] = ()
    image_size: tuple[int, int] | None = None

    def operator_for(self, index: int) -> ops.LinearOperator:
        """The operator of image ``index`` of the batch."""
        if not self.operators:
            return self.operator
        require(index < len(self.operators),
                f"measurement: image {index + 1} of the batch has no operator: the degradation was built for "
                f"{len(self.operators)} images, each with its own mask; connect the measurement it made")
        return self.operators[index]

    def measurement_from_image(self, image: torch.Tensor, index: int = 0) -> torch.Tensor:
        """``y`` of image ``index`` from a picture of the measurement ``(1, 3, h, w)`` in [-1, 1]."""
        require(bool(torch.isfinite(image).all()), "measurement image contains NaN or infinite values")
        return self.operator_for(index).from_image(image)
