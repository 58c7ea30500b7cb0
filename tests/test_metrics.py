"""PSNR and SSIM: known values, and agreement with scikit-image's reference SSIM."""

from __future__ import annotations

import math

import pytest
import torch

from dwgf import metrics
from dwgf.errors import DWGFInputError


def test_psnr_of_a_known_error() -> None:
    """A uniform error of 0.1 on [0, 1] images is 20 dB; identical images are infinite."""
    a = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert metrics.psnr(a, a + 0.1).tolist() == pytest.approx([20.0, 20.0])
    assert math.isinf(float(metrics.psnr(a, a)[0]))


def test_ssim_is_one_for_identical_images_and_lower_for_noisy_ones() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.rand(3, 3, 32, 32, generator=g)
    assert torch.allclose(metrics.ssim(a, a), torch.ones(3, dtype=torch.float64))
    noisy = (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    assert (metrics.ssim(a, noisy) < 0.9).all()


def test_ssim_matches_scikit_image() -> None:
    skimage_metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(2)
    clean = torch.rand(1, 3, 40, 48, generator=g, dtype=torch.float64)
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    ours = float(metrics.ssim(clean, noisy)[0])
    reference = skimage_metrics.structural_similarity(
        clean[0].numpy(), noisy[0].numpy(), channel_axis=0, data_range=1.0,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ours == pytest.approx(reference, abs=1e-6)


def test_metrics_reject_mismatched_images() -> None:
    with pytest.raises(DWGFInputError, match="one shape"):
        metrics.psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
    with pytest.raises(DWGFInputError, match="at least 11x11"):
        metrics.ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
