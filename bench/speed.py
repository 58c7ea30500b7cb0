"""Speed and memory of DWGF and PSLD on the full-size SD 1.5 and SDXL networks (issue 7).

Why: DWGF's reference run is 998 iterations, and each runs, for every particle, a UNet forward, a
VAE-decoder forward and backward, an encoder and a decoder pass. This measures what one iteration
costs, where its time goes, whether anything is spent beyond those network calls, how cost and
memory grow with the number of particles N and the resolution, and what the memory modes of the
DWGF Sampler (particle chunking, decoder checkpointing) save and cost.

What runs — the real SD 1.5 / SDXL architectures with random weights (``tools/sd_architectures.py``)
inside the real ComfyUI, in-process:

* **components**, each timed alone at batch N on the very objects the DWGF Sampler node uses (the
  guided model ComfyUI hands to a KSAMPLER function, cfg 1, and ``prepare_vae``'s ComfyVAE): UNet
  forward, decoder forward with graph, its backward, decoder without gradient, encoder, the
  particle-mixture score and one Adam step; for PSLD the UNet, decoder and encoder each forward
  with graph and backward;
* **the iteration** through the node's own path (``sample_each_measurement`` → ComfyUI's
  ``sample_custom`` → KSAMPLER → ``run_dwgf`` / ``run_psld``, box inpainting, the node's settings
  and callback: progress bar, preview, cancel check), timed between consecutive callbacks;
* **one KSampler step**: ``comfy.sample.sample`` (euler, cfg 1, batch 1), timed between callbacks.

Timing: the first run at each size makes a warm-up iteration (the memory probe) and times the
iterations after it (median); later runs at that size time their one, memory-probed iteration.
Components run after the iterations of the same shapes, median of ``--repeats``. The overhead
ratio is also measured with iterations and component timings interleaved in one run. On the CPU
the ratios use the process CPU time (with one torch thread it is the compute thread's time, so
another job on the machine slows the wall clock more than the ratios); wall seconds are recorded
too. On CUDA everything is wall time between synchronisations.

Memory, device-independent on the CPU: PyTorch's CPU allocator reports every allocation and free
to the profiler (``profile_memory=True``); the running sum of those events over the warm-up
iteration gives its **peak working memory** — bytes of tensors alive at once above what existed
before the iteration (weights, inputs), i.e. what a GPU allocator must hold on top of the weights,
without its caching and fragmentation. Also recorded: the bytes autograd saves for backward
(``saved_tensors_hooks``, deduplicated by storage, parameters excluded), and the peak inside the
UNet call versus the rest. On CUDA: ``torch.cuda.max_memory_allocated`` above the start.

**The fast path (issue 25)**: the tiny decoders (ComfyUI's own TAESD class, loaded by its ``VAELoader`` from
random-weight files, ``tools/sd_architectures.build_taesd``) timed per network beside the full VAE and the
denoiser in one run — SD 1.5 at 512², SDXL, SD3.5 medium and Flux dev at 1024² (the flow transformers at
reduced depth, each block timed and the full depth composed from the per-block times) — and a few whole
DWGF iterations with the fast path through ``run_dwgf`` (SD 1.5, 256²) against the same composition.
Where a full decoder's backward cannot run here (1024²: ~23 GiB saved for backward per particle), it is
timed at 512² and scaled by the full decoder's own measured no-grad 1024²/512² ratio. ``speed_report``
composes each preset's whole-run cost from these times. ``--only-fast`` runs this part alone.

Run: ``.venv/bin/python bench/speed.py`` (≈ 40 min of CPU time on one thread, 24 GB of RAM; cached in
``bench/results/speed.json``, a rerun skips what is there; ``--fresh`` re-measures;
``--report-only`` rewrites ``speed.md`` from the cache; ``--quick`` is a 2-minute smoke run at 64²).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch starts its thread pool

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import comfyui_env  # noqa: E402
from speed_report import (  # noqa: E402
    ALL_MODES,
    AUTOENCODER_CALLS,
    DWGF_NETWORK_CALLS,
    MEMORY_MODE_NAMES,
    MIB,
    PROPOSED_MODE,
    write_report,
)

RESULTS = REPO / "bench" / "results"
CLEAN = "clean (simulate the measurement)"
TASK = "inpaint box (DWGF reference)"
FAMILY_DTYPES = {"sd15": torch.float32, "sdxl": torch.bfloat16, "sd3": torch.bfloat16, "flux": torch.bfloat16}


# ---------------------------------------------------------------------------------------------
# What to measure
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One configuration (model, image size, particles, memory mode) and the parts measured on it."""

    family: str
    size: int
    particles: int
    mode: str = "fastest"
    parts: tuple[str, ...] = ("dwgf", "components")
    warm_up: bool = False  # the first run at this size: one warm-up iteration before the timed ones

    @property
    def key(self) -> str:
        return f"{self.family}/{self.size}px/N{self.particles}/{self.mode}"


def plan(args: argparse.Namespace) -> list[Case]:
    """The cases of one run, grouped by model family (each family is built once)."""
    cases: list[Case] = []
    for family in args.families:
        if family == "sd15":
            cases += sd15_cases(args)
        else:
            cases += [Case(family, size, 1, parts=("ksampler", "dwgf", "components"), warm_up=True)
                  for size in args.sizes]
    return cases


def sd15_cases(args: argparse.Namespace) -> list[Case]:
    """N scaling at the base size, the memory modes, and N = 1 at the large size."""
    base = args.sizes[0]
    cases = []
    for n in args.particles:
        parts = ("ksampler", "dwgf", "components") if n == 1 else ("dwgf", "components")
        if n == 1 and args.psld:
            parts += ("psld", "psld_components")
        if n == 1 and args.overhead_rounds:
            parts += ("overhead",)
        cases.append(Case("sd15", base, n, parts=parts, warm_up=n == 1))
    if args.mode_particles:
        cases += [Case("sd15", base, args.mode_particles, mode, ("dwgf",)) for mode in ALL_MODES[1:]]
    if args.large_size:
        cases.append(Case("sd15", args.large_size, 1, parts=("ksampler", "dwgf", "components"), warm_up=True))
        cases += [Case("sd15", args.large_size, 1, mode, ("dwgf",)) for mode in ALL_MODES[2:]]
    cases += [Case("sd15", base, n, "chunked", ("dwgf",)) for n in args.chunked_particles]
    return cases


# ---------------------------------------------------------------------------------------------
# Timing and memory probes
# ---------------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock() -> tuple[float, float]:
    """(wall, process CPU) seconds."""
    return time.perf_counter(), time.process_time()


def elapsed(since: tuple[float, float]) -> dict[str, float]:
    wall, cpu = clock()
    return {"wall": wall - since[0], "cpu": cpu - since[1]}


def median_timing(samples: list[dict[str, float]]) -> dict[str, float]:
    return {name: statistics.median(s[name] for s in samples) for name in ("wall", "cpu")}


class MemoryProbe:
    """Peak bytes of tensors alive at once between ``start`` and ``stop``, above the start.

    CPU: the profiler's allocation/free events (exact tensor bytes, no allocator caching); CUDA:
    ``max_memory_allocated``. ``windows`` (``time.time_ns`` pairs, the profiler's clock) split the
    CPU peak into inside and outside those windows (e.g. the UNet call).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.profiler: torch.profiler.profile | None = None
        self.base = 0
        self.windows: list[tuple[int, int]] = []
        self.result: dict[str, float] = {}

    def start(self) -> None:
        self.windows = []
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return
        self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True)
        self.profiler.__enter__()

    def stop(self) -> dict[str, float]:
        if self.device.type == "cuda":
            synchronize(self.device)
            self.result = {"peak": float(torch.cuda.max_memory_allocated(self.device) - self.base)}
            return self.result
        self.profiler.__exit__(None, None, None)
        events = [e for e in self.profiler.profiler.kineto_results.events() if e.name() == "[memory]"]
        self.profiler = None
        self.result = running_peaks(sorted((e.start_ns(), e.nbytes()) for e in events), self.windows)
        return self.result


def running_peaks(events: list[tuple[int, int]], windows: list[tuple[int, int]]) -> dict[str, float]:
    """Peak of the running sum of (time, ±bytes) events, overall, inside ``windows`` and outside."""
    total = peak = inside = outside = end = 0
    for when, change in events:
        total += change
        peak = max(peak, total)
        if any(a <= when <= b for a, b in windows):
            inside = max(inside, total)
        else:
            outside = max(outside, total)
        end = total
    result = {"peak": float(peak), "end": float(end)}
    if windows:
        result.update(peak_in_unet=float(inside), peak_outside_unet=float(outside))
    return result


@contextmanager
def saved_for_backward(exclude: set[int]) -> Iterator[dict[int, int]]:
    """Bytes autograd saves for backward, by storage (``exclude``: the weights' storages)."""
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in exclude:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield saved


def weight_storages(*modules: torch.nn.Module) -> set[int]:
    return {t.untyped_storage().data_ptr() for m in modules for t in [*m.parameters(), *m.buffers()]}


def module_bytes(module: torch.nn.Module) -> dict[str, float]:
    """Parameter count and bytes as loaded."""
    params = list(module.parameters())
    return {"parameters": float(sum(p.numel() for p in params)),
            "bytes": float(sum(p.numel() * p.element_size() for p in params))}


# ---------------------------------------------------------------------------------------------
# The pack and the models, as ComfyUI loaded them
# ---------------------------------------------------------------------------------------------
@dataclass
class Pack:
    """The pack's modules as ComfyUI imported them (the same objects its nodes use)."""

    nodes: Any = field(default_factory=comfyui_env.import_comfyui)

    def __post_init__(self) -> None:
        sub = comfyui_env.pack_submodule
        self.flow, self.psld, self.schedule = sub("dwgf.flow"), sub("dwgf.psld"), sub("dwgf.schedule")
        self.adapter, self.restoration = sub("nodes.comfy_adapter"), sub("nodes.restoration")
        self.memory_modes = sub("nodes.sampler_inputs").MEMORY_MODES

    def unchecked_memory(self) -> Any:
        """The samplers' memory guard switched off: this script measures the memory itself."""
        return comfyui_env.pack_submodule("nodes.memory_guard").RunMemory("benchmark", 0, check=False)

    def memory_mode(self, name: str) -> tuple[int, bool]:
        """(particle_chunk, checkpoint_decoder) of the node's memory mode ``name`` (the comparison: checkpointed)."""
        if name == PROPOSED_MODE:
            return self.memory_mode("checkpointed")
        return list(self.memory_modes.values())[MEMORY_MODE_NAMES.index(name)]


@dataclass
class Models:
    """One family's MODEL, VAE and conditioning, the device ComfyUI computes on, and the latent layout."""

    family: str
    sd: Any
    device: torch.device
    latent_channels: int
    downscale: int

    def latent_shape(self, particles: int, size: int) -> tuple[int, int, int, int]:
        """The particles' latents for ``size``² images."""
        return (particles, self.latent_channels, size // self.downscale, size // self.downscale)


def build_models(pack: Pack, family: str, dtype: torch.dtype) -> Models:
    import sd_architectures

    with torch.inference_mode():
        sd = sd_architectures.build_random_sd(family, dtype)
    return Models(family, sd, pack.adapter.torch_device(), pack.adapter.model_latent_channels(sd.model),
                  pack.adapter.vae_downscale_ratio(sd.vae))


def measurement_problem(pack: Pack, models: Models, size: int) -> tuple[Any, Any]:
    """(degradation, MeasurementBatch) for the reference box inpainting of a random ``size``² image."""
    image = torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(0))
    inputs = {**comfyui_env.node_defaults("DWGF_DegradationOperator"), "image": image, "image_is": CLEAN,
              "operator": TASK, "sigma_y": 0.001, "seed": 0}
    degradation, measurement, _ = comfyui_env.call_node("DWGF_DegradationOperator", **inputs)
    with torch.inference_mode():
        batch = pack.restoration.MeasurementBatch.prepare(models.sd.model, models.sd.vae, degradation, measurement)
    return degradation, batch


# ---------------------------------------------------------------------------------------------
# Iterations through the node's path
# ---------------------------------------------------------------------------------------------
class StepClock:
    """Times each iteration between the run's callbacks and probes the memory of the first."""

    def __init__(self, device: torch.device, exclude: set[int]) -> None:
        self.device = device
        self.exclude = exclude
        self.probe = MemoryProbe(device)
        self.marks: list[dict[str, float]] = []
        self.saved_bytes = 0.0
        self._hooks: Any = None
        self._saved: dict[int, int] = {}

    def start(self) -> None:
        self.probe.start()
        self._hooks = saved_for_backward(self.exclude)
        self._saved = self._hooks.__enter__()
        synchronize(self.device)
        self._since = clock()

    def wrap(self, callback: Callable) -> Callable:
        """The node's callback with a time mark (and the end of the memory probe) in front."""

        def marked(k: int, total: int, *rest: Any) -> None:
            synchronize(self.device)
            self.marks.append(elapsed(self._since))
            if k == 0:
                self._hooks.__exit__(None, None, None)
                self.saved_bytes = float(sum(self._saved.values()))
                self.probe.stop()
            self._since = clock()
            callback(k, total, *rest)

        return marked

    def timed_denoiser(self, denoiser: Any) -> Any:
        """The denoiser with its calls marked on the profiler's clock (peak inside the UNet)."""
        probe = self.probe

        def marked(call: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable:
            def timed(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
                begin = time.time_ns()
                try:
                    return call(x, sigma)
                finally:
                    probe.windows.append((begin, time.time_ns()))

            return timed

        class Marked:
            alphas_cumprod = denoiser.alphas_cumprod
            denoise = staticmethod(marked(denoiser.denoise))
            denoise_differentiable = staticmethod(marked(denoiser.denoise_differentiable))

        return Marked()

    def summary(self) -> dict[str, Any]:
        timed = self.marks[1:] or self.marks
        return {"iteration": median_timing(timed), "first_iteration": self.marks[0], "timed_iterations": len(timed),
                "timed_on_probed_iteration": len(self.marks) == 1,
                "memory": {**self.probe.result, "saved_for_backward": self.saved_bytes}}


def dwgf_iterations(pack: Pack, models: Models, case: Case, steps: int) -> dict[str, Any]:
    """``steps`` DWGF iterations exactly as the DWGF Sampler node runs them (box inpainting)."""
    sd = models.sd
    degradation, batch = measurement_problem(pack, models, case.size)
    chunk, checkpointed = pack.memory_mode(case.mode)
    config = pack.flow.DWGFConfig(particles=case.particles, steps=steps, seed=0, particle_chunk=chunk,
                                  checkpoint_decoder=checkpointed)
    levels = pack.flow.dwgf_levels(pack.adapter.model_alphas_cumprod(sd.model), config)
    stepper = StepClock(models.device, exclude=set())

    def timed_run(denoiser: Any, autoencoder: Any, *args: Any, callback: Callable, **kwargs: Any) -> Any:
        stepper.exclude = weight_storages(sd.vae.first_stage_model)
        stepper.start()
        if case.mode == PROPOSED_MODE:
            autoencoder = WholeDecoderCheckpointedVAE(autoencoder)
        return pack.flow.run_dwgf(stepper.timed_denoiser(denoiser), autoencoder, *args,
                                  callback=stepper.wrap(callback), **kwargs)

    with torch.inference_mode():
        pack.restoration.sample_each_measurement(timed_run, config, levels, batch, sd.model, sd.positive,
                                                 sd.negative, sd.vae, 1.0, pack.unchecked_memory())
    return stepper.summary()


class WholeDecoderCheckpointedVAE:
    """The node's VAE without its block-by-block checkpointing, so ``checkpoint_decoder`` falls back to
    checkpointing the whole decoder as one piece (the first version of 'least memory')."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "decode_checkpointed":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.inner.decode(z)


def psld_iterations(pack: Pack, models: Models, case: Case, steps: int) -> dict[str, Any]:
    """``steps`` PSLD steps exactly as the PSLD Sampler node runs them (reference ω, γ)."""
    sd = models.sd
    degradation, batch = measurement_problem(pack, models, case.size)
    omega, gamma = pack.psld.reference_weights(degradation.operator)
    config = pack.psld.PSLDConfig(particles=case.particles, steps=steps, seed=0, omega=omega, gamma=gamma)
    levels = pack.psld.psld_levels(pack.adapter.model_alphas_cumprod(sd.model), config)
    stepper = StepClock(models.device, exclude=set())

    def timed_run(denoiser: Any, *args: Any, callback: Callable, **kwargs: Any) -> Any:
        stepper.exclude = weight_storages(sd.vae.first_stage_model, sd.model.model.diffusion_model)
        stepper.start()
        return pack.psld.run_psld(stepper.timed_denoiser(denoiser), *args, callback=stepper.wrap(callback), **kwargs)

    with torch.inference_mode():
        pack.restoration.sample_each_measurement(timed_run, config, levels, batch, sd.model, sd.positive,
                                                 sd.negative, sd.vae, 1.0, pack.unchecked_memory(),
                                                 differentiable_model=True)
    return stepper.summary()


def ksampler_steps(pack: Pack, models: Models, case: Case, steps: int) -> dict[str, Any]:
    """ComfyUI's own sampler (euler, cfg 1, batch 1): seconds per step, between its callbacks."""
    sd = models.sd
    latent = torch.zeros(models.latent_shape(1, case.size))
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))
    marks: list[dict[str, float]] = []
    since = [clock()]

    def callback(*_: Any) -> None:
        synchronize(models.device)
        marks.append(elapsed(since[0]))
        since[0] = clock()

    with torch.inference_mode():
        comfyui_env.sample_euler(sd.model, noise, steps + 1, sd.positive, sd.negative, latent, callback)
    return {"step": median_timing(marks[1:]), "timed_steps": len(marks) - 1}


# ---------------------------------------------------------------------------------------------
# Components, each alone, inside ComfyUI's sampler (the objects the node uses)
# ---------------------------------------------------------------------------------------------
def inside_sampler(pack: Pack, models: Models, case: Case, work: Callable, differentiable: bool = False) -> Any:
    """Call ``work(denoiser, autoencoder, level, device)`` where the node's run would start."""
    sd = models.sd
    alphas = pack.adapter.model_alphas_cumprod(sd.model)
    level = pack.schedule.levels_from_timesteps(alphas, [500])[0]
    shape = models.latent_shape(case.particles, case.size)
    out: dict[str, Any] = {}

    def run(denoiser: Any, device: torch.device, on_step: Callable) -> torch.Tensor:
        autoencoder = pack.adapter.prepare_vae(sd.vae, sd.model)
        out["result"] = work(denoiser, autoencoder, level, device)
        return torch.zeros(shape, device=device)

    sigmas = torch.tensor([level.k_sigma], dtype=torch.float64)
    with torch.inference_mode():
        pack.adapter.sample_with_comfyui(sd.model, sd.positive, sd.negative, 1.0, sigmas, shape, 0, run,
                                         differentiable_model=differentiable)
    return out["result"]


class ComponentTimer:
    """Times and memory-probes single calls; keeps every repeat."""

    def __init__(self, device: torch.device, probe_memory: bool = True) -> None:
        self.device = device
        self.probe_memory = probe_memory
        self.samples: dict[str, list[dict[str, float]]] = {}

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        probe = MemoryProbe(self.device)
        if self.probe_memory:
            probe.start()
        synchronize(self.device)
        since = clock()
        value = fn()
        synchronize(self.device)
        timing = elapsed(since)
        if self.probe_memory:
            timing.update({f"memory_{k}": v for k, v in probe.stop().items()})
        self.samples.setdefault(name, []).append(timing)
        return value

    def summary(self) -> dict[str, dict[str, float]]:
        result = {}
        for name, samples in self.samples.items():
            result[name] = median_timing(samples)
            result[name].update({k: max(s[k] for s in samples) for k in samples[0] if k.startswith("memory_")})
        return result


def dwgf_components(pack: Pack, models: Models, case: Case, repeats: int) -> dict[str, Any]:
    """The network calls of one DWGF iteration, and its two small kernels, each alone at batch N."""

    def work(denoiser: Any, autoencoder: Any, level: Any, device: torch.device) -> dict[str, Any]:
        timer = ComponentTimer(device)
        shape = models.latent_shape(case.particles, case.size)
        for _ in range(repeats):
            time_dwgf_components(pack.flow, timer, denoiser, autoencoder, level, shape, device)
        return timer.summary()

    return {"seconds": inside_sampler(pack, models, case, work)}


def time_dwgf_components(flow: Any, timer: ComponentTimer, denoiser: Any, autoencoder: Any, level: Any,
                         shape: tuple[int, ...], device: torch.device) -> None:
    """One timing of each DWGF component at the particles' ``shape``."""
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(shape, generator=generator).to(device)
    z_t = level.alpha * z + level.sigma * torch.randn(shape, generator=generator).to(device)
    timer("unet", lambda: flow.model_noise(denoiser, z_t, level))
    leaf = z.clone().requires_grad_(True)
    x = timer("decoder_forward", lambda leaf=leaf: flow.decode_with_graph(autoencoder, leaf, False))
    timer("decoder_backward", lambda x=x, leaf=leaf: torch.autograd.backward(x.square().mean(), inputs=[leaf]))
    image = x.detach()
    del x, leaf
    timer("decoder_no_grad", lambda: flow.decode_particles(autoencoder, z))
    timer("encoder", lambda: autoencoder.encode(image))
    timer("mixture_score", lambda: flow.mixture_noise(z_t, z, level))
    timer("adam_step", adam_step(z))


def overhead_rounds(pack: Pack, models: Models, case: Case, rounds: int) -> dict[str, Any]:
    """Iterations and component timings interleaved in one node-path run: the overhead ratio, robustly.

    Between iterations (inside the run's callback, with the run's own denoiser and VAE) every component
    is timed once; each round pairs an iteration with the components timed just before it, so a slow
    spell on a shared machine hits both sides of a ratio alike. No memory probe runs.
    """
    sd = models.sd
    degradation, batch = measurement_problem(pack, models, case.size)
    config = pack.flow.DWGFConfig(particles=case.particles, steps=rounds + 1, seed=0)
    levels = pack.flow.dwgf_levels(pack.adapter.model_alphas_cumprod(sd.model), config)
    middle = pack.schedule.levels_from_timesteps(pack.adapter.model_alphas_cumprod(sd.model), [500])[0]
    shape = (case.particles, *batch.latent_shape)
    iterations_: list[dict[str, float]] = []
    sums: list[dict[str, float]] = []

    def interleaved_run(denoiser: Any, autoencoder: Any, *args: Any, device: torch.device, callback: Callable,
                        **kwargs: Any) -> Any:
        since = [clock()]

        def between(k: int, total: int, *rest: Any) -> None:
            synchronize(device)
            iterations_.append(elapsed(since[0]))
            callback(k, total, *rest)
            if k + 1 < total:
                timer = ComponentTimer(device, probe_memory=False)
                time_dwgf_components(pack.flow, timer, denoiser, autoencoder, middle, shape, device)
                parts = timer.summary()
                sums.append({c: sum(parts[name][c] for name in DWGF_NETWORK_CALLS) for c in ("wall", "cpu")})
            synchronize(device)
            since[0] = clock()

        return pack.flow.run_dwgf(denoiser, autoencoder, *args, device=device, callback=between, **kwargs)

    with torch.inference_mode():
        pack.restoration.sample_each_measurement(interleaved_run, config, levels, batch, sd.model, sd.positive,
                                                 sd.negative, sd.vae, 1.0, pack.unchecked_memory())
    timed = iterations_[1:]
    ratios = {c: [it[c] / total[c] for it, total in zip(timed, sums, strict=True)] for c in ("wall", "cpu")}
    return {"iterations": timed, "network_sums": sums, "ratios": ratios,
            "median_ratio": {c: statistics.median(r) for c, r in ratios.items()},
            "min_ratio": {c: min(it[c] for it in timed) / min(t[c] for t in sums) for c in ("wall", "cpu")}}


def adam_step(z: torch.Tensor) -> Callable[[], None]:
    """One Adam step on a copy of ``z`` whose state already exists (as in every step after the first)."""
    particles = z.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([particles], lr=1.0)
    particles.grad = torch.randn_like(particles)
    optimizer.step()
    return optimizer.step


def psld_components(pack: Pack, models: Models, case: Case, repeats: int) -> dict[str, Any]:
    """PSLD's network calls (UNet, decoder, encoder), each forward with graph and backward alone."""
    psld = pack.psld

    def work(denoiser: Any, autoencoder: Any, level: Any, device: torch.device) -> dict[str, Any]:
        timer = ComponentTimer(device)
        shape = models.latent_shape(case.particles, case.size)
        z_t = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
        for _ in range(repeats):
            leaf = z_t.clone().requires_grad_(True)
            _, denoised = timer("unet_forward", lambda leaf=leaf: psld.predict_noise(denoiser, leaf, level))
            timer("unet_backward",
                  lambda d=denoised, leaf=leaf: torch.autograd.backward(d.square().sum(), inputs=[leaf]))
            latent = denoised.detach().requires_grad_(True)
            del denoised, leaf
            image = timer("decoder_forward", lambda latent=latent: psld.decode(autoencoder, latent))
            timer("decoder_backward", lambda i=image, latent=latent: torch.autograd.backward(i.square().sum(),
                                                                                               inputs=[latent]))
            pixels = image.detach().requires_grad_(True)
            del image
            encoded = timer("encoder_forward", lambda pixels=pixels: psld.encode(autoencoder, pixels))
            timer("encoder_backward", lambda e=encoded, pixels=pixels: torch.autograd.backward(e.square().sum(),
                                                                                                 inputs=[pixels]))
            del encoded
        return timer.summary()

    return {"seconds": inside_sampler(pack, models, case, work, differentiable=True)}


# ---------------------------------------------------------------------------------------------
# The fast path (issue 25): tiny decoders against the full ones, per network, in one run
# ---------------------------------------------------------------------------------------------
SCALING_VAE = "kl-f8-4ch"  # the 16-channel VAE differs only in its first and last layers: scaled like it
# The 16-channel VAE and TAESD (SD3, Flux) are their 4-channel twins but for the first convolution of each
# decoder and the last of each encoder (4 or 16 latent channels at the latent resolution, < 0.1 % of the
# arithmetic): they are timed as those twins, which the 4-channel families measure anyway.
FULL_VAE_ID = {"sd15": "kl-f8-4ch", "sdxl": "kl-f8-4ch", "sd3": "kl-f8-4ch", "flux": "kl-f8-4ch"}
TAESD_ID = {"sd15": "taesd-4ch", "sdxl": "taesd-4ch", "sd3": "taesd-4ch", "flux": "taesd-4ch"}
FLOW_TEXT_TOKENS = {"sd3": 154, "flux": 256}  # ComfyUI's padding: SD3 77 CLIP + 77 T5, Flux 256 T5 tokens
FLOW_BLOCK_GROUPS = {"sd3": {"joint_blocks": "num_blocks"},
                     "flux": {"double_blocks": "depth", "single_blocks": "depth_single_blocks"}}


@dataclass(frozen=True)
class FastPlan:
    """What one family contributes: its denoiser at ``size``, and which autoencoder timings it needs."""

    family: str
    size: int  # the image side the preset costs are composed at
    graph_size: int  # the full decoder's forward with graph and backward are timed here (≤ size)
    check_size: int = 0  # whole fast-path iterations through run_dwgf at this size (0: none)

    def network_jobs(self) -> list[tuple[str, str, int, tuple[str, ...]]]:
        """``(kind, network id, size, calls)`` the family needs timed (kind: full or fast autoencoder)."""
        full = FULL_VAE_ID[self.family]
        jobs = [("full", full, self.graph_size, AUTOENCODER_CALLS)]
        if self.size != self.graph_size and full == SCALING_VAE:  # the no-grad size ratio, measured once
            jobs.append(("full", full, self.size, ("decoder_no_grad", "encoder")))
        jobs.append(("fast", TAESD_ID[self.family], self.size, AUTOENCODER_CALLS))
        return jobs


def fast_plans(args: argparse.Namespace) -> list[FastPlan]:
    plans = []
    for family in args.fast_families:
        if family == "sd15":
            plans.append(FastPlan("sd15", args.fast_size, min(args.fast_graph_size, args.fast_size),
                                  args.fast_check_size))
        else:
            plans.append(FastPlan(family, args.fast_large_size, min(args.fast_graph_size, args.fast_large_size)))
    return plans


def fast_missing(fast: dict[str, Any], plan: FastPlan) -> dict[str, Any]:
    """The parts of ``plan`` not in the cache yet."""
    networks = fast.setdefault("networks", {})
    jobs = [job for job in plan.network_jobs()
            if not all(call in networks.get(f"{job[1]}/{job[2]}px", {}) for call in job[3])]
    return {"denoiser": f"{plan.family}/{plan.size}px" not in fast.setdefault("denoisers", {}),
            "check": bool(plan.check_size)
            and f"{plan.family}/{plan.check_size}px" not in fast.setdefault("checks", {}),
            "jobs": jobs}


def build_fast_models(pack: Pack, family: str, dtype: torch.dtype) -> Models:
    """The family's networks; the flow models with ComfyUI's prompt length (their attention grows with it)."""
    import sd_architectures

    if family not in FLOW_TEXT_TOKENS:
        return build_models(pack, family, dtype)
    tokens = FLOW_TEXT_TOKENS[family]
    with torch.inference_mode():
        sd = sd_architectures.RandomSD(family, sd_architectures.build_flow_model(family, dtype),
                                       sd_architectures.build_vae(latent_channels=16),
                                       sd_architectures.conditioning(family, tokens=tokens, seed=2),
                                       sd_architectures.conditioning(family, tokens=tokens, seed=3))
    return Models(family, sd, pack.adapter.torch_device(), pack.adapter.model_latent_channels(sd.model),
                  pack.adapter.vae_downscale_ratio(sd.vae))


def run_fast_plan(args: argparse.Namespace, cache: dict[str, Any], cache_path: Path) -> None:
    """Measure every missing part of the fast-path plan, one family at a time, saving after each part."""
    import sd_architectures

    fast = cache.setdefault("fast", {})
    pack = Pack()
    for plan in fast_plans(args):
        todo = fast_missing(fast, plan)
        if not (todo["denoiser"] or todo["check"] or todo["jobs"]):
            continue
        started = time.perf_counter()
        models = build_fast_models(pack, plan.family, dtype_for(plan.family, args))
        with torch.inference_mode():
            tiny = sd_architectures.build_taesd(sd_architectures.FAMILY_TAESD[plan.family])
        print(f"[fast {plan.family}] built in {time.perf_counter() - started:.0f} s", flush=True)
        fast.setdefault("models", {})[plan.family] = {
            "denoiser": module_bytes(models.sd.model.model.diffusion_model),
            "vae": module_bytes(models.sd.vae.first_stage_model), "taesd": module_bytes(tiny.first_stage_model),
            "dtype": str(dtype_for(plan.family, args))}
        if todo["check"]:
            record(fast["checks"], f"{plan.family}/{plan.check_size}px", cache_path, cache,
                   functools.partial(fast_check, pack, models, tiny, plan.check_size, args))
        if todo["denoiser"]:
            record(fast["denoisers"], f"{plan.family}/{plan.size}px", cache_path, cache,
                   functools.partial(denoiser_step, pack, models, plan.size, args.fast_denoiser_steps))
        if todo["jobs"]:
            autoencoders = {"full": pack.adapter.prepare_vae(models.sd.vae, models.sd.model)}
            autoencoders["fast"] = pack.adapter.prepare_fast_vae(tiny, models.sd.vae, models.sd.model,
                                                                 autoencoders["full"])
            models.sd.model = None  # only the autoencoders from here on: the denoiser's weights go
            release_models()
            for kind, network, size, calls in todo["jobs"]:
                key = f"{network}/{size}px"
                entry = dict(fast["networks"].get(key, {}))
                entry.update(time_autoencoder(pack, autoencoders[kind], models.latent_shape(1, size), calls,
                                              args.fast_repeats if kind == "fast" else 1))
                fast["networks"][key] = entry
                save_cache(cache_path, cache)
                print(f"[fast {key}] " + ", ".join(f"{k} {v['cpu']:.2f}" for k, v in entry.items()), flush=True)
            del autoencoders
        del models, tiny
        release_models()


def record(table: dict[str, Any], key: str, cache_path: Path, cache: dict[str, Any], measure: Callable) -> None:
    started = time.perf_counter()
    table[key] = measure()
    table[key]["run_seconds"] = time.perf_counter() - started
    save_cache(cache_path, cache)
    print(f"[fast {key}] done in {table[key]['run_seconds']:.0f} s", flush=True)
    gc.collect()


def time_autoencoder(pack: Pack, autoencoder: Any, shape: tuple[int, ...], calls: tuple[str, ...],
                     repeats: int) -> dict[str, dict[str, float]]:
    """The autoencoder's calls in one DWGF iteration, each alone at ``shape`` (median of ``repeats``)."""
    flow = pack.flow
    device = autoencoder.device
    timer = ComponentTimer(device, probe_memory=False)
    z = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.inference_mode(False), torch.enable_grad():
        for _ in range(repeats):
            time_autoencoder_calls(flow, timer, autoencoder, z, calls)
    return timer.summary()


def time_autoencoder_calls(flow: Any, timer: ComponentTimer, autoencoder: Any, z: torch.Tensor,
                           calls: tuple[str, ...], prefix: str = "") -> None:
    """One timing of each of ``calls``: decoder forward with graph and its backward, decoder without
    gradient (the reconstruction's D), encoder (its E)."""
    image = None
    if "decoder_forward" in calls:
        leaf = z.clone().requires_grad_(True)
        x = timer(prefix + "decoder_forward", lambda: flow.decode_with_graph(autoencoder, leaf, False))
        if "decoder_backward" in calls:
            timer(prefix + "decoder_backward", lambda: torch.autograd.backward(x.square().mean(), inputs=[leaf]))
        image = x.detach()
        del x, leaf
    if "decoder_no_grad" in calls:
        image = timer(prefix + "decoder_no_grad", lambda: flow.decode_particles(autoencoder, z))
    if "encoder" in calls:
        if image is None:
            image = flow.decode_particles(autoencoder, z)
        timer(prefix + "encoder", lambda: autoencoder.encode(image))


def denoiser_step(pack: Pack, models: Models, size: int, steps: int) -> dict[str, Any]:
    """One ComfyUI sampler step (euler, cfg 1, batch 1) = one denoiser forward; for the reduced-depth flow
    transformers each block is timed too, so the published depth can be composed."""
    case = Case(models.family, size, 1)
    groups = FLOW_BLOCK_GROUPS.get(models.family, {})
    network = models.sd.model.model.diffusion_model
    blocks: dict[str, list[dict[str, float]]] = {name: [] for name in groups}
    handles = []
    for name in groups:
        for block in getattr(network, name):
            since: list[tuple[float, float]] = []
            handles.append(block.register_forward_pre_hook(lambda *_, since=since: since.append(clock())))
            handles.append(block.register_forward_hook(
                lambda *_, since=since, name=name: blocks[name].append(elapsed(since.pop()))))
    try:
        result = ksampler_steps(pack, models, case, steps)
    finally:
        for handle in handles:
            handle.remove()
    if groups:
        import sd_architectures

        reduced = {name: len(getattr(network, name)) for name in groups}
        full = {name: sd_architectures.FULL_DEPTHS[models.family][key] for name, key in groups.items()}
        # the calls of the timed steps (the first step is the warm-up)
        per_block = {name: median_timing(calls[reduced[name]:] or calls) for name, calls in blocks.items()}
        result.update(blocks=per_block, reduced_depth=reduced, full_depth=full,
                      full_depth_step={c: result["step"][c] + sum((full[n] - reduced[n]) * per_block[n][c]
                                                                  for n in groups) for c in ("wall", "cpu")})
    return result


def fast_check(pack: Pack, models: Models, tiny: Any, size: int, args: argparse.Namespace) -> dict[str, Any]:
    """Whole DWGF iterations with the fast path through ``run_dwgf`` (box inpainting, N = 1), each timed
    between callbacks, and every network call timed alone at the same size just after, in one sampler run."""
    sd = models.sd
    degradation, batch = measurement_problem(pack, models, size)
    operator, y = next(batch.measurements())
    config = pack.flow.DWGFConfig(particles=1, steps=args.fast_check_iterations, seed=0,
                                  ae_every=args.fast_check_ae_every, full_decoder_steps=args.fast_check_full_steps)
    alphas = pack.adapter.model_alphas_cumprod(sd.model)
    levels = pack.flow.dwgf_levels(alphas, config)
    middle = pack.schedule.levels_from_timesteps(alphas, [500])[0]
    shape = (1, *batch.latent_shape)
    marks: list[dict[str, float]] = []
    out: dict[str, Any] = {}

    def run(denoiser: Any, device: torch.device, on_step: Callable) -> torch.Tensor:
        autoencoder = pack.adapter.prepare_vae(sd.vae, sd.model)
        quick = pack.adapter.prepare_fast_vae(tiny, sd.vae, sd.model, autoencoder)
        since = [clock()]

        def callback(*_: Any) -> None:
            synchronize(device)
            marks.append(elapsed(since[0]))
            since[0] = clock()

        z = pack.flow.run_dwgf(denoiser, autoencoder, config, batch.latent_shape, operator, y.to(device),
                               levels=levels, device=device, callback=callback, fast_autoencoder=quick)
        timer = ComponentTimer(device, probe_memory=False)
        particles = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
        for _ in range(args.fast_repeats):
            timer("unet", lambda: pack.flow.model_noise(denoiser, particles, middle))
            time_autoencoder_calls(pack.flow, timer, autoencoder, particles, AUTOENCODER_CALLS)
            time_autoencoder_calls(pack.flow, timer, quick, particles, AUTOENCODER_CALLS, prefix="fast_")
        out["components"] = timer.summary()
        return z

    sigmas = torch.tensor([level.k_sigma for level in levels], dtype=torch.float64)
    with torch.inference_mode():
        pack.adapter.sample_with_comfyui(sd.model, sd.positive, sd.negative, 1.0, sigmas, shape, 0, run)
    return {"iterations": marks, "components": out["components"], "steps": config.steps,
            "ae_every": config.ae_every, "full_decoder_steps": config.full_decoder_steps, "particles": 1}


# ---------------------------------------------------------------------------------------------
# Running the plan, with a cache
# ---------------------------------------------------------------------------------------------
PART_RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {
    "ksampler": lambda pack, models, case, args: ksampler_steps(pack, models, case, args.iterations),
    "dwgf": lambda pack, models, case, args: dwgf_iterations(pack, models, case, iterations(case, args)),
    "components": lambda pack, models, case, args: dwgf_components(pack, models, case, args.repeats),
    "psld": lambda pack, models, case, args: psld_iterations(pack, models, case, iterations(case, args)),
    "psld_components": lambda pack, models, case, args: psld_components(pack, models, case, args.repeats),
    "overhead": lambda pack, models, case, args: overhead_rounds(pack, models, case, args.overhead_rounds),
}


def iterations(case: Case, args: argparse.Namespace) -> int:
    """A warm-up and timed iterations at a new size; later runs time their one (memory-probed) iteration."""
    return args.iterations if case.warm_up else args.later_iterations


def load_cache(path: Path, fresh: bool) -> dict[str, Any]:
    if path.is_file() and not fresh:
        return json.loads(path.read_text())
    return {"meta": {}, "cases": {}, "models": {}}


def save_cache(path: Path, cache: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cache, indent=1, sort_keys=True))


def missing_parts(cache: dict[str, Any], case: Case) -> list[str]:
    done = cache["cases"].get(case.key, {})
    return [part for part in case.parts if part not in done]


def run_plan(args: argparse.Namespace, cache: dict[str, Any], cache_path: Path) -> None:
    """Measure every missing part, one family at a time, saving after each part."""
    pack = Pack()
    cases = plan(args)
    for family in dict.fromkeys(case.family for case in cases):
        todo = [case for case in cases if case.family == family and missing_parts(cache, case)]
        if not todo:
            continue
        started = time.perf_counter()
        models = build_models(pack, family, dtype_for(family, args))
        print(f"[{family}] built in {time.perf_counter() - started:.0f} s", flush=True)
        cache["models"][family] = {"unet": module_bytes(models.sd.model.model.diffusion_model),
                                   "vae": module_bytes(models.sd.vae.first_stage_model),
                                   "dtype": str(dtype_for(family, args))}
        for case in todo:
            for part in missing_parts(cache, case):
                started = time.perf_counter()
                result = PART_RUNNERS[part](pack, models, case, args)
                result["run_seconds"] = time.perf_counter() - started
                cache["cases"].setdefault(case.key, {})[part] = result
                save_cache(cache_path, cache)
                print(f"[{case.key}] {part}: {brief(part, result)} ({result['run_seconds']:.0f} s)", flush=True)
                gc.collect()
        del models
        release_models()


def release_models() -> None:
    """Let the next family's models take the memory (ComfyUI keeps loaded models referenced)."""
    comfyui_env.unload_models(gc.collect)


def dtype_for(family: str, args: argparse.Namespace) -> torch.dtype:
    if family == "sdxl":
        return getattr(torch, args.sdxl_dtype)
    return FAMILY_DTYPES[family]


def brief(part: str, result: dict[str, Any]) -> str:
    """A one-line progress summary."""
    if part == "ksampler":
        return f"{result['step']['cpu']:.2f} s/step"
    if part == "overhead":
        return f"iteration / network calls: median {result['median_ratio']['cpu']:.3f} over rounds"
    if part in ("dwgf", "psld"):
        return f"{result['iteration']['cpu']:.2f} s/iteration, peak {result['memory']['peak'] / MIB:.0f} MiB"
    return ", ".join(f"{name} {t['cpu']:.2f}" for name, t in result["seconds"].items())


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="sd15,sdxl", help="model families (sd15, sdxl)")
    parser.add_argument("--sizes", default="256", help="image sizes for the N scaling (the first is the base)")
    parser.add_argument("--particles", default="1,2,4", help="particle counts at the base size")
    parser.add_argument("--chunked-particles", default="8",
                        help="larger particle counts, run in the chunked mode only (the fastest mode at 256², N = 8 "
                             "needs ~13 GiB of working memory)")
    parser.add_argument("--large-size", type=int, default=512, help="SD 1.5 size measured at N = 1 (0: none)")
    parser.add_argument("--mode-particles", type=int, default=2, help="N for the memory-mode comparison (0: none)")
    parser.add_argument("--iterations", type=int, default=2,
                        help="iterations of the first run at each size; the first is the warm-up")
    parser.add_argument("--later-iterations", type=int, default=1,
                        help="iterations of later runs at that size (1: the memory-probed iteration is timed)")
    parser.add_argument("--repeats", type=int, default=1, help="repeats of each component (median)")
    parser.add_argument("--overhead-rounds", type=int, default=3,
                        help="interleaved iteration/component rounds for the overhead ratio at N = 1 (0: none)")
    parser.add_argument("--no-psld", dest="psld", action="store_false", help="skip PSLD")
    parser.add_argument("--sdxl-dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--fast-families", default="sd15,sdxl,sd3,flux",
                        help="families whose fast path (tiny decoder, issue 25) is timed ('' : none)")
    parser.add_argument("--fast-size", type=int, default=512, help="SD 1.5 image side for the fast-path costs")
    parser.add_argument("--fast-large-size", type=int, default=1024,
                        help="image side for the other families' fast-path costs")
    parser.add_argument("--fast-graph-size", type=int, default=512,
                        help="largest side at which the full decoder's backward is timed (24 GB machine)")
    parser.add_argument("--fast-check-size", type=int, default=256,
                        help="side of the whole fast-path iterations through run_dwgf (0: none)")
    parser.add_argument("--fast-check-iterations", type=int, default=6)
    parser.add_argument("--fast-check-full-steps", type=int, default=2, help="full_decoder_steps of that check")
    parser.add_argument("--fast-check-ae-every", type=int, default=2, help="ae_every of that check")
    parser.add_argument("--fast-denoiser-steps", type=int, default=1,
                        help="timed sampler steps per denoiser (after one warm-up step)")
    parser.add_argument("--fast-repeats", type=int, default=2, help="repeats of the tiny decoder's timings (median)")
    parser.add_argument("--only-fast", action="store_true", help="measure only the fast path (issue 25)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--results", default=str(RESULTS / "speed"), help="path prefix of the .json and .md")
    parser.add_argument("--fresh", action="store_true", help="ignore the cached results")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the .md from the .json")
    parser.add_argument("--quick", action="store_true", help="smoke run: SD 1.5 at 64²/128², N = 1, 2")
    args = parser.parse_args(argv)
    if args.quick:
        args.families, args.sizes, args.particles, args.large_size = "sd15", "64", "1,2", 128
        args.chunked_particles = "4"
        args.fast_families, args.fast_size, args.fast_graph_size, args.fast_check_size = "sd15", 64, 64, 64
        if args.results == str(RESULTS / "speed"):
            args.results = str(RESULTS / "speed_quick")
    args.families = [f for f in args.families.split(",") if f]
    args.fast_families = [f for f in args.fast_families.split(",") if f]
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.particles = [int(n) for n in args.particles.split(",")]
    args.chunked_particles = [int(n) for n in args.chunked_particles.split(",") if n]
    if 1 not in args.particles:
        args.particles.insert(0, 1)
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    json_path, md_path = Path(args.results + ".json"), Path(args.results + ".md")
    cache = load_cache(json_path, args.fresh)
    started = time.perf_counter()
    if not args.report_only:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        meta = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                "torch": torch.__version__, "threads": args.threads, "device": device,
                "basis": "cpu" if device == "cpu" else "wall",
                "comfyui": comfyui_env.comfyui_version(comfyui_env.comfyui_root())}
        if not args.only_fast:
            cache["meta"].update(meta)
            run_plan(args, cache, json_path)
            cache["meta"]["run_minutes"] = cache["meta"].get("run_minutes", 0.0) + (time.perf_counter() - started) / 60
        if args.fast_families:
            fast_started = time.perf_counter()
            fast_meta = cache.setdefault("fast", {}).setdefault("meta", {})
            fast_meta.update(meta)
            run_fast_plan(args, cache, json_path)
            fast_meta["run_minutes"] = fast_meta.get("run_minutes", 0.0) + (time.perf_counter() - fast_started) / 60
        save_cache(json_path, cache)
    write_report(cache, md_path, args)
    print(f"wrote {md_path} ({(time.perf_counter() - started) / 60:.1f} min)", flush=True)


if __name__ == "__main__":
    main()
