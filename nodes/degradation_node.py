"""Node "Degradation Operator": choose the forward operator and make (or accept) the measurement."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from ..dwgf.degradation import (
    SOFT_MASK_WARNING_SHARE,
    SUPER_RESOLUTION,
    Degradation,
    OperatorSettings,
    build_operator,
    clean_size_for_measurement,
    fill_masks_for_images,
    soft_mask_share,
)
from ..dwgf.errors import require
from ..dwgf.imaging import bchw_signed_to_bhwc_unit, bhwc_unit_to_bchw_signed
from ..dwgf.operators import NOISE_PER_BATCH, NOISE_PER_IMAGE, PADDINGS
from .common import CATEGORY, DEGRADATION_TYPE

IMAGE_IS_CLEAN = "clean (simulate the measurement)"
IMAGE_IS_MEASUREMENT = "already degraded (use it as the measurement)"
NOISE_LABELS: dict[str, str] = {  # saved in workflows: never change
    "each image (its content and the seed)": NOISE_PER_IMAGE,
    "its place in the batch": NOISE_PER_BATCH,
}
NOISE_BY_IMAGE, NOISE_BY_PLACE = NOISE_LABELS
OPERATOR_LABELS: dict[str, str] = {  # what the node shows (saved in workflows: never change) → the core's id
    "inpaint box (DWGF reference)": "inpaint_box_reference",
    "inpaint box (centre)": "inpaint_box_centre",
    "inpaint random pixels": "inpaint_random_pixels",
    "inpaint mask": "inpaint_mask",
    "super-resolution avg-pool": "super_resolution_avg_pool",
    "super-resolution bicubic": "super_resolution_bicubic",
    "gaussian blur": "gaussian_blur",
    "motion blur": "motion_blur",
    "denoise": "denoise",
    "colorize": "colorize",
}


class DegradationOperator:
    """Builds a DEGRADATION for the samplers, and the measurement as an IMAGE."""

    DESCRIPTION = (
        "Chooses the forward operator A of the restoration problem (inpainting, super-resolution, "
        "deblurring, denoising, colorization). With a clean image it simulates the measurement "
        "y = A(x) + sigma_y * noise; with a photo that is already degraded (a small image, a photo "
        "with a hole) it uses the photo itself as y. Outputs the DEGRADATION for the DWGF/PSLD "
        "Sampler, the measurement as an image, and the naive restoration A†y."
    )
    CATEGORY = CATEGORY
    FUNCTION = "build"
    RETURN_TYPES = (DEGRADATION_TYPE, "IMAGE", "IMAGE")
    RETURN_NAMES = ("degradation", "measurement", "pseudo_inverse")
    OUTPUT_TOOLTIPS = (
        "The operator and noise level; connect to a DWGF or PSLD Sampler.",
        "The measurement y as a picture: the image with its hole (grey), the small image, the blurred image.",
        "A†y: the measurement mapped back to full size without any prior (the naive restoration).",
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "A clean image to degrade, or your already-degraded photo "
                                    "(see 'image_is')."}),
                "image_is": ([IMAGE_IS_CLEAN, IMAGE_IS_MEASUREMENT], {
                    "default": IMAGE_IS_CLEAN,
                    "tooltip": "clean: simulate y = A(image) + noise (for testing and benchmarks). "
                               "already degraded: the image is y itself — a low-resolution photo for "
                               "super-resolution (output is scale_factor times larger), a photo with a "
                               "hole plus a mask for inpainting, a blurry or noisy photo."}),
                "operator": (list(OPERATOR_LABELS), {
                    "default": "inpaint box (centre)",
                    "tooltip": "The forward operator A. 'inpaint mask' uses the mask input (white = fill)."}),
                "scale_factor": ("INT", {"default": 4, "min": 2, "max": 16, "step": 1,
                                         "tooltip": "Super-resolution factor r; must divide the image size."}),
                "kernel_size": ("INT", {"default": 61, "min": 3, "max": 255, "step": 2,
                                        "tooltip": "Blur kernel side in pixels (odd). Reference: 61 at 256², "
                                                   "double it at 512²."}),
                "blur_sigma": ("FLOAT", {"default": 3.0, "min": 0.1, "max": 50.0, "step": 0.1,
                                         "tooltip": "Gaussian blur width in pixels. Reference: 3.0 at 256²."}),
                "motion_intensity": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.05,
                                               "tooltip": "How erratic and long the random camera path of "
                                                          "the motion-blur kernel is."}),
                "keep_probability": ("FLOAT", {"default": 0.3, "min": 0.01, "max": 0.99, "step": 0.01,
                                               "tooltip": "'inpaint random pixels': chance that a pixel is kept."}),
                "box_fraction": ("FLOAT", {"default": 0.5, "min": 0.05, "max": 0.95, "step": 0.05,
                                           "tooltip": "'inpaint box (centre)': hole side as a fraction of the "
                                                      "shorter image side."}),
                "sigma_y": ("FLOAT", {"default": 0.001, "min": 0.0, "max": 1.0, "step": 0.001,
                                      "tooltip": "Measurement noise std in the [-1, 1] image scale, added when "
                                                 "simulating y from a clean image (reference 0.001)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                                 "tooltip": "Seed of the measurement noise, the random mask and the "
                                            "motion-blur kernel."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "For 'inpaint mask': the region to fill (1 = fill), the size "
                                             "of the clean image."}),
                "padding": (list(PADDINGS), {"default": "reflect",
                                             "tooltip": "Boundary handling of blur and bicubic filters."}),
                "mask_threshold": ("FLOAT", {"default": 0.5, "min": 0.001, "max": 1.0, "step": 0.01,
                                             "tooltip": "How a soft mask is read: pixels whose mask value is "
                                                        "at least this are filled, the rest are kept as "
                                                        "measured. Soft brushes, gradients and JPEG masks have "
                                                        "values between 0 and 1; the node warns when many do."}),
                "noise_seeded_by": (list(NOISE_LABELS), {
                    "default": NOISE_BY_IMAGE,
                    "tooltip": "How each image's measurement noise is seeded. 'each image': by the image's own "
                               "content and the seed, so a photo gets the same measurement alone, in any batch "
                               "and on any worker (ComfyUI-Distributed). 'its place in the batch': one draw for "
                               "the whole batch, as before (the benchmarks' recorded figures use it)."}),
            },
        }

    def build(self, image: torch.Tensor, image_is: str, operator: str, scale_factor: int, kernel_size: int,
              blur_sigma: float, motion_intensity: float, keep_probability: float, box_fraction: float,
              sigma_y: float, seed: int, mask: torch.Tensor | None = None, padding: str = "reflect",
              mask_threshold: float = 0.5, noise_seeded_by: str = NOISE_BY_IMAGE) -> tuple | dict:
        require(sigma_y >= 0, f"sigma_y must be >= 0 (got {sigma_y}): it is a noise standard deviation")
        require(0 < mask_threshold <= 1, f"mask_threshold must be in (0, 1], got {mask_threshold!r}")
        require(operator in OPERATOR_LABELS,
                f"operator {operator!r} is unknown: choose one of {', '.join(OPERATOR_LABELS)}")
        require(noise_seeded_by in NOISE_LABELS,
                f"noise_seeded_by {noise_seeded_by!r} is unknown: choose one of {', '.join(NOISE_LABELS)}")
        noise = NOISE_LABELS[noise_seeded_by]
        kind = OPERATOR_LABELS[operator]
        settings = OperatorSettings(kind=kind, scale_factor=scale_factor, kernel_size=kernel_size,
                                    blur_sigma=blur_sigma, motion_intensity=motion_intensity,
                                    keep_probability=keep_probability, box_fraction=box_fraction,
                                    seed=seed, padding=padding, mask_threshold=mask_threshold)
        pixels = bhwc_unit_to_bchw_signed(image, "image")
        clean = image_is == IMAGE_IS_CLEAN
        height, width = ((pixels.shape[2], pixels.shape[3]) if clean
                         else clean_size_for_measurement(settings, pixels.shape[2], pixels.shape[3]))
        image_size = None
        factor = scale_factor if kind in SUPER_RESOLUTION else 1
        if clean and (height % factor or width % factor):
            # A clean photo the scale factor does not divide: simulate on the next multiple of it
            # (the border repeated); the samplers restore that canvas and Particle Decode crops it back.
            image_size = (height, width)
            height, width = -(-height // factor) * factor, -(-width // factor) * factor
            pixels = F.pad(pixels, (0, width - pixels.shape[3], 0, height - pixels.shape[2]), mode="replicate")
        masks: list[torch.Tensor | None] = [mask]
        warnings: list[str] = []
        if kind == "inpaint_mask":
            masks = fill_masks_for_images(mask, pixels.shape[0], height, width, mask_threshold)
            share = max(soft_mask_share(m) for m in masks)
            if share > SOFT_MASK_WARNING_SHARE:
                warnings.append(f"warning: {share:.0%} of the painted mask is soft (neither 0 nor 1); those "
                                f"pixels are filled where the mask is >= mask_threshold {mask_threshold:g} "
                                "and kept as measured elsewhere")
            if all(m is masks[0] for m in masks):
                masks = masks[:1]
        ops_per_image = [build_operator(settings, height, width, m) for m in masks]
        op = ops_per_image[0]
        degradation = Degradation(op, sigma_y if clean else 0.0, tuple(ops_per_image) if len(ops_per_image) > 1 else (),
                                  image_size)
        if not degradation.operators:  # one operator: the whole batch measured at once
            y = op.measure(pixels, sigma_y, seed, noise) if clean else degradation.measurement_from_image(pixels)
            measured, inverted = op.to_image(y), op.pseudo_inverse(y)
        else:  # one mask per image: measurements of different lengths, one at a time
            pictures, inverses = [], []
            for index, op_i in enumerate(degradation.operators):
                one = pixels[index:index + 1]
                # by place: each image its own seed; by content: the image itself tells them apart
                image_seed = seed + index if noise == NOISE_PER_BATCH else seed
                y = (op_i.measure(one, sigma_y, image_seed, noise) if clean
                     else degradation.measurement_from_image(one, index))
                pictures.append(op_i.to_image(y))
                inverses.append(op_i.pseudo_inverse(y))
            measured, inverted = torch.cat(pictures), torch.cat(inverses)
        if image_size is not None:
            inverted = inverted[..., : image_size[0], : image_size[1]]
        result = (degradation, bchw_signed_to_bhwc_unit(measured), bchw_signed_to_bhwc_unit(inverted))
        for line in warnings:
            logging.warning("Degradation Operator: %s", line)
        # ComfyUI shows a node's "ui" text; callers outside ComfyUI get the plain tuple when all is well
        return {"ui": {"text": warnings}, "result": result} if warnings else result


NODE_CLASS_MAPPINGS = {"DWGF_DegradationOperator": DegradationOperator}
NODE_DISPLAY_NAME_MAPPINGS = {"DWGF_DegradationOperator": "Degradation Operator"}
