"""Out of memory part-way through a run, through a real ComfyUI server (issue 29, item 5).

The memory guard refuses a run that would not fit in what the machine reports free (available RAM
on the CPU), and in what a limit on the server process leaves: an address-space limit, what
``ulimit -v`` sets (``RLIMIT_AS``), and a cgroup's memory limit (a container's). A run the guard
does not check (``memory_check`` off) crosses the address-space limit part-way instead. That must
be a prompt error naming the run, PyTorch's words and the fix; the server must live, release the
run's memory and run the next prompt. The limit is set on the running server a fixed 1 GiB above
its own warm footprint, so the test does not depend on the machine's speed or size: a small prompt
needs about 0.1 GiB more, the runs below several GiB (the README's Reliability section has the
numbers). Under a cgroup limit the kernel would kill the server: the guard must refuse first.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_reliability import WORKING_SIDE, good_prompt, held_out, restoration

pytestmark = pytest.mark.server

resource = pytest.importorskip("resource", reason="the resource module (process limits) is POSIX-only")
if not hasattr(resource, "prlimit") or not Path("/proc/self/status").is_file():
    pytest.skip("setting a running server's address-space limit needs Linux (prlimit, /proc)", allow_module_level=True)

HEADROOM = 2**30  # the limit above the warm server's address space
MIB = 2**20
FASTEST = "fastest (all particles at once)"
RETAINED = 0.3  # at most this part of the failed run's rise in VmRSS may stay after the next good prompt
SEEDS = iter(range(100, 1000))  # a fresh seed per good prompt, so its sampler really runs (no cached output)


def proc_status(pid: int) -> dict[str, int]:
    """VmSize, VmRSS, ... of a process in bytes, Threads as a count."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if key.startswith("Vm") or key == "Threads":
            fields[key] = int(parts[0]) * (1024 if parts[-1] == "kB" else 1)
    return fields


class PeakRss:
    """The largest VmRSS of a process while the context is open (sampled every 20 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, proc_status(self.pid)["VmRSS"])
            except (OSError, KeyError):
                return
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """A server warmed by one good prompt, then limited to its address space + HEADROOM."""
    from comfy_server import ComfyServer

    with ComfyServer(workdir=tmp_path_factory.mktemp("out-of-memory")) as server:
        server.run(good_prompt(seed=next(SEEDS)), silence=300)
        pid = server.process.pid
        warm = proc_status(pid)
        limit = warm["VmSize"] + HEADROOM
        resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))
        print(f"\nserver warm: VmSize {warm['VmSize'] / MIB:.0f} MiB, VmRSS {warm['VmRSS'] / MIB:.0f} MiB, "
              f"{warm['Threads']} threads; RLIMIT_AS {limit / MIB:.0f} MiB", file=sys.stderr)
        server.address_space_limit = limit
        yield server


def settled_rss(pid: int, target: float, wait: float = 60.0) -> int:
    """VmRSS once it is below ``target``, or after ``wait`` seconds. The pack releases a failed run's
    tensors at once; what ComfyUI itself still holds of the failed prompt (its sampling frames, kept by
    the exception's traceback: the noise and latents, 256 MiB at 2048²) goes at its idle collection,
    every 10 s (the March-2024 copy; 0.3.75 frees it before the next prompt)."""
    deadline = time.monotonic() + wait
    while (rss := proc_status(pid)["VmRSS"]) >= target and time.monotonic() < deadline:
        time.sleep(0.5)
    return rss


def require_limit(server) -> None:
    """Never queue a run that needs far more than the machine has unless the limit is in force."""
    assert server.alive()
    assert resource.prlimit(server.process.pid, resource.RLIMIT_AS) == (server.address_space_limit,) * 2


def scaled(side: int, sampler: dict) -> dict:
    """The held-out photo scaled to side x side, restored by the DWGF Sampler with ``sampler``'s inputs."""
    image = {"2": {"class_type": "ImageScale", "inputs": {"image": ["8", 0], "upscale_method": "bilinear",
                                                          "width": side, "height": side, "crop": "disabled"}},
             "8": held_out()["2"]}
    return restoration(image, ["2", 0], sampler={"steps": 2, "seed": 3, **sampler})


def psld(prompt: dict) -> dict:
    """The same graph with the PSLD Sampler in place of the DWGF Sampler."""
    inputs = {k: v for k, v in prompt["4"]["inputs"].items()
              if k not in ("learning_rate", "prior_weight", "ae_weight", "decoder_noise", "memory")}
    prompt["4"] = {"class_type": "DWGF_PSLDSampler", "inputs": {**inputs, "omega": -1.0, "gamma": -1.0}}
    return prompt


def out_of_memory(server, prompt: dict) -> str:
    """The message of a prompt that runs out of memory; then the server must be alive, have released
    the run's memory and run a good prompt."""
    from comfy_server import PromptFailed

    require_limit(server)
    pid = server.process.pid
    before = proc_status(pid)["VmRSS"]
    with PeakRss(pid) as peak, pytest.raises(PromptFailed) as caught:
        server.run(prompt, silence=300)
    assert server.alive(), server.log_tail()
    answered = server.run(good_prompt(seed=next(SEEDS)), silence=300)
    assert answered.history["status"]["status_str"] == "success"
    assert peak.peak - before > 200 * MIB, "the run should have taken memory before it failed"
    after = settled_rss(pid, before + RETAINED * (peak.peak - before))
    print(f"VmRSS before {before / MIB:.0f} MiB, peak {peak.peak / MIB:.0f}, after the next good prompt "
          f"{after / MIB:.0f}", file=sys.stderr)
    assert after - before < RETAINED * (peak.peak - before), "the failed run's memory should be released"
    assert caught.value.details.get("exception_type", "").endswith("DWGFOutOfMemoryError")
    return str(caught.value)


def test_a_run_the_guard_would_refuse_fails_as_a_prompt_error_with_memory_check_off(limited) -> None:
    """2048² with 4 particles: the guard asks for over 1000 GiB; switched off, the run is stopped by
    the allocation that fails."""
    message = out_of_memory(limited, scaled(2048, {"particles": 4, "memory_check": False}))
    assert "memory: ran out of memory while restoring a 2048x2048 image with 4 particles" in message
    assert f"in memory mode '{FASTEST}' on the CPU" in message
    assert "PyTorch said: " in message and "DefaultCPUAllocator: can't allocate memory" in message
    assert "memory_check was off" in message and "memory_check on" in message
    assert "'less memory (one particle at a time)' or 'least memory" in message
    assert "fewer particles" in message and "fast_vae" in message and "a smaller image" in message
    assert "has been released" in message


def refused(server, prompt: dict) -> str:
    """The message of a prompt the memory guard refuses: before the sampler reports any progress,
    with the server alive and running the next good prompt."""
    from comfy_server import PromptFailed

    events: list[dict] = []
    with pytest.raises(PromptFailed) as caught:
        server.run(prompt, silence=300, on_event=events.append)
    assert server.alive(), server.log_tail()
    assert caught.value.details.get("exception_type", "").endswith("DWGFInputError"), caught.value
    assert not [e for e in events if e["type"] == "progress" and e["data"].get("node") in (None, "4")], \
        "the guard should refuse before the sampler's first iteration"
    answered = server.run(good_prompt(seed=next(SEEDS)), silence=300)
    assert answered.history["status"]["status_str"] == "success"
    print(f"refused: {caught.value}", file=sys.stderr)
    return str(caught.value)


def test_the_guard_sees_the_address_space_limit_and_refuses_before_any_work(limited) -> None:
    """WORKING_SIDE² with 4 particles needs about 3.3 GiB; the machine has more RAM free, but the
    address-space limit leaves about 1 GiB: the guard refuses and says which limit bound it."""
    require_limit(limited)
    message = refused(limited, scaled(WORKING_SIDE, {"particles": 4}))
    assert f"restoring a {WORKING_SIDE}x{WORKING_SIDE} image with 4 particles in memory mode '{FASTEST}' needs" \
        in message
    assert "free under the address-space limit (ulimit -v " in message and "of address space in use)" in message
    assert "What fits: " in message and "memory_check to false" in message


def test_psld_runs_out_of_memory_the_same_way(limited) -> None:
    prompt = psld(scaled(WORKING_SIDE, {"particles": 4, "memory_check": False}))
    message = out_of_memory(limited, prompt)
    assert f"restoring a {WORKING_SIDE}x{WORKING_SIDE} image with 4 particles in memory mode 'all samples at once'" \
        in message
    assert "can't allocate memory" in message and "memory_check was off" in message
    assert "fewer particles" in message and "fast_vae" not in message


def own_memory_cgroup() -> Path | None:
    """This process's group in a cgroup-v1 memory hierarchy (mounted at /sys/fs/cgroup/memory), if any."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            folder = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            return folder if (folder / "memory.limit_in_bytes").is_file() else None
    return None


@contextlib.contextmanager
def memory_cgroup():
    """A new cgroup-v1 memory group below this process's own, removed afterwards; skips where none
    can be made (cgroup v2 only: its memory controller has to be delegated; no rights)."""
    parent = own_memory_cgroup()
    if parent is None:
        pytest.skip("no cgroup-v1 memory hierarchy here (on cgroup v2 a child group's memory controller needs "
                    "delegation, which a test cannot count on)")
    group = parent / f"dwgf-oom-test-{os.getpid()}"
    try:
        group.mkdir()
    except OSError as error:
        pytest.skip(f"cannot create a memory cgroup under {parent}: {error}")
    try:
        yield group
    finally:
        for _ in range(100):  # the server's exit reaches the group a moment later
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)
        else:
            print(f"could not remove {group}", file=sys.stderr)


def test_the_guard_sees_a_cgroup_memory_limit_and_the_server_survives(tmp_path) -> None:
    """A container's memory limit: crossing it, the kernel kills the server (exit -9, no Python error;
    measured, see the README). The server runs in a cgroup limited to its warm usage + HEADROOM: the
    guard must refuse WORKING_SIDE² with 4 particles naming the limit, and the server must live on."""
    from comfy_server import ComfyServer

    with memory_cgroup() as group, pytest.MonkeyPatch.context() as patch:
        def join_group() -> None:  # in the server's process, before ComfyUI starts: all it uses counts
            (group / "cgroup.procs").write_text(str(os.getpid()))

        patch.setattr(subprocess, "Popen", functools.partial(subprocess.Popen, preexec_fn=join_group))
        with ComfyServer(workdir=tmp_path) as server:
            patch.undo()
            server.run(good_prompt(seed=next(SEEDS)), silence=300)
            pid = server.process.pid
            assert str(pid) in (group / "cgroup.procs").read_text().split()
            usage = int((group / "memory.usage_in_bytes").read_text())
            limit = usage + HEADROOM
            (group / "memory.limit_in_bytes").write_text(str(limit))
            warm = proc_status(pid)
            print(f"\nserver warm in {group.name}: usage {usage / MIB:.0f} MiB, VmRSS {warm['VmRSS'] / MIB:.0f} MiB; "
                  f"memory.limit_in_bytes {limit / MIB:.0f} MiB", file=sys.stderr)
            try:
                message = refused(server, scaled(WORKING_SIDE, {"particles": 4}))
            finally:
                peak = int((group / "memory.max_usage_in_bytes").read_text())
                failures = int((group / "memory.failcnt").read_text())
                print(f"group peak usage {peak / MIB:.0f} MiB, failcnt {failures}; server alive: {server.alive()} "
                      f"(exit code {server.process.poll()})", file=sys.stderr)
            assert f"restoring a {WORKING_SIDE}x{WORKING_SIDE} image with 4 particles in memory mode '{FASTEST}'" \
                in message
            assert "free under the process's memory limit (cgroup memory.limit_in_bytes " in message
            assert " in use). What fits: " in message
            assert server.alive()


def test_only_allocation_failures_are_explained(comfy_nodes) -> None:
    """CUDA's error type (ComfyUI's OOM_EXCEPTION), PyTorch's CPU allocator and Python's
    MemoryError are explained; any other error passes through untouched."""
    import torch
    from comfyui_env import pack_submodule

    detect = pack_submodule("nodes.out_of_memory").is_out_of_memory
    assert detect(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert detect(RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1 bytes."))
    assert detect(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)")) and detect(MemoryError())
    assert not detect(RuntimeError("Expected all tensors to be on the same device")) and not detect(ValueError("x"))


def test_particle_decode_explains_running_out_of_memory(demo, monkeypatch) -> None:
    """The guard does not cost Particle Decode (measured: under a process limit the guard's advice let
    the sampler through and the decode then failed with PyTorch's bare error): its allocation failure
    is explained too, and the particles' LATENT is left as it was."""
    import torch
    from comfyui_env import call_node, pack_submodule

    errors = pack_submodule("nodes.out_of_memory")
    latent = {"samples": torch.zeros(3, 4, 12, 16)}
    vae = demo["vae"]

    def decode_fails(samples: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 655360000 bytes.")

    monkeypatch.setattr(vae, "decode", decode_fails)
    with pytest.raises(errors.DWGFOutOfMemoryError) as caught:
        call_node("DWGF_ParticleDecode", particles=latent, vae=vae, paste_known_pixels=False, particles_per_image=3)
    message = str(caught.value)
    assert message.startswith("memory: ran out of memory while decoding 3 particles of 24x32 with the VAE on the CPU")
    assert "can't allocate memory" in message and "VAE Decode (Tiled)" in message
    assert latent["samples"].shape == (3, 4, 12, 16)
