"""The inputs the sampler nodes share, and DWGF's settings assembled from them."""

from __future__ import annotations

from typing import Any

from ..dwgf.errors import require
from ..dwgf.flow import FULL_DECODER_STEPS, DWGFConfig
from ..dwgf.presets import CUSTOM, PRESET_NAMES, PRESETS
from ..dwgf.repulsion import REPULSION_SCHEDULES
from .common import DEGRADATION_TYPE
from .memory_guard import MEMORY_CHECK_TOOLTIP, RunMemory
from .restoration import require_finite_inputs


def problem_inputs() -> dict[str, Any]:
    """The inputs the DWGF and PSLD Samplers share: the model, the VAE and the restoration problem."""
    return {
        "model": ("MODEL", {"tooltip": "The diffusion model (SD 1.x, 2.x eps or v, SDXL), as loaded by "
                                       "Load Checkpoint or the DWGF Demo Model."}),
        "positive": ("CONDITIONING", {"tooltip": "Prompt conditioning. The method's reference uses an empty "
                                                 "prompt and no guidance."}),
        "negative": ("CONDITIONING", {"tooltip": "Negative/unconditional prompt; used only when cfg > 1."}),
        "vae": ("VAE", {"tooltip": "The VAE that belongs to the model; the data term runs through its decoder."}),
        "degradation": (DEGRADATION_TYPE, {"tooltip": "The forward operator, from a Degradation Operator node."}),
        "measurement": ("IMAGE", {"tooltip": "The measurement y as a picture (the Degradation Operator's "
                                             "'measurement' output, or your degraded photo). A batch restores "
                                             "each image in turn."}),
        "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                         "tooltip": "Seed of the starting particles and of every noise draw; the same seed "
                                    "gives the same particles."}),
    }


def dwgf_method_inputs() -> dict[str, Any]:
    """DWGF's own weights, shared by the DWGF Sampler and its custom-sampling twin."""
    return {
        "learning_rate": ("FLOAT", {"default": 1.0, "min": 0.0001, "max": 10.0, "step": 0.01,
                                    "tooltip": "Adam's learning rate (reference 1.0)."}),
        "prior_weight": ("FLOAT", {"default": 0.15, "min": 0.0, "max": 100.0, "step": 0.005,
                                   "tooltip": "w, the weight of the diffusion prior (reference 0.15 for SD "
                                              "at 512²; it need not transfer across latent sizes: "
                                              "sweep it for a new model)."}),
        "ae_weight": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 100.0, "step": 0.01,
                                "tooltip": "c_ae, the weight of the encoder-decoder prior-score term "
                                           "(reference 0.1; 0 switches it off)."}),
        "decoder_noise": ("FLOAT", {"default": 0.01, "min": 0.0, "max": 1.0, "step": 0.001,
                                    "tooltip": "σ_dec, the noise added to the decoded image in the data "
                                               "and encoder-decoder terms (reference 0.01)."}),
    }


MEMORY_MODES: dict[str, tuple[int, bool]] = {
    # name: (particle_chunk, checkpoint_decoder)
    "fastest (all particles at once)": (0, False),
    "less memory (one particle at a time)": (1, False),
    "least memory (one particle at a time, decoder checkpointing)": (1, True),
}
FASTEST = next(iter(MEMORY_MODES))
MEMORY_TOOLTIP = (
    "Trade speed for memory; the result is the same up to rounding. 'fastest' runs the networks on all "
    "particles at once: memory grows with the number of particles. 'less memory' runs them on one particle "
    "at a time, so memory no longer grows with particles, at about the same speed (SD 1.5 at 512² with "
    "4 particles: an estimated 7-11 GB). 'least memory' also checkpoints every VAE decoder block and "
    "recomputes it for the gradient: about a third of the memory of 'less memory' for roughly 10 % more "
    "time (for SDXL at 1024² or small cards)."
)


def memory_inputs() -> dict[str, Any]:
    """The optional memory mode and memory check of the DWGF samplers."""
    return {"memory": (list(MEMORY_MODES), {"default": FASTEST, "tooltip": MEMORY_TOOLTIP}),
            "memory_check": ("BOOLEAN", {"default": True, "tooltip": MEMORY_CHECK_TOOLTIP})}


def preset_tooltip() -> str:
    """What each preset runs and costs (4 particles), in SD 1.5 KSampler steps at 512²."""
    parts = [f"'{p.name}': {p.steps} iterations"
             + (f" from a warm start (denoise {p.denoise:g})" if p.denoise < 1 else "")
             + (f", D(E(x)) every {p.ae_every}" if p.ae_every > 1 else "")
             + (f", the fast_vae in all but the last {p.full_decoder_steps}" if p.fast else "")
             + f", about {p.ksampler_steps():,} SD 1.5 KSampler steps with 4 particles"
             + (" and TAESD" if p.fast else "") + f" ({p.summary})"
             for p in PRESETS.values()]
    return ("Run length. " + "; ".join(parts) + f"; '{CUSTOM}': the steps, denoise and ae_every inputs. "
            "The weights are always the inputs above. Costs: each network's CPU time on SD 1.5 at 512² as a "
            "multiple of one KSampler step (README, 'Quality against cost' and 'The fast path'). Without a "
            "fast_vae the 'fast' preset runs its iterations through the full VAE.")


def preset_inputs() -> dict[str, Any]:
    """The DWGF Sampler's preset and the two settings it sets (issue 15), all optional: an API prompt
    without them runs as before (preset 'custom', cold start, the reconstruction every iteration)."""
    return {
        "preset": (list(PRESET_NAMES), {"default": next(iter(PRESETS)), "tooltip": preset_tooltip()}),
        "denoise": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 1.0, "step": 0.01,
                              "tooltip": "Used when preset is 'custom'. 1 = the reference's cold start (particles "
                                         "from noise, sweep from t=999). Below 1 = warm start, like a KSampler's "
                                         "denoise: particles start at the encoded pseudo-inverse E(A†y) plus noise "
                                         "and the sweep starts at t ≈ denoise·999. Not in the paper."}),
        "ae_every": ("INT", {"default": 1, "min": 1, "max": 100,
                             "tooltip": "Used when preset is 'custom'. Recompute the encoder-decoder term's "
                                        "reconstruction D(E(x)) every k-th iteration and reuse it in between "
                                        "(1 = every iteration, the reference); saves an encoder and a decoder "
                                        "pass on the other iterations. Not in the paper."}),
    }


def fast_inputs() -> dict[str, Any]:
    """The optional fast VAE and how many final iterations still use the full one (issue 25)."""
    return {
        "fast_vae": ("VAE", {"tooltip": "Optional: a tiny VAE of the same latent space (Load VAE: taesd for SD "
                                        "1.x/2.x, taesdxl for SDXL, taesd3 for SD3, taef1 for Flux, Chroma, Z-Image "
                                        "and Lumina 2; files in "
                                        "models/vae_approx; "
                                        "the DWGF Demo Model's fast_vae for the demo model). Every iteration but the "
                                        "last full_decoder_steps decodes through it instead of the full VAE: many "
                                        "times cheaper in time and memory. Not in the paper; unconnected = the "
                                        "full VAE throughout."}),
        "full_decoder_steps": ("INT", {"default": FULL_DECODER_STEPS, "min": 0, "max": 998,
                                       "tooltip": "With a fast_vae: how many final iterations run through the full "
                                                  "VAE, so the result agrees with the decoder Particle Decode uses "
                                                  "(0 = the fast VAE throughout: least memory). The 'fast' preset "
                                                  "sets it; ignored without a fast_vae."}),
    }


def repulsion_inputs() -> dict[str, Any]:
    """The optional particle repulsion (issue 16; not in the paper), off by default."""
    return {
        "repulsion": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 100.0, "step": 0.1,
                                "tooltip": "Weight of a kernel repulsion between the particles of one image "
                                           "(0 = off, the paper's method). Pushes particles apart so they differ "
                                           "where the measurement leaves the answer open (more diverse samples, "
                                           "a more telling spread map), at some cost in the mean's PSNR. Not in "
                                           "the paper; see the README for measured trade-offs."}),
        "repulsion_schedule": (list(REPULSION_SCHEDULES), {
            "default": "high noise",
            "tooltip": "When the repulsion acts: 'high noise' scales it by σ_t² so it shapes the coarse layout "
                       "early and fades before the fine detail; 'constant' keeps it for the whole sweep."}),
    }


def detail_inputs() -> dict[str, Any]:
    """The optional ``detail`` finish (issue 26; not in the paper), off by default."""
    return {
        "detail": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05,
                             "tooltip": "Sharp samples instead of smooth ones (0 = off, the paper's method). After "
                                        "the flow, each particle is re-noised to a low noise level and taken back in "
                                        "10 ancestral steps of the model, each followed by Adam steps towards the "
                                        "measurement with this learning rate, which sets how much detail is drawn. "
                                        "Measured on the demo model: 0.2 for inpainting, 0.5 for super-resolution; "
                                        "each particle then differs in its detail and their mean stays close to the "
                                        "plain run's. Not in the paper; README, 'Detail'."}),
    }


def dwgf_settings(memory: str, memory_check: bool, learning_rate: float, prior_weight: float, ae_weight: float,
                  decoder_noise: float, **run: Any) -> tuple[DWGFConfig, RunMemory]:
    """DWGF's config and its memory use from the node inputs, checked; ``run`` holds ``particles``,
    ``steps`` and ``seed`` where the node knows them (the custom-sampling node learns them later),
    and the preset's ``first_timestep``, ``ae_every`` and ``warm_start``."""
    require(memory in MEMORY_MODES, f"memory must be one of {list(MEMORY_MODES)}, got {memory!r}")
    require_finite_inputs(learning_rate=learning_rate, prior_weight=prior_weight, ae_weight=ae_weight,
                          decoder_noise=decoder_noise)
    chunk, checkpointed = MEMORY_MODES[memory]
    config = DWGFConfig(lr=learning_rate, prior_weight=prior_weight, ae_weight=ae_weight, decoder_noise=decoder_noise,
                        particle_chunk=chunk, checkpoint_decoder=checkpointed, **run)
    others = tuple((name, *mode) for name, mode in MEMORY_MODES.items() if name != memory)
    return config, RunMemory(memory, chunk, checkpointed, check=bool(memory_check), alternatives=others)
