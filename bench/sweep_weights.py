"""DWGF's weights on the current demo model (issue 11, item 4): do METHOD.md's w and c_ae still hold?

``bench/sweep_dwgf_demo.py`` chose the demo settings on the previous model (×4 autoencoder at 21 dB,
8×8 latents) and kept METHOD.md's reference weights. This re-measures the choice on the current model
with the benchmark's own run (``bench/quality.py``: DWGF-50, N = 4, lr 1, σ_dec 0.01, seed 0) on the
settings crops 0–6 (one crop of each held-out photograph; the tests use 7–13 and the benchmark 14–63),
for the three headline tasks: box inpainting, ×8 super-resolution, Gaussian deblurring at σ_y 0.05.
Each candidate (prior weight w, encoder–decoder weight c_ae) is paired per crop with the reference
(w 0.15, c_ae 0.1). The rule: a candidate replaces the reference only if it is ahead on every task
and by at least 0.2 dB on the task average; otherwise the reference stays.

Run: ``.venv/bin/python bench/sweep_weights.py [--workers 2]`` (about 15 CPU-minutes); writes
``bench/results/sweep_weights.json`` (a rerun skips finished runs) and ``sweep_weights.md``.
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402

CACHE = quality.RESULTS / "sweep_weights.json"
REPORT = quality.RESULTS / "sweep_weights.md"
CROPS = list(range(7))
TASKS = quality.REFERENCE_TASKS
REFERENCE = (0.15, 0.1)
CANDIDATES = [(0.05, 0.1), REFERENCE, (0.5, 0.1), (0.15, 0.0), (0.15, 1.0)]  # (w, c_ae)
MARGIN_DB = 0.2


def key_of(task: str, weights: tuple[float, float]) -> str:
    return f"{task}|w {weights[0]:g}|c_ae {weights[1]:g}"


def run_job(task: str, weights: tuple[float, float]) -> dict[str, Any]:
    bench = quality._BENCH
    settings = {**quality.DWGF_SETTINGS, "prior_weight": weights[0], "ae_weight": weights[1]}
    problem = bench.problem(task, CROPS)
    result = bench.evaluate(problem, bench.dwgf(problem, 0, quality.DWGF_STEPS, settings=settings))
    return {"psnr_mean": result["psnr_mean"], "psnr_particles": result["psnr_particles"],
            "seconds_per_image": result["seconds_per_image"]}


def run_all(workers: int, cache: dict[str, Any]) -> None:
    todo = [(task, weights) for task in TASKS for weights in CANDIDATES if key_of(task, weights) not in cache]
    if not todo:
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=quality._start_worker, initargs=(1,)) as pool:
        futures = {pool.submit(run_job, *job): job for job in todo}
        for future in as_completed(futures):
            key = key_of(*futures[future])
            cache[key] = future.result()
            CACHE.write_text(json.dumps({"runs": cache}, indent=1))
            print(f"{key}: PSNR {statistics.fmean(cache[key]['psnr_mean']):.2f} dB", flush=True)


def paired(a: list[float], b: list[float]) -> float:
    return statistics.fmean(x - y for x, y in zip(a, b, strict=True))


def verdict(cache: dict[str, Any]) -> str:
    """The rule of the module docstring, applied."""
    winners = []
    for weights in CANDIDATES:
        if weights == REFERENCE:
            continue
        gains = [paired(cache[key_of(t, weights)]["psnr_mean"], cache[key_of(t, REFERENCE)]["psnr_mean"])
                 for t in TASKS]
        if all(g > 0 for g in gains) and statistics.fmean(gains) >= MARGIN_DB:
            winners.append((statistics.fmean(gains), weights))
    if not winners:
        return (f"No candidate is ahead of the reference (w {REFERENCE[0]:g}, c_ae {REFERENCE[1]:g}) on every task by "
                f"≥ {MARGIN_DB} dB on average: the reference weights stay the demo model's settings.")
    gain, (w, c_ae) = max(winners)
    return (f"w {w:g}, c_ae {c_ae:g} is ahead on every task (+{gain:.2f} dB on average): "
            "it should replace the reference.")


def write_report(cache: dict[str, Any]) -> None:
    lines = ["# DWGF's weights on the current demo model (bench/sweep_weights.py)", "",
             f"Crops {CROPS[0]}–{CROPS[-1]} (the settings crops), seed 0, DWGF-{quality.DWGF_STEPS} (N = 4, lr 1, "
             "σ_dec 0.01). PSNR of the particle mean in dB; paired difference to the reference weights "
             f"(w {REFERENCE[0]:g}, c_ae {REFERENCE[1]:g}) per crop, mean (crops ahead).", "",
             "| w | c_ae | " + " | ".join(TASKS) + " | mean of the paired differences |",
             "|---|---|" + "---|" * (len(TASKS) + 1)]
    for weights in CANDIDATES:
        if not all(key_of(t, weights) in cache for t in TASKS):
            continue
        cells, gains = [], []
        for task in TASKS:
            mine, ref = cache[key_of(task, weights)]["psnr_mean"], cache[key_of(task, REFERENCE)]["psnr_mean"]
            gain = paired(mine, ref)
            gains.append(gain)
            ahead = sum(x > y for x, y in zip(mine, ref, strict=True))
            paired_cell = "" if weights == REFERENCE else f" ({gain:+.2f}, {ahead}/{len(mine)})"
            cells.append(f"{statistics.fmean(mine):.2f}{paired_cell}")
        bold = "**" if weights == REFERENCE else ""
        lines.append(f"| {bold}{weights[0]:g}{bold} | {bold}{weights[1]:g}{bold} | " + " | ".join(cells)
                     + f" | {'–' if weights == REFERENCE else f'{statistics.fmean(gains):+.2f}'} |")
    complete = all(key_of(t, w) in cache for t in TASKS for w in CANDIDATES)
    lines += ["", verdict(cache) if complete else "Incomplete.", ""]
    REPORT.write_text("\n".join(lines))


def main() -> None:
    options = quality.cached_bench_options(__doc__.splitlines()[0])
    cache = quality.load_cache(CACHE)
    if not options.report_only:
        run_all(options.workers, cache)
    write_report(cache)
    print(REPORT.read_text())


if __name__ == "__main__":
    main()
