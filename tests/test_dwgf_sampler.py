"""DWGF Sampler and Particle Decode inside the real ComfyUI, on the embedded demo model."""

from __future__ import annotations

import pytest
import torch
from comfyui_env import call_node, node_defaults

CLEAN = "clean (simulate the measurement)"


def degrade(comfy_nodes, images: torch.Tensor, operator: str, **overrides):
    inputs = {**node_defaults("DWGF_DegradationOperator"), "image": images, "image_is": CLEAN, "operator": operator}
    return call_node("DWGF_DegradationOperator", **{**inputs, **overrides})


def dwgf(comfy_nodes, demo, degradation, measurement, **overrides):
    inputs = dict(model=demo["model"], positive=demo["negative"], negative=demo["negative"], vae=demo["vae"],
                  degradation=degradation, measurement=measurement, seed=0, steps=12, particles=3,
                  learning_rate=1.0, prior_weight=0.015, ae_weight=0.1, decoder_noise=0.01, cfg=1.0)
    inputs.update(overrides)
    return call_node("DWGF_Sampler", **inputs)[0]


@pytest.fixture(scope="module")
def photos(comfy_nodes) -> torch.Tensor:
    images, _ = call_node("DWGF_DemoHeldOutImages", which="photos", start=0, count=2)
    return images


def test_nodes_are_registered_with_tooltips(comfy_nodes) -> None:
    for node_id, name in (("DWGF_Sampler", "DWGF Sampler"), ("DWGF_ParticleDecode", "Particle Decode")):
        node_class = comfy_nodes.NODE_CLASS_MAPPINGS[node_id]
        assert comfy_nodes.NODE_DISPLAY_NAME_MAPPINGS[node_id] == name
        assert node_class.DESCRIPTION and node_class.CATEGORY == "DWGF"
        for section in node_class.INPUT_TYPES().values():
            for input_name, entry in section.items():
                assert entry[1].get("tooltip"), f"{node_id}.{input_name} has no tooltip"


def test_particles_come_out_as_a_latent_batch_and_repeat_with_the_seed(comfy_nodes, demo, photos) -> None:
    degradation, measurement, _ = degrade(comfy_nodes, photos, "inpaint box (centre)")
    first = dwgf(comfy_nodes, demo, degradation, measurement)
    assert first["samples"].shape == (2 * 3, 4, 16, 16) and first["dwgf_particles"] == 3
    assert torch.isfinite(first["samples"]).all()
    again = dwgf(comfy_nodes, demo, degradation, measurement)
    assert torch.equal(first["samples"], again["samples"])
    other = dwgf(comfy_nodes, demo, degradation, measurement, seed=1)
    assert not torch.allclose(first["samples"], other["samples"])
    # particles of one image differ from each other: the flow does not collapse them
    particles = first["samples"][:3].flatten(1)
    assert torch.cdist(particles, particles).max() > 0.1


def test_memory_modes_give_the_same_particles_with_the_real_vae(comfy_nodes, demo, photos) -> None:
    """Chunking particles and checkpointing ComfyUI's decoder change memory, not the result."""
    degradation, measurement, _ = degrade(comfy_nodes, photos[:1], "super-resolution avg-pool")
    modes = list(comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_Sampler"].INPUT_TYPES()["optional"]["memory"][0])
    assert len(modes) == 3
    runs = [dwgf(comfy_nodes, demo, degradation, measurement, memory=mode)["samples"] for mode in modes]
    for other in runs[1:]:
        assert torch.allclose(other, runs[0], rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="memory must be one of"):
        dwgf(comfy_nodes, demo, degradation, measurement, memory="a lot")


def test_particle_decode_outputs_and_exact_paste_back(comfy_nodes, demo, photos) -> None:
    degradation, measurement, _ = degrade(comfy_nodes, photos, "inpaint box (centre)")
    latent = dwgf(comfy_nodes, demo, degradation, measurement)
    images, mean, spread = call_node("DWGF_ParticleDecode", particles=latent, vae=demo["vae"],
                                     paste_known_pixels=True, degradation=degradation, measurement=measurement)
    assert images.shape == (6, 32, 32, 3) and mean.shape == (2, 32, 32, 3) and spread.shape == (2, 32, 32, 3)
    known = degradation.operator.known
    for index in range(6):
        assert torch.equal(images[index][known], measurement[index // 3][known])
    assert torch.equal(spread[:, known], torch.zeros_like(spread[:, known]))
    assert spread[:, ~known].amax().item() == pytest.approx(1.0)
    assert torch.allclose(mean[0], images[:3].mean(0), atol=1e-6)
    # absolute: the standard deviation across particles in image units, the same scale for every run
    _, _, absolute = call_node("DWGF_ParticleDecode", particles=latent, vae=demo["vae"], paste_known_pixels=True,
                               degradation=degradation, measurement=measurement,
                               spread_scale="absolute (standard deviation, image units)")
    expected = images.view(2, 3, 32, 32, 3).std(1, unbiased=False).mean(-1)
    assert torch.allclose(absolute[..., 0], expected, atol=1e-6)
    assert 0.005 < absolute.amax().item() < 0.5
    peak = expected.flatten(1).amax(1).view(2, 1, 1)
    assert torch.allclose(spread[..., 0], expected / peak, atol=1e-5)


def test_progress_advances_every_step_and_cancel_stops_within_a_step(comfy_nodes, demo, photos) -> None:
    import comfy.model_management
    import comfy.utils

    degradation, measurement, _ = degrade(comfy_nodes, photos[:1], "super-resolution avg-pool")
    seen: list[tuple[int, int]] = []

    def hook(value, total, *_, **__):  # current ComfyUI also passes node_id=
        seen.append((value, total))
        if value == 5:
            comfy.model_management.interrupt_current_processing(True)

    comfy.utils.set_progress_bar_global_hook(hook)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            dwgf(comfy_nodes, demo, degradation, measurement, steps=40)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
        comfy.model_management.interrupt_current_processing(False)
    assert seen == [(k, 40) for k in range(1, 6)]


def test_bad_measurement_size_is_named(comfy_nodes, demo, photos) -> None:
    degradation, measurement, _ = degrade(comfy_nodes, photos, "super-resolution avg-pool")
    with pytest.raises(ValueError, match="measurement is 32x32 but .* expects a 8x8 measurement"):
        dwgf(comfy_nodes, demo, degradation, photos)


def test_vae_of_another_latent_space_is_refused(comfy_nodes, demo, photos) -> None:
    import comfy.sd

    ddconfig = {"double_z": True, "z_channels": 16, "resolution": 32, "in_channels": 3, "out_ch": 3, "ch": 32,
                "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
    with torch.inference_mode():
        wrong = comfy.sd.VAE(sd={}, config={"params": {"ddconfig": ddconfig, "embed_dim": 16}})
    degradation, measurement, _ = degrade(comfy_nodes, photos, "inpaint box (centre)")
    with pytest.raises(ValueError, match="16 latent channels but the MODEL expects 4"):
        dwgf(comfy_nodes, demo, degradation, measurement, vae=wrong)


def test_continuous_time_edm_model_is_refused(comfy_nodes, demo, photos) -> None:
    """EDM / continuous-time models are outside the method (flow-matching SD3/Flux are supported:
    ``test_flow_architectures.py``, ``test_flow_prior.py``)."""
    import comfy.model_base
    import comfy.model_patcher

    unsupported = comfy.model_base.ModelType.V_PREDICTION_EDM
    config = demo["model"].model.model_config
    with torch.inference_mode():
        base = comfy.model_base.BaseModel(config, model_type=unsupported, device=torch.device("cpu"))
        model = comfy.model_patcher.ModelPatcher(base, torch.device("cpu"), torch.device("cpu"))
    degradation, measurement, _ = degrade(comfy_nodes, photos, "inpaint box (centre)")
    with pytest.raises(ValueError, match="need a discrete-time eps- or v-prediction.*or a rectified-flow model"):
        dwgf(comfy_nodes, demo, degradation, measurement, model=model)


def test_diverging_run_names_the_likely_cause(comfy_nodes, core, demo, photos) -> None:
    errors = core.errors
    degradation, measurement, _ = degrade(comfy_nodes, photos[:1], "inpaint box (centre)")
    with pytest.raises(errors.DWGFRunError, match="(?s)diverged.*lower lr"):
        dwgf(comfy_nodes, demo, degradation, measurement, learning_rate=1e30, steps=5)


def test_presets_set_the_run_and_custom_uses_the_inputs(comfy_nodes, demo, photos) -> None:
    """A preset is exactly the custom run with its steps, denoise and ae_every; the inputs it sets are
    ignored under it; an API prompt without a preset runs the inputs as given (old prompts keep working)."""
    from comfyui_env import pack_submodule

    presets = pack_submodule("dwgf.presets")
    degradation, measurement, _ = degrade(comfy_nodes, photos[:1], "inpaint box (centre)")
    draft = presets.PRESETS["draft"]
    by_preset = dwgf(comfy_nodes, demo, degradation, measurement, preset="draft", steps=7, denoise=1.0, ae_every=1)
    by_hand = dwgf(comfy_nodes, demo, degradation, measurement, preset="custom", steps=draft.steps,
                   denoise=draft.denoise, ae_every=draft.ae_every)
    assert torch.equal(by_preset["samples"], by_hand["samples"])
    without_preset = dwgf(comfy_nodes, demo, degradation, measurement)
    assert torch.equal(without_preset["samples"], dwgf(comfy_nodes, demo, degradation, measurement,
                                                       preset="custom")["samples"])
    sampler = comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_Sampler"]
    preset_input = sampler.INPUT_TYPES()["optional"]["preset"]
    assert preset_input[1]["default"] == "recommended" and "KSampler steps" in preset_input[1]["tooltip"]


def test_a_warm_start_begins_at_the_encoded_measurement(comfy_nodes, demo, photos) -> None:
    """With denoise < 1 and a single iteration at a low timestep, the particles stay near E(A†y):
    their mean decodes close to the measurement-only baseline D(E(A†y)), unlike a cold start."""
    degradation, measurement, pseudo_inverse = degrade(comfy_nodes, photos[:1], "super-resolution avg-pool")
    (encoded,) = call_node("VAEEncode", vae=demo["vae"], pixels=pseudo_inverse)
    (baseline,) = call_node("VAEDecode", vae=demo["vae"], samples=encoded)
    decoded = {}
    for denoise in (0.02, 1.0):
        latent = dwgf(comfy_nodes, demo, degradation, measurement, preset="custom", steps=1, denoise=denoise,
                      learning_rate=0.01)
        (images, *_) = call_node("DWGF_ParticleDecode", vae=demo["vae"], particles=latent, paste_known_pixels=False)
        decoded[denoise] = images
    warm = (decoded[0.02] - baseline).abs().mean()
    cold = (decoded[1.0] - baseline).abs().mean()
    assert warm < 0.06 < cold, (warm, cold)
