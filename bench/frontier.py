"""Quality against cost (issue 15): DWGF and PSLD at many lengths, and DWGF's cheaper variants.

On ``IMAGES`` held-out crops of the demo model (the first 20 of ``bench/quality.py``'s, none used
to choose settings) and the three tasks of ``TASKS``, every :class:`Setting` restores every crop
through the real ComfyUI exactly as ``bench/quality.py`` runs its samplers (same problems, same
measurement noise, seed 0). Per setting and task it records PSNR/SSIM of the particle mean and of
the particles, the network evaluations per image (counted by wrapping the UNet and the VAE) and
the CPU seconds per image; DWGF runs also record a trajectory — particle-mean PSNR, the particles'
spread and the three loss terms at 20 points of the sweep — which is how item 2 of the issue
(why longer runs scored lower on the old model) is answered.

Network evaluations per image count batch rows: UNet + encoder + decoder forward passes, plus one
for each backward pass through a network (DWGF: the decoder's; PSLD: the UNet's, the decoder's
and the encoder's). The reference run (998 iterations, 4 particles) costs 4 × 998 × 5 = 19 960.

Results are cached per (task, setting) in ``bench/results/frontier.json`` (a rerun skips finished
jobs); ``bench/results/frontier.md`` holds the tables and ``workflows/images/frontier.png`` the plot.
Run: ``.venv/bin/python bench/frontier.py [--workers 2] [--only KEY …] [--report-only]``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import frontier_plot  # noqa: E402
import quality  # noqa: E402

RESULTS = quality.RESULTS
CACHE = RESULTS / "frontier.json"
REPORT = RESULTS / "frontier.md"
PLOT = quality.REPO / "workflows" / "images" / "frontier.png"

TASKS = ("box inpainting", "SR ×8 avg-pool", "Gaussian deblur, σ_y 0.05")
IMAGES = quality.IMAGE_INDICES[:20]
# Fewer crops where this 2-core CPU's budget ran out: the reference-form DWGF runs of up to 50
# iterations on all 20, DWGF-998 on 5, everything else on 10
LONG_RUN_IMAGES = {998: 5}
SHORT_RUN_IMAGES = 10
TRAJECTORY_POINTS = 20


@dataclass(frozen=True)
class Setting:
    """One way to run a sampler: METHOD.md's at ``steps``, or DWGF with a saving switched on."""

    method: str  # "DWGF" or "PSLD"
    steps: int
    denoise: float = 1.0  # < 1: warm start from E(A†y), sweep from t ≈ denoise · 999
    ae_every: int = 1
    time_power: float = 1.0
    ae_weight: float = quality.DWGF_SETTINGS["ae_weight"]  # item 2's ablations change these two
    last_timestep: int = 2
    fast: bool = False  # issue 25: the demo model's tiny VAE in all but the last full_decoder_steps iterations
    latent_data: bool = False  # issue 25: the decoder-free latent data term there instead (inpainting)
    full_decoder_steps: int = 5
    latent_weight: float = 1.0

    @property
    def key(self) -> str:
        extras = [f"denoise {self.denoise:g}" if self.denoise < 1 else "",
                  f"D(E) every {self.ae_every}" if self.ae_every > 1 else "",
                  f"time power {self.time_power:g}" if self.time_power != 1 else "",
                  f"c_ae {self.ae_weight:g}" if self.ae_weight != quality.DWGF_SETTINGS["ae_weight"] else "",
                  f"down to t = {self.last_timestep}" if self.last_timestep != 2 else "",
                  "fast VAE" if self.fast else "",
                  f"latent data λ {self.latent_weight:g}" if self.latent_data else "",
                  f"full decoder last {self.full_decoder_steps}" if self.fast or self.latent_data else ""]
        return " · ".join([f"{self.method} {self.steps}", *filter(None, extras)])

    @property
    def decoder_free(self) -> bool:
        """Most iterations leave the full decoder out (issue 25)."""
        return self.fast or self.latent_data

    @property
    def reference_form(self) -> bool:
        return (self.denoise == 1 and self.ae_every == 1 and self.time_power == 1 and not self.ablation
                and not self.decoder_free)

    @property
    def ablation(self) -> bool:
        return self.ae_weight != quality.DWGF_SETTINGS["ae_weight"] or self.last_timestep != 2


def images_for(setting: Setting) -> list[int]:
    """The crops a setting runs on (the comment at ``LONG_RUN_IMAGES``; the fast path's on ``FAST_IMAGES``)."""
    if CROPS != "frontier":
        return CROP_SETS[CROPS]
    if setting.decoder_free:
        return FAST_IMAGES
    if setting in DIAGNOSIS:
        return IMAGES[:DIAGNOSIS_IMAGES]
    if setting.steps in LONG_RUN_IMAGES and setting.method == "DWGF":
        return IMAGES[:LONG_RUN_IMAGES[setting.steps]]
    if setting.method == "DWGF" and setting.reference_form and setting.steps <= 50:
        return IMAGES
    return IMAGES[:SHORT_RUN_IMAGES]


FRONTIER = [*(Setting("DWGF", s) for s in (10, 25, 50, 100, 250, 998)),
            *(Setting("PSLD", s) for s in (25, 50, 100, 250, 1000))]
SAVINGS = [Setting("DWGF", 50, ae_every=4), Setting("DWGF", 50, time_power=0.5), Setting("DWGF", 25, denoise=0.5),
           Setting("DWGF", 50, denoise=0.5), Setting("DWGF", 50, last_timestep=150)]
# Item 2: why 998 iterations lose — without the encoder–decoder term, and the sweep stopped before
# the lowest noise levels (where the 998-iteration trajectory loses 4–5 dB)
DIAGNOSIS = [Setting("DWGF", 998, ae_weight=0.0), Setting("DWGF", 850, last_timestep=150)]  # 850: t = 999 … 150
DIAGNOSIS_IMAGES = 3
# Issue 25: the fast path on the demo model's tiny VAE (full-decoder steps 0 / 5 / 10, 25 and 50
# iterations, cold or warm start; D(E) every 4th as in the recommended preset, so a pair differs only
# in the decoder: with SD 1.5 a full iteration with the reconstruction costs as much as two without),
# and decoder-free inpainting (box inpainting only)
RECOMMENDED = Setting("DWGF", 50, ae_every=4)
FAST = [*(Setting("DWGF", steps, denoise=denoise, ae_every=4, fast=True, full_decoder_steps=last)
          for steps in (25, 35, 50) for denoise in (1.0, 0.5) for last in (0, 5, 10)),
        # the other runs at most 1/4 of the recommended preset's SD 1.5 cost (dwgf/presets.py run_seconds)
        Setting("DWGF", 50, ae_every=4, fast=True, full_decoder_steps=1),
        Setting("DWGF", 40, ae_every=4, fast=True, full_decoder_steps=3)]
LATENT = [Setting("DWGF", 50, ae_every=4, latent_data=True, full_decoder_steps=5),
          Setting("DWGF", 50, ae_every=4, latent_data=True, full_decoder_steps=10),
          Setting("DWGF", 50, ae_every=4, latent_data=True, full_decoder_steps=10, latent_weight=10.0),
          Setting("DWGF", 25, denoise=0.5, ae_every=4, latent_data=True, full_decoder_steps=5)]
FAST_IMAGES = IMAGES  # the 20 frontier crops
# Where the fast preset is chosen (the settings crops: one of each held-out photograph, never used to
# report) and checked (all 50 benchmark crops of bench/quality.py); ``--crops`` picks the set, and each
# set's results are cached under its own key prefix
CROP_SETS = {"settings": list(range(0, 7)), "check": quality.IMAGE_INDICES}
CROP_PREFIX = {"frontier": "", "settings": "settings crops|", "check": "50 crops|"}
CROPS = "frontier"
SETTINGS = [*FRONTIER, *SAVINGS, *DIAGNOSIS, *FAST, *LATENT]
REFERENCE_EVALS = 4 * 998 * 5


# ---------------------------------------------------------------------------------------------
# Running one setting on one task
# ---------------------------------------------------------------------------------------------
class Trajectory:
    """A DWGF callback: at ``TRAJECTORY_POINTS`` steps, the particle-mean PSNR, spread and losses."""

    def __init__(self, bench: quality.Workbench, problem: quality.Problem, particles: int, total: int) -> None:
        self.bench, self.problem, self.particles = bench, problem, particles
        self.at = {round(i * (total - 1) / (TRAJECTORY_POINTS - 1)) for i in range(TRAJECTORY_POINTS)}
        self.rows: list[dict[str, float]] = []
        self.autoencoder: Any = None

    def __call__(self, step: int, total: int, z: torch.Tensor, info: dict[str, Any]) -> None:
        if step not in self.at or self.autoencoder is None:
            return
        with torch.no_grad():
            images = self.autoencoder.decode(z).float().clamp(-1, 1).add(1).div(2)
        n, k = self.problem.count, self.particles
        grouped = images.view(n, k, *images.shape[1:])
        clean = self.problem.clean[..., :3].permute(0, 3, 1, 2).float()
        latents = z.view(n, k, -1)
        self.rows.append({
            "step": step + 1, "timestep": info.get("timestep"),
            "psnr_mean": statistics.fmean(self.bench.metrics.psnr(grouped.mean(1), clean).tolist()),
            "psnr_particles": statistics.fmean(self.bench.metrics.psnr(
                grouped.flatten(0, 1), clean.repeat_interleave(k, 0)).tolist()),
            "latent_spread": float(latents.std(1).mean()),
            "image_spread": float(grouped.std(1).mean()),
            **{name: float(info[name]) for name in ("loss_obs", "loss_prior", "loss_ae")},
        })


def run_dwgf_setting(bench: quality.Workbench, problem: quality.Problem, setting: Setting) -> tuple[Any, list]:
    flow, warm = bench.flow, quality.comfyui_env.pack_submodule("dwgf.warm_start")
    first = warm.start_timestep(setting.denoise, setting.last_timestep, setting.steps)
    weights = {**quality.DWGF_SETTINGS, "ae_weight": setting.ae_weight}
    config = flow.DWGFConfig(steps=setting.steps, seed=0, first_timestep=first, ae_every=setting.ae_every,
                             time_power=setting.time_power, last_timestep=setting.last_timestep,
                             warm_start=setting.denoise < 1, full_decoder_steps=setting.full_decoder_steps,
                             latent_data=setting.latent_data, latent_data_weight=setting.latent_weight, **weights)
    levels = flow.dwgf_levels(bench.adapter.model_alphas_cumprod(bench.model), config)
    trajectory = Trajectory(bench, problem, config.particles, len(levels))

    def solve(denoiser: Any, autoencoder: Any, shape: tuple, device: torch.device) -> torch.Tensor:
        trajectory.autoencoder = autoencoder.inner
        fast = None
        if setting.fast:
            tiny = bench.adapter.prepare_fast_vae(bench.fast_vae, bench.vae, bench.model, autoencoder.inner)
            fast = quality.CountingVAE(tiny, autoencoder.counter, prefix="fast_")
        return flow.run_dwgf(denoiser, autoencoder, config, shape, problem.degradation.operator,
                             problem.y.to(device), levels=levels, device=device, groups=problem.count,
                             callback=trajectory, fast_autoencoder=fast)

    restored = bench._core_run(problem, 0, config.particles, levels, solve, differentiable=False)
    return restored, trajectory.rows


def evaluations(calls: dict[str, float], fast: bool = False) -> float:
    """Network evaluations per image: forward passes plus one per backward pass (module docstring) of
    the full networks, or (``fast``) of the fast VAE alone."""
    calls = {name: value for name, value in calls.items() if name.startswith("fast_") == fast}
    forwards = sum(calls.values())
    backwards = sum(value for name, value in calls.items() if name.endswith("_grad"))
    return forwards + backwards


def run_job(task: str, setting: Setting, images: list[int]) -> dict[str, Any]:
    """One job; an error comes back as text (the pack's exception classes do not unpickle in the
    parent process, which would break the whole pool)."""
    try:
        return _run_job(task, setting, images)
    except Exception as error:  # noqa: BLE001 - reported by the parent, the other jobs go on
        return {"error": f"{type(error).__name__}: {error}"}


def _run_job(task: str, setting: Setting, images: list[int]) -> dict[str, Any]:
    bench = quality._BENCH
    problem = bench.problem(task, images)
    started = time.process_time()
    if setting.method == "DWGF":
        restored, trajectory = run_dwgf_setting(bench, problem, setting)
    else:
        restored, trajectory = bench.psld(problem, 0, setting.steps), []
    cpu_seconds = (time.process_time() - started) / problem.count
    result = bench.evaluate(problem, restored)
    return {"task": task, "setting": asdict(setting), "indices": images, **result,
            "cpu_seconds_per_image": cpu_seconds, "evaluations_per_image": evaluations(result["calls_per_image"]),
            "fast_evaluations_per_image": evaluations(result["calls_per_image"], fast=True),
            "trajectory": trajectory}


def job_key(task: str, setting: Setting, crops: str | None = None) -> str:
    return f"{CROP_PREFIX[crops or CROPS]}{task}|{setting.key}"


def reuse_psld_reference(cache: dict[str, Any]) -> None:
    """PSLD-1000 on the first 10 crops is exactly ``bench/quality.py --psld-reference``'s run (same
    problems, seed and settings): taken from its cache instead of spending 30 CPU-minutes again."""
    if CROPS != "frontier":
        return
    runs = quality.load_cache()
    for task in TASKS:
        setting = Setting("PSLD", 1000)
        source = runs.get(f"reference|{task}|PSLD 1000 it.|seed 0")
        if job_key(task, setting) in cache or source is None or source["indices"] != images_for(setting):
            continue
        cache[job_key(task, setting)] = {
            **source, "setting": asdict(setting), "trajectory": [],
            "cpu_seconds_per_image": source["seconds_per_image"],
            "evaluations_per_image": evaluations(source["calls_per_image"]),
            "from": "bench/quality.py --psld-reference"}


def priority(job: tuple[str, Setting]) -> tuple[int, int]:
    """What decides the preset first (DWGF-50 and the savings), then the curves, the long runs last;
    within a group the costly jobs first, so the two workers finish together."""
    setting = job[1]
    group = 0 if setting in SAVINGS or setting == Setting("DWGF", 50) else 2 if setting.steps >= 250 else 1
    return group, -setting.steps * len(images_for(setting))


def run_all(todo: list[tuple[str, Setting]], workers: int, cache: dict[str, Any]) -> None:
    reuse_psld_reference(cache)
    todo = sorted((job for job in todo if job_key(*job) not in cache), key=priority)
    if not todo:
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=quality._start_worker, initargs=(1,)) as pool:
        futures = {pool.submit(run_job, task, setting, images_for(setting)): (task, setting) for task, setting in todo}
        for future in as_completed(futures):
            key = job_key(*futures[future])
            result = future.result()
            if "error" in result:
                print(f"{key}: FAILED {result['error']}", flush=True)
                continue
            cache[key] = result
            save_cache(cache)
            print(f"{key}: PSNR {statistics.fmean(cache[key]['psnr_mean']):.2f} dB, "
                  f"{cache[key]['evaluations_per_image']:.0f} evals, {cache[key]['seconds_per_image']:.1f} s/image",
                  flush=True)


def load_cache() -> dict[str, Any]:
    return json.loads(CACHE.read_text())["runs"] if CACHE.is_file() else {}


def save_cache(cache: dict[str, Any]) -> None:
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_text(json.dumps({"runs": cache}, indent=1))


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def on_crops(run: dict[str, Any], metric: str, crops: list[int]) -> float:
    """A metric's mean over ``crops`` (a subset of the run's own)."""
    values = dict(zip(run["indices"], run[metric], strict=True))
    return statistics.fmean(values[i] for i in crops)


def paired(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Mean particle-mean PSNR difference a − b on the crops both runs have."""
    shared = [i for i in a["indices"] if i in b["indices"]]
    return on_crops(a, "psnr_mean", shared) - on_crops(b, "psnr_mean", shared)


def first(run: dict[str, Any], count: int) -> str:
    """Particle-mean PSNR on the first ``count`` crops, or a dash where the run has fewer."""
    crops = IMAGES[:count]
    return f"{on_crops(run, 'psnr_mean', crops):.2f}" if all(i in run["indices"] for i in crops) else "–"


def frontier_table(cache: dict[str, Any], task: str) -> list[str]:
    runs = [(s, cache.get(job_key(task, s))) for s in SETTINGS]
    runs = [(s, r) for s, r in runs if r is not None]
    best = max((statistics.fmean(r["psnr_mean"]) for s, r in runs if s.method == "DWGF"), default=math.nan)
    lines = [f"### {task}", "",
             "| setting | crops | evaluations / image | share of reference | CPU s / image | PSNR mean | "
             "PSNR particles | SSIM mean | SSIM particles | PSNR, first 10 crops | PSNR, first 5 crops |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for setting, run in runs:
        evals = run["evaluations_per_image"]
        lines.append(
            f"| {setting.key} | {len(run['indices'])} | {evals:,.0f} | 1/{REFERENCE_EVALS / evals:.0f} | "
            f"{run['cpu_seconds_per_image']:.1f} | {statistics.fmean(run['psnr_mean']):.2f} | "
            f"{statistics.fmean(run['psnr_particles']):.2f} | {statistics.fmean(run['ssim_mean']):.3f} | "
            f"{statistics.fmean(run['ssim_particles']):.3f} | "
            f"{first(run, 10)} | {first(run, 5)} |")
    lines += ["", f"Best DWGF particle-mean PSNR on this task: {best:.2f} dB.", ""]
    return lines


def preset_check(cache: dict[str, Any]) -> list[str]:
    """Item 4's three conditions for every DWGF setting, each comparison paired on shared crops."""
    lines = ["| setting | share of reference | " + " | ".join(f"{t}: − best DWGF / − PSLD-1000" for t in TASKS)
             + " | meets all |", "|---|---|" + "---|" * len(TASKS) + "---|"]
    for setting in SETTINGS:
        if setting.method != "DWGF" or any(job_key(t, setting) not in cache for t in TASKS):
            continue
        cells = []
        share = REFERENCE_EVALS / cache[job_key(TASKS[0], setting)]["evaluations_per_image"]
        ok = share >= 20
        for task in TASKS:
            mine = cache[job_key(task, setting)]
            behind_best = min((paired(mine, cache[job_key(task, s)]) for s in SETTINGS
                               if s.method == "DWGF" and job_key(task, s) in cache), default=0.0)
            psld = cache.get(job_key(task, Setting("PSLD", 1000)))
            over_psld = paired(mine, psld) if psld else math.nan
            ok &= behind_best >= -0.3 and over_psld >= 0
            cells.append(f"{behind_best:+.2f} / {over_psld:+.2f}")
        lines.append(f"| {setting.key} | 1/{share:.0f} | " + " | ".join(cells) + f" | {'yes' if ok else 'no'} |")
    return lines


def trajectory_table(cache: dict[str, Any], task: str, setting: Setting) -> list[str]:
    run = cache.get(job_key(task, setting))
    if not run or not run["trajectory"]:
        return []
    lines = [f"#### {task}, {setting.key}: along the sweep", "",
             "| step | t | PSNR mean | PSNR particles | latent spread | image spread | L_obs | L_prior | L_ae |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in run["trajectory"]:
        lines.append(f"| {row['step']} | {row['timestep']} | {row['psnr_mean']:.2f} | {row['psnr_particles']:.2f} | "
                     f"{row['latent_spread']:.3f} | {row['image_spread']:.4f} | {row['loss_obs']:.2e} | "
                     f"{row['loss_prior']:.2e} | {row['loss_ae']:.2e} |")
    return [*lines, ""]


def diagnosis_table(cache: dict[str, Any]) -> list[str]:
    """Item 2 on the diagnosis crops: final and best-along-the-sweep PSNR of 998-iteration variants."""
    crops = IMAGES[:DIAGNOSIS_IMAGES]
    lines = [f"Box inpainting, crops {crops[0]}–{crops[-1]}: the particle mean at the end of the run, and the best "
             "value along the sweep (the trajectory's PSNR is over the run's own crops).", "",
             "| setting | PSNR at the end | best along the sweep (at t) | PSNR at t ≈ 150 |", "|---|---|---|---|"]
    for setting in (Setting("DWGF", 50), Setting("DWGF", 250), Setting("DWGF", 998), *DIAGNOSIS):
        run = cache.get(job_key(TASKS[0], setting))
        if not run:
            continue
        best = max(run["trajectory"], key=lambda row: row["psnr_mean"]) if run["trajectory"] else None
        near = min(run["trajectory"], key=lambda row: abs(row["timestep"] - 150)) if run["trajectory"] else None
        lines.append(f"| {setting.key} | {on_crops(run, 'psnr_mean', crops):.2f} | "
                     + (f"{best['psnr_mean']:.2f} (t = {best['timestep']}) | {near['psnr_mean']:.2f} |" if best
                        else "– | – |"))
    return [*lines, ""]


def paired_stats(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float, int, int]:
    """Per-crop PSNR differences a − b on shared crops: mean, standard deviation, wins, crops."""
    shared = [i for i in a["indices"] if i in b["indices"]]
    ours, theirs = (dict(zip(r["indices"], r["psnr_mean"], strict=True)) for r in (a, b))
    diffs = [ours[i] - theirs[i] for i in shared]
    spread = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    return statistics.fmean(diffs), spread, sum(d > 0 for d in diffs), len(diffs)


def fast_path_tables(cache: dict[str, Any]) -> list[str]:
    """Issue 25: every fast setting against the recommended preset, paired on the same crops, per crop set."""
    lines = []
    titles = {"settings": "Settings crops 0–6 (where the fast preset is chosen)",
              "frontier": f"Frontier crops {IMAGES[0]}–{IMAGES[-1]}",
              "check": f"All {len(quality.IMAGE_INDICES)} benchmark crops (the check)"}
    for crops, title in titles.items():
        rows = []
        for task in TASKS:
            # the recommended run of the same crops (the frontier crops are a subset of the check's)
            base = cache.get(job_key(task, RECOMMENDED, "check" if crops == "frontier" else crops))
            psld = cache.get(job_key(task, Setting("PSLD", 1000), "frontier"))
            for setting in [RECOMMENDED, *FAST, *LATENT]:
                run = cache.get(job_key(task, setting, crops))
                if run is None:
                    continue
                versus = "–"
                if base is not None and setting != RECOMMENDED:
                    mean, spread, wins, count = paired_stats(run, base)
                    versus = f"{mean:+.2f} ± {spread:.2f} ({wins}/{count})"
                over_psld = "–"
                if psld is not None and any(i in psld["indices"] for i in run["indices"]):
                    mean, _, wins, count = paired_stats(run, psld)
                    over_psld = f"{mean:+.2f} ({wins}/{count})"
                rows.append(f"| {task} | {setting.key} | {len(run['indices'])} | {run['cpu_seconds_per_image']:.1f} | "
                            f"{run['evaluations_per_image']:.0f} | {run.get('fast_evaluations_per_image', 0):.0f} | "
                            f"{statistics.fmean(run['psnr_mean']):.2f} | {versus} | {over_psld} |")
        if rows:
            lines += [f"### {title}", "",
                      "| task | setting | crops | CPU s / image | full-network evaluations | fast-VAE evaluations | "
                      "PSNR mean | − recommended (paired, wins) | − PSLD-1000 (shared crops, wins) |",
                      "|---|---|---|---|---|---|---|---|---|", *rows, ""]
    return lines


def write_report(cache: dict[str, Any]) -> None:
    global CROPS
    CROPS = "frontier"
    lines = ["# Quality against cost (bench/frontier.py)", "",
             f"Crops {IMAGES[0]}–{IMAGES[-1]} of the demo model's held-out photos: DWGF up to 50 iterations on all "
             f"{len(IMAGES)}, DWGF-998 on the first {LONG_RUN_IMAGES[998]}, every other setting on the first "
             f"{SHORT_RUN_IMAGES} (this 2-core CPU's budget); seed 0, "
             "the settings of `bench/quality.py` otherwise "
             f"(DWGF N = 4, w 0.15, c_ae 0.1, lr 1; PSLD the paper's ω, γ). Evaluations per image: UNet + encoder + "
             f"decoder forwards, plus one per backward pass; the reference run costs {REFERENCE_EVALS:,}. "
             "CPU seconds: one thread, two jobs at a time; PSLD-1000 is `bench/quality.py --psld-reference`'s run "
             "(same crops, problems and seed; wall seconds measured beside model training).", "", "## Frontier", ""]
    for task in TASKS:
        lines += frontier_table(cache, task)
    lines += ["## Item 4: the preset's conditions", "",
              "Paired on the crops both runs have: PSNR minus the best DWGF setting's (the most negative "
              "difference to any other DWGF setting), and minus PSLD-1000's; 'meets all' = at most 1/20 of the "
              "reference's evaluations, within 0.3 dB of the best "
              "DWGF on every task and at or above PSLD-1000.", "", *preset_check(cache), "",
              "## Along the sweep (item 2)", ""]
    lines += diagnosis_table(cache)
    lines += ["## The fast path (issue 25)", "",
              "The demo model's tiny VAE (`fast VAE`) in every iteration but the last `full decoder last k`, or "
              "(box inpainting) the decoder-free latent data term there (`latent data λ`); paired with the "
              f"recommended preset ({RECOMMENDED.key}) on the same crops, seed 0. CPU seconds: one thread, "
              "jobs sharing the machine with other work (compare within a table only). Full-network evaluations "
              "count the UNet and the full VAE; fast-VAE evaluations the tiny VAE's forwards and backwards.", "",
              *fast_path_tables(cache)]
    for task in TASKS:
        for steps in (50, 250, 998):
            lines += trajectory_table(cache, task, Setting("DWGF", steps))
    for setting in DIAGNOSIS:
        lines += trajectory_table(cache, TASKS[0], setting)
    REPORT.write_text("\n".join(lines) + "\n")
    frontier_plot.draw(cache, TASKS, FRONTIER, job_key, PLOT, IMAGES[:LONG_RUN_IMAGES[998]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None, help="run only settings whose key starts with these")
    parser.add_argument("--tasks", nargs="*", default=None)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="2 crops, results under /tmp: check the script runs")
    parser.add_argument("--crops", choices=list(CROP_PREFIX), default="frontier",
                        help="settings: the fast settings on crops 0-6 (to choose the preset); check: the "
                             "recommended preset and the --only settings on all 50 benchmark crops")
    options = parser.parse_args()
    global CROPS
    CROPS = options.crops
    if options.smoke:
        global CACHE, REPORT, PLOT, IMAGES, LONG_RUN_IMAGES
        smoke = Path("/tmp/frontier-smoke")
        CACHE, REPORT, PLOT, IMAGES, LONG_RUN_IMAGES = (smoke / "frontier.json", smoke / "frontier.md",
                                                        smoke / "frontier.png", IMAGES[:2], {998: 1})
    cache = load_cache()
    if not options.report_only:
        candidates = {"frontier": SETTINGS, "settings": [RECOMMENDED, *FAST, *LATENT], "check": SETTINGS}[CROPS]
        settings = [s for s in candidates if options.only is None or any(s.key.startswith(o) for o in options.only)]
        if CROPS == "check":  # exact keys: the preset under check and the recommended one
            settings = [s for s in candidates if s.key in (options.only or [])]
        if CROPS == "check" and RECOMMENDED not in settings:
            settings.insert(0, RECOMMENDED)
        tasks = options.tasks or TASKS
        # DWGF-998 on deblurring and the diagnosis beyond box inpainting were over this session's CPU budget
        jobs = [(t, s) for t in tasks for s in settings
                if (s not in DIAGNOSIS and s != Setting("DWGF", 998)) or t != TASKS[2]]
        jobs = [(t, s) for t, s in jobs if s not in DIAGNOSIS or t == TASKS[0]]
        jobs = [(t, s) for t, s in jobs if not s.latent_data or t == TASKS[0]]  # decoder-free: inpainting only
        run_all(jobs, options.workers, cache)
    write_report(cache)
    print(f"wrote {REPORT} and {PLOT}")


if __name__ == "__main__":
    main()
