"""DWGF: the diffusion-regularised Wasserstein gradient flow of METHOD.md, in plain PyTorch.

Each iteration moves the ``N`` latent particles ``z`` one optimiser step down

    loss = L_obs + L_prior + c_ae · L_ae

at one diffusion time. Every term of METHOD.md's update has its own function here, named after it:

1. :func:`noise_particles`     — ``z_t = α z + σ ε`` (no gradient)
2. :func:`model_noise`         — ``ε_θ`` from the denoiser, k-diffusion form (no gradient)
3. :func:`mixture_score` / :func:`mixture_noise` — the particle-mixture score ``ŝ`` and ``ε̂ = −σ ŝ``
4. :func:`prior_loss`          — ``w (σ²/α) mean(sg(ŝ − s_θ) ⊙ z)``
5. :func:`data_loss`           — ``mean((y − A(D(z) + n))²) / 2`` over the measured elements
6. :func:`reconstruct` and :func:`autoencoder_loss` — ``L_ae = mean(x ⊙ sg(x − D(E(x + n))))``
7. :func:`iteration_gradient`  — the three terms of one iteration and their gradient in ``z.grad``
8. :func:`run_dwgf`            — the loop: one optimiser step on ``z`` per noise level.

Off by default and not in METHOD.md: a kernel repulsion between particles (:mod:`dwgf.repulsion`),
a warm start (:mod:`dwgf.warm_start`), reusing ``D(E(·))`` between iterations (``ae_every``), and two
ways to leave the full decoder out of most iterations (issue 25): a *fast* autoencoder of the same
latent space (a TAESD-like tiny VAE) for the data and encoder–decoder terms, and, for inpainting, the
data term on the latent grid with no decoder at all (:mod:`dwgf.latent_data`); either way the last
``full_decoder_steps`` iterations run METHOD.md's terms through the full decoder.

Per iteration the networks run exactly once each: the denoiser (batch ``N``), the decoder forward
with gradient and its backward, the encoder and the decoder without gradient. Only ``z`` ever
requires a gradient, no graph outlives its iteration, and every loss is computed in float32
whatever the model's dtype.

Memory (not in METHOD.md; the result is the same up to float rounding): ``particle_chunk`` runs the
networks on that many particles at a time and accumulates the gradient, so the decoder's
activations for only one chunk are alive at once; ``checkpoint_decoder`` keeps none of them and
recomputes the decoder forward during the backward (one more decoder forward per iteration).
Several measurements can share one run (``groups``): each group of ``N`` particles has its own
particle mixture and its own measurement, and receives exactly the gradient it would alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch.utils.checkpoint import checkpoint

from .detail import DEFAULT_STEPS as DETAIL_STEPS
from .detail import DetailSettings, add_detail
from .errors import DWGFRunError, require, require_finite, require_whole
from .latent_data import LatentDataTerm
from .particles import NoiseSource
from .protocols import Autoencoder, Denoiser
from .repulsion import REPULSION_SCHEDULES, repulsion_loss, repulsion_scale
from .run_inputs import (
    device_for_run,
    latent_shape_for_run,
    measurement_for_run,
    operator_for_run,
    starting_particles,
)
from .sampling import StepCallback, Terms, k_diffusion_noise, measure, run_steps
from .schedule import (
    REFERENCE_FIRST_TIMESTEP,
    REFERENCE_LAST_TIMESTEP,
    NoiseLevel,
    reference_levels,
    require_timestep_sweep,
)
from .warm_start import warm_start_particles

OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")
# The last iterations through the full decoder when a fast one is given (issue 25): chosen on the
# demo model's settings crops with bench/frontier.py (README, "The fast path")
FULL_DECODER_STEPS = 5


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DWGFConfig:
    """DWGF's settings; the defaults are METHOD.md's reference run (SD 2.1-base, 512²).

    ``particle_coupling=False`` replaces the particle-mixture score by each particle's own noise
    (``ε̂ = ε``): independent particles doing score distillation — an ablation, not the method.
    ``check_every`` is how often (in iterations) the run looks for NaN when no callback is
    attached; looking costs a host–device synchronisation. ``particle_chunk`` (0 = all at once)
    and ``checkpoint_decoder`` trade speed for memory (module docstring).

    Two cost savings that are not in METHOD.md (issue 15; both off at their defaults):
    ``ae_every`` = k recomputes the encoder–decoder reconstruction ``D(E(x + n))`` only every k-th
    iteration and reuses it in between (the term's gradient still uses the current ``x``), saving
    an encoder and a decoder forward on the other iterations; ``time_power`` = p spaces the sweep's
    timesteps as ``last + (first − last)(1 − u)^p`` for evenly spaced ``u`` (1 = evenly, the
    reference; p > 1 spends more iterations at low noise, p < 1 at high noise). ``warm_start``
    (also not in METHOD.md) starts the particles at ``E(A†y)`` plus noise instead of ``N(0, I)``
    (:mod:`dwgf.warm_start`); pair it with a lower ``first_timestep``. ``repulsion`` > 0 adds a
    kernel repulsion between each measurement's particles with that weight, scheduled over the
    sweep by ``repulsion_schedule`` (:mod:`dwgf.repulsion`; issue 16, not in METHOD.md).

    Leaving the full decoder out (issue 25, not in METHOD.md): when :func:`run_dwgf` is given a
    ``fast_autoencoder``, every iteration but the last ``full_decoder_steps`` decodes (and
    reconstructs) through it instead of the full autoencoder; ``latent_data`` instead replaces the
    data term of those iterations by the decoder-free latent term of :mod:`dwgf.latent_data`
    (inpainting only; weight ``latent_data_weight``, known region eroded by ``latent_erode`` latent
    pixels) and skips the encoder–decoder term there. Without either, ``full_decoder_steps`` has no effect.

    ``detail`` > 0 (issue 26, not in METHOD.md) ends the run with :mod:`dwgf.detail`'s finish: each
    particle re-noised to ``t = 175`` and taken back to 0 in ``detail_steps`` ancestral steps of the
    diffusion model, each estimate moved towards the measurement by Adam steps of learning rate
    ``detail``: sharp samples instead of the flow's mode-seeking smooth ones. ``detail`` 0 is exactly
    the run without it.
    """

    particles: int = 4
    steps: int = 998
    lr: float = 1.0
    prior_weight: float = 0.15
    ae_weight: float = 0.1
    decoder_noise: float = 0.01
    optimizer: str = "adam"
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    seed: int = 0
    first_timestep: int = REFERENCE_FIRST_TIMESTEP
    last_timestep: int = REFERENCE_LAST_TIMESTEP
    particle_coupling: bool = True
    check_every: int = 50
    particle_chunk: int = 0
    checkpoint_decoder: bool = False
    ae_every: int = 1
    time_power: float = 1.0
    warm_start: bool = False
    repulsion: float = 0.0
    repulsion_schedule: str = "high noise"
    full_decoder_steps: int = FULL_DECODER_STEPS
    latent_data: bool = False
    latent_data_weight: float = 1.0
    latent_erode: int = 1
    detail: float = 0.0
    detail_steps: int = DETAIL_STEPS

    def __post_init__(self) -> None:
        require_whole(self.particles, "particles", 1, "use at least 1 particle (the reference uses 4)")
        require_whole(self.steps, "steps", 1, "use at least 1 step (the reference uses 998)")
        require_finite(self.lr, "lr", positive=True, fix="use a positive learning rate (reference: 1.0 with Adam)")
        require_finite(self.prior_weight, "prior_weight", fix="use a weight >= 0 (reference: 0.15)")
        require_finite(self.ae_weight, "ae_weight", fix="use a weight >= 0 (reference: 0.1; 0 switches the term off)")
        require_finite(self.decoder_noise, "decoder_noise", fix="use a standard deviation >= 0 (reference: 0.01)")
        require(self.optimizer in OPTIMIZERS,
                f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}: use 'adam' (the reference) "
                "or 'sgd' (plain gradient descent)")
        require(len(self.betas) == 2 and all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in self.betas),
                f"betas must be two numbers in [0, 1), got {self.betas!r}: the reference uses (0.9, 0.999)")
        require_finite(self.adam_eps, "adam_eps", positive=True, fix="use a small positive number (reference: 1e-8)")
        require(isinstance(self.seed, int), f"seed must be a whole number, got {self.seed!r}")
        require_timestep_sweep(self.steps, self.first_timestep, self.last_timestep, reference_last=2)
        require_whole(self.check_every, "check_every", 1, "check for NaN at least every 1 step")
        require_whole(self.particle_chunk, "particle_chunk", 0,
                      "use 0 for all particles at once, or how many particles the networks see at a time")
        require(isinstance(self.checkpoint_decoder, bool),
                f"checkpoint_decoder must be True or False, got {self.checkpoint_decoder!r}")
        require_whole(self.ae_every, "ae_every", 1,
                      "use 1 to recompute the encoder-decoder reconstruction every iteration (the reference)")
        require_finite(self.time_power, "time_power", positive=True,
                       fix="use a positive power (1 = evenly spaced timesteps, the reference)")
        require(isinstance(self.warm_start, bool), f"warm_start must be True or False, got {self.warm_start!r}")
        require_finite(self.repulsion, "repulsion", fix="use a weight >= 0 (0 switches the repulsion off)")
        require(self.repulsion_schedule in REPULSION_SCHEDULES,
                f"repulsion_schedule must be one of {REPULSION_SCHEDULES}, got {self.repulsion_schedule!r}")
        require_whole(self.full_decoder_steps, "full_decoder_steps", 0,
                      "use 0 or more final iterations through the full VAE decoder")
        require(isinstance(self.latent_data, bool), f"latent_data must be True or False, got {self.latent_data!r}")
        require_finite(self.latent_data_weight, "latent_data_weight", positive=True,
                       fix="use a positive weight for the latent data term (1 = the default)")
        require_whole(self.latent_erode, "latent_erode", 0, "use 0 or more latent pixels of erosion")
        self.detail_settings()  # checks detail and detail_steps

    def detail_settings(self) -> DetailSettings:
        """The ``detail`` finish's settings (:mod:`dwgf.detail`); detail 0 = no finish."""
        return DetailSettings(amount=self.detail, steps=self.detail_steps)

    def uses_full_decoder(self, index: int, total: int) -> bool:
        """Whether iteration ``index`` of ``total`` is one of the last ``full_decoder_steps``."""
        return index >= total - self.full_decoder_steps


# --------------------------------------------------------------------------------------------
# The terms of one iteration (METHOD.md, steps 1–6)
# --------------------------------------------------------------------------------------------
class Measuring(Protocol):
    """What the data term needs from an operator: ``forward`` gathering only measured elements."""

    def forward(self, x: torch.Tensor) -> torch.Tensor: ...


@torch.no_grad()
def noise_particles(z: torch.Tensor, level: NoiseLevel, noise: NoiseSource) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 1: ``z_t = α z + σ ε`` with fresh ``ε ~ N(0, I)``; returns ``(z_t, ε)``."""
    eps = noise.normal(z.shape)
    return level.alpha * z.detach() + level.sigma * eps, eps


@torch.no_grad()
def model_noise(denoiser: Denoiser, z_t: torch.Tensor, level: NoiseLevel) -> torch.Tensor:
    """Step 2: ``ε_θ`` by the k-diffusion route (:func:`dwgf.sampling.k_diffusion_noise`)."""
    return k_diffusion_noise(denoiser.denoise, z_t, level)[0]


def _grouped(t: torch.Tensor, groups: int) -> torch.Tensor:
    """``(G·N, …)`` particles as ``(G, N, d)``: each group is one measurement's particles."""
    require(t.shape[0] % groups == 0, f"{t.shape[0]} particles do not split into {groups} equal groups")
    return t.reshape(groups, t.shape[0] // groups, -1)


@torch.no_grad()
def mixture_weights(z_t: torch.Tensor, z: torch.Tensor, level: NoiseLevel, groups: int = 1) -> torch.Tensor:
    """``π_ij = softmax_j(−‖z_t^i − α z^j‖² / (2σ²))``, an ``(N, N)`` matrix whose rows sum to 1
    (``(G, N, N)``, one per group, when ``groups`` > 1: particles only see their own group).

    Distances are taken directly (no ``‖a‖² + ‖b‖² − 2ab`` cancellation) in float64: at low noise
    the logits reach ~10⁷ and only their differences matter.
    """
    a = _grouped(z_t.detach().double(), groups)
    b = _grouped((level.alpha * z.detach()).double(), groups)
    squared = torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").square()
    weights = torch.softmax(-squared / (2.0 * level.sigma**2), dim=-1)
    return weights[0] if groups == 1 else weights


@torch.no_grad()
def mixture_noise(z_t: torch.Tensor, z: torch.Tensor, level: NoiseLevel, groups: int = 1) -> torch.Tensor:
    """Step 3 as a noise: ``ε̂_i = −σ ŝ_i = Σ_j π_ij (z_t^i − α z^j) / σ``.

    Since ``Σ_j π_ij = 1`` this is ``(z_t^i − α Σ_j π_ij z^j) / σ``: one ``N×N`` by ``N×d`` product
    per group. With one particle it is exactly the noise that made ``z_t`` (score distillation).
    """
    per_group = z.shape[0] // groups
    weights = mixture_weights(z_t, z, level, groups).to(z.dtype).reshape(groups, per_group, per_group)
    nearby = torch.bmm(weights, _grouped(z.detach(), groups)).reshape_as(z)
    return (z_t - level.alpha * nearby) / level.sigma


def mixture_score(z_t: torch.Tensor, z: torch.Tensor, level: NoiseLevel, groups: int = 1) -> torch.Tensor:
    """Step 3: ``ŝ_i = ∇ log((1/N) Σ_j N(z_t^i; α z^j, σ² I))`` — the score of the particles' own
    noised mixture, which pushes particles apart where the model's score pulls them together."""
    return -mixture_noise(z_t, z, level, groups) / level.sigma


def prior_loss(z: torch.Tensor, eps_model: torch.Tensor, eps_mixture: torch.Tensor, level: NoiseLevel,
               weight: float) -> torch.Tensor:
    """Step 4: ``w (σ²/α) mean(sg(ŝ − s_θ) ⊙ z)``, with ``ŝ − s_θ = (ε_θ − ε̂)/σ``.

    Its gradient on particle ``i`` is ``w (σ/α)(ε_θ^i − ε̂^i) / (N d_z)``.
    """
    direction = ((eps_model - eps_mixture) / level.sigma).detach()
    return (weight * level.sigma**2 / level.alpha) * (direction * z).mean()


def data_loss(operator: Measuring, measurement: torch.Tensor, x_noisy: torch.Tensor) -> torch.Tensor:
    """Step 5: ``mean((y − A(x + n))²) / 2``; ``A`` returns only measured elements, so the mean
    runs over the ``N·m`` measurements (``y`` of batch 1 is shared by all particles)."""
    predicted = measure(operator, measurement, x_noisy)
    return 0.5 * (measurement - predicted.float()).square().mean()


@torch.no_grad()
def reconstruct(autoencoder: Autoencoder, x_noisy: torch.Tensor) -> torch.Tensor:
    """Step 6, the network part: ``x_de = D(E(x + n))`` without gradient, in float32."""
    return autoencoder.decode(autoencoder.encode(x_noisy.detach())).to(torch.float32)


def autoencoder_loss(x: torch.Tensor, x_reconstructed: torch.Tensor) -> torch.Tensor:
    """Step 6: ``mean(x ⊙ sg(x − x_de))`` — its gradient pulls ``D(z)`` towards ``D(E(D(z)))``,
    the VAE's estimate of the image-space prior score, through the decoder's Jacobian."""
    return (x * (x - x_reconstructed).detach()).mean()


# --------------------------------------------------------------------------------------------
# One iteration and the loop (step 7)
# --------------------------------------------------------------------------------------------
LOSS_NAMES: tuple[str, ...] = ("loss_obs", "loss_prior", "loss_ae", "loss_repulsion")


@dataclass
class _Problem:
    """What one run works on, checked once and moved to the run's device."""

    denoiser: Denoiser
    autoencoder: Autoencoder | None
    operator: Measuring | None
    measurement: torch.Tensor | None
    config: DWGFConfig
    groups: int = 1
    reconstructions: list[torch.Tensor] | None = None  # D(E(x + n)) per chunk, from the last refresh
    reconstructed_by: Autoencoder | None = None  # the autoencoder that made them
    latent_term: LatentDataTerm | None = None  # the decoder-free data term, when the run uses it


def particle_spans(total: int, chunk: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each chunk of particles the networks see at once (``chunk`` 0 = all)."""
    size = total if chunk <= 0 else min(chunk, total)
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def decode_with_graph(autoencoder: Autoencoder, z: torch.Tensor, checkpointed: bool) -> torch.Tensor:
    """``D(z)`` in float32 with a graph back to ``z``; ``checkpointed`` keeps (almost) no activations
    and recomputes them in the backward (time for one more decoder forward). An autoencoder with
    ``decode_checkpointed`` (block by block) is used as it offers; others are checkpointed whole."""
    if checkpointed:
        blockwise = getattr(autoencoder, "decode_checkpointed", None)
        x = blockwise(z) if blockwise is not None else checkpoint(autoencoder.decode, z, use_reentrant=False)
        return x.to(torch.float32)
    return autoencoder.decode(z).to(torch.float32)


def iteration_gradient(problem: _Problem, z: torch.Tensor, level: NoiseLevel, noise: NoiseSource,
                       refresh: bool = True, autoencoder: Autoencoder | None = None,
                       latent_data: bool = False) -> torch.Tensor:
    """One iteration's gradient, accumulated into ``z.grad``; returns ``(L_obs, L_prior, L_ae, L_rep)`` (float32).

    ``refresh`` False reuses the reconstruction ``D(E(x + n))`` of the last iteration that computed
    it (the loop refreshes every ``config.ae_every``-th iteration, and whenever the autoencoder
    changes). ``autoencoder`` is the one this iteration decodes through (default: the run's full
    one; a fast one for the early iterations, issue 25); ``latent_data`` uses the decoder-free data
    term (:mod:`dwgf.latent_data`) and no decoder at all. The networks see
    ``config.particle_chunk`` particles at a time; each chunk's decoder graph is freed by its own
    backward before the next chunk decodes. Each term is a mean over all particles, so a chunk
    contributes its own mean times its share of the particles. The denoiser runs before any graph
    exists, so the two never hold memory at the same time. The loss is
    scaled by ``groups`` so every group gets the gradient it would get in a run of its own.
    """
    config = problem.config
    autoencoder = problem.autoencoder if autoencoder is None else autoencoder
    total = z.shape[0]
    spans = particle_spans(total, config.particle_chunk)
    zero = z.new_zeros(())
    z_t, eps = noise_particles(z, level, noise)
    if config.prior_weight > 0:
        eps_model = torch.cat([model_noise(problem.denoiser, z_t[a:b], level) for a, b in spans])
        eps_mixture = mixture_noise(z_t, z, level, problem.groups) if config.particle_coupling else eps
        l_prior = prior_loss(z, eps_model, eps_mixture, level, config.prior_weight)
    else:
        l_prior = zero
    l_rep = repulsion_loss(z, problem.groups, repulsion_scale(config.repulsion, config.repulsion_schedule, level))
    l_obs = l_ae = zero
    pending = l_prior + l_rep  # folded into the first chunk's backward
    if latent_data:
        l_obs = problem.latent_term.loss(z)
        torch.autograd.backward(problem.groups * (pending + l_obs), inputs=[z])
        return torch.stack((l_obs.detach(), l_prior.detach(), l_ae, l_rep.detach())).float()
    refresh = refresh or problem.reconstructions is None or problem.reconstructed_by is not autoencoder
    if refresh:
        problem.reconstructions, problem.reconstructed_by = [], autoencoder
    if problem.operator is not None or config.ae_weight > 0:
        decoder_noise = None
        for chunk, (a, b) in enumerate(spans):
            share = (b - a) / total
            x = decode_with_graph(autoencoder, z[a:b], config.checkpoint_decoder)
            x_noisy = x
            if config.decoder_noise > 0:
                if decoder_noise is None:  # one draw for all chunks: chunking does not change the noise
                    decoder_noise = noise.normal((total, *x.shape[1:]), config.decoder_noise)
                x_noisy = x + decoder_noise[a:b]
            chunk_obs = chunk_ae = zero
            if problem.operator is not None:
                y = problem.measurement if problem.measurement.shape[0] == 1 else problem.measurement[a:b]
                chunk_obs = share * data_loss(problem.operator, y, x_noisy)
            if config.ae_weight > 0:
                if refresh:
                    problem.reconstructions.append(reconstruct(autoencoder, x_noisy))
                chunk_ae = share * autoencoder_loss(x, problem.reconstructions[chunk])
            torch.autograd.backward(problem.groups * (pending + chunk_obs + config.ae_weight * chunk_ae),
                                    inputs=[z])
            pending = zero
            l_obs, l_ae = l_obs + chunk_obs.detach(), l_ae + chunk_ae.detach()
    elif pending.requires_grad:
        torch.autograd.backward(problem.groups * pending, inputs=[z])
    return torch.stack((l_obs, l_prior.detach(), l_ae, l_rep.detach())).float()


def run_dwgf(
    denoiser: Denoiser,
    autoencoder: Autoencoder | None,
    config: DWGFConfig,
    latent_shape: Sequence[int],
    operator: Measuring | None = None,
    measurement: torch.Tensor | None = None,
    *,
    levels: Sequence[NoiseLevel] | None = None,
    callback: StepCallback | None = None,
    device: torch.device | str | None = None,
    initial: torch.Tensor | None = None,
    groups: int = 1,
    fast_autoencoder: Autoencoder | None = None,
) -> torch.Tensor:
    """Run DWGF and return the final particles ``z``, ``(G·N, *latent_shape)`` float32, detached.

    ``latent_shape`` is one particle's shape (e.g. ``(4, 64, 64)``).
    ``operator`` and ``measurement`` give the data term; leave both out to flow towards the prior
    alone. ``groups`` > 1 restores ``G`` measurements at once (batch ``G``, or ``G·N``), with
    ``N = config.particles`` consecutive particles each; the operator is shared. ``levels``
    overrides the noise schedule (default: ``config.steps`` timesteps spread evenly from
    ``config.first_timestep`` down to ``config.last_timestep`` of the denoiser's ``alphas_cumprod``).
    ``initial`` overrides the seeded ``N(0, I)`` start. ``callback`` (:class:`dwgf.sampling.StepCallback`)
    sees the losses ``loss_obs``, ``loss_prior``, ``loss_ae`` and ``loss_repulsion`` of every iteration.
    ``fast_autoencoder`` (an autoencoder of the same latent space, e.g. TAESD) replaces ``autoencoder``
    in every iteration but the last ``config.full_decoder_steps`` (issue 25); the warm start still
    encodes with the full one. ``config.latent_data`` leaves the decoder out of those iterations instead.
    """
    require_whole(groups, "groups", 1, "use 1 group per measurement image")
    shape = latent_shape_for_run(latent_shape, "particle")
    require((operator is None) == (measurement is None),
            "give both the operator and the measurement for the data term, or neither for a prior-only run")
    require(autoencoder is not None or (operator is None and config.ae_weight == 0),
            "the data term and the encoder–decoder term need the VAE: connect an autoencoder")
    require(operator is not None or config.prior_weight > 0 or config.ae_weight > 0,
            "nothing to optimise: with no measurement, prior_weight or ae_weight must be > 0")
    require(not config.latent_data or operator is not None,
            "the decoder-free data term compares the particles with the encoded measurement: connect an "
            "inpainting degradation and its measurement, or switch latent_data off")
    if fast_autoencoder is not None:
        require(fast_autoencoder.latent_channels == autoencoder.latent_channels
                and fast_autoencoder.downscale == autoencoder.downscale,
                f"fast_vae: it has {fast_autoencoder.latent_channels} latent channels and downscale "
                f"{fast_autoencoder.downscale}, but the VAE has {autoencoder.latent_channels} and "
                f"{autoencoder.downscale}: connect a tiny VAE of the same latent space")
    require(not config.warm_start or operator is not None,
            "the warm start begins at the encoded measurement: connect a degradation and a measurement, "
            "or set denoise to 1 (the cold start)")
    device = device_for_run(device, measurement)
    levels = list(levels) if levels is not None else dwgf_levels(denoiser.alphas_cumprod, config)
    require(len(levels) > 0, "the noise schedule is empty: use at least 1 step")
    if initial is None and config.warm_start:
        total = config.particles * groups  # each measurement's start, repeated for the particles it serves
        initial = warm_start_particles(autoencoder, operator_for_run(operator, device),
                                       measurement.to(device=device, dtype=torch.float32),
                                       max(1, total // measurement.shape[0]), config.seed)
    if measurement is not None and groups > 1 and measurement.shape[0] == groups:
        measurement = measurement.repeat_interleave(config.particles, dim=0)

    terms = Terms("DWGF", LOSS_NAMES, (1.0, 1.0, config.ae_weight, 1.0), _CAUSES, "the particles",
                  "a gradient that overflowed: a learning rate too high",
                  f"Try a lower lr (now {config.lr}) or prior_weight (now {config.prior_weight})")
    steps = _steps(denoiser, autoencoder, config, operator, measurement, levels, device, initial, groups, shape,
                   fast_autoencoder)
    z = run_steps(steps, levels, terms, config.check_every, callback, device)
    return finish_with_detail(denoiser, autoencoder, config, z, operator, measurement)


def finish_with_detail(denoiser: Denoiser, autoencoder: Autoencoder | None, config: DWGFConfig, z: torch.Tensor,
                       operator: Measuring | None, measurement: torch.Tensor | None) -> torch.Tensor:
    """The ``detail`` finish on the flow's final particles (``z`` unchanged when ``config.detail`` is 0)."""
    settings = config.detail_settings()
    if not settings.active:
        return z
    finished = add_detail(denoiser, autoencoder, z, settings, config.seed, operator, measurement,
                          chunk=config.particle_chunk,
                          decode=lambda latents: decode_with_graph(autoencoder, latents, config.checkpoint_decoder))
    if not bool(torch.isfinite(finished).all()):
        raise DWGFRunError(f"DWGF's detail finish (detail {config.detail}) made NaN or infinite particles, though "
                           "the flow itself ended finite: lower detail, or check that the model and VAE produce "
                           "finite outputs at low noise")
    return finished


def _steps(denoiser: Denoiser, autoencoder: Autoencoder | None, config: DWGFConfig, operator: Measuring | None,
           measurement: torch.Tensor | None, levels: list[NoiseLevel], device: torch.device,
           initial: torch.Tensor | None, groups: int, shape: tuple[int, ...],
           fast_autoencoder: Autoencoder | None = None) -> Iterator:
    """Step 7 at every level: one gradient and one optimiser step on ``z``; yields ``(z, losses, info)``."""
    n = config.particles * groups
    problem = _Problem(denoiser, autoencoder, operator_for_run(operator, device),
                       measurement_for_run(measurement, n, device), config, groups)
    if config.latent_data:
        problem.latent_term = LatentDataTerm.build(problem.operator, problem.measurement, autoencoder,
                                                   config.latent_data_weight, config.latent_erode)
    z = starting_particles(initial, n, shape, config.seed, device).requires_grad_(True)
    optimizer = _make_optimizer(config, z)
    noise = NoiseSource(config.seed, device)
    for index, level in enumerate(levels):
        z.grad = None
        full = config.uses_full_decoder(index, len(levels))
        losses = iteration_gradient(problem, z, level, noise, refresh=index % config.ae_every == 0,
                                    autoencoder=autoencoder if full or fast_autoencoder is None else fast_autoencoder,
                                    latent_data=config.latent_data and not full)
        optimizer.step()
        z.grad = None
        yield z, losses, {"timestep": level.timestep, "alpha_bar": level.alpha_bar}


def dwgf_levels(alphas_cumprod: torch.Tensor, config: DWGFConfig) -> list[NoiseLevel]:
    """``config.steps`` timesteps from ``first_timestep`` down to ``last_timestep``, spread evenly
    (or warped by ``time_power``)."""
    return reference_levels(alphas_cumprod, config.steps, config.first_timestep, config.last_timestep,
                            config.time_power)


def _make_optimizer(config: DWGFConfig, z: torch.Tensor) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam([z], lr=config.lr, betas=tuple(config.betas), eps=config.adam_eps)
    return torch.optim.SGD([z], lr=config.lr)


_CAUSES = {  # the likely cause of a divergence, by the first term that went bad
    "loss_obs": "the decoded image or the data term: a learning rate too high, or a VAE that overflows "
                "(a float16 VAE often does; try a float32 or bfloat16 VAE)",
    "loss_prior": "the prior term: a learning rate too high, a prior weight too strong, or a diffusion model "
                  "that returns NaN",
    "loss_ae": "the encoder–decoder term: an encoder–decoder weight too strong, or a VAE that overflows",
    "loss_repulsion": "the repulsion between particles: a repulsion weight too strong",
}


# --------------------------------------------------------------------------------------------
# Helpers for callers
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def decode_particles(autoencoder: Autoencoder, z: torch.Tensor) -> torch.Tensor:
    """METHOD.md's output: all ``N`` decoded particles ``D(z)``, float32, in [-1, 1] (unclamped)."""
    return autoencoder.decode(z.detach()).to(torch.float32)
