"""The patch-distribution distance of ``dwgf.metrics`` (issue 26) on cases with known answers.

Images: the demo model's held-out photo crops outside the benchmark's 14–63 (crops 0–13 and 64–77:
two disjoint sets with two crops of each of the seven held-out photographs). Thresholds come from
the values measured (stated beside them, torch 2.14.1, CPU), with a margin.
"""

from __future__ import annotations

import pytest
import torch

from dwgf import demo_model, metrics, operators
from dwgf.errors import DWGFInputError

distance = metrics.patch_sliced_wasserstein


@pytest.fixture(scope="module")
def crops() -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint sets of 14 clean held-out crops ``(14, 3, 32, 32)`` in [0, 1]."""
    photos = demo_model.load_heldout("photos").images.permute(0, 3, 1, 2).contiguous()
    return photos[0:14], photos[64:78]


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    size = images.shape[-1]
    return operators.GaussianBlur(size, size, 2 * int(3 * sigma + 0.5) + 1, sigma).forward(images)


def noisy(images: torch.Tensor, sigma: float) -> torch.Tensor:
    return (images + sigma * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)


def test_a_set_against_itself_is_exactly_zero(crops, single_thread) -> None:
    a, _ = crops
    assert distance(a, a) == 0.0
    assert distance(a, a, order=2, band=None, centre=False, patches_per_image=None) == 0.0
    hole = (~operators.centered_box_mask(32, 32, 0.5)).float()
    assert distance(a, a, band=1, region=hole) == 0.0


def test_clean_sets_sit_at_a_small_floor_and_a_blur_far_above_it(crops, single_thread) -> None:
    a, b = crops
    floor = distance(a, b)
    assert 0.003 < floor < 0.008  # measured 0.0050 (seeds 0–3: 0.0050–0.0057)
    # paired (blurred crops against their own clean crops) and unpaired (against the other set)
    assert distance(blur(a, 1.0), a) > 4 * floor  # measured 0.0286: 5.8 × the floor
    assert distance(blur(a, 1.0), b) > 4 * floor  # measured 0.0275
    assert distance(blur(a, 0.5), b) > 1.5 * floor  # measured 0.0101
    assert distance(noisy(a, 0.05), b) > 2.5 * floor  # measured 0.0163
    assert distance(noisy(a, 0.1), b) > 6 * floor  # measured 0.0411


def test_the_distance_grows_with_the_blur(crops, single_thread) -> None:
    a, b = crops
    values = [distance(blur(a, sigma), b) for sigma in (0.5, 1.0, 1.5, 2.0)]
    assert values == sorted(values) and values[0] < values[-1] / 3, values  # measured 0.0101, 0.0275, 0.0362, 0.0410


def test_a_grey_hole_is_seen_inside_the_hole(crops, single_thread) -> None:
    """Restricted to the hole, the grey fill of ``A†y`` is far from clean detail; over the whole
    image the three known quarters dilute it (measured 0.0030, below the unpaired floor)."""
    a, b = crops
    known = operators.centered_box_mask(32, 32, 0.5)
    hole = (~known).float()
    filled = a * known + 0.5 * ~known
    floor = distance(a, b, region=hole)
    assert distance(filled, a, region=hole) > 1.8 * floor  # measured 0.0158 against 0.0068


def test_symmetric_order_free_and_seeded(crops, single_thread) -> None:
    a, b = crops
    assert distance(a, b) == distance(b, a)
    bigger = torch.cat([b, a[:5]])
    assert distance(a, bigger) == distance(bigger, a)  # unequal sizes: the same subset either way
    order = torch.randperm(a.shape[0], generator=torch.Generator().manual_seed(3))
    assert distance(a[order], b) == pytest.approx(distance(a, b), rel=1e-6)
    assert distance(a, b, seed=4) == distance(a, b, seed=4)
    assert distance(a, b, seed=4) != distance(a, b)
    assert distance(a, b, seed=4) == pytest.approx(distance(a, b), rel=0.2)  # measured seeds 0–3: ±8 %


def test_a_larger_set_is_cut_to_the_same_count(single_thread) -> None:
    """Four times as many images from the same distribution (as 4 particles per clean image) score
    the floor of equal sets: the larger is cut to the smaller's patch count, not averaged over."""
    g = torch.Generator().manual_seed(5)
    many = (0.5 + 0.1 * torch.randn(56, 3, 32, 32, generator=g)).clamp(0, 1)
    few = (0.5 + 0.1 * torch.randn(14, 3, 32, 32, generator=g)).clamp(0, 1)
    ratio = distance(many, few) / distance(many[:14], few)
    assert 0.85 < ratio < 1.3, ratio  # measured 0.98, 1.16, 1.11 on three draws


def test_laplacian_band_of_a_flat_image_is_zero_and_halves_per_band() -> None:
    flat = torch.full((2, 3, 32, 32), 0.3)
    assert metrics.laplacian_band(flat).abs().max() < 1e-12
    assert metrics.laplacian_band(flat, 1).abs().max() < 1e-12
    ramp = torch.linspace(0, 1, 32, dtype=torch.float64).view(1, 1, 1, 32).expand(1, 3, 32, 32)
    assert metrics.laplacian_band(ramp)[..., 3:-4].abs().max() < 1e-12  # a linear ramp has no detail (but at the
    # borders, where the reflection bends it)
    assert metrics.laplacian_band(flat, 1).shape == (2, 3, 16, 16)


def test_particle_sharpness_scores_each_particle() -> None:
    g = torch.Generator().manual_seed(1)
    clean = torch.rand(2, 3, 32, 32, generator=g)
    blurred = torch.nn.functional.avg_pool2d(clean, 3, stride=1, padding=1, count_include_pad=False)
    particles = torch.stack([clean, blurred, clean], 1)
    scores = metrics.particle_sharpness(particles, clean)
    assert scores.shape == (2, 3)
    assert torch.allclose(scores[:, 0], torch.ones(2, dtype=torch.float64))
    assert torch.equal(scores[:, 1], metrics.sharpness(blurred, clean))


def test_bad_inputs_are_refused() -> None:
    a = torch.zeros(2, 3, 32, 32)
    with pytest.raises(DWGFInputError, match="one image shape"):
        distance(a, torch.zeros(2, 3, 32, 31))
    with pytest.raises(DWGFInputError, match="fit the images"):
        distance(a, a, patch=40)
    with pytest.raises(DWGFInputError, match="order"):
        distance(a, a, order=3)
    with pytest.raises(DWGFInputError, match="no patch centre"):
        distance(a, a, region=torch.zeros(32, 32))
    with pytest.raises(DWGFInputError, match=r"\(N, K, C, H, W\)"):
        metrics.particle_sharpness(a, a)
