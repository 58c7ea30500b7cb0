"""Out of memory part-way through a run: a prompt error that says what ran and what to try.

The memory guard (``memory_guard.py``) refuses a run that would not fit in what the device reports
free (on the CPU, within the process's ``ulimit -v`` and cgroup limits). What it cannot see —
``memory_check`` switched off, memory other processes take during the run, more than it estimated —
makes an allocation fail part-way, and PyTorch raises:
a ``RuntimeError`` "DefaultCPUAllocator: can't allocate memory" on the CPU ("not enough memory" on
Windows), ``torch.OutOfMemoryError`` on CUDA (ComfyUI's ``OOM_EXCEPTION``), "MPS backend out of
memory" on a Mac. :class:`explain_out_of_memory` turns that into a :class:`DWGFOutOfMemoryError`
naming the run (image size, particles, memory mode), keeping PyTorch's own text, and saying what to
change; the failed run's tensors are released first, so the server runs the next prompt. (A kernel
OOM kill — a container's memory limit crossed — ends the process with no Python error; the guard
refuses a run it estimates would cross the limit, nothing here helps once it is: see the README's
Reliability section.)
"""

from __future__ import annotations

import ctypes
import gc
import sys
import traceback
from dataclasses import dataclass
from types import TracebackType

import torch

from ..dwgf.errors import DWGFRunError
from .memory_guard import RunMemory

# What PyTorch's allocators say when an allocation fails (CPU on Linux/macOS, CPU on Windows, CUDA,
# HIP, MPS, XPU: "... out of memory ...").
_OUT_OF_MEMORY_PHRASES = ("can't allocate memory", "not enough memory", "out of memory", "cannot allocate memory")
_DEVICE_OUT_OF_MEMORY = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                          getattr(torch.cuda, "OutOfMemoryError", None)) if isinstance(t, type))


class DWGFOutOfMemoryError(DWGFRunError):
    """An allocation failed part-way through a run: the message names the run, PyTorch's words and the fix."""


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure (Python's, or any of PyTorch's devices')."""
    if isinstance(error, (MemoryError, *_DEVICE_OUT_OF_MEMORY)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(phrase in text for phrase in _OUT_OF_MEMORY_PHRASES)


def device_words(device: torch.device) -> str:
    return "the CPU" if device.type == "cpu" else str(device)


def pytorch_words(error: BaseException) -> str:
    """PyTorch's message on one line (its CPU allocator's spans several)."""
    return " ".join(str(error).split()) or type(error).__name__


@dataclass(frozen=True)
class RunShape:
    """What a run was asked to do, for the message: the (canvas) image size, particles, memory use."""

    height: int
    width: int
    particles: int
    memory: RunMemory
    device: torch.device
    fast_vae: bool = False
    full_decoder_steps: int = 0

    def message(self, error: BaseException) -> str:
        """The sentence for ``error``: what ran out, PyTorch's words, why the guard let it run, what to try."""
        where, said = device_words(self.device), pytorch_words(error)
        if self.memory.check:
            guard = ("The memory guard had found enough free memory for it: it sees what the device reports free "
                     "and, on the CPU, the process's limits (ulimit -v, a cgroup's), not memory other processes "
                     "take during the run.")
        else:
            guard = "memory_check was off, so the memory guard did not estimate this run first."
        advice = [f"memory mode {' or '.join(lighter)}" for lighter in [self._lighter_modes()] if lighter]
        if self.particles > 1:
            advice.append("fewer particles")
        if not self.fast_vae and not self.memory.psld:
            advice.append("a fast_vae (the tiny VAE in the loop)")
        elif self.fast_vae and self.full_decoder_steps > 0:
            advice.append("full_decoder_steps 0, so only the fast VAE decodes")
        advice.append("a smaller image, or a region around the damage (Crop Around Mask)")
        if not self.memory.check:
            advice.append("memory_check on, so the run is estimated before it starts")
        return (f"memory: ran out of memory while restoring a {self.height}x{self.width} image with "
                f"{self.particles} particles in memory mode '{self.memory.mode}' on {where}. PyTorch said: \"{said}\". "
                f"{guard} The run's memory has been released. To use less: {'; '.join(advice)}.")

    def _lighter_modes(self) -> list[str]:
        """The other memory modes that hold fewer particles' graphs or checkpoint the decoder, lightest last."""

        def weight(at_once: int, checkpointed: bool) -> int:
            return int(0 < at_once < self.particles) + int(checkpointed)

        mine = weight(self.memory.particles_at_once, self.memory.checkpointed)
        return [f"'{name}'" for name, at_once, checkpointed in self.memory.alternatives
                if weight(at_once, checkpointed) > mine]


@dataclass(frozen=True)
class DecodeShape:
    """Particle Decode's decode of ``images`` latents to ``height`` x ``width``: the guard does not cost it
    (it runs after the sampler, without gradients), so a limit it fits under only just can stop it."""

    height: int
    width: int
    images: int
    device: torch.device

    def message(self, error: BaseException) -> str:
        where, said = device_words(self.device), pytorch_words(error)
        return (f"memory: ran out of memory while decoding {self.images} particles of {self.height}x{self.width} "
                f"with the VAE on {where}. PyTorch said: \"{said}\". The decode's memory has been released and "
                "ComfyUI keeps the sampler's particles: with memory freed, queue the prompt again and only the "
                "decode runs. To use less: ComfyUI's VAE Decode (Tiled) on the sampler's LATENT for the particle "
                "images, fewer particles, or a smaller image.")


class explain_out_of_memory:  # noqa: N801 - used as a context manager, reads like one
    """Re-raise an allocation failure inside the context as a :class:`DWGFOutOfMemoryError` for ``run``.

    The failed frames' locals (particles, decoded images, autograd graphs) are cleared and collected
    before the new error is raised: PyTorch's error stays chained for the log, holding no tensors.
    """

    def __init__(self, run: RunShape | DecodeShape) -> None:
        self.run = run

    def __enter__(self) -> explain_out_of_memory:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> bool:
        if error is None or not is_out_of_memory(error):
            return False
        message = self.run.message(error)
        traceback.clear_frames(trace)
        release_freed_memory(self.run.device)
        raise DWGFOutOfMemoryError(message) from error


def release_freed_memory(device: torch.device) -> None:
    """Collect what the cleared frames held and hand it back to the system: the CUDA cache emptied,
    and on Linux the C heap's free pages returned (glibc's ``malloc_trim``; measured on the demo model
    after a failed 160² PSLD run, 0.4 GiB that would otherwise stay resident)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): nothing to trim
            pass
