"""Write the API templates of the newer flow-matching models (issue 27) from the Flux ones.

    .venv/bin/python tools/make_model_workflows.py [family ...]   # then tools/make_workflows.py for the twins

Z-Image, Qwen-Image and Flux.2 load the way ComfyUI's own examples load them: the diffusion model in
*Load Diffusion Model* (UNETLoader), the text encoder in *Load CLIP* (CLIPLoader, whose ``type`` picks
the tokenizer where the weights alone do not), the VAE in *Load VAE*. Everything else — the
Degradation Operator, the DWGF Sampler's 'fast' preset and 4 particles, 'least memory', Particle
Decode, the Save Image nodes — is the Flux template's, so the graphs stay one source of truth. The
fast path's tiny VAE is wired where ComfyUI 0.3.75's Load VAE offers one for that latent space
(taef1 for Z-Image, which uses Flux.1's VAE); it offers none for Qwen-Image's Wan 2.1 VAE or Flux.2's,
so those run the full VAE throughout.
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ui_workflow import nodes_of

API_DIR = Path(__file__).resolve().parents[1] / "workflows" / "api"
TASKS = ("box_inpainting", "mask_inpainting", "super_resolution_x4")


@dataclass(frozen=True)
class Family:
    """How one model family loads in ComfyUI 0.3.75 (the published file names)."""

    diffusion_model: str
    text_encoder: str
    clip_type: str
    vae: str
    guidance: float | None  # FluxGuidance's value for a guidance-distilled model, else None
    tiny_vae: str | None


FAMILIES = {
    "zimage": Family("z_image_turbo_bf16.safetensors", "qwen_3_4b.safetensors", "lumina2", "ae.safetensors",
                     None, "taef1"),
    "qwenimage": Family("qwen_image_fp8_e4m3fn.safetensors", "qwen_2.5_vl_7b_fp8_scaled.safetensors", "qwen_image",
                        "qwen_image_vae.safetensors", None, None),
    "flux2": Family("flux2_dev_fp8mixed.safetensors", "mistral_3_small_flux2_bf16.safetensors", "flux2",
                    "flux2-vae.safetensors", 4.0, None),
}


def model_workflow(name: str, family: Family, task: str) -> dict[str, Any]:
    prompt = copy.deepcopy(json.loads((API_DIR / f"flux_{task}.json").read_text()))
    [unet] = nodes_of(prompt, "UNETLoader")
    [clip] = nodes_of(prompt, "DualCLIPLoader")
    [sampler] = nodes_of(prompt, "DWGF_Sampler")
    [guidance] = nodes_of(prompt, "FluxGuidance")
    full_vae, tiny_vae = prompt[sampler]["inputs"]["vae"][0], prompt[sampler]["inputs"]["fast_vae"][0]
    prompt[unet]["inputs"]["unet_name"] = family.diffusion_model
    prompt[clip] = {"class_type": "CLIPLoader", "inputs": {"clip_name": family.text_encoder,
                                                           "type": family.clip_type, "device": "default"}}
    prompt[full_vae]["inputs"]["vae_name"] = family.vae
    if family.guidance is None:  # real CFG: the empty prompt goes to positive and negative (cfg 1: the reference)
        text = prompt[guidance]["inputs"]["conditioning"]
        prompt[sampler]["inputs"]["positive"] = text
        del prompt[guidance]
    else:
        prompt[guidance]["inputs"]["guidance"] = family.guidance
    if family.tiny_vae is None:
        del prompt[sampler]["inputs"]["fast_vae"]
        del prompt[tiny_vae]
    else:
        prompt[tiny_vae]["inputs"]["vae_name"] = family.tiny_vae
    for node in prompt.values():
        if node["class_type"] == "SaveImage":
            node["inputs"]["filename_prefix"] = node["inputs"]["filename_prefix"].replace("dwgf_flux_", f"dwgf_{name}_")
    return prompt


def main() -> None:
    for name in sys.argv[1:] or FAMILIES:
        for task in TASKS:
            path = API_DIR / f"{name}_{task}.json"
            path.write_text(json.dumps(model_workflow(name, FAMILIES[name], task), indent=1, ensure_ascii=False) + "\n")
            print(f"wrote {path.relative_to(API_DIR.parents[1])}")


if __name__ == "__main__":
    main()
