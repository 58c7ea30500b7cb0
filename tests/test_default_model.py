"""The embedded demo model: its files, and its quality measured through ComfyUI's own nodes.

Every threshold below was set from a measurement of the shipped weights (stated next to it),
with a margin, so the tests fail when the model, the loader or ComfyUI's handling of it regress,
not on sampling noise. Held-out images only: neither network saw them.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

# -- thresholds (what the shipped model measured, 2 CPU cores, torch 2.14.1, 2024 ComfyUI) -------
MAX_SHIPPED_MEGABYTES = 32.0  # issue 25's budget (11's was 30); measured: 30.06 MB, the whole folder: both priors'
# fp16 weights, the tiny VAE (1.03 MB), the held-out images and model.json
MIN_HELDOUT_IMAGES = 50  # shipped: 300 digits, 84 photo crops (12 of each of 7 held-out photographs)
# Stock VAEEncode (the posterior sampled or its mean, by copy) → VAEDecode, mean per-image PSNR on held-out images.
MIN_PSNR_DIGITS_DB = 42.0  # measured: 44.8 dB
MIN_PSNR_PHOTOS_DB = 26.5  # measured: 27.18 dB (issue 11's target: 27)
MIN_WORST_PHOTO_PSNR_DB = 19.5  # measured: 20.40 dB, a crop of the purple cups (issue 11 asks 22: not met)
MAX_BORDER_GAP_DB = 2.6  # interior − outer-2-pixel PSNR, pooled; measured: 2.07 dB (issue 11 asks 1.5: not met)
# Held-out MSE of the UNet's denoised latent over that of the per-dimension Gaussian (Wiener)
# denoiser fitted on the same held-out latents (an oracle linear baseline), per SD timestep.
# Measured on ComfyUI 0.3.75 / the 2024 copy (whose VAEEncode gives slightly different latents).
MAX_DENOISING_RATIO = {
    "digits": {100: 0.20, 300: 0.18, 500: 0.25, 700: 0.45},  # 0.071/0.124, 0.081/0.103, 0.132/0.145, 0.287/0.296
    "photos": {100: 0.42, 300: 0.40, 500: 0.45, 700: 0.70},  # 0.288/0.317, 0.266/0.278, 0.343/0.350, 0.533/0.537
}
MIN_CLASSIFIER_ACCURACY = 0.85  # nearest-class-mean on real held-out digits; measured: 0.873 (deterministic)
MIN_SAMPLE_ACCURACY = 0.9  # KSampler digits recognised as the prompted class; measured: 1.000 (80 samples)
SAMPLES_PER_DIGIT = 4  # 40 samples (was 8: the 80 above; CI time)


@pytest.fixture(scope="module")
def demo_files(core):
    return core.demo_model


@pytest.fixture(scope="module")
def loader(comfy_nodes):
    return comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_DemoModel"]()


@pytest.fixture(scope="module")
def photo_model(loader):
    """MODEL, VAE, positive ('photo'), negative, empty latent — built as ComfyUI would."""
    with torch.inference_mode():
        return loader.load("photo", 4)


def heldout(comfy_nodes, which: str) -> tuple[torch.Tensor, list[str]]:
    node = comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_DemoHeldOutImages"]()
    with torch.inference_mode():
        images, labels = node.load(which, 0, 10000)
    return images, labels.split(", ")


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean per-image PSNR of IMAGE batches in [0, 1]."""
    from dwgf.metrics import psnr

    return float(psnr(a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2)).mean())


# ---------------------------------------------------------------------------------------------
# The shipped files
# ---------------------------------------------------------------------------------------------
def test_shipped_files_are_small_safetensors_with_a_recorded_split(demo_files):
    folder = demo_files.MODEL_DIR
    config = json.loads((folder / "model.json").read_text())
    sizes = {path.name: path.stat().st_size for path in folder.iterdir() if path.is_file()}
    assert sum(sizes.values()) / 1e6 < MAX_SHIPPED_MEGABYTES, sizes
    assert all(name.endswith(".safetensors") for name in sizes if name != "model.json"), \
        "weights must be pickle-free safetensors"
    assert not list(folder.glob("*.pt")) and not list(folder.glob("*.pth")) and not list(folder.glob("*.ckpt"))
    split = config["split"]
    assert not set(split["photos"]["heldout"]) & set(split["photos"]["train"]), "a held-out photo was trained on"
    held_digits = split["digits"]["heldout_indices"]
    assert len(set(held_digits)) == len(held_digits) >= MIN_HELDOUT_IMAGES
    assert config["downscale_ratio"] == 2 and config["latent_channels"] == 4
    sources = split["photos"]["sources"]
    assert all(entry["package"] != "scikit-learn" and not entry["path"].endswith(("china.jpg", "flower.jpg"))
               for entry in sources.values()), "scikit-learn's sample images are reserved, never trained on"
    assert {name for name, entry in sources.items() if entry["split"] == "heldout"} == set(split["photos"]["heldout"])


def test_heldout_digits_are_the_recorded_sklearn_indices(demo_files):
    """The held-out file holds exactly the digits the manifest says were held out."""
    from sklearn.datasets import load_digits

    config = demo_files.load_config()
    indices = config["split"]["digits"]["heldout_indices"]
    digits = load_digits()
    shipped = demo_files.load_heldout("digits")
    small = torch.from_numpy(digits.images[indices]).float().div(16).unsqueeze(1)
    expected = torch.nn.functional.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)
    assert shipped.images.shape == (len(indices), 32, 32, 3)
    assert torch.allclose(shipped.images[..., 0], expected[:, 0].clamp(0, 1), atol=1 / 255 + 1e-6)
    assert shipped.labels == [f"digit {d}" for d in digits.target[indices]]
    photos = demo_files.load_heldout("photos")
    assert len(photos.labels) >= MIN_HELDOUT_IMAGES
    assert set(photos.labels) <= set(config["split"]["photos"]["heldout"])


# ---------------------------------------------------------------------------------------------
# The loader builds real ComfyUI objects
# ---------------------------------------------------------------------------------------------
def test_loader_builds_real_comfyui_objects(photo_model):
    import comfy.model_base
    import comfy.model_patcher
    import comfy.sd

    model, vae, positive, negative, latent, *_ = photo_model
    assert isinstance(model, comfy.model_patcher.ModelPatcher)
    assert isinstance(model.model, comfy.model_base.BaseModel)
    assert model.model.latent_format.scale_factor == pytest.approx(0.18215)
    assert model.model.model_sampling.sigmas.shape[0] == 1000
    assert isinstance(vae, comfy.sd.VAE)
    assert vae.downscale_ratio == 2 and vae.upscale_ratio == 2
    assert positive[0][0].shape[0] == 1 and positive[0][0].shape[-1] == model.model.model_config.unet_config[
        "context_dim"]
    assert not torch.equal(positive[0][0], negative[0][0])
    assert latent["samples"].shape == (4, 4, 16, 16)
    for p in model.model.diffusion_model.parameters():
        assert torch.isfinite(p.detach()).all()


def test_unknown_prompt_is_a_clear_error(loader, core):
    with pytest.raises(core.errors.DWGFInputError, match="prompt"):
        loader.load("cat", 1)


# ---------------------------------------------------------------------------------------------
# Quality, through ComfyUI's stock nodes and model
# ---------------------------------------------------------------------------------------------
def encode(comfy_nodes, vae, images: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return comfy_nodes.VAEEncode().encode(vae, images)[0]["samples"]


def decode(comfy_nodes, vae, latents: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return comfy_nodes.VAEDecode().decode(vae, {"samples": latents})[0]


@pytest.mark.parametrize(("which", "threshold"), [("digits", MIN_PSNR_DIGITS_DB), ("photos", MIN_PSNR_PHOTOS_DB)])
def test_autoencoder_reconstructs_heldout_images(comfy_nodes, photo_model, which, threshold):
    """Stock VAEEncode → VAEDecode on images the autoencoder never saw."""
    vae = photo_model[1]
    images, _ = heldout(comfy_nodes, which)
    reconstruction = decode(comfy_nodes, vae, encode(comfy_nodes, vae, images))
    assert reconstruction.shape == images.shape
    assert psnr_db(reconstruction, images) > threshold


def test_autoencoder_keeps_colour_and_borders_on_every_heldout_photo(comfy_nodes, photo_model):
    """No crop far below the rest (the purple cups are the worst) and no border much worse than the
    interior (zero padding makes the outer pixels hardest), stock VAEEncode → VAEDecode."""
    vae = photo_model[1]
    images, _ = heldout(comfy_nodes, "photos")
    torch.manual_seed(0)
    error = (decode(comfy_nodes, vae, encode(comfy_nodes, vae, images)).float() - images.float()).pow(2).mean(-1)
    per_image = 10 * torch.log10(1 / error.flatten(1).mean(1))
    edge = torch.zeros(error.shape[1:], dtype=torch.bool)
    edge[:2], edge[-2:], edge[:, :2], edge[:, -2:] = True, True, True, True
    gap = 10 * torch.log10(error[:, edge].mean() / error[:, ~edge].mean())
    assert float(per_image.min()) > MIN_WORST_PHOTO_PSNR_DB, per_image.min()
    assert float(gap) < MAX_BORDER_GAP_DB, gap


@pytest.mark.parametrize("which", ["digits", "photos"])
def test_unet_denoises_heldout_latents_better_than_gaussian_baseline(comfy_nodes, loader, which):
    """ComfyUI's BaseModel.apply_model (k-diffusion form: x = z0 + σε → ẑ0) on held-out latents,
    with each image's own prompt, against the oracle per-dimension Wiener denoiser."""
    images, labels = heldout(comfy_nodes, which)
    prompts = sorted(set(labels)) if which == "digits" else ["photo"]
    generator = torch.Generator().manual_seed(0)
    ratios = {}
    with torch.inference_mode():
        model, vae, *_ = loader.load("photo", 1)
        z0 = model.model.process_latent_in(encode(comfy_nodes, vae, images))
        context_of = {prompt: loader.load(prompt, 1)[2][0][0] for prompt in prompts}
        contexts = torch.cat([context_of[label if which == "digits" else "photo"] for label in labels])
        mean, var = z0.mean(0), z0.var(0)
        for t in MAX_DENOISING_RATIO[which]:
            sigma = float(model.model.model_sampling.sigma(torch.tensor(float(t))))
            x = z0 + sigma * torch.randn(z0.shape, generator=generator)
            denoised = model.model.apply_model(x, torch.full((len(x),), sigma), c_crossattn=contexts)
            wiener = mean + var / (var + sigma**2) * (x - mean)
            ratios[t] = float((denoised - z0).pow(2).mean() / (wiener - z0).pow(2).mean())
    print(f"{which}: held-out denoising MSE / Wiener MSE per timestep: {ratios}")
    for t, limit in MAX_DENOISING_RATIO[which].items():
        assert ratios[t] < limit, (t, ratios)


def nearest_class_mean_classifier(demo_files):
    """Class means of the training digits (never the held-out ones) in 32×32 grey pixels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    held = set(demo_files.load_config()["split"]["digits"]["heldout_indices"])
    train = np.array([i for i in range(len(digits.target)) if i not in held])
    small = torch.from_numpy(digits.images[train]).float().div(16).unsqueeze(1)
    grey = torch.nn.functional.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    means = torch.stack([grey[torch.from_numpy(digits.target[train] == c)].mean(0) for c in range(10)])

    def classify(images: torch.Tensor) -> torch.Tensor:
        flat = images.float().mean(-1).flatten(1)
        return torch.cdist(flat, means.flatten(1)).argmin(1)

    return classify


def test_nearest_class_mean_classifier_is_meaningful(comfy_nodes, demo_files):
    """The scorer of the next test recognises real held-out digits (measured: see assertion)."""
    classify = nearest_class_mean_classifier(demo_files)
    images, labels = heldout(comfy_nodes, "digits")
    truth = torch.tensor([int(label.split()[-1]) for label in labels])
    assert float((classify(images) == truth).float().mean()) > MIN_CLASSIFIER_ACCURACY


def test_stock_ksampler_draws_the_prompted_digit(comfy_nodes, loader, demo_files):
    """Stock KSampler (euler, 20 steps, CFG 3) + VAEDecode; samples scored by the classifier."""
    classify = nearest_class_mean_classifier(demo_files)
    correct = 0
    with torch.inference_mode():
        for digit in range(10):
            model, vae, positive, negative, latent, *_ = loader.load(f"digit {digit}", SAMPLES_PER_DIGIT)
            samples = comfy_nodes.KSampler().sample(model, 1000 + digit, 20, 3.0, "euler", "normal",
                                                    positive, negative, latent)[0]
            images = comfy_nodes.VAEDecode().decode(vae, samples)[0]
            assert images.shape == (SAMPLES_PER_DIGIT, 32, 32, 3) and math.isfinite(float(images.sum()))
            correct += int((classify(images) == digit).sum())
    accuracy = correct / (10 * SAMPLES_PER_DIGIT)
    print(f"KSampler class accuracy: {accuracy:.3f}")
    assert accuracy >= MIN_SAMPLE_ACCURACY
