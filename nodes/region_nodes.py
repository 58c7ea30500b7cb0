"""Nodes "Crop Around Mask" and "Stitch Region": restore a small damaged region of a big photo at
the model's working size, and put it back with a feathered seam (``dwgf/regions.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..dwgf.errors import require
from ..dwgf.regions import Window, crop, feathered_alpha, stitch, window_around
from .common import CATEGORY

REGION_TYPE = "DWGF_REGION"


@dataclass(frozen=True)
class Region:
    """What Stitch Region needs to put a restored window back: where it was, and the mask."""

    window: Window
    mask: torch.Tensor  # (H, W) of the whole photo, 1 = fill
    threshold: float


def _channels_first(image: torch.Tensor) -> torch.Tensor:
    return image.permute(0, 3, 1, 2)


def _channels_last(image: torch.Tensor) -> torch.Tensor:
    return image.permute(0, 2, 3, 1).contiguous()


class CropAroundMask:
    """Cuts a window around the mask out of a big photo, at the model's working size."""

    DESCRIPTION = (
        "For a big photo with a small region to fill: cuts a square window around the mask (its bounding "
        "box plus context) and resizes it to the model's working size when it is larger, so the samplers "
        "restore only that window. Connect the outputs to the Degradation Operator ('inpaint mask'), and "
        "the restoration and the region to Stitch Region to put it back into the photo."
    )
    CATEGORY = CATEGORY
    FUNCTION = "crop"
    RETURN_TYPES = ("IMAGE", "MASK", REGION_TYPE)
    RETURN_NAMES = ("image", "mask", "region")
    OUTPUT_TOOLTIPS = ("The window, at the working size.", "The mask of the window, at the working size.",
                       "Where the window came from, for Stitch Region.")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "image": ("IMAGE", {"tooltip": "The whole photo (one image)."}),
            "mask": ("MASK", {"tooltip": "The region to fill (white = fill), the size of the photo."}),
            "working_size": ("INT", {"default": 512, "min": 8, "max": 4096, "step": 8, "tooltip":
                                     "The side the model restores best at: 512 for SD 1.5 and SD 2.1-base, "
                                     "768 for SD 2.1-v, 1024 for SDXL, 32 for the demo model. Larger windows "
                                     "are resized down to it."}),
            "context": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 4.0, "step": 0.05, "tooltip":
                                  "How much of the photo around the mask the window shows, on each side, as "
                                  "a fraction of the mask's size (the model needs context to fill a hole)."}),
            "mask_threshold": ("FLOAT", {"default": 0.5, "min": 0.001, "max": 1.0, "step": 0.01, "tooltip":
                                         "Mask values at least this count as 'fill' for placing the window "
                                         "and for the seam."}),
        }}

    def crop(self, image: torch.Tensor, mask: torch.Tensor, working_size: int, context: float,
             mask_threshold: float) -> tuple[torch.Tensor, torch.Tensor, Region]:
        require(image.ndim == 4 and image.shape[0] == 1,
                f"image: Crop Around Mask takes one photo, got a batch of {image.shape[0] if image.ndim == 4 else '?'}")
        masks = mask if mask.ndim == 3 else mask[None]
        require(masks.shape[0] == 1, f"mask: one mask for the photo, got {masks.shape[0]}")
        require(tuple(masks.shape[-2:]) == tuple(image.shape[1:3]),
                f"mask is {masks.shape[-2]}x{masks.shape[-1]} but the photo is {image.shape[1]}x{image.shape[2]}: "
                "paint the mask on this photo (Load Image's MASK output, or its mask editor)")
        full = masks[0].float()
        window = window_around(full, working_size, context, mask_threshold)
        window_image = _channels_last(crop(_channels_first(image.float()), window)).clamp(0, 1)
        hard = (full >= mask_threshold).float()[None, None]
        window_mask = (crop(hard, window)[0] >= 0.5).float()  # a hard mask: no soft edges from resizing
        return window_image, window_mask, Region(window, full.cpu(), mask_threshold)


class StitchRegion:
    """Puts a restored window back into the whole photo with a feathered seam."""

    DESCRIPTION = (
        "Puts the restoration of a Crop Around Mask window back into the whole photo. The seam is "
        "feathered: the restoration is used on the mask, blended over 'feather' pixels around it, and "
        "every other pixel is the photo's own, bit for bit. A batch (e.g. all particles) gives a batch."
    )
    CATEGORY = CATEGORY
    FUNCTION = "stitch"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The whole photo with the restored region.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "photo": ("IMAGE", {"tooltip": "The whole photo the window was cut from."}),
            "restored": ("IMAGE", {"tooltip": "The restored window (Particle Decode's mean or particles)."}),
            "region": (REGION_TYPE, {"tooltip": "The region output of Crop Around Mask."}),
            "feather": ("INT", {"default": 8, "min": 0, "max": 256, "tooltip":
                                "Width of the seam's blend in photo pixels: the restoration fades into the "
                                "photo over up to twice this distance from the mask. 0 = a hard edge."}),
        }}

    def stitch(self, photo: torch.Tensor, restored: torch.Tensor, region: Region,
               feather: int) -> tuple[torch.Tensor]:
        require(isinstance(region, Region), "region: connect the region output of a Crop Around Mask node")
        alpha = feathered_alpha(region.mask, int(feather), region.threshold)
        whole = stitch(_channels_first(photo[..., :3]), _channels_first(restored[..., :3]), region.window, alpha)
        return (_channels_last(whole),)


NODE_CLASS_MAPPINGS = {"DWGF_CropAroundMask": CropAroundMask, "DWGF_StitchRegion": StitchRegion}
NODE_DISPLAY_NAME_MAPPINGS = {"DWGF_CropAroundMask": "Crop Around Mask", "DWGF_StitchRegion": "Stitch Region"}
