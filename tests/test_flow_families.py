"""Z-Image, Lumina 2 and Chroma (real width, 1 block, random weights) with the 16-channel Flux VAE,
inside ComfyUI (issue 27).

ComfyUI 0.3.75 runs all three in Flux's latent space: Z-Image and Lumina 2 are NextDiT transformers
(``comfy.model_base.Lumina2``: rectified flow on the shifted 1000-step table, a language model's hidden
states as conditioning, the network's output negated and its time reversed inside the network), and
Chroma is Flux's double/single-stream layout without the pooled vector, modulated by a distilled-guidance
approximator (``ModelSamplingFlux``, T5 tokens, real classifier-free guidance). Built through
``comfy.supported_models`` the way ComfyUI's detection builds the published files
(``tools/sd_architectures.py``); their outputs mean nothing. These tests check that the DWGF and PSLD
Samplers and Particle Decode run on them through the node classes, that the adapter's noise prediction is
the one the model's own sampling object converts from the raw network output, and that classifier-free
guidance (which none of them replaces by a guidance input) runs an unconditional pass.
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
FAMILIES = ("zimage", "lumina2", "chroma")
NAMES = {"zimage": "Z-Image", "lumina2": "Lumina 2", "chroma": "Chroma"}


@pytest.fixture(scope="module", params=FAMILIES)
def random_flow(request, comfy_nodes):
    import sd_architectures

    if sd_architectures.flow_model_class(request.param) is None:
        pytest.skip(f"this ComfyUI predates {NAMES[request.param]} (comfy.supported_models."
                    f"{sd_architectures.FLOW_MODEL_CLASSES[request.param]}: Lumina 2 and Chroma came to ComfyUI in "
                    "2025, Z-Image late in 2025)")
    yield from built_once(lambda: sd_architectures.build_random_sd(request.param, DTYPE))


problem = super_resolution_problem
run_dwgf = run_dwgf_node


def test_the_family_is_built_as_comfyui_builds_it(random_flow) -> None:
    """ComfyUI's own classes: Flux's latent format (scale 0.3611, shift 0.1159) and a CONST
    (rectified-flow) sampling object, the network in bfloat16."""
    import comfy.latent_formats
    import comfy.model_sampling

    base = random_flow.model.model
    assert type(base.latent_format) is comfy.latent_formats.Flux
    assert isinstance(base.model_sampling, comfy.model_sampling.CONST)
    assert base.get_dtype() == DTYPE


def test_dwgf_and_particle_decode_run_on_the_family(comfy_nodes, random_flow) -> None:
    """Two iterations at 64² (latent 16×8×8) through the DWGF Sampler node, then Particle Decode."""
    latent = run_dwgf(comfy_nodes, random_flow)
    samples = latent["samples"]
    assert samples.shape == (2, 16, 8, 8) and samples.dtype == torch.float32
    assert torch.isfinite(samples).all()
    assert latent["dwgf_vae"] == {"latent_channels": 16, "downscale": 8}
    with torch.inference_mode():
        images, mean, spread = comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_ParticleDecode"]().decode(
            latent, random_flow.vae, False)
    assert images.shape == (2, 64, 64, 3) and mean.shape[1:] == (64, 64, 3) and spread.shape[1:3] == (64, 64)
    assert torch.isfinite(images).all() and torch.isfinite(spread).all()


def test_the_adapter_gives_the_models_own_noise_prediction(comfy_nodes, random_flow) -> None:
    """At a VP-equivalent level, ε from the adapter's flow call equals ``(x_t − (1 − t) ẑ0) / t`` where ẑ0 is
    the model sampling's own conversion (``calculate_denoised``) of the raw network output at the flow
    time ``t`` with the same signal-to-noise ratio, the network called with the conditioning the model's
    own ``extra_conds`` makes (NextDiT: ``num_tokens``; Chroma: ``guidance`` 0, no pooled vector)."""
    import comfyui_env

    flow = comfyui_env.pack_submodule("dwgf.flow")
    schedule = comfyui_env.pack_submodule("dwgf.schedule")
    adapter = comfyui_env.pack_submodule("nodes.comfy_adapter")
    base = random_flow.model.model
    context, extras = random_flow.positive[0]
    z_t = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(4))
    made = base.extra_conds(cross_attn=context, noise=z_t, device=torch.device("cpu"), **extras)
    conds = {name: cond.cond for name, cond in made.items() if name != "c_crossattn"}
    assert not {"c_concat", "y"} & set(conds)
    alphas = adapter.model_alphas_cumprod(random_flow.model)
    level = schedule.levels_from_timesteps(alphas, [600])[0]
    denoiser = adapter.GuidedDenoiser(lambda x, sigma: base.apply_model(x, sigma, c_crossattn=context, **conds),
                                      {}, alphas, flow=True)
    with torch.inference_mode():
        ours = flow.model_noise(denoiser, z_t, level)
        t = torch.tensor([level.k_sigma / (1 + level.k_sigma)])
        x_t = z_t / level.alpha / (1 + level.k_sigma)
        sampling = base.model_sampling
        raw = base.diffusion_model(
            sampling.calculate_input(t, x_t).to(DTYPE), sampling.timestep(t).float(), context=context.to(DTYPE),
            **{k: v.to(DTYPE) if torch.is_tensor(v) else v for k, v in conds.items()}).float()
        denoised = sampling.calculate_denoised(t, raw, x_t)
    expected = (x_t - (1 - t) * denoised) / t
    assert float(adapter.model_flow_times(random_flow.model)[600]) == pytest.approx(float(t), rel=1e-6)
    # both sides round the same bfloat16 inputs (measured: identical); 5e-3 still tells Lumina 2's time t from
    # 1 − t at 1 block of random weights (0.03 apart) and a negated output (0.7 apart)
    assert torch.allclose(ours, expected, atol=5e-3 * expected.abs().max().item())


def test_classifier_free_guidance_runs_an_unconditional_pass(comfy_nodes, random_flow) -> None:
    """None of these has a guidance input in Flux dev's sense (Chroma's ``guidance`` is fed 0 by ComfyUI;
    Z-Image and Lumina 2 have none), so the pack does not call them guidance-distilled: cfg 1 runs one
    transformer pass per iteration on the particles, and cfg 2 is accepted and adds the unconditional one."""
    import comfyui_env

    adapter = comfyui_env.pack_submodule("nodes.comfy_adapter")
    assert not adapter.is_guidance_distilled(random_flow.model)
    seen: list[int] = []
    network = random_flow.model.model.diffusion_model
    handle = network.register_forward_pre_hook(lambda module, args, kwargs: seen.append(args[0].shape[0]),
                                               with_kwargs=True)
    try:
        run_dwgf(comfy_nodes, random_flow, cfg=1.0, particles=2, steps=1)
        single = list(seen)
        seen.clear()
        latent = run_dwgf(comfy_nodes, random_flow, cfg=2.0, particles=2, steps=1)
    finally:
        handle.remove()
    assert single == [2]
    assert sum(seen) == 4  # the particles, conditional and unconditional (one batch or two)
    assert torch.isfinite(latent["samples"]).all()


def test_psld_back_propagates_through_the_family(comfy_nodes, random_flow) -> None:
    """PSLD's gradient runs through the transformer (the adapter's norm hooks keep Chroma's in-place
    residual adds intact) and gives finite latents; Particle Decode decodes them."""
    degradation, measurement = problem(comfy_nodes)
    with torch.inference_mode():
        (latent,) = comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_PSLDSampler"]().sample(
            random_flow.model, random_flow.positive, random_flow.negative, random_flow.vae, degradation,
            measurement, seed=0, steps=2, particles=1, omega=-1.0, gamma=-1.0, cfg=1.0)
        images, _, _ = comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_ParticleDecode"]().decode(latent, random_flow.vae, False)
    assert latent["samples"].shape == (1, 16, 8, 8) and torch.isfinite(latent["samples"]).all()
    assert images.shape == (1, 64, 64, 3) and torch.isfinite(images).all()


def test_the_fast_path_takes_flux_tiny_vae(comfy_nodes, random_flow) -> None:
    """All three work in Flux.1's latent space, so ComfyUI's taef1 (random weights, loaded by its own Load
    VAE node) is their fast_vae: three iterations, the last through the full VAE; SD3's taesd3 (another
    scale and shift) is refused, naming taef1."""
    import sd_architectures

    degradation, measurement = problem(comfy_nodes)
    assert sd_architectures.FAMILY_TAESD[random_flow.family] == "taef1"
    with torch.inference_mode():
        tiny = sd_architectures.build_taesd("taef1")
        settings = dict(seed=0, steps=3, particles=1, learning_rate=1.0, prior_weight=0.15, ae_weight=0.1,
                        decoder_noise=0.01, cfg=1.0, full_decoder_steps=1)
        sampler = comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_Sampler"]()
        (latent,) = sampler.sample(random_flow.model, random_flow.positive, random_flow.negative, random_flow.vae,
                                   degradation, measurement, fast_vae=tiny, **settings)
        assert latent["samples"].shape == (1, 16, 8, 8) and torch.isfinite(latent["samples"]).all()
        other = sd_architectures.build_taesd("taesd3")
        with pytest.raises(ValueError, match="fast_vae: this tiny VAE scales latents by .*connect taef1"):
            sampler.sample(random_flow.model, random_flow.positive, random_flow.negative, random_flow.vae,
                           degradation, measurement, fast_vae=other, **settings)
