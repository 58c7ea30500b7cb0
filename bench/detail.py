"""Detail a person can see (issue 26): perception against distortion, with and without ``detail``.

On the demo model's 50 held-out benchmark crops (``quality.IMAGE_INDICES``; none used to choose
settings: the finish's settings were chosen on crops 0–6), for box inpainting, ×4 bicubic and ×8
average-pool super-resolution, each method draws its samples through the real ComfyUI as
``bench/quality.py`` runs it (same measurements: σ_y 0.001, noise by place in the batch), and is
scored by ``dwgf.metrics``:

* PSNR of the mean of a crop's samples and of each sample (the distortion side);
* **sharpness** of each sample: its high-frequency power over the clean crop's (1 = as much fine
  detail as the truth);
* **patch distance**: ``patch_sliced_wasserstein`` between all samples' 7×7 detail patches (Laplacian
  band 0; inside the hole for inpainting) and the clean crops' (the perception side). Its floor is
  the 50 clean crops against 34 other clean held-out crops (what a perfect sampler would score, as
  near as unpaired crops allow) and its scale a Gaussian blur (σ 1) of the clean crops;
* the measurement residual ``‖A(x) − y‖/√m`` per sample ([−1, 1] scale; σ_y is 0.001), and, for
  methods with several samples, the share of pixels whose truth lies within the samples' range
  (3/5 = 0.60 for four exchangeable samples).

Methods: ``A†y``; DWGF's **recommended** preset (50 iterations, ``ae_every`` 4, 4 particles), the
same with the ``detail`` finish at ``DETAIL_AMOUNTS`` and with the finish's data steps off (the
prior alone around each particle: the "stock KSampler at low denoise" candidate), all four from one
flow run per task (the finish runs on the flow's particles exactly as ``run_dwgf`` runs it); the
stock KSampler (SetLatentNoiseMask, hole pre-filled with the known pixels' mean colour) or img2img
(denoise 0.5), 4 seeds; PSLD with 100 DDIM steps (one sample per crop); LanPaint 2.1 on box
inpainting when ``--lanpaint PATH`` names a checkout (4 seeds; wiring of ``bench/lanpaint.py``).
On the first ``SUBSET`` crops only (their cost): PSLD at its reference 1000 steps and DWGF's
reference preset (998 iterations); every method is also scored on that subset, paired.

Results: ``bench/results/detail.json`` (cache: a rerun skips finished jobs), ``detail.md`` and
``workflows/images/detail_rows.png`` (per task: clean, ``A†y``, two particles and the mean of the
recommended run and of the detail run, the detail run's spread). Run:
``nice .venv/bin/python bench/detail.py [--workers 2] [--lanpaint /tmp/lanpaint] [--report-only]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality  # noqa: E402

RESULTS = quality.RESULTS
CACHE = RESULTS / "detail.json"
REPORT = RESULTS / "detail.md"
PICTURE = quality.REPO / "workflows" / "images" / "detail_rows.png"

TASKS = ("box inpainting", "SR ×4 bicubic", "SR ×8 avg-pool")
IMAGES = quality.IMAGE_INDICES
SUBSET = IMAGES[:8]
OTHER_CLEAN = [i for i in range(84) if i not in IMAGES]  # the other held-out crops: the distance's floor
SAMPLES = 4
DETAIL_AMOUNTS = (0.2, 0.5)
PRIOR_ONLY = "DWGF recommended + finish without data steps"
PICTURE_POSITION = 3  # crop 17 (the cups), as the other grids
LANPAINT_PATH: Path | None = None


def detail_name(amount: float) -> str:
    return f"DWGF recommended + detail {amount:g}"


def recommended_config(seed: int = 0, **extra: Any) -> Any:
    flow = quality._BENCH.flow
    preset = quality.comfyui_env.pack_submodule("dwgf.presets").PRESETS["recommended"]
    return flow.DWGFConfig(steps=preset.steps, ae_every=preset.ae_every, seed=seed, **quality.DWGF_SETTINGS, **extra)


# ---------------------------------------------------------------------------------------------
# Running the methods (in a worker: quality._start_worker made quality._BENCH)
# ---------------------------------------------------------------------------------------------
def images_of(restored: Any, count: int) -> torch.Tensor:
    """A method's output as ``(count, K, 3, H, W)`` in [0, 1]."""
    images = restored.images[..., :3].permute(0, 3, 1, 2).float().clamp(0, 1)
    return images.view(count, -1, *images.shape[1:])


def run_dwgf_family(problem: Any) -> dict[str, tuple[torch.Tensor, float]]:
    """The recommended run and its finishes from one flow: ``{method: (samples, seconds per image)}``."""
    bench = quality._BENCH
    flow = bench.flow
    detail = quality.comfyui_env.pack_submodule("dwgf.detail")
    config = recommended_config()
    levels = flow.dwgf_levels(bench.adapter.model_alphas_cumprod(bench.model), config)
    latents: dict[str, torch.Tensor] = {}
    seconds: dict[str, float] = {}

    def solve(denoiser: Any, autoencoder: Any, shape: tuple, device: torch.device) -> torch.Tensor:
        started = time.perf_counter()
        z = flow.run_dwgf(denoiser, autoencoder, config, shape, problem.degradation.operator, problem.y.to(device),
                          levels=levels, device=device, groups=problem.count)
        seconds["DWGF recommended"] = time.perf_counter() - started
        latents["DWGF recommended"] = z
        y = problem.y.repeat_interleave(config.particles, 0).to(device)
        for amount in DETAIL_AMOUNTS:
            started = time.perf_counter()
            finished = flow.finish_with_detail(denoiser, autoencoder, _with_detail(config, amount), z,
                                               problem.degradation.operator, y)
            latents[detail_name(amount)] = finished
            seconds[detail_name(amount)] = seconds["DWGF recommended"] + time.perf_counter() - started
        started = time.perf_counter()
        prior_only = detail.DetailSettings(amount=DETAIL_AMOUNTS[0], guidance_steps=0, polish_steps=0)
        latents[PRIOR_ONLY] = detail.add_detail(denoiser, autoencoder, z, prior_only, config.seed)
        seconds[PRIOR_ONLY] = seconds["DWGF recommended"] + time.perf_counter() - started
        return z

    bench._core_run(problem, 0, config.particles, levels, solve, differentiable=False)
    out = {}
    for name, z in latents.items():
        decoded = bench.adapter.decode_latents(bench.vae, bench.model.model.process_latent_out(z.detach().cpu()))
        out[name] = (images_of(quality.Restored(decoded, config.particles, 0.0, {}), problem.count),
                     seconds[name] / problem.count)
    return out


def _with_detail(config: Any, amount: float) -> Any:
    return dataclasses.replace(config, detail=amount)


def run_method(method: str, problem: Any) -> tuple[torch.Tensor, float]:
    """One non-DWGF-family method: ``(samples, seconds per image)``."""
    bench = quality._BENCH
    started = time.perf_counter()
    if method == "A†y":
        samples = images_of(bench.pseudo_inverse(problem, 0), problem.count)
    elif method.startswith("PSLD-"):
        samples = images_of(bench.psld(problem, 0, int(method.split("-")[1])), problem.count)
    elif method == "DWGF reference":
        samples = images_of(bench.dwgf(problem, 0, 998), problem.count)  # METHOD.md's run: ae_every 1
    elif method == quality.LANPAINT:
        import lanpaint as peer  # bench/lanpaint.py; the worker loaded the checkout

        samples = torch.cat([images_of(peer.restore(bench, problem, seed)[quality.LANPAINT], problem.count)
                             for seed in range(SAMPLES)], 1)
    else:  # the stock KSampler / img2img, one seed per sample
        samples = torch.cat([images_of(bench.stock(problem, seed), problem.count) for seed in range(SAMPLES)], 1)
    return samples, (time.perf_counter() - started) / problem.count


def hole_of(problem: Any) -> torch.Tensor | None:
    operator = problem.degradation.operator
    return 1.0 - operator.known_mask()[0, 0] if hasattr(operator, "known_mask") else None


def score(problem: Any, samples: torch.Tensor, seconds: float) -> dict[str, Any]:
    """Per-crop lists and the set-level patch distances (all crops, and ``SUBSET`` where covered)."""
    metrics = quality._BENCH.metrics
    clean = problem.clean[..., :3].permute(0, 3, 1, 2).float()
    n, k = samples.shape[:2]
    flat = samples.flatten(0, 1)
    per_sample_clean = clean.repeat_interleave(k, 0)
    operator = problem.degradation.operator
    with torch.inference_mode(False):
        residual = (operator.forward(flat * 2 - 1) - problem.y.repeat_interleave(k, 0)).flatten(1)
    residual = (residual.norm(dim=1) / residual.shape[1] ** 0.5).view(n, k).mean(1)
    result: dict[str, Any] = {
        "psnr_mean": metrics.psnr(samples.mean(1), clean).tolist(),
        "psnr_samples": metrics.psnr(flat, per_sample_clean).view(n, k).mean(1).tolist(),
        "sharpness_samples": metrics.particle_sharpness(samples, clean).mean(1).tolist(),
        "residual": residual.tolist(),
        "coverage": metrics.range_coverage(samples, clean).tolist() if k > 1 else None,
        "samples": k,
        "seconds_per_image": seconds,
        "patch_distance": metrics.patch_sliced_wasserstein(flat, clean, region=hole_of(problem)),
    }
    return result


def run_job(method: str, task: str, images: list[int]) -> dict[str, dict[str, Any]]:
    """``{method: result}`` (the DWGF family's job returns all four of its methods)."""
    problem = quality._BENCH.problem(task, images)
    if method == "DWGF recommended":
        runs = run_dwgf_family(problem)
    else:
        runs = {method: run_method(method, problem)}
    results = {}
    for name, (samples, seconds) in runs.items():
        result = {"method": name, "task": task, "indices": images, **score(problem, samples, seconds)}
        if images == IMAGES:  # the same, paired on the subset the costly methods ran on
            keep = [images.index(i) for i in SUBSET]
            sub = quality.Problem(task, problem.clean[keep], problem.degradation, problem.measurement[keep],
                                  problem.pseudo_inverse[keep], problem.y[keep])
            result["subset_patch_distance"] = score(sub, samples[keep], seconds)["patch_distance"]
        if IMAGES[PICTURE_POSITION] in images:
            position = images.index(IMAGES[PICTURE_POSITION])
            result["picture"] = {"clean": problem.clean[position, ..., :3].tolist(),
                                 "measurement": problem.pseudo_inverse[position, ..., :3].tolist(),
                                 "samples": samples[position].permute(0, 2, 3, 1).tolist()}
        results[name] = result
    return results


def job_key(method: str, task: str) -> str:
    return f"{task}|{method}"


def jobs(lanpaint: bool) -> list[tuple[str, str, list[int]]]:
    """Cheapest first, so an interrupted run has the headline rows; the reference runs last."""
    todo = [("DWGF recommended", task, IMAGES) for task in TASKS]
    todo += [(method, task, IMAGES) for task in TASKS for method in ("A†y", "KSampler / img2img")]
    if lanpaint:
        todo += [(quality.LANPAINT, task, IMAGES) for task in TASKS if "inpainting" in task]
    todo += [("PSLD-100", task, IMAGES) for task in TASKS]
    todo += [(method, task, SUBSET) for method in ("PSLD-1000", "DWGF reference") for task in TASKS]
    return todo


def start_worker(lanpaint: Path | None) -> None:
    quality._start_worker(1, "epsilon", lanpaint)


def run_all(todo: list[tuple[str, str, list[int]]], workers: int, cache: dict[str, Any]) -> None:
    todo = [job for job in todo if job_key(job[0], job[1]) not in cache]
    if not todo:
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=start_worker,
                             initargs=(LANPAINT_PATH,)) as pool:
        futures = {pool.submit(run_job, *job): job for job in todo}
        for future in as_completed(futures):
            for name, result in future.result().items():
                cache[job_key(name, result["task"])] = result
                print(f"{result['task']} | {name}: PSNR mean {statistics.fmean(result['psnr_mean']):.2f}, "
                      f"sharpness {statistics.fmean(result['sharpness_samples']):.3f}, patch distance "
                      f"{result['patch_distance']:.4f}", flush=True)
            CACHE.write_text(json.dumps({"runs": cache}))


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def floors() -> dict[str, dict[str, float]]:
    """Per task: the patch distance's floor (clean against other clean crops) and scale (a σ 1 blur),
    over all crops and over the subset, with the task's region."""
    quality._start_worker(1)
    bench = quality._BENCH
    metrics = bench.metrics
    operators = quality.comfyui_env.pack_submodule("dwgf.operators")

    def as_batch(indices: list[int]) -> torch.Tensor:
        return bench.photos[indices][..., :3].permute(0, 3, 1, 2).float().contiguous()

    clean, others = as_batch(IMAGES), as_batch(OTHER_CLEAN)
    blurred = operators.GaussianBlur(quality.SIZE, quality.SIZE, 7, 1.0).forward(clean)
    out = {}
    for task in TASKS:
        region = hole_of(bench.problem(task, IMAGES[:1]))
        out[task] = {
            "floor": metrics.patch_sliced_wasserstein(clean, others, region=region),
            "floor_subset": metrics.patch_sliced_wasserstein(clean[:len(SUBSET)], others[:len(SUBSET)], region=region),
            "blur": metrics.patch_sliced_wasserstein(blurred, clean, region=region),
            "sharpness_blur": float(metrics.sharpness(blurred, clean).median()),
        }
    return out


ROW_ORDER = ("A†y", "DWGF recommended", PRIOR_ONLY, *(detail_name(a) for a in DETAIL_AMOUNTS), "DWGF reference",
             "PSLD-100", "PSLD-1000", "KSampler / img2img", quality.LANPAINT)


def _mean(values: list[float] | None, digits: int) -> str:
    return "–" if not values else f"{statistics.fmean(values):.{digits}f}"


def sharpness_of(run: dict[str, Any]) -> float:
    """The median over crops of the samples' sharpness: a crop with almost no fine detail of its own
    (sky, a wall) turns a few stray pixels into a ratio of 5–10, which would lead a mean."""
    return statistics.median(run["sharpness_samples"])


def table(cache: dict[str, Any], scale: dict[str, dict[str, float]]) -> list[str]:
    lines = ["| task | method | crops × samples | PSNR mean | PSNR samples | sharpness samples (median) | "
             f"patch distance (all crops) | patch distance (crops {SUBSET[0]}–{SUBSET[-1]}) | residual RMS | "
             "truth in range | s / image |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for task in TASKS:
        floor = scale[task]
        lines.append(f"| {task} | *floor: clean vs other clean crops* | | | | 1 | {floor['floor']:.4f} | "
                     f"{floor['floor_subset']:.4f} | | | |")
        lines.append(f"| {task} | *scale: clean blurred (σ 1)* | | | | {floor['sharpness_blur']:.3f} | "
                     f"{floor['blur']:.4f} | | | | |")
        for method in ROW_ORDER:
            run = cache.get(job_key(method, task))
            if run is None:
                continue
            subset = run.get("subset_patch_distance", run["patch_distance"] if run["indices"] == SUBSET else None)
            whole = f"{run['patch_distance']:.4f}" if run["indices"] == IMAGES else "–"
            lines.append(
                f"| {task} | {method} | {len(run['indices'])} × {run['samples']} | {_mean(run['psnr_mean'], 2)} | "
                f"{_mean(run['psnr_samples'], 2)} | {sharpness_of(run):.3f} | {whole} | "
                f"{'–' if subset is None else f'{subset:.4f}'} | {_mean(run['residual'], 4)} | "
                f"{_mean(run['coverage'], 3)} | {run['seconds_per_image']:.2f} |")
    return lines


def targets(cache: dict[str, Any]) -> list[str]:
    """Issue 26's item 3 per task, for each detail amount: met or by how much it misses."""
    lines = ["| task | detail | sharpness ≥ 0.9 | patch distance ≤ ½ recommended's | ≤ PSLD-1000's (crops "
             f"{SUBSET[0]}–{SUBSET[-1]}) | mean PSNR within 0.5 dB of recommended | residual vs recommended |",
             "|---|---|---|---|---|---|---|"]
    for task in TASKS:
        base = cache.get(job_key("DWGF recommended", task))
        psld = cache.get(job_key("PSLD-1000", task))
        for amount in DETAIL_AMOUNTS:
            run = cache.get(job_key(detail_name(amount), task))
            if run is None or base is None:
                continue
            sharp = sharpness_of(run)
            ratio = run["patch_distance"] / base["patch_distance"]
            drop = statistics.fmean(run["psnr_mean"]) - statistics.fmean(base["psnr_mean"])
            against_psld = "–" if psld is None else (
                f"{'yes' if run['subset_patch_distance'] <= psld['patch_distance'] else 'no'} "
                f"({run['subset_patch_distance']:.4f} vs {psld['patch_distance']:.4f})")
            lines.append(
                f"| {task} | {amount:g} | {'yes' if sharp >= 0.9 else 'no'} ({sharp:.3f}) | "
                f"{'yes' if ratio <= 0.5 else 'no'} ({ratio:.2f}×) | {against_psld} | "
                f"{'yes' if drop >= -0.5 else 'no'} ({drop:+.2f} dB) | "
                f"{statistics.fmean(run['residual']):.4f} vs {statistics.fmean(base['residual']):.4f} |")
    return lines


def write_report(cache: dict[str, Any], scale: dict[str, dict[str, float]]) -> None:
    lines = [
        "# Detail: perception against distortion (bench/detail.py)", "",
        f"Demo model (epsilon prior), {len(IMAGES)} held-out crops ({IMAGES[0]}–{IMAGES[-1]}), seed 0, 32×32. "
        "Each method's samples: DWGF's particles (4), the stock KSampler / img2img and LanPaint with seeds "
        f"0–{SAMPLES - 1}, PSLD one run per crop, A†y one image. DWGF recommended: 50 iterations, ae_every 4, "
        "METHOD.md's weights; '+ detail a': the same particles finished by dwgf.detail (t = 175, 10 ancestral "
        "steps, 2 Adam data steps of learning rate a each, 10 polishing steps of 0.02); '+ finish without data "
        "steps': the same finish with the data steps off (the prior alone around each particle). DWGF reference "
        f"and PSLD-1000 ran on crops {SUBSET[0]}–{SUBSET[-1]} only.", "",
        "Patch distance: sliced 1-Wasserstein distance between the 7×7 patches of the finest Laplacian band of "
        "all samples and of the clean crops (dwgf.metrics.patch_sliced_wasserstein; inside the hole for "
        "inpainting; lower = detail distributed like a photograph's). Sharpness: high-frequency power of each "
        "sample over its clean crop's (1 = as much fine detail), the median over crops of the samples' mean "
        "(a crop with almost no detail of its own turns stray pixels into ratios of 5–10). Residual: "
        "‖A(x) − y‖/√m per sample ([−1, 1] scale; σ_y = 0.001). Truth in range: share of pixels whose truth "
        "lies between the samples' min and max "
        f"(3/5 = 0.60 for {SAMPLES} exchangeable samples).", "",
        "## Perception and distortion", "", *table(cache, scale), "",
        "## Issue 26's targets (item 3)", "", *targets(cache), "",
    ]
    REPORT.write_text("\n".join(lines) + "\n")


def draw_picture(cache: dict[str, Any]) -> None:
    """Per task: clean | A†y | recommended: 2 particles, mean | detail (each amount): 2 particles, mean, spread."""
    columns = ["clean", "A†y", "recommended 1", "recommended 2", "recommended mean"]
    for amount in DETAIL_AMOUNTS:
        columns += [f"detail {amount:g}: 1", f"detail {amount:g}: 2", f"detail {amount:g}: mean",
                    f"detail {amount:g}: spread"]
    cell, label_w = 32 * 4, 150
    rows = [task for task in TASKS if all("picture" in cache.get(job_key(m, task), {})
                                           for m in ("DWGF recommended", *(detail_name(a) for a in DETAIL_AMOUNTS)))]
    if not rows:
        return
    canvas = Image.new("RGB", (label_w + cell * len(columns), 40 + cell * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 12)
    except OSError:
        font = ImageFont.load_default()
    for c, head in enumerate(columns):
        for line, text in enumerate(head.split(": ")):
            draw.text((label_w + c * cell + 4, 4 + 16 * line), text, fill="black", font=font)
    for r, task in enumerate(rows):
        base = cache[job_key("DWGF recommended", task)]["picture"]
        tiles = [np.asarray(base["clean"], np.float32), np.asarray(base["measurement"], np.float32)]
        particles = np.asarray(base["samples"], np.float32)
        tiles += [particles[0], particles[1], particles.mean(0)]
        for amount in DETAIL_AMOUNTS:
            finished = np.asarray(cache[job_key(detail_name(amount), task)]["picture"]["samples"], np.float32)
            spread = finished.std(0).mean(-1, keepdims=True).repeat(3, -1) * 4  # ×4: std 0.25 = white
            tiles += [finished[0], finished[1], finished.mean(0), spread]
        y = 40 + r * cell
        draw.text((6, y + cell // 2 - 8), task, fill="black", font=font)
        for c, tile in enumerate(tiles):
            image = Image.fromarray((np.clip(tile, 0, 1) * 255).round().astype(np.uint8))
            canvas.paste(image.resize((cell, cell), Image.NEAREST), (label_w + c * cell, y))
    PICTURE.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(PICTURE)


def main() -> None:
    global LANPAINT_PATH
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lanpaint", type=Path, default=None, help="a LanPaint v2.1.0 checkout (bench/lanpaint.py)")
    parser.add_argument("--report-only", action="store_true")
    options = parser.parse_args()
    LANPAINT_PATH = options.lanpaint
    cache = quality.load_cache(CACHE)
    if not options.report_only:
        run_all(jobs(options.lanpaint is not None), options.workers, cache)
    write_report(cache, floors())
    draw_picture(cache)
    print(f"wrote {REPORT} and {PICTURE}")


if __name__ == "__main__":
    main()
