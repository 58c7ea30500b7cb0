"""How much working memory a run's first iteration needs, estimated before any work is done.

A DWGF iteration's memory is dominated by the activations the VAE decoder keeps for its backward
(``bench/speed.py``: 89-92 % of an SD 1.5 iteration's time and nearly all its working memory). They
grow with the image's pixels and with the particles decoded at once. Rather than a table per VAE,
the estimate *probes* the decoder the run will use: it decodes three tiny latents with a graph,
sums the bytes autograd saved for the backward (the weights excluded), and fits
``bytes(P) = a + b·P + c·P²`` over the latent pixel count ``P`` (``c`` catches attention that
materialises a ``P × P`` matrix). Probed saved bytes are exact; the step from them to the peak
working memory is measured, rounded up: the convolutions' part (``a + b·P``) peaks at the ratio
``bench/speed.py`` measured on SD 1.5 (1.15-1.16× the saved bytes; decoder checkpointing block by
block 0.36× of the unchunked peak), the attention's part (``c·P²``) at about four times its saved
bytes, since its backward holds several ``P × P`` gradients at once (measured on the demo VAE, whose
attention dominates at 96²-192²: peak RSS 3.5-3.8× the saved ``c·P²`` beside 1.25× the rest; the
whole first iteration peaked at 1.04× the decoder's forward + backward). Checkpointing does not shrink
that part: the attention block's own backward still builds those matrices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

PEAK_OVER_SAVED = 1.25  # measured 1.15-1.16 (SD 1.5, 256² and 512²); rounded up for safety
ATTENTION_PEAK_OVER_SAVED = 4.5  # measured 3.5-3.8 (demo VAE, 96²-192², 4 particles); rounded up
CHECKPOINTED_SHARE = 0.45  # measured 0.36 of the unchunked peak (SD 1.5, 512²); rounded up
PSLD_OVER_DWGF = 1.8  # PSLD back-propagates through UNet, decoder and encoder: measured 2.70 / 1.65 GiB
PROBE_SIDES = (4, 8, 12)  # latent sides of the three probes (tiny: a probe costs well under a second)
GIB = 2.0**30


@dataclass(frozen=True)
class DecoderFootprint:
    """Saved-for-backward bytes of one decoded particle as ``a + b·P + c·P²`` (``P`` latent pixels)."""

    constant: float
    linear: float
    quadratic: float

    def saved_bytes(self, latent_pixels: float) -> float:
        return max(0.0, self.constant + self.linear * latent_pixels + self.quadratic * latent_pixels**2)

    def attention_bytes(self, latent_pixels: float) -> float:
        """The ``c·P²`` part: what the attention keeps (its backward needs several times that)."""
        return self.quadratic * latent_pixels**2


def saved_bytes_of(function: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                   excluded: Iterable[torch.Tensor] = ()) -> int:
    """Bytes of the distinct storages autograd saves while ``function(x)`` builds its graph,
    leaving out storages in ``excluded`` (the network's weights, which exist anyway).

    The pack hook keeps a *detached* alias, never the tensor it is given: a node that saves its own
    output (exp, sigmoid, …) would otherwise hold that output's Python object, whose ``grad_fn`` is the node
    itself, a cycle through C++ that Python's garbage collector cannot see. Every probe then leaked
    its whole graph (issue 29's soak: +0.5 GB per SD 1.5 VAE loaded). The graph is never
    differentiated, so the alias is never unpacked."""
    skip = {t.untyped_storage().data_ptr() for t in excluded}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip:
            seen[storage.data_ptr()] = storage.nbytes()
        return t.detach()

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        function(x.detach().requires_grad_(True))
    return sum(seen.values())


def probe_decoder(decode: Callable[[torch.Tensor], torch.Tensor], channels: int, device: torch.device,
                  excluded: Iterable[torch.Tensor] = ()) -> DecoderFootprint:
    """Fit the decoder's saved bytes per particle from three tiny decodes (see the module docstring)."""
    excluded = list(excluded)
    pixels, sizes = [], []
    for side in PROBE_SIDES:
        z = torch.zeros((1, channels, side, side), device=device)
        sizes.append(float(saved_bytes_of(decode, z, excluded)))
        pixels.append(float(side * side))
    design = torch.tensor([[1.0, p, p * p] for p in pixels], dtype=torch.float64)
    a, b, c = torch.linalg.solve(design, torch.tensor(sizes, dtype=torch.float64)).tolist()
    return DecoderFootprint(a, b, max(0.0, c))


@dataclass(frozen=True)
class RunFootprint:
    """What one run asks of the memory: image size, particles, how many are decoded at once."""

    latent_height: int
    latent_width: int
    downscale: int
    particles: int
    particles_at_once: int  # the particle chunk (``particles`` when all at once)
    checkpointed: bool
    psld: bool = False

    def working_bytes(self, footprint: DecoderFootprint) -> float:
        return self._bytes(footprint, self.latent_height * self.latent_width, self.particles_at_once)

    def _bytes(self, footprint: DecoderFootprint, latent_pixels: float, at_once: int) -> float:
        attention = footprint.attention_bytes(latent_pixels)
        convolutions = PEAK_OVER_SAVED * max(0.0, footprint.saved_bytes(latent_pixels) - attention)
        if self.checkpointed:
            convolutions *= CHECKPOINTED_SHARE
        per_particle = convolutions + ATTENTION_PEAK_OVER_SAVED * attention
        if self.psld:
            per_particle *= PSLD_OVER_DWGF
        return per_particle * at_once

    def largest_fitting_side(self, footprint: DecoderFootprint, free_bytes: float) -> int:
        """The largest square image side (a multiple of the VAE factor) this run would fit at."""
        low, high = 0, 1 << 16  # latent sides
        while low < high:
            mid = (low + high + 1) // 2
            if self._bytes(footprint, mid * mid, self.particles_at_once) <= free_bytes:
                low = mid
            else:
                high = mid - 1
        return low * self.downscale

    def most_particles_at_once(self, footprint: DecoderFootprint, free_bytes: float) -> int:
        one = self._bytes(footprint, self.latent_height * self.latent_width, 1)
        return int(free_bytes // one) if one > 0 else self.particles


def format_gib(n_bytes: float) -> str:
    return f"{n_bytes / GIB:.1f} GiB" if n_bytes >= 0.1 * GIB else f"{math.ceil(n_bytes / 2**20)} MiB"
