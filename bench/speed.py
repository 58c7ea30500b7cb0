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

Run: ``.venv/bin/python bench/speed.py`` (≈ 40 min of CPU time on one thread, 24 GB of RAM; cached in
``bench/results/speed.json``, a rerun skips what is there; ``--fresh`` re-measures;
``--report-only`` rewrites ``speed.md`` from the cache; ``--quick`` is a 2-minute smoke run at 64²).
"""

from __future__ import annotations

import argparse
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

RESULTS = REPO / "bench" / "results"
CLEAN = "clean (simulate the measurement)"
TASK = "inpaint box (DWGF reference)"
MEMORY_MODE_NAMES = ("fastest", "chunked", "checkpointed")  # the node's MEMORY_MODES, in order
# The first version of 'least memory' checkpointed the decoder as one piece; this benchmark showed that
# saves ~10 % (the backward recomputes all of it at once) and the node now checkpoints block by block.
# Kept as a comparison: the chunked mode with the whole decoder checkpointed.
PROPOSED_MODE = "whole-decoder-checkpointed"
ALL_MODES = (*MEMORY_MODE_NAMES, PROPOSED_MODE)
CHECKPOINTED_BLOCKS = ("ResnetBlock", "AttnBlock", "Upsample")  # the KL decoder's blocks, by class name
FAMILY_DTYPES = {"sd15": torch.float32, "sdxl": torch.bfloat16}
MIB = 2**20
GIB = 2**30

DWGF_NETWORK_CALLS = ("unet", "decoder_forward", "decoder_backward", "decoder_no_grad", "encoder")
DWGF_COMPONENTS = (*DWGF_NETWORK_CALLS, "mixture_score", "adam_step")
PSLD_NETWORK_CALLS = ("unet_forward", "unet_backward", "decoder_forward", "decoder_backward", "encoder_forward",
                      "encoder_backward")
COMPONENT_LABELS = {
    "unet": "UNet forward (batch N)", "decoder_forward": "decoder forward, with graph",
    "decoder_backward": "decoder backward", "decoder_no_grad": "decoder forward, no grad (D(E(·)))",
    "encoder": "encoder forward, no grad", "mixture_score": "particle-mixture score (N×N kernel)",
    "adam_step": "Adam step on z", "unet_forward": "UNet forward, with graph", "unet_backward": "UNet backward",
    "encoder_forward": "encoder forward, with graph", "encoder_backward": "encoder backward",
}


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
        self.memory_modes = sub("nodes.dwgf_sampler_node").MEMORY_MODES

    def call(self, node_id: str, **inputs: Any) -> Any:
        """A node called inside ``torch.inference_mode()``, as ComfyUI's executor does."""
        node_class = self.nodes.NODE_CLASS_MAPPINGS[node_id]
        with torch.inference_mode():
            return getattr(node_class(), node_class.FUNCTION)(**inputs)

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
    """One family's MODEL, VAE and conditioning, and the device ComfyUI computes on."""

    family: str
    sd: Any
    device: torch.device

    @property
    def latent_channels(self) -> int:
        return 4


def build_models(pack: Pack, family: str, dtype: torch.dtype) -> Models:
    import sd_architectures

    with torch.inference_mode():
        sd = sd_architectures.build_random_sd(family, dtype)
    return Models(family, sd, pack.adapter.torch_device())


def measurement_problem(pack: Pack, models: Models, size: int) -> tuple[Any, Any]:
    """(degradation, MeasurementBatch) for the reference box inpainting of a random ``size``² image."""
    node_class = pack.nodes.NODE_CLASS_MAPPINGS["DWGF_DegradationOperator"]
    inputs = {name: spec[1]["default"] for name, spec in node_class.INPUT_TYPES()["required"].items()
              if len(spec) > 1 and "default" in spec[1]}
    image = torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(0))
    inputs.update(image=image, image_is=CLEAN, operator=TASK, sigma_y=0.001, seed=0)
    degradation, measurement, _ = pack.call("DWGF_DegradationOperator", **inputs)
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
    levels = pack.schedule.reference_levels(pack.adapter.model_alphas_cumprod(sd.model), config.steps,
                                            config.first_timestep, config.last_timestep)
    stepper = StepClock(models.device, exclude=set())

    def solve(denoiser: Any, autoencoder: Any, operator: Any, y: torch.Tensor, device: torch.device,
              callback: Callable) -> Any:
        stepper.exclude = weight_storages(sd.vae.first_stage_model)
        stepper.start()
        if case.mode == PROPOSED_MODE:
            autoencoder = WholeDecoderCheckpointedVAE(autoencoder)
        return pack.flow.run_dwgf(stepper.timed_denoiser(denoiser), autoencoder, config, batch.latent_shape,
                                  operator, y, levels=levels, device=device,
                                  callback=stepper.wrap(callback))

    with torch.inference_mode():
        pack.restoration.sample_each_measurement(sd.model, sd.positive, sd.negative, sd.vae, batch, 1.0, 0, levels,
                                                 case.particles, solve, pack.unchecked_memory())
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

    def solve(denoiser: Any, autoencoder: Any, operator: Any, y: torch.Tensor, device: torch.device,
              callback: Callable) -> Any:
        stepper.exclude = weight_storages(sd.vae.first_stage_model, sd.model.model.diffusion_model)
        stepper.start()
        return pack.psld.run_psld(stepper.timed_denoiser(denoiser), autoencoder, config, batch.latent_shape,
                                  operator, y, levels=levels, device=device,
                                  callback=stepper.wrap(callback))

    with torch.inference_mode():
        pack.restoration.sample_each_measurement(sd.model, sd.positive, sd.negative, sd.vae, batch, 1.0, 0, levels,
                                                 case.particles, solve, pack.unchecked_memory(),
                                                 differentiable_model=True)
    return stepper.summary()


def ksampler_steps(pack: Pack, models: Models, case: Case, steps: int) -> dict[str, Any]:
    """ComfyUI's own sampler (euler, cfg 1, batch 1): seconds per step, between its callbacks."""
    import comfy.sample

    sd = models.sd
    latent = torch.zeros(1, models.latent_channels, case.size // 8, case.size // 8)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))
    marks: list[dict[str, float]] = []
    since = [clock()]

    def callback(*_: Any) -> None:
        synchronize(models.device)
        marks.append(elapsed(since[0]))
        since[0] = clock()

    with torch.inference_mode():
        comfy.sample.sample(sd.model, noise, steps + 1, 1.0, "euler", "normal", sd.positive, sd.negative, latent,
                            callback=callback, disable_pbar=True, seed=0)
    return {"step": median_timing(marks[1:]), "timed_steps": len(marks) - 1}


# ---------------------------------------------------------------------------------------------
# Components, each alone, inside ComfyUI's sampler (the objects the node uses)
# ---------------------------------------------------------------------------------------------
def inside_sampler(pack: Pack, models: Models, case: Case, work: Callable, differentiable: bool = False) -> Any:
    """Call ``work(denoiser, autoencoder, level, device)`` where the node's run would start."""
    sd = models.sd
    alphas = pack.adapter.model_alphas_cumprod(sd.model)
    level = pack.schedule.levels_from_timesteps(alphas, [500])[0]
    shape = (case.particles, models.latent_channels, case.size // 8, case.size // 8)
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
        shape = (case.particles, models.latent_channels, case.size // 8, case.size // 8)
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
    levels = pack.schedule.reference_levels(pack.adapter.model_alphas_cumprod(sd.model), config.steps,
                                            config.first_timestep, config.last_timestep)
    middle = pack.schedule.levels_from_timesteps(pack.adapter.model_alphas_cumprod(sd.model), [500])[0]
    shape = (case.particles, *batch.latent_shape)
    iterations_: list[dict[str, float]] = []
    sums: list[dict[str, float]] = []

    def solve(denoiser: Any, autoencoder: Any, operator: Any, y: torch.Tensor, device: torch.device,
              callback: Callable) -> Any:
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

        return pack.flow.run_dwgf(denoiser, autoencoder, config, batch.latent_shape, operator, y,
                                  levels=levels, device=device, callback=between)

    with torch.inference_mode():
        pack.restoration.sample_each_measurement(sd.model, sd.positive, sd.negative, sd.vae, batch, 1.0, 0, levels,
                                                 case.particles, solve, pack.unchecked_memory())
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
        shape = (case.particles, models.latent_channels, case.size // 8, case.size // 8)
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
    import comfy.model_management

    comfy.model_management.unload_all_models()
    gc.collect()
    comfy.model_management.soft_empty_cache()


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
# The report
# ---------------------------------------------------------------------------------------------
def seconds(cache: dict[str, Any], key: str, part: str, basis: str) -> dict[str, float]:
    """Seconds of every component of a part, plus the iteration/step, on the chosen clock."""
    entry = cache["cases"].get(key, {}).get(part)
    if entry is None:
        return {}
    if "seconds" in entry:
        return {name: t[basis] for name, t in entry["seconds"].items()}
    if "step" in entry:
        return {"step": entry["step"][basis]}
    return {"iteration": entry["iteration"][basis]}


def case_row(cache: dict[str, Any], key: str, basis: str) -> dict[str, float]:
    """Components, the DWGF iteration, the network-call sum, the overhead ratio and KSampler step."""
    row = seconds(cache, key, "components", basis)
    row.update(seconds(cache, key, "dwgf", basis))
    step = seconds(cache, key, "ksampler", basis)
    if step:
        row["ksampler_step"] = step["step"]
    if all(name in row for name in DWGF_NETWORK_CALLS):
        row["network_sum"] = sum(row[name] for name in DWGF_NETWORK_CALLS)
        if "iteration" in row:
            row["overhead"] = row["iteration"] / row["network_sum"]
    return row


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def component_table(cache: dict[str, Any], keys: list[tuple[str, str]], basis: str) -> list[str]:
    """Rows: components and totals; columns: the given cases."""
    rows = {label: case_row(cache, key, basis) for label, key in keys}
    lines = ["| seconds per iteration | " + " | ".join(rows) + " |", "|---" * (len(rows) + 1) + "|"]
    for name in DWGF_COMPONENTS:
        lines.append(f"| {COMPONENT_LABELS[name]} | " + " | ".join(fmt(r.get(name), 3) for r in rows.values()) + " |")
    lines.append("| **sum of the network calls** | " + " | ".join(fmt(r.get("network_sum")) for r in rows.values())
                 + " |")
    lines.append("| **DWGF iteration (node path)** | " + " | ".join(fmt(r.get("iteration")) for r in rows.values())
                 + " |")
    lines.append("| **iteration / network calls** | " + " | ".join(fmt(r.get("overhead"), 3) for r in rows.values())
                 + " |")
    lines.append("| KSampler step (batch 1, cfg 1) | " + " | ".join(fmt(r.get("ksampler_step")) for r in rows.values())
                 + " |")
    return lines


def growth_table(cache: dict[str, Any], keys: list[tuple[str, str]], basis: str) -> list[str]:
    """Each case's iteration relative to the first case: time, time per particle, peak memory."""
    first = case_row(cache, keys[0][1], basis)
    first_peak = peak_of(cache, keys[0][1])
    lines = ["| case | iteration (s) | × first | per particle (s) | peak working memory | × first |",
             "|---|---|---|---|---|---|"]
    for label, key in keys:
        row = case_row(cache, key, basis)
        n = int(key.split("/N")[1].split("/")[0])
        peak = peak_of(cache, key)
        it = row.get("iteration")
        relative = it / first["iteration"] if it and first.get("iteration") else None
        lines.append(f"| {label} | {fmt(it)} | {fmt(relative)} | {fmt(it / n if it else None)} | {mem(peak)} | "
                     f"{fmt(peak / first_peak if peak and first_peak else None)} |")
    return lines


def peak_of(cache: dict[str, Any], key: str, part: str = "dwgf") -> float | None:
    entry = cache["cases"].get(key, {}).get(part)
    return None if entry is None else entry["memory"]["peak"]


def mem(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / GIB:.2f} GiB" if value >= GIB else f"{value / MIB:.0f} MiB"


def psld_lines(cache: dict[str, Any], key: str, basis: str) -> list[str]:
    """PSLD's components and step against DWGF's iteration at the same size and N."""
    parts = seconds(cache, key, "psld_components", basis)
    step = seconds(cache, key, "psld", basis).get("iteration")
    dwgf = case_row(cache, key, basis).get("iteration")
    if not parts or step is None:
        return []
    total = sum(parts[name] for name in PSLD_NETWORK_CALLS)
    lines = ["| PSLD, seconds per step | |", "|---|---|"]
    lines += [f"| {COMPONENT_LABELS[name]} | {parts[name]:.3f} |" for name in PSLD_NETWORK_CALLS]
    lines += [f"| **sum of the network calls** | {total:.2f} |", f"| **PSLD step (node path)** | {step:.2f} |",
              f"| **step / network calls** | {step / total:.3f} |",
              f"| DWGF iteration, same size and N | {fmt(dwgf)} |",
              f"| peak working memory, PSLD / DWGF | {mem(peak_of(cache, key, 'psld'))} / {mem(peak_of(cache, key))} |"]
    return lines


def overhead_lines(cache: dict[str, Any], key: str, basis: str) -> list[str]:
    """Per round: the iteration, the sum of the network calls timed just before it, their ratio."""
    entry = cache["cases"].get(key, {}).get("overhead")
    if entry is None:
        return []
    lines = ["| round | DWGF iteration (s) | sum of the network calls (s) | ratio |", "|---|---|---|---|"]
    for index, (it, total) in enumerate(zip(entry["iterations"], entry["network_sums"], strict=True), start=1):
        lines.append(f"| {index} | {it[basis]:.2f} | {total[basis]:.2f} | {it[basis] / total[basis]:.3f} |")
    lines += ["", f"Median ratio {entry['median_ratio'][basis]:.3f}; fastest iteration / fastest sum "
                  f"{entry['min_ratio'][basis]:.3f} (wall clock: {entry['median_ratio']['wall']:.3f} and "
                  f"{entry['min_ratio']['wall']:.3f})."]
    return lines


def memory_table(cache: dict[str, Any], basis: str) -> list[str]:
    """Every iteration measured: its time, peak working memory (in/outside the UNet), saved bytes."""
    lines = ["| case | iteration (s) | peak working memory | in the UNet call | elsewhere | saved for backward |",
             "|---|---|---|---|---|---|"]
    for key, entry in cache["cases"].items():
        for part in ("dwgf", "psld"):
            if part in entry:
                m = entry[part]["memory"]
                lines.append(f"| {part.upper()} {key} | {entry[part]['iteration'][basis]:.2f} | {mem(m['peak'])} | "
                             f"{mem(m.get('peak_in_unet'))} | {mem(m.get('peak_outside_unet'))} | "
                             f"{mem(m.get('saved_for_backward'))} |")
    return lines


@dataclass
class ModeEstimate:
    """Peak working memory of one memory mode at the large size, extrapolated from measurements."""

    mode: str
    activations: float
    how: str


def linear_fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares ``y = a + b x`` (one point: ``b = 0``)."""
    if len(points) == 1:
        return points[0][1], 0.0
    xs, ys = zip(*points, strict=True)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def mode_estimates(cache: dict[str, Any], base: int, large: int, particles: int,
                   mode_particles: int) -> list[ModeEstimate]:
    """Peak working memory at ``large``² with ``particles`` particles, per memory mode.

    Fastest: fit ``peak = a + b N`` at ``base``² over every N measured, scaled by the measured
    ``large``/``base`` ratio at N = 1. Chunked modes: their peak at ``large``², N = 1, plus what each
    further particle adds in the chunked mode at ``base``² (N = ``mode_particles`` against N = 1),
    scaled by the pixel ratio.
    """
    estimates = []
    fast = [(float(key.split("/")[2][1:]), entry["dwgf"]["memory"]["peak"]) for key, entry in cache["cases"].items()
            if key.startswith(f"sd15/{base}px/") and key.endswith("/fastest") and "dwgf" in entry]
    small, big = peak_of(cache, f"sd15/{base}px/N1/fastest"), peak_of(cache, f"sd15/{large}px/N1/fastest")
    if not fast or small is None or big is None:
        return []
    a, b = linear_fit(sorted(fast))
    ratio = big / small
    ns = ", ".join(str(int(x)) for x, _ in sorted(fast))
    estimates.append(ModeEstimate("fastest", (a + b * particles) * ratio,
                                  f"fit at {base}² over N = {ns}: {a / MIB:.0f} MiB + {b / MIB:.0f} MiB × N, "
                                  f"× {ratio:.2f} (measured {large}²/{base}² at N = 1)"))
    chunked = [(float(key.split("/")[2][1:]), entry["dwgf"]["memory"]["peak"])
               for key, entry in cache["cases"].items()
               if key.startswith(f"sd15/{base}px/") and key.endswith("/chunked") and "dwgf" in entry]
    if not chunked:
        return estimates
    pixels = (large / base) ** 2
    chunked_ns = ", ".join(str(int(x)) for x, _ in sorted(chunked))
    per_particle = linear_fit(sorted([(1.0, small), *chunked]))[1] * pixels
    for mode in ALL_MODES[1:]:
        at_one = big if mode == "chunked" else peak_of(cache, f"sd15/{large}px/N1/{mode}")
        if at_one is None:
            continue
        estimates.append(ModeEstimate(mode, at_one + (particles - 1) * per_particle,
                                      f"measured {mem(at_one)} at {large}², N = 1, + {particles - 1} × "
                                      f"{mem(per_particle)} per further particle (slope of the chunked mode "
                                      f"at {base}², N = 1, {chunked_ns}, × {pixels:.0f} pixels)"))
    return estimates


CLIP_L_PARAMETERS = 123_060_480  # SD 1.5's text encoder (CLIP ViT-L/14 text model)


def gpu_lines(cache: dict[str, Any], base: int, large: int, particles: int, mode_particles: int,
              budget_gib: float = 12.0) -> list[str]:
    """The 12 GB estimate for SD 1.5 at ``large``² with ``particles`` particles, per memory mode."""
    models = cache["models"].get("sd15")
    estimates = mode_estimates(cache, base, large, particles, mode_particles)
    if not models or not estimates:
        return []
    unet_fp16 = models["unet"]["parameters"] * 2
    vae_params = models["vae"]["parameters"]
    clip_fp16 = CLIP_L_PARAMETERS * 2
    overhead = 1.0 * GIB
    lines = [f"| mode | working memory, fp32 VAE (measured on CPU) | total, fp32 VAE | total, bf16/fp16 VAE | "
             f"fits {budget_gib:.0f} GB? (fp32 / bf16 VAE) |", "|---|---|---|---|---|"]
    for e in estimates:
        fp32 = unet_fp16 + vae_params * 4 + clip_fp16 + overhead + e.activations * 1.15
        half = unet_fp16 + vae_params * 2 + clip_fp16 + overhead + e.activations * 0.5 * 1.15
        fits = " / ".join("yes" if t <= budget_gib * GIB else "no" for t in (fp32, half))
        lines.append(f"| {e.mode} | {mem(e.activations)} | {fp32 / GIB:.1f} GiB | {half / GIB:.1f} GiB | {fits} |")
    lines.append("")
    lines += [f"- {e.mode}: {e.how}." for e in estimates]
    lines.append(f"- Totals add the weights (UNet {models['unet']['parameters'] / 1e6:.0f} M parameters at fp16 = "
                 f"{unet_fp16 / 1e9:.2f} GB; VAE {vae_params / 1e6:.1f} M at fp32 {vae_params * 4 / 1e9:.2f} GB or "
                 f"bf16 {vae_params * 2 / 1e9:.2f} GB; CLIP-L text encoder {clip_fp16 / 1e9:.2f} GB if ComfyUI keeps "
                 "it loaded), 1 GiB for the CUDA context and cuDNN workspaces, and 15 % allocator fragmentation "
                 "on the working memory; the bf16 column halves the working memory (ComfyUI runs the VAE in bf16 "
                 "on Ampere and newer GPUs; the float32 loss copies are small).")
    return lines


def write_report(cache: dict[str, Any], path: Path, args: argparse.Namespace) -> None:
    meta = cache["meta"]
    basis = meta.get("basis", "cpu")
    base, large, n_list = args.sizes[0], args.large_size, args.particles
    n_keys = [(f"N = {n}", f"sd15/{base}px/N{n}/fastest") for n in n_list]
    n_keys += [(f"N = {n} (chunked)", f"sd15/{base}px/N{n}/chunked") for n in args.chunked_particles]
    size_keys = [(f"{base}², N = 1", f"sd15/{base}px/N1/fastest")]
    if large:
        size_keys.append((f"{large}², N = 1", f"sd15/{large}px/N1/fastest"))
    clock_note = ("**process CPU time** (the machine is shared, so the ratios use CPU time; wall seconds are in "
                  "the .json)" if basis == "cpu" else "**wall time** between synchronisations")
    lines = [
        "# Speed and memory of DWGF and PSLD (full-size architectures, random weights)",
        "",
        f"Written by `bench/speed.py` on {meta.get('machine', '?')}; torch {meta.get('torch', '?')}, "
        f"{meta.get('threads', '?')} torch thread(s), device {meta.get('device', '?')}, ComfyUI "
        f"{meta.get('comfyui', '?')}; the measurements took {measuring_minutes(cache):.0f} min of wall time. "
        f"Seconds are {clock_note}. Each iteration time is the median of the iterations after the first; "
        "components are timed alone at batch N. Task: the reference box inpainting, DWGF at its reference "
        "settings through the DWGF Sampler node's own path, cfg 1.",
        "",
        f"## SD 1.5 at {base}²: components and growth with the number of particles N",
        "",
        *component_table(cache, n_keys, basis),
        "",
        *growth_table(cache, n_keys, basis),
        "",
        "## SD 1.5: growth with resolution",
        "",
        *component_table(cache, size_keys, basis),
        "",
        *growth_table(cache, size_keys, basis),
    ]
    sdxl = [(f"SDXL {size}², N = 1", f"sdxl/{size}px/N1/fastest") for size in args.sizes
            if f"sdxl/{size}px/N1/fastest" in cache["cases"]]
    if sdxl:
        lines += ["", f"## SDXL (UNet in {cache['models'].get('sdxl', {}).get('dtype', '?')}, VAE in float32)", "",
                  *component_table(cache, sdxl, basis)]
    overhead = overhead_lines(cache, f"sd15/{base}px/N1/fastest", basis)
    if overhead:
        lines += ["", f"### Overhead, iterations and components interleaved (SD 1.5, {base}², N = 1)", "", *overhead]
    psld = psld_lines(cache, f"sd15/{base}px/N1/fastest", basis)
    if psld:
        lines += ["", f"## PSLD against DWGF (SD 1.5, {base}², N = 1)", "", *psld]
    modes = mode_table(cache, base, large, args.mode_particles, basis)
    lines += ["", "## Memory modes of the DWGF Sampler", "", *modes]
    lines += ["", "## Every iteration measured", "", *memory_table(cache, basis)]
    gpu = gpu_lines(cache, base, large, 4, args.mode_particles) if large else []
    if gpu:
        lines += ["", f"## Estimate: SD 1.5 at {large}² with N = 4 on a 12 GB GPU", "", *gpu]
    lines += ["", "## Method and limits", "", *METHOD_NOTES, probe_effect_line(cache, basis)]
    path.write_text("\n".join(lines) + "\n")


def measuring_minutes(cache: dict[str, Any]) -> float:
    """Wall minutes of every measured part (model builds excluded), over however many runs filled the cache."""
    return sum(part.get("run_seconds", 0.0) for entry in cache["cases"].values() for part in entry.values()) / 60


def mode_table(cache: dict[str, Any], base: int, large: int, particles: int, basis: str) -> list[str]:
    """The memory modes side by side: iteration time and peak working memory against the fastest."""
    configs = [(base, particles)] + ([(large, 1)] if large else [])
    lines = ["| size, N | mode | iteration (s) | × fastest | peak working memory | × fastest |",
             "|---|---|---|---|---|---|"]
    for size, n in configs:
        fast_entry = cache["cases"].get(f"sd15/{size}px/N{n}/fastest", {}).get("dwgf")
        if fast_entry is None:
            continue
        for mode in ALL_MODES:
            entry = cache["cases"].get(f"sd15/{size}px/N{n}/{mode}", {}).get("dwgf")
            if entry is None and mode == "chunked" and n == 1:
                entry = fast_entry  # one particle: chunking changes nothing
            if entry is None:
                continue
            t, t0 = entry["iteration"][basis], fast_entry["iteration"][basis]
            p, p0 = entry["memory"]["peak"], fast_entry["memory"]["peak"]
            label = f"{mode} (replaced)" if mode == PROPOSED_MODE else mode
            lines.append(f"| {size}², {n} | {label} | {t:.2f} | {t / t0:.3f} | {mem(p)} | {p / p0:.2f} |")
    return lines


def probe_effect_line(cache: dict[str, Any], basis: str) -> str:
    """How much the memory probe (and being first) slowed the first iteration, where both were timed."""
    ratios = [f"{key.rsplit('/', 1)[0]} {part.upper()} {e['first_iteration'][basis] / e['iteration'][basis]:.3f}"
              for key, entry in cache["cases"].items() for part in ("dwgf", "psld")
              if (e := entry.get(part)) and not e.get("timed_on_probed_iteration", False) and e["timed_iterations"]]
    return ("- Later runs at a size time their single iteration, the memory-probed one. The first iteration "
            "(memory probe on, first at its size) against the median of the unprobed ones, where both exist: "
            + ("; ".join(ratios) if ratios else "none measured") + ".")


METHOD_NOTES = [
    "- Networks: SD 1.5 (UNet 860 M parameters, float32 here) and SDXL (2.6 B, bfloat16) built from their "
    "published configs with ComfyUI's own classes, random weights (`tools/sd_architectures.py`); the KL-f8 VAE "
    "(83.7 M) in float32. Random weights cost the same arithmetic as trained ones; outputs mean nothing.",
    "- Overhead ratio = the node-path iteration / the sum of the network calls each timed alone (UNet forward, "
    "decoder forward with graph + backward, decoder and encoder without gradient). Everything else an iteration "
    "does — noise draws, the mixture kernel, the losses, Adam, ComfyUI's guider wrapper and callback — is in the "
    "numerator only.",
    "- Working memory is measured on the CPU: the profiler receives every allocation and free of PyTorch's CPU "
    "allocator, and the peak of their running sum over the first iteration is the memory of tensors alive at "
    "once beyond the weights. A GPU needs on top: the weights, the CUDA context, cuDNN workspaces and the caching "
    "allocator's fragmentation; and it runs other kernels (cuDNN convolutions, PyTorch SDP attention instead of "
    "ComfyUI's CPU split attention, so the UNet-phase peak on a GPU is lower than here). The CPU peak inside the "
    "UNet call is reported apart for that reason. 'saved for backward' sums the distinct storages autograd kept "
    "(all chunks together in the chunked mode).",
    "- The 512², N = 4 estimate is extrapolated from measured iterations, not measured itself (one such "
    "iteration in the fastest mode is ~8 min on one CPU thread); the formula is under its table.",
    "- `checkpointed` is the node's 'least memory' mode: chunked, each block of the decoder (ResnetBlock, "
    "AttnBlock, Upsample) checkpointed (`nodes/comfy_adapter.py`, `checkpointed_blocks`). "
    "`whole-decoder-checkpointed (replaced)` is its first version, which checkpointed the decoder as one "
    "piece: this benchmark found it saved only ~10 %. Both rows were measured in one run, the block version "
    "with a copy of the same code in this script before it moved into the adapter.",
    "- One CPU thread, on a machine shared with other jobs: absolute seconds are for orientation only; ratios "
    "measured in one run are what to read. On a GPU the decoder's share and the batch efficiency differ.",
]


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
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--results", default=str(RESULTS / "speed"), help="path prefix of the .json and .md")
    parser.add_argument("--fresh", action="store_true", help="ignore the cached results")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the .md from the .json")
    parser.add_argument("--quick", action="store_true", help="smoke run: SD 1.5 at 64²/128², N = 1, 2")
    args = parser.parse_args(argv)
    if args.quick:
        args.families, args.sizes, args.particles, args.large_size = "sd15", "64", "1,2", 128
        args.chunked_particles = "4"
        if args.results == str(RESULTS / "speed"):
            args.results = str(RESULTS / "speed_quick")
    args.families = [f for f in args.families.split(",") if f]
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
        cache["meta"].update({"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                              "torch": torch.__version__, "threads": args.threads, "device": device,
                              "basis": "cpu" if device == "cpu" else "wall",
                              "comfyui": comfyui_env.comfyui_version(comfyui_env.comfyui_root())})
        run_plan(args, cache, json_path)
        cache["meta"]["run_minutes"] = cache["meta"].get("run_minutes", 0.0) + (time.perf_counter() - started) / 60
        save_cache(json_path, cache)
    write_report(cache, md_path, args)
    print(f"wrote {md_path} ({(time.perf_counter() - started) / 60:.1f} min)", flush=True)


if __name__ == "__main__":
    main()
