"""The report of ``bench/speed.py``: ``speed.md`` written from the measurements cached in ``speed.json``.

Also the names the measurements are filed under (memory modes, components), shared with the
measuring script. Needs neither torch nor ComfyUI: ``bench/speed.py --report-only`` runs only this.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MEMORY_MODE_NAMES = ("fastest", "chunked", "checkpointed")  # the node's MEMORY_MODES, in order
# The first version of 'least memory' checkpointed the decoder as one piece; this benchmark showed that
# saves ~10 % (the backward recomputes all of it at once) and the node now checkpoints block by block.
# Kept as a comparison: the chunked mode with the whole decoder checkpointed.
PROPOSED_MODE = "whole-decoder-checkpointed"
ALL_MODES = (*MEMORY_MODE_NAMES, PROPOSED_MODE)
MIB = 2**20
GIB = 2**30

DWGF_NETWORK_CALLS = ("unet", "decoder_forward", "decoder_backward", "decoder_no_grad", "encoder")
DWGF_COMPONENTS = (*DWGF_NETWORK_CALLS, "mixture_score", "adam_step")
AUTOENCODER_CALLS = ("decoder_forward", "decoder_backward", "decoder_no_grad", "encoder")
PSLD_NETWORK_CALLS = ("unet_forward", "unet_backward", "decoder_forward", "decoder_backward", "encoder_forward",
                      "encoder_backward")
COMPONENT_LABELS = {
    "unet": "UNet forward (batch N)", "decoder_forward": "decoder forward, with graph",
    "decoder_backward": "decoder backward", "decoder_no_grad": "decoder forward, no grad (D(E(·)))",
    "encoder": "encoder forward, no grad", "mixture_score": "particle-mixture score (N×N kernel)",
    "adam_step": "Adam step on z", "unet_forward": "UNet forward, with graph", "unet_backward": "UNet backward",
    "encoder_forward": "encoder forward, with graph", "encoder_backward": "encoder backward",
}


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
    if cache.get("fast", {}).get("denoisers"):
        lines += ["", *fast_lines(cache, args)]
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
# The fast path (issue 25): per-network times and each preset's whole-run cost composed from them
# ---------------------------------------------------------------------------------------------
FAST_FAMILIES = {"sd15": ("SD 1.5", "taesd", "UNet"), "sdxl": ("SDXL", "taesdxl", "UNet"),
                 "sd3": ("SD3.5 medium", "taesd3", "MMDiT"), "flux": ("Flux dev", "taef1", "transformer")}
# The 16-channel VAE and TAESD (SD3, Flux) are their 4-channel twins but for the first convolution of each
# decoder and the last of each encoder (4 or 16 latent channels at the latent resolution, < 0.1 % of the
# arithmetic): they are timed as those twins, which the 4-channel families measure anyway.
FULL_VAE_ID = {"sd15": "kl-f8-4ch", "sdxl": "kl-f8-4ch", "sd3": "kl-f8-4ch", "flux": "kl-f8-4ch"}
TAESD_ID = {"sd15": "taesd-4ch", "sdxl": "taesd-4ch", "sd3": "taesd-4ch", "flux": "taesd-4ch"}
SCALING_VAE = "kl-f8-4ch"
FAST_PARTICLES = 4
FAST_TARGET = 0.25  # issue 25: the fast preset at most 1/4 of the recommended preset's cost


@dataclass(frozen=True)
class RunSettings:
    """A DWGF run's cost-relevant settings: iterations, D(E) every k-th, last iterations on the full decoder
    (``None``: no fast autoencoder at all), warm start (one more encoder call)."""

    label: str
    steps: int
    ae_every: int
    full_decoder_steps: int | None
    warm: bool = False


def candidate_settings() -> list[RunSettings]:
    runs = [RunSettings("recommended (50 it., cold, D(E) every 4, full decoder)", 50, 4, None),
            RunSettings("draft (25 it., warm 0.5, D(E) every 1, full decoder)", 25, 1, None, True)]
    for steps in (50, 25):
        for ae_every in (4, 1):
            for full in (0, 5, 10):
                runs.append(RunSettings(f"{steps} it., D(E) every {ae_every}, full_decoder_steps {full}",
                                        steps, ae_every, full))
    return runs


def iteration_counts(steps: int, ae_every: int, full_decoder_steps: int | None) -> dict[tuple[str, bool], int]:
    """How many iterations decode through each decoder, with and without recomputing D(E(·)); mirrors
    ``dwgf.flow``: refresh on every ``ae_every``-th iteration and whenever the decoder changes."""
    counts = {(kind, refresh): 0 for kind in ("full", "fast") for refresh in (True, False)}
    last = None
    for index in range(steps):
        kind = "full" if full_decoder_steps is None or index >= steps - full_decoder_steps else "fast"
        refresh = index % ae_every == 0 or kind != last
        counts[(kind, refresh)] += 1
        last = kind
    return counts


def fast_network_seconds(fast: dict[str, Any], family: str, size: int, graph_size: int,
                         basis: str) -> tuple[dict[str, float], list[str]] | None:
    """One particle's network calls for ``family`` at ``size``² (denoiser, full and fast autoencoder), and
    how each number was obtained when it was not measured at ``size`` itself."""
    networks, notes = fast.get("networks", {}), []
    denoiser = fast.get("denoisers", {}).get(f"{family}/{size}px")
    full_graph = networks.get(f"{FULL_VAE_ID[family]}/{graph_size}px", {})
    tiny = networks.get(f"{TAESD_ID[family]}/{size}px", {})
    if denoiser is None or not all(c in full_graph for c in AUTOENCODER_CALLS) or not all(
            c in tiny for c in AUTOENCODER_CALLS):
        return None
    out = {"denoiser": denoiser.get("full_depth_step", denoiser["step"])[basis]}
    if "full_depth_step" in denoiser:
        depth = ", ".join(f"{denoiser['full_depth'][n]} {n}" for n in denoiser["full_depth"])
        notes.append(f"the transformer step at full depth ({depth}) = the reduced model's step + the missing "
                     "blocks × each block's measured time")
    out.update({f"full_{c}": full_graph[c][basis] for c in AUTOENCODER_CALLS})
    if size != graph_size:
        small = networks.get(f"{SCALING_VAE}/{graph_size}px", {})
        large = networks.get(f"{SCALING_VAE}/{size}px", {})
        if not all(c in d for d in (small, large) for c in ("decoder_no_grad", "encoder")):
            return None
        decoder = large["decoder_no_grad"][basis] / small["decoder_no_grad"][basis]
        encoder = large["encoder"][basis] / small["encoder"][basis]
        for call in ("decoder_forward", "decoder_backward", "decoder_no_grad"):
            out[f"full_{call}"] *= decoder
        out["full_encoder"] *= encoder
        same = FULL_VAE_ID[family] == SCALING_VAE
        notes.append(f"full decoder{'' if same else ' and encoder'} at {size}²: timed at {graph_size}² and scaled by "
                     f"the KL-f8 VAE's measured {size}²/{graph_size}² no-grad ratio (decoder ×{decoder:.2f}, "
                     f"encoder ×{encoder:.2f}; pixels alone ×{(size / graph_size) ** 2:.0f})"
                     + ("" if same else "; the 16-channel VAE differs from it only in its first and last layers"))
        if same:
            out["full_decoder_no_grad"], out["full_encoder"] = (large["decoder_no_grad"][basis],
                                                                large["encoder"][basis])
    out.update({f"fast_{c}": tiny[c][basis] for c in AUTOENCODER_CALLS})
    if family in ("sd3", "flux"):
        notes.append("the 16-channel VAE and TAESD timed as their 4-channel twins (the same networks but for the "
                     "decoder's first and the encoder's last convolution at latent resolution, < 0.1 % of the "
                     "arithmetic)")
    return out, notes


def run_cost(t: dict[str, float], run: RunSettings, particles: int = FAST_PARTICLES) -> float:
    """Seconds of one whole run: per iteration and particle the denoiser, the decoder forward with graph
    and its backward, plus decoder and encoder without gradient where D(E(·)) is recomputed; the warm
    start encodes the measurement once (batch 1)."""
    total = 0.0
    for (kind, refresh), count in iteration_counts(run.steps, run.ae_every, run.full_decoder_steps).items():
        per = t["denoiser"] + t[f"{kind}_decoder_forward"] + t[f"{kind}_decoder_backward"]
        if refresh:
            per += t[f"{kind}_decoder_no_grad"] + t[f"{kind}_encoder"]
        total += count * particles * per
    return total + (t["full_encoder"] if run.warm else 0.0)


def fast_plan_sizes(args: argparse.Namespace) -> dict[str, tuple[int, int]]:
    sizes = {}
    for family in getattr(args, "fast_families", []):
        size = args.fast_size if family == "sd15" else args.fast_large_size
        sizes[family] = (size, min(args.fast_graph_size, size))
    return sizes


def fast_lines(cache: dict[str, Any], args: argparse.Namespace) -> list[str]:
    fast = cache["fast"]
    meta = fast.get("meta", {})
    basis = meta.get("basis", "cpu")
    found = {}
    for family, (size, graph) in fast_plan_sizes(args).items():
        composed = fast_network_seconds(fast, family, size, graph, basis)
        if composed is not None:
            found[family] = (size, *composed)
    if not found:
        return []
    lines = ["## The fast path: a tiny decoder in all but the last iterations (issue 25)", "",
             f"Measured in one run of `bench/speed.py --only-fast` ({meta.get('run_minutes', 0):.0f} min; ComfyUI "
             f"{meta.get('comfyui', '?')}, torch {meta.get('torch', '?')}, {meta.get('threads', '?')} thread, "
             f"{'process CPU' if basis == 'cpu' else 'wall'} seconds). Random weights; the tiny decoders are "
             "ComfyUI's own TAESD class loaded by its `VAELoader` (taesd, taesdxl, taesd3, taef1). Each network "
             "call timed alone at batch 1 (one particle); a run's cost = particles × the sum of its calls.", "",
             "### Seconds per network call, one particle", "",
             "| seconds | " + " | ".join(f"{FAST_FAMILIES[f][0]} {s}²" for f, (s, *_) in found.items()) + " |",
             "|---" * (len(found) + 1) + "|"]
    labels = [("denoiser", "denoiser forward (one sampler step, cfg 1)")]
    labels += [(f"full_{c}", f"full VAE: {COMPONENT_LABELS[c] if c != 'encoder' else 'encoder forward, no grad'}")
               for c in AUTOENCODER_CALLS]
    labels += [(f"fast_{c}", f"TAESD: {COMPONENT_LABELS[c] if c != 'encoder' else 'encoder forward, no grad'}")
               for c in AUTOENCODER_CALLS]
    for key, label in labels:
        lines.append(f"| {label} | " + " | ".join(f"{t[key]:.3f}" for _, t, _ in found.values()) + " |")
    for every in (4, 1):
        for kind, name in (("full", "full decoder"), ("fast", "TAESD")):
            lines.append(f"| **iteration, {name}, D(E) every {every}** | " + " | ".join(
                f"{iteration_seconds(t, kind, every):.2f}" for _, t, _ in found.values()) + " |")
    lines.append("| decoder share of a full-decoder iteration (D(E) every 4) | " + " | ".join(
        f"{1 - t['denoiser'] / iteration_seconds(t, 'full', 4):.0%}" for _, t, _ in found.values()) + " |")
    lines.append("| TAESD decoder fwd + bwd / full decoder fwd + bwd | " + " | ".join(
        f"{decoder_pair(t, 'fast') / decoder_pair(t, 'full'):.3f}" for _, t, _ in found.values()) + " |")
    for family, (size, t, notes) in found.items():
        name = FAST_FAMILIES[family][0]
        lines += ["", f"### {name} at {size}², {FAST_PARTICLES} particles: each preset's whole run", ""]
        lines += preset_table(t, family)
        lines += [f"- {note}." for note in notes]
    check = check_lines(fast, basis)
    if check:
        lines += ["", *check]
    lines += ["", *FAST_NOTES]
    return lines


def decoder_pair(t: dict[str, float], kind: str) -> float:
    return t[f"{kind}_decoder_forward"] + t[f"{kind}_decoder_backward"]


def iteration_seconds(t: dict[str, float], kind: str, every: int) -> float:
    return (t["denoiser"] + t[f"{kind}_decoder_forward"] + t[f"{kind}_decoder_backward"]
            + (t[f"{kind}_decoder_no_grad"] + t[f"{kind}_encoder"]) / every)


def preset_table(t: dict[str, float], family: str) -> list[str]:
    runs = candidate_settings()
    reference = run_cost(t, runs[0])
    unit = "SD 1.5 KSampler steps" if family == "sd15" else f"{FAST_FAMILIES[family][0]} sampler steps"
    lines = [f"| run (TAESD = {FAST_FAMILIES[family][1]}) | seconds | × recommended | {unit} | ≤ 1/4? |",
             "|---|---|---|---|---|"]
    for run in runs:
        cost = run_cost(t, run)
        ok = "yes" if cost <= FAST_TARGET * reference else "no"
        lines.append(f"| {run.label} | {cost:.0f} | {cost / reference:.3f} | {cost / t['denoiser']:.0f} | {ok} |")
    warm = t["full_encoder"] / reference
    lines += ["", f"A warm start (denoise 0.5) adds one full-encoder call: {t['full_encoder']:.1f} s, "
              f"{warm:.4f} × recommended, to any row."]
    return lines


def check_lines(fast: dict[str, Any], basis: str) -> list[str]:
    """The composition against whole iterations measured through run_dwgf."""
    lines = []
    for key, check in fast.get("checks", {}).items():
        c = {name: v[basis] for name, v in check["components"].items()}
        t = {"denoiser": c["unet"], **{f"full_{k}": c[k] for k in AUTOENCODER_CALLS},
             **{f"fast_{k}": c[f"fast_{k}"] for k in AUTOENCODER_CALLS}}
        steps, every, full = check["steps"], check["ae_every"], check["full_decoder_steps"]
        lines += [f"### Composition against whole iterations ({key}, 1 particle, {steps} iterations, D(E) every "
                  f"{every}, full_decoder_steps {full}, through `run_dwgf` in ComfyUI's sampler)", "",
                  "| iteration | decoder | D(E) recomputed | measured (s) | composed (s) | measured / composed |",
                  "|---|---|---|---|---|---|"]
        last, measured_sum, composed_sum = None, 0.0, 0.0
        for index, mark in enumerate(check["iterations"]):
            kind = "full" if index >= steps - full else "fast"
            refresh = index % every == 0 or kind != last
            last = kind
            composed = (t["denoiser"] + t[f"{kind}_decoder_forward"] + t[f"{kind}_decoder_backward"]
                        + (t[f"{kind}_decoder_no_grad"] + t[f"{kind}_encoder"] if refresh else 0.0))
            note = " (first, warm-up)" if index == 0 else ""
            lines.append(f"| {index}{note} | {'full' if kind == 'full' else 'TAESD'} | {'yes' if refresh else 'no'} | "
                         f"{mark[basis]:.2f} | {composed:.2f} | {mark[basis] / composed:.3f} |")
            if index > 0:
                measured_sum += mark[basis]
                composed_sum += composed
        lines += ["", f"Iterations 1–{steps - 1} together: measured {measured_sum:.2f} s, composed "
                  f"{composed_sum:.2f} s, ratio {measured_sum / composed_sum:.3f}. The components were timed alone "
                  "just after the run, in the same sampler call, at the same size."]
    return lines


FAST_NOTES = [
    "How the costs are composed: per iteration and particle, the denoiser forward, the decoder forward with graph "
    "and its backward, plus (where D(E(·)) is recomputed: every `ae_every`-th iteration, and at the switch to the "
    "full decoder) a decoder forward without gradient and an encoder forward, through TAESD in the first "
    "`steps − full_decoder_steps` iterations and the full VAE in the rest (`dwgf/flow.py`); × 4 particles. Not "
    "counted: the final decode of the particles (the same for every row), the node's own overhead (1.5–13 % "
    "above the network calls at 256², measured above) and the denoiser's batch efficiency at N = 4 "
    "(≈ 5 % faster than 4 × batch 1 at 256²). Warm start and cold start run the same number of iterations.",
    "'sampler steps': the run's seconds over one step of ComfyUI's own sampler (euler, cfg 1, batch 1) of the "
    "same model at the same size, measured in the same run (for SD 1.5 at 512² the unit `dwgf/presets.py` uses).",
]
