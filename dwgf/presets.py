"""DWGF's presets (issue 15): the reference run, the recommended one on the quality-for-cost
frontier, and a quicker draft. Each sets the sweep's length, its start (warm start) and how often
the encoder–decoder reconstruction is recomputed; the weights stay METHOD.md's reference.

The recommended and draft settings were chosen with ``bench/frontier.py`` on the demo model's
held-out crops (README, "Quality against cost"); their costs in KSampler steps use the per-network
CPU times that ``bench/speed.py`` measured for SD 1.5 at 512² (``bench/results/speed.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import require

# bench/results/speed.md ("The fast path"), SD 1.5 at 512², N = 1, CPU seconds of one network call each,
# all measured in one run: the full VAE and ComfyUI's TAESD (the fast VAE), and one KSampler step
SD15_512_SECONDS = {"unet": 14.110, "decoder_with_graph": 29.885, "decoder_backward": 34.217,
                    "decoder_no_grad": 29.214, "encoder": 19.087}
SD15_512_TAESD_SECONDS = {"decoder_with_graph": 2.834, "decoder_backward": 2.379, "decoder_no_grad": 2.176,
                          "encoder": 1.869}
SD15_512_KSAMPLER_STEP_SECONDS = 14.110


def iteration_seconds(decoder: dict[str, float], refresh: bool) -> float:
    """One particle's iteration on SD 1.5 at 512²: the UNet, the decoder forward with graph and its
    backward, and, where ``D(E(·))`` is recomputed, an encoder and a decoder forward."""
    seconds = SD15_512_SECONDS["unet"] + decoder["decoder_with_graph"] + decoder["decoder_backward"]
    return seconds + (decoder["decoder_no_grad"] + decoder["encoder"] if refresh else 0.0)


def run_seconds(steps: int, ae_every: int, full_decoder_steps: int | None = None) -> float:
    """One particle's whole run on SD 1.5 at 512² (CPU seconds), iteration by iteration as
    ``dwgf/flow.py`` runs it: ``full_decoder_steps`` ``None`` = the full VAE throughout; otherwise TAESD
    in all but the last ``full_decoder_steps`` iterations, and ``D(E(·))`` recomputed every
    ``ae_every``-th iteration and at the switch to the full VAE."""
    total, previous = 0.0, None
    for index in range(steps):
        full = full_decoder_steps is None or index >= steps - full_decoder_steps
        decoder = SD15_512_SECONDS if full else SD15_512_TAESD_SECONDS
        total += iteration_seconds(decoder, index % ae_every == 0 or full != previous)
        previous = full
    return total


@dataclass(frozen=True)
class Preset:
    """A DWGF run length: ``steps`` iterations from ``denoise`` (1 = the cold start at t = 999) with
    the reconstruction recomputed every ``ae_every``-th iteration; ``full_decoder_steps`` (issue 25)
    sets how many final iterations use the full VAE when a fast VAE is connected (``None``: the
    node's own input); ``fast`` presets are meant for a connected fast VAE."""

    name: str
    steps: int
    denoise: float
    ae_every: int
    summary: str
    full_decoder_steps: int | None = None
    fast: bool = False

    def seconds(self, particles: int = 4) -> float:
        """The whole run on SD 1.5 at 512² in CPU seconds (with TAESD as the fast VAE for a fast preset)."""
        return particles * run_seconds(self.steps, self.ae_every, self.full_decoder_steps if self.fast else None)

    def ksampler_steps(self, particles: int = 4) -> int:
        """The whole run for ``particles`` particles, in SD 1.5 KSampler steps (rounded)."""
        return round(self.seconds(particles) / SD15_512_KSAMPLER_STEP_SECONDS)


CUSTOM = "custom"
PRESETS: dict[str, Preset] = {p.name: p for p in (
    # 1/28 of the reference's network evaluations; on the demo model ahead of every other DWGF setting
    # measured on box inpainting and ×8 SR, 0.39 dB behind the best (DWGF-250) on Gaussian deblurring
    Preset("recommended", 50, 1.0, 4, "the frontier's pick"),
    # 1/40 of the reference: warm-started from E(A†y), 0.1–1.2 dB below the recommended run
    Preset("draft", 25, 0.5, 1, "a quick look"),
    # METHOD.md's run; on the demo model its last ~150 iterations lose 3–5 dB (README)
    Preset("reference", 998, 1.0, 1, "METHOD.md's reference run"),
    # issue 25: a fast VAE (TAESD, the demo model's tiny VAE) in all but the last 5 iterations; the
    # best of the settings within 1/4 of the recommended preset's SD 1.5 cost on the demo settings crops
    Preset("fast", 35, 0.5, 4, "with a fast_vae connected", full_decoder_steps=5, fast=True),
)}
PRESET_NAMES: tuple[str, ...] = (*PRESETS, CUSTOM)


def preset_settings(name: str, steps: int, denoise: float, ae_every: int,
                    full_decoder_steps: int = 0) -> tuple[int, float, int, int]:
    """``(steps, denoise, ae_every, full_decoder_steps)`` for a preset, or the given ones for ``custom``."""
    require(name in PRESET_NAMES, f"preset must be one of {list(PRESET_NAMES)}, got {name!r}")
    if name == CUSTOM:
        return steps, denoise, ae_every, full_decoder_steps
    preset = PRESETS[name]
    full = full_decoder_steps if preset.full_decoder_steps is None else preset.full_decoder_steps
    return preset.steps, preset.denoise, preset.ae_every, full


PRESET_INPUTS: tuple[str, ...] = ("steps", "denoise", "ae_every", "full_decoder_steps")


def preset_overrides(name: str, steps: int, denoise: float, ae_every: int,
                     full_decoder_steps: int = 0) -> list[tuple[str, float, float]]:
    """The inputs preset ``name`` sets to another value than the user gave: ``(input, given, used)``
    in the order of :data:`PRESET_INPUTS`; empty for ``custom`` and where they agree."""
    given = (steps, denoise, ae_every, full_decoder_steps)
    used = preset_settings(name, *given)
    return [(input_name, mine, its) for input_name, mine, its in zip(PRESET_INPUTS, given, used, strict=True)
            if mine != its]


def preset_override_note(name: str, overrides: list[tuple[str, float, float]]) -> str:
    """What a preset's run does instead of the inputs it overrides, in one sentence for the node and the log."""
    settings = ", ".join(f"{input_name} {its:g} (the {input_name} input says {mine:g})"
                         for input_name, mine, its in overrides)
    names = [input_name for input_name, _, _ in overrides]
    inputs = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    return (f"preset '{name}' runs with {settings}: a preset sets {inputs} itself; set preset to '{CUSTOM}' "
            "to run the inputs as given")
