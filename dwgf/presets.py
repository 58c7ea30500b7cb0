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

# bench/results/speed.md, SD 1.5 at 512², N = 1, CPU seconds: one network call each, and one KSampler step
SD15_512_SECONDS = {"unet": 12.931, "decoder_with_graph": 29.563, "decoder_backward": 32.924,
                    "decoder_no_grad": 28.266, "encoder": 12.950}
SD15_512_KSAMPLER_STEP_SECONDS = 12.61


@dataclass(frozen=True)
class Preset:
    """A DWGF run length: ``steps`` iterations from ``denoise`` (1 = the cold start at t = 999) with
    the reconstruction recomputed every ``ae_every``-th iteration; ``full_decoder_steps`` (issue 25)
    sets how many final iterations use the full VAE when a fast VAE is connected (``None``: the
    node's own input)."""

    name: str
    steps: int
    denoise: float
    ae_every: int
    summary: str
    full_decoder_steps: int | None = None

    def iteration_ksampler_steps(self) -> float:
        """One particle's iteration in SD 1.5 KSampler steps (512², cfg 1), with the reuse saving."""
        s = SD15_512_SECONDS
        seconds = (s["unet"] + s["decoder_with_graph"] + s["decoder_backward"]
                   + (s["decoder_no_grad"] + s["encoder"]) / self.ae_every)
        return seconds / SD15_512_KSAMPLER_STEP_SECONDS

    def ksampler_steps(self, particles: int = 4) -> int:
        """The whole run for ``particles`` particles, in SD 1.5 KSampler steps (rounded)."""
        return round(self.steps * particles * self.iteration_ksampler_steps())


CUSTOM = "custom"
PRESETS: dict[str, Preset] = {p.name: p for p in (
    # 1/28 of the reference's network evaluations; on the demo model ahead of every other DWGF setting
    # measured on box inpainting and ×8 SR, 0.39 dB behind the best (DWGF-250) on Gaussian deblurring
    Preset("recommended", 50, 1.0, 4, "the frontier's pick"),
    # 1/40 of the reference: warm-started from E(A†y), 0.1–1.2 dB below the recommended run
    Preset("draft", 25, 0.5, 1, "a quick look"),
    # METHOD.md's run; on the demo model its last ~150 iterations lose 3–5 dB (README)
    Preset("reference", 998, 1.0, 1, "METHOD.md's reference run"),
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
