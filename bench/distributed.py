"""Many photos: one server against a ComfyUI-Distributed master + 2 workers on this machine (issue 28).

    .venv/bin/python bench/distributed.py [--photos 8 32] [--out bench/results]

The workload is the demo box-inpainting template on held-out crops, split the way the
``distributed_batch_demo`` template splits them (Distributed Value gives each machine its ``start``,
and here its ``count`` too, so uneven shares work). Three set-ups, each timed from queueing to the
last image: one server with torch's default threads (what a user runs), one server with one thread,
and the cluster (master + 2 workers, one thread each, ``tools/distributed.py``). Each set-up first
runs a 1-photo warm-up (model loading), then each photo count once. The speed-up is the ratio of
wall times within this run; the core count is written beside it. The images themselves are checked
by ``tests/test_distributed.py``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

from comfyui_env import comfyui_root, comfyui_version  # noqa: E402
from distributed import Cluster  # noqa: E402

TEMPLATE = REPO / "workflows" / "api" / "distributed_batch_demo.json"


def shares(photos: int, machines: int) -> list[tuple[int, int]]:
    """(start, count) per machine, the master first; the first machines take one more when uneven."""
    base, extra = divmod(photos, machines)
    bounds, start = [], 0
    for machine in range(machines):
        count = base + (machine < extra)
        bounds.append((start, count))
        start += count
    return bounds


def workload(photos: int, machines: int) -> dict[str, Any]:
    """The batch template with each machine's start and count from Distributed Value, no count check
    (uneven shares), saving only the restored means."""
    prompt = copy.deepcopy(json.loads(TEMPLATE.read_text()))
    held_out = next(k for k, n in prompt.items() if n["class_type"] == "DWGF_DemoHeldOutImages")
    values = [k for k, n in prompt.items() if n["class_type"] == "DistributedValue"]
    bounds = shares(photos, machines)
    start_node = values[0]
    prompt[start_node]["inputs"].update(default_value=str(bounds[0][0]), worker_values=json.dumps(
        {**{str(k): str(s) for k, (s, _) in enumerate(bounds) if k}, "_type": "INT"}))
    count_node = str(max(int(k) for k in prompt) + 1)
    prompt[count_node] = {"class_type": "DistributedValue", "inputs": {
        "default_value": str(bounds[0][1]),
        "worker_values": json.dumps({**{str(k): str(c) for k, (_, c) in enumerate(bounds) if k}, "_type": "INT"})}}
    prompt[held_out]["inputs"]["count"] = [count_node, 0]
    for key in [k for k, n in prompt.items() if n["class_type"] in ("DWGF_ExpectImages", "SaveImage")]:
        del prompt[key]
    collector = next(k for k, n in prompt.items() if n["class_type"] == "DistributedCollector"
                     and prompt[n["inputs"]["images"][0]]["class_type"] == "DWGF_ParticleDecode")
    for key in [k for k, n in prompt.items() if n["class_type"] == "DistributedCollector" and k != collector]:
        del prompt[key]
    prompt["900"] = {"class_type": "SaveImage", "inputs": {"images": [collector, 0], "filename_prefix": "bench"}}
    return prompt


def timed(run, prompt: dict[str, Any]) -> tuple[float, int]:
    started = time.perf_counter()
    result = run(prompt)
    return time.perf_counter() - started, len(result.history["outputs"]["900"]["images"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    # (label, workers, one thread per process); one server runs the same graph queued plainly (the
    # collector passes its images through), with ComfyUI-Distributed loaded for its node types
    setups = (("one server, default threads", 0, False), ("one server, 1 thread", 0, True),
              ("master + 2 workers, 1 thread each", 2, True))
    for label, workers, one_thread in setups:
        context = Cluster(workers=workers, one_thread=one_thread)
        run = context.run if workers else context.master.run
        machines = workers + 1
        with context:
            timed(run, workload(machines, machines))  # warm-up: loads the model on every machine
            for photos in args.photos:
                seconds, images = timed(run, workload(photos, machines))
                assert images == photos, f"{label}: {images} of {photos} images came back"
                rows.append({"setup": label, "photos": photos, "seconds": round(seconds, 1),
                             "seconds_per_photo": round(seconds / photos, 2)})
                print(rows[-1], flush=True)
    cores = os.cpu_count()
    lines = ["# Many photos: one server against a master + 2 workers (bench/distributed.py)", "",
             f"ComfyUI {comfyui_version(comfyui_root())}, {cores} CPU cores shared by every process, demo model, "
             "box inpainting, the templates' 'fast' preset, 4 particles; wall time from queueing to the last image.",
             "", "| set-up | photos | wall time (s) | s / photo | speed-up vs one server (default threads) |",
             "|---|---|---|---|---|"]
    baseline = {row["photos"]: row["seconds"] for row in rows if row["setup"] == setups[0][0]}
    for row in rows:
        lines.append(f"| {row['setup']} | {row['photos']} | {row['seconds']} | {row['seconds_per_photo']} | "
                     f"{baseline[row['photos']] / row['seconds']:.2f}x |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "distributed.json").write_text(json.dumps({"cores": cores, "rows": rows}, indent=1) + "\n")
    (args.out / "distributed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
