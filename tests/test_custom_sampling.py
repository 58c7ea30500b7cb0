"""DWGF as a SAMPLER inside ComfyUI's own custom-sampling nodes, through a real server."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from api_prompts import degradation_inputs
from comfyui_env import comfyui_root, is_comfyui_2024
from PIL import Image

from dwgf import metrics

pytestmark = pytest.mark.server
PARTICLES = 3


def custom_prompt(advanced: bool, seed: int = 5, prior: str = "epsilon") -> dict:
    degradation = degradation_inputs(["2", 0], "inpaint box (centre)")
    prompt = {
        "1": {"class_type": "DWGF_DemoModel", "inputs": {"prompt": "unconditional", "batch_size": PARTICLES,
                                                         "prior": prior}},
        "2": {"class_type": "DWGF_DemoHeldOutImages", "inputs": {"which": "photos", "start": 3, "count": 1}},
        "3": {"class_type": "DWGF_DegradationOperator", "inputs": degradation},
        "4": {"class_type": "DWGF_CustomSampler", "inputs": {
            "vae": ["1", 1], "degradation": ["3", 0], "measurement": ["3", 1], "learning_rate": 1.0,
            "prior_weight": 0.15, "ae_weight": 0.1, "decoder_noise": 0.01,
            "memory": "fastest (all particles at once)", "memory_check": True}},
        "5": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "normal", "steps": 40,
                                                         "denoise": 1.0}},
        "7": {"class_type": "DWGF_ParticleDecode", "inputs": {
            "particles": ["6", 0], "vae": ["1", 1], "paste_known_pixels": True, "degradation": ["3", 0],
            "measurement": ["3", 1], "particles_per_image": PARTICLES}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 1], "filename_prefix": "custom/mean"}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "custom/clean"}},
    }
    if advanced:
        prompt["10"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}}
        prompt["11"] = {"class_type": "BasicGuider", "inputs": {"model": ["1", 0], "conditioning": ["1", 3]}}
        prompt["6"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["10", 0], "guider": ["11", 0], "sampler": ["4", 0], "sigmas": ["5", 0],
            "latent_image": ["1", 4]}}
    else:
        prompt["6"] = {"class_type": "SamplerCustom", "inputs": {
            "model": ["1", 0], "add_noise": True, "noise_seed": seed, "cfg": 1.0, "positive": ["1", 3],
            "negative": ["1", 3], "sampler": ["4", 0], "sigmas": ["5", 0], "latent_image": ["1", 4]}}
    return prompt


def image(server, result, prefix: str) -> np.ndarray:
    (entry,) = [e for e in result.output_images() if e["filename"].startswith(prefix + "_")]
    return np.asarray(Image.open(io.BytesIO(server.view(entry))).convert("RGB")).astype(float)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two sets of 8-bit pixel values, over all of them."""
    return float(metrics.psnr(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None], data_range=255.0))


# The 2024 copy has no SamplerCustomAdvanced and no flow-matching models. On the flow prior the
# scheduler's sigmas are flow times (the first is 1, pure noise): the sampler maps them itself.
CASES = [(False, "epsilon")] if is_comfyui_2024(comfyui_root()) else [
    (False, "epsilon"), (True, "epsilon"), (True, "flow matching")]


@pytest.mark.parametrize(("advanced", "prior"), CASES,
                         ids=lambda v: {True: "SamplerCustomAdvanced", False: "SamplerCustom"}.get(v, v))
def test_dwgf_runs_inside_comfyuis_custom_sampling_nodes(server, advanced: bool, prior: str) -> None:
    result = server.run(custom_prompt(advanced, prior=prior), silence=300)
    clean, mean = image(server, result, "clean"), image(server, result, "mean")
    assert mean.shape == clean.shape == (32, 32, 3)
    hole = np.zeros((32, 32), dtype=bool)
    hole[8:24, 8:24] = True
    assert np.abs(mean[~hole] - clean[~hole]).max() <= 1  # the measured pixels, pasted back exactly
    grey = np.full_like(clean[hole], 127.5)
    assert psnr(mean[hole], clean[hole]) > psnr(grey, clean[hole]) + HOLE_GAIN_DB
    progress = [e for e in result.events if e["type"] == "progress" and e["data"].get("node") == "6"]
    assert len(progress) >= 40  # one iteration per noise level of the user's schedule


HOLE_GAIN_DB = 1.0


def test_the_custom_sampling_template_runs_as_shipped(server) -> None:
    import json
    from pathlib import Path

    prompt = json.loads((Path(__file__).resolve().parents[1] / "workflows" / "api" / "custom_box_inpainting.json")
                        .read_text())
    prompt["5"]["inputs"]["steps"] = 10  # the template's 100 noise levels, cut for the test
    result = server.run(prompt, silence=300)
    names = sorted(e["filename"].rsplit("_", 2)[0] for e in result.output_images())
    assert names.count("5_dwgf_particles") == 4 and names.count("4_dwgf_mean") == 1
    assert image(server, result, "4_dwgf_mean").shape == (32, 32, 3)
