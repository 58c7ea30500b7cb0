"""LanPaint, the nearest peer pack, beside DWGF in the quality benchmark (issue 25, item 6).

LanPaint (https://github.com/scraed/LanPaint, GPL-3.0) is a training-free inpainting sampler for ComfyUI.
It is never a dependency of this pack: this script takes a checkout of it (``--lanpaint PATH``), loads
it into the same in-process ComfyUI as ``bench/quality.py`` with ComfyUI's own custom-node loader
(``nodes.load_custom_node``), and runs it on the inpainting tasks of ``quality.TASKS``, on the same
held-out crops, measurements, metrics and cache (``bench/results/quality.json``) as every other method.

Wiring, as LanPaint's own SDXL example (``example_workflows/SDXL_EncodeDecode_Inpaint.json``):
``LanPaint_ImageEncode`` (image + mask) → ``LanPaint_KSampler`` → ``LanPaint_ImageDecode`` (image + mask).
The KSampler takes its node defaults — 30 steps (the example graph uses 20), scheduler karras,
denoise 1, 5 LanPaint (inner Langevin) steps, "Image First" — with sampler euler (the example's) and
cfg 1 (the example uses 5 with a prompt; the demo model is unconditional, where cfg only doubles the
UNet calls). The image given to LanPaint has its hole pre-filled with the known pixels' mean colour,
as the stock KSampler baseline's. One sampling run is decoded three ways:

* ``LanPaint`` (the headline) — ``LanPaint_ImageDecode`` with ``blend_overlap`` 1: the known pixels
  pasted back exactly (the 9-pixel default blend band is for megapixel images: on a 32-pixel crop it
  covers most of the known ring);
* ``LanPaint (raw decode)`` — the decoded latent as it is (``LanPaint_ImageDecode`` without image);
* ``LanPaint (ImageDecode, blend 9)`` — the node's default blend, as in the example graph.

DWGF is compared as it is (no paste-back). Cost is counted by the same UNet wrapper as every other
method (``quality.CallCounter``: each LanPaint step makes 1 + 5 UNet calls, fewer at the last step).

``--prefill-check N`` also measures the hole's pre-fill (the pseudo-inverse's grey against the
known pixels' mean colour): LanPaint on the first N crops (seed 0) of each task, and the stock
KSampler's grey-hole run (``quality.STOCK_GREY``) on every crop and seed.

Run (resumable: finished jobs are cached):
``nice .venv/bin/python bench/lanpaint.py --lanpaint /tmp/lanpaint [--tasks …] [--seeds 0 1] [--prefill-check 8]``
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "bench"), str(REPO / "tools")]

import comfyui_env  # noqa: E402
import quality  # noqa: E402
from comfyui_env import call_node  # noqa: E402

INPAINTING_TASKS = ("box inpainting", "free-form inpainting", "random inpainting (30 % kept)")
CFG = 1.0  # the demo model is unconditional: cfg ≠ 1 would only double the UNet calls
SAMPLER = "euler"
# LanPaint_ImageDecode's blend band per reported decode (None: no image, the raw decode)
DECODES = {quality.LANPAINT: 1, quality.LANPAINT_VARIANTS[0]: None, quality.LANPAINT_VARIANTS[1]: 9}
_VERSION: str | None = None


def load_lanpaint(path: Path) -> str:
    """Load the LanPaint checkout at ``path`` as a ComfyUI custom node; returns its version."""
    global _VERSION
    nodes = comfyui_env.import_comfyui()
    if "LanPaint_KSampler" not in nodes.NODE_CLASS_MAPPINGS:
        loaded = comfyui_env.run_maybe_async(nodes.load_custom_node(str(path), module_parent="custom_nodes"))
        if not loaded or "LanPaint_KSampler" not in nodes.NODE_CLASS_MAPPINGS:
            raise ImportError(f"ComfyUI could not load LanPaint from {path} (see its log above)")
    pyproject = path / "pyproject.toml"
    found = re.search(r'^version = "([^"]+)"', pyproject.read_text(), re.M) if pyproject.is_file() else None
    _VERSION = found.group(1) if found else "unknown"
    return _VERSION


def ksampler_inputs(bench: quality.Workbench, model: Any, latent: dict, seed: int) -> dict[str, Any]:
    """LanPaint KSampler's inputs: its node defaults, with sampler euler and cfg 1."""
    inputs = comfyui_env.node_defaults("LanPaint_KSampler")
    inputs.update(model=model, seed=seed, cfg=CFG, sampler_name=SAMPLER, positive=bench.positive,
                  negative=bench.negative, latent_image=latent, LanPaint_PromptMode="Image First")
    return inputs


def describe(method: str) -> str:
    """The wiring behind ``method``'s numbers, recorded in the cache and the report."""
    defaults = comfyui_env.node_defaults("LanPaint_KSampler")
    blend = DECODES[method]
    decode = "raw decode" if blend is None else f"LanPaint Image Decode (image + mask, blend_overlap {blend})"
    return (f"LanPaint {_VERSION} Image Encode (hole pre-filled with the known pixels' mean colour) → "
            f"LanPaint KSampler ({SAMPLER}, {defaults['scheduler']}, {defaults['steps']} steps, "
            f"{defaults['LanPaint_NumSteps']} LanPaint steps, cfg {CFG:g}, Image First, denoise "
            f"{defaults['denoise']:g}) → {decode}")


def restore(bench: quality.Workbench, problem: quality.Problem, seed: int,
            prefill: str = "mean colour") -> dict[str, quality.Restored]:
    """One LanPaint run on ``problem`` (an inpainting task), decoded as each method of ``DECODES``.

    ``prefill`` is what the hole holds in the image given to LanPaint: "mean colour" or "grey hole"
    (the pseudo-inverse as it is). Each decode's time is the shared encode and sampling plus its own decode.
    """
    known = problem.degradation.operator.known_mask()[0, 0]
    hole = (1.0 - known)[None].contiguous()  # MASK, 1 = regenerate (one mask for the batch)
    image = (problem.pseudo_inverse if prefill == "grey hole"
             else quality.mean_colour_fill(problem.pseudo_inverse, known))
    counter = quality.CallCounter()
    model = bench.counted_model(counter)
    started = time.perf_counter()
    torch.manual_seed(seed)
    (latent,) = call_node("LanPaint_ImageEncode", image=image, vae=bench.vae, mask=hole)
    (latent,) = call_node("LanPaint_KSampler", **ksampler_inputs(bench, model, latent, seed))
    sampling = time.perf_counter() - started
    counter.add("encoder", problem.count, False)
    counter.add("decoder", problem.count, False)
    results = {}
    for method, blend in DECODES.items():
        started = time.perf_counter()
        merge = {} if blend is None else {"image": image, "mask": hole, "blend_overlap": blend}
        (images,) = call_node("LanPaint_ImageDecode", samples=latent, vae=bench.vae, **merge)
        results[method] = quality.Restored(images, 1, sampling + time.perf_counter() - started, dict(counter.counts))
    return results


def prefill_check(path: Path, tasks: list[str], count: int, threads: int, cache: dict[str, Any]) -> None:
    """LanPaint on the first ``count`` crops, seed 0, with a grey and a mean-colour hole (cached)."""
    todo = [(task, fill) for task in tasks for fill in ("grey hole", "mean colour")
            if quality.prefill_key(task, quality.LANPAINT, fill) not in cache]
    if not todo:
        return
    torch.set_num_threads(threads)
    bench = quality.Workbench()
    load_lanpaint(path)
    indices = quality.IMAGE_INDICES[:count]
    for task, fill in todo:
        problem = bench.problem(task, indices)
        restored = restore(bench, problem, 0, prefill=fill)[quality.LANPAINT]
        cache[quality.prefill_key(task, quality.LANPAINT, fill)] = {
            "task": task, "method": quality.LANPAINT, "prefill": fill, "seed": 0, "indices": indices,
            "settings": describe(quality.LANPAINT), **bench.evaluate(problem, restored)}
        quality.save_cache(cache)
        print(f"pre-fill check, {task}, LanPaint, {fill}: PSNR "
              f"{statistics.fmean(cache[quality.prefill_key(task, quality.LANPAINT, fill)]['psnr_mean']):.2f} dB",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanpaint", type=Path, required=True, help="a LanPaint checkout (its repository root)")
    parser.add_argument("--tasks", nargs="*", default=list(INPAINTING_TASKS), choices=INPAINTING_TASKS)
    parser.add_argument("--seeds", nargs="*", type=int, default=list(quality.SEEDS))
    parser.add_argument("--images", type=int, default=len(quality.IMAGE_INDICES), help="use the first N crops")
    parser.add_argument("--prefill-check", type=int, default=0, metavar="N",
                        help="also compare a grey and a mean-colour hole on the first N crops (and the stock "
                             "KSampler's grey hole on every crop)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    path = args.lanpaint.expanduser().resolve()
    if not (path / "__init__.py").is_file():
        parser.error(f"--lanpaint {path}: not a LanPaint checkout (no __init__.py)")
    quality.LANPAINT_PATH = path
    indices = quality.IMAGE_INDICES[:args.images]
    cache = quality.load_cache()
    if not args.report_only:
        todo = [quality.Job(task, quality.LANPAINT, seed) for seed in args.seeds for task in args.tasks]
        if args.prefill_check:
            todo += [quality.Job(task, quality.STOCK_GREY, seed) for seed in quality.SEEDS for task in args.tasks]
            prefill_check(path, args.tasks, args.prefill_check, args.threads, cache)
        quality.run_jobs(todo, indices, quality.STUDY_INDICES, args.workers, args.threads, cache)
    quality.write_report(cache, indices)
    print(quality.REPORT.read_text())


if __name__ == "__main__":
    main()
