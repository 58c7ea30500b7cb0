"""The diversity, calibration and sharpness measures of ``dwgf.metrics`` on cases with known answers."""

from __future__ import annotations

import pytest
import torch

from dwgf import metrics


def test_spread_and_pairwise_distance_of_known_particles() -> None:
    base = torch.zeros(1, 1, 3, 4, 4)
    particles = torch.cat([base, base + 0.2], dim=1)  # two particles 0.2 apart everywhere
    assert metrics.particle_spread(particles).item() == pytest.approx(0.1)
    assert metrics.mean_pairwise_distance(particles).item() == pytest.approx(0.2)
    region = torch.zeros(4, 4)
    region[:2] = 1
    different = particles.clone()
    different[:, 1, :, 2:] = 0.0  # the particles agree outside the region
    assert metrics.particle_spread(different, region).item() == pytest.approx(0.1)
    assert metrics.particle_spread(different).item() == pytest.approx(0.05)


def test_calibration_measures() -> None:
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 3, 8, 8, generator=g)
    scale = torch.linspace(0.01, 0.3, 64).view(1, 1, 1, 8, 8)
    noise = torch.randn(2, 64, 3, 8, 8, generator=g) * scale
    particles = clean.unsqueeze(1) + noise  # errors and spread both grow with the same map
    assert (metrics.spread_error_correlation(particles, clean) > 0.6).all()  # measured 0.73, 0.79
    uniform = clean.unsqueeze(1) + 0.1 * torch.randn(2, 64, 3, 8, 8, generator=g)  # spread says nothing
    assert (metrics.spread_error_correlation(uniform, clean).abs() < 0.3).all()
    truth = particles[:, 4]  # exchangeable with the four samples below: calibrated
    coverage = metrics.range_coverage(particles[:, :4], truth)
    assert ((coverage > 0.45) & (coverage < 0.75)).all()  # 4 calibrated samples: (4 − 1)/(4 + 1) = 0.6 ± 0.035
    assert (metrics.range_coverage(particles[:, :4], clean) > 0.8).all()  # the centre: 1 − 2/2⁴
    assert metrics.range_coverage(particles[:, :1], clean).max() == 0  # one particle never brackets


def test_sharpness_is_one_for_the_truth_and_lower_for_a_blur() -> None:
    g = torch.Generator().manual_seed(1)
    clean = torch.rand(2, 3, 32, 32, generator=g)
    blurred = torch.nn.functional.avg_pool2d(clean, 3, stride=1, padding=1, count_include_pad=False)
    assert torch.allclose(metrics.sharpness(clean, clean), torch.ones(2, dtype=torch.float64))
    assert (metrics.sharpness(blurred, clean) < 0.3).all()
    assert (metrics.sharpness(clean + 0.3 * torch.randn(2, 3, 32, 32, generator=g), clean) > 1.2).all()
