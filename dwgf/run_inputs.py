"""Getting a sampler's inputs ready for a run: on its device, as ordinary tensors, checked.

DWGF and PSLD share these. ComfyUI builds node outputs under ``torch.inference_mode()``; tensors
made there cannot be saved for backward, so everything a run differentiates through is copied here.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from .errors import require
from .particles import initial_particles


def operator_for_run(operator: Any, device: torch.device) -> Any:
    """A copy of the operator on the run's device, made outside inference mode.

    ComfyUI builds nodes' outputs under ``torch.inference_mode()``; an operator's index or kernel
    tensors made there cannot be saved for backward. Copying them here makes them normal tensors,
    and moving them once avoids a host-device copy every step.
    """
    if operator is None:
        return None
    return operator.to(device) if hasattr(operator, "to") else copy.deepcopy(operator)


def measurement_for_run(measurement: torch.Tensor | None, particles: int, device: torch.device) -> torch.Tensor | None:
    if measurement is None:
        return None
    require(measurement.ndim >= 2 and measurement.shape[0] in (1, particles),
            f"the measurement must be a batch of 1 or of {particles} (one per particle); got shape "
            f"{tuple(measurement.shape)}")
    require(bool(torch.isfinite(measurement).all()), "the measurement contains NaN or infinite values: "
            "check the node that produced it")
    return measurement.detach().to(device=device, dtype=torch.float32).clone()  # clone: a normal tensor


def starting_particles(initial: torch.Tensor | None, n: int, shape: tuple[int, ...], seed: int,
                        device: torch.device) -> torch.Tensor:
    if initial is None:
        return initial_particles(n, shape, seed, device)
    require(tuple(initial.shape) == (n, *shape),
            f"initial particles have shape {tuple(initial.shape)}, expected {(n, *shape)}")
    require(bool(torch.isfinite(initial).all()), "initial particles contain NaN or infinite values")
    return initial.detach().to(device=device, dtype=torch.float32).clone()


def latent_shape_for_run(latent_shape: Any, what: str) -> tuple[int, ...]:
    """One ``what``'s latent shape as ints, checked (``what``: "particle" or "sample")."""
    shape = tuple(int(s) for s in latent_shape)
    require(len(shape) >= 1 and all(s > 0 for s in shape),
            f"latent_shape must be positive sizes of one {what}, got {tuple(latent_shape)}")
    return shape


def device_for_run(device: torch.device | str | None, measurement: torch.Tensor | None) -> torch.device:
    """The run's device: as given, else the measurement's, else the CPU."""
    if device is None:
        device = measurement.device if measurement is not None else "cpu"
    return torch.device(device)
