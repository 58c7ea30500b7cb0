"""Restoring a region of a big photo: the window, the feathered seam, and a run through the server."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from api_prompts import degradation_inputs, dwgf_sampler_inputs
from PIL import Image

from dwgf import regions


def test_the_window_centres_on_the_mask_and_stays_inside_the_photo() -> None:
    mask = torch.zeros(200, 300)
    mask[10:20, 280:295] = 1  # near the top-right corner
    window = regions.window_around(mask, work_size=64, context=0.5)
    assert (window.height, window.width) == (64, 64) and not window.resized
    assert window.top == 0 and window.left == 300 - 64  # clamped, still holding the whole mask
    big = torch.zeros(200, 300)
    big[50:150, 100:180] = 1  # larger than the working size: a bigger window, restored at 64
    window = regions.window_around(big, work_size=64, context=0.25)
    assert window.height == window.width == 150 and window.resized
    assert (window.work_height, window.work_width) == (64, 64)
    assert window.top <= 50 and window.top + window.height >= 150 and window.left <= 100 and window.left + 150 >= 180


def test_the_seam_weight_is_one_on_the_mask_and_zero_beyond_twice_the_feather() -> None:
    mask = torch.zeros(64, 64)
    mask[20:30, 20:30] = 1
    alpha = regions.feathered_alpha(mask, feather=4)
    assert torch.all(alpha[mask > 0] == 1)
    distance = torch.zeros(64, 64)
    ys, xs = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    distance = torch.maximum(torch.maximum(20 - ys, ys - 29), torch.maximum(20 - xs, xs - 29)).clamp_min(0)
    assert torch.all(alpha[distance > 8] == 0) and torch.all(alpha[(distance > 0) & (distance <= 8)] < 1)
    assert alpha[(distance > 0) & (distance <= 2)].min() > 0.3  # a gradual blend, not a step


def test_stitching_leaves_every_pixel_outside_the_seam_bit_exact() -> None:
    photo = torch.rand(1, 3, 120, 90, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(120, 90)
    mask[60:75, 30:50] = 1
    window = regions.window_around(mask, work_size=64, context=0.5)
    assert not window.resized
    restored = torch.rand(2, 3, window.work_height, window.work_width)
    alpha = regions.feathered_alpha(mask, feather=3)
    out = regions.stitch(photo, restored, window, alpha)
    assert out.shape == (2, 3, 120, 90)
    assert torch.equal(out[:, :, alpha == 0], photo.expand(2, -1, -1, -1)[:, :, alpha == 0])
    rows, cols = slice(window.top, window.top + window.height), slice(window.left, window.left + window.width)
    assert torch.allclose(out[:, :, rows, cols][:, :, mask[rows, cols] > 0], restored[:, :, mask[rows, cols] > 0])


def test_a_wrong_photo_or_restoration_is_named() -> None:
    mask = torch.zeros(50, 50)
    mask[10:20, 10:20] = 1
    window = regions.window_around(mask, work_size=16, context=0.5)
    alpha = regions.feathered_alpha(mask, 2)
    with pytest.raises(ValueError, match="cut from a 50x50 photo"):
        regions.stitch(torch.rand(1, 3, 40, 50), torch.rand(1, 3, 16, 16), window, alpha)
    with pytest.raises(ValueError, match="was cut at 16x16"):
        regions.stitch(torch.rand(1, 3, 50, 50), torch.rand(1, 3, 20, 16), window, alpha)
    with pytest.raises(ValueError, match="nothing to restore"):
        regions.window_around(torch.zeros(50, 50), 16, 0.5)


# -- through the server -------------------------------------------------------------------------
def region_prompt(photo: str, mask: str, working_size: int, feather: int) -> dict:
    degradation = degradation_inputs(["5", 0], "inpaint mask", mask=["5", 1])
    sampler = dwgf_sampler_inputs(degradation_node="6", steps=30)
    return {
        "1": {"class_type": "DWGF_DemoModel", "inputs": {"prompt": "unconditional", "batch_size": 1}},
        "2": {"class_type": "LoadImage", "inputs": {"image": photo}},
        "3": {"class_type": "LoadImage", "inputs": {"image": mask}},
        "4": {"class_type": "ImageToMask", "inputs": {"image": ["3", 0], "channel": "red"}},
        "5": {"class_type": "DWGF_CropAroundMask", "inputs": {"image": ["2", 0], "mask": ["4", 0],
                                                              "working_size": working_size, "context": 0.5,
                                                              "mask_threshold": 0.5}},
        "6": {"class_type": "DWGF_DegradationOperator", "inputs": degradation},
        "7": {"class_type": "DWGF_Sampler", "inputs": sampler},
        "8": {"class_type": "DWGF_ParticleDecode", "inputs": {"particles": ["7", 0], "vae": ["1", 1],
                                                              "paste_known_pixels": True, "degradation": ["6", 0],
                                                              "measurement": ["6", 1]}},
        "9": {"class_type": "DWGF_StitchRegion", "inputs": {"photo": ["2", 0], "restored": ["8", 1],
                                                            "region": ["5", 2], "feather": feather}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "region/whole"}},
    }


@pytest.fixture(scope="module")
def big_photo(server) -> np.ndarray:
    """scikit-image's coffee (held out from the demo model) at 4-5 times the model's 32² crops."""
    from skimage import data

    photo = np.asarray(Image.fromarray(data.coffee()).resize((160, 128), Image.LANCZOS))
    Image.fromarray(photo).save(server.input_dir / "region_photo.png")
    return photo


@pytest.mark.server
@pytest.mark.parametrize(("box", "working_size"), [((50, 70, 12, 16), 32), ((30, 40, 48, 56), 32)])
def test_a_region_of_a_big_photo_is_restored_and_stitched_back(server, big_photo, box, working_size) -> None:
    top, left, height, width = box
    hole = np.zeros(big_photo.shape[:2], dtype=bool)
    hole[top:top + height, left:left + width] = True
    Image.fromarray((hole * 255).astype(np.uint8)).convert("RGB").save(server.input_dir / "region_mask.png")
    feather = 2
    result = server.run(region_prompt("region_photo.png", "region_mask.png", working_size, feather), silence=300)
    (entry,) = result.output_images()
    whole = np.asarray(Image.open(io.BytesIO(server.view(entry))).convert("RGB")).astype(int)
    assert whole.shape == big_photo.shape
    alpha = regions.feathered_alpha(torch.from_numpy(hole).float(), feather).numpy()
    truth = big_photo.astype(int)
    assert np.array_equal(whole[alpha == 0], truth[alpha == 0])  # untouched: bit for bit
    seam = (alpha > 0) & ~hole
    seam_rmse = float(np.sqrt(((whole[seam] - truth[seam]) ** 2).mean()))
    hole_rmse = float(np.sqrt(((whole[hole] - truth[hole]) ** 2).mean()))
    grey_rmse = float(np.sqrt(((128 - truth[hole]) ** 2).mean()))
    assert hole_rmse < grey_rmse  # the hole was filled with something better than a flat grey
    assert seam_rmse < hole_rmse  # the seam blends towards the photo: closer to the truth than the fill
