"""The floor and scale of ``dwgf.metrics.patch_sliced_wasserstein`` on the benchmark crops (issue 26).

What a patch-distribution distance means depends on its floor (clean crops against other clean
crops: about what a perfect sampler would score) and its scale (what a blur, noise and ``A†y``
score). On ``bench/quality.py``'s 50 held-out benchmark crops (its Workbench loads them and makes
``A†y`` through the Degradation Operator node, σ_y 0.001, seed 0), this prints both for the default
(7×7 patches of Laplacian band 0, sliced 1-Wasserstein, 128 projections, 256 patches per crop) and,
beside it, for the sliced 2-Wasserstein distance, band 1 and the raw images (centred patches).
"paired": the degraded crops against their own clean crops (how ``bench/`` scores a method);
"unpaired": the degraded even crops against the clean odd ones (other content, as the floor). The
default column is the mean over seeds 0–3 ± half their range. Run:
``.venv/bin/python bench/patch_distance_scale.py`` (about a minute; prints, caches nothing).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality  # noqa: E402

SEEDS = (0, 1, 2, 3)
# column → (band, order); the first is the default
COLUMNS = {"band 0, W1 (default)": (0, 1), "band 0, W2": (0, 2), "band 1, W1": (1, 1), "raw, centred, W1": (None, 1)}
BLUR_SIGMAS = (0.5, 1.0, 2.0)
NOISE_SIGMAS = (0.02, 0.05)
PSEUDO_INVERSE_TASKS = ("SR ×4 avg-pool", "SR ×4 bicubic", "SR ×8 avg-pool", "box inpainting")


def as_batch(image: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE ``(N, H, W, 3)`` → ``(N, 3, H, W)`` float."""
    return image[..., :3].permute(0, 3, 1, 2).float().contiguous()


def main() -> None:
    torch.set_num_threads(1)
    bench = quality.Workbench()
    metrics = bench.metrics
    operators = quality.comfyui_env.pack_submodule("dwgf.operators")
    clean = as_batch(bench.photos[quality.IMAGE_INDICES])
    others = as_batch(bench.photos[[i for i in range(bench.photos.shape[0]) if i not in quality.IMAGE_INDICES]])
    even, odd = clean[0::2], clean[1::2]
    size = clean.shape[-1]

    def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
        return operators.GaussianBlur(size, size, 2 * int(3 * sigma + 0.5) + 1, sigma).forward(images)

    def noise(images: torch.Tensor, sigma: float) -> torch.Tensor:
        return (images + sigma * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)

    # (label, restored set, reference set, region)
    rows: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor | None]] = [
        ("floor: clean, itself", clean, clean, None),
        ("floor: clean even vs odd crops (25 / 25)", even, odd, None),
        ("floor: clean first vs second half (25 / 25)", clean[:25], clean[25:], None),
        ("floor: clean even crops vs all 50", even, clean, None),
        ("floor: clean 50 vs the other 34 held-out crops", clean, others, None),
    ]
    for sigma in BLUR_SIGMAS:
        rows.append((f"Gaussian blur σ {sigma:g}, paired", blur(clean, sigma), clean, None))
        rows.append((f"Gaussian blur σ {sigma:g}, unpaired", blur(even, sigma), odd, None))
    for sigma in NOISE_SIGMAS:
        rows.append((f"noise σ {sigma:g}, paired", noise(clean, sigma), clean, None))
    for task in PSEUDO_INVERSE_TASKS:
        problem = bench.problem(task, quality.IMAGE_INDICES)
        pseudo_inverse = as_batch(problem.pseudo_inverse)
        rows.append((f"A†y {task}, paired", pseudo_inverse, clean, None))
        rows.append((f"A†y {task}, unpaired", pseudo_inverse[0::2], odd, None))
        operator = problem.degradation.operator
        if hasattr(operator, "known_mask"):
            hole = 1.0 - operator.known_mask()[0, 0]
            rows.append(("floor in the hole: clean even vs odd crops", even, odd, hole))
            rows.append((f"A†y {task}, paired, patches in the hole", pseudo_inverse, clean, hole))

    print("| set against clean | " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    timings: list[float] = []
    for label, restored, reference, region in rows:
        cells = []
        for column, (band, order) in COLUMNS.items():
            options = {"band": band, "order": order, "region": region}
            if column != next(iter(COLUMNS)):
                cells.append(f"{metrics.patch_sliced_wasserstein(restored, reference, **options):.4f}")
                continue
            values = []
            for seed in SEEDS:
                started = time.perf_counter()
                values.append(metrics.patch_sliced_wasserstein(restored, reference, seed=seed, **options))
                if restored.shape[0] == reference.shape[0] == len(quality.IMAGE_INDICES):
                    timings.append(time.perf_counter() - started)
            cells.append(f"{statistics.fmean(values):.4f} ± {(max(values) - min(values)) / 2:.4f}")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    print(f"\ndefault settings, 50 crops against 50: {statistics.median(timings):.3f} s per call "
          f"(median of {len(timings)}, one thread, torch {torch.__version__})")


if __name__ == "__main__":
    main()
