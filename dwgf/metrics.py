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


def particle_sharpness(particles: torch.Tensor, clean: torch.Tensor, from_fraction: float = 0.5) -> torch.Tensor:
    """:func:`sharpness` of every particle against its image's clean image: ``particles`` is
    ``(N, K, C, H, W)``, ``clean`` ``(N, C, H, W)``; returns ``(N, K)``. Score the particles, not their
    mean: the mean of K sharp but different samples is blurred by construction."""
    require(particles.ndim == 5 and particles.shape[0] == clean.shape[0] and particles.shape[2:] == clean.shape[1:],
            f"particles must be (N, K, C, H, W) of the clean batch (N, C, H, W); got {tuple(particles.shape)} "
            f"and {tuple(clean.shape)}")
    n, k = particles.shape[:2]
    return sharpness(particles.flatten(0, 1), clean.repeat_interleave(k, 0), from_fraction).view(n, k)


# ---------------------------------------------------------------------------------------------
# Distance between the distribution of restored images and that of clean ones (issue 26)
# ---------------------------------------------------------------------------------------------
_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)  # Burt and Adelson's 5-tap pyramid filter, /16


def _binomial_smooth(images: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Separable [1, 4, 6, 4, 1]/16 filter (times ``gain`` per axis), reflect-padded."""
    c = images.shape[1]
    taps = torch.tensor(_BINOMIAL, dtype=images.dtype, device=images.device) * (gain / 16.0)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="reflect")
    rows = conv2d(padded, taps.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)
    return conv2d(rows, taps.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)


def _pyramid_down(images: torch.Tensor) -> torch.Tensor:
    return _binomial_smooth(images)[..., ::2, ::2]


def _pyramid_up(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    n, c, h, w = images.shape
    spread = images.new_zeros(n, c, 2 * h, 2 * w)
    spread[..., ::2, ::2] = images
    return _binomial_smooth(spread, gain=2.0)[..., :size[0], :size[1]]


def laplacian_band(images: torch.Tensor, band: int = 0) -> torch.Tensor:
    """Band ``band`` of the Laplacian pyramid (Burt & Adelson 1983) of ``(N, C, H, W)`` images, in
    float64: band 0 is the image minus its blurred-and-resampled copy (the finest detail, full size),
    band 1 the same one octave down (half size), and so on. A flat image has bands of 0."""
    require(band >= 0, f"band must be 0 or more, got {band}")
    level = images.double()
    for _ in range(band):
        require(min(level.shape[-2:]) >= 3, f"images of {images.shape[-2]}x{images.shape[-1]} have no band {band}")
        level = _pyramid_down(level)
    require(min(level.shape[-2:]) >= 3, f"images of {images.shape[-2]}x{images.shape[-1]} have no band {band}")
    return level - _pyramid_up(_pyramid_down(level), level.shape[-2:])


def image_patches(images: torch.Tensor, patch: int = 7, patches_per_image: int | None = 256,
                  centre: bool = True, region: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """The ``patch × patch`` patches of a batch ``(N, C, H, W)`` as rows ``(n, C·patch²)`` in float64.

    Every position (stride 1) whose centre lies in ``region`` (an ``(H, W)`` 0/1 mask; all positions
    without one) is a candidate; where an image has more than ``patches_per_image`` of them, a seeded
    random subset of that many (the same positions in every image, so equal inputs give equal
    patches). ``centre`` subtracts each patch's own mean per channel: what is left is its texture."""
    require(images.ndim == 4, f"images must be a batch (N, C, H, W); got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    require(patch >= 2 and min(h, w) >= patch,
            f"patches must be at least 2x2 and fit the images; got {patch}x{patch} patches of {h}x{w} images")
    rows, cols = h - patch + 1, w - patch + 1
    positions = torch.arange(rows * cols)
    if region is not None:
        require(tuple(region.shape) == (h, w), f"region must be ({h}, {w}); got {tuple(region.shape)}")
        inside = region.detach().cpu()[patch // 2:patch // 2 + rows, patch // 2:patch // 2 + cols] > 0.5
        positions = positions[inside.flatten()]
        require(positions.numel() > 0, "the region holds no patch centre")
    if patches_per_image is not None and positions.numel() > patches_per_image:
        generator = torch.Generator().manual_seed(int(seed))
        keep = torch.randperm(positions.numel(), generator=generator)[:patches_per_image]
        positions = positions[keep].sort().values
    offsets = torch.arange(patch)
    top, left = (positions // cols)[:, None, None], (positions % cols)[:, None, None]
    flat = ((top + offsets[None, :, None]) * w + left + offsets[None, None, :]).flatten()  # P·patch² pixel indices
    pixels = images.detach().double().flatten(2)[:, :, flat.to(images.device)]
    patches = pixels.view(n, c, -1, patch * patch)
    if centre:
        patches = patches - patches.mean(-1, keepdim=True)
    return patches.permute(0, 2, 1, 3).reshape(-1, c * patch * patch).cpu()


def patch_sliced_wasserstein(restored: torch.Tensor, reference: torch.Tensor, patch: int = 7,
                             projections: int = 128, patches_per_image: int | None = 256, band: int | None = 0,
                             centre: bool = True, region: torch.Tensor | None = None, order: int = 1,
                             seed: int = 0) -> float:
    """Sliced 1-Wasserstein distance between the sets of ``patch × patch`` detail patches of two batches.

    Images ``(N, C, H, W)`` in **[0, 1]**, as :func:`psnr`. The batches are two *sets*: they may
    differ in size, the order of images does not matter, and a restored image is not compared with
    its own clean image. Why this measure: PSNR rewards the blurred posterior mean; :func:`sharpness`
    counts high-frequency energy but not whether it looks like real texture (noise scores as
    sharp); FID needs a downloaded Inception network, which this pack does not use. Small patches
    are what the eye judges locally, and the distance between their distributions needs no
    weights: a blurred set (detail shrunk towards 0), a noisy one (detail spread along every
    direction) and a flat fill (no detail) all move away from the clean set. It is the SWD of
    Karras et al. (2018, "Progressive growing of GANs", 7×7 patches of Laplacian pyramid bands,
    random projections), without their per-set normalisation, which would hide a loss of contrast.

    How: the images' Laplacian band ``band`` (:func:`laplacian_band`; 0, the finest, by default;
    ``None`` takes the images themselves) is cut into patches (:func:`image_patches`: up to
    ``patches_per_image`` per image, only centres inside ``region`` if given, which is then the
    full-size mask; ``centre`` removes each patch's mean per channel so that colour, which PSNR
    already scores, does not count). The patches are projected on ``projections`` random unit
    directions (seeded, deterministic; with ``centre`` also mean-free, so none is spent on the
    removed means); along each, the 1-D 1-Wasserstein distance is the mean absolute difference of
    the sorted projections; the result is its mean over the directions, in [0, 1] pixel units
    (``order`` 2: the root mean square of both, the sliced 2-Wasserstein distance). Both sets are
    first cut to the same number of patches (a seeded random subset of the larger), so 4K particles
    are compared with K clean images on the same footing as K with K: the distance between two
    finite samples of one distribution shrinks with their size, and this keeps that floor fixed.
    A set against itself gives exactly 0; two disjoint sets of clean crops give the floor, about
    what a perfect sampler would score (``bench/patch_distance_scale.py`` measures it, and what a
    blur and ``A†y`` score, on the benchmark crops).

    Choices, measured on the 50 benchmark crops (25 against 25 as the floor): band 0 because the
    coarse content of two sets of crops differs far more than their fine detail does (raw centred
    patches: floor 0.0085, a σ = 1 blur 0.022, 2.5 ×; band 0: 0.0037 and 0.025, 6.7 ×); W1 rather
    than W2 because W2 is led by the few strongest edges (same blur ratio, but noise of σ = 0.05 at
    3.1 × the floor against 4.7 ×). Inpainting: pass the hole as ``region`` (over the whole image
    the three known quarters dilute a grey fill to 1.2 × the floor; in the hole it is 1.9 ×).
    Scoring particles: ``restored`` is all particles ``(N·K, C, H, W)``, ``reference`` the N clean
    images.
    """
    require(restored.ndim == 4 and reference.ndim == 4 and restored.shape[1:] == reference.shape[1:],
            f"images must be two batches (N, C, H, W) of one image shape; got {tuple(restored.shape)} and "
            f"{tuple(reference.shape)}")
    require(projections >= 1, f"projections must be at least 1, got {projections}")
    require(order in (1, 2), f"order must be 1 or 2, got {order}")
    if band is not None:
        if region is not None:
            region = region[::2**band, ::2**band]
        restored, reference = laplacian_band(restored, band), laplacian_band(reference, band)
    a = image_patches(restored, patch, patches_per_image, centre, region, seed).float()
    b = image_patches(reference, patch, patches_per_image, centre, region, seed).float()
    generator = torch.Generator().manual_seed(int(seed))
    count = min(a.shape[0], b.shape[0])
    if a.shape[0] > count:
        a = a[torch.randperm(a.shape[0], generator=generator)[:count]]
    if b.shape[0] > count:
        b = b[torch.randperm(b.shape[0], generator=generator)[:count]]
    c = restored.shape[1]
    directions = torch.randn(c, patch * patch, projections, generator=generator)
    if centre:
        directions = directions - directions.mean(1, keepdim=True)
    directions = directions.reshape(c * patch * patch, projections)
    directions = directions / directions.norm(dim=0, keepdim=True)
    gap = (a @ directions).T.sort(1).values - (b @ directions).T.sort(1).values  # (projections, count)
    gap = gap.double()
    return float(gap.abs().mean() if order == 1 else gap.square().mean().sqrt())
