"""Which diffusion models DWGF and PSLD can use, decided from what a loaded model says about itself.

ComfyUI loads some 65 model families (``comfy.supported_models``); the samplers run on image models
whose noise is one of the two processes the method is written for, in a latent space the pack can
decode and differentiate through. Nothing here looks at a family's name: the decision reads the
facts :func:`nodes.comfy_adapter.model_facts` collects from the model object (its latent format, its
``model_type`` and sampling object, its config's flags and channel counts), so a family ComfyUI adds
later is judged by the same rules. The first failing rule is the refusal's reason; every refusal names
the family, says why, and what to connect instead. ``tools/model_support_table.py`` writes the table.
"""

from __future__ import annotations

from dataclasses import dataclass

# The latent spaces of the 8x image autoencoders: SD 1.x/2.x and SDXL (4 channels; also AuraFlow, PixArt,
# Hunyuan-DiT) and SD3 / Flux.1 (16 channels; also Lumina 2, Z-Image, Chroma, HiDream, OmniGen2). A model in
# one of them must get an 8x VAE (``comfy_adapter.model_vae_downscale``); other latent spaces take their VAE's
# own factor (ComfyUI's latent formats do not record one).
SD_VAE_LATENT_CHANNELS = (4, 16)
# The latent spaces the pack decodes, by dimensions and channels (issue 27): besides the 8x ones, Flux.2's 128
# channels (its x16 VAE's 2x2 patches of 32) and HunyuanImage 2.1's 64 (a x32 VAE), both images; and the
# 16-channel latents of Wan 2.1's causal video VAE, one image being one latent frame (Qwen-Image). The adapter
# reads each VAE's factor, channels and time axis off the VAE object itself.
HANDLED_LATENT_CHANNELS = {2: (4, 16, 64, 128), 3: (16,)}
# Models whose latents have a time axis only because their VAE is a video VAE: the network makes one image
# (one latent frame). ComfyUI records nothing that tells such a network from a video network on the same
# latents (Qwen-Image and Wan 2.1 text-to-video both have Wan21 16-channel 3-D latents, rectified flow, 16
# channels in and out), so this is the one rule that reads a BaseModel class; every other model with a time
# axis is a video model and refused.
IMAGE_MODELS_ON_VIDEO_VAES = ("QwenImage",)
DISCRETE_KINDS = ("EPS", "V_PREDICTION")  # ComfyUI's ModelType names for discrete-time eps/v models
FLOW_KINDS = ("FLOW", "FLUX")  # SD3 / AuraFlow-style discrete flow, and Flux's continuous shift

REQUIREMENT = ("DWGF and PSLD need a discrete-time eps- or v-prediction latent diffusion model (SD 1.x, SD 2.x, "
               "SDXL) or a rectified-flow model (SD3, Flux.1, Flux.2, Chroma, Z-Image, Lumina 2, Qwen-Image, "
               "HunyuanImage 2.1)")
USE_INSTEAD = ("connect an image model's MODEL and VAE instead: SD 1.x/2.x, SDXL, SD3/3.5, Flux.1, Flux.2, Chroma, "
               "Z-Image, Lumina 2, Qwen-Image or HunyuanImage 2.1 "
               "(Load Checkpoint, or Load Diffusion Model + Load VAE)")

# Why a prediction / noise-level pair is outside the method, by ComfyUI's ModelType name.
PARAMETRISATION_REASONS = {
    "EDM": "it runs on continuous-time EDM noise levels (ModelSamplingContinuousEDM), not a 1000-step table",
    "V_PREDICTION_EDM": "it is a v-prediction model on continuous-time EDM noise levels "
                        "(ModelSamplingContinuousEDM), not a 1000-step table",
    "V_PREDICTION_CONTINUOUS": "it predicts v on continuous-time noise levels (ModelSamplingContinuousV)",
    "IMG_TO_IMG": "it is an image-to-image predictor (IMG_TO_IMG: one pass from an input image to an "
                  "output such as depth or normals), not a generative prior over images",
    "FLOW_COSMOS": "its rectified flow is Cosmos's own parametrisation (COSMOS_RFLOW, sigma rescaled by its "
                   "sigma_data), which the pack's flow update does not use",
    "STABLE_CASCADE": "it is a stage of a cascade (StableCascadeSampling): its latents are the next stage's "
                      "input, not one image autoencoder's latents the pack can decode",
}


@dataclass(frozen=True)
class ModelFacts:
    """What the checks read off a loaded model (collected by ``comfy_adapter.model_facts``)."""

    family: str  # the model config's class in comfy.supported_models, e.g. "SDXL"
    model_class: str  # the BaseModel subclass, e.g. "SDXL_instructpix2pix"
    kind: str  # ComfyUI's ModelType name: EPS, V_PREDICTION, FLOW, FLUX, EDM, ...
    noise_levels: str  # the sampling object's noise-level class, e.g. "ModelSamplingDiscrete"
    discrete_table: bool  # a discrete table of >= 2 sigmas (ModelSamplingDiscrete or a subclass)
    rectified_flow: bool  # ComfyUI's CONST parametrisation with a time table (percent_to_sigma)
    latent_format: str  # the latent format's class, e.g. "SDXL"
    latent_channels: int
    latent_dimensions: int  # 2 for images; 3 when the latents have a time axis; 1 for sequences
    audio: bool  # the config's "audio_model" flag
    input_channels: int | None  # the network's input channels per latent pixel (config in_channels)
    output_channels: int | None  # its output channels (config out_channels)
    concat_keys: tuple[str, ...]  # the extra inputs ComfyUI concatenates (inpainting: mask, masked_image)


@dataclass(frozen=True)
class Support:
    """The verdict on one model: ``status`` is "runs (discrete)", "runs (flow)" or "refused"."""

    status: str
    reason: str  # why it is refused, or how it runs
    instead: str = ""  # what to connect instead (refusals)
    requirement: str = ""  # what the method needs, when the reason is the model's parametrisation

    @property
    def runs(self) -> bool:
        return self.status != "refused"


def extra_image_input(facts: ModelFacts) -> str | None:
    """What the network's extra input channels are for: ``"mask"`` (an inpainting model: with no mask
    given ComfyUI fills "generate everything" and a blank image itself, so it is an ordinary prior),
    ``"image"`` (an edit, upscale, novel-view, video or control model: it needs an image the samplers do not
    supply), or ``None`` (no extra input). The counts are the config's, per latent pixel, as ComfyUI's own
    concatenation decides (``BaseModel.set_inpaint`` keys; Flux's ``concat_cond``: more than twice the
    output channels means image + mask)."""
    inputs, outputs = facts.input_channels, facts.output_channels
    extra = inputs - outputs if isinstance(inputs, int) and isinstance(outputs, int) and inputs > outputs else 0
    if "mask" in facts.concat_keys or (extra and extra > outputs):
        return "mask"
    if extra or facts.concat_keys:
        return "image"
    return None


def classify(facts: ModelFacts) -> Support:
    """Run or refuse, and why (the first failing rule)."""
    if facts.audio:
        return Support("refused", "it is an audio model (its config's audio_model flag): it makes sound, not "
                       "images", USE_INSTEAD)
    if facts.latent_dimensions == 1:
        return Support("refused", f"its latents ({facts.latent_format}) are a 1-D sequence (3-D shape or audio "
                       "latents), not an image", USE_INSTEAD)
    if facts.latent_dimensions == 3 and facts.model_class not in IMAGE_MODELS_ON_VIDEO_VAES:
        return Support("refused", f"its latents ({facts.latent_format}) have a time axis and it is a video model: "
                       "the pack restores one image, and runs models with a time axis only where the network "
                       "makes one image on a video VAE's one-frame latents (Qwen-Image on Wan 2.1's)", USE_INSTEAD)
    if facts.latent_dimensions not in (2, 3):
        return Support("refused", f"its latents have {facts.latent_dimensions} dimensions, not an image's 2",
                       USE_INSTEAD)
    discrete = facts.kind in DISCRETE_KINDS and facts.discrete_table
    flow = facts.kind in FLOW_KINDS and facts.rectified_flow
    if not (discrete or flow):
        reason = PARAMETRISATION_REASONS.get(
            facts.kind, f"it has {facts.kind} prediction on {facts.noise_levels} noise levels")
        return Support("refused", reason, USE_INSTEAD, requirement=REQUIREMENT)
    if facts.latent_channels == 3:
        return Support("refused", "it works on pixels directly (a 3-channel pixel-space 'latent', no "
                       "autoencoder), which the pack does not handle yet", USE_INSTEAD)
    if facts.latent_channels not in HANDLED_LATENT_CHANNELS[facts.latent_dimensions]:
        return Support("refused", f"its latent space ({facts.latent_format}, {facts.latent_channels} channels) "
                       "is not one the pack decodes yet: it handles the 4-channel (SD 1.x/2.x, SDXL) and "
                       "16-channel (SD3, Flux.1) latents of 8x image autoencoders, Flux.2's 128-channel and "
                       "HunyuanImage 2.1's 64-channel ones, and Wan 2.1's one-frame latents", USE_INSTEAD)
    if extra_image_input(facts) == "image":
        return Support("refused", f"its network takes an input image besides the latent ({facts.input_channels} "
                       f"input channels for {facts.output_channels} latent ones: an edit, upscale, novel-view or "
                       "control model), which the samplers do not supply",
                       "use the text-to-image model of the same family instead (for super-resolution, the "
                       "Degradation Operator's super-resolution with it)")
    how = "rectified flow" if flow else f"discrete {facts.kind.lower().replace('_', '-')}"
    note = " (an inpainting model: ComfyUI fills 'generate everything' when no mask is given)" \
        if extra_image_input(facts) == "mask" else ""
    if facts.latent_dimensions == 3:
        note += " (one latent frame of a video VAE)"
    return Support("runs (flow)" if flow else "runs (discrete)",
                   f"{how} on {facts.noise_levels}, {facts.latent_channels}-channel {facts.latent_format} "
                   f"latents{note}")


def refusal_message(facts: ModelFacts, support: Support) -> str:
    """The sentence a refused model gets (a DWGFInputError): the family, why, and what to use instead."""
    return (f"model: this MODEL is ComfyUI's {facts.family} (a {facts.model_class} with {facts.kind} prediction "
            f"and {facts.noise_levels} noise levels); DWGF and PSLD cannot use it: {support.reason}"
            f"{'; ' + support.requirement if support.requirement else ''}. "
            f"{support.instead[:1].upper()}{support.instead[1:]}.")
