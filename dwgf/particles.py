"""The particles' random numbers: a seeded start and seeded per-iteration noise.

The starting particles ``z ~ N(0, I)`` are drawn on the CPU, so one seed gives the same particles
on every machine. The per-iteration noise (``ε`` for the diffusion, ``n`` for the decoder) is drawn
by a generator on the particles' own device — drawing a full-size image of noise on the CPU and
copying it over every iteration would cost more than the flow's own arithmetic. A run is therefore
exactly reproducible on one kind of device, and starts from the same particles on all of them.
"""

from __future__ import annotations

import torch

# Offset so the per-iteration noise stream is not the initialisation stream replayed.
_NOISE_STREAM_OFFSET = 0x5EED


def initial_particles(
    count: int, shape: tuple[int, ...], seed: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``count`` particles ``z ~ N(0, I)`` of one-particle ``shape``, float32, seeded on the CPU."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn((count, *shape), generator=generator, dtype=torch.float32).to(device)


class NoiseSource:
    """Seeded standard-normal noise on one device (CPU fallback where the device has no generator)."""

    def __init__(self, seed: int, device: torch.device | str) -> None:
        self.device = torch.device(device)
        seed = (int(seed) + _NOISE_STREAM_OFFSET) % 2**63
        try:
            self.generator = torch.Generator(device=self.device).manual_seed(seed)
            self._draw_on = self.device
        except RuntimeError:  # a backend without device generators
            self.generator = torch.Generator(device="cpu").manual_seed(seed)
            self._draw_on = torch.device("cpu")

    def normal(self, shape: tuple[int, ...] | torch.Size, scale: float = 1.0) -> torch.Tensor:
        """``scale · N(0, I)`` of ``shape`` in float32 on the device."""
        draw = torch.randn(tuple(shape), generator=self.generator, device=self._draw_on, dtype=torch.float32)
        draw = draw.to(self.device)
        return draw if scale == 1.0 else draw.mul_(scale)
