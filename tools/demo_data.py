"""The demo model's training and held-out images: sklearn digits and natural photographs.

Photographs come from ``tools/photo_sources.py`` (scikit-image and three Debian wallpaper
packages, pinned versions). Each photograph is kept as a small pyramid — its short side resized
(antialiased) to each of ``PYRAMID_SHORT_SIDES`` that it can reach — so a crop shows anything from
most of a scene (short side 48) to texture (short side 384). Whole photographs are held out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import photo_sources
import torch
import torch.nn.functional as F

PYRAMID_SHORT_SIDES = (48, 64, 96, 128, 192, 256, 384)
HELDOUT_CROPS_PER_PHOTO = 12
HELDOUT_MIN_CROP_STD = 0.04  # held-out crops carry detail, so benchmarks on them are informative
HELDOUT_DIGITS = 300


def load_digits(size: int) -> tuple[torch.Tensor, np.ndarray]:
    """sklearn's digits as (N, 3, size, size) in [-1, 1] (white ink on black) and their labels."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    small = torch.from_numpy(digits.images).float().div(16.0).unsqueeze(1)
    big = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    return big.clamp(0, 1).repeat(1, 3, 1, 1) * 2 - 1, digits.target.astype(np.int64)


def split_digits(labels: np.ndarray, seed: int) -> np.ndarray:
    """Held-out digit indices: a seeded, class-stratified sample of ``HELDOUT_DIGITS``."""
    rng = np.random.default_rng(seed)
    per_class = HELDOUT_DIGITS // 10
    held = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)]
    return np.sort(np.concatenate(held))


def pyramid(pixels: np.ndarray) -> list[torch.Tensor]:
    """(H, W, 3) uint8 → levels (3, h, w) in [0, 1], short side at each reachable pyramid size."""
    from PIL import Image

    image = Image.fromarray(pixels)
    short = min(image.size)
    levels = []
    for side in PYRAMID_SHORT_SIDES:
        if side > short:
            break
        scale = side / short
        size = (max(side, round(image.size[0] * scale)), max(side, round(image.size[1] * scale)))
        resized = np.asarray(image.resize(size, Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
        levels.append(torch.from_numpy(resized).permute(2, 0, 1).contiguous().clamp(0, 1))
    return levels


def photo_pyramids(split: str, cache: Path) -> tuple[list[list[torch.Tensor]], list[str]]:
    """The pyramids of every photograph of ``split`` ("train" or "heldout") and their names."""
    roots = photo_sources.fetch_debian_packages(cache)
    chosen = [p for p in photo_sources.PHOTOS if p.split == split]
    return [pyramid(photo_sources.load_photo(p, roots)) for p in chosen], [p.name for p in chosen]


def random_crops(pyramids: list[list[torch.Tensor]], count: int, size: int, generator: torch.Generator,
                 flips: bool = True) -> torch.Tensor:
    """``count`` random size×size crops in [-1, 1]: photograph, then level, then position uniform."""
    crops = torch.empty(count, 3, size, size)
    for i in range(count):
        levels = pyramids[int(torch.randint(len(pyramids), (1,), generator=generator))]
        level = levels[int(torch.randint(len(levels), (1,), generator=generator))]
        top = int(torch.randint(level.shape[1] - size + 1, (1,), generator=generator))
        left = int(torch.randint(level.shape[2] - size + 1, (1,), generator=generator))
        crop = level[:, top:top + size, left:left + size]
        if flips and bool(torch.rand((), generator=generator) < 0.5):
            crop = crop.flip(-1)
        crops[i] = crop
    return crops * 2 - 1


def heldout_crops(pyramids: list[list[torch.Tensor]], size: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Detailed crops of the held-out photographs, interleaved (crop i comes from photograph
    i mod count), so any run of consecutive crops covers every kind of photograph."""
    generator = torch.Generator().manual_seed(seed + 1)
    crops, sources = [], []
    for _ in range(HELDOUT_CROPS_PER_PHOTO):
        for index, levels in enumerate(pyramids):
            while True:
                crop = random_crops([levels], 1, size, generator, flips=False)
                if float(crop.std()) / 2 > HELDOUT_MIN_CROP_STD:
                    break
            crops.append(crop)
            sources.append(index)
    return torch.cat(crops), np.asarray(sources, dtype=np.int64)
