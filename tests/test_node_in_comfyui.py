"""The pack inside a real ComfyUI process: loaded by ComfyUI's own loader, run in inference mode."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from comfyui_env import call_node, node_defaults

NODE_ID = "DWGF_DegradationOperator"


def run_node(comfy_nodes, image: torch.Tensor, **overrides):
    """The node with its defaults, ``image`` and ``sigma_y`` 0, and ``overrides``."""
    return call_node(NODE_ID, **{**node_defaults(NODE_ID), "image": image, "sigma_y": 0.0, **overrides})


@pytest.fixture()
def picture() -> torch.Tensor:
    """A ComfyUI IMAGE (1, 64, 64, 3) with values on the 8-bit grid."""
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (1, 64, 64, 3), generator=gen).float() / 255.0


def test_comfyui_loader_imports_the_pack(comfy_nodes) -> None:
    for node_id in (NODE_ID,):
        assert node_id in comfy_nodes.NODE_CLASS_MAPPINGS
    node_class = comfy_nodes.NODE_CLASS_MAPPINGS[NODE_ID]
    assert node_class.CATEGORY == "DWGF" and node_class.DESCRIPTION
    assert comfy_nodes.NODE_DISPLAY_NAME_MAPPINGS[NODE_ID] == "Degradation Operator"
    spec = node_class.INPUT_TYPES()
    for section in spec.values():
        for name, entry in section.items():
            assert len(entry) > 1 and entry[1].get("tooltip"), f"input {name} has no tooltip"


def test_box_inpainting_keeps_known_pixels_exactly(comfy_nodes, picture) -> None:
    degradation, measurement, restored = run_node(comfy_nodes, picture, operator="inpaint box (centre)",
                                                  box_fraction=0.5)
    known = degradation.operator.known
    assert known.float().mean().item() == pytest.approx(1 - 0.25)
    assert torch.allclose(measurement[0][known], picture[0][known], atol=1e-6)
    assert torch.allclose(measurement[0][~known], torch.full_like(measurement[0][~known], 0.5))
    assert torch.equal(restored, measurement)  # A† = Aᵀ for inpainting


def test_average_pool_measurement_is_avg_pool(comfy_nodes, picture) -> None:
    _, measurement, upscaled = run_node(comfy_nodes, picture, operator="super-resolution avg-pool", scale_factor=4)
    expected = F.avg_pool2d(picture.permute(0, 3, 1, 2), 4).permute(0, 2, 3, 1)
    assert measurement.shape == (1, 16, 16, 3) and upscaled.shape == (1, 64, 64, 3)
    assert torch.allclose(measurement, expected, atol=1e-6)


def test_user_photo_is_used_as_the_measurement(comfy_nodes) -> None:
    """A small photo with 'already degraded' gives an operator for the ×r larger image."""
    coarse = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.6 + 0.2
    picture = F.interpolate(coarse, size=(64, 64), mode="bilinear").permute(0, 2, 3, 1)  # smooth, inside (0, 1)
    degradation, measurement, upscaled = run_node(
        comfy_nodes, picture, image_is="already degraded (use it as the measurement)",
        operator="super-resolution bicubic", scale_factor=2)
    assert (degradation.operator.height, degradation.operator.width) == (128, 128)
    assert torch.allclose(measurement, picture, atol=1e-6)
    assert upscaled.shape == (1, 128, 128, 3)
    # A(A† y) = y: the restored image is consistent with the photo (up to the [0, 1] clamp of IMAGE)
    signed = upscaled.permute(0, 3, 1, 2) * 2 - 1
    again = degradation.operator.forward(signed.double())
    assert torch.allclose((again + 1) / 2, picture.permute(0, 3, 1, 2).double(), atol=2e-3)


def test_a_clean_photo_the_scale_factor_does_not_divide_is_simulated_on_the_next_multiple(comfy_nodes,
                                                                                          picture) -> None:
    degradation, measurement, upscaled = run_node(comfy_nodes, picture, operator="super-resolution avg-pool",
                                                  scale_factor=3, sigma_y=0.0)
    assert (degradation.operator.height, degradation.operator.width) == (66, 66)  # 64 up to a multiple of 3
    assert degradation.image_size == (64, 64) and measurement.shape == (1, 22, 22, 3)
    assert upscaled.shape == (1, 64, 64, 3)  # A†y cut back to the photo's size
    padded = F.pad(picture.permute(0, 3, 1, 2), (0, 2, 0, 2), mode="replicate")
    expected = F.avg_pool2d(padded, 3).permute(0, 2, 3, 1)
    assert torch.allclose(measurement, expected, atol=1e-6)


def test_free_form_mask_follows_comfyui_convention(comfy_nodes, picture) -> None:
    """ComfyUI's MASK is 1 = region to fill; those pixels are not measured."""
    mask = torch.zeros(1, 64, 64)
    mask[0, 10:20, 30:50] = 0.999  # soft brushes leave values just under 1
    degradation, measurement, _ = run_node(comfy_nodes, picture, operator="inpaint mask", mask=mask)
    assert (~degradation.operator.known).sum().item() == 200
    assert torch.allclose(measurement[0, 10:20, 30:50], torch.full((10, 20, 3), 0.5))


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"operator": "inpaint mask", "mask": torch.ones(1, 32, 32)}, ["mask is 32x32", "64x64"]),
        ({"operator": "inpaint mask"}, ["needs a mask"]),
        ({"operator": "inpaint mask", "mask": torch.zeros(1, 64, 64)}, ["no painted mask", "MaskEditor"]),
        ({"operator": "inpaint mask", "mask": torch.zeros(1, 32, 32)}, ["no painted mask", "64x64"]),
        ({"operator": "inpaint mask", "mask": torch.full((1, 64, 64), 0.3)}, ["mask_threshold 0.5", "0.3"]),
        ({"operator": "inpaint mask", "mask": torch.ones(2, 64, 64)}, ["2 masks", "1 images"]),
        ({"operator": "inpaint mask", "mask": torch.ones(1, 64, 64)}, ["hides every pixel"]),
        ({"operator": "gaussian blur", "kernel_size": 81}, ["kernel 81x81 is larger than the 64x64 image"]),
        ({"sigma_y": -0.1}, ["sigma_y must be >= 0"]),
    ],
)
def test_bad_input_names_the_input_and_the_fix(comfy_nodes, picture, overrides, words) -> None:
    with pytest.raises(ValueError) as caught:
        run_node(comfy_nodes, picture, **overrides)
    for word in words:
        assert word in str(caught.value)


def test_nan_image_is_rejected(comfy_nodes, picture) -> None:
    picture[0, 3, 3, 1] = float("nan")
    with pytest.raises(ValueError, match="image contains NaN"):
        run_node(comfy_nodes, picture)
