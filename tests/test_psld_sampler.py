"""PSLD Sampler inside the real ComfyUI (2024 copy: autograd through the UNet's attention works
around its in-place add), on the embedded demo model."""

from __future__ import annotations

import pytest
import torch

CLEAN = "clean (simulate the measurement)"


def call(comfy_nodes, node_id: str, **inputs):
    node_class = comfy_nodes.NODE_CLASS_MAPPINGS[node_id]
    with torch.inference_mode():
        return getattr(node_class(), node_class.FUNCTION)(**inputs)


@pytest.fixture(scope="module")
def problem(comfy_nodes) -> dict:
    model, vae, _, negative, _ = call(comfy_nodes, "DWGF_DemoModel", prompt="unconditional", batch_size=1)
    images, _ = call(comfy_nodes, "DWGF_DemoHeldOutImages", which="photos", start=16, count=1)
    degradation, measurement, _ = call(
        comfy_nodes, "DWGF_DegradationOperator", image=images, image_is=CLEAN, operator="inpaint box (centre)",
        scale_factor=4, kernel_size=9, blur_sigma=1.5, motion_intensity=0.5, keep_probability=0.3,
        box_fraction=0.5, sigma_y=0.001, seed=0)
    return {"model": model, "positive": negative, "negative": negative, "vae": vae,
            "degradation": degradation, "measurement": measurement}


def psld(comfy_nodes, problem, **overrides):
    inputs = dict(problem, seed=0, steps=6, particles=2, omega=-1.0, gamma=-1.0, cfg=1.0)
    inputs.update(overrides)
    return call(comfy_nodes, "DWGF_PSLDSampler", **inputs)[0]


def test_psld_node_is_registered(comfy_nodes) -> None:
    node_class = comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_PSLDSampler"]
    assert comfy_nodes.NODE_DISPLAY_NAME_MAPPINGS["DWGF_PSLDSampler"] == "PSLD Sampler"
    for name, entry in node_class.INPUT_TYPES()["required"].items():
        assert entry[1].get("tooltip"), f"{name} has no tooltip"


def test_psld_runs_through_the_unet_and_repeats_with_the_seed(comfy_nodes, problem) -> None:
    first = psld(comfy_nodes, problem)
    assert first["samples"].shape == (2, 4, 8, 8) and first["dwgf_particles"] == 2
    assert torch.isfinite(first["samples"]).all()
    assert torch.equal(first["samples"], psld(comfy_nodes, problem)["samples"])
    assert not torch.allclose(first["samples"], psld(comfy_nodes, problem, seed=1)["samples"])
    # the gradient correction changes the result: ω = γ = 0 is plain DDIM
    plain = psld(comfy_nodes, problem, omega=0.0, gamma=0.0)
    assert (first["samples"] - plain["samples"]).abs().max() > 1e-3


def test_psld_progress_and_cancel(comfy_nodes, problem) -> None:
    import comfy.model_management
    import comfy.utils

    seen: list[tuple[int, int]] = []

    def hook(value, total, *_, **__):
        seen.append((value, total))
        if value == 3:
            comfy.model_management.interrupt_current_processing(True)

    comfy.utils.set_progress_bar_global_hook(hook)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            psld(comfy_nodes, problem, steps=20)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
        comfy.model_management.interrupt_current_processing(False)
    assert seen == [(k, 20) for k in range(1, 4)]
