"""Photos of any size through a real server: the result has exactly the photo's size and its
measured pixels come back exactly, whatever the VAE's factor (the demo VAE works on multiples of 2)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from api_prompts import degradation_inputs, dwgf_sampler_inputs
from PIL import Image

pytestmark = pytest.mark.server

# (height, width). The largest is 151² (odd: the demo VAE's factor 2 divides neither side), no longer
# 250²: the demo autoencoder's attention runs on 125² latents there and took 2.5 minutes of CI for 2 steps.
SIZES = [(151, 151), (97, 131), (1, 64), (64, 1), (33, 35)]


def prompt_for(name: str, operator: str) -> dict:
    degradation = degradation_inputs(["2", 0], operator, seed=3)
    sampler = dwgf_sampler_inputs()
    return {
        "1": {"class_type": "DWGF_DemoModel", "inputs": {"prompt": "unconditional", "batch_size": 1}},
        "2": {"class_type": "LoadImage", "inputs": {"image": name}},
        "3": {"class_type": "DWGF_DegradationOperator", "inputs": degradation},
        "4": {"class_type": "DWGF_Sampler", "inputs": sampler},
        "5": {"class_type": "DWGF_ParticleDecode", "inputs": {"particles": ["4", 0], "vae": ["1", 1],
                                                              "paste_known_pixels": True, "degradation": ["3", 0],
                                                              "measurement": ["3", 1]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 1], "filename_prefix": "anysize/mean"}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "anysize/particle"}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["3", 1], "filename_prefix": "anysize/measurement"}},
    }


def downloaded(server, result, prefix: str) -> list[np.ndarray]:
    entries = sorted((e for e in result.output_images() if e["filename"].startswith(prefix + "_")),
                     key=lambda e: e["filename"])
    return [np.asarray(Image.open(io.BytesIO(server.view(e))).convert("RGB")).astype(int) for e in entries]


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_a_photo_of_any_size_comes_back_at_its_size_with_its_pixels(server, height: int, width: int) -> None:
    rng = np.random.default_rng(height * 1000 + width)
    photo = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    name = f"anysize_{height}x{width}.png"
    Image.fromarray(photo).save(server.input_dir / name)
    result = server.run(prompt_for(name, "inpaint random pixels"), silence=300)
    (mean,) = downloaded(server, result, "mean")
    particles = downloaded(server, result, "particle")
    (measured,) = downloaded(server, result, "measurement")
    assert mean.shape == (height, width, 3) and all(p.shape == (height, width, 3) for p in particles)
    assert len(particles) == 2
    known = (np.abs(measured - 127.5) > 1).any(-1)  # unmeasured pixels are shown mid-grey
    assert known.mean() > 0.15
    assert np.abs(mean[known] - photo[known].astype(int)).max() <= 1  # the measured pixels, exactly


def test_super_resolution_of_a_clean_photo_of_any_size_comes_back_at_its_size(server) -> None:
    """×3 of a 97×131 photo: neither the factor nor the VAE's 4 divides it."""
    photo = np.random.default_rng(9).integers(0, 256, (97, 131, 3), dtype=np.uint8)
    Image.fromarray(photo).save(server.input_dir / "anysize_sr.png")
    prompt = prompt_for("anysize_sr.png", "super-resolution avg-pool")
    prompt["3"]["inputs"]["scale_factor"] = 3
    result = server.run(prompt, silence=300)
    (mean,) = downloaded(server, result, "mean")
    (measured,) = downloaded(server, result, "measurement")
    assert mean.shape == (97, 131, 3) and measured.shape == (33, 44, 3)
