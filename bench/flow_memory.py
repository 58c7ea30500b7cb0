"""Memory of one DWGF iteration on the flow-matching models at 1024², per memory mode, estimated on the CPU:
SD3 and Flux (issue 18), Z-Image, Lumina 2 and Chroma (issue 27); and with a tiny decoder (TAESD) as the
fast autoencoder, for SDXL and each of those (issue 25; the last three share Flux's latent space, taef1); and
Qwen-Image, Flux.2 and HunyuanImage 2.1 (issue 27 item 4), the families outside those latent spaces
(``tools/latent_families.py``): Qwen-Image on the Wan 2.1 video VAE (one image = one latent frame, 5-D latents
``(N, 16, 1, H/8, W/8)``, 2×2 patches), Flux.2 on 128-channel latents of a x16 VAE and HunyuanImage 2.1 on
64-channel latents of a x32 VAE (both 1×1 patches). ComfyUI 0.3.75 has no tiny decoder for their latent spaces,
so they are in the main table and the 24 GiB table (as "no tiny VAE") but not in the fast decoder's.

No GPU and no checkpoint here, so the figure is put together from parts that can be measured:

* **weights**: the parameter count of the full-depth transformer (SD3.5 medium's 24 joint blocks;
  Flux dev's 19 double- and 38 single-stream blocks; ``latent_families.FULL_DEPTHS`` for the three newest),
  built by ComfyUI's own classes on the ``meta`` device (no memory), at bf16; and the family's VAE's;
* **the transformer's forward** (DWGF never back-propagates through it): its peak working memory
  measured with the CPU allocator's events (``bench/speed.py``'s ``MemoryProbe``) on the
  reduced-depth random model at 16², 24² and 32² latents (and 40², 48² for Z-Image, Lumina 2, Chroma and
  Qwen-Image; 8² … 24² for Flux.2 and HunyuanImage 2.1, whose 1×1 patches give the same 64 … 576 tokens),
  fitted as ``a + b·T + c·T²`` over image tokens ``T`` (for the five probes: least squares with every coefficient
  >= 0) and taken at 1024² (``T`` = 4096; HunyuanImage 2.1's x32 latents: 1024). A no-grad forward frees each
  block's activations before the
  next block, so depth does not add to the peak; the ``c·T²`` part is the CPU's attention scores,
  which a GPU's flash / memory-efficient attention never materialises, so both are reported;
* **the decoder's working memory** per memory mode: the memory guard's own estimate
  (``dwgf/memory.py``: the decoder probed on tiny latents, saved bytes fitted and scaled by the peak
  ratio measured on SD 1.5), for 4 particles at 1024² (the latent side 1024 / the VAE's factor);
* **PSLD** (back-propagates through the transformer): the bytes autograd saves through the
  reduced-depth model, per block, times the full block count (for the three newest: probed at 64 and 256 image
  tokens and extrapolated linearly, since Flux.2's text is padded to 512 tokens whose share would not scale).
* **the fast path** (issue 25): ComfyUI's TAESD of the family (taesdxl, taesd3, taef1; random weights,
  ``tools/sd_architectures.build_taesd``) probed exactly as the memory guard probes the full decoder;
  a run with ``full_decoder_steps`` 0 back-propagates only through it, one with ``full_decoder_steps`` > 0
  also through the full decoder in its last iterations, so the larger of the two counts. SDXL's UNet is
  measured like the transformers (its forward peak fitted over latent pixels). Which memory mode is the
  fastest that fits a 24 GiB card is read off weights (SDXL fp16, SD3.5 bf16, Flux dev fp8 — 1 byte per
  parameter — beside bf16; Qwen-Image, Flux.2 dev and HunyuanImage 2.1 fp8 e4m3fn, the files Comfy-Org ships)
  + 1 GiB of CUDA context + the iteration's working memory.

Run: ``.venv/bin/python bench/flow_memory.py [sdxl sd3 flux … qwen_image flux2 hunyuan_image21]`` (about 5 minutes
a family, ~8 GB of RAM for SDXL and Flux.2; one family at a time keeps the RAM down);
writes ``bench/results/flow_memory.json`` and ``.md``; a rerun keeps the families already measured.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "bench"))

import comfyui_env  # noqa: E402
import latent_families  # noqa: E402
import sd_architectures  # noqa: E402
from speed import MemoryProbe, saved_for_backward, weight_storages  # noqa: E402

RESULTS = ROOT / "bench" / "results"
GIB = 2.0**30
SIDES = (16, 24, 32)  # latent sides of the transformer probes (64 … 256 tokens)
TARGET_LATENT = 128  # 1024² images
PARTICLES = 4
BLOCKS = {"sd3": ("joint_blocks",), "flux": ("double_blocks", "single_blocks"),
          "zimage": ("layers", "noise_refiner", "context_refiner"),
          "lumina2": ("layers", "noise_refiner", "context_refiner"), "chroma": ("double_blocks", "single_blocks"),
          "qwen_image": ("transformer_blocks",), "flux2": ("double_blocks", "single_blocks"),
          "hunyuan_image21": ("double_blocks", "single_blocks")}
NEW_LATENT_FAMILIES = latent_families.FAMILIES  # no tiny VAE in ComfyUI 0.3.75 for their latent spaces
FAMILIES = ("sdxl", "sd3", "flux", "zimage", "lumina2", "chroma", *NEW_LATENT_FAMILIES)
FLOW_FAMILIES = FAMILIES[1:]
NAMES = {"sdxl": "SDXL", "sd3": "SD3.5 medium", "flux": "Flux dev", "zimage": "Z-Image", "lumina2": "Lumina 2",
         "chroma": "Chroma", "qwen_image": "Qwen-Image", "flux2": "Flux.2 dev", "hunyuan_image21": "HunyuanImage 2.1"}
# bytes per weight as usually loaded on a 24 GB card: SDXL fp16, SD3.5 medium bf16, Flux dev and Chroma fp8
# (e4m3fn), Z-Image and Lumina 2 bf16 (their published files); Qwen-Image (qwen_image_fp8_e4m3fn), Flux.2 dev
# (flux2_dev_fp8mixed) and HunyuanImage 2.1 (hunyuanimage2.1_fp8_e4m3fn, beside its bf16 file) fp8 as Comfy-Org
# repackages them
WEIGHT_BYTES = {"sdxl": 2, "sd3": 2, "flux": 1, "zimage": 2, "lumina2": 2, "chroma": 1, "qwen_image": 1, "flux2": 1,
                "hunyuan_image21": 1}
# latent pixels per transformer token along a side (1 for the 1x1 patches of Flux.2 and HunyuanImage 2.1)
PATCH = {"flux2": 1, "hunyuan_image21": 1}
# the full-depth block counts' keys in sd_architectures.FULL_DEPTHS and latent_families.FULL_DEPTHS (NextDiT: two
# refiners of n_refiner_layers)
DEPTH_KEYS = {"num_blocks": 1, "depth": 1, "depth_single_blocks": 1, "n_layers": 1, "n_refiner_layers": 2,
              "num_layers": 1}
CARD_GIB = 24.0
CUDA_CONTEXT_GIB = 1.0
FULL_DECODER_STEPS = (0, 5)  # with a fast VAE: 0 = never the full decoder's backward; > 0 = in the last iterations


def downscale(family: str) -> int:
    return latent_families.VAE_DOWNSCALE.get(family, 8)


def target_latent(family: str) -> int:
    """The latent side of a 1024² image (1024 / the VAE's factor)."""
    return 1024 // downscale(family)


def full_depths(family: str) -> dict:
    return (latent_families.FULL_DEPTHS if family in NEW_LATENT_FAMILIES else sd_architectures.FULL_DEPTHS)[family]


def full_parameters(family: str) -> int:
    """The full-depth denoiser's parameter count, built on the meta device."""
    if family in NEW_LATENT_FAMILIES:  # latent_families.build_model's configuration at the published depth
        unet_config = {**latent_families.CONFIGS[family], **latent_families.FULL_DEPTHS[family]}
        config = latent_families.model_class(family)(dict(unet_config))
        config.unet_config.update(unet_config)
    elif family == "sdxl":
        import comfy.supported_models

        config = comfy.supported_models.SDXL(dict(sd_architectures.UNET_CONFIGS["sdxl"]))
    else:
        config = sd_architectures.flow_model_config(family, full_depth=True)
    config.set_inference_dtype(torch.bfloat16, None)
    base = config.get_model({}, "", device=torch.device("meta"))
    return sum(p.numel() for p in base.diffusion_model.parameters())


def block_count(network: torch.nn.Module, family: str) -> int:
    return sum(len(getattr(network, name)) for name in BLOCKS[family])


def call_transformer(base, family: str, side: int, grad: bool) -> torch.Tensor:
    if family in NEW_LATENT_FAMILIES:  # the model's own extra_conds (Flux.2 pads the text to 512 tokens), the
        context, extras = latent_families.conditioning(family)[0]  # network's own layout (Qwen-Image: one frame)
        frames = (1,) if family == "qwen_image" else ()
        x = torch.randn(1, latent_families.LATENT_CHANNELS[family], *frames, side, side, requires_grad=grad)
        made = base.extra_conds(cross_attn=context, noise=x, device=torch.device("cpu"), **extras)
        conds = {name: cond.cond for name, cond in made.items()}
        with torch.set_grad_enabled(grad):
            return base.apply_model(x, torch.tensor([0.5]), **conds), x
    context, extras = sd_architectures.conditioning(family, tokens=16 if family != "sdxl" else 77)[0]
    if family not in ("sdxl", "sd3", "flux"):  # the model's own extra conditioning (NextDiT's num_tokens, …)
        x = torch.randn(1, 16, side, side, requires_grad=grad)
        made = base.extra_conds(cross_attn=context, noise=x, device=torch.device("cpu"), **extras)
        conds = {name: cond.cond for name, cond in made.items() if name != "c_crossattn"}
        with torch.set_grad_enabled(grad):
            return base.apply_model(x, torch.tensor([0.5]), c_crossattn=context, **conds), x
    conds = {"y": extras["pooled_output"]}
    if family == "sdxl":  # the UNet's class vector: pooled text + size conditions (2816 wide)
        conds = {"y": torch.randn(1, sd_architectures.UNET_CONFIGS["sdxl"]["adm_in_channels"])}
    if "guidance" in extras:
        conds["guidance"] = torch.tensor([extras["guidance"]])
    channels = 4 if family == "sdxl" else 16
    x = torch.randn(1, channels, side, side, requires_grad=grad)
    with torch.set_grad_enabled(grad):
        return base.apply_model(x, torch.tensor([0.5]), c_crossattn=context, **conds), x


def probe_sides(family: str) -> tuple[int, ...]:
    """The latent sides probed: three for SD3, Flux and SDXL (as first measured); five for the newer models,
    whose token padding (NextDiT pads to multiples of 32) makes three points a poor fit; for the 1×1 patches of
    Flux.2 and HunyuanImage 2.1 the sides of the same token counts."""
    sides = SIDES if family in ("sdxl", "sd3", "flux") else (*SIDES, 40, 48)
    return tuple(side * PATCH.get(family, 2) // 2 for side in sides)


def forward_peaks(base, family: str) -> list[float]:
    peaks = []
    for side in probe_sides(family):
        probe = MemoryProbe(torch.device("cpu"))
        with torch.inference_mode(False):
            probe.start()
            call_transformer(base, family, side, grad=False)
            peaks.append(probe.stop()["peak"])
    return peaks


def saved_per_block(model, adapter, family: str, side: int) -> float:
    """Saved-for-backward bytes per block, the way PSLD runs it (the adapter's autograd context)."""
    base = model.model
    network = base.diffusion_model
    with torch.inference_mode(False), adapter.autograd_through_unet(model):
        with saved_for_backward(weight_storages(network)) as saved:
            call_transformer(base, family, side, grad=True)
    return sum(saved.values()) / block_count(network, family)


def tokens_of(family: str, latent_side: int) -> float:
    """The fit's variable: image tokens (2×2 latent patches, 1×1 for Flux.2 and HunyuanImage 2.1) for the
    transformers, latent pixels for the UNet."""
    return float(latent_side**2 if family == "sdxl" else (latent_side // PATCH.get(family, 2)) ** 2)


def fit_tokens(peaks: list[float], family: str) -> tuple[float, float, float]:
    """``a + b·T + c·T²`` through the probes: exact for three, least squares with every coefficient >= 0
    for the newer models' five (a peak cannot shrink with more tokens; padded tokens make the raw fit
    swing negative), the best of the fits on each subset of the three terms."""
    tokens = [tokens_of(family, side) for side in probe_sides(family)]
    target = torch.tensor(peaks, dtype=torch.float64).unsqueeze(1)
    design = torch.tensor([[1.0, t, t * t] for t in tokens], dtype=torch.float64)
    if len(tokens) == 3:
        a, b, c = torch.linalg.solve(design, target).squeeze(1).tolist()
        return a, b, c
    best: tuple[float, list[float]] | None = None
    for terms in ([0, 1, 2], [0, 1], [0, 2], [1, 2], [0], [1], [2]):
        solution = torch.linalg.lstsq(design[:, terms], target).solution.squeeze(1)
        if bool((solution < 0).any()):
            continue
        residual = float(((design[:, terms] @ solution.unsqueeze(1) - target) ** 2).sum())
        if best is None or residual < best[0]:
            coefficients = [0.0, 0.0, 0.0]
            for term, value in zip(terms, solution.tolist(), strict=True):
                coefficients[term] = value
            best = (residual, coefficients)
    assert best is not None, peaks
    a, b, c = best[1]
    return a, b, c


def measure_new_latent(family: str, pack_memory, memory_guard, adapter, modes: dict) -> dict:
    """Qwen-Image, Flux.2, HunyuanImage 2.1 (``tools/latent_families.py``): as ``measure`` on their own VAE
    (its factor and channels), no tiny VAE; PSLD's saved bytes per block fitted linearly over two probes."""
    with torch.inference_mode():
        random = latent_families.build(family, torch.bfloat16)
    base = random.model.model
    side = target_latent(family)
    tokens = tokens_of(family, side)
    peaks = forward_peaks(base, family)
    a, b, c = fit_tokens(peaks, family)
    autoencoder = adapter.prepare_vae(random.vae, random.model)
    assert autoencoder.downscale == downscale(family), (autoencoder.downscale, family)
    footprint = memory_guard.decoder_footprint(autoencoder)
    decoder = {}
    for name, (chunk, checkpointed) in modes.items():
        run = pack_memory.RunFootprint(side, side, downscale(family), PARTICLES, chunk or PARTICLES, checkpointed)
        decoder[name] = run.working_bytes(footprint) / GIB
    full = full_parameters(family)
    vae_parameters = sum(p.numel() for p in random.vae.first_stage_model.parameters())
    psld_sides = (8 * PATCH.get(family, 2), 16 * PATCH.get(family, 2))  # 64 and 256 image tokens
    psld_saved = [saved_per_block(random.model, adapter, family, s) for s in psld_sides]
    psld_tokens = [tokens_of(family, s) for s in psld_sides]
    slope = (psld_saved[1] - psld_saved[0]) / (psld_tokens[1] - psld_tokens[0])
    per_block_at_target = psld_saved[1] + slope * (tokens - psld_tokens[1])
    blocks_full = sum(per * full_depths(family).get(key, 0) for key, per in DEPTH_KEYS.items())
    return {
        "transformer_parameters_full_depth": full,
        "transformer_weights_gib_bf16": 2 * full / GIB,
        "vae_parameters": vae_parameters,
        "vae_weights_gib_fp32": 4 * vae_parameters / GIB,
        "vae_downscale": downscale(family),
        "latent_side_at_1024": side,
        "image_tokens_at_1024": tokens,
        "transformer_forward_peak_fit_bytes": [a, b, c],
        "transformer_forward_probe_sides_and_peak_bytes": [list(probe_sides(family)), peaks],
        "transformer_forward_peak_gib_linear": (a + b * tokens) / GIB,
        "transformer_forward_peak_gib_with_cpu_attention_scores": (a + b * tokens + c * tokens**2) / GIB,
        "particles": PARTICLES,
        "decoder_footprint_bytes": [footprint.constant, footprint.linear, footprint.quadratic],
        "decoder_working_gib_by_mode": decoder,
        "psld_probe_tokens_and_saved_bytes_per_block": [psld_tokens, psld_saved],
        "psld_saved_gib_per_block_one_particle": per_block_at_target / GIB,
        "psld_saved_gib_full_depth_one_particle": per_block_at_target * blocks_full / GIB,
        "full_depth_blocks": blocks_full,
        "fast_vae": None,  # ComfyUI 0.3.75 has no tiny decoder for this latent space
        "weight_bytes_per_parameter": WEIGHT_BYTES[family],
    }


def measure(family: str, pack_memory, memory_guard, adapter, modes: dict) -> dict:
    if family in NEW_LATENT_FAMILIES:
        return measure_new_latent(family, pack_memory, memory_guard, adapter, modes)
    with torch.inference_mode():
        random = sd_architectures.build_random_sd(family, torch.bfloat16)
        tiny = sd_architectures.build_taesd(sd_architectures.FAMILY_TAESD[family])
    base = random.model.model
    tokens = tokens_of(family, TARGET_LATENT)
    peaks = forward_peaks(base, family)
    a, b, c = fit_tokens(peaks, family)
    autoencoder = adapter.prepare_vae(random.vae, random.model)
    fast = adapter.prepare_fast_vae(tiny, random.vae, random.model, autoencoder)
    footprint = memory_guard.decoder_footprint(autoencoder)
    fast_footprint = memory_guard.decoder_footprint(fast)
    decoder, fast_decoder = {}, {}
    for name, (chunk, checkpointed) in modes.items():
        run = pack_memory.RunFootprint(TARGET_LATENT, TARGET_LATENT, 8, PARTICLES, chunk or PARTICLES, checkpointed)
        decoder[name] = run.working_bytes(footprint) / GIB
        fast_decoder[name] = run.working_bytes(fast_footprint) / GIB
    full = full_parameters(family)
    vae_parameters = sum(p.numel() for p in random.vae.first_stage_model.parameters())
    taesd_parameters = sum(p.numel() for p in tiny.first_stage_model.parameters())
    fast_entries = {"taesd_parameters": taesd_parameters, "taesd_weights_gib_fp32": 4 * taesd_parameters / GIB,
                    "fast_decoder_footprint_bytes": [fast_footprint.constant, fast_footprint.linear,
                                                     fast_footprint.quadratic],
                    "fast_decoder_working_gib_by_mode": fast_decoder,
                    "weight_bytes_per_parameter": WEIGHT_BYTES[family]}
    if family == "sdxl":  # DWGF never back-propagates through the UNet; PSLD on SDXL is not estimated here
        return {"transformer_parameters_full_depth": full, "transformer_weights_gib_bf16": 2 * full / GIB,
                "vae_parameters": vae_parameters, "vae_weights_gib_fp32": 4 * vae_parameters / GIB,
                "transformer_forward_peak_fit_bytes": [a, b, c],
                "transformer_forward_peak_gib_linear": (a + b * tokens) / GIB,
                "transformer_forward_peak_gib_with_cpu_attention_scores": (a + b * tokens + c * tokens**2) / GIB,
                "particles": PARTICLES, "decoder_working_gib_by_mode": decoder, **fast_entries}
    per_block = saved_per_block(random.model, adapter, family, 32)
    per_block_at_target = per_block * tokens / 256  # saved activations grow linearly with tokens (+ text)
    blocks_full = sum(per * sd_architectures.FULL_DEPTHS[family].get(key, 0) for key, per in DEPTH_KEYS.items())
    return {
        "transformer_parameters_full_depth": full,
        "transformer_weights_gib_bf16": 2 * full / GIB,
        "vae_parameters": vae_parameters,
        "vae_weights_gib_fp32": 4 * vae_parameters / GIB,
        "transformer_forward_peak_fit_bytes": [a, b, c],
        "transformer_forward_probe_sides_and_peak_bytes": [list(probe_sides(family)), peaks],
        "transformer_forward_peak_gib_linear": (a + b * tokens) / GIB,
        "transformer_forward_peak_gib_with_cpu_attention_scores": (a + b * tokens + c * tokens**2) / GIB,
        "particles": PARTICLES,
        "decoder_working_gib_by_mode": decoder,
        "psld_saved_gib_per_block_one_particle": per_block_at_target / GIB,
        "psld_saved_gib_full_depth_one_particle": per_block_at_target * blocks_full / GIB,
        "full_depth_blocks": blocks_full,
        **fast_entries,
    }


def report(results: dict) -> str:
    families = [f for f in FLOW_FAMILIES if f in results]
    lines = ["# DWGF on the flow-matching models at 1024²: memory of one iteration (estimated on the CPU)", "",
             "`bench/flow_memory.py`; how each part is measured is in its docstring. "
             f"{PARTICLES} particles, bf16 transformer, fp32 VAE. GiB.", "",
             "| | " + " | ".join(NAMES[f] for f in families) + " |", "|---" * (len(families) + 1) + "|"]
    measured = [results[f] for f in families]

    def row(label: str, key: str, fmt: str = "{:.1f}") -> None:
        lines.append(f"| {label} | " + " | ".join(fmt.format(r[key]) for r in measured) + " |")

    lines.append("| transformer parameters (full depth) | " + " | ".join(
        f"{r['transformer_parameters_full_depth'] / 1e9:.2f} B" for r in measured) + " |")
    row("transformer weights (bf16)", "transformer_weights_gib_bf16")
    row("VAE weights (fp32)", "vae_weights_gib_fp32", "{:.2f}")
    row("transformer forward, peak per particle (GPU attention: linear part)", "transformer_forward_peak_gib_linear",
        "{:.2f}")
    row("transformer forward, peak per particle with CPU attention scores",
        "transformer_forward_peak_gib_with_cpu_attention_scores", "{:.2f}")
    modes = list(measured[0]["decoder_working_gib_by_mode"])
    for mode in modes:
        lines.append(f"| decoder working memory, *{mode}* | " + " | ".join(
            f"{r['decoder_working_gib_by_mode'][mode]:.1f}" for r in measured) + " |")
    for mode in modes:
        at_once = PARTICLES if mode.startswith("fastest") else 1  # the denoiser runs on the same chunks
        total = [r["transformer_weights_gib_bf16"] + r["vae_weights_gib_fp32"]
                 + max(at_once * r["transformer_forward_peak_gib_linear"], r["decoder_working_gib_by_mode"][mode])
                 for r in measured]
        lines.append(f"| **one DWGF iteration, *{mode}*** (weights + the larger of forward and decoder) | "
                     + " | ".join(f"**{t:.1f}**" for t in total) + " |")
    row("PSLD: saved through the transformer, 1 particle", "psld_saved_gib_full_depth_one_particle")
    lines.append("| transformer weights as usually loaded | " + " | ".join(
        f"{WEIGHT_BYTES[f] * r['transformer_parameters_full_depth'] / GIB:.1f} "
        f"({'fp8' if WEIGHT_BYTES[f] == 1 else 'fp16/bf16'})" for f, r in zip(families, measured, strict=True)) + " |")
    lines.append(f"| **fastest mode that fits {CARD_GIB:.0f} GiB (no tiny VAE)**: those weights + "
                 f"{CUDA_CONTEXT_GIB:.0f} GiB CUDA context + the iteration | " + " | ".join(
                     fits_card(r, modes, False, 0, WEIGHT_BYTES[f]) for f, r in zip(families, measured, strict=True))
                 + " |")
    lines += ["", "The transformer's forward (on as many particles at once as the decoder) and the decoder's backward "
              "never hold memory at the same time "
              "(the denoiser runs before any decoder graph exists), so an iteration needs the weights plus the "
              "larger of the two. Not measured on a GPU (none was lent); the decoder figures carry the memory "
              "guard's safety margin (peak 1.25× the saved bytes, measured 1.15× on SD 1.5)."]
    new = [f for f in families if f in NEW_LATENT_FAMILIES]
    if new:
        lines += ["", f"{', '.join(NAMES[f] for f in new)}: ComfyUI 0.3.75 has no tiny decoder for their latent "
                  "spaces, so no fast-VAE figures; their decoder runs at the latent side 1024 / the VAE's factor ("
                  + ", ".join(f"{NAMES[f]} {results[f]['latent_side_at_1024']}² latents, x{results[f]['vae_downscale']}"
                              f", {results[f]['image_tokens_at_1024']:.0f} image tokens" for f in new) + ")."]
    lines += ["", *fast_report(results)]
    return "\n".join(lines) + "\n"


def iteration_gib(r: dict, mode: str, fast: bool, full_decoder_steps: int, weight_bytes: int) -> float:
    """Weights + CUDA context + the larger of the denoiser's forward and the decoders' working memory."""
    at_once = PARTICLES if mode.startswith("fastest") else 1  # the denoiser runs on the same chunks
    decoders = []
    if not fast or full_decoder_steps > 0:
        decoders.append(r["decoder_working_gib_by_mode"][mode])
    if fast:
        decoders.append(r["fast_decoder_working_gib_by_mode"][mode])
    weights = (weight_bytes * r["transformer_parameters_full_depth"] / GIB + r["vae_weights_gib_fp32"]
               + (r["taesd_weights_gib_fp32"] if fast else 0.0))
    return weights + CUDA_CONTEXT_GIB + max(at_once * r["transformer_forward_peak_gib_linear"], *decoders)


def fits_card(r: dict, modes: list[str], fast: bool, full_decoder_steps: int, weight_bytes: int) -> str:
    """The fastest memory mode whose iteration fits the card (``none`` when even the least does not)."""
    totals = [iteration_gib(r, mode, fast, full_decoder_steps, weight_bytes) for mode in modes]
    return next((m for m, total in zip(modes, totals, strict=True) if total <= CARD_GIB), "none")


def fast_report(results: dict) -> list[str]:
    """The fast path's memory: the tiny decoder's working memory and what fits a 24 GiB card."""
    families = [f for f in FAMILIES if f in results and "fast_decoder_working_gib_by_mode" in results[f]]
    if not families:
        return []
    slow = [f for f in NEW_LATENT_FAMILIES if f in results]  # no tiny VAE: only in the 24 GiB table
    modes = list(results[families[0]]["decoder_working_gib_by_mode"])
    lines = ["## With a tiny decoder as the fast VAE (issue 25), 1024², 4 particles", "",
             "Decoder working memory (GiB), the memory guard's estimate from probing each decoder:", "",
             "| decoder, mode | " + " | ".join(NAMES[f] for f in families) + " |", "|---" * (len(families) + 1) + "|"]
    for mode in modes:
        lines.append(f"| full VAE, *{mode}* | " + " | ".join(
            f"{results[f]['decoder_working_gib_by_mode'][mode]:.1f}" for f in families) + " |")
    for mode in modes:
        lines.append(f"| TAESD, *{mode}* | " + " | ".join(
            f"{results[f]['fast_decoder_working_gib_by_mode'][mode]:.2f}" for f in families) + " |")
    lines.append("| TAESD parameters | " + " | ".join(
        f"{results[f]['taesd_parameters'] / 1e6:.2f} M" for f in families) + " |")
    lines += ["", f"Whole iteration (GiB): weights + {CUDA_CONTEXT_GIB:.0f} GiB CUDA context + the larger of the "
              "denoiser's forward (GPU attention) and the decoders' working memory. Weights: "
              + ", ".join(f"{NAMES[f]} {WEIGHT_BYTES[f] * results[f]['transformer_parameters_full_depth'] / GIB:.1f}"
                          f" GiB ({'fp8' if WEIGHT_BYTES[f] == 1 else 'fp16/bf16'})" for f in families + slow)
              + "; the VAE fp32, text encoders not counted (ComfyUI offloads them after encoding).", "",
              "| model | fast VAE | full_decoder_steps | " + " | ".join(f"*{m.split(' (')[0]}*" for m in modes)
              + f" | fastest mode that fits {CARD_GIB:.0f} GiB |", "|---" * (len(modes) + 4) + "|"]
    for family in families:
        r = results[family]
        variants = [(False, 0, "–")] + [(True, k, str(k) if k else "0") for k in FULL_DECODER_STEPS]
        for fast, steps, label in variants:
            totals = [iteration_gib(r, mode, fast, steps, WEIGHT_BYTES[family]) for mode in modes]
            fitting = next((m for m, total in zip(modes, totals, strict=True) if total <= CARD_GIB), None)
            lines.append(f"| {NAMES[family]} | {'TAESD' if fast else 'no'} | {label} | "
                         + " | ".join(f"{t:.1f}" for t in totals) + f" | {fitting or 'none'} |")
    for family in slow:
        r = results[family]
        totals = [iteration_gib(r, mode, False, 0, WEIGHT_BYTES[family]) for mode in modes]
        lines.append(f"| {NAMES[family]} | no tiny VAE | – | " + " | ".join(f"{t:.1f}" for t in totals)
                     + f" | {fits_card(r, modes, False, 0, WEIGHT_BYTES[family])} |")
    lines += ["", "With full_decoder_steps > 0 the full decoder's backward still runs in the last iterations, so the "
              "run needs what it needs without the fast VAE; only full_decoder_steps 0 takes the full decoder's "
              "backward out (the warm start's encoder and the final VAE Decode run without gradient, outside "
              "this peak)."]
    return lines


def main() -> None:
    comfyui_env.import_comfyui()
    sub = comfyui_env.pack_submodule
    pack_memory, memory_guard, adapter = sub("dwgf.memory"), sub("nodes.memory_guard"), sub("nodes.comfy_adapter")
    modes = sub("nodes.sampler_inputs").MEMORY_MODES
    torch.set_num_threads(1)
    path = RESULTS / "flow_memory.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    for family in [f for f in sys.argv[1:] or FAMILIES if f in FAMILIES]:
        done = "fast_vae" if family in NEW_LATENT_FAMILIES else "fast_decoder_working_gib_by_mode"
        if done in results.get(family, {}):
            continue  # measured: a rerun resumes
        results[family] = measure(family, pack_memory, memory_guard, adapter, modes)
        print(family, json.dumps(results[family], indent=1), flush=True)
        comfyui_env.unload_models()
        RESULTS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1) + "\n")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "flow_memory.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / "flow_memory.md").write_text(report(results))
    print(report(results))


if __name__ == "__main__":
    main()
