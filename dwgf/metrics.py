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
