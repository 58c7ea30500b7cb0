"""Decoder-free inpainting (issue 25, item 2; not in METHOD.md): the data term on the latent grid.

METHOD.md's data term decodes every particle and compares ``A(D(z))`` with ``y`` in pixels, which
costs the decoder's forward and backward every iteration. For inpainting the measurement is a set
of known pixels, so — as DING and FlowChef do — the term can be moved to the latent grid: the
latent pixels whose every image pixel is known are compared with the encoded measurement,

    L_latent = (λ / 2) · mean over known latent elements of (z − E(fill(y)))²,

where ``fill(y)`` is the image with its hole filled by the known pixels' mean colour (what a user
pre-fills; the encoder then sees no artificial grey edge). The known region is eroded by
``erode`` latent pixels, because the encoder's receptive field lets the hole's fill leak into the
latents next to it. The run uses this term for all but its last ``full_decoder_steps``
iterations, which return to METHOD.md's pixel data term through the full decoder, so the result
agrees with the pixels Particle Decode shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .errors import require
from .protocols import Autoencoder


def image_known_mask(operator: Any) -> torch.Tensor | None:
    """The operator's ``(1, 1, H, W)`` known-pixel mask on its whole canvas (1 = known), or ``None``
    when it is not an inpainting operator. A canvas larger than the photo counts its extra pixels
    as unknown."""
    inner = getattr(operator, "inner", None)
    if hasattr(operator, "known_mask"):
        return operator.known_mask()
    if inner is None or not hasattr(inner, "known_mask"):
        return None
    mask = inner.known_mask()
    return F.pad(mask, (0, operator.width - inner.width, 0, operator.height - inner.height))


def latent_known_mask(image_mask: torch.Tensor, factor: int, erode: int) -> torch.Tensor:
    """``(1, 1, h, w)``: 1 where all ``factor × factor`` pixels of a latent pixel are known, eroded
    by ``erode`` latent pixels."""
    known = -F.max_pool2d(-image_mask.float(), factor, factor)  # a min-pool
    for _ in range(erode):
        known = -F.max_pool2d(-known, 3, 1, 1)
    return known


def mean_colour_fill(image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """``image`` with every unknown pixel set to the mean colour of its own known pixels."""
    weight = known.expand(image.shape[0], 1, *image.shape[2:])
    mean = (image * weight).sum((2, 3), keepdim=True) / weight.sum((2, 3), keepdim=True).clamp_min(1.0)
    return image * weight + mean * (1.0 - weight)


@dataclass(frozen=True)
class LatentDataTerm:
    """The latent data term of one run: the known latent mask and each particle's target."""

    known: torch.Tensor  # (1, 1, h, w), 1 = compared
    target: torch.Tensor  # (1 or N, C, h, w), model space
    weight: float

    @classmethod
    @torch.no_grad()
    def build(cls, operator: Any, measurement: torch.Tensor, autoencoder: Autoencoder, weight: float,
              erode: int) -> LatentDataTerm:
        """Encode the mean-colour-filled measurement once; refuse operators that are not inpainting
        and masks that leave no latent pixel fully known."""
        image_mask = image_known_mask(operator)
        require(image_mask is not None,
                f"the decoder-free data term works for inpainting only, not for {getattr(operator, 'name', '?')}: "
                "switch latent_data off for this degradation")
        image_mask = image_mask.to(measurement.device)
        known = latent_known_mask(image_mask, autoencoder.downscale, erode)
        require(bool(known.sum() > 0),
                f"the decoder-free data term found no latent pixel whose {autoencoder.downscale}x"
                f"{autoencoder.downscale} pixels are all known (after eroding {erode}): the mask leaves too "
                "little intact area; switch latent_data off for this mask")
        filled = mean_colour_fill(operator.pseudo_inverse(measurement.float()).clamp(-1.0, 1.0), image_mask)
        target = autoencoder.encode(filled).float()
        return cls(known, target, float(weight))

    def loss(self, z: torch.Tensor) -> torch.Tensor:
        """``(λ/2) · mean((z − target)²)`` over the known latent elements of every particle."""
        known = self.known.to(z)
        count = known.sum() * z.shape[0] * z.shape[1]
        return 0.5 * self.weight * ((z - self.target.to(z)) * known).square().sum() / count
