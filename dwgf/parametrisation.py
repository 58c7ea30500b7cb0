"""Noise parametrisations: how a flow-matching model's noise levels enter DWGF and PSLD.

A discrete eps/v model (SD 1.x/2.x, SDXL) noises variance-preservingly, ``z_t = α z + σ ε`` with
``α² + σ² = 1``. A rectified-flow model (SD3, Flux) interpolates, ``z_t = (1 − t) z + t ε``: ``α = 1 − t``,
``σ = t``, and ``α² + σ² < 1`` in between. Both are the same noisy latent up to a scale:
``z_t / α = z + s ε`` with ``s = σ / α`` (ComfyUI's k-diffusion ``sigma`` for eps/v models).

Why the core needs nothing else. Every quantity of one DWGF iteration depends on the level only
through ``s``: with ``ẑ0`` the model's denoised estimate and ``π`` the mixture weights,

* the mixture weights ``π_ij = softmax_j(−‖z_t^i − α z^j‖² / 2σ²) = softmax_j(−‖x^i − z^j‖² / 2s²)``
  with ``x = z_t / α``;
* the prior gradient ``w (σ/α)(ε_θ − ε̂) / (N d)``: ``ε_θ − ε̂ = α(Σ_j π_ij z^j − ẑ0_i) / σ``, so it is
  ``w (Σ_j π_ij z^j − ẑ0_i) / (N d)`` — no ``α`` or ``σ`` left at all;
* the data and encoder–decoder terms do not see the level.

So a flow level ``t`` is run as the variance-preserving level with the same ``s``,
``ᾱ = α² / (α² + σ²) = (1 − t)² / ((1 − t)² + t²)``, which is the same noisy latent rescaled by
``1/sqrt(α² + σ²)``; the DWGF update is identical (``tests/test_parametrisation.py`` checks it against
the update written directly in flow form). PSLD's DDIM step is defined on ``(ẑ0, ε)`` and carries
over the same way. The ComfyUI adapter builds the table from the model's own sampling object and
converts each call: the denoiser receives ``x = z + s ε`` and ``s``; a flow model is called on
``z_t = x / (1 + s)`` at ``t = s / (1 + s)`` and returns ``ẑ0`` directly.

What does change is the sweep: one iteration per step of the model's own 1000-step table, so a
flow model's sweep visits its own (shifted) noise levels, not SD's. The top of a flow table is pure
noise (``t = 1``, ``α = 0``, ``s = ∞``), which has no k-diffusion form; it is moved halfway to the
level below it.
"""

from __future__ import annotations

import torch

from .errors import require

FLOW_TABLE_STEPS = 1000


def flow_time_from_k_sigma(s: torch.Tensor) -> torch.Tensor:
    """The flow time ``t = s / (1 + s)`` with the same signal-to-noise ratio as k-diffusion ``s``."""
    return s / (1.0 + s)


def k_sigma_from_flow_time(t: torch.Tensor) -> torch.Tensor:
    """``s = t / (1 − t)``: the k-diffusion noise level of flow time ``t < 1``."""
    return t / (1.0 - t)


def flow_input_from_k(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``z_t = (1 − t) z + t ε`` from the k-diffusion ``x = z + s ε``: ``z_t = x / (1 + s)`` (per batch item)."""
    return x / (1.0 + s.reshape(-1, *([1] * (x.ndim - 1))).to(x))


def variance_preserving_alpha_bar(alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``ᾱ = α² / (α² + σ²)``: the VP level with the same ``s = σ/α`` as ``z_t = α z + σ ε``."""
    return alpha.square() / (alpha.square() + sigma.square())


def finite_flow_times(times: torch.Tensor) -> torch.Tensor:
    """Flow times in float64 with pure noise (``t = 1``, ``s = ∞``) moved halfway to 1 from the
    highest time below it (to 0.999 when there is none): the highest level that has a k-diffusion form."""
    t = times.detach().to("cpu", torch.float64).clone()
    require(bool(((t > 0) & (t <= 1)).all()), "the flow model's times must lie in (0, 1]: check the model's "
            "sampling settings or the sigmas given to the sampler")
    below = t[t < 1.0]
    t[t >= 1.0] = (float(below.max()) + 1.0) / 2.0 if below.numel() else 0.999
    return t


def flow_alphas_cumprod(times: torch.Tensor) -> torch.Tensor:
    """A flow model's increasing times ``t_0 < … < t_{T−1}`` (the last may be 1) as the VP-equivalent
    ``ᾱ`` table the samplers sweep, float64 (:func:`finite_flow_times` for the top)."""
    require(times.ndim == 1 and times.numel() >= 2, "the flow model's time table must hold at least 2 times")
    require(bool((times[1:] > times[:-1]).all()), "the flow model's times must increase strictly: check the "
            "model's sampling settings")
    return alpha_bars_of_flow_times(times)


def alpha_bars_of_flow_times(times: torch.Tensor) -> torch.Tensor:
    """Flow times in any order (a table, or a scheduler's sigmas) as VP-equivalent ``ᾱ``, float64, pure
    noise handled by :func:`finite_flow_times`."""
    t = finite_flow_times(times)
    return variance_preserving_alpha_bar(1.0 - t, t)


def flow_time_from_alpha_bar(alpha_bar: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`flow_alphas_cumprod`'s map: the flow time of a VP-equivalent ``ᾱ``."""
    return flow_time_from_k_sigma(((1.0 - alpha_bar) / alpha_bar).sqrt())
