"""Which noise levels DWGF should sweep on a flow-matching model (issue 18): its own, or SD's.

DWGF's update depends on a noise level only through ``s = σ/α`` (``dwgf/parametrisation.py``), so the
reference weights (w 0.15, c_ae 0.1) act on a flow model exactly as on an eps model *at the same s*.
What differs is which levels a sweep visits: one iteration per step of the model's own 1000-step
table. SD's scaled-linear table spans s ≈ 0.05 … 14.6; a rectified-flow table with shift 1 spans
s = t/(1 − t) ≈ 0.001 … 2000 (SD3's shift 3 and Flux's shift push it further towards noise). This
runs the demo model's flow prior both ways — its own table, and SD's table (the same s values the
eps prior sweeps) — and the eps prior on SD's table, with the same 50-iteration settings as
``bench/quality.py``, on held-out crops 14–33 (none used to choose anything), seed 0, for box
inpainting, ×8 super-resolution and Gaussian deblurring; paired per crop.

The flow prior's own sweep is read from ``quality.py --prior "flow matching"``'s results when they
are there (the same computation). Run: ``.venv/bin/python bench/flow_sweep.py [--images 20] [--workers 2]``
(about 25 CPU-minutes); writes ``bench/results/flow_sweep.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402

RESULTS = quality.RESULTS
RUNS = {  # name: (prior, table)
    "flow prior, its own sweep": ("flow matching", "own"),
    "flow prior, SD's sweep": ("flow matching", "sd"),
    "eps prior, SD's sweep": ("epsilon", "own"),
}
_BENCHES: dict[str, quality.Workbench] = {}


def _start(threads: int) -> None:
    torch.set_num_threads(threads)


def _run(name: str, task: str, indices: list[int]) -> dict:
    prior, table = RUNS[name]
    if prior not in _BENCHES:
        _BENCHES[prior] = quality.Workbench(prior)
    bench = _BENCHES[prior]
    sd_table = quality.comfyui_env.pack_submodule("dwgf.schedule").sd_alphas_cumprod()
    problem = bench.problem(task, indices)
    restored = bench.dwgf(problem, 0, quality.DWGF_STEPS, alphas_cumprod=sd_table if table == "sd" else None)
    result = bench.evaluate(problem, restored)
    return {"psnr_mean": result["psnr_mean"], "seconds_per_image": result["seconds_per_image"]}


def from_quality_benchmark(count: int) -> dict:
    """The flow prior on its own sweep is exactly ``quality.py --prior "flow matching"``'s DWGF run (same
    crops, problems, seed and levels): its first ``count`` crops are reused rather than recomputed."""
    path = RESULTS / "quality_flow.json"
    if not path.is_file():
        return {}
    runs = json.loads(path.read_text())["runs"]
    reused = {}
    for task in quality.REFERENCE_TASKS:
        run = runs.get(f"{task}|DWGF {quality.DWGF_STEPS} it.|seed 0")
        if run and run["indices"][:count] == quality.IMAGE_INDICES[:count]:
            reused[f"flow prior, its own sweep|{task}"] = {"psnr_mean": run["psnr_mean"][:count],
                                                           "seconds_per_image": run["seconds_per_image"]}
    return reused


def report(results: dict, count: int) -> str:
    lines = ["# DWGF on the flow-matching demo prior: its own sweep or SD's (bench/flow_sweep.py)", "",
             f"{count} held-out crops (14…{13 + count}), seed 0, DWGF {quality.DWGF_STEPS} iterations, N = 4, "
             "w 0.15, c_ae 0.1, lr 1 (METHOD.md's weights). PSNR of the particle mean (dB), mean over crops; "
             "paired differences mean ± std (crops where the first is higher).", "",
             "| task | " + " | ".join(RUNS) + " | flow own − flow SD's | flow own − eps |",
             "|---|" + "---|" * (len(RUNS) + 2)]
    for task in quality.REFERENCE_TASKS:
        runs = [results.get(f"{name}|{task}", {}).get("psnr_mean") for name in RUNS]
        if any(r is None for r in runs):
            continue
        cells = [f"{statistics.fmean(r):.2f}" for r in runs]
        lines.append(f"| {task} | " + " | ".join(cells) + f" | {quality._paired(runs[0], runs[1])} "
                     f"| {quality._paired(runs[0], runs[2])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    indices = quality.IMAGE_INDICES[:args.images]
    path = RESULTS / "flow_sweep.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results.update(from_quality_benchmark(args.images))
    todo = [(name, task) for name in RUNS for task in quality.REFERENCE_TASKS if f"{name}|{task}" not in results]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=context, initializer=_start, initargs=(args.threads,)) as pool:
        futures = {pool.submit(_run, name, task, indices): (name, task) for name, task in todo}
        for future in as_completed(futures):
            name, task = futures[future]
            results[f"{name}|{task}"] = future.result()
            path.write_text(json.dumps(results, indent=1) + "\n")
            print(f"{name} | {task}: {statistics.fmean(results[f'{name}|{task}']['psnr_mean']):.2f} dB", flush=True)
    (RESULTS / "flow_sweep.md").write_text(report(results, args.images))
    print(report(results, args.images))


if __name__ == "__main__":
    main()
