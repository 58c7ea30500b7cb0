"""What DWGF and PSLD share: the ε of a k-diffusion denoiser, the measurement check, and the loop.

The loop (:func:`run_steps`) runs outside ComfyUI's inference mode, logs each step's terms into a
tensor on the device, hands a callback its info (the one host–device synchronisation a callback
costs), looks for NaN every ``check_every`` steps otherwise, and names the first bad step, term and
likely cause when a run diverges. Each sampler supplies its steps and a :class:`Terms`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from .errors import DWGFInputError, DWGFRunError
from .schedule import NoiseLevel


def k_diffusion_noise(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], z_t: torch.Tensor,
                      level: NoiseLevel) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ε, ẑ0)`` by the k-diffusion route: ``x = z_t / α``, ``s = σ/α``, ``ẑ0 = denoise(x, s)``,
    ``ε = (x − ẑ0) / s``. ComfyUI's models denoise in this form whatever they predict (eps or v)."""
    s = level.k_sigma
    x = z_t / level.alpha
    sigmas = torch.full((z_t.shape[0],), s, device=z_t.device, dtype=z_t.dtype)
    denoised = denoise(x, sigmas).to(z_t.dtype)
    return (x - denoised) / s, denoised


def measure(operator: Any, measurement: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``A(image)``, checked against the measurement's shape (the operator returns measured elements only)."""
    predicted = operator.forward(image)
    if predicted.shape[1:] != measurement.shape[1:]:
        raise DWGFInputError(
            f"the measurement has shape {tuple(measurement.shape[1:])} but the operator maps the decoded "
            f"image {tuple(image.shape[1:])} to {tuple(predicted.shape[1:])}: build the degradation for "
            "the image size the VAE decodes these latents to")
    return predicted


class StepCallback(Protocol):
    """Called after every step with ``(step_index, total_steps, z, info)``; raise to stop the run.

    ``z`` is a detached view of the latents; ``info`` holds the step's ``timestep`` and ``alpha_bar``,
    ``loss`` and every logged term as a float (each sampler documents its extra keys).
    """

    def __call__(self, step_index: int, total_steps: int, z: torch.Tensor, info: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Terms:
    """What a sampler logs each step (one float32 row of ``names``), its ``loss = Σ weight · term``,
    and how a divergence is explained: the likely cause by first bad term, what to blame (and why)
    when only the latents went bad, the advice, and whether to name the first bad term only
    (terms in causal order, where the later ones are its consequences)."""

    sampler: str
    names: tuple[str, ...]
    weights: tuple[float, ...]
    causes: dict[str, str]
    latents: str
    overflow: str
    advice: str
    first_only: bool = False

    def diverged(self, history: torch.Tensor, upto: int, levels: Sequence[NoiseLevel]) -> DWGFRunError:
        step, bad = first_bad_step(history, upto, self.names)
        what = (bad[0] if self.first_only else " and ".join(bad)) if bad else self.latents
        cause = self.causes[bad[0]] if bad else self.overflow
        return DWGFRunError(
            f"{self.sampler} diverged at step {step + 1} of {len(levels)} ({describe_level(levels[step])}): "
            f"{what} became NaN or infinite. Likely cause: {cause}. {self.advice}, "
            "or check that the model and VAE produce finite outputs.")


def run_steps(steps: Iterator[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]], levels: Sequence[NoiseLevel],
              terms: Terms, check_every: int, callback: StepCallback | None,
              device: torch.device) -> torch.Tensor:
    """Run a sampler's ``steps`` (one ``(z, logged row, info)`` per level) to the end; returns ``z`` detached.

    The steps run outside inference mode with gradients on (ComfyUI runs nodes in inference mode),
    so a sampler's setup belongs inside its step generator.
    """
    total = len(levels)
    with torch.inference_mode(False), torch.enable_grad():
        history = torch.zeros((total, len(terms.names)), dtype=torch.float32, device=device)
        for k, (z, row, info) in enumerate(steps):
            history[k] = row
            if callback is not None:
                values = row.tolist()  # the one synchronisation a callback costs
                if not all(math.isfinite(v) for v in values):
                    raise terms.diverged(history, k, levels)
                loss = sum(w * v for w, v in zip(terms.weights, values, strict=True))
                callback(k, total, z.detach(), {**info, "loss": loss, **dict(zip(terms.names, values, strict=True))})
            elif (k + 1) % check_every == 0 and not all_finite(history, z, k):
                raise terms.diverged(history, k, levels)
        if not all_finite(history, z, total - 1):
            raise terms.diverged(history, total - 1, levels)
    return z.detach()


def all_finite(history: torch.Tensor, z: torch.Tensor, upto: int) -> bool:
    """Whether the logged terms of steps ``0 … upto`` and the latents are all finite (one sync)."""
    return bool(torch.isfinite(history[: upto + 1]).all() & torch.isfinite(z.detach()).all())


def first_bad_step(history: torch.Tensor, upto: int, names: Sequence[str]) -> tuple[int, list[str]]:
    """The first step whose logged terms are not all finite (``upto`` if none) and those terms' names."""
    rows = torch.isfinite(history[: upto + 1]).all(1).cpu()
    bad = (~rows).nonzero().flatten()
    step = int(bad[0]) if bad.numel() else upto
    values = history[step].cpu().tolist()
    return step, [name for name, value in zip(names, values, strict=True) if not math.isfinite(value)]


def describe_level(level: NoiseLevel) -> str:
    """Where in the schedule a step was, for error messages."""
    return f"timestep {level.timestep}" if level.timestep is not None else f"alpha_bar {level.alpha_bar:.4g}"
