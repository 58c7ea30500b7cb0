"""The long soak (issue 29, item 4): ≥ 100 mixed prompts from two clients through one real ComfyUI
server, its resident memory sampled throughout (``tools/soak.py``; ``tests/test_soak.py`` runs a
short stream in CI), once with glibc's default allocator settings and once with its mmap threshold
fixed (``soak.STEADY_ALLOCATOR``), so what the allocator keeps and what the server holds are told
apart. Writes ``bench/results/soak.md`` and ``soak.json``.

    .venv/bin/python bench/soak.py --prompts 120 --clients 2
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

from comfy_server import ComfyServer  # noqa: E402
from comfyui_env import comfyui_root, comfyui_version, is_comfyui_2024  # noqa: E402
from soak import STEADY_ALLOCATOR, soak, write_sd15_checkpoint  # noqa: E402

ALLOCATORS = {"glibc default": {}, "fixed mmap threshold": STEADY_ALLOCATOR}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=120)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-sd15", action="store_true", help="leave the random SD 1.5 checkpoint out")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dwgf-soak-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)  # the 2 GB checkpoint and the servers' folders
    checkpoints = work / "checkpoints"
    if not args.no_sd15:
        write_sd15_checkpoint(checkpoints)
    records, lines = [], ["# Soak: restorations in a row (bench/soak.py)", ""]
    for allocator, env in ALLOCATORS.items():
        with ComfyServer(workdir=work / allocator.replace(" ", "_"), extra_paths={"checkpoints": checkpoints},
                         env=env) as server:
            report = soak(server, args.prompts, clients=args.clients, sd15=not args.no_sd15, seed=args.seed,
                          log=lambda line: print(line, flush=True), flow=not is_comfyui_2024(comfyui_root()))
            alive = server.alive()
        print(f"{allocator}: {report.summary()}", flush=True)
        records.append({"allocator": allocator, "env": env, **asdict(report), "server_alive": alive})
        lines += [f"**{allocator}** ({' '.join(f'{k}={v}' for k, v in env.items()) or 'no variables'}): "
                  f"{report.summary()}; server alive: {alive}", ""]
        lines += [f"- problem: {problem}" for problem in report.problems] or ["No problems."]
        lines.append("")
    version = comfyui_version(comfyui_root())
    lines.insert(2, f"ComfyUI {version}, seed {args.seed}, {args.clients} clients, 2-core CPU machine.\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps({"comfyui": version, "seed": args.seed, "runs": records},
                                                   indent=1) + "\n")
    (args.out / "soak.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
