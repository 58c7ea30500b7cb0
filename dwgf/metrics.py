"""PSNR and SSIM per image, in pure PyTorch.

Both take images in **[0, 1]** (METHOD.md scores there; convert the core's [-1, 1] images with
``(x + 1) / 2``), shaped ``(N, C, H, W)``, and return one value per image, ``(N,)``. SSIM is the
standard one of Wang et al. (2004): an 11×11 Gaussian window with σ = 1.5, K1 = 0.01, K2 = 0.03,
statistics over the valid region only, averaged over channels — the same numbers as
``skimage.metrics.structural_similarity(..., gaussian_weights=True, use_sample_covariance=False)``.
"""

from __future__ import annotations

import torch
from torch.nn.functional import conv2d

from .errors import require


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    require(a.ndim == 4 and a.shape == b.shape,
            f"images must be two batches (N, C, H, W) of one shape; got {tuple(a.shape)} and {tuple(b.shape)}")


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """``10 log10(range² / MSE)`` per image, in float64 (``inf`` for identical images)."""
    _check_pair(a, b)
    mse = (a.double() - b.double()).square().flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 1-D Gaussian taps; the 2-D window is their outer product."""
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    taps = torch.exp(-0.5 * (t / sigma) ** 2)
    return taps / taps.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, window: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Mean structural similarity per image, in float64."""
    _check_pair(a, b)
    require(min(a.shape[-2:]) >= window,
            f"SSIM needs images at least {window}x{window} pixels; got {a.shape[-2]}x{a.shape[-1]}")
    c = a.shape[1]
    taps = gaussian_window(window, sigma).to(a.device)
    rows = taps.view(1, 1, -1, 1).expand(c, 1, window, 1)
    cols = taps.view(1, 1, 1, -1).expand(c, 1, 1, window)

    def blur(u: torch.Tensor) -> torch.Tensor:
        return conv2d(conv2d(u, rows, groups=c), cols, groups=c)

    x, y = a.double(), b.double()
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    score = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return score.flatten(1).mean(1)


# ---------------------------------------------------------------------------------------------
# Diversity, calibration and sharpness of a set of particles (issue 16)
# ---------------------------------------------------------------------------------------------
def particle_spread(particles: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
    """Mean per-pixel standard deviation across particles, per image: ``particles`` is
    ``(N, K, C, H, W)`` (K particles of N images); ``region`` an optional ``(H, W)`` 0/1 mask
    (e.g. the inpainting hole) the mean is taken over."""
    std = particles.double().std(1, unbiased=False).mean(1)  # (N, H, W), averaged over channels
    if region is None:
        return std.flatten(1).mean(1)
    weight = region.double().to(std.device)
    return (std * weight).flatten(1).sum(1) / weight.sum().clamp_min(1)


def mean_pairwise_distance(particles: torch.Tensor) -> torch.Tensor:
    """Mean RMS difference between two particles of one image, over all pairs, per image."""
    n, k = particles.shape[:2]
    flat = particles.double().reshape(n, k, -1)
    distances = torch.cdist(flat, flat) / flat.shape[-1] ** 0.5
    pairs = k * (k - 1)
    return distances.sum((1, 2)) / max(pairs, 1)


def spread_error_correlation(particles: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per image, the Pearson correlation over pixels between the particles' spread and the
    particle mean's absolute error (both averaged over channels): near 1 where the spread map
    points at the errors, 0 where it says nothing about them."""
    spread = particles.double().std(1, unbiased=False).mean(1).flatten(1)
    error = (particles.double().mean(1) - clean.double()).abs().mean(1).flatten(1)
    spread, error = spread - spread.mean(1, keepdim=True), error - error.mean(1, keepdim=True)
    return (spread * error).sum(1) / (spread.norm(dim=1) * error.norm(dim=1)).clamp_min(1e-12)


def range_coverage(particles: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per image, the share of pixel values (all channels) where the truth lies between the
    particles' smallest and largest value — for K calibrated samples about (K − 1)/(K + 1)."""
    low, high = particles.double().amin(1), particles.double().amax(1)
    truth = clean.double()
    return ((truth >= low) & (truth <= high)).flatten(1).double().mean(1)


def radial_power(images: torch.Tensor) -> torch.Tensor:
    """The radially averaged power spectrum per image, ``(N, R)`` with R = min(H, W) // 2 rings."""
    gray = images.double().mean(1)
    gray = gray - gray.mean((-2, -1), keepdim=True)
    power = torch.fft.fftshift(torch.fft.fft2(gray).abs().square(), dim=(-2, -1))
    h, w = gray.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h) - h // 2, torch.arange(w) - w // 2, indexing="ij")
    ring = torch.sqrt(yy.double() ** 2 + xx.double() ** 2).round().long().flatten()
    rings = min(h, w) // 2
    keep = ring < rings
    flat = power.flatten(1)[:, keep.to(power.device)]
    totals = torch.zeros(gray.shape[0], rings, dtype=torch.float64).index_add_(1, ring[keep], flat.cpu())
    counts = torch.bincount(ring[keep], minlength=rings).double()
    return totals / counts


def sharpness(images: torch.Tensor, clean: torch.Tensor, from_fraction: float = 0.5) -> torch.Tensor:
    """Per image, the high-frequency energy of ``images`` relative to the clean image's: the sum of
    the radially averaged power spectrum over the upper ``1 − from_fraction`` of the frequency rings.
    1 = as much fine detail as the truth, below 1 = blurrier (PSNR rewards blur; this does not)."""
    mine, truth = radial_power(images), radial_power(clean)
    start = int(mine.shape[1] * from_fraction)
    return mine[:, start:].sum(1) / truth[:, start:].sum(1).clamp_min(1e-20)
