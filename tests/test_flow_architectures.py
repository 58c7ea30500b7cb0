"""SD3's MMDiT and Flux dev's transformer (real width, fewer blocks, random weights) with their
16-channel VAEs, inside ComfyUI (issue 18).

Their outputs mean nothing; these tests check that the rectified-flow models go through the DWGF
and PSLD Samplers with ComfyUI's own conditioning (pooled vectors, Flux's guidance input), that the
adapter's conversion gives the network's own noise prediction, and that Flux's distilled guidance
costs one transformer pass per iteration.
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


@pytest.fixture(scope="module", params=["sd3", "flux"])
def random_flow(request, comfy_nodes):
    import comfy.supported_models
    import sd_architectures

    if not hasattr(comfy.supported_models, "SD3"):
        pytest.skip("this ComfyUI predates SD3 and Flux (flow-matching models came in mid-2024)")
    yield from built_once(lambda: sd_architectures.build_random_sd(request.param, DTYPE))


problem = super_resolution_problem
run_dwgf = run_dwgf_node


def test_dwgf_runs_on_the_flow_transformer_and_its_16_channel_vae(comfy_nodes, random_flow) -> None:
    """Two iterations at 64² (latent 16×8×8): the MMDiT / Flux blocks, pooled vectors, 16-channel VAE
    with its scale and shift, all through the stock classes."""
    latent = run_dwgf(comfy_nodes, random_flow)
    samples = latent["samples"]
    assert samples.shape == (2, 16, 8, 8) and samples.dtype == torch.float32
    assert torch.isfinite(samples).all()
    assert random_flow.model.model.get_dtype() == DTYPE
    assert latent["dwgf_vae"] == {"latent_channels": 16, "downscale": 8}


def test_the_adapter_gives_the_flow_networks_own_noise_prediction(comfy_nodes, random_flow) -> None:
    """At a VP-equivalent level, ε from the adapter's flow call equals ``x_t + (1 − t) v`` computed from
    the raw transformer's velocity ``v`` at the flow time ``t`` with the same signal-to-noise ratio."""
    import comfyui_env

    flow = comfyui_env.pack_submodule("dwgf.flow")
    schedule = comfyui_env.pack_submodule("dwgf.schedule")
    adapter = comfyui_env.pack_submodule("nodes.comfy_adapter")
    base = random_flow.model.model
    context, extras = random_flow.positive[0]
    conds = {"y": extras["pooled_output"]}
    if "guidance" in extras:
        conds["guidance"] = torch.tensor([extras["guidance"]])
    alphas = adapter.model_alphas_cumprod(random_flow.model)
    level = schedule.levels_from_timesteps(alphas, [600])[0]
    denoiser = adapter.GuidedDenoiser(lambda x, sigma: base.apply_model(x, sigma, c_crossattn=context, **conds),
                                      {}, alphas, flow=True)
    z_t = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        ours = flow.model_noise(denoiser, z_t, level)
        t = torch.tensor([level.k_sigma / (1 + level.k_sigma)])
        x_t = z_t / level.alpha / (1 + level.k_sigma)
        network = base.diffusion_model
        velocity = network(x_t.to(DTYPE), base.model_sampling.timestep(t).float(), context=context.to(DTYPE),
                           **{k: v.to(DTYPE) for k, v in conds.items()}).float()
    expected = x_t + (1 - t) * velocity
    assert float(adapter.model_flow_times(random_flow.model)[600]) == pytest.approx(float(t), rel=1e-6)
    assert torch.allclose(ours, expected, atol=2e-2 * expected.abs().max().item())


def test_flux_distilled_guidance_runs_one_transformer_pass_per_iteration(comfy_nodes, random_flow) -> None:
    """cfg 1: each iteration calls the transformer once, on the particles only (no unconditional
    batch); cfg > 1 on a guidance-distilled model is refused with the fix."""
    if random_flow.family != "flux":
        pytest.skip("only Flux dev is guidance-distilled")
    batches: list[int] = []
    network = random_flow.model.model.diffusion_model
    handle = network.register_forward_pre_hook(lambda module, args, kwargs: batches.append(args[0].shape[0]),
                                               with_kwargs=True)
    try:
        run_dwgf(comfy_nodes, random_flow, cfg=1.0, particles=2, steps=2)
    finally:
        handle.remove()
    assert batches == [2, 2]
    import comfyui_env

    errors = comfyui_env.pack_submodule("dwgf.errors")
    with pytest.raises(errors.DWGFInputError, match="guidance-distilled.*set cfg to 1"):
        run_dwgf(comfy_nodes, random_flow, cfg=3.5)


def test_psld_back_propagates_through_the_flow_transformer(comfy_nodes, random_flow) -> None:
    """PSLD's gradient runs through the MMDiT / Flux blocks (Flux adds to its residual stream in place;
    the adapter's norm hooks keep autograd intact) and gives finite latents."""
    degradation, measurement = problem(comfy_nodes)
    with torch.inference_mode():
        (latent,) = comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_PSLDSampler"]().sample(
            random_flow.model, random_flow.positive, random_flow.negative, random_flow.vae, degradation,
            measurement, seed=0, steps=2, particles=1, omega=-1.0, gamma=-1.0, cfg=1.0)
    assert latent["samples"].shape == (1, 16, 8, 8) and torch.isfinite(latent["samples"]).all()


def test_the_fast_path_runs_with_comfyuis_own_tiny_vae(comfy_nodes, random_flow) -> None:
    """Issue 25: taesd3 / taef1 (ComfyUI's TAESD class, 16 channels, random weights, loaded by its own Load VAE
    node) as fast_vae through the DWGF Sampler: three iterations, the last through the full VAE; the
    other flow family's tiny VAE (another latent scale and shift) is refused."""
    import sd_architectures

    degradation, measurement = problem(comfy_nodes)
    names = {"sd3": "taesd3", "flux": "taef1"}
    with torch.inference_mode():
        tiny = sd_architectures.build_taesd(names[random_flow.family])
        settings = dict(seed=0, steps=3, particles=1, learning_rate=1.0, prior_weight=0.15, ae_weight=0.1,
                        decoder_noise=0.01, cfg=1.0, full_decoder_steps=1)
        sampler = comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_Sampler"]()
        (latent,) = sampler.sample(random_flow.model, random_flow.positive, random_flow.negative, random_flow.vae,
                                   degradation, measurement, fast_vae=tiny, **settings)
        assert latent["samples"].shape == (1, 16, 8, 8) and torch.isfinite(latent["samples"]).all()
        other = sd_architectures.build_taesd(names["flux" if random_flow.family == "sd3" else "sd3"])
        with pytest.raises(ValueError, match="fast_vae: this tiny VAE scales latents by"):
            sampler.sample(random_flow.model, random_flow.positive, random_flow.negative, random_flow.vae,
                           degradation, measurement, fast_vae=other, **settings)
