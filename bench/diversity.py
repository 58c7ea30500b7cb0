"""Diversity, calibration and sharpness (issue 16): DWGF with and without repulsion, PSLD and the baselines.

On the demo model's held-out crops, box inpainting and ×8 super-resolution, every method of
``bench/quality.py`` draws four samples per crop through the real ComfyUI (as that benchmark runs
them) and is scored by ``dwgf.metrics``: PSNR of the particle mean and of the particles, the per-pixel spread across
particles (inside the hole for inpainting), the mean pairwise distance, the correlation between the
spread and the particle mean's error, how often the true pixel lies within the particles' range, and
the spectral sharpness of the mean and of the particles relative to the clean image.

The repulsion weight is chosen on the settings crops 0–6 (``CHOICE_IMAGES``, never the benchmark
crops): the largest of ``CANDIDATE_WEIGHTS`` whose particle-mean PSNR is within 0.3 dB of the run
without it. Then every method runs on ``IMAGES``. PSLD draws its four samples per crop as four
independent runs of the sampler on the same measurement; the stock KSampler (SetLatentNoiseMask for
inpainting, img2img otherwise) and measurement-only ``D(E(A†y))`` as four seeds (the latter's agree:
ComfyUI 0.3.75's VAEEncode returns the same latent for every seed); ``A†y`` is deterministic. Where
the four samples are identical the spread is 0 and the calibration undefined ("–").

Results: ``bench/results/diversity.json`` (cache; a rerun skips finished jobs), ``diversity.md`` and
``workflows/images/diversity_<task>.png`` (clean, measurement, four particles, spread, error).
Run: ``.venv/bin/python bench/diversity.py [--workers 2]``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality  # noqa: E402

RESULTS = quality.RESULTS
CACHE = RESULTS / "diversity.json"
REPORT = RESULTS / "diversity.md"
PICTURES = quality.REPO / "workflows" / "images"

TASKS = ("box inpainting", "SR ×8 avg-pool")
# quality.py's methods that are not DWGF or PSLD: four seeds each (A†y gives one image four times)
SEEDED_METHODS = ("KSampler / img2img", "measurement-only", "A†y")
IMAGES = quality.IMAGE_INDICES[:20]
CHOICE_IMAGES = list(range(7))
CANDIDATE_WEIGHTS = (0.002, 0.008, 0.03, 0.12)  # 0.25 already cost 3 dB (README)
SCHEDULE = "high noise"
STEPS = 50
SAMPLES = 4
PSLD_STEPS = quality.PSLD_STEPS
PICTURE_POSITION = 3  # crop 17 (the cups), as in the quality grid
PSLD_IMAGES = 10  # PSLD's four runs per crop cost ~4× DWGF's: the first 10 crops
if os.environ.get("DWGF_DIVERSITY_SMOKE"):  # a few steps on a few crops, results under /tmp: the script runs
    RESULTS = Path("/tmp/diversity-smoke")
    RESULTS.mkdir(exist_ok=True)
    CACHE, REPORT, PICTURES = RESULTS / "diversity.json", RESULTS / "diversity.md", RESULTS
    IMAGES, CHOICE_IMAGES, STEPS, PSLD_STEPS = IMAGES[:4], CHOICE_IMAGES[:2], 3, 3


def picture_path(task: str) -> Path:
    return PICTURES / f"diversity_{re.sub('_+', '_', quality._safe_name(task).lower())}.png"


def run_sampler(method: str, task: str, images: list[int], weight: float) -> tuple[Any, torch.Tensor]:
    """``(problem, particles (n, SAMPLES, 3, H, W) in [0, 1])`` for DWGF with ``weight``, PSLD, or one
    of ``SEEDED_METHODS`` run with seeds 0 … SAMPLES − 1."""
    bench = quality._BENCH
    problem = bench.problem(task, images)
    if method in SEEDED_METHODS:
        runner = bench.baselines()[method]
        samples = [runner(problem, seed).images[..., :3] for seed in range(SAMPLES)]
        return problem, torch.stack(samples, 1).permute(0, 1, 4, 2, 3).float().clamp(0, 1)
    if method == "DWGF":  # the benchmark's own DWGF run (SAMPLES particles), with the repulsion
        settings = {**quality.DWGF_SETTINGS, "particles": SAMPLES, "repulsion": weight, "repulsion_schedule": SCHEDULE}
        restored = bench.dwgf(problem, 0, STEPS, settings=settings)
    else:  # PSLD: SAMPLES independent runs per measurement, in one batch
        omega, gamma = bench.psld_core.reference_weights(problem.degradation.operator)
        config = bench.psld_core.PSLDConfig(particles=problem.count * SAMPLES, steps=PSLD_STEPS, seed=0,
                                            omega=omega, gamma=gamma)
        levels = bench.psld_core.psld_levels(bench.adapter.model_alphas_cumprod(bench.model), config)

        def solve(denoiser: Any, autoencoder: Any, shape: tuple, device: torch.device) -> torch.Tensor:
            y = problem.y.repeat_interleave(SAMPLES, dim=0).to(device)
            return bench.psld_core.run_psld(denoiser, autoencoder, config, shape, problem.degradation.operator, y,
                                            levels=levels, device=device)

        restored = bench._core_run(problem, 0, SAMPLES, levels, solve, differentiable=True)
    particles = restored.images[..., :3].permute(0, 3, 1, 2).float().clamp(0, 1)
    return problem, particles.view(problem.count, SAMPLES, *particles.shape[1:])


def score(problem: Any, particles: torch.Tensor) -> dict[str, Any]:
    metrics = quality._BENCH.metrics
    clean = problem.clean[..., :3].permute(0, 3, 1, 2).float()
    mean = particles.mean(1)
    operator = problem.degradation.operator
    region = 1.0 - operator.known_mask()[0, 0] if hasattr(operator, "known_mask") else None
    k = particles.shape[1]
    spread = metrics.particle_spread(particles, region)
    # identical samples (A†y): a spread map of zeros says nothing, so its calibration is undefined
    calibrated = bool((metrics.particle_spread(particles) > 0).all())
    return {
        "psnr_mean": metrics.psnr(mean, clean).tolist(),
        "psnr_particles": metrics.psnr(particles.flatten(0, 1), clean.repeat_interleave(k, 0)).view(-1, k)
        .mean(1).tolist(),
        "spread": spread.tolist(),
        "pairwise_distance": metrics.mean_pairwise_distance(particles).tolist(),
        "spread_error_correlation": metrics.spread_error_correlation(particles, clean).tolist() if calibrated
        else None,
        "range_coverage": metrics.range_coverage(particles, clean).tolist() if calibrated else None,
        "sharpness_mean": metrics.sharpness(mean, clean).tolist(),
        "sharpness_particles": metrics.sharpness(particles.flatten(0, 1), clean.repeat_interleave(k, 0))
        .view(-1, k).mean(1).tolist(),
    }


def run_job(method: str, task: str, images: list[int], weight: float, keep_picture: bool) -> dict[str, Any]:
    problem, particles = run_sampler(method, task, images, weight)
    result = {"method": method, "task": task, "weight": weight, "indices": images, **score(problem, particles)}
    if keep_picture and IMAGES[PICTURE_POSITION] in images:
        position = images.index(IMAGES[PICTURE_POSITION])
        result["picture"] = {"clean": problem.clean[position, ..., :3].tolist(),
                             "measurement": problem.pseudo_inverse[position, ..., :3].tolist(),
                             "particles": particles[position].permute(0, 2, 3, 1).tolist()}
    return result


def job_key(method: str, task: str, images: list[int], weight: float) -> str:
    name = (f"PSLD-{PSLD_STEPS}" if method == "PSLD" else f"DWGF-{STEPS} repulsion {weight:g}" if method == "DWGF"
            else method)
    crops = "choice" if images == CHOICE_IMAGES else "bench"  # PSLD's bench runs use the first PSLD_IMAGES
    return f"{crops}|{task}|{name}"


def run_all(jobs: list[tuple[str, str, list[int], float]], workers: int, cache: dict[str, Any]) -> None:
    todo = [job for job in jobs if job_key(*job) not in cache]
    if not todo:
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=quality._start_worker, initargs=(1,)) as pool:
        futures = {pool.submit(run_job, *job, job[2] != CHOICE_IMAGES): job for job in todo}
        for future in as_completed(futures):
            key = job_key(*futures[future])
            cache[key] = future.result()
            CACHE.write_text(json.dumps({"runs": cache}))
            print(f"{key}: PSNR {statistics.fmean(cache[key]['psnr_mean']):.2f} dB, spread "
                  f"{statistics.fmean(cache[key]['spread']):.4f}", flush=True)


def chosen_weight(cache: dict[str, Any], tasks: tuple[str, ...] = TASKS) -> float:
    """The largest candidate within 0.3 dB of no repulsion on the choice crops, on every one of
    ``tasks`` (0 if none): over all tasks, the one weight a default could have; per task, how far
    that task alone would go."""
    def psnr(task: str, weight: float) -> float:
        return statistics.fmean(cache[job_key("DWGF", task, CHOICE_IMAGES, weight)]["psnr_mean"])

    ok = [w for w in CANDIDATE_WEIGHTS if all(psnr(t, w) >= psnr(t, 0.0) - 0.3 for t in tasks)]
    return max(ok, default=0.0)


METRICS = (("psnr_mean", "PSNR mean", 2), ("psnr_particles", "PSNR particles", 2), ("spread", "spread", 4),
           ("pairwise_distance", "pairwise distance", 4), ("spread_error_correlation", "spread–error corr.", 3),
           ("range_coverage", "truth in range", 3), ("sharpness_mean", "sharpness mean", 3),
           ("sharpness_particles", "sharpness particles", 3))


METHOD_ORDER = ("DWGF", "PSLD", *SEEDED_METHODS)


def table(cache: dict[str, Any], crops: str, subset: list[int] | None = None) -> list[str]:
    """One row per run of ``crops`` ("choice" or "bench"), means over its crops or over ``subset``;
    rows by task, then DWGF (by weight), PSLD and the seeded methods."""
    lines = ["| task | method | crops | " + " | ".join(label for _, label, _ in METRICS) + " |",
             "|---|---|---|" + "---|" * len(METRICS)]
    runs = sorted(((key, run) for key, run in cache.items() if key.startswith(crops + "|") and run["task"] in TASKS),
                  key=lambda item: (TASKS.index(item[1]["task"]), METHOD_ORDER.index(item[1]["method"]),
                                    item[1]["weight"]))
    for key, run in runs:
        keep = [i for i, index in enumerate(run["indices"]) if subset is None or index in subset]
        if not keep:
            continue
        cells = ["–" if run[m] is None else f"{statistics.fmean(run[m][i] for i in keep):.{digits}f}"
                 for m, _, digits in METRICS]
        lines.append(f"| {run['task']} | {key.split('|')[2]} | {len(keep)} | " + " | ".join(cells) + " |")
    return lines


def write_report(cache: dict[str, Any], weight: float) -> None:
    lines = ["# Diversity, calibration and sharpness (bench/diversity.py)", "",
             f"Demo model, {SAMPLES} samples per crop, seed 0. DWGF: {STEPS} iterations, the reference weights, "
             f"with the repulsion ({SCHEDULE} schedule) at the weights below; PSLD: {PSLD_STEPS} DDIM steps, "
             f"{SAMPLES} independent runs per crop on the first {PSLD_IMAGES} crops (DWGF on all); the stock "
             f"KSampler (SetLatentNoiseMask for inpainting, img2img at denoise {quality.IMG2IMG_DENOISE} otherwise, "
             f"{quality.STOCK_STEPS} euler steps) and measurement-only D(E(A†y)) with seeds 0–{SAMPLES - 1}; A†y is "
             "one deterministic image (spread 0, calibration undefined). Spread: mean "
             "per-pixel standard deviation across samples "
             "([0, 1] image units; inside the hole for box inpainting). Spread–error corr.: Pearson correlation "
             "over pixels between the spread and the particle mean's absolute error. Truth in range: share of "
             f"pixel values between the samples' minimum and maximum ({SAMPLES - 1}/{SAMPLES + 1} = "
             f"{(SAMPLES - 1) / (SAMPLES + 1):.2f} for calibrated samples). Sharpness: high-frequency energy "
             "(upper half of the radially averaged power spectrum) relative to the clean image's.", "",
             f"## Choosing the weight: crops {CHOICE_IMAGES[0]}–{CHOICE_IMAGES[-1]}", "", *table(cache, "choice"), "",
             f"Chosen: repulsion {weight:g} (the largest candidate within 0.3 dB of none on these crops, on "
             "every task); the benchmark also runs the next larger candidate and each task's own largest "
             "candidate within 0.3 dB (" + ", ".join(f"{t}: {chosen_weight(cache, (t,)):g}" for t in TASKS) + ").",
             "",
             f"## Benchmark: crops {IMAGES[0]}–{IMAGES[-1]}", "", *table(cache, "bench"), "",
             f"### The same on the first {PSLD_IMAGES} crops (those PSLD ran on)", "",
             *table(cache, "bench", IMAGES[:PSLD_IMAGES]), ""]
    REPORT.write_text("\n".join(lines) + "\n")


def draw_picture(cache: dict[str, Any], task: str) -> None:
    """Rows: DWGF without repulsion, with each weight the benchmark ran, PSLD, the stock KSampler;
    columns: clean, A†y, four samples, spread, error."""
    weights = sorted(run["weight"] for key, run in cache.items()
                     if key.startswith("bench|") and run["method"] == "DWGF" and run["task"] == task)
    rows = [(f"DWGF-{STEPS}" + (f" + repulsion {w:g}" if w else ""), job_key("DWGF", task, IMAGES, w))
            for w in weights]
    rows.append((f"PSLD-{PSLD_STEPS}", job_key("PSLD", task, IMAGES[:PSLD_IMAGES], 0.0)))
    stock = "KSampler + noise mask" if "inpainting" in task else "img2img"
    rows.append((f"{stock} (4 seeds)", job_key("KSampler / img2img", task, IMAGES, 0.0)))
    rows = [(label, cache[key]["picture"]) for label, key in rows if key in cache and "picture" in cache[key]]
    if not rows:
        return
    cell, zoom, label_w = 32 * 4, 4, 210
    heads = ["clean", "A†y", *(f"sample {i + 1}" for i in range(SAMPLES)), "spread (abs.)", "|mean − clean|"]
    canvas = Image.new("RGB", (label_w + cell * len(heads), 24 + cell * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 13)
    except OSError:
        font = ImageFont.load_default()
    for c, head in enumerate(heads):
        draw.text((label_w + c * cell + 4, 4), head, fill="black", font=font)
    for r, (label, picture) in enumerate(rows):
        clean = np.asarray(picture["clean"], dtype=np.float32)
        particles = np.asarray(picture["particles"], dtype=np.float32)
        spread = particles.std(0).mean(-1, keepdims=True).repeat(3, -1) * 4  # ×4: 0.25 std = white
        error = np.abs(particles.mean(0) - clean).mean(-1, keepdims=True).repeat(3, -1) * 4
        tiles = [clean, np.asarray(picture["measurement"], dtype=np.float32), *particles, spread, error]
        y = 24 + r * cell
        draw.text((6, y + cell // 2 - 8), label, fill="black", font=font)
        for c, tile in enumerate(tiles):
            image = Image.fromarray((np.clip(tile, 0, 1) * 255).round().astype(np.uint8))
            canvas.paste(image.resize((32 * zoom, 32 * zoom), Image.NEAREST), (label_w + c * cell, y))
    picture = picture_path(task)
    picture.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(picture)


def main() -> None:
    options = quality.cached_bench_options(__doc__.splitlines()[0])
    cache = quality.load_cache(CACHE)
    if not options.report_only:
        choice = [("DWGF", task, CHOICE_IMAGES, w) for task in TASKS for w in (0.0, *CANDIDATE_WEIGHTS)]
        run_all(choice, options.workers, cache)
    weight = chosen_weight(cache)
    if not options.report_only:
        weights = {0.0, weight, next((w for w in CANDIDATE_WEIGHTS if w > weight), weight)}
        bench = [("DWGF", task, IMAGES, w) for task in TASKS
                 for w in sorted(weights | {chosen_weight(cache, (task,))})]
        bench += [("PSLD", task, IMAGES[:PSLD_IMAGES], 0.0) for task in TASKS]
        bench += [(method, task, IMAGES, 0.0) for task in TASKS for method in SEEDED_METHODS]
        run_all(bench, options.workers, cache)
    write_report(cache, weight)
    for task in TASKS:
        draw_picture(cache, task)
    print(f"wrote {REPORT} and {', '.join(str(picture_path(task)) for task in TASKS)}")


if __name__ == "__main__":
    main()
