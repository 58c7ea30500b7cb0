"""Reading the memory limits set on the process (``dwgf/process_limits.py``): cgroup v1 and v2,
``ulimit -v``, from fake ``/proc`` and ``/sys`` trees; and the memory guard naming the one that bound."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dwgf import process_limits
from dwgf.process_limits import UNLIMITED, address_space_limit, cgroup_limits, tightest_limit

GIB, MIB = 2**30, 2**20
V1_NO_LIMIT = "9223372036854771712"  # what cgroup v1 writes for "no limit" (PAGE_COUNTER_MAX with 4 KiB pages)
NO_RLIMIT = -1  # resource.RLIM_INFINITY in Python


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def mountinfo(*mounts: tuple[str, str, str, str]) -> str:
    """Lines of /proc/self/mountinfo for (hierarchy root, mount point, filesystem type, super options)."""
    return "".join(f"{30 + i} 23 0:{28 + i} {root} {point} rw,relatime - {kind} {kind} {options}\n"
                   for i, (root, point, kind, options) in enumerate(mounts))


V2_MOUNT = mountinfo(("/", "/sys/fs/cgroup", "cgroup2", "rw,nsdelegate"))
V1_MOUNTS = mountinfo(("/", "/sys/fs/cgroup", "tmpfs", "rw,mode=755"),
                      ("/", "/sys/fs/cgroup/cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
                      ("/", "/sys/fs/cgroup/memory", "cgroup", "rw,memory"),
                      ("/", "/sys/fs/cgroup/unified", "cgroup2", "rw"))


def v2(tmp_path: Path, group: str, limit: str, current: int, inactive_file: int = 0, parent_limit: str = "max") -> Path:
    base = f"sys/fs/cgroup{group}"
    parent = str(Path(base).parent)
    return write(tmp_path, {
        "proc/self/cgroup": f"0::{group}\n", "proc/self/mountinfo": V2_MOUNT,
        "sys/fs/cgroup/cgroup.controllers": "cpu memory pids\n",  # the root group: no memory.max
        f"{base}/memory.max": f"{limit}\n", f"{base}/memory.current": f"{current}\n",
        f"{base}/memory.stat": f"anon {current}\nfile 0\nactive_file 0\ninactive_file {inactive_file}\n",
        f"{parent}/memory.max": f"{parent_limit}\n", f"{parent}/memory.current": f"{current}\n",
        f"{parent}/memory.stat": f"anon {current}\ninactive_file 0\n"})


def v1(tmp_path: Path, group: str, limit: str, usage: int, inactive_file: int = 0) -> Path:
    base = f"sys/fs/cgroup/memory{group}"
    return write(tmp_path, {
        "proc/self/cgroup": f"12:pids:/\n5:cpu,cpuacct:/\n4:memory:{group}\n1:name=systemd:/\n0::/\n",
        "proc/self/mountinfo": V1_MOUNTS,
        "sys/fs/cgroup/memory/memory.limit_in_bytes": V1_NO_LIMIT + "\n",
        "sys/fs/cgroup/memory/memory.usage_in_bytes": f"{usage + GIB}\n",
        f"{base}/memory.limit_in_bytes": f"{limit}\n", f"{base}/memory.usage_in_bytes": f"{usage}\n",
        f"{base}/memory.stat": f"cache 0\ninactive_file 1\ntotal_cache 0\ntotal_inactive_file {inactive_file}\n",
        "sys/fs/cgroup/unified/cgroup.controllers": "\n"})


def test_a_cgroup_v2_limit_leaves_its_limit_minus_what_is_in_use(tmp_path) -> None:
    root = v2(tmp_path, "/system.slice/comfyui.service", str(2 * GIB), int(1.1 * GIB), inactive_file=100 * MIB)
    (limit,) = cgroup_limits(root)
    in_use = int(1.1 * GIB) - 100 * MIB  # the inactive file cache is reclaimed before the kernel kills
    assert limit.free_bytes == 2 * GIB - in_use
    assert limit.what == "the process's memory limit (cgroup memory.max 2.0 GiB, 1.0 GiB in use)"
    assert tightest_limit(root, rlimit_as=NO_RLIMIT) == limit


def test_max_is_no_limit_and_a_parents_limit_binds_too(tmp_path) -> None:
    assert cgroup_limits(v2(tmp_path / "a", "/user.slice/session", "max", GIB)) == []
    (limit,) = cgroup_limits(v2(tmp_path / "b", "/user.slice/session", "max", GIB, parent_limit=str(3 * GIB)))
    assert limit.free_bytes == 2 * GIB and "memory.max 3.0 GiB" in limit.what
    both = cgroup_limits(v2(tmp_path / "c", "/kubepods/pod", str(4 * GIB), GIB, parent_limit=str(2 * GIB)))
    assert sorted(limit.free_bytes for limit in both) == [GIB, 3 * GIB]
    assert tightest_limit(tmp_path / "c", rlimit_as=NO_RLIMIT).free_bytes == GIB


def test_a_cgroup_v1_limit_and_its_huge_no_limit_value(tmp_path) -> None:
    root = v1(tmp_path / "a", "/docker/0123abcd", str(2 * GIB), int(1.5 * GIB), inactive_file=512 * MIB)
    (limit,) = cgroup_limits(root)  # the hierarchy's root (no limit) is walked up to, and skipped
    assert limit.free_bytes == GIB
    assert limit.what == "the process's memory limit (cgroup memory.limit_in_bytes 2.0 GiB, 1.0 GiB in use)"
    assert cgroup_limits(v1(tmp_path / "b", "/process_api/abc", V1_NO_LIMIT, GIB)) == []
    assert cgroup_limits(v1(tmp_path / "c", "/process_api/abc", str(2**63 - 2**16), GIB)) == []  # 64 KiB pages


def test_usage_above_the_limit_leaves_nothing(tmp_path) -> None:
    (limit,) = cgroup_limits(v1(tmp_path, "/g", str(GIB), 2 * GIB))
    assert limit.free_bytes == 0


def test_a_container_without_its_own_cgroup_namespace_has_its_group_mounted(tmp_path) -> None:
    """Docker on cgroup v1 without a cgroup namespace: /proc/self/cgroup names /docker/<id>, and that
    group is what is mounted at /sys/fs/cgroup/memory (mountinfo's fourth field)."""
    root = write(tmp_path, {
        "proc/self/cgroup": "4:memory:/docker/0123abcd\n",
        "proc/self/mountinfo": mountinfo(("/docker/0123abcd", "/sys/fs/cgroup/memory", "cgroup", "rw,memory")),
        "sys/fs/cgroup/memory/memory.limit_in_bytes": f"{4 * GIB}\n",
        "sys/fs/cgroup/memory/memory.usage_in_bytes": f"{GIB}\n"})
    (limit,) = cgroup_limits(root)
    assert limit.free_bytes == 3 * GIB


def test_a_mount_point_with_a_space(tmp_path) -> None:
    root = write(tmp_path, {
        "proc/self/cgroup": "0::/g\n",
        "proc/self/mountinfo": mountinfo(("/", r"/cg\040root", "cgroup2", "rw")),
        "cg root/g/memory.max": f"{2 * GIB}\n", "cg root/g/memory.current": f"{GIB}\n"})
    assert [limit.free_bytes for limit in cgroup_limits(root)] == [GIB]


def test_without_mountinfo_the_usual_places_are_read(tmp_path) -> None:
    root = v2(tmp_path, "/g", str(2 * GIB), GIB)
    (tmp_path / "proc/self/mountinfo").unlink()
    assert [limit.free_bytes for limit in cgroup_limits(root)] == [GIB]


def test_unreadable_or_missing_files_are_no_limit(tmp_path) -> None:
    assert cgroup_limits(tmp_path) == []
    assert tightest_limit(tmp_path, rlimit_as=NO_RLIMIT) is None
    root = v2(tmp_path / "a", "/g", "garbage", GIB)
    assert cgroup_limits(root) == []
    root = v2(tmp_path / "b", "/g", str(2 * GIB), GIB)
    (root / "sys/fs/cgroup/g/memory.current").unlink()
    assert cgroup_limits(root) == []
    write(tmp_path / "c", {"proc/self/cgroup": "0::/g\n", "proc/self/mountinfo": "not a mount table\n"})
    assert cgroup_limits(tmp_path / "c") == []


def test_ulimit_v_leaves_its_limit_minus_the_address_space_mapped_now(tmp_path) -> None:
    root = write(tmp_path, {"proc/self/status": "Name:\tpython\nVmPeak:\t 5000000 kB\nVmSize:\t 4194304 kB\n"
                                                "VmRSS:\t 1000000 kB\n"})
    limit = address_space_limit(root, rlimit_as=5 * GIB)
    assert limit.free_bytes == GIB
    assert limit.what == "the address-space limit (ulimit -v 5.0 GiB, 4.0 GiB of address space in use)"
    assert address_space_limit(root, rlimit_as=NO_RLIMIT) is None
    assert address_space_limit(root, rlimit_as=2**64 - 1) is None
    assert address_space_limit(root, rlimit_as=3 * GIB).free_bytes == 0
    assert address_space_limit(tmp_path / "no-proc", rlimit_as=5 * GIB) is None


def test_the_tightest_of_both_kinds_is_the_one_that_counts(tmp_path) -> None:
    root = v2(tmp_path, "/g", str(8 * GIB), 2 * GIB)
    write(root, {"proc/self/status": "VmSize:\t 4194304 kB\n"})
    assert tightest_limit(root, rlimit_as=5 * GIB).what.startswith("the address-space limit")
    assert tightest_limit(root, rlimit_as=20 * GIB).what.startswith("the process's memory limit")
    assert tightest_limit(root, rlimit_as=NO_RLIMIT).free_bytes == 6 * GIB


def test_this_process_reads_without_error() -> None:
    """Whatever this machine sets (usually nothing); never an exception."""
    limit = tightest_limit()
    assert limit is None or 0 <= limit.free_bytes < UNLIMITED


def test_the_guard_sees_the_limit_on_the_cpu_only_and_names_it(comfy_nodes, monkeypatch) -> None:
    """ComfyUI reports 8 GiB free; a 1 GiB cgroup headroom is what the guard compares with, and its
    refusal says so. On a GPU the device's memory counts, not a limit on the process."""
    from comfyui_env import pack_submodule

    adapter, guard = pack_submodule("nodes.comfy_adapter"), pack_submodule("nodes.memory_guard")
    limit = process_limits.MemoryLimit(GIB, "the process's memory limit (cgroup memory.max 2.0 GiB, 1.0 GiB in use)")
    monkeypatch.setattr(adapter.comfy.model_management, "get_free_memory", lambda device=None: 8 * GIB)
    monkeypatch.setattr(adapter.process_limits, "tightest_limit", lambda: limit)
    assert adapter.free_memory_bytes(torch.device("cpu")) == GIB
    assert adapter.free_memory_bytes(torch.device("cuda", 0)) == 8 * GIB
    assert adapter.process_memory_limit(torch.device("cuda", 0)) is None

    class Autoencoder:  # enough of one for the guard: a decoder whose saved bytes grow with the pixels
        network, dtype, device, latent_channels, downscale = torch.nn.Linear(1, 1), torch.float32, "cpu", 4, 8

        @staticmethod
        def decode(z: torch.Tensor) -> torch.Tensor:
            return (z * z).repeat_interleave(16, dim=1)

    memory = guard.RunMemory("fastest (all particles at once)", particles_at_once=0)
    with pytest.raises(ValueError) as refused:
        guard.check_run_memory(Autoencoder(), (4, 4096, 4096), 4, memory, torch.device("cpu"))
    message = str(refused.value)
    assert ("but the CPU has 1.0 GiB free under the process's memory limit (cgroup memory.max 2.0 GiB, "
            "1.0 GiB in use). What fits:") in message
    guard.check_run_memory(Autoencoder(), (4, 8, 8), 1, memory, torch.device("cpu"))  # a small run passes

    for loose in (None, process_limits.MemoryLimit(12 * GIB, "the address-space limit (ulimit -v …)")):
        monkeypatch.setattr(adapter.process_limits, "tightest_limit", lambda limit=loose: limit)
        with pytest.raises(ValueError) as unlimited:  # the machine's RAM is what bound: no limit named
            guard.check_run_memory(Autoencoder(), (4, 16384, 16384), 4, memory, torch.device("cpu"))
        assert "has 8.0 GiB free. What fits:" in str(unlimited.value) and "limit" not in str(unlimited.value)
