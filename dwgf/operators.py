"""The forward (degradation) operators of METHOD.md, with exact adjoints.

Images are ``(N, 3, H, W)`` tensors in [-1, 1]; every operator is built for one image size and
works batched on any device and dtype. Each provides

* ``forward(x)`` — ``A x``, the measurement without noise;
* ``adjoint(y)`` — ``Aᵀ y``, exact (dot-product test to float precision);
* ``pseudo_inverse(y)`` — ``A† y``: a right-inverse where one is cheap, else a regularised
  least-squares solve; used for initialisation, display and the measurement-only baseline;
* ``to_image`` / ``from_image`` — the measurement as a picture a person can look at (the image
  with its hole for inpainting, the small image for super-resolution) and back, so a photo that is
  already degraded can be used directly as ``y``.

Boundaries of the convolutions are handled by an explicit index gather (reflect by default), whose
adjoint is the matching scatter-add: this is what makes the adjoint exact for any padding.
"""

from __future__ import annotations

import copy
import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DWGFInputError, require

NoiseSeeding = Literal["image", "batch"]
NOISE_PER_IMAGE: NoiseSeeding = "image"  # each image's noise seeded by its content and the seed
NOISE_PER_BATCH: NoiseSeeding = "batch"  # one draw for the whole batch (before issue 28)
NOISE_SEEDINGS: tuple[str, ...] = (NOISE_PER_IMAGE, NOISE_PER_BATCH)

Padding = Literal["reflect", "replicate", "circular"]
PADDINGS: tuple[str, ...] = ("reflect", "replicate", "circular")


# --------------------------------------------------------------------------------------------
# Base class
# --------------------------------------------------------------------------------------------
class LinearOperator(ABC):
    """A linear forward operator for images of one fixed size ``(channels, height, width)``."""

    name: str = "operator"

    def __init__(self, height: int, width: int, channels: int = 3) -> None:
        require(height > 0 and width > 0, f"image size must be positive, got {height}x{width}")
        self.height, self.width, self.channels = int(height), int(width), int(channels)

    # -- the operator itself ----------------------------------------------------------------
    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``A x`` for a batch of images ``(N, C, H, W)``."""

    @abstractmethod
    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``Aᵀ y``: the exact transpose of :meth:`forward`."""

    def pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor:
        """``A† y``; the default is a damped least-squares solve by conjugate gradients."""
        return least_squares(self, y, damping=1e-3, iterations=100)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    # -- shapes and pictures ----------------------------------------------------------------
    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def measurement_shape(self) -> tuple[int, ...]:
        """Shape of ``A x`` for one image (without the batch dimension)."""
        probe = torch.zeros((1, *self.image_shape), dtype=torch.float32)
        return tuple(self.forward(probe).shape[1:])

    def image_size_of_measurement(self) -> tuple[int, int]:
        """Height and width of :meth:`to_image` of a measurement."""
        return (self.height, self.width)

    def to_image(self, y: torch.Tensor) -> torch.Tensor:
        """The measurement as ``(N, 3, h, w)`` images in [-1, 1] (identity by default)."""
        return y

    def from_image(self, image: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_image`: a picture of a measurement back to ``y``."""
        self.check_measurement_image(image)
        return image

    def check_image(self, x: torch.Tensor, what: str = "image") -> None:
        """Reject an image batch whose size does not fit this operator."""
        require(x.ndim == 4, f"{what} must be a batch (N, C, H, W); got shape {tuple(x.shape)}")
        require(
            tuple(x.shape[1:]) == self.image_shape,
            f"{what} is {x.shape[2]}x{x.shape[3]} with {x.shape[1]} channels but the "
            f"{self.name} operator was built for {self.height}x{self.width} with "
            f"{self.channels} channels: rebuild the Degradation Operator for this image size",
        )

    def check_measurement_image(self, image: torch.Tensor) -> None:
        h, w = self.image_size_of_measurement()
        require(image.ndim == 4, f"measurement must be a batch (N, C, H, W); got {tuple(image.shape)}")
        require(
            tuple(image.shape[2:]) == (h, w),
            f"measurement is {image.shape[2]}x{image.shape[3]} but the {self.name} operator "
            f"expects a {h}x{w} measurement: resize the measurement or rebuild the operator",
        )

    # -- measurements -----------------------------------------------------------------------
    def measure(self, x: torch.Tensor, sigma_y: float = 0.0, seed: int = 0,
                noise_seeded_by: NoiseSeeding = NOISE_PER_IMAGE) -> torch.Tensor:
        """``y = A x + σ_y n`` with seeded Gaussian noise ``n`` (same on every device): by default each
        image's noise is seeded by the image itself and ``seed`` (:func:`image_noise_seed`), so an image
        gets the same measurement alone, in any batch and on any worker; ``NOISE_PER_BATCH`` draws one
        noise tensor for the whole batch from ``seed`` (an image's noise then depends on its place)."""
        require(sigma_y >= 0, f"measurement noise sigma_y must be >= 0, got {sigma_y}")
        require(noise_seeded_by in NOISE_SEEDINGS,
                f"noise_seeded_by must be one of {list(NOISE_SEEDINGS)}, got {noise_seeded_by!r}")
        require(bool(torch.isfinite(x).all()), "image contains NaN or infinite values: "
                "check the node that produced it")
        self.check_image(x)
        y = self.forward(x)
        if sigma_y > 0:
            if noise_seeded_by == NOISE_PER_BATCH:
                noise = seeded_normal(y.shape, seed)
            else:
                noise = torch.cat([seeded_normal((1, *y.shape[1:]), image_noise_seed(x[i], seed))
                                   for i in range(x.shape[0])])
            y = y + sigma_y * noise.to(y)
        return y

    def to(self, device: torch.device | str) -> LinearOperator:
        """A copy whose index and kernel tensors live on ``device`` as ordinary tensors.

        Samplers call this once per run: no host-device copy per step, and no inference tensors
        (ComfyUI builds node outputs under ``torch.inference_mode()``) that autograd cannot save.
        """
        with torch.inference_mode(False):
            return _with_tensors_on(self, torch.device(device))


def _with_tensors_on(obj: object, device: torch.device) -> object:
    """Shallow copy of ``obj`` with every tensor attribute (and helper object's) copied to ``device``."""
    moved = copy.copy(obj)
    for name, value in vars(obj).items():
        if isinstance(value, torch.Tensor):
            setattr(moved, name, value.detach().to(device).clone())
        elif isinstance(value, (AxisGather, SeparableStridedFilter, LinearOperator)):
            setattr(moved, name, _with_tensors_on(value, device))
    return moved


class OnCanvas(LinearOperator):
    """An operator for ``H × W`` images applied to the top-left ``H × W`` of a larger canvas.

    A photo whose size the VAE's factor does not divide is restored on the next larger canvas the
    VAE can handle; the extra rows and columns are simply not measured (``A`` crops them away, ``Aᵀ``
    pads with zeros), so they never bias the data term, and Particle Decode crops them off again.
    """

    def __init__(self, inner: LinearOperator, height: int, width: int) -> None:
        require(height >= inner.height and width >= inner.width,
                f"the canvas {height}x{width} is smaller than the image {inner.height}x{inner.width}")
        super().__init__(height, width, inner.channels)
        self.inner = inner
        self.name = inner.name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.forward(x[..., : self.inner.height, : self.inner.width])

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return F.pad(self.inner.adjoint(y), (0, self.width - self.inner.width, 0, self.height - self.inner.height))

    def pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor:
        """The photo's own ``A†y``, its border repeated over the canvas (works for 1-pixel-wide images)."""
        small = self.inner.pseudo_inverse(y)
        return F.pad(small, (0, self.width - self.inner.width, 0, self.height - self.inner.height), mode="replicate")

    def image_size_of_measurement(self) -> tuple[int, int]:
        return self.inner.image_size_of_measurement()

    def to_image(self, y: torch.Tensor) -> torch.Tensor:
        return self.inner.to_image(y)

    def from_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.inner.from_image(image)


def on_canvas(operator: LinearOperator, multiple: int) -> LinearOperator:
    """``operator`` on the smallest canvas whose sides are multiples of ``multiple`` (itself if it fits)."""
    height = -(-operator.height // multiple) * multiple
    width = -(-operator.width // multiple) * multiple
    if (height, width) == (operator.height, operator.width):
        return operator
    return OnCanvas(operator, height, width)


def image_noise_seed(image: torch.Tensor, seed: int) -> int:
    """A noise seed made of ``seed`` and one image's content (read at 8 bits, so float round-off
    between devices or loaders does not change it): the same image gets the same measurement noise
    wherever it sits in a batch, on whichever worker, and different images get independent noise."""
    levels = ((image.detach().to("cpu", torch.float32).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    digest = hashlib.blake2b(digest_size=8)
    digest.update(int(seed).to_bytes(8, "little", signed=False))
    digest.update(repr(tuple(levels.shape)).encode())
    digest.update(levels.contiguous().numpy().tobytes())
    return int.from_bytes(digest.digest(), "little") % 2**63


def seeded_normal(shape: tuple[int, ...] | torch.Size, seed: int) -> torch.Tensor:
    """Standard normal noise drawn on the CPU in float64, so a seed means the same everywhere."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float64)


# --------------------------------------------------------------------------------------------
# Solvers used for pseudo-inverses
# --------------------------------------------------------------------------------------------
def conjugate_gradient(
    apply: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    iterations: int,
    tolerance: float = 1e-10,
) -> torch.Tensor:
    """Solve ``apply(u) = rhs`` for a symmetric positive-definite ``apply``, per batch item."""
    dims = tuple(range(1, rhs.ndim))
    u = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    rr = (r * r).sum(dims, keepdim=True)
    stop = tolerance**2 * rr.clamp_min(torch.finfo(rhs.dtype).tiny)
    for _ in range(iterations):
        ap = apply(p)
        alpha = rr / (p * ap).sum(dims, keepdim=True).clamp_min(torch.finfo(rhs.dtype).tiny)
        u = u + alpha * p
        r = r - alpha * ap
        rr_new = (r * r).sum(dims, keepdim=True)
        if bool((rr_new <= stop).all()):
            break
        p = r + (rr_new / rr.clamp_min(torch.finfo(rhs.dtype).tiny)) * p
        rr = rr_new
    return u


def least_squares(op: LinearOperator, y: torch.Tensor, damping: float, iterations: int) -> torch.Tensor:
    """``argmin_x ‖A x − y‖² + λ‖x‖²`` by conjugate gradients on the normal equations."""
    return conjugate_gradient(lambda v: op.adjoint(op.forward(v)) + damping * v, op.adjoint(y), iterations)


def minimum_norm_right_inverse(op: LinearOperator, y: torch.Tensor, iterations: int = 200) -> torch.Tensor:
    """``Aᵀ (A Aᵀ)⁻¹ y``: an exact right-inverse for a surjective ``A`` (``A A† y = y``)."""
    u = conjugate_gradient(lambda v: op.forward(op.adjoint(v)), y, iterations, tolerance=1e-12)
    return op.adjoint(u)


# --------------------------------------------------------------------------------------------
# Padding as an index gather (its adjoint is a scatter-add)
# --------------------------------------------------------------------------------------------
def padding_indices(length: int, before: int, after: int, mode: Padding) -> torch.Tensor:
    """Source index of each padded position along one axis."""
    idx = torch.arange(-before, length + after)
    if mode == "circular":
        return idx % length
    if mode == "replicate":
        return idx.clamp(0, length - 1)
    if mode == "reflect":
        require(length > 1, "reflect padding needs an image at least 2 pixels wide")
        period = 2 * (length - 1)
        idx = idx % period
        return torch.where(idx >= length, period - idx, idx)
    raise DWGFInputError(f"padding must be one of {PADDINGS}, got {mode!r}")


class AxisGather:
    """Pads (or any index map) along one axis by gathering; :meth:`adjoint` scatters back."""

    def __init__(self, indices: torch.Tensor, source_length: int, axis: int) -> None:
        self.indices, self.source_length, self.axis = indices, source_length, axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(self.axis, self.indices.to(x.device))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        shape = list(y.shape)
        shape[self.axis] = self.source_length
        out = torch.zeros(shape, dtype=y.dtype, device=y.device)
        return out.index_add(self.axis, self.indices.to(y.device), y)


class SeparableStridedFilter:
    """Pad, correlate with a 1-D kernel and subsample, along rows then columns.

    Used by Gaussian blur (stride 1) and bicubic downsampling (stride r); the adjoint runs the
    transposed convolutions and the adjoint of the padding in reverse order.
    """

    def __init__(self, kernel_1d: torch.Tensor, offset: int, height: int, width: int,
                 stride: int, padding: Padding) -> None:
        length = kernel_1d.numel()
        before = -offset
        after = offset + length - stride
        require(before >= 0 and after >= 0, "internal: kernel offset outside its support")
        self.kernel = kernel_1d.to(torch.float64)
        self.stride = stride
        self.rows = AxisGather(padding_indices(height, before, after, padding), height, axis=-2)
        self.cols = AxisGather(padding_indices(width, before, after, padding), width, axis=-1)

    def _weights(self, x: torch.Tensor, vertical: bool) -> torch.Tensor:
        k = self.kernel.to(device=x.device, dtype=x.dtype)
        k = k.view(1, 1, -1, 1) if vertical else k.view(1, 1, 1, -1)
        return k.expand(x.shape[1], 1, *k.shape[2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        x = F.conv2d(self.rows.forward(x), self._weights(x, True), stride=(self.stride, 1), groups=c)
        return F.conv2d(self.cols.forward(x), self._weights(x, False), stride=(1, self.stride), groups=c)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        c = y.shape[1]
        y = self.cols.adjoint(F.conv_transpose2d(y, self._weights(y, False), stride=(1, self.stride), groups=c))
        return self.rows.adjoint(F.conv_transpose2d(y, self._weights(y, True), stride=(self.stride, 1), groups=c))


# --------------------------------------------------------------------------------------------
# Inpainting
# --------------------------------------------------------------------------------------------
class Inpainting(LinearOperator):
    """Keep the pixels where ``known`` is true (shared over channels); ``A`` gathers them.

    ``A x`` has shape ``(N, C, m)`` with ``m`` the number of known pixels, so a mean over the
    measurement is a mean over measured elements only, as METHOD.md asks.
    """

    name = "inpainting"

    def __init__(self, known: torch.Tensor, channels: int = 3) -> None:
        require(known.ndim == 2, f"inpainting mask must be (height, width); got shape {tuple(known.shape)}")
        known = known.to(torch.bool).cpu()
        super().__init__(known.shape[0], known.shape[1], channels)
        kept = int(known.sum())
        require(kept > 0, "the inpainting mask hides every pixel: nothing is measured. "
                "Paint only the region to fill (ComfyUI MASK: 1 = fill)")
        require(kept < known.numel(), "the inpainting mask hides no pixel: there is nothing to fill. "
                "Paint the region to fill (ComfyUI MASK: 1 = fill)")
        self.known = known
        self._flat_index = known.flatten().nonzero().squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).index_select(2, self._flat_index.to(x.device))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((*y.shape[:2], self.height * self.width), dtype=y.dtype, device=y.device)
        out = out.index_copy(2, self._flat_index.to(y.device), y)
        return out.view(*y.shape[:2], self.height, self.width)

    def pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self.adjoint(y)

    def to_image(self, y: torch.Tensor) -> torch.Tensor:
        """The known pixels in place, mid-grey (0) in the hole."""
        return self.adjoint(y)

    def from_image(self, image: torch.Tensor) -> torch.Tensor:
        self.check_measurement_image(image)
        return self.forward(image)

    def known_mask(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``(1, 1, H, W)`` mask, 1 = known pixel."""
        return self.known.to(device=device, dtype=dtype)[None, None]


def box_mask(height: int, width: int, top: int, left: int, box_height: int, box_width: int) -> torch.Tensor:
    """Known-pixel mask with a hole ``[top, top+box_height) × [left, left+box_width)``."""
    require(box_height > 0 and box_width > 0, f"box must have a positive size, got {box_height}x{box_width}")
    require(0 <= top and top + box_height <= height and 0 <= left and left + box_width <= width,
            f"box rows {top}..{top + box_height - 1}, cols {left}..{left + box_width - 1} do not fit "
            f"a {height}x{width} image: move or shrink the box")
    known = torch.ones(height, width, dtype=torch.bool)
    known[top:top + box_height, left:left + box_width] = False
    return known


SMALLEST_SIZE_SEARCHED = 256  # the tiny-image messages look for a working square size up to this side


def smallest_working_square(works: Callable[[int], bool]) -> int | None:
    """The smallest side ``n`` of an ``n × n`` image for which ``works(n)``; ``None`` if none up to
    :data:`SMALLEST_SIZE_SEARCHED` (a tiny image's message names the size that does work)."""
    return next((side for side in range(1, SMALLEST_SIZE_SEARCHED + 1) if works(side)), None)


def _at_least(side: int | None) -> str:
    return f"an image of at least {side}x{side}" if side else "a larger image"


def _measures_and_fills(known: torch.Tensor) -> bool:
    """Whether a known-pixel mask leaves pixels both measured and to fill."""
    kept = int(known.sum())
    return 0 < kept < known.numel()


def _reference_box(height: int, width: int) -> tuple[int, int, int, int]:
    sy, sx = height / 512.0, width / 512.0
    top, bottom = round(150 * sy), round(450 * sy)
    left, right = round(250 * sx), round(450 * sx)
    return top, left, bottom - top, right - left


def reference_box_mask(height: int, width: int) -> torch.Tensor:
    """DWGF's reference box (rows 150–449 × cols 250–449 at 512²), scaled to this size."""
    top, left, box_height, box_width = _reference_box(height, width)
    if box_height >= height and box_width >= width:  # only 1x1: the box is never empty
        side = smallest_working_square(lambda n: _reference_box(n, n)[2:] != (n, n))
        raise DWGFInputError(
            f"image: this {height}x{width} image is too small for 'inpaint box (DWGF reference)': the reference box "
            f"(rows 150-449, cols 250-449 of 512x512, scaled to the image) covers every pixel, so nothing is "
            f"measured. Use {_at_least(side)}")
    return box_mask(height, width, top, left, box_height, box_width)


def _centred_box_side(height: int, width: int, fraction: float) -> int:
    return max(1, round(fraction * min(height, width)))


def centered_box_mask(height: int, width: int, fraction: float = 0.5) -> torch.Tensor:
    """A centred square hole whose side is ``fraction`` of the shorter image side."""
    require(0 < fraction < 1, f"box fraction must be in (0, 1), got {fraction}")
    side = _centred_box_side(height, width, fraction)
    if side >= height and side >= width:  # (the side never exceeds the shorter one): a square image, all hidden
        smallest = smallest_working_square(lambda n: _centred_box_side(n, n, fraction) < n)
        raise DWGFInputError(
            f"image: this {height}x{width} image is too small for 'inpaint box (centre)' with box_fraction "
            f"{fraction:g}: the {side}x{side} box{' (never smaller than one pixel)' if side == 1 else ''} covers "
            f"every pixel, so nothing is measured. Use {_at_least(smallest)} for this box_fraction"
            + (", or a smaller box_fraction" if side > 1 else ""))
    return box_mask(height, width, (height - side) // 2, (width - side) // 2, side, side)


def _seeded_uniform(height: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.rand(height, width, generator=generator)


def random_mask(height: int, width: int, keep_probability: float, seed: int) -> torch.Tensor:
    """Each pixel known independently with ``keep_probability`` (seeded). A draw that keeps every
    pixel or none (likely on a tiny image) is refused, naming the smallest square size at which this
    seed and ``keep_probability`` leave pixels both measured and to fill."""
    require(0 < keep_probability < 1, f"keep probability must be in (0, 1), got {keep_probability}")
    known = _seeded_uniform(height, width, seed) < keep_probability
    if not _measures_and_fills(known):
        what = ("keeps every pixel, so there is nothing to fill" if bool(known.all())
                else "hides every pixel, so nothing is measured")
        smallest = smallest_working_square(
            lambda n: _measures_and_fills(_seeded_uniform(n, n, seed) < keep_probability))
        other_seed = ("; another seed may work at this size" if height * width > 1
                      else " (a single pixel cannot be both measured and filled)")
        raise DWGFInputError(
            f"image: this {height}x{width} image is too small for 'inpaint random pixels' with keep_probability "
            f"{keep_probability:g} and seed {seed}: the random mask {what}. "
            + (f"With these settings the smallest square image that works is {smallest}x{smallest}" if smallest
               else "Use a larger image") + other_seed)
    return known


def known_from_fill_mask(mask: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """A fill mask ``(H, W)`` or ``(B, H, W)`` marks the region to fill (1 = fill, as ComfyUI's MASK);
    the operator keeps its complement.

    Masks are thresholded (soft brushes give values like 0.999) and only the first mask of a batch
    is used.
    """
    require(mask.ndim in (2, 3), f"mask must be (H, W) or (B, H, W); got shape {tuple(mask.shape)}")
    require(bool(torch.isfinite(mask).all()), "mask contains NaN or infinite values")
    if mask.ndim == 3:
        mask = mask[0]
    return mask.detach().float().cpu() < threshold


# --------------------------------------------------------------------------------------------
# Super-resolution
# --------------------------------------------------------------------------------------------
def _check_factor(height: int, width: int, factor: int) -> None:
    require(factor >= 2, f"scale factor must be at least 2, got {factor}")
    require(height % factor == 0 and width % factor == 0,
            f"image is {height}x{width}, which the scale factor {factor} does not divide: crop or "
            f"resize the image to a multiple of {factor} (e.g. {height - height % factor}x"
            f"{width - width % factor})")


class AveragePoolSR(LinearOperator):
    """``A = avg_pool(r)``; ``Aᵀ y = nearest_up(y) / r²``; ``A† y = nearest_up(y)``."""

    name = "super-resolution (average pool)"

    def __init__(self, height: int, width: int, factor: int, channels: int = 3) -> None:
        _check_factor(height, width, factor)
        super().__init__(height, width, channels)
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.factor)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.pseudo_inverse(y) / self.factor**2

    def pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y.repeat_interleave(self.factor, dim=-2).repeat_interleave(self.factor, dim=-1)

    def image_size_of_measurement(self) -> tuple[int, int]:
        return (self.height // self.factor, self.width // self.factor)


def keys_cubic(t: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys' cubic convolution kernel (a = −0.5, as PIL and PyTorch use)."""
    t = t.abs()
    inner = (a + 2) * t**3 - (a + 3) * t**2 + 1
    outer = a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return torch.where(t <= 1, inner, torch.where(t < 2, outer, torch.zeros_like(t)))


def bicubic_antialias_kernel(factor: int) -> tuple[torch.Tensor, int]:
    """The 1-D antialiased bicubic downsampling filter for an integer factor, and its offset.

    Output sample ``i`` sits at input coordinate ``(i + 0.5) r − 0.5``; the cubic is widened by
    ``r``, so the filter has ``4r`` taps: ``out[i] = Σ_d k[d] x[i r + offset + d]``.
    """
    centre = (factor - 1) / 2.0
    first = math.floor(centre - 2 * factor) + 1
    last = math.ceil(centre + 2 * factor) - 1
    taps = torch.arange(first, last + 1, dtype=torch.float64)
    weights = keys_cubic((taps - centre) / factor)
    return weights / weights.sum(), first


class BicubicSR(LinearOperator):
    """Antialiased bicubic filtering followed by stride-``r`` subsampling (DPS/PSLD's ×4 task).

    Borders are reflect-padded (PyTorch's ``interpolate(antialias=True)`` instead truncates and
    renormalises the filter there; the interiors agree). The adjoint is the transposed filter, not
    an interpolation; ``A†`` is the exact minimum-norm right-inverse ``Aᵀ(AAᵀ)⁻¹``.
    """

    name = "super-resolution (bicubic)"

    def __init__(self, height: int, width: int, factor: int, channels: int = 3,
                 padding: Padding = "reflect") -> None:
        _check_factor(height, width, factor)
        super().__init__(height, width, channels)
        self.factor = factor
        kernel, offset = bicubic_antialias_kernel(factor)
        require(min(height, width) > kernel.numel() // 2,
                f"image {height}x{width} is too small for bicubic x{factor} (needs more than "
                f"{kernel.numel() // 2} pixels per side)")
        self.filter = SeparableStridedFilter(kernel, offset, height, width, factor, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.filter.forward(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.filter.adjoint(y)

    def pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor:
        return minimum_norm_right_inverse(self, y)

    def image_size_of_measurement(self) -> tuple[int, int]:
        return (self.height // self.factor, self.width // self.factor)


# --------------------------------------------------------------------------------------------
# Deblurring
# --------------------------------------------------------------------------------------------
def gaussian_kernel_1d(size: int, sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian; the 2-D blur kernel is its outer product."""
    require(size >= 1 and size % 2 == 1, f"kernel size must be odd and positive, got {size}")
    require(sigma > 0, f"blur sigma must be positive, got {sigma}")
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def motion_blur_kernel(size: int = 61, intensity: float = 0.5, seed: int = 0) -> torch.Tensor:
    """A seeded random-trajectory motion-blur kernel, ``size × size``, summing to 1.

    Our own generator in the spirit of the trajectory kernels DPS uses: a camera path whose
    heading drifts as a random walk (more ``intensity``, more turning and a longer path), drawn
    with bilinear splatting and centred on its centre of mass. Not bit-identical to DPS's.
    """
    require(size >= 3 and size % 2 == 1, f"kernel size must be odd and at least 3, got {size}")
    require(0 <= intensity <= 1, f"motion-blur intensity must be in [0, 1], got {intensity}")
    rng = np.random.default_rng(int(seed))
    steps = 4 * size
    heading = rng.uniform(0, 2 * np.pi)
    turn = rng.normal(0.0, 0.05 + 0.6 * intensity, steps).cumsum()
    speed = 1.0 + intensity * rng.normal(0.0, 0.5, steps).clip(-0.9, 2.0)
    path = np.stack([np.cos(heading + turn) * speed, np.sin(heading + turn) * speed], 1).cumsum(0)
    path -= path.mean(0)
    reach = np.abs(path).max()
    path *= ((size - 1) / 2 - 1) * (0.35 + 0.6 * intensity) / max(reach, 1e-9)
    kernel = np.zeros((size, size))
    centre = (size - 1) / 2
    for px, py in path + centre:
        x0, y0 = int(np.floor(px)), int(np.floor(py))
        fx, fy = px - x0, py - y0
        for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                          (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            kernel[y0 + dy, x0 + dx] += w
    return torch.from_numpy(kernel / kernel.sum())


class Blur(LinearOperator):
    """Convolution with a 2-D kernel (reflect padding by default), same-size output.

    ``A`` correlates the padded image with the kernel; ``Aᵀ`` is the transposed convolution
    followed by the adjoint of the padding (a scatter-add), exact for every padding mode.
    ``A†`` is a damped least-squares (Tikhonov) solve, since blur has no cheap right-inverse.
    """

    name = "deblurring"

    def __init__(self, height: int, width: int, kernel: torch.Tensor, channels: int = 3,
                 padding: Padding = "reflect") -> None:
        super().__init__(height, width, channels)
        require(kernel.ndim == 2 and kernel.shape[0] % 2 == 1 and kernel.shape[1] % 2 == 1,
                f"blur kernel must be 2-D with odd sides, got shape {tuple(kernel.shape)}")
        require(bool(torch.isfinite(kernel).all()), "blur kernel contains NaN or infinite values")
        kh, kw = kernel.shape
        require(kh <= height and kw <= width,
                f"blur kernel {kh}x{kw} is larger than the {height}x{width} image: use a smaller kernel "
                f"size (at most {min(height, width) - (1 - min(height, width) % 2)}) or a larger image")
        self.kernel = kernel.to(torch.float64)
        self.rows = AxisGather(padding_indices(height, kh // 2, kh // 2, padding), height, axis=-2)
        self.cols = AxisGather(padding_indices(width, kw // 2, kw // 2, padding), width, axis=-1)

    def _weights(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel.to(device=x.device, dtype=x.dtype)
        return k.expand(x.shape[1], 1, *k.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = self.cols.forward(self.rows.forward(x))
        return F.conv2d(padded, self._weights(x), groups=x.shape[1])

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        spread = F.conv_transpose2d(y, self._weights(y), groups=y.shape[1])
        return self.rows.adjoint(self.cols.adjoint(spread))

    def pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor:
        return least_squares(self, y, damping=1e-2, iterations=100)


class GaussianBlur(Blur):
    """Gaussian blur, computed separably (same result as the 2-D kernel, far cheaper)."""

    def __init__(self, height: int, width: int, size: int = 61, sigma: float = 3.0,
                 channels: int = 3, padding: Padding = "reflect") -> None:
        k1 = gaussian_kernel_1d(size, sigma)
        super().__init__(height, width, torch.outer(k1, k1), channels, padding)
        self.separable = SeparableStridedFilter(k1, -(size // 2), height, width, 1, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.separable.forward(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.separable.adjoint(y)


class MotionBlur(Blur):
    """Blur with a seeded random-trajectory kernel (see :func:`motion_blur_kernel`)."""

    def __init__(self, height: int, width: int, size: int = 61, intensity: float = 0.5, seed: int = 0,
                 channels: int = 3, padding: Padding = "reflect") -> None:
        super().__init__(height, width, motion_blur_kernel(size, intensity, seed), channels, padding)


# --------------------------------------------------------------------------------------------
# Denoising and colourisation
# --------------------------------------------------------------------------------------------
class Denoising(LinearOperator):
    """``A = I``: the measurement is the noisy image itself."""

    name = "denoising"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y


class Colorization(LinearOperator):
    """``A x`` = the mean over colour channels, ``(N, 1, H, W)``; ``A† y`` repeats it."""

    name = "colorization"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1, keepdim=True)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y.expand(-1, self.channels, -1, -1) / self.channels

    def pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y.expand(-1, self.channels, -1, -1).contiguous()

    def to_image(self, y: torch.Tensor) -> torch.Tensor:
        return self.pseudo_inverse(y)

    def from_image(self, image: torch.Tensor) -> torch.Tensor:
        self.check_measurement_image(image)
        return image.mean(1, keepdim=True)
