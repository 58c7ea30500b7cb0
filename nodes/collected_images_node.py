"""Nodes for images gathered from several machines (ComfyUI-Distributed's collector, issue 28):
a count check, so a short batch is not taken for success, and the mean and spread of particles
that arrive as images."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from ..dwgf.errors import DWGFInputError, require
from . import comfy_adapter
from .common import CATEGORY
from .particle_decode_node import NORMALISED, SPREAD_SCALES, particle_statistics

COLLECTOR = "DistributedCollector"  # ComfyUI-Distributed's collector: its class name and the inputs its
# orchestrator writes into the master's copy of the prompt (multi_job_id, enabled_worker_ids, delegate_only)
SEED_NODE = "DistributedSeed"  # gives the master its seed and worker k (1-based, enabled order) seed + k


@dataclass(frozen=True)
class Machine:
    """One machine whose images reach the collector, in the collector's order, and the seed its
    Distributed Seed gave it (None when no Distributed Seed feeds the graph)."""

    name: str
    seed: int | None = None


def upstream_node(prompt: dict[str, Any], start: str, class_type: str) -> str | None:
    """The nearest node of ``class_type`` upstream of ``start`` (not ``start`` itself), breadth first."""
    queue, seen = [start], set()
    while queue:
        current = queue.pop(0)
        if current in seen or current not in prompt:
            continue
        seen.add(current)
        if current != start and prompt[current].get("class_type") == class_type:
            return current
        inputs = prompt[current].get("inputs", {})
        queue += [str(value[0]) for value in inputs.values() if isinstance(value, list) and len(value) == 2]
    return None


def machines_behind(prompt: dict[str, Any] | None, node_id: str | None) -> list[Machine]:
    """The machines that send images to this node, in the order the collector returns them (the master
    first unless it only delegates, then the enabled workers), read from the nearest Distributed
    Collector upstream in the prompt the master runs; with their seeds where a Distributed Seed feeds
    the collector. A plain run (queued without workers, or no collector) is this machine alone."""
    collector = upstream_node(prompt, str(node_id), COLLECTOR) if prompt and node_id is not None else None
    if collector is None:
        return [Machine("this machine")]
    inputs = prompt[collector].get("inputs", {})
    seed_node = upstream_node(prompt, collector, SEED_NODE)
    seed = prompt[seed_node]["inputs"].get("seed") if seed_node else None
    seed = seed if isinstance(seed, int) else None
    if not inputs.get("multi_job_id") or inputs.get("pass_through"):
        return [Machine("this machine (queued without workers)", seed)]
    try:
        workers = [str(w) for w in json.loads(inputs.get("enabled_worker_ids") or "[]")]
    except (TypeError, ValueError):
        workers = []
    master = [] if inputs.get("delegate_only", False) else [Machine("the master", seed)]
    return master + [Machine(f"worker {w}", None if seed is None else seed + k) for k, w in enumerate(workers, 1)]


def describe(machines: list[Machine]) -> str:
    """'the master and workers 1, 2' — the machines a count is made of."""
    workers = [m.name.removeprefix("worker ") for m in machines if m.name.startswith("worker ")]
    names = [m.name for m in machines if not m.name.startswith("worker ")]
    if workers:
        names.append(f"worker{'s' if len(workers) > 1 else ''} {', '.join(workers)}")
    return " and ".join(names)


def provenance(machines: list[Machine], per_machine: int) -> list[str]:
    """Which images came from which machine and seed: the record of a distributed run."""
    lines = []
    for index, machine in enumerate(machines):
        first, last = index * per_machine + 1, (index + 1) * per_machine
        span = f"image {first}" if first == last else f"images {first}-{last}"
        lines.append(f"{span}: {machine.name}" + (f", seed {machine.seed}" if machine.seed is not None else ""))
    return lines


def shortfall_message(arrived: int, expected: int, per_machine: int, machines: str, saved: list[str]) -> str:
    """Why a collected batch is refused, what became of the images that did arrive, and what to do."""
    where = (f"the {arrived} that arrived are saved in ComfyUI's output folder ({saved[0]}"
             + (f" … {saved[-1]}" if len(saved) > 1 else "") + ")") if saved else "none arrived"
    counted = f"{per_machine} per machine from {machines}"
    if arrived > expected:
        return (f"images: {arrived} images arrived but {expected} were expected ({counted}): set "
                f"images_per_machine to what one machine's graph makes; {where}")
    return (f"images: only {arrived} of the {expected} expected images arrived ({counted}): a worker failed, was "
            f"stopped or timed out, or its images were of another size than the master's (the collector then "
            f"keeps the master's only). See the workers' logs; {where}, and a re-run restores the missing ones "
            f"(the same seeds give the same images)")


class ExpectImages:
    """Passes a collected batch on only when every machine's images arrived."""

    DESCRIPTION = (
        "Put after a Distributed Collector (ComfyUI-Distributed): stops the run with a clear error when fewer "
        "images arrived than images_per_machine x the machines that took part (read from the collector) — "
        "the collector otherwise reports success with the images it got. The images that did arrive are "
        "saved first, so nothing that finished is lost."
    )
    CATEGORY = CATEGORY
    FUNCTION = "check"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("The same images, when their count is right (which machine and seed made which image is "
                       "shown on the node and kept in the run's history).",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The collected batch (Distributed Collector's output)."}),
                "images_per_machine": ("INT", {"default": 4, "min": 1, "max": 100000, "tooltip":
                                       "How many images one machine's graph sends to the collector (its "
                                       "particles, or its share of the photos)."}),
                "filename_prefix": ("STRING", {"default": "DWGF/partial", "tooltip":
                                    "Where the images that did arrive are saved when some are missing."}),
            },
            "hidden": {"prompt": "PROMPT", "unique_id": "UNIQUE_ID"},
        }

    def check(self, images: torch.Tensor, images_per_machine: int, filename_prefix: str,
              prompt: dict[str, Any] | None = None, unique_id: str | None = None) -> dict[str, Any]:
        machines = machines_behind(prompt, unique_id)
        expected, arrived = images_per_machine * len(machines), int(images.shape[0])
        if arrived != expected:
            saved = comfy_adapter.save_images(images, filename_prefix) if arrived else []
            raise DWGFInputError(shortfall_message(arrived, expected, images_per_machine, describe(machines), saved))
        record = provenance(machines, images_per_machine)
        comfy_adapter.show_text_on_node("; ".join(record))
        return {"ui": {"text": record}, "result": (images,)}


class ParticleMeanAndSpread:
    """The mean and spread of particles that arrive as images (decoded on several machines)."""

    DESCRIPTION = (
        "The per-photo mean and spread (uncertainty) map of particles given as images — e.g. the particles "
        "several workers drew for one photo, gathered by a Distributed Collector. The same statistics as "
        "Particle Decode's mean and spread outputs."
    )
    CATEGORY = CATEGORY
    FUNCTION = "summarise"
    RETURN_TYPES = ("IMAGE", "IMAGE")
    RETURN_NAMES = ("mean", "spread")
    OUTPUT_TOOLTIPS = ("The mean of each photo's particles.", "Per-pixel standard deviation across particles.")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "particles": ("IMAGE", {"tooltip": "Particle images, photo-major (all of the first photo first)."}),
                "particles_per_photo": ("INT", {"default": 0, "min": 0, "max": 100000, "tooltip":
                                        "0 = the whole batch is one photo's particles."}),
                "spread_scale": (list(SPREAD_SCALES), {"default": NORMALISED}),
            },
        }

    def summarise(self, particles: torch.Tensor, particles_per_photo: int,
                  spread_scale: str = NORMALISED) -> tuple[torch.Tensor, torch.Tensor]:
        count = int(particles.shape[0])
        if count == 0:
            raise DWGFInputError("particles: the batch is empty (no machine returned images)")
        per_photo = particles_per_photo or count
        require(count % per_photo == 0,
                f"particles_per_photo: {per_photo} does not divide the {count} particle images; set it to the "
                f"particles each photo has in all (per machine x machines), or 0 for one photo")
        return particle_statistics(particles, per_photo, spread_scale)


NODE_CLASS_MAPPINGS = {"DWGF_ExpectImages": ExpectImages, "DWGF_ParticleMeanAndSpread": ParticleMeanAndSpread}
NODE_DISPLAY_NAME_MAPPINGS = {"DWGF_ExpectImages": "Expect Images",
                              "DWGF_ParticleMeanAndSpread": "Particle Mean and Spread (images)"}
