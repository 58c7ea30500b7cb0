"""The pack under ComfyUI-Distributed: a master and two CPU workers on loopback, real processes (issue 28).

ComfyUI-Distributed comes from its snapshot in ``../shared/vendor/`` (``tools/distributed.py`` unpacks it
into a temporary folder); nothing of it is in the project. Every image a worker returns must equal
the single-server run of the same prompt and seed to 1/255 (the collector carries images as 8-bit
PNGs), in the collector's order (master, then worker 1, worker 2), and a worker killed mid-run must
give a clear error on the master with the images that did arrive saved.
"""

from __future__ import annotations

import copy
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

pytestmark = [pytest.mark.server, pytest.mark.slow]

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows" / "api"
ONE_STEP = 1.0 / 255 + 1e-6


def template(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


def node_id(prompt: dict, class_type: str, index: int = 0) -> str:
    return [key for key, node in prompt.items() if node["class_type"] == class_type][index]


def pictures(server, result, save_node: str) -> np.ndarray:
    """A Save Image node's files, in order, as float arrays in [0, 1]."""
    from PIL import Image

    entries = result.history["outputs"][save_node]["images"]
    return np.stack([np.asarray(Image.open(server.output_dir / e["subfolder"] / e["filename"]).convert("RGB"),
                                dtype=np.float64) / 255 for e in entries])


def save_fed_by(prompt: dict, source: str) -> str:
    return next(key for key, node in prompt.items()
                if node["class_type"] == "SaveImage" and node["inputs"]["images"][0] == source)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from distributed import Cluster, snapshot

    if snapshot() is None:
        pytest.skip("no ComfyUI-Distributed snapshot in ../shared/vendor/ (see its README.md)")
    with Cluster(workers=2, workdir=tmp_path_factory.mktemp("cluster")) as running:
        if "DistributedCollector" not in running.master.get_json("/object_info"):
            pytest.skip("ComfyUI-Distributed did not load in this ComfyUI:\n" + running.master.log_tail(20))
        yield running


def test_the_distributed_templates_are_valid_and_their_editor_twins_match(cluster) -> None:
    """With ComfyUI-Distributed's node definitions (the master's /object_info): each API template
    passes the structural validator and its editor twin converts to it."""
    from make_workflows import template_names
    from ui_workflow import ui_to_api, validate_prompt

    object_info = cluster.master.get_json("/object_info")
    names = [name for name in template_names() if name.startswith("distributed_")]
    assert len(names) == 6
    for name in names:
        api = template(name)
        assert validate_prompt(api, object_info) == [], name
        ui = json.loads((WORKFLOWS.parent / f"{name}.json").read_text())
        assert ui_to_api(ui, object_info) == api, name


@pytest.fixture
def queueing(cluster):
    """The cluster, where ComfyUI-Distributed's queue works with this ComfyUI."""
    from comfyui_env import comfyui_root, is_comfyui_2024

    if is_comfyui_2024(comfyui_root()):
        pytest.skip("ComfyUI-Distributed a91f9fb loads on the March-2024 ComfyUI, but its /distributed/queue calls "
                    "the newer validate_prompt(prompt_id, prompt, partial) (seen: HTTP 400 'validate_prompt() takes "
                    "1 positional argument but 3 were given'); its templates are still checked above")
    return cluster


def test_each_worker_draws_its_own_particles_and_the_master_pools_them(queueing) -> None:
    cluster = queueing
    prompt = template("distributed_particles_demo")
    result = cluster.run(prompt, timeout=900)
    expect, pooled = node_id(prompt, "DWGF_ExpectImages"), node_id(prompt, "DWGF_ParticleMeanAndSpread")
    particles = pictures(cluster.master, result, save_fed_by(prompt, expect))
    assert particles.shape[0] == 12  # 4 particles x (master + 2 workers)
    # the record of which machine and seed made which image, in the master's history
    assert result.history["outputs"][expect]["text"] == [
        "images 1-4: the master, seed 0", "images 5-8: worker 1, seed 1", "images 9-12: worker 2, seed 2"]
    # the single-server runs of the seeds the machines got: master 0, worker 1 seed 1, worker 2 seed 2
    seed_node = node_id(prompt, "DistributedSeed")
    for machine in range(3):
        alone = copy.deepcopy(prompt)
        alone[seed_node]["inputs"]["seed"] = machine
        run_alone = cluster.master.run(alone, timeout=600)
        reference = pictures(cluster.master, run_alone, save_fed_by(alone, expect))
        assert run_alone.history["outputs"][expect]["text"] == [
            f"images 1-4: this machine (queued without workers), seed {machine}"]
        assert reference.shape[0] == 4  # queued without workers: one machine, and Expect Images knows it
        assert np.abs(particles[4 * machine: 4 * machine + 4] - reference).max() <= ONE_STEP
    assert np.abs(particles[:4] - particles[4:8]).max() > 0.1  # the workers really drew other particles
    mean = pictures(cluster.master, result, save_fed_by(prompt, pooled))[0]
    assert np.abs(mean - particles.mean(0)).max() <= ONE_STEP  # the pool of all 12


def test_photos_split_over_the_workers_come_back_in_order_as_their_single_server_runs(queueing) -> None:
    cluster = queueing
    prompt = template("distributed_batch_demo")
    result = cluster.run(prompt, timeout=900)
    photos_check, restored_check = (node_id(prompt, "DWGF_ExpectImages", k) for k in (0, 1))
    photos = pictures(cluster.master, result, save_fed_by(prompt, photos_check))
    restored = pictures(cluster.master, result, save_fed_by(prompt, restored_check))
    assert photos.shape[0] == restored.shape[0] == 9
    held_out = node_id(prompt, "DWGF_DemoHeldOutImages")
    for start in (0, 3, 6):
        alone = copy.deepcopy(prompt)
        alone[held_out]["inputs"]["start"] = start  # what Distributed Value gave that machine
        reference = cluster.master.run(alone, timeout=600)
        own_photos = pictures(cluster.master, reference, save_fed_by(alone, photos_check))
        own_restored = pictures(cluster.master, reference, save_fed_by(alone, restored_check))
        # the order: master's crops 0-2, worker 1's 3-5, worker 2's 6-8
        assert np.abs(photos[start:start + 3] - own_photos).max() <= ONE_STEP
        assert np.abs(restored[start:start + 3] - own_restored).max() <= ONE_STEP


def test_a_worker_whose_graph_fails_is_a_clear_error_on_the_master(queueing) -> None:
    """A node error on one worker (here its share of held-out crops starts past the end of the set)
    used to pass on the master as a success with fewer images."""
    from comfy_server import PromptFailed

    cluster = queueing
    prompt = template("distributed_batch_demo")
    value = node_id(prompt, "DistributedValue")
    prompt[value]["inputs"]["worker_values"] = json.dumps({"1": "3", "2": "5000", "_type": "INT"})
    with pytest.raises(PromptFailed) as failure:
        cluster.run(prompt, timeout=600)
    message = str(failure.value)
    assert "only 6 of the 9 expected images arrived" in message, message
    assert "3 per machine from the master and workers 1, 2" in message


def test_a_worker_killed_mid_run_is_a_clear_error_with_the_arrived_images_saved(queueing) -> None:
    cluster = queueing
    from comfy_server import PromptFailed

    prompt = template("distributed_particles_demo")
    prompt[node_id(prompt, "DistributedSeed")]["inputs"]["seed"] = 7  # not cached from the first test
    victim = cluster.worker_servers[1]  # (the last test of the module: the worker stays dead)
    killer = threading.Timer(3.0, victim.process.kill)
    killer.start()
    started = time.monotonic()
    try:
        with pytest.raises(PromptFailed) as failure:
            cluster.run(prompt, timeout=600)
    finally:
        killer.cancel()
    message = str(failure.value)
    assert "only 8 of the 12 expected images arrived" in message, message
    assert "4 per machine from the master and workers 1, 2" in message and "saved" in message
    saved = sorted((cluster.master.output_dir / "dwgf_distributed_particles_demo").glob("partial_*.png"))
    assert len(saved) == 8  # the master's 4 and worker 1's 4: nothing that finished is lost
    assert cluster.master.alive() and time.monotonic() - started < 300
