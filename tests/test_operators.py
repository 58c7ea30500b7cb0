"""The forward operators of METHOD.md: exact adjoints, right-inverses, reference geometry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dwgf import operators as ops

SHAPES = [(24, 24), (32, 48), (64, 40)]


def make_operators(height: int, width: int) -> dict[str, ops.LinearOperator]:
    """Every linear operator of the pack at one size (kernels shrunk to fit small images)."""
    kernel = min(height, width) - 1 if min(height, width) % 2 == 0 else min(height, width)
    kernel = min(kernel, 15)
    made = {
        "inpaint-box": ops.Inpainting(ops.centered_box_mask(height, width, 0.4)),
        "inpaint-random": ops.Inpainting(ops.random_mask(height, width, 0.3, seed=1)),
        "denoise": ops.Denoising(height, width),
        "colorize": ops.Colorization(height, width),
        "gauss-reflect": ops.GaussianBlur(height, width, kernel, 2.0),
        "gauss-circular": ops.GaussianBlur(height, width, kernel, 2.0, padding="circular"),
        "motion-reflect": ops.MotionBlur(height, width, kernel, 0.5, seed=3),
        "motion-replicate": ops.MotionBlur(height, width, kernel, 0.5, seed=4, padding="replicate"),
    }
    for r in (2, 4, 8):
        if height % r == 0 and width % r == 0:
            made[f"avgpool-x{r}"] = ops.AveragePoolSR(height, width, r)
            if min(height, width) > 2 * r:
                made[f"bicubic-x{r}"] = ops.BicubicSR(height, width, r)
    return made


CASES = [(h, w, name) for h, w in SHAPES for name in make_operators(h, w)]


@pytest.mark.parametrize(("height", "width", "name"), CASES)
def test_dot_product_identity(height: int, width: int, name: str) -> None:
    """⟨A x, y⟩ = ⟨x, Aᵀ y⟩ to float64 precision (relative error ≤ 1e-5; we see ~1e-15)."""
    op = make_operators(height, width)[name]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, height, width, generator=gen, dtype=torch.float64)
    y = torch.randn(2, *op.measurement_shape(), generator=gen, dtype=torch.float64)
    lhs = (op.forward(x) * y).sum()
    rhs = (x * op.adjoint(y)).sum()
    assert abs(lhs - rhs) / abs(lhs) <= 1e-5
    assert abs(lhs - rhs) / abs(lhs) <= 1e-12  # what exact adjoints actually give in float64


@pytest.mark.parametrize("name", ["inpaint-box", "inpaint-random", "denoise", "colorize",
                                  "avgpool-x2", "avgpool-x4", "avgpool-x8", "bicubic-x2", "bicubic-x4"])
def test_right_inverse(name: str) -> None:
    """A(A† y) = y for the operators that have a right-inverse."""
    op = make_operators(64, 64)[name]
    y = torch.randn(2, *op.measurement_shape(), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.allclose(op.forward(op.pseudo_inverse(y)), y, atol=1e-8, rtol=0)


def test_blur_pseudo_inverse_is_least_squares() -> None:
    """Blur's A† is a damped least-squares solve: it fits y better than y itself, and is nearer x."""
    op = ops.GaussianBlur(32, 32, 9, 1.5)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2 - 1
    y = op.forward(x)
    restored = op.pseudo_inverse(y)
    # measured: residual ratio 0.235 with damping 1e-2 (the damping keeps noise from exploding)
    assert (op.forward(restored) - y).norm() < 0.3 * (op.forward(y) - y).norm()
    assert (restored - x).norm() < (y - x).norm()


def test_reference_box_covers_22_9_percent_of_512() -> None:
    """METHOD.md's DWGF box: rows 150–449 × cols 250–449 of 512² = 22.9 % of the pixels."""
    known = ops.reference_box_mask(512, 512)
    assert not known[150:450, 250:450].any()
    assert known[149, 300] and known[450, 300] and known[300, 249] and known[300, 450]
    assert (~known).float().mean().item() == pytest.approx(300 * 200 / 512**2)
    assert round(100 * (~known).float().mean().item(), 1) == 22.9


def test_average_pool_matches_torch() -> None:
    x = torch.randn(3, 3, 64, 32, dtype=torch.float64)
    for r in (2, 4, 8):
        assert torch.equal(ops.AveragePoolSR(64, 32, r).forward(x), F.avg_pool2d(x, r))


@pytest.mark.parametrize("factor", [2, 4])
def test_bicubic_matches_torch_antialias_in_the_interior(factor: int) -> None:
    """Away from the borders our filter is PyTorch's antialiased bicubic resize."""
    x = torch.randn(1, 3, 96, 96, dtype=torch.float64)
    ours = ops.BicubicSR(96, 96, factor).forward(x)
    theirs = F.interpolate(x, scale_factor=1 / factor, mode="bicubic", antialias=True, align_corners=False)
    margin = 3
    assert torch.allclose(ours[..., margin:-margin, margin:-margin],
                          theirs[..., margin:-margin, margin:-margin], atol=1e-6)


def test_gaussian_blur_separable_equals_2d_kernel() -> None:
    op = ops.GaussianBlur(40, 40, 21, 3.0)
    x = torch.randn(2, 3, 40, 40, dtype=torch.float64)
    assert torch.allclose(op.forward(x), ops.Blur.forward(op, x), atol=1e-12)
    y = torch.randn(2, 3, 40, 40, dtype=torch.float64)
    assert torch.allclose(op.adjoint(y), ops.Blur.adjoint(op, y), atol=1e-12)


def test_gaussian_blur_circular_adjoint_is_flipped_correlation() -> None:
    """With circular padding the adjoint is correlation with the flipped kernel (METHOD.md)."""
    op = ops.GaussianBlur(32, 32, 7, 1.0, padding="circular")
    y = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    flipped = ops.Blur(32, 32, op.kernel.flip(0, 1), padding="circular")
    assert torch.allclose(op.adjoint(y), flipped.forward(y), atol=1e-12)


def test_kernels_are_normalised_and_seeded() -> None:
    k = ops.motion_blur_kernel(61, 0.5, seed=7)
    assert k.shape == (61, 61) and k.sum().item() == pytest.approx(1.0) and (k >= 0).all()
    assert torch.equal(k, ops.motion_blur_kernel(61, 0.5, seed=7))
    assert not torch.equal(k, ops.motion_blur_kernel(61, 0.5, seed=8))
    # the kernel is a path, not a blob: most of the 61² cells stay empty
    assert (k > 0).float().mean() < 0.2
    g = ops.gaussian_kernel_1d(61, 3.0)
    assert g.sum().item() == pytest.approx(1.0) and g.argmax() == 30


def test_measurement_noise_is_seeded_and_scaled() -> None:
    op = ops.Denoising(64, 64)
    x = torch.zeros(1, 3, 64, 64)
    y1, y2 = op.measure(x, 0.05, seed=5), op.measure(x, 0.05, seed=5)
    assert torch.equal(y1, y2)
    assert y1.std().item() == pytest.approx(0.05, rel=0.05)
    assert not torch.equal(y1, op.measure(x, 0.05, seed=6))



def test_each_images_noise_is_seeded_by_the_image_not_its_place_in_the_batch() -> None:
    """Issue 28: a photo split off to another worker, or measured alone, gets the measurement it
    gets inside the whole batch; different photos get independent noise."""
    op = ops.GaussianBlur(32, 32, size=7, sigma=1.5)
    # 8-bit pictures, as Load Image gives them, on the [-1, 1] scale
    photos = torch.randint(0, 256, (5, 3, 32, 32), generator=torch.Generator().manual_seed(0)) / 127.5 - 1
    together = op.measure(photos, 0.05, seed=3)
    for index in range(5):
        alone = op.measure(photos[index:index + 1], 0.05, seed=3)
        assert torch.equal(alone[0], together[index])
    reversed_batch = op.measure(photos.flip(0), 0.05, seed=3)
    assert torch.equal(reversed_batch.flip(0), together)
    noise = together - op.forward(photos)
    assert noise.std().item() == pytest.approx(0.05, rel=0.05)
    correlation = torch.corrcoef(noise.flatten(1))[0, 1].abs().item()
    assert correlation < 0.1  # independent draws (one 3072-pixel image: |r| ~ 0.02)
    assert not torch.equal(together, op.measure(photos, 0.05, seed=4))
    # the same picture read through a slightly different float path keeps its seed (8-bit content)
    assert ops.image_noise_seed(photos[0], 3) == ops.image_noise_seed(photos[0] + 1e-6, 3)
    # 'batch' is the draw before issue 28: one tensor for the batch, from the seed alone
    by_place = op.measure(photos, 0.05, seed=3, noise_seeded_by=ops.NOISE_PER_BATCH)
    assert torch.equal(by_place, op.forward(photos) + 0.05 * ops.seeded_normal(by_place.shape, 3).float())
    with pytest.raises(ops.DWGFInputError, match="noise_seeded_by"):
        op.measure(photos, 0.05, noise_seeded_by="row")  # type: ignore[arg-type]

def test_operators_run_in_float32_and_float16_devices() -> None:
    op = ops.BicubicSR(32, 32, 4)
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(1, 3, 32, 32, dtype=dtype)
        assert op.forward(x).dtype == dtype and op.adjoint(op.forward(x)).shape == x.shape


def test_to_device_copy_is_an_ordinary_tensor_copy() -> None:
    """Operators built in inference mode (as ComfyUI builds node outputs) become autograd-ready."""
    with torch.inference_mode():
        op = ops.BicubicSR(32, 32, 4)
        inpaint = ops.Inpainting(ops.centered_box_mask(32, 32))
    for built in (op, inpaint):
        moved = built.to("cpu")
        x = torch.randn(1, 3, 32, 32, requires_grad=True)
        moved.forward(x).square().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        assert not any(t.is_inference() for t in vars(moved).values() if isinstance(t, torch.Tensor))
    y = torch.randn(1, 3, 8, 8)
    assert torch.equal(op.to("cpu").adjoint(y), op.adjoint(y))


# -- tiny images (issue 29): the image size is the culprit, with the smallest size that works ----------------
def measures_and_fills(known: torch.Tensor) -> bool:
    return 0 < int(known.sum()) < known.numel()


@pytest.mark.parametrize(("side", "fraction", "smallest"), [(1, 0.5, 2), (4, 0.9, 5), (10, 0.95, 11)])
def test_a_centre_box_covering_a_tiny_image_names_the_size_and_box_fraction(side: int, fraction: float,
                                                                             smallest: int) -> None:
    with pytest.raises(ValueError) as caught:
        ops.centered_box_mask(side, side, fraction)
    message = str(caught.value)
    assert message.startswith(f"image: this {side}x{side} image is too small for 'inpaint box (centre)' with "
                              f"box_fraction {fraction:g}")
    assert f"Use an image of at least {smallest}x{smallest} for this box_fraction" in message
    assert ("smaller box_fraction" in message) == (side > 1)  # a 1x1 image has no smaller box
    assert "Paint" not in message
    assert measures_and_fills(ops.centered_box_mask(smallest, smallest, fraction))
    ops.Inpainting(ops.centered_box_mask(1, 5, fraction))  # a thin image keeps pixels beside the box


def test_the_reference_box_on_a_one_pixel_image_names_the_size() -> None:
    with pytest.raises(ValueError, match=r"image: this 1x1 image is too small for 'inpaint box \(DWGF reference\)'"
                                         r".*at least 2x2"):
        ops.reference_box_mask(1, 1)
    for height, width in ((2, 2), (1, 2), (2, 1), (3, 7)):
        assert measures_and_fills(ops.reference_box_mask(height, width))


@pytest.mark.parametrize(("side", "keep", "seed", "what"), [
    (1, 0.3, 0, "hides every pixel, so nothing is measured"),
    (2, 0.01, 0, "hides every pixel, so nothing is measured"),
    (3, 0.99, 0, "keeps every pixel, so there is nothing to fill"),
])
def test_a_random_mask_that_hides_all_or_nothing_names_the_size_seed_and_smallest_size(side: int, keep: float,
                                                                                        seed: int, what: str) -> None:
    with pytest.raises(ValueError) as caught:
        ops.random_mask(side, side, keep, seed)
    message = str(caught.value)
    assert message.startswith(f"image: this {side}x{side} image is too small for 'inpaint random pixels' with "
                              f"keep_probability {keep:g} and seed {seed}: the random mask {what}")
    smallest = int(message.split("the smallest square image that works is ")[1].split("x")[0])
    assert measures_and_fills(ops.random_mask(smallest, smallest, keep, seed))  # the named size works
    for smaller in range(1, smallest):  # and none below it does, with this seed
        known = torch.rand(smaller, smaller, generator=torch.Generator().manual_seed(seed)) < keep
        assert not measures_and_fills(known)
    assert ("another seed may work at this size" in message) == (side > 1)
    assert "Paint" not in message
