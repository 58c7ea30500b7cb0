"""The one place where the pack touches ComfyUI's internals.

Everything version-sensitive (``comfy.supported_models``, ``comfy.sd.VAE``, ``ModelPatcher``,
``comfy.model_management``, the CONDITIONING and LATENT layouts) goes through here, so a change in
ComfyUI is fixed in one module and node modules stay thin. Sections:

* Devices and dtypes
* Building models from state dicts (the embedded demo model)
* Conditioning and latents
* Sampling through ComfyUI's own machinery (model checks, guidance, progress, cancel)
* The VAE as a differentiable autoencoder
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.model_sampling
import comfy.sample
import comfy.samplers
import comfy.sd
import comfy.supported_models
import latent_preview
import torch
from torch.utils.checkpoint import checkpoint

from ..dwgf import parametrisation, process_limits
from ..dwgf.errors import DWGFInputError
from . import model_support

# ---------------------------------------------------------------------------------------------
# Devices and dtypes
# ---------------------------------------------------------------------------------------------


def torch_device() -> torch.device:
    """The device ComfyUI computes on (its ``--cpu`` flag and GPU choice respected)."""
    return comfy.model_management.get_torch_device()


def unet_offload_device() -> torch.device:
    """Where ComfyUI parks a diffusion model between runs."""
    return comfy.model_management.unet_offload_device()


# ---------------------------------------------------------------------------------------------
# Building models from state dicts
# ---------------------------------------------------------------------------------------------


SD_VAE_DOWNSCALE = 8  # the VAEs of SD 1.x/2.x, SDXL, SD3 and Flux all work on 8×8-pixel latents
VAE_DOWNSCALE_TAG = "dwgf_vae_downscale"  # set on a BaseModel whose latent space is another VAE's


def build_sd15_style_model(unet_config: dict[str, Any], unet_state_dict: dict[str, torch.Tensor],
                           dtype: torch.dtype = torch.float32, vae_downscale: int = SD_VAE_DOWNSCALE,
                           flow_sampling: dict[str, float] | None = None) -> Any:
    """A MODEL (``ModelPatcher`` over an SD1.5-family ``BaseModel``) for a UNet of any size.

    ``comfy.supported_models.SD15`` gives the epsilon-prediction model sampling on SD's
    1000-step scaled-linear schedule and the SD1.5 latent format (scale 0.18215); its size check
    is used only by checkpoint detection, so a small config is accepted. The class forces its own
    head count, so ``unet_config`` (the one the weights were trained with) is re-applied on top.
    The weights must match the architecture exactly (``strict`` load), so a bad file fails here
    and not as silent noise at sampling time. ``vae_downscale`` records which VAE's latent space
    the UNet was trained in, so a VAE of another model is refused (:func:`check_vae_matches_model`).
    ``flow_sampling`` (``{"shift": …, "multiplier": …}``) makes it a rectified-flow model instead, as
    ComfyUI builds SD3: ``ModelSamplingDiscreteFlow`` with the CONST parametrisation (v = ε − z0).
    """
    model_config = comfy.supported_models.SD15(dict(unet_config))
    model_config.unet_config.update(unet_config)
    model_config.set_inference_dtype(dtype, None)
    offload = unet_offload_device()
    if flow_sampling is None:
        base_model = model_config.get_model({}, "", device=offload)
    else:
        flow_type = getattr(comfy.model_base.ModelType, "FLOW", None)
        if flow_type is None:
            raise DWGFInputError("prior: this ComfyUI predates flow-matching models (SD3, Flux; added in "
                                 "mid-2024), so the flow-matching demo prior cannot load: update ComfyUI "
                                 "or choose the epsilon prior")
        model_config.sampling_settings = dict(flow_sampling)
        base_model = comfy.model_base.BaseModel(model_config, model_type=flow_type, device=offload)
    base_model.diffusion_model.load_state_dict(unet_state_dict, strict=True)
    base_model.diffusion_model.to(device=offload, dtype=dtype)
    setattr(base_model, VAE_DOWNSCALE_TAG, int(vae_downscale))
    return comfy.model_patcher.ModelPatcher(base_model, load_device=torch_device(), offload_device=offload)


def build_kl_vae(vae_state_dict: dict[str, torch.Tensor], ddconfig: dict[str, Any], embed_dim: int,
                 downscale_ratio: int) -> Any:
    """A VAE (``comfy.sd.VAE``) around an ``AutoencoderKL`` of any size.

    ComfyUI assumes ×8 when it is given an explicit config, so the ratio is set here; the stock
    VAEEncode / VAEDecode nodes read it for cropping and for tiled fallbacks.
    """
    config = {"params": {"ddconfig": dict(ddconfig), "embed_dim": int(embed_dim)}}
    vae = comfy.sd.VAE(sd=dict(vae_state_dict), config=config)
    vae.downscale_ratio = int(downscale_ratio)
    vae.upscale_ratio = int(downscale_ratio)
    return vae


def build_tiny_vae(network: torch.nn.Module, latent_channels: int, downscale_ratio: int) -> comfy.sd.VAE:
    """A real ``comfy.sd.VAE`` whose ``first_stage_model`` is ``network``, a module with TAESD's
    interface (``decode(raw latent) -> [-1, 1]``, ``encode([-1, 1]) -> raw latent``), so the stock
    VAEDecode / VAEEncode nodes and ``vae.decode`` / ``vae.encode`` work on it.

    ``comfy.sd.VAE`` has no constructor for an arbitrary network (and its signature changed since
    2024), so it is built through its TAESD branch from a zero state dict of the stock TAESD's keys
    (no missing-key warnings, no file), then the network, its ``ModelPatcher`` (which must wrap the
    module actually run, for ComfyUI's loading and offloading), the ratios and the channels are set.
    """
    import comfy.taesd.taesd

    with torch.device("meta"):  # only the stock TAESD's key names and shapes, nothing allocated
        template = comfy.taesd.taesd.TAESD().state_dict()
    vae = comfy.sd.VAE(sd={key: torch.zeros(value.shape, dtype=torch.float32) for key, value in template.items()})
    vae.first_stage_model = network.eval().to(vae.vae_dtype)
    vae.patcher = comfy.model_patcher.ModelPatcher(network, load_device=vae.device,
                                                   offload_device=comfy.model_management.vae_offload_device())
    vae.latent_channels = int(latent_channels)
    vae.downscale_ratio = int(downscale_ratio)
    vae.upscale_ratio = int(downscale_ratio)
    if hasattr(vae, "model_size"):  # 0.3.x caches the network's size for its memory planning
        vae.size = None
        vae.model_size()
    return vae


def latent_scale_factor(model: Any) -> float:
    """The model's VAE scale factor (``latent_format.scale_factor``: 0.18215 for SD1.x)."""
    return float(model.model.latent_format.scale_factor)


# ---------------------------------------------------------------------------------------------
# Conditioning and latents
# ---------------------------------------------------------------------------------------------


def conditioning_from_context(context: torch.Tensor) -> list:
    """CONDITIONING for one cross-attention context ``(1, tokens, dim)``, as CLIPTextEncode makes."""
    return [[context.float().contiguous(), {}]]


def empty_latent(batch_size: int, channels: int, height: int, width: int) -> dict[str, torch.Tensor]:
    """A LATENT of zeros (raw VAE latent shape), like EmptyLatentImage but for any latent size.

    EmptyLatentImage assumes a ×8 VAE; the demo model's ×2 VAE needs latents of image size / 2.
    """
    return {"samples": torch.zeros((int(batch_size), int(channels), int(height), int(width)))}


# ============================================================================================
# Sampling through ComfyUI's own machinery
# ============================================================================================
# The samplers run as a ComfyUI KSAMPLER function inside ``comfy.sample.sample_custom``, so
# ComfyUI prepares conditioning (SDXL's pooled vector and size conditions included), loads the
# model, applies model patches and classifier-free guidance, exactly as for its own samplers.


def model_kind(model: Any) -> str:
    """The BaseModel's prediction type by name (``EPS``, ``V_PREDICTION``, ``FLOW``, ``FLUX``, ...)."""
    base = model.model
    return getattr(getattr(base, "model_type", None), "name", str(getattr(base, "model_type", "?")))


def is_flow_model(model: Any) -> bool:
    """A rectified-flow model (SD3, Flux): ComfyUI's CONST parametrisation, ``z_t = (1 − t) z + t ε``.
    The March-2024 copy predates it (no ``CONST``), so there nothing is a flow model."""
    const = getattr(comfy.model_sampling, "CONST", None)
    return const is not None and isinstance(model.model.model_sampling, const)


def model_facts(model: Any) -> model_support.ModelFacts:
    """What :mod:`nodes.model_support` decides from: the model's own latent format, ``model_type``, sampling
    object and config flags (never its family's name)."""
    base = model.model
    sampling = base.model_sampling
    config = getattr(base, "model_config", None)
    unet_config = getattr(config, "unet_config", None) or {}
    latent_format = base.latent_format
    noise_levels = next((cls.__name__ for cls in type(sampling).__mro__
                         if cls.__module__ == comfy.model_sampling.__name__ and issubclass(cls, torch.nn.Module)),
                        type(sampling).__name__)
    channels = unet_config.get("in_channels"), unet_config.get("out_channels")
    return model_support.ModelFacts(
        family=type(config).__name__ if config is not None else type(base).__name__,
        model_class=type(base).__name__,
        kind=model_kind(model),
        noise_levels=noise_levels,
        discrete_table=(isinstance(sampling, comfy.model_sampling.ModelSamplingDiscrete)
                        and len(getattr(sampling, "sigmas", ())) >= 2),
        rectified_flow=is_flow_model(model) and hasattr(sampling, "percent_to_sigma"),
        latent_format=type(latent_format).__name__,
        # the 2024 copy's latent formats do not say, and a Stable Cascade config has no out_channels (0: unknown)
        latent_channels=int(getattr(latent_format, "latent_channels", None) or unet_config.get("out_channels") or 0),
        latent_dimensions=int(getattr(latent_format, "latent_dimensions", 2)),
        audio="audio_model" in unet_config,
        input_channels=channels[0] if isinstance(channels[0], int) else None,
        output_channels=channels[1] if isinstance(channels[1], int) else None,
        concat_keys=tuple(getattr(base, "concat_keys", ()) or ()),
    )


def model_support_of(model: Any) -> tuple[model_support.ModelFacts, model_support.Support]:
    """The model's facts and the verdict on them (runs, or refused with the reason)."""
    facts = model_facts(model)
    return facts, model_support.classify(facts)


def check_diffusion_model(model: Any) -> None:
    """Refuse, up front and by name, any model the samplers cannot use (:mod:`nodes.model_support`):
    audio, video and 3-D models, cascade stages, EDM and other parametrisations, latent spaces the pack
    does not decode, models that need an input image. Runs: discrete-time eps/v and rectified-flow image
    models in a latent space the pack decodes (``model_support.HANDLED_LATENT_CHANNELS``)."""
    facts, support = model_support_of(model)
    if not support.runs:
        raise DWGFInputError(model_support.refusal_message(facts, support))
    if model_support.extra_image_input(facts) == "mask" and not fills_missing_inpaint_mask(model):
        raise DWGFInputError(
            f"model: this MODEL is an inpainting model (ComfyUI's {facts.family} with a mask input), and this "
            "ComfyUI does not fill a missing mask with 'generate everything' (ComfyUI from mid-2024 does): its own "
            "conditioning code fails without one. Use the base (non-inpainting) checkpoint of the same model, or "
            "a newer ComfyUI")


def fills_missing_inpaint_mask(model: Any) -> bool:
    """Whether this ComfyUI builds an inpainting model's extra inputs with no mask given (0.3.x fills
    'generate everything'; the March-2024 copy reads ``denoise_mask.shape`` and fails): asked of the
    model's own ``extra_conds`` on a one-pixel latent."""
    base = model.model
    channels = int(getattr(base.latent_format, "latent_channels", 4) or 4)
    noise = torch.zeros(1, channels, *([1] * int(getattr(base.latent_format, "latent_dimensions", 2))))
    try:
        with torch.inference_mode():
            base.extra_conds(noise=noise, latent_image=noise, device=torch.device("cpu"),
                             cross_attn=torch.zeros(1, 1, 1))  # as ComfyUI's samplers call it, with no mask
    except AttributeError as error:  # the 2024 copy: denoise_mask is None there
        return "'NoneType' object has no attribute 'shape'" not in str(error)
    except Exception:  # anything else is not about the mask (the probe's stand-in inputs): the run will say
        return True
    return True


def is_guidance_distilled(model: Any) -> bool:
    """Flux dev's transformer takes the guidance strength as an input (FluxGuidance) instead of a
    classifier-free guidance pass."""
    params = getattr(model.model.diffusion_model, "params", None)
    return bool(getattr(params, "guidance_embed", False))


def check_guidance(model: Any, cfg: float) -> None:
    """A guidance-distilled model runs at cfg 1: one transformer pass per iteration, no unconditional one."""
    if is_guidance_distilled(model) and abs(float(cfg) - 1.0) > 1e-9:
        raise DWGFInputError(
            f"cfg: this {type(model.model).__name__} model is guidance-distilled (Flux dev): its guidance "
            f"strength is an input of the model, set with a FluxGuidance node on the positive conditioning "
            f"(3.5 is usual). Classifier-free guidance (cfg {cfg}) would run a second, unconditional pass of "
            "the transformer every iteration for no benefit: set cfg to 1")


def model_flow_times(model: Any) -> torch.Tensor:
    """A flow model's 1000-step time table ``t_i`` (i = 0 … 999, increasing, the last = 1), read off its
    own sampling object (its shift included) the way ComfyUI's schedulers do: ``percent_to_sigma``."""
    sampling = model.model.model_sampling
    steps = parametrisation.FLOW_TABLE_STEPS
    return torch.tensor([float(sampling.percent_to_sigma(1.0 - (i + 1) / steps)) for i in range(steps)],
                        dtype=torch.float64)


def model_alphas_cumprod(model: Any) -> torch.Tensor:
    """The model's ``ᾱ_t`` (t = 0 … T−1) in float64. Eps/v: from ComfyUI's sigma table
    ``σ = sqrt((1−ᾱ)/ᾱ)``. Flow: the variance-preserving equivalent of its time table
    (:mod:`dwgf.parametrisation`: the DWGF update depends on the level only through ``σ/α``)."""
    if is_flow_model(model):
        return parametrisation.flow_alphas_cumprod(model_flow_times(model))
    sigmas = model.model.model_sampling.sigmas.detach().to("cpu", torch.float64)
    return 1.0 / (1.0 + sigmas**2)


def model_sigmas(model: Any, k_sigmas: torch.Tensor) -> torch.Tensor:
    """The core's k-diffusion noise levels ``s = σ/α`` as the model's own ComfyUI sigmas (flow: ``t``)."""
    return parametrisation.flow_time_from_k_sigma(k_sigmas) if is_flow_model(model) else k_sigmas


def alpha_bars_from_model_sigmas(model: Any, sigmas: torch.Tensor) -> list[float]:
    """A graph's ComfyUI sigmas (a scheduler's output) as the core's VP-equivalent ``ᾱ``, the final 0
    dropped. Eps/v: ``ᾱ = 1/(1 + σ²)``; flow: the equivalent of ``t`` (pure noise moved just below 1)."""
    values = sigmas.detach().to("cpu", torch.float64)
    values = values[values > 0]
    if values.numel() == 0:
        return []
    if is_flow_model(model):
        return parametrisation.alpha_bars_of_flow_times(values).tolist()
    return (1.0 / (1.0 + values**2)).tolist()


def model_latent_channels(model: Any) -> int:
    """The latent channels of the model's latent space (the 2024 copy's latent formats do not say;
    the UNet's output channels do)."""
    channels = getattr(model.model.latent_format, "latent_channels", None)
    return int(channels if channels is not None else model.model.model_config.unet_config["out_channels"])


def model_time_axis(model: Any) -> bool:
    """The model's latents have a time axis (``latent_format.latent_dimensions`` 3: an image model on a video
    VAE such as Qwen-Image on Wan 2.1's). The core's particles stay ``(N, C, H, W)``; the adapter adds the
    one-frame axis ``(N, C, 1, H, W)`` where the model, ComfyUI's sampling and the VAE see them."""
    return int(getattr(model.model.latent_format, "latent_dimensions", 2)) == 3


def with_frame_axis(z: torch.Tensor, time_axis: bool) -> torch.Tensor:
    """``(N, C, H, W)`` particles as ComfyUI's one-frame latents ``(N, C, 1, H, W)`` (unchanged without a
    time axis or when they already have it)."""
    return z.unsqueeze(2) if time_axis and z.ndim == 4 else z


def without_frame_axis(z: torch.Tensor, time_axis: bool) -> torch.Tensor:
    """ComfyUI's one-frame latents ``(N, C, 1, H, W)`` as the core's ``(N, C, H, W)``."""
    if not time_axis or z.ndim != 5:
        return z
    if z.shape[2] != 1:
        raise DWGFInputError(f"latent: these latents hold {z.shape[2]} frames; DWGF and PSLD restore one image "
                             "(one latent frame): use an empty latent of one frame (batch size = particles)")
    return z.squeeze(2)


class GuidedDenoiser:
    """The ``Denoiser`` protocol over the model ComfyUI hands to a KSAMPLER function.

    ``guided(x, sigma, **extra_args)`` returns the CFG-combined ``ẑ0``; calls run without
    gradients and return ordinary (non-inference) tensors. The core calls in the k-diffusion form
    ``x = z + s ε``; a flow model (``flow``) is called in its own, ``z_t = x/(1 + s)`` at ``t = s/(1 + s)``
    (:mod:`dwgf.parametrisation`), and returns ``ẑ0`` all the same.
    """

    def __init__(self, guided: Any, extra_args: dict, alphas_cumprod: torch.Tensor, flow: bool = False,
                 time_axis: bool = False) -> None:
        self.guided = guided
        self.extra_args = extra_args
        self.alphas_cumprod = alphas_cumprod
        self.flow = flow
        self.time_axis = time_axis  # the model takes one-frame latents (N, C, 1, H, W)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.denoise_differentiable(x, sigma)

    def denoise_differentiable(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The same call keeping the graph (PSLD; needs :class:`autograd_through_unet`)."""
        sigma = sigma.to(x)
        if self.flow:
            x, sigma = parametrisation.flow_input_from_k(x, sigma), parametrisation.flow_time_from_k_sigma(sigma)
        try:
            out = self.guided(with_frame_axis(x, self.time_axis), sigma, **self.extra_args)
        except ZeroDivisionError as error:  # a network whose position code has no room at this size
            raise DWGFInputError(network_size_message(self.guided, x, error)) from error
        return without_frame_axis(out, self.time_axis)


def network_size_message(guided: Any, x: torch.Tensor, error: BaseException) -> str:
    """Why the model's own network failed on this latent size, in the user's terms (ComfyUI's PixArt, for
    one, divides by zero below 33-pixel latents, i.e. 264x264 images: its positional embedding rounds the
    mean side to whole 64-pixel units)."""
    inner = getattr(getattr(guided, "inner_model", None), "diffusion_model", None)
    network = type(inner).__name__ if inner is not None else "the model's network"
    side = f"{x.shape[-2]}x{x.shape[-1]}"
    return (f"image: {network} fails on a {side} latent ({type(error).__name__}: {error}): this model needs a "
            "larger image (PixArt: at least 264x264). Use a larger photo, or resize it up before the Degradation "
            "Operator")


class Progress:
    """A core run's step callback (``dwgf.sampling.StepCallback``) driving ComfyUI's progress bar, live
    preview (the step's ``info["denoised"]`` when there is one, else ``z``) and Cancel button."""

    def __init__(self, callback: Callable | None, sigmas: torch.Tensor, time_axis: bool = False) -> None:
        self.callback, self.sigmas, self.time_axis = callback, sigmas, time_axis

    def __call__(self, step: int, total: int, z: torch.Tensor, info: dict[str, Any]) -> None:
        throw_if_interrupted()
        if self.callback is not None:
            preview = with_frame_axis(info.get("denoised", z).detach(), self.time_axis)
            self.callback({"i": step, "denoised": preview, "x": preview, "sigma": self.sigmas[step],
                           "sigma_hat": self.sigmas[step]})


def sample_with_comfyui(model: Any, positive: Any, negative: Any, cfg: float, sigmas: torch.Tensor,
                        latent_shape: tuple[int, ...], seed: int,
                        run: Callable[[GuidedDenoiser, torch.device, Progress], torch.Tensor],
                        differentiable_model: bool = False) -> torch.Tensor:
    """Run ``run(denoiser, device, on_step)`` as a ComfyUI sampler; returns raw VAE latents.

    ``sigmas`` are the schedule's k-diffusion noise levels ``s = σ/α`` (one per iteration; handed to
    ComfyUI as the model's own sigmas); ``on_step`` is the core run's
    callback (:class:`Progress`). ``differentiable_model`` lets gradients run through the UNet (PSLD).
    """
    alphas, flow, time_axis = model_alphas_cumprod(model), is_flow_model(model), model_time_axis(model)
    comfy_callback = latent_preview.prepare_callback(model, len(sigmas))

    def sampler_function(guided, noise, comfy_sigmas, extra_args=None, callback=None, disable=None, **_):
        denoiser = GuidedDenoiser(guided, dict(extra_args or {}), alphas, flow, time_axis)
        on_step = Progress(callback, comfy_sigmas, time_axis)
        with torch.inference_mode(False), torch.enable_grad():
            if not differentiable_model:
                return with_frame_axis(run(denoiser, noise.device, on_step), time_axis)
            with autograd_through_unet(model):
                return with_frame_axis(run(denoiser, noise.device, on_step), time_axis)

    sampler = comfy.samplers.KSAMPLER(sampler_function)
    schedule = torch.cat([model_sigmas(model, sigmas.double().cpu()).float(), torch.zeros(1)])
    if time_axis:  # ComfyUI's latents of a model on a video VAE: one frame, (N, C, 1, H, W)
        latent_shape = (*latent_shape[:2], 1, *latent_shape[2:])
    latent = torch.zeros(latent_shape)
    return comfy.sample.sample_custom(model, torch.zeros(latent_shape), float(cfg), sampler, schedule, positive,
                                      negative, latent, callback=comfy_callback, disable_pbar=True, seed=seed)


class GuidedModel:
    """The MODEL-like view (``.model`` = the BaseModel) of the guided model ComfyUI hands a sampler,
    for the checks and VAE preparation that take a MODEL."""

    def __init__(self, guided: Any) -> None:
        self.model = guided.inner_model.inner_model  # KSamplerX0Inpaint → CFG guider → BaseModel


def custom_sampler(run: Callable[..., torch.Tensor]) -> Any:
    """A SAMPLER for SamplerCustom / SamplerCustomAdvanced that runs ``run`` with the user's sigmas.

    ``run(model, denoiser, unit_noise, sigmas, seed, device, on_step)`` returns model-space latents
    of ``unit_noise``'s shape; ``model`` is a :class:`GuidedModel`; ``unit_noise`` is the noise the
    user's noise source drew, before ComfyUI scaled it to the first sigma; ``on_step`` a :class:`Progress`.
    """

    def sampler_function(guided, noise, sigmas, extra_args=None, callback=None, disable=None, **_):
        model = GuidedModel(guided)
        time_axis = model_time_axis(model)
        denoiser = GuidedDenoiser(guided, dict(extra_args or {}), model_alphas_cumprod(model), is_flow_model(model),
                                  time_axis)
        unit_noise = getattr(guided, "noise", None)
        if unit_noise is not None:
            unit_noise = without_frame_axis(unit_noise, time_axis)
        seed = int((extra_args or {}).get("seed", 0) or 0)
        with torch.inference_mode(False), torch.enable_grad():
            out = run(model, denoiser, unit_noise, sigmas, seed, noise.device, Progress(callback, sigmas, time_axis))
            return with_frame_axis(out, time_axis).to(noise)

    return comfy.samplers.KSAMPLER(sampler_function)


class autograd_through_unet:  # noqa: N801 - used as a context manager, reads like one
    """Let autograd run through the UNet for the duration of a run.

    Its weights become ordinary tensors (see :func:`make_trainable_copy_of_weights`), and the
    transformer blocks' LayerNorms get a pre-hook that clones their input: ComfyUI before
    mid-2025 (≈ v0.3.41) adds attention outputs in place (``x += n``) onto a tensor LayerNorm
    saved for backward, which breaks autograd, and Flux's blocks still do; the clone costs one copy
    per norm and is removed after the run, so normal sampling is untouched.
    """

    def __init__(self, model: Any) -> None:
        self.unet = model.model.diffusion_model
        self.handles: list[Any] = []

    def __enter__(self) -> autograd_through_unet:
        make_trainable_copy_of_weights(self.unet)
        for module in self.unet.modules():
            names = _NORMS_BEFORE_IN_PLACE_ADDS.get(type(module).__name__, ())
            for norm in (getattr(module, name, None) for name in names):
                if isinstance(norm, torch.nn.Module):
                    self.handles.append(norm.register_forward_pre_hook(_clone_first_input))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


# Blocks whose residual stream is updated in place (``x += …``) after a norm saved it for backward:
# the UNets' transformer blocks before mid-2025, and Flux's double- and single-stream blocks (all versions).
_NORMS_BEFORE_IN_PLACE_ADDS = {
    "BasicTransformerBlock": ("norm1", "norm2", "norm3"),
    "DoubleStreamBlock": ("img_norm1", "img_norm2", "txt_norm1", "txt_norm2"),
    "SingleStreamBlock": ("pre_norm",),
}


def _clone_first_input(module: torch.nn.Module, args: tuple) -> tuple:
    return (args[0].clone(), *args[1:])


def throw_if_interrupted() -> None:
    """Stop within a step when the user presses Cancel (ComfyUI raises its own interrupt)."""
    comfy.model_management.throw_exception_if_processing_interrupted()


_INTERRUPTIBLE_BLOCKS = ("ResnetBlock", "AttnBlock", "Upsample", "Downsample",  # VAE encoder / decoder
                         "TimestepEmbedSequential",  # the UNet's input, middle and output blocks
                         "Block")  # TAESD's residual blocks


class interruptible:  # noqa: N801 - used as a context manager, reads like one
    """Honour Cancel inside a network call, not only between iterations, while the context is open.

    A forward pre-hook on every block of the given networks (VAE encoder/decoder blocks, UNet
    blocks) checks ComfyUI's interrupt flag, so a single decoder pass on a big image stops within
    one block; :func:`interrupt_before_backward` does the same between a decode and its backward.
    The hooks are removed on exit, so the shared networks are untouched outside a run.
    """

    def __init__(self, *networks: torch.nn.Module | None) -> None:
        self.blocks = [m for net in networks if net is not None for m in net.modules()
                       if type(m).__name__ in _INTERRUPTIBLE_BLOCKS]
        self.handles: list[Any] = []

    def __enter__(self) -> interruptible:
        self.handles = [block.register_forward_pre_hook(_check_interrupt_hook) for block in self.blocks]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def interruptible_networks(vae: Any, model: Any, fast_vae: Any = None) -> interruptible:
    """:class:`interruptible` over the VAE (and fast VAE) and the diffusion model of a run."""
    fast = None if fast_vae is None or fast_vae is vae else fast_vae.first_stage_model
    return interruptible(vae.first_stage_model, fast, getattr(model.model, "diffusion_model", None))


def free_memory_bytes(device: torch.device) -> int:
    """What ComfyUI counts as free on ``device`` (free VRAM plus its cache on a GPU, available RAM
    on the CPU); on the CPU, less where a limit on this process leaves less."""
    free = int(comfy.model_management.get_free_memory(device))
    limit = process_memory_limit(device)
    return free if limit is None else min(free, limit.free_bytes)


def process_memory_limit(device: torch.device) -> process_limits.MemoryLimit | None:
    """The tightest memory limit set on this process (a container's cgroup limit, ``ulimit -v``), on
    the CPU only: on a GPU the device's memory is what counts."""
    return process_limits.tightest_limit() if device.type == "cpu" else None


def _check_interrupt_hook(module: torch.nn.Module, args: tuple) -> None:
    throw_if_interrupted()


def interrupt_before_backward(x: torch.Tensor) -> torch.Tensor:
    """``x`` unchanged; when its backward begins, Cancel is checked first."""
    if x.requires_grad:
        x.register_hook(_check_interrupt_on_gradient)
    return x


def _check_interrupt_on_gradient(grad: torch.Tensor) -> torch.Tensor:
    throw_if_interrupted()
    return grad


# ============================================================================================
# The VAE as a differentiable autoencoder
# ============================================================================================
def make_trainable_copy_of_weights(module: torch.nn.Module) -> None:
    """Let autograd run through a module whose weights ComfyUI created under inference mode.

    Every node runs in ``torch.inference_mode()``, so loaded weights are inference tensors and
    cannot be saved for backward. Replacing each by an ordinary (frozen) Parameter copy fixes it;
    ``p.data = p.data.clone()`` does not. A no-op when already done (e.g. on the next run).
    """
    with torch.inference_mode(False):
        for sub in module.modules():
            for name, param in list(sub.named_parameters(recurse=False)):
                if param.is_inference():
                    setattr(sub, name, torch.nn.Parameter(param.clone(), requires_grad=False))
            for name, buffer in list(sub.named_buffers(recurse=False)):
                if buffer is not None and buffer.is_inference():
                    sub.register_buffer(name, buffer.clone(), persistent=name not in sub._non_persistent_buffers_set)


class ComfyVAE:
    """The ``Autoencoder`` protocol over ComfyUI's VAE, in the diffusion model's latent space.

    ``decode`` differentiates through ``first_stage_model.decode`` directly (``VAE.decode`` clamps
    and may fall back to tiles that never carry gradients); ``encode`` returns the posterior
    mean (ComfyUI's own encode samples), scaled by the model's latent format. A tiny autoencoder
    (ComfyUI's TAESD, or the demo model's own) has no posterior: its ``encode`` is used as it is.
    """

    def __init__(self, vae: Any, latent_format: Any, device: torch.device) -> None:
        self.vae = vae
        self.latent_format = differentiable_latent_format(latent_format)
        self.device = device
        self.dtype = vae.vae_dtype
        self.latent_channels = vae_latent_channels(vae)
        self.downscale = vae_downscale_ratio(vae)
        self.time_axis = vae_time_axis(vae)  # a video VAE: one image is one latent frame
        self.network = vae.first_stage_model

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raw = self.latent_format.process_out(with_frame_axis(z, self.time_axis))
        image = self.network.decode(raw.to(self.device, self.dtype))
        return interrupt_before_backward(without_frame_axis(image, self.time_axis).float())

    def decode_checkpointed(self, z: torch.Tensor) -> torch.Tensor:
        """``decode`` keeping only each decoder block's input for the backward, which recomputes one
        block at a time (checkpointing the decoder as one piece would bring all its activations back
        at once in the backward: ``bench/speed.py`` measured 36 % against 90 % of the memory)."""
        decoder = getattr(self.network, "decoder", None)
        if not isinstance(decoder, torch.nn.Module):  # a tiny autoencoder: checkpoint it whole
            return checkpoint(self.decode, z, use_reentrant=False)
        blocks = checkpointed_blocks(decoder)
        if not blocks.blocks:  # an unknown decoder layout: checkpoint it whole
            return checkpoint(self.decode, z, use_reentrant=False)
        with blocks:
            return self.decode(z)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.encode_differentiable(x)

    def encode_differentiable(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior mean, keeping the graph when gradients are on (PSLD's gluing term)."""
        if is_tiny_autoencoder(self.network):
            return self.latent_format.process_in(self.network.encode(x.to(self.device, self.dtype)).float())
        if encodes_posterior_mean(self.network):  # its own encode: Flux.2's patchified, normalised latents, Wan's
            x = with_frame_axis(x.to(self.device, self.dtype), self.time_axis)  # causal frames
            latent = self.latent_format.process_in(self.network.encode(x).float())
            return without_frame_axis(latent, self.time_axis)
        moments = self.network.encoder(x.to(self.device, self.dtype))
        quant_conv = getattr(self.network, "quant_conv", None)
        if quant_conv is not None:
            moments = quant_conv(moments)
        return self.latent_format.process_in(moments[:, : self.latent_channels].float())


def differentiable_latent_format(latent_format: Any) -> Any:
    """The latent format with its tensors (Wan 2.1's per-channel mean and std) as ordinary tensors: ComfyUI makes
    them under ``torch.inference_mode()``, and autograd cannot save inference tensors for the backward."""
    tensors = {name: value for name, value in vars(latent_format).items()
               if torch.is_tensor(value) and value.is_inference()}
    if not tensors:
        return latent_format
    copy = type(latent_format).__new__(type(latent_format))
    copy.__dict__.update(vars(latent_format))
    with torch.inference_mode(False):
        copy.__dict__.update({name: value.clone() for name, value in tensors.items()})
    return copy


_DECODER_BLOCKS = ("ResnetBlock", "AttnBlock", "Upsample")  # comfy.ldm.modules.diffusionmodules.model


class checkpointed_blocks:  # noqa: N801 - used as a context manager, reads like one
    """Checkpoint every block of a VAE decoder while the context is open (instance-level forwards,
    removed on exit, so the shared VAE is untouched outside a DWGF run)."""

    def __init__(self, decoder: torch.nn.Module) -> None:
        self.blocks = [m for m in decoder.modules() if type(m).__name__ in _DECODER_BLOCKS]

    def __enter__(self) -> checkpointed_blocks:
        for block in self.blocks:
            block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)
        return self

    def __exit__(self, *exc: object) -> None:
        for block in self.blocks:
            del block.forward


def encodes_posterior_mean(network: Any) -> bool:
    """Encode with the network's own ``encode`` where the plain ``encoder`` → ``quant_conv`` → mean path does
    not give its latents: a latent batch norm over 2x2 patches (Flux.2's VAE) or no Gaussian regulariser at all
    (Wan's causal video VAE, whose ``encode`` returns the mean itself). It must not sample: ComfyUI 0.3.x's
    Gaussian regulariser takes the mode (the 2024 copy's samples, and is never asked)."""
    regulariser = getattr(network, "regularization", None)
    custom = getattr(network, "bn", None) is not None or regulariser is None
    return custom and not getattr(regulariser, "sample", False)


def is_tiny_autoencoder(network: Any) -> bool:
    """A TAESD-style autoencoder (ComfyUI's ``comfy.taesd.taesd.TAESD`` or the demo model's tiny one):
    deterministic ``encode``/``decode`` on raw latents, its latent scaling in ``vae_scale``/``vae_shift``."""
    return hasattr(network, "vae_scale") and hasattr(network, "encode") and not hasattr(network, "encoder")


def tiny_decoder_network(network: Any) -> torch.nn.Module | None:
    """The decoder part of a tiny autoencoder (TAESD's ``taesd_decoder``, the demo's ``tiny_decoder``)."""
    return next((getattr(network, name) for name in ("taesd_decoder", "tiny_decoder") if hasattr(network, name)), None)


def vae_latent_channels(vae: Any) -> int:
    """Latent channels read off the network (the 2024 copy leaves ``VAE.latent_channels`` at 4
    for any VAE built from an explicit config)."""
    network = vae.first_stage_model
    latent_norm = getattr(network, "bn", None)  # Flux.2's: its latents are 2x2 patches, normalised per channel
    if isinstance(latent_norm, torch.nn.BatchNorm2d):
        return int(latent_norm.num_features)
    decoder = getattr(network, "decoder", None)
    for layer in (getattr(network, "post_quant_conv", None), getattr(decoder, "conv_in", None)):
        if isinstance(layer, torch.nn.Conv2d):
            return int(layer.in_channels)
    decoder = tiny_decoder_network(network) if is_tiny_autoencoder(network) else None
    if decoder is not None:  # its first convolution takes the latents
        first = next((m for m in decoder.modules() if isinstance(m, torch.nn.Conv2d)), None)
        if first is not None:
            return int(first.in_channels)
    return int(getattr(vae, "latent_channels", 4))


def vae_downscale_ratio(vae: Any) -> int:
    """Pixels per latent pixel along each side. A video VAE's ratio is ``(frames, height, width)`` with a
    function of the frame count first: it is used when it codes one image as one latent frame (Wan 2.1's
    causal VAE: 1 frame → 1) with square pixels; audio VAEs and other video ones are refused."""
    ratio = getattr(vae, "downscale_ratio", SD_VAE_DOWNSCALE)
    if isinstance(ratio, (tuple, list)) and len(ratio) == 3 and vae_time_axis(vae):
        frames, height, width = ratio
        try:
            one_frame = (frames(1) if callable(frames) else frames) == 1
        except (TypeError, ValueError):
            one_frame = False
        if one_frame and isinstance(height, int) and height == width:
            return int(height)
    if not isinstance(ratio, int) or int(getattr(vae, "latent_dim", 2)) != 2:
        raise DWGFInputError("vae: this VAE also compresses time (a video or audio VAE) and does not code one "
                             "image as one latent frame; connect the image VAE that belongs to the checkpoint")
    return ratio


def vae_time_axis(vae: Any) -> bool:
    """The VAE's latents have a time axis (``latent_dim`` 3: a video VAE such as Wan 2.1's)."""
    return int(getattr(vae, "latent_dim", 2)) == 3


def model_vae_downscale(model: Any) -> int | None:
    """The downscale factor of the VAE whose latent space the model works in: the demo model's tag, 8 for the
    4- and 16-channel image latents (SD 1.x/2.x, SDXL, SD3, Flux.1 and the models in their spaces), and
    ``None`` where the model does not say (ComfyUI's latent formats carry no factor: Flux.2's 128-channel
    latents are its VAE's x16, HunyuanImage 2.1's 64-channel ones a x32 VAE's), so the VAE's own is used."""
    tagged = getattr(model.model, VAE_DOWNSCALE_TAG, None)
    if tagged is not None:
        return int(tagged)
    return SD_VAE_DOWNSCALE if model_latent_channels(model) in model_support.SD_VAE_LATENT_CHANNELS else None


def vae_identity(vae: Any) -> dict[str, int]:
    """What a LATENT remembers of the VAE its particles belong to (checked by Particle Decode)."""
    return {"latent_channels": vae_latent_channels(vae), "downscale": vae_downscale_ratio(vae)}


def check_vae_matches_model(vae: Any, model: Any) -> None:
    vae_channels, model_channels = vae_latent_channels(vae), model_latent_channels(model)
    if vae_channels != model_channels:
        raise DWGFInputError(
            f"vae: this VAE has {vae_channels} latent channels but the MODEL expects {model_channels}: "
            "connect the VAE that belongs to the checkpoint (e.g. from the same Load Checkpoint node)"
        )
    if vae_time_axis(vae) != model_time_axis(model):
        has, wants = ("has", "has no") if vae_time_axis(vae) else ("has no", "has")
        raise DWGFInputError(
            f"vae: this VAE's latents {has} time axis (a video VAE's) but the MODEL's {wants}: the two do not "
            "belong together. Connect the VAE from the same loader as the model")
    vae_factor, model_factor = vae_downscale_ratio(vae), model_vae_downscale(model)
    if model_factor is not None and vae_factor != model_factor:
        family = "SD 1.x/2.x, SDXL" if model_factor == SD_VAE_DOWNSCALE else "its own VAE"
        raise DWGFInputError(
            f"vae: this VAE turns {vae_factor}x{vae_factor} pixels into one latent pixel but the MODEL was "
            f"trained on the latents of a {model_factor}x VAE ({family}): "
            "the two do not belong together. Connect the VAE from the same loader as the model "
            "(Load Checkpoint's VAE output, or the DWGF Demo Model's for the demo model)"
        )


def tiny_vae_latent_scaling(vae: Any) -> tuple[float, float] | None:
    """``(scale, shift)`` a TAESD-style VAE applies to raw latents (``None`` for other VAEs): it must
    be the model's latent format, or the tiny VAE belongs to another model's latent space."""
    network = vae.first_stage_model
    if not is_tiny_autoencoder(network):
        return None
    scale, shift = (torch.as_tensor(getattr(network, name, default)).detach()
                    for name, default in (("vae_scale", 1.0), ("vae_shift", 0.0)))
    return float(scale), float(shift)


_TINY_VAE_FOR_SCALE = {0.18215: "taesd (SD 1.x/2.x)", 0.13025: "taesdxl (SDXL)", 1.5305: "taesd3 (SD3/SD3.5)",
                       0.3611: "taef1 (Flux.1, Chroma, Z-Image, Lumina 2)"}


def check_fast_vae(fast_vae: Any, vae: Any, model: Any) -> None:
    """A ``fast_vae`` must work in the same latent space as the MODEL and VAE: latent channels, the
    pixels per latent pixel (the grid), and for a TAESD-style one the latent scale and shift."""
    fast_channels, vae_channels = vae_latent_channels(fast_vae), vae_latent_channels(vae)
    fast_factor, vae_factor = vae_downscale_ratio(fast_vae), vae_downscale_ratio(vae)
    if (fast_channels, fast_factor) != (vae_channels, vae_factor):
        raise DWGFInputError(
            f"fast_vae: it has {fast_channels} latent channels at {fast_factor}x{fast_factor} pixels per latent "
            f"pixel, but the VAE (and MODEL) have {vae_channels} channels at {vae_factor}x{vae_factor}: connect the "
            "tiny VAE of this model's latent space (Load VAE: taesd for SD 1.x/2.x, taesdxl for SDXL, taesd3 for "
            "SD3, taef1 for Flux, Chroma, Z-Image and Lumina 2; the DWGF Demo Model's fast_vae for the demo model)")
    scaling = tiny_vae_latent_scaling(fast_vae)
    if scaling is None:
        return
    latent_format = model.model.latent_format
    wanted = (float(latent_format.scale_factor), float(getattr(latent_format, "shift_factor", 0.0) or 0.0))
    if any(abs(a - b) > 1e-3 * max(1.0, abs(b)) for a, b in zip(scaling, wanted, strict=True)):
        theirs = _TINY_VAE_FOR_SCALE.get(round(scaling[0], 5), "another model")
        ours = _TINY_VAE_FOR_SCALE.get(round(wanted[0], 5), "this model's tiny VAE")
        raise DWGFInputError(
            f"fast_vae: this tiny VAE scales latents by {scaling[0]:g} (shift {scaling[1]:g}), the latent space of "
            f"{theirs}, but the MODEL's latents are scaled by {wanted[0]:g} (shift {wanted[1]:g}): connect {ours}")


def prepare_fast_vae(fast_vae: Any, vae: Any, model: Any, autoencoder: ComfyVAE) -> ComfyVAE:
    """The fast autoencoder of a run (checked against the model and VAE); the full VAE given as
    ``fast_vae`` is the same autoencoder object, so the run is exactly the one without it."""
    if fast_vae is vae:
        return autoencoder
    check_fast_vae(fast_vae, vae, model)
    return prepare_vae(fast_vae, model)


def prepare_vae(vae: Any, model: Any) -> ComfyVAE:
    """Load the VAE on its device (ComfyUI's memory management) and make it differentiable."""
    check_vae_matches_model(vae, model)
    comfy.model_management.load_models_gpu([vae.patcher])
    make_trainable_copy_of_weights(vae.first_stage_model)
    return ComfyVAE(vae, model.model.latent_format, vae.device)


def decode_latents(vae: Any, samples: torch.Tensor) -> torch.Tensor:
    """ComfyUI's own VAE decode (tiling fallback included) to an IMAGE batch (a video VAE's one-frame
    latents given the frame axis it needs, its frames flattened into the batch)."""
    images = vae.decode(with_frame_axis(samples, vae_time_axis(vae)))
    return images.reshape(-1, *images.shape[-3:]) if images.ndim > 4 else images


def show_text_on_node(text: str) -> None:
    """Show ``text`` on the running node in the editor (ComfyUI's progress text, 0.3.x and later);
    does nothing in a ComfyUI without it (the March-2024 copy) or outside a server's run."""
    try:
        import server
        from comfy_execution.utils import get_executing_context
    except ImportError:
        return
    instance = getattr(server.PromptServer, "instance", None)
    send = getattr(instance, "send_progress_text", None)
    context = get_executing_context()
    if send is not None and context is not None:
        send(text, context.node_id, getattr(instance, "client_id", None))


def save_images(images: torch.Tensor, filename_prefix: str) -> list[str]:
    """Save an IMAGE batch as PNGs in ComfyUI's output folder with its own Save Image node (the same
    files, names and metadata a user's Save Image writes); returns their paths within that folder."""
    import nodes

    saved = nodes.SaveImage().save_images(images, filename_prefix=filename_prefix)
    return [f"{item['subfolder']}/{item['filename']}".lstrip("/") for item in saved["ui"]["images"]]
