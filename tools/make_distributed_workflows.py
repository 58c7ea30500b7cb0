"""Write the ComfyUI-Distributed templates (issue 28) from the single-machine box-inpainting ones.

    .venv/bin/python tools/make_distributed_workflows.py   # then tools/make_workflows.py for the editor twins

For each of the demo model, SD 1.5 and SDXL, two API workflows in ``workflows/api/``:

* ``distributed_particles_<family>``: one photo; *Distributed Seed* gives every machine its own seed
  (the master the seed, worker k seed + k), each machine draws its particles, a *Distributed
  Collector* gathers them on the master (master first, then the workers in order), *Expect Images*
  refuses a short batch, *Particle Mean and Spread (images)* pools them;
* ``distributed_batch_<family>``: different photos per machine through *Distributed Value* (the demo's
  held-out crops by ``start``; a photo file name for SD), each measured with noise seeded by the photo
  itself, collected back in order.

The particles of one photo are coupled (the particle-mixture score), so they stay on one machine;
what spreads is seeds and photos. Deriving these from the single-machine templates keeps one source
of truth for the sampler settings.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from ui_workflow import nodes_of

API_DIR = Path(__file__).resolve().parents[1] / "workflows" / "api"
FAMILIES = ("demo", "sd15", "sdxl")
WORKERS = 2  # the templates' share maps and counts are for a master and two workers
DEMO_PHOTOS_PER_MACHINE = 3


def node_of(prompt: dict[str, Any], class_type: str) -> str:
    """The id of the prompt's one node of ``class_type``."""
    [key] = nodes_of(prompt, class_type)
    return key


def next_id(prompt: dict[str, Any]) -> str:
    return str(max(int(key) for key in prompt) + 1)


def add(prompt: dict[str, Any], class_type: str, **inputs: Any) -> str:
    key = next_id(prompt)
    prompt[key] = {"class_type": class_type, "inputs": inputs}
    return key


def saves_of(prompt: dict[str, Any], source: str) -> dict[int, str]:
    """The Save Image nodes fed by ``source``'s outputs: output index → node id."""
    return {node["inputs"]["images"][1]: key for key, node in prompt.items()
            if node["class_type"] == "SaveImage" and node["inputs"]["images"][0] == source}


def rename_outputs(prompt: dict[str, Any], old: str, new: str) -> None:
    for node in prompt.values():
        if node["class_type"] == "SaveImage":
            node["inputs"]["filename_prefix"] = node["inputs"]["filename_prefix"].replace(old, new)


def particles_workflow(family: str) -> dict[str, Any]:
    prompt = copy.deepcopy(json.loads((API_DIR / f"{family}_box_inpainting.json").read_text()))
    sampler, decode = node_of(prompt, "DWGF_Sampler"), node_of(prompt, "DWGF_ParticleDecode")
    if family == "demo":
        prompt[node_of(prompt, "DWGF_DemoHeldOutImages")]["inputs"]["count"] = 1  # one photo
    seed = add(prompt, "DistributedSeed", seed=prompt[sampler]["inputs"]["seed"])
    prompt[sampler]["inputs"]["seed"] = [seed, 0]
    collector = add(prompt, "DistributedCollector", images=[decode, 0], load_balance=False)
    expect = add(prompt, "DWGF_ExpectImages", images=[collector, 0],
                 images_per_machine=prompt[sampler]["inputs"]["particles"],
                 filename_prefix=f"dwgf_distributed_particles_{family}/partial")
    pooled = add(prompt, "DWGF_ParticleMeanAndSpread", particles=[expect, 0], particles_per_photo=0,
                 spread_scale="normalised (brightest pixel = white)")
    saves = saves_of(prompt, decode)
    prompt[saves[0]]["inputs"]["images"] = [expect, 0]
    prompt[saves[1]]["inputs"]["images"] = [pooled, 0]
    prompt[saves[2]]["inputs"]["images"] = [pooled, 1]
    rename_outputs(prompt, f"dwgf_{family}_box_inpainting" if family != "demo" else "dwgf_box_inpainting",
                   f"dwgf_distributed_particles_{family}")
    return prompt


def batch_workflow(family: str) -> dict[str, Any]:
    prompt = copy.deepcopy(json.loads((API_DIR / f"{family}_box_inpainting.json").read_text()))
    decode = node_of(prompt, "DWGF_ParticleDecode")
    if family == "demo":
        photos = node_of(prompt, "DWGF_DemoHeldOutImages")
        shares = {str(k): str(k * DEMO_PHOTOS_PER_MACHINE) for k in range(1, WORKERS + 1)}
        start = add(prompt, "DistributedValue", default_value="0",
                    worker_values=json.dumps({**shares, "_type": "INT"}))
        prompt[photos]["inputs"].update(start=[start, 0], count=DEMO_PHOTOS_PER_MACHINE)
        per_machine = DEMO_PHOTOS_PER_MACHINE
    else:
        photos = node_of(prompt, "LoadImage")
        names = {str(k): f"photo_{k + 1}.png" for k in range(1, WORKERS + 1)}
        name = add(prompt, "DistributedValue", default_value="photo_1.png", worker_values=json.dumps(names))
        prompt[photos]["inputs"]["image"] = [name, 0]
        per_machine = 1
    originals = add(prompt, "DistributedCollector", images=[photos, 0], load_balance=False)
    restored = add(prompt, "DistributedCollector", images=[decode, 1], load_balance=False)
    checked = {}
    for what, collector in (("clean", originals), ("restored", restored)):
        checked[what] = add(prompt, "DWGF_ExpectImages", images=[collector, 0], images_per_machine=per_machine,
                            filename_prefix=f"dwgf_distributed_batch_{family}/partial_{what}")
    for key in [k for k, node in prompt.items() if node["class_type"] == "SaveImage"]:
        del prompt[key]  # the per-machine pictures: only the collected batches are kept
    add(prompt, "SaveImage", images=[checked["clean"], 0],
        filename_prefix=f"dwgf_distributed_batch_{family}/1_photos")
    add(prompt, "SaveImage", images=[checked["restored"], 0],
        filename_prefix=f"dwgf_distributed_batch_{family}/2_dwgf_mean")
    return prompt


def main() -> None:
    for family in FAMILIES:
        for name, build in (("particles", particles_workflow), ("batch", batch_workflow)):
            path = API_DIR / f"distributed_{name}_{family}.json"
            path.write_text(json.dumps(build(family), indent=1, ensure_ascii=False) + "\n")
            print(f"wrote {path.relative_to(API_DIR.parents[1])}")


if __name__ == "__main__":
    main()
