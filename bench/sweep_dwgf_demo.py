"""Choose DWGF's settings for the embedded demo model (issue 4, item 4).

Why a sweep: METHOD.md's reference weights (w = 0.15, c_ae = 0.1, 998 steps) are for Stable
Diffusion at 512² (latent 4×64×64, image 3×512×512). The relative size of the data, prior and
encoder–decoder terms depends on the latent size ``d_z``, the image size ``d_x`` and the number of
measurements ``m`` (every term is a *mean*), so they do not transfer to the demo model (latent
4×8×8, image 3×32×32). This script measures which settings work on the demo model.

What it runs — everything through the real ComfyUI nodes, in-process, as a user's workflow would:

* the demo model loaded "unconditional" (METHOD.md: empty prompt, no guidance, cfg = 1);
* held-out photos (never seen in training) ``SWEEP_INDICES`` — crops 0–6, one of each of the seven
  held-out photographs (crop i is of photograph i mod 7); ``tests/test_quality.py`` (crops 7–13)
  and ``bench/quality.py`` (crops 14–63) use other crops;
* three tasks, measurement noise σ_y = 0.001 (METHOD.md's reference):
  box inpainting ("inpaint box (centre)", box_fraction 0.5: a 16×16 hole, 25 % of the pixels),
  ×4 average-pool super-resolution (8×8 measurement), and Gaussian deblurring with a 9×9 kernel of
  σ = 1.5 px. The reference blur (61×61, σ = 3 at 256²) scaled to 32² would be σ ≈ 0.4 px, which
  barely changes a 32² image; σ = 1.5 px removes most detail finer than ~4 px (about the scale the
  ×4 SR task removes) and a 9×9 kernel holds it to ±2.7σ (> 99 % of its mass) while staying far
  smaller than the image, so the reflect padding does not dominate;
* the DWGF Sampler (particles 4, Adam lr 1.0, decoder noise 0.01, seed 0) and Particle Decode
  (no pasting: the raw ``D(z)``, the output METHOD.md defines);
* the baseline "measurement only": ``D(E(A†y))``, computed with ComfyUI's stock VAEEncode and
  VAEDecode on the Degradation Operator's ``pseudo_inverse`` image — exactly what a ComfyUI user
  gets without any diffusion prior. ``A†y`` itself is reported too.

Metric: PSNR (images in [0, 1]) against the clean image, per image, averaged over images — of the
particle mean (the main number) and of each particle (mean over particles, as the reference
reports). Seeds are fixed, so a run repeats exactly.

The sweep is a coordinate sweep, sized by its cost (``--probe``: one DWGF step of 4 particles costs
~0.1 s per image on this 2-core CPU, so one 250-step run over 6 images and 3 tasks is ~7 min):

  A. prior_weight w ∈ {0, 0.005, 0.015, 0.05, 0.15} (c_ae 0.1, 100 steps), every task;
     pick the w > 0 with the best task-averaged mean-PSNR (w = 0 is no diffusion prior at all: an
     ablation, not a candidate default);
  B. c_ae ∈ {0.1, 1.0} at that w (100 steps); pick the best (c_ae = 0 was measured at w = 0 only,
     where it lost 0.6–1.3 dB: the cache keeps those runs and the table shows them);
  C. steps ∈ {100, 250} at those weights; pick the fewer steps if within 0.25 dB (task average)
     of the more — iterations cost time linearly (500 steps for the three tasks would add ~20 min
     on this machine and was not run);
  D. deblurring with σ_y = 0.05 at the chosen settings and at the next larger w (a noisier
     measurement may want more prior).

Results are cached in ``bench/results/sweep_dwgf_demo.json`` (a rerun skips finished runs) and
written as a table to ``bench/results/sweep_dwgf_demo.md``. ``--grid`` also renders
``workflows/images/dwgf_demo_before_after.png`` with the chosen settings on test crops.

Run: ``.venv/bin/python bench/sweep_dwgf_demo.py [--probe] [--grid] [--workers 2 --threads 1]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import comfyui_env  # noqa: E402
from comfyui_env import call_node  # noqa: E402

RESULTS = REPO / "bench" / "results"
CACHE = RESULTS / "sweep_dwgf_demo.json"
REPORT = RESULTS / "sweep_dwgf_demo.md"
GRID = REPO / "workflows" / "images" / "dwgf_demo_before_after.png"

CLEAN = "clean (simulate the measurement)"
SWEEP_INDICES = list(range(7))  # held-out photo crops used for selection (crop i is of photograph i mod 7)
GRID_INDICES = [8, 9, 10, 11]  # test crops (not used for selection), shown in the grid

TASKS: dict[str, dict] = {
    "box inpainting": {"operator": "inpaint box (centre)", "box_fraction": 0.5},
    "SR x4 avg-pool": {"operator": "super-resolution avg-pool", "scale_factor": 4},
    "gaussian deblur": {"operator": "gaussian blur", "kernel_size": 9, "blur_sigma": 1.5},
}
FIXED = {"particles": 4, "learning_rate": 1.0, "decoder_noise": 0.01, "seed": 0, "cfg": 1.0}
PRIOR_WEIGHTS = [0.0, 0.005, 0.015, 0.05, 0.15]
AE_WEIGHTS = [0.1, 1.0]
STEPS = [100, 250]
BASE = {"ae_weight": 0.1}  # METHOD.md's c_ae, used while w is swept
STEPS_TOLERANCE_DB = 0.25


# ---------------------------------------------------------------------------------------------
# Running the nodes
# ---------------------------------------------------------------------------------------------
class Bench:
    """The demo model and the held-out photos, loaded once through ComfyUI's nodes."""

    def __init__(self) -> None:
        self.nodes = comfyui_env.import_comfyui()
        model, vae, positive, negative, *_ = call_node("DWGF_DemoModel", prompt="unconditional", batch_size=1)
        self.model, self.vae, self.positive, self.negative = model, vae, positive, negative
        self.photos, labels = call_node("DWGF_DemoHeldOutImages", which="photos", start=0, count=10000)
        self.labels = labels.split(", ")
        self.metrics = comfyui_env.pack_submodule("dwgf.metrics")

    def images(self, indices: list[int]) -> torch.Tensor:
        return self.photos[indices].contiguous()

    def degrade(self, images: torch.Tensor, task: str, sigma_y: float):
        """(degradation, measurement IMAGE, pseudo_inverse IMAGE) from the Degradation Operator."""
        inputs = {**comfyui_env.node_defaults("DWGF_DegradationOperator"), **TASKS[task]}
        inputs.update(image=images, image_is=CLEAN, sigma_y=sigma_y, seed=0,
                      noise_seeded_by="its place in the batch")  # as its recorded figures were measured
        return call_node("DWGF_DegradationOperator", **inputs)

    def measurement_only(self, pseudo_inverse: torch.Tensor) -> torch.Tensor:
        """``D(E(A†y))`` with the stock VAEEncode / VAEDecode nodes (IMAGE in [0, 1]).

        ComfyUI's VAEEncode *samples* the VAE posterior with the global RNG (the demo VAE's
        posterior is narrow: runs differ by a few hundredths of a dB), so it is seeded here.
        """
        torch.manual_seed(0)
        (latent,) = call_node("VAEEncode", vae=self.vae, pixels=pseudo_inverse)
        (decoded,) = call_node("VAEDecode", vae=self.vae, samples=latent)
        return decoded

    def dwgf(self, degradation, measurement, prior_weight: float, ae_weight: float, steps: int,
             **overrides) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """DWGF Sampler then Particle Decode: (particles, mean, spread) IMAGEs."""
        settings = dict(FIXED, prior_weight=prior_weight, ae_weight=ae_weight, steps=steps)
        settings.update(overrides)
        (latent,) = call_node("DWGF_Sampler", model=self.model, positive=self.positive, negative=self.negative,
                              vae=self.vae, degradation=degradation, measurement=measurement, **settings)
        return call_node("DWGF_ParticleDecode", particles=latent, vae=self.vae, paste_known_pixels=False,
                         degradation=degradation, measurement=measurement)

    def psnr(self, estimate: torch.Tensor, clean: torch.Tensor) -> list[float]:
        """Per-image PSNR (dB) of IMAGE batches in [0, 1]."""
        def chw(image: torch.Tensor) -> torch.Tensor:
            return image[..., :3].permute(0, 3, 1, 2).float().clamp(0, 1)

        return [float(v) for v in self.metrics.psnr(chw(estimate), chw(clean))]


def evaluate(bench: Bench, task: str, sigma_y: float, indices: list[int], prior_weight: float,
             ae_weight: float, steps: int) -> dict:
    """One DWGF run on every image of ``indices``, with the baselines' PSNRs on the same measurements."""
    clean = bench.images(indices)
    degradation, measurement, pseudo_inverse = bench.degrade(clean, task, sigma_y)
    started = time.perf_counter()
    particles, mean, _ = bench.dwgf(degradation, measurement, prior_weight, ae_weight, steps)
    seconds = time.perf_counter() - started
    n = FIXED["particles"]
    per_particle = bench.psnr(particles, clean.repeat_interleave(n, dim=0))
    return {
        "task": task, "sigma_y": sigma_y, "indices": indices, "prior_weight": prior_weight,
        "ae_weight": ae_weight, "steps": steps, **FIXED, "seconds": seconds,
        "psnr_mean": bench.psnr(mean, clean),
        "psnr_particles": [statistics.fmean(per_particle[i * n:(i + 1) * n]) for i in range(len(indices))],
        "psnr_measurement_only": bench.psnr(bench.measurement_only(pseudo_inverse), clean),
        "psnr_pseudo_inverse": bench.psnr(pseudo_inverse, clean),
    }


# ---------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------
def key(task: str, sigma_y: float, prior_weight: float, ae_weight: float, steps: int) -> str:
    return f"{task}|sy={sigma_y:g}|w={prior_weight:g}|ae={ae_weight:g}|steps={steps}"


_WORKER: Bench | None = None


def _start_worker(threads: int) -> None:
    global _WORKER
    torch.set_num_threads(threads)
    _WORKER = Bench()


def _work(job: tuple) -> dict:
    return evaluate(_WORKER, *job)


class Sweep:
    """The coordinate sweep; the runs of one stage go to ``workers`` processes of ``threads`` threads.

    On 2 CPU cores two single-threaded processes get through ~1.7x as many DWGF steps per second as
    one process with two threads (the networks are small, so threading inside a convolution pays little).
    """

    def __init__(self, indices: list[int], workers: int, threads: int) -> None:
        self.indices, self.workers, self.threads = indices, workers, threads
        self.runs: dict[str, dict] = {}
        if CACHE.is_file():
            cached = json.loads(CACHE.read_text())
            if cached.get("indices") == indices:
                self.runs = cached["runs"]
        self.pool = None

    def __enter__(self) -> Sweep:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_start_worker, initargs=(self.threads,))
        return self

    def __exit__(self, *_) -> None:
        self.pool.shutdown()

    def stage(self, jobs: list[tuple[str, float, float, float, int]]) -> None:
        """Run every job (task, σ_y, w, c_ae, steps) not yet cached, longest first, in parallel."""
        todo = sorted({key(*job): job for job in jobs if key(*job) not in self.runs}.values(), key=lambda j: -j[4])
        futures = {self.pool.submit(_work, (job[0], job[1], self.indices, *job[2:])): job for job in todo}
        from concurrent.futures import as_completed

        for future in as_completed(futures):
            result = future.result()
            name = key(*futures[future])
            self.runs[name] = result
            RESULTS.mkdir(parents=True, exist_ok=True)
            CACHE.write_text(json.dumps({"indices": self.indices, "runs": self.runs}, indent=1))
            print(f"{name}: mean {statistics.fmean(result['psnr_mean']):.2f} dB, particles "
                  f"{statistics.fmean(result['psnr_particles']):.2f} dB, measurement-only "
                  f"{statistics.fmean(result['psnr_measurement_only']):.2f} dB ({result['seconds']:.0f} s)",
                  flush=True)

    def task_average(self, sigma_y: float, prior_weight: float, ae_weight: float, steps: int) -> float:
        """Mean-PSNR averaged over images, then over the three tasks."""
        return statistics.fmean(
            statistics.fmean(self.runs[key(t, sigma_y, prior_weight, ae_weight, steps)]["psnr_mean"]) for t in TASKS)

    def coordinate_sweep(self, noisy_deblur: bool) -> dict:
        sy, ae0, short = 0.001, BASE["ae_weight"], STEPS[0]
        self.stage([(t, sy, w, ae0, short) for t in TASKS for w in PRIOR_WEIGHTS])
        score_w = {w: self.task_average(sy, w, ae0, short) for w in PRIOR_WEIGHTS}
        w = max((v for v in score_w if v > 0), key=score_w.get)  # w = 0 is the no-prior ablation
        self.stage([(t, sy, w, ae, short) for t in TASKS for ae in AE_WEIGHTS])
        score_ae = {ae: self.task_average(sy, w, ae, short) for ae in AE_WEIGHTS}
        ae = max(score_ae, key=score_ae.get)
        self.stage([(t, sy, w, ae, s) for t in TASKS for s in STEPS])
        score_steps = {s: self.task_average(sy, w, ae, s) for s in STEPS}
        best = max(score_steps.values())
        steps = min(s for s, v in score_steps.items() if v >= best - STEPS_TOLERANCE_DB)
        chosen = {"prior_weight": w, "ae_weight": ae, "steps": steps, **FIXED}
        if noisy_deblur:
            larger = [v for v in PRIOR_WEIGHTS if v > w][:1]
            self.stage([("gaussian deblur", 0.05, v, ae, steps) for v in (w, *larger)])
        return {"chosen": chosen, "score_prior_weight": score_w, "score_ae_weight": score_ae,
                "score_steps": score_steps}


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def mean_std(values: list[float]) -> str:
    return f"{statistics.fmean(values):.2f} ± {statistics.pstdev(values):.2f}"


def write_report(sweep: Sweep, outcome: dict, wall_seconds: float) -> None:
    chosen = outcome["chosen"]
    lines = [
        "# DWGF settings for the embedded demo model",
        "",
        "Written by `bench/sweep_dwgf_demo.py` (read its docstring for the protocol). Held-out photo crops "
        f"{sweep.indices} (never seen in training); particles {FIXED['particles']}, Adam lr "
        f"{FIXED['learning_rate']}, decoder noise {FIXED['decoder_noise']}, seed 0, unconditional, cfg 1. "
        "PSNR in dB on [0, 1] images, mean over images (± std over images). *mean* = PSNR of the particle "
        "mean; *particles* = PSNR of each particle, averaged; *meas.-only* = `D(E(A†y))` by ComfyUI's "
        "VAEEncode → VAEDecode of the pseudo-inverse image; *A†y* = the pseudo-inverse itself. "
        "Gain = mean − meas.-only, per image, mean ± std. Seconds = wall time of the DWGF Sampler for all "
        f"{len(sweep.indices)} images in one single-threaded process on a shared 2-core {platform.machine()} "
        "CPU (indicative only).",
        "",
        "| task | σ_y | w (prior) | c_ae | steps | mean | particles | meas.-only | A†y | gain (paired) | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in sorted(sweep.runs.values(), key=lambda r: (list(TASKS).index(r["task"]), r["sigma_y"],
                                                           r["steps"], r["ae_weight"], r["prior_weight"])):
        gains = [a - b for a, b in zip(run["psnr_mean"], run["psnr_measurement_only"], strict=True)]
        is_chosen = (run["sigma_y"] == 0.001 and run["prior_weight"] == chosen["prior_weight"]
                     and run["ae_weight"] == chosen["ae_weight"] and run["steps"] == chosen["steps"])
        mark = "**" if is_chosen else ""
        lines.append(
            f"| {run['task']} | {run['sigma_y']:g} | {mark}{run['prior_weight']:g}{mark} | {run['ae_weight']:g} | "
            f"{run['steps']} | {mark}{mean_std(run['psnr_mean'])}{mark} | "
            f"{statistics.fmean(run['psnr_particles']):.2f} | "
            f"{mean_std(run['psnr_measurement_only'])} | {statistics.fmean(run['psnr_pseudo_inverse']):.2f} | "
            f"{mean_std(gains)} | {run['seconds']:.0f} |")
    lines += ["", "Task-averaged mean-PSNR (σ_y = 0.001) at each coordinate of the sweep:", ""]
    for label, name in (("w", "score_prior_weight"), ("c_ae", "score_ae_weight"), ("steps", "score_steps")):
        cells = ", ".join(f"{label} = {k:g}: {v:.2f} dB" for k, v in outcome[name].items())
        lines.append(f"- {cells}")
    lines += [
        "",
        "## Chosen defaults for the demo model",
        "",
        f"prior_weight **{chosen['prior_weight']:g}**, ae_weight **{chosen['ae_weight']:g}**, steps "
        f"**{chosen['steps']}**, particles **{chosen['particles']}**, learning_rate **{chosen['learning_rate']:g}**, "
        f"decoder_noise **{chosen['decoder_noise']:g}** (cfg 1, unconditional).",
        "",
        "RATIONALE_PLACEHOLDER",
        "",
        f"Wall time of this invocation: {wall_seconds / 60:.1f} min (cached runs are not rerun; the sum of "
        f"the runs' own times is {sum(r['seconds'] for r in sweep.runs.values()) / 60:.1f} min over "
        f"{sweep.workers} parallel single-threaded processes).",
    ]
    old = REPORT.read_text() if REPORT.is_file() else ""
    rationale = ""
    if "## Rationale" in old:  # keep a hand-written rationale across reruns
        rationale = old.split("## Rationale", 1)[1]
    text = "\n".join(lines).replace("RATIONALE_PLACEHOLDER", "See *Rationale* below.")
    text += "\n\n## Rationale" + (rationale if rationale else "\n\n(to be written)\n")
    REPORT.write_text(text)
    print(f"wrote {REPORT}")


# ---------------------------------------------------------------------------------------------
# Before/after grid
# ---------------------------------------------------------------------------------------------
def render_grid(bench: Bench, chosen: dict, indices: list[int], zoom: int = 4) -> None:
    """Rows: tasks. Per image: clean | measurement | measurement-only | DWGF mean | spread."""
    from PIL import Image, ImageDraw

    columns = ("clean", "measurement", "meas.-only", "DWGF mean", "spread")
    cell, gap, header, left = 32 * zoom, 12, 18, 110
    width = left + len(indices) * (len(columns) * cell + gap)
    grid = Image.new("RGB", (width, header + len(TASKS) * (cell + 4)), "white")
    draw = ImageDraw.Draw(grid)

    def to_pil(image: torch.Tensor) -> Image.Image:
        array = (image[..., :3].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        picture = Image.fromarray(array)
        scale = cell // picture.width
        return picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)

    for i in range(len(indices)):
        for c, name in enumerate(columns):
            draw.text((left + i * (len(columns) * cell + gap) + c * cell + 4, 3), name, fill="black")
    clean = bench.images(indices)
    for row, task in enumerate(TASKS):
        degradation, measurement, pseudo_inverse = bench.degrade(clean, task, 0.001)
        only = bench.measurement_only(pseudo_inverse)
        _, mean, spread = bench.dwgf(degradation, measurement, chosen["prior_weight"], chosen["ae_weight"],
                                     chosen["steps"])
        top = header + row * (cell + 4)
        draw.text((4, top + cell // 2 - 6), task, fill="black")
        for i in range(len(indices)):
            panels = (clean[i], measurement[i], only[i], mean[i], spread[i])
            for c, panel in enumerate(panels):
                grid.paste(to_pil(panel), (left + i * (len(columns) * cell + gap) + c * cell, top))
        print(f"grid row {task}: DWGF mean {statistics.fmean(bench.psnr(mean, clean)):.2f} dB, measurement-only "
              f"{statistics.fmean(bench.psnr(only, clean)):.2f} dB", flush=True)
    GRID.parent.mkdir(parents=True, exist_ok=True)
    grid.save(GRID)
    print(f"wrote {GRID}")


def probe_cost(bench: Bench) -> dict:
    """Seconds per DWGF step per image (one image, 20 steps, after a warm-up)."""
    clean = bench.images(SWEEP_INDICES[:1])
    degradation, measurement, _ = bench.degrade(clean, "box inpainting", 0.001)
    bench.dwgf(degradation, measurement, 0.015, 0.1, 5)
    started = time.perf_counter()
    bench.dwgf(degradation, measurement, 0.015, 0.1, 40)
    per_step = (time.perf_counter() - started) / 40
    return {"seconds_per_step_image": per_step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probe", action="store_true", help="only measure the cost of one step and stop")
    parser.add_argument("--grid", action="store_true", help="also render the before/after grid PNG")
    parser.add_argument("--no-noisy-deblur", action="store_true", help="skip stage D (σ_y = 0.05 deblurring)")
    parser.add_argument("--workers", type=int, default=2, help="parallel sweep processes (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per sweep process (default 1)")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.probe:
        torch.set_num_threads(args.threads)
        probe = probe_cost(Bench())
        per_run = probe["seconds_per_step_image"] * len(SWEEP_INDICES)
        planned = ((len(PRIOR_WEIGHTS) + len(AE_WEIGHTS) - 1) * STEPS[0] + sum(STEPS[1:])) * len(TASKS)
        print(f"{probe['seconds_per_step_image'] * 1000:.1f} ms per step per image with {args.threads} thread(s); "
              f"sweep ≈ {planned * per_run / 60 / args.workers:.0f} min with {args.workers} such workers "
              "if they do not slow each other down", flush=True)
        return
    with Sweep(SWEEP_INDICES, args.workers, args.threads) as sweep:
        outcome = sweep.coordinate_sweep(noisy_deblur=not args.no_noisy_deblur)
    print("chosen:", outcome["chosen"], flush=True)
    write_report(sweep, outcome, time.perf_counter() - started)
    if args.grid:
        torch.set_num_threads(2)
        render_grid(Bench(), outcome["chosen"], GRID_INDICES)


if __name__ == "__main__":
    main()
