"""Nodes for images gathered from several machines (ComfyUI-Distributed's collector, issue 28):
a count check, so a short batch is not taken for success, and the mean and spread of particles
that arrive as images."""

from __future__ import annotations

import json
from typing import Any

import torch

from ..dwgf.errors import DWGFInputError, require
from . import comfy_adapter
from .common import CATEGORY
from .particle_decode_node import NORMALISED, SPREAD_SCALES, particle_statistics

COLLECTOR = "DistributedCollector"  # ComfyUI-Distributed's collector: its class name and the inputs its
# orchestrator writes into the master's copy of the prompt (multi_job_id, enabled_worker_ids, delegate_only)


def machines_behind(prompt: dict[str, Any] | None, node_id: str | None) -> tuple[int, str]:
    """How many machines send images to this node, read from the nearest Distributed Collector
    upstream in the prompt the master runs, and a few words naming them. A plain run (queued without
    workers, or no collector) is one machine."""
    if not prompt or node_id is None or str(node_id) not in prompt:
        return 1, "this machine"
    queue, seen = [str(node_id)], set()
    while queue:
        current = queue.pop(0)
        if current in seen or current not in prompt:
            continue
        seen.add(current)
        node = prompt[current]
        inputs = node.get("inputs", {})
        if node.get("class_type") == COLLECTOR and current != str(node_id):
            if not inputs.get("multi_job_id") or inputs.get("pass_through"):
                return 1, "this machine (queued without workers)"
            try:
                workers = [str(w) for w in json.loads(inputs.get("enabled_worker_ids") or "[]")]
            except (TypeError, ValueError):
                workers = []
            master = not inputs.get("delegate_only", False)
            names = (["the master"] if master else []) + ([f"worker{'s' if len(workers) > 1 else ''} "
                                                            f"{', '.join(workers)}"] if workers else [])
            return max(1, len(workers) + int(master)), " and ".join(names)
        queue += [str(value[0]) for value in inputs.values() if isinstance(value, list) and len(value) == 2]
    return 1, "this machine"


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
    OUTPUT_TOOLTIPS = ("The same images, when their count is right.",)

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
              prompt: dict[str, Any] | None = None, unique_id: str | None = None) -> tuple[torch.Tensor]:
        machines, names = machines_behind(prompt, unique_id)
        expected, arrived = images_per_machine * machines, int(images.shape[0])
        if arrived == expected:
            return (images,)
        saved = comfy_adapter.save_images(images, filename_prefix) if arrived else []
        raise DWGFInputError(shortfall_message(arrived, expected, images_per_machine, names, saved))


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
