"""The memory guard: refuse a run whose first iteration would not fit, before any work is done.

An image too large for the memory left would otherwise run for many minutes or exhaust the
machine. The estimate (``dwgf/memory.py``) probes the VAE decoder the run uses; the message names
the largest image and particle count that fit and the memory mode that would.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch

from ..dwgf.errors import DWGFInputError
from ..dwgf.memory import DecoderFootprint, RunFootprint, format_gib, probe_decoder
from . import comfy_adapter

MEMORY_CHECK_TOOLTIP = (
    "Before running, estimate the working memory of the first iteration (by probing this VAE's decoder "
    "on tiny latents) and stop with a message naming what fits when it exceeds the free memory of the "
    "device. Switch off only if you know the run fits (the estimate errs on the generous side).")

_FOOTPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class RunMemory:
    """How a run uses memory: its mode's name (for messages), particles per network call,
    decoder checkpointing, PSLD's heavier graph, and whether to check at all."""

    mode: str
    particles_at_once: int  # 0 = all particles at once
    checkpointed: bool = False
    psld: bool = False
    check: bool = True
    alternatives: tuple[tuple[str, int, bool], ...] = ()  # other modes: (name, particles_at_once, checkpointed)


def decoder_footprint(autoencoder: Any) -> DecoderFootprint:
    """The decoder's probed footprint, once per VAE network and dtype."""
    network = autoencoder.network
    key = (str(autoencoder.dtype), str(autoencoder.device))
    cached = _FOOTPRINTS.get(network, {})
    if key not in cached:
        weights = [*network.parameters(), *network.buffers()]
        with torch.inference_mode(False):
            cached[key] = probe_decoder(autoencoder.decode, autoencoder.latent_channels, autoencoder.device, weights)
        _FOOTPRINTS[network] = cached
    return cached[key]


def check_run_memory(autoencoder: Any, latent_shape: tuple[int, int, int], particles: int, memory: RunMemory,
                     device: torch.device, fast_autoencoder: Any = None, full_decoder_steps: int = 0) -> None:
    """Raise a :class:`DWGFInputError` naming what fits when the run's first iteration would not.

    With a ``fast_autoencoder`` (issue 25) the run decodes through it, and through the full decoder
    only in its last ``full_decoder_steps`` iterations: the larger of the two decoders' needs counts.
    """
    if not memory.check:
        return
    free = comfy_adapter.free_memory_bytes(device)
    _, latent_h, latent_w = latent_shape
    factor = int(autoencoder.downscale)

    def run_of(at_once: int, checkpointed: bool) -> RunFootprint:
        return RunFootprint(latent_h, latent_w, factor, particles, at_once or particles, checkpointed, memory.psld)

    uses_full = fast_autoencoder is None or fast_autoencoder is autoencoder or full_decoder_steps > 0
    decoders = [autoencoder] if uses_full else []
    if fast_autoencoder is not None and fast_autoencoder is not autoencoder:
        decoders.append(fast_autoencoder)
    this = run_of(memory.particles_at_once, memory.checkpointed)
    needs = [(this.working_bytes(decoder_footprint(d)), d) for d in decoders]
    needed, worst = max(needs, key=lambda pair: pair[0])
    if needed <= free:
        return
    footprint = decoder_footprint(worst)
    where = "the CPU" if device.type == "cpu" else str(device)
    advice = []
    if worst is autoencoder and len(decoders) > 1:
        fast_only = this.working_bytes(decoder_footprint(fast_autoencoder))
        if fast_only <= free:
            advice.append(f"full_decoder_steps 0, so only the fast VAE's decoder runs (about {format_gib(fast_only)})")
    if this.particles_at_once == particles and particles > 1:
        most = this.most_particles_at_once(footprint, free)
        advice.append(f"at most {most} particle{'s' * (most > 1)} at this size" if most >= 1
                      else "no particle at this size")
    for name, at_once, checkpointed in memory.alternatives:
        other = run_of(at_once, checkpointed).working_bytes(footprint)
        if other <= free:
            advice.append(f"memory mode '{name}' (about {format_gib(other)})")
            break
    side = this.largest_fitting_side(footprint, free)
    advice.append(f"images up to about {side}x{side} with these settings" if side >= factor
                  else "no image size with these settings")
    height, width = latent_h * factor, latent_w * factor
    limit = comfy_adapter.process_memory_limit(device)  # named when it is what left `free` (read again)
    under = f" under {limit.what}" if limit and limit.free_bytes <= free + max(free // 20, 2**26) else ""
    which = ("its last iterations (the full VAE decoder)" if worst is autoencoder and len(decoders) > 1
             else "its first iteration")
    raise DWGFInputError(
        f"memory: restoring a {height}x{width} image with {particles} particles in memory mode '{memory.mode}' "
        f"needs about {format_gib(needed)} of working memory for {which}, but {where} has "
        f"{format_gib(free)} free{under}. What fits: {'; '.join(advice)}. Or restore a region around the damage at "
        "the model's native size. (Set memory_check to false to run anyway.)")
