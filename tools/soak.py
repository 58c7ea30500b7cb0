"""Restorations in a row through one real ComfyUI server (issue 29, item 4): the soak.

A server that runs for days meets a stream of mixed prompts: different tasks, sizes and models
(the demo model's epsilon and flow-matching priors, a random-weight SD 1.5 checkpoint loaded by the
stock Load Checkpoint), cancels and bad inputs in between, from more than one client at once. The
soak sends such a stream and checks what a leak or a stale cache would break:

* every good prompt's image equals the one it gave alone on the same server (its *solo* run);
* every cancel ends that prompt as interrupted and every bad input fails with its own message;
* the server's resident memory (``/proc/PID/status`` VmRSS, sampled throughout) does not keep
  growing once every kind of prompt has run once;
* the queue is empty at the end and the server still answers.

``tests/test_soak.py`` runs a short stream in CI; ``bench/soak.py`` the long one for the README.
"""

from __future__ import annotations

import io
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from api_prompts import degradation_inputs, dwgf_sampler_inputs
from comfy_server import ComfyServer, PromptFailed, PromptRejected
from PIL import Image

SD15_CHECKPOINT = "random_sd15.safetensors"
# glibc's allocator raises its mmap threshold after the first large free, so a checkpoint loaded a
# second time comes from the heap, which it rarely gives back: the server's RSS then steps up by
# up to gigabytes as models come and go, live memory or not (measured: README, Reliability). A fixed
# threshold makes every large block an mmap that free() returns, so RSS follows live memory and a
# leak shows. The soak runs its server with it; bench/soak.py measures both.
STEADY_ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": "131072"}
SAMPLER = "4"  # the restoring node of every soak prompt
RESULT = "7"  # the Save Image of its result


@dataclass(frozen=True)
class SoakPrompt:
    """One prompt of the stream: ``good`` (its image is compared with the solo run), ``cancel``
    (interrupted at its first sampler step) or ``bad`` (must fail naming ``expect``)."""

    name: str
    prompt: dict[str, Any]
    kind: str = "good"
    expect: str = ""


# -- the prompts ---------------------------------------------------------------------------------
def _demo(prior: str = "epsilon") -> dict:
    return {"1": {"class_type": "DWGF_DemoModel", "inputs": {"prompt": "unconditional", "batch_size": 1,
                                                            "prior": prior}}}


def _crop(start: int, side: int | None = None, width: int | None = None) -> dict:
    nodes = {"2": {"class_type": "DWGF_DemoHeldOutImages", "inputs": {"which": "photos", "start": start, "count": 1}}}
    if side:
        nodes["8"] = nodes.pop("2")
        nodes["2"] = {"class_type": "ImageScale",
                      "inputs": {"image": ["8", 0], "upscale_method": "bilinear", "width": width or side,
                                 "height": side, "crop": "disabled"}}
    return nodes


def _restore(model: dict, image: dict, operator: str, sampler: dict, degradation: dict | None = None,
             psld: bool = False, vae: list | None = None) -> dict:
    """model (1) → image (2) → Degradation (3) → DWGF or PSLD Sampler (4) → Particle Decode (5) → Save (7)."""
    inputs = dwgf_sampler_inputs(**sampler)
    if vae:
        inputs["vae"] = vae
    if psld:
        inputs = {key: value for key, value in inputs.items() if key not in (
            "learning_rate", "prior_weight", "ae_weight", "decoder_noise", "memory")}
        inputs.update(omega=-1.0, gamma=-1.0)
    return {**model, **image,
            "3": {"class_type": "DWGF_DegradationOperator",
                  "inputs": degradation_inputs(["2", 0], operator, **(degradation or {}))},
            SAMPLER: {"class_type": "DWGF_PSLDSampler" if psld else "DWGF_Sampler", "inputs": inputs},
            "5": {"class_type": "DWGF_ParticleDecode",
                  "inputs": {"particles": [SAMPLER, 0], "vae": vae or ["1", 1], "paste_known_pixels": True,
                             "degradation": ["3", 0], "measurement": ["3", 1]}},
            RESULT: {"class_type": "SaveImage", "inputs": {"images": ["5", 1], "filename_prefix": "soak/mean"}}}


def _sd15() -> tuple[dict, dict]:
    """The random SD 1.5 checkpoint through Load Checkpoint and an empty prompt (node 6)."""
    model = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SD15_CHECKPOINT}},
             "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}}}
    conditioning = {"positive": ["6", 0], "negative": ["6", 0]}
    return model, conditioning


def good_prompts(sd15: bool = True, flow: bool = True) -> list[SoakPrompt]:
    """The distinct good prompts: tasks, sizes, priors and samplers a user mixes (``flow``: the demo's
    flow-matching prior too, which the March-2024 ComfyUI refuses)."""
    prompts = [
        SoakPrompt("demo box 32²", _restore(_demo(), _crop(0), "inpaint box (centre)", {"steps": 3, "seed": 1})),
        SoakPrompt("demo SR×4 32²", _restore(_demo(), _crop(1), "super-resolution avg-pool",
                                             {"steps": 3, "seed": 2})),
        SoakPrompt("demo random pixels 40×24", _restore(_demo(), _crop(2, 24, 40), "inpaint random pixels",
                                                        {"steps": 3, "seed": 3})),
        SoakPrompt("flow deblur 48²", _restore(_demo("flow matching"), _crop(3, 48), "gaussian blur",
                                               {"steps": 3, "seed": 4})),
        SoakPrompt("flow box 32², 3 particles", _restore(_demo("flow matching"), _crop(4), "inpaint box (centre)",
                                                         {"steps": 2, "particles": 3, "seed": 5})),
        SoakPrompt("demo PSLD box 32²", _restore(_demo(), _crop(5), "inpaint box (centre)",
                                                 {"steps": 3, "particles": 1, "seed": 6}, psld=True)),
        SoakPrompt("demo denoise 36×36 (canvas)", _restore(_demo(), _crop(6, 36), "denoise",
                                                           {"steps": 3, "seed": 7}, degradation={"sigma_y": 0.05})),
    ]
    if not flow:
        prompts = [prompt for prompt in prompts if not prompt.name.startswith("flow")]
    if sd15:
        model, conditioning = _sd15()
        prompt = _restore(model, _crop(7, 64), "super-resolution bicubic",
                          {"steps": 2, "particles": 1, "seed": 8, **conditioning}, vae=["1", 2])
        prompts.append(SoakPrompt("random SD 1.5 SR×4 64²", prompt))
    return prompts


def cancel_prompt(seed: int) -> SoakPrompt:
    """A long demo run the soak cancels at its first sampler step."""
    return SoakPrompt(f"cancel (seed {seed})", _restore(_demo(), _crop(seed % 8), "inpaint box (centre)",
                                                        {"steps": 400, "seed": 1000 + seed}), kind="cancel")


def bad_prompts() -> list[SoakPrompt]:
    """Inputs that must fail with their own message, each different from the good prompts."""
    mask_mismatch = _restore(_demo(), _crop(0), "inpaint mask", {"steps": 2, "seed": 11},
                             degradation={"mask": ["9", 0]})
    mask_mismatch["9"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 16, "height": 16}}
    contradiction = _restore(_demo(), _crop(1), "inpaint box (centre)", {"steps": 2, "seed": 12})
    contradiction["5"]["inputs"]["particles_per_image"] = 3
    return [
        SoakPrompt("mask of another size", mask_mismatch, "bad", "mask is 16x16 but the image is 32x32"),
        SoakPrompt("NaN cfg", _restore(_demo(), _crop(2), "inpaint box (centre)",
                                       {"steps": 2, "seed": 13, "cfg": float("nan")}), "bad", "cfg"),
        SoakPrompt("particles_per_image 3 of 2", contradiction, "bad", "particles_per_image"),
        SoakPrompt("a 1×1 image with a centre box", _restore(_demo(), _crop(3, 1), "inpaint box (centre)",
                                                             {"steps": 2, "seed": 14}), "bad", "box_fraction"),
    ]


def stream(count: int, sd15: bool = True, seed: int = 0, flow: bool = True) -> list[SoakPrompt]:
    """``count`` prompts: first one pass over every good and bad prompt and one cancel (the
    warm-up: each model loaded, each code path run once), then about 70 % good, 15 % cancels and
    15 % bad, shuffled so that no prompt follows itself within two places (ComfyUI would then serve
    it from its cache instead of running it)."""
    rng = random.Random(seed)
    good, bad = good_prompts(sd15, flow), bad_prompts()
    chosen = [*good, *bad, cancel_prompt(0)]
    rng.shuffle(chosen)
    while len(chosen) < count:
        draw = rng.random()
        candidate = (cancel_prompt(len(chosen)) if draw < 0.15 else rng.choice(bad) if draw < 0.3
                     else rng.choice(good))
        if candidate.name not in {p.name for p in chosen[-2:]}:
            chosen.append(candidate)
    return chosen[:count]


def warm_up_length(sd15: bool = True, flow: bool = True) -> int:
    """How many prompts at the head of :func:`stream` are its warm-up pass."""
    return len(good_prompts(sd15, flow)) + len(bad_prompts()) + 1


# -- running -------------------------------------------------------------------------------------
def result_image(server: ComfyServer, history: dict[str, Any]) -> np.ndarray:
    """The first image the result's Save Image node wrote."""
    (entry, *_) = history["outputs"][RESULT]["images"]
    return np.asarray(Image.open(io.BytesIO(server.view(entry))).convert("RGB")).astype(np.int16)


def rss_mb(pid: int) -> float:
    """Resident memory of a process from /proc (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@dataclass
class MemorySampler:
    """Samples the server's RSS every ``every`` seconds in a thread; ``mark`` notes an event's time."""

    pid: int
    every: float = 0.25
    samples: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), rss_mb(self.pid)))
            self._stop.wait(self.every)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def floors(self, start: float, end: float, slices: int = 10) -> list[float]:
        """The lowest RSS in each of ``slices`` equal time slices of [start, end]: the server's
        resident baseline, which a leak raises, without the models a prompt loads for a while
        (the SD 1.5 checkpoint comes and goes with ComfyUI's cache)."""
        width = (end - start) / slices
        found = [[mb for t, mb in self.samples if start + i * width <= t <= start + (i + 1) * width]
                 for i in range(slices)]
        return [min(values) for values in found if values]

    def peak(self, start: float, end: float) -> float:
        return max(mb for t, mb in self.samples if start <= t <= end)


@dataclass
class Outcome:
    prompt: SoakPrompt
    client: int
    status: str  # success, interrupted, failed, rejected
    message: str = ""
    mismatch: int = 0  # largest pixel difference to the solo run (good prompts)
    sampler_cached: bool = False
    seconds: float = 0.0
    position: int = 0
    ended: float = 0.0


def run_one(client: ComfyServer, item: SoakPrompt, index: int,
            solo: dict[str, np.ndarray] | None) -> Outcome:
    """Send one prompt as ``client`` and judge it (cancels interrupt their own prompt at its first step)."""
    started = time.monotonic()

    def cancel_at_first_step(event: dict) -> None:
        data = event.get("data", {})
        if item.kind == "cancel" and event["type"] == "progress" and not cancelled:
            cancelled.append(True)
            client.interrupt(data.get("prompt_id"))

    cancelled: list[bool] = []
    try:
        result = client.run(item.prompt, silence=600, on_event=cancel_at_first_step)
    except PromptFailed as failed:
        return Outcome(item, index, "failed", str(failed), seconds=time.monotonic() - started)
    except PromptRejected as rejected:
        return Outcome(item, index, "rejected", str(rejected), seconds=time.monotonic() - started)
    kinds = [event["type"] for event in result.events]
    cached = [node for event in result.events if event["type"] == "execution_cached"
              for node in event.get("data", {}).get("nodes", [])]
    status = "interrupted" if "execution_interrupted" in kinds else "success"
    outcome = Outcome(item, index, status, sampler_cached=SAMPLER in cached, seconds=time.monotonic() - started)
    if status == "success" and solo is not None:
        image = result_image(client, result.history)
        reference = solo[item.name]
        outcome.mismatch = 255 if image.shape != reference.shape else int(np.abs(image - reference).max())
    return outcome


def judge(outcome: Outcome) -> str:
    """'' when the outcome is what the prompt's kind asks for, else what went wrong."""
    item = outcome.prompt
    if item.kind == "good":
        if outcome.status != "success":
            return f"{item.name}: {outcome.status} {outcome.message[:200]}"
        if outcome.mismatch > 1:
            return f"{item.name}: differs from its solo run by {outcome.mismatch}/255"
    elif item.kind == "cancel" and outcome.status != "interrupted":
        return f"{item.name}: {outcome.status} instead of interrupted"
    elif item.kind == "bad" and (outcome.status not in ("failed", "rejected") or item.expect not in outcome.message):
        return f"{item.name}: {outcome.status} {outcome.message[:200]!r}, expected a failure naming {item.expect!r}"
    return ""


@dataclass
class SoakReport:
    prompts: int
    clients: int
    minutes: float
    warm_rss_mb: float
    end_rss_mb: float
    peak_rss_mb: float
    growth_mb: float
    problems: list[str]
    sampler_cached: int
    queue_left: int
    counts: dict[str, int]

    def summary(self) -> str:
        return (f"{self.prompts} prompts from {self.clients} clients in {self.minutes:.1f} min "
                f"({', '.join(f'{v} {k}' for k, v in sorted(self.counts.items()))}); server's idle RSS "
                f"after the warm-up pass {self.warm_rss_mb:.0f} MB, at the end {self.end_rss_mb:.0f} MB "
                f"(growth {self.growth_mb:+.0f} MB, peak {self.peak_rss_mb:.0f} MB); "
                f"mismatches and wrong outcomes: {len(self.problems)}; "
                f"sampler served from cache: {self.sampler_cached}; queue left: {self.queue_left}")


SETTLE_SECONDS = 12.0  # ComfyUI's prompt worker collects garbage after 10 s idle (gc_collect_interval)


def idle_rss(server: ComfyServer, memory: MemorySampler, seed: int) -> float:
    """The server's RSS at rest after one small demo prompt: that prompt's graph replaces whatever
    ComfyUI still held from earlier ones (the SD 1.5 checkpoint leaves its cache), so two readings
    compare like with like. Read after ComfyUI's own idle clean-up (``gc.collect`` 10 s after the
    last prompt), which frees models whose objects form reference cycles: the lowest sample over the
    last two seconds of SETTLE_SECONDS."""
    probe = _restore(_demo(), _crop(0), "inpaint box (centre)", {"steps": 1, "seed": 5000 + seed})
    server.run(probe, silence=600)
    time.sleep(SETTLE_SECONDS)
    settled = time.monotonic()
    time.sleep(2.0)
    return min(memory.floors(settled, time.monotonic(), slices=1))


def run_clients(server: ComfyServer, items: list[SoakPrompt], clients: int, solo: dict[str, np.ndarray],
                memory: MemorySampler, log: Callable[[str], None], first: int = 0) -> list[Outcome]:
    """``items`` sent by ``clients`` clients at once (client i sends items i, i + clients, …), each
    waiting for its prompt before sending the next."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def client_loop(index: int) -> None:
        client = server.client()
        for position in range(index, len(items), clients):
            outcome = run_one(client, items[position], index, solo)
            outcome.position, outcome.ended = first + position, time.monotonic()
            with lock:
                outcomes.append(outcome)
                log(f"[{first + len(outcomes)}] client {index}: {outcome.prompt.name}: {outcome.status} "
                    f"({outcome.seconds:.1f} s, RSS {memory.samples[-1][1]:.0f} MB)")

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def soak(server: ComfyServer, count: int, clients: int = 2, sd15: bool = True, seed: int = 0,
         log: Callable[[str], None] = print, flow: bool = True) -> SoakReport:
    """Every good prompt alone (their solo images); the stream's warm-up pass (every prompt of the
    pool once, from ``clients`` clients at once); the server's idle RSS; the rest of the ``count``
    prompts from the clients at once; the idle RSS again. RSS growth = the second reading minus the
    first (:func:`idle_rss`). glibc's allocator keeps part of what a model's *second* load took
    (after the first, its mmap threshold rises above most weight tensors, so they come from the heap,
    which it rarely gives back; measured +1.7 GB for the SD 1.5 checkpoint, once): the solo pass and
    the warm-up pass load every model twice, so what the stream adds after them is what a leak adds."""
    started = time.monotonic()
    solo: dict[str, np.ndarray] = {}
    with MemorySampler(server.process.pid) as memory:
        for item in good_prompts(sd15, flow)[::-1]:  # SD 1.5 first: the warm-up pass loads it a second time
            result = server.run(item.prompt, silence=600)
            solo[item.name] = result_image(server, result.history)
            log(f"solo: {item.name}")
        items = stream(count, sd15, seed, flow)
        head = min(warm_up_length(sd15, flow), len(items) - 1)
        outcomes = run_clients(server, items[:head], clients, solo, memory, log)
        warm_rss = idle_rss(server, memory, 0)
        warm = time.monotonic()
        outcomes += run_clients(server, items[head:], clients, solo, memory, log, first=head)
        ended = time.monotonic()
        end_rss = idle_rss(server, memory, 1)
    queue = server.get_json("/queue")
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.prompt.kind] = counts.get(outcome.prompt.kind, 0) + 1
    return SoakReport(
        prompts=len(outcomes), clients=clients, minutes=(ended - started) / 60,
        warm_rss_mb=warm_rss, end_rss_mb=end_rss, peak_rss_mb=memory.peak(warm, ended),
        growth_mb=end_rss - warm_rss,
        problems=[problem for outcome in outcomes if (problem := judge(outcome))],
        sampler_cached=sum(o.sampler_cached for o in outcomes if o.prompt.kind == "good"),
        queue_left=len(queue.get("queue_running", [])) + len(queue.get("queue_pending", [])),
        counts=counts)


def write_sd15_checkpoint(folder: Path) -> Path:
    """The random SD 1.5 checkpoint, written by a separate process (so the caller does not hold
    the networks): ``tools/sd_architectures.py``."""
    import shutil
    import subprocess
    import sys

    path = folder / SD15_CHECKPOINT
    if not path.exists():
        script = Path(__file__).resolve().parent / "sd_architectures.py"
        written = subprocess.run([sys.executable, str(script), "sd15", str(path)], capture_output=True, text=True)
        if written.returncode != 0:
            path.unlink(missing_ok=True)
            free_gb = shutil.disk_usage(folder).free / 2**30
            raise RuntimeError(f"writing the random SD 1.5 checkpoint ({path}, about 2.1 GB; {free_gb:.1f} GB free "
                               f"there) failed with exit status {written.returncode}:\n{written.stderr[-3000:]}")
    return path
