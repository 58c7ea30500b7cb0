"""Every other family the pack accepts runs end to end: AuraFlow, PixArt α/Σ, Hunyuan-DiT 1.0 and 1.1/1.2,
HiDream, OmniGen2, Flux schnell, Flux Fill, SD 2.1 unCLIP L/H, the SDXL refiner, SSD-1B, KOALA 700M/1B,
Segmind Vega and SD 1.5 inpainting (issue 27).

Each is ComfyUI's own network of that family (``tools/more_families.py``: its ``comfy.supported_models``
class and ``get_model``, the configuration ComfyUI's detection writes for the published files, at their
width with fewer blocks, or for the UNets every block at a base width of 64; random weights), with the
VAE of its latent space and CONDITIONING shaped as its text encoder gives it (PixArt's T5-XXL tokens,
Hunyuan-DiT's two token sequences and masks, HiDream's T5 tokens, every Llama 3 layer and the pooled CLIP
vector, OmniGen2's Qwen tokens and mask). Their outputs mean nothing. The DWGF and PSLD Sampler nodes run
one iteration at 64² (PixArt: 320²; its positional embedding divides by zero below 264²) and Particle Decode
decodes the particles; the adapter's noise prediction is the one
the model's own sampling object converts from the network's raw output, where the family has something
of its own: PixArt's and Hunyuan-DiT's learned-variance half of the output (dropped), Flux Fill's and SD
1.5 inpainting's concatenated mask and image channels (ComfyUI's "inpaint everything" when no mask is
given), the flow families' time tables (Flux schnell unshifted, AuraFlow and OmniGen2 shifted). The
March-2024 ComfyUI lacks the transformer classes: those rows are skipped there.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from random_networks import built_once, super_resolution_problem

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import more_families  # noqa: E402

pytestmark = pytest.mark.slow

NAMES = list(more_families.FAMILIES)
IDS = [more_families.ROW_NAMES.get(name, name) for name in NAMES]


@pytest.fixture(scope="module", params=NAMES, ids=IDS)
def family(request, comfy_nodes):
    name = request.param
    if more_families.model_class(name) is None:
        pytest.skip(f"this ComfyUI predates {name} (no comfy.supported_models.{name}; the DiT families came to "
                    "ComfyUI from mid-2024)")
    yield from built_once(lambda: more_families.build(name))


def problem(comfy_nodes, size: int):
    return super_resolution_problem(comfy_nodes, size, size)


def adapter():
    import comfyui_env

    return comfyui_env.pack_submodule("nodes.comfy_adapter")


def spec(built) -> more_families.Family:
    return more_families.FAMILIES[built.family]


def test_the_family_is_built_as_comfyui_builds_it(family) -> None:
    """ComfyUI's own class and BaseModel, the network in the family's dtype; the samplers' check accepts it."""
    import comfy.supported_models

    base = family.model.model
    assert type(base.model_config) is getattr(comfy.supported_models, family.family)
    assert base.get_dtype() == spec(family).dtype
    facts, support = adapter().model_support_of(family.model)
    assert support.runs, support.reason
    assert facts.latent_channels == spec(family).latent_channels == adapter().model_latent_channels(family.model)


def skip_where_comfyui_needs_a_mask(family) -> None:
    if not adapter().fills_missing_inpaint_mask(family.model):
        pytest.skip("this ComfyUI (March 2024) needs a mask for inpainting models: the samplers refuse them "
                    "(test_dwgf_and_particle_decode_run_on_the_family checks the message)")


def test_dwgf_and_particle_decode_run_on_the_family(comfy_nodes, family, core) -> None:
    """A DWGF iteration with two particles through the node (classifier-free guidance on where the
    family has no guidance input), then Particle Decode: finite latents, images of the measured size. On
    a ComfyUI that cannot build an inpainting model's inputs without a mask, a clear refusal instead."""
    size = spec(family).image_size
    degradation, measurement = problem(comfy_nodes, size)
    if not adapter().fills_missing_inpaint_mask(family.model):
        with pytest.raises(core.errors.DWGFInputError, match="does not fill a missing mask"), torch.inference_mode():
            comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_Sampler"]().sample(
                family.model, family.positive, family.negative, family.vae, degradation, measurement, seed=0,
                steps=1, particles=1, learning_rate=1.0, prior_weight=0.15, ae_weight=0.1, decoder_noise=0.01,
                cfg=1.0)
        return
    channels = spec(family).latent_channels
    cfg = 1.0 if adapter().is_guidance_distilled(family.model) else 2.0
    with torch.inference_mode():
        (latent,) = comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_Sampler"]().sample(
            family.model, family.positive, family.negative, family.vae, degradation, measurement, seed=0, steps=1,
            particles=2, learning_rate=1.0, prior_weight=0.15, ae_weight=0.1, decoder_noise=0.01, cfg=cfg)
        images, mean, spread = comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_ParticleDecode"]().decode(
            latent, family.vae, False)
    samples = latent["samples"]
    assert samples.shape == (2, channels, size // 8, size // 8) and samples.dtype == torch.float32
    assert torch.isfinite(samples).all()
    assert images.shape == (2, size, size, 3) and mean.shape[1:] == (size, size, 3)
    assert spread.shape[1:3] == (size, size)
    assert torch.isfinite(images).all() and torch.isfinite(spread).all()


def test_a_size_the_network_cannot_take_is_a_clear_error(comfy_nodes, family, core) -> None:
    """PixArt's own network divides by zero below 264x264 images (its positional embedding rounds the mean
    side to whole 64-pixel units): the sampler says so, not a ZeroDivisionError from deep inside."""
    if spec(family).image_size <= 64:
        pytest.skip("this family runs at 64x64: no smaller size to refuse")
    degradation, measurement = problem(comfy_nodes, 64)
    with pytest.raises(core.errors.DWGFInputError) as refused, torch.inference_mode():
        comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_Sampler"]().sample(
            family.model, family.positive, family.negative, family.vae, degradation, measurement, seed=0, steps=1,
            particles=1, learning_rate=1.0, prior_weight=0.15, ae_weight=0.1, decoder_noise=0.01, cfg=1.0)
    assert "fails on a 8x8 latent" in str(refused.value) and "larger image" in str(refused.value)


def test_psld_back_propagates_through_the_family(comfy_nodes, family) -> None:
    """PSLD's gradient runs through the network and the decoder: finite latents, a decoded image."""
    skip_where_comfyui_needs_a_mask(family)
    size = spec(family).image_size
    degradation, measurement = problem(comfy_nodes, size)
    with torch.inference_mode():
        (latent,) = comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_PSLDSampler"]().sample(
            family.model, family.positive, family.negative, family.vae, degradation, measurement, seed=0, steps=1,
            particles=1, omega=-1.0, gamma=-1.0, cfg=1.0)
        images, _, _ = comfy_nodes.NODE_CLASS_MAPPINGS["DWGF_ParticleDecode"]().decode(latent, family.vae, False)
    assert latent["samples"].shape == (1, spec(family).latent_channels, size // 8, size // 8)
    assert torch.isfinite(latent["samples"]).all()
    assert images.shape == (1, size, size, 3) and torch.isfinite(images).all()


class full_output:  # noqa: N801 - used as a context manager, reads like one
    """The network's whole output, learned-variance channels included: PixArt's ``pred_sigma`` and
    Hunyuan-DiT's ``learn_sigma`` make their forward keep only the first half, which ComfyUI relies on."""

    FLAGS = ("pred_sigma", "learn_sigma")

    def __init__(self, network: torch.nn.Module) -> None:
        self.network = network
        self.saved = {flag: getattr(network, flag) for flag in self.FLAGS if getattr(network, flag, False)}

    def __enter__(self) -> full_output:
        for flag in self.saved:
            setattr(self.network, flag, False)
        return self

    def __exit__(self, *exc: object) -> None:
        for flag, value in self.saved.items():
            setattr(self.network, flag, value)


def _to(value, dtype):
    return value.to(dtype) if torch.is_tensor(value) and value.is_floating_point() else value


def test_the_adapter_gives_the_models_own_noise_prediction(comfy_nodes, family) -> None:
    """ε from the adapter (the k-diffusion route, or the flow route at the same signal-to-noise ratio)
    equals ε from the raw network output converted by the model's own sampling object
    (``calculate_denoised``), the network called with the inputs the model's own ``extra_conds`` makes:
    the mask and image channels ComfyUI concatenates for an inpainting model with no mask given (all
    ones and a blank image: 'inpaint everything'), the first half of a learned-variance output."""
    skip_where_comfyui_needs_a_mask(family)
    import comfyui_env

    flow_module = comfyui_env.pack_submodule("dwgf.flow")
    schedule = comfyui_env.pack_submodule("dwgf.schedule")
    comfy_adapter = adapter()
    info = spec(family)
    base = family.model.model
    sampling = base.model_sampling
    network = base.diffusion_model
    channels = info.latent_channels
    context, extras = family.positive[0]
    side = info.image_size // 8
    z_t = torch.randn(1, channels, side, side, generator=torch.Generator().manual_seed(4))
    made = base.extra_conds(cross_attn=context, noise=z_t, device=torch.device("cpu"),  # as the samplers call it:
                            latent_image=torch.zeros_like(z_t), **extras)  # the pack's empty LATENT, no mask
    conds = {name: cond.cond for name, cond in made.items() if name != "c_crossattn"}
    is_flow = comfy_adapter.is_flow_model(family.model)
    alphas = comfy_adapter.model_alphas_cumprod(family.model)
    level = schedule.levels_from_timesteps(alphas, [600])[0]
    denoiser = comfy_adapter.GuidedDenoiser(
        lambda x, sigma: base.apply_model(x, sigma, c_crossattn=context, **conds), {}, alphas, flow=is_flow)
    k = level.k_sigma
    t = torch.tensor([k / (1 + k) if is_flow else k])
    x = z_t / level.alpha / ((1 + k) if is_flow else 1.0)  # the model's own input at that level
    dtype = base.get_dtype()
    with torch.inference_mode():
        ours = flow_module.model_noise(denoiser, z_t, level)
        network_input = sampling.calculate_input(t, x)
        if "c_concat" in conds:
            network_input = torch.cat([network_input, conds["c_concat"]], dim=1)
        with full_output(network):
            raw = network(network_input.to(dtype), sampling.timestep(t).float(), context=context.to(dtype),
                          **{name: _to(value, dtype) for name, value in conds.items() if name != "c_concat"}).float()
        if info.learned_sigma:  # ε (or v) and the variance: ComfyUI's apply_model keeps the first half
            assert raw.shape[1] == 2 * channels
            raw = raw[:, :channels]
        denoised = sampling.calculate_denoised(t, raw, x)
    expected = (x - (1 - t) * denoised) / t if is_flow else (x - denoised) / k
    assert torch.allclose(ours, expected, atol=5e-3 * expected.abs().max().item()), info.peculiarity
    if is_flow:  # the adapter's time table is the model's own, its shift included
        times = comfy_adapter.model_flow_times(family.model)
        assert float(times[600]) == pytest.approx(float(t), rel=1e-6)
        shift = getattr(sampling, "shift", None)
        if hasattr(sampling, "multiplier") and shift is not None and hasattr(sampling, "sigmas"):  # discrete flow
            steps = torch.arange(1, 1001, dtype=torch.float64) / 1000
            assert torch.allclose(times, shift * steps / (1 + (shift - 1) * steps), atol=1e-6)
    if "c_concat" in conds:  # no mask given: ComfyUI's "inpaint everything"
        extra = conds["c_concat"]
        assert extra.shape[1] == base.model_config.unet_config["in_channels"] - channels
        mask = extra[:, :1] if base.concat_keys else extra[:, channels:]  # SD: mask, image; Flux: image, mask
        assert torch.all(mask == 1)
