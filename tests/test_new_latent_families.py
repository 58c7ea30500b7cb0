"""Qwen-Image, Flux.2 and HunyuanImage 2.1 (real width, 1 block, random weights) on their real VAEs, inside
ComfyUI (issue 27 item 2).

Their latents are not SD's or Flux.1's: Qwen-Image works on the Wan 2.1 causal video VAE's latents, which have
a time axis (``(N, 16, 1, H/8, W/8)`` for one image, the network itself taking that 5-D layout); Flux.2 on its
VAE's 128 channels at 16x16 pixels per latent pixel (2x2 patches of 32 channels under a batch norm); HunyuanImage
2.1 on 64 channels of a x32 VAE. The models are built through ``comfy.supported_models`` with ComfyUI's detected
configs and the VAEs from state dicts with the published keys by ``comfy.sd.VAE(sd=...)``
(``tools/latent_families.py``); their outputs mean nothing. The pack reads the latent format, the VAE's factor,
channels and time axis off the objects (``nodes/comfy_adapter.py``): the core's particles stay ``(N, C, H, W)``
and the adapter adds the one-frame axis at the model and VAE. These tests check that the DWGF and PSLD Samplers
and Particle Decode run at the smallest size each VAE allows (64x64), that the adapter's noise prediction is
the one the model's own sampling object converts from the raw network output, how classifier-free guidance is
handled (Flux.2 is guidance-distilled: cfg 1, one pass; the others take a real unconditional pass), and that a
size the VAE's factor does not divide is solved on the next multiple and cropped back.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from random_networks import built_once, run_dwgf_node, super_resolution_problem

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

pytestmark = pytest.mark.slow

DTYPE = torch.bfloat16
FAMILIES = ("qwen_image", "flux2", "hunyuan_image21")


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, comfy_nodes):
    import latent_families

    if latent_families.model_class(request.param) is None:
        pytest.skip(f"this ComfyUI predates {latent_families.NAMES[request.param]} (comfy.supported_models."
                    f"{latent_families.MODEL_CLASSES[request.param]}: added in the second half of 2025)")
    yield from built_once(lambda: latent_families.build(request.param, DTYPE))


def latent_shape(family: str, particles: int, side: int = 64) -> tuple[int, ...]:
    """The LATENT a ComfyUI sampler gives for ``particles`` images of ``side``² (one frame on a video VAE)."""
    import latent_families

    channels, factor = latent_families.LATENT_CHANNELS[family], latent_families.VAE_DOWNSCALE[family]
    frames = (1,) if family == "qwen_image" else ()
    return (particles, channels, *frames, side // factor, side // factor)


problem = super_resolution_problem
run_dwgf = run_dwgf_node


def test_the_family_and_its_vae_are_what_comfyui_builds(family) -> None:
    """ComfyUI's own classes: the latent format, a CONST (rectified-flow) sampling object, the network in
    bfloat16; the VAE its detection made, with its factor, channels and time axis as the adapter reads them."""
    import comfy.latent_formats
    import comfy.model_sampling
    import comfyui_env
    import latent_families

    adapter = comfyui_env.pack_submodule("nodes.comfy_adapter")
    base = family.model.model
    formats = {"qwen_image": comfy.latent_formats.Wan21, "flux2": comfy.latent_formats.Flux2,
               "hunyuan_image21": comfy.latent_formats.HunyuanImage21}
    assert type(base.latent_format) is formats[family.family]
    assert isinstance(base.model_sampling, comfy.model_sampling.CONST)
    assert base.get_dtype() == DTYPE
    assert adapter.model_support_of(family.model)[1].status == "runs (flow)"
    networks = {"qwen_image": "WanVAE", "flux2": "AutoencoderKL", "hunyuan_image21": "AutoencodingEngine"}
    assert type(family.vae.first_stage_model).__name__ == networks[family.family]
    assert adapter.vae_latent_channels(family.vae) == latent_families.LATENT_CHANNELS[family.family]
    assert adapter.vae_downscale_ratio(family.vae) == latent_families.VAE_DOWNSCALE[family.family]
    assert adapter.vae_time_axis(family.vae) == (family.family == "qwen_image") == adapter.model_time_axis(family.model)


def test_dwgf_and_particle_decode_run_on_the_family(comfy_nodes, family) -> None:
    """Two iterations at 64² through the DWGF Sampler node (the LATENT in ComfyUI's layout for the model: one
    frame on Wan's VAE), then Particle Decode gives 64² images."""
    import latent_families

    latent = run_dwgf(comfy_nodes, family)
    samples = latent["samples"]
    assert tuple(samples.shape) == latent_shape(family.family, 2) and samples.dtype == torch.float32
    assert torch.isfinite(samples).all()
    assert latent["dwgf_vae"] == {"latent_channels": latent_families.LATENT_CHANNELS[family.family],
                                  "downscale": latent_families.VAE_DOWNSCALE[family.family]}
    with torch.inference_mode():
        images, mean, spread = comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_ParticleDecode"]().decode(
            latent, family.vae, False)
    assert images.shape == (2, 64, 64, 3) and mean.shape[1:] == (64, 64, 3) and spread.shape[1:3] == (64, 64)
    assert torch.isfinite(images).all() and torch.isfinite(spread).all()


def test_the_adapter_gives_the_models_own_noise_prediction(comfy_nodes, family) -> None:
    """At a VP-equivalent level, ε from the adapter's flow call equals ``(x_t − (1 − t) ẑ0) / t`` where ẑ0 is
    the model sampling's own conversion (``calculate_denoised``) of the raw network output at the flow time
    ``t`` with the same signal-to-noise ratio, the network called in its own layout (Qwen-Image: one frame,
    ``(1, 16, 1, 8, 8)``) with the conditioning the model's ``extra_conds`` makes (Flux.2: the text padded to
    512 tokens and the guidance; HunyuanImage 2.1: the guidance input)."""
    import comfyui_env

    flow = comfyui_env.pack_submodule("dwgf.flow")
    schedule = comfyui_env.pack_submodule("dwgf.schedule")
    adapter = comfyui_env.pack_submodule("nodes.comfy_adapter")
    base = family.model.model
    context, extras = family.positive[0]
    shape = latent_shape(family.family, 1)
    z_model = torch.randn(shape, generator=torch.Generator().manual_seed(4))  # the network's layout
    z_t = z_model.squeeze(2) if z_model.ndim == 5 else z_model  # the core's
    made = base.extra_conds(cross_attn=context, noise=z_model, device=torch.device("cpu"), **extras)
    crossattn = made["c_crossattn"].cond
    conds = {name: cond.cond for name, cond in made.items() if name != "c_crossattn"}
    assert not {"c_concat", "y"} & set(conds)
    alphas = adapter.model_alphas_cumprod(family.model)
    level = schedule.levels_from_timesteps(alphas, [600])[0]
    denoiser = adapter.GuidedDenoiser(lambda x, sigma: base.apply_model(x, sigma, c_crossattn=crossattn, **conds),
                                      {}, alphas, flow=True, time_axis=adapter.model_time_axis(family.model))
    with torch.inference_mode():
        ours = flow.model_noise(denoiser, z_t, level)
        t = torch.tensor([level.k_sigma / (1 + level.k_sigma)])
        x_t = z_model / level.alpha / (1 + level.k_sigma)
        sampling = base.model_sampling
        raw = base.diffusion_model(
            sampling.calculate_input(t, x_t).to(DTYPE), sampling.timestep(t).float(), context=crossattn.to(DTYPE),
            **{k: v.to(DTYPE) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in conds.items()}
        ).float()
        denoised = sampling.calculate_denoised(t, raw, x_t)
    expected = (x_t - (1 - t) * denoised) / t
    expected = expected.squeeze(2) if expected.ndim == 5 else expected
    assert ours.shape == z_t.shape
    assert torch.allclose(ours, expected, atol=5e-3 * expected.abs().max().item())


def test_classifier_free_guidance(comfy_nodes, family) -> None:
    """Flux.2 dev takes the guidance strength as an input (FluxGuidance): cfg 1 runs one transformer pass
    per iteration and another cfg is refused, naming FluxGuidance. Qwen-Image and HunyuanImage 2.1 (the base
    model) have no guidance input in that sense: cfg 2 adds the unconditional pass."""
    import comfyui_env

    adapter = comfyui_env.pack_submodule("nodes.comfy_adapter")
    errors = comfyui_env.pack_submodule("dwgf.errors")
    seen: list[int] = []
    network = family.model.model.diffusion_model
    handle = network.register_forward_pre_hook(lambda module, args, kwargs: seen.append(args[0].shape[0]),
                                               with_kwargs=True)
    try:
        run_dwgf(comfy_nodes, family, cfg=1.0, particles=1, steps=1)
        assert seen == [1]
        seen.clear()
        if family.family == "flux2":
            assert adapter.is_guidance_distilled(family.model)
            with pytest.raises(errors.DWGFInputError, match="FluxGuidance"):
                run_dwgf(comfy_nodes, family, cfg=2.0, particles=1, steps=1)
            assert seen == []
            return
        assert not adapter.is_guidance_distilled(family.model)
        latent = run_dwgf(comfy_nodes, family, cfg=2.0, particles=1, steps=1)
    finally:
        handle.remove()
    assert sum(seen) == 2  # the particle, conditional and unconditional (one batch or two)
    assert torch.isfinite(latent["samples"]).all()


def test_psld_back_propagates_through_the_family(comfy_nodes, family) -> None:
    """PSLD's gradient runs through the transformer and the VAE (decoder and encoder) and gives finite
    latents of the model's layout; Particle Decode decodes them at 64²."""
    degradation, measurement = problem(comfy_nodes)
    with torch.inference_mode():
        (latent,) = comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_PSLDSampler"]().sample(
            family.model, family.positive, family.negative, family.vae, degradation, measurement, seed=0, steps=2,
            particles=1, omega=-1.0, gamma=-1.0, cfg=1.0)
        images, _, _ = comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_ParticleDecode"]().decode(latent, family.vae, False)
    assert tuple(latent["samples"].shape) == latent_shape(family.family, 1)
    assert torch.isfinite(latent["samples"]).all()
    assert images.shape == (1, 64, 64, 3) and torch.isfinite(images).all()


def test_a_size_the_vae_does_not_divide_is_solved_on_the_next_multiple(comfy_nodes, family) -> None:
    """A 40x56 photo (divisible by 8, not by 16 or 32) is restored on the VAE's next canvas (Qwen-Image's x8:
    40x56 itself; Flux.2's x16: 48x64; HunyuanImage 2.1's x32: 64x64), and Particle Decode crops it back."""
    import latent_families

    factor = latent_families.VAE_DOWNSCALE[family.family]
    inputs = problem(comfy_nodes, 40, 56, "inpaint box (centre)")
    latent = run_dwgf(comfy_nodes, family, particles=1, steps=1, inputs=inputs)
    samples = latent["samples"]
    assert tuple(samples.shape[-2:]) == (-(-40 // factor), -(-56 // factor)) and torch.isfinite(samples).all()
    with torch.inference_mode():
        images, _, _ = comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_ParticleDecode"]().decode(latent, family.vae, False)
    assert images.shape == (1, 40, 56, 3) and torch.isfinite(images).all()


def test_a_vae_of_another_latent_space_is_refused(comfy_nodes, family) -> None:
    """The SD3/Flux.1 16-channel VAE with one of these models: refused before any work (channels for Flux.2
    and HunyuanImage 2.1; the missing time axis for Qwen-Image, whose channels match)."""
    import comfyui_env
    import sd_architectures

    errors = comfyui_env.pack_submodule("dwgf.errors")
    other = sd_architectures.build_vae(latent_channels=16)
    degradation, measurement = problem(comfy_nodes)
    message = "time axis" if family.family == "qwen_image" else "latent channels"
    with torch.inference_mode(), pytest.raises(errors.DWGFInputError, match=message):
        comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_Sampler"]().sample(
            family.model, family.positive, family.negative, other, degradation, measurement, seed=0, steps=1,
            particles=1, learning_rate=1.0, prior_weight=0.15, ae_weight=0.1, decoder_noise=0.01, cfg=1.0)
