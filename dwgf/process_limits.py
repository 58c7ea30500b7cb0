"""Memory limits set on this process, which the machine's free RAM does not show (issue 29, item 5).

On the CPU, ComfyUI reports the machine's available RAM as free. A process may be allowed less:
an address-space limit (``ulimit -v``, ``RLIMIT_AS``) makes an allocation fail part-way, and a
container's memory limit (a cgroup's ``memory.max``, ``memory.limit_in_bytes`` in cgroup v1) has
the kernel kill the process with no Python error. :func:`tightest_limit` reads both, so that the
memory guard can refuse a run that would cross them before it starts. Linux files; anything
unreadable counts as no limit. ``root`` is ``/`` except in tests, which pass a fake tree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .memory import format_gib

try:
    import resource
except ImportError:  # Windows
    resource = None

# Values at or above this mean "no limit": cgroup v1 writes it as PAGE_COUNTER_MAX pages
# (9223372036854771712 with 4 KiB pages), RLIM_INFINITY is 2**64 - 1 (-1 in Python).
UNLIMITED = 2**62


@dataclass(frozen=True)
class MemoryLimit:
    """A limit on this process: what it leaves free now, and its words for messages."""

    free_bytes: int
    what: str  # e.g. "the process's memory limit (cgroup memory.max 2.0 GiB, 1.1 GiB in use)"


def tightest_limit(root: str | Path = "/", rlimit_as: int | None = None) -> MemoryLimit | None:
    """The limit on this process that leaves the least memory free, or ``None`` where none is set.

    ``rlimit_as``: the soft ``RLIMIT_AS`` in bytes; ``None`` reads this process's own.
    """
    limits = [*cgroup_limits(root), address_space_limit(root, rlimit_as)]
    return min((limit for limit in limits if limit is not None), key=lambda limit: limit.free_bytes, default=None)


def address_space_limit(root: str | Path = "/", rlimit_as: int | None = None) -> MemoryLimit | None:
    """``ulimit -v``: the soft ``RLIMIT_AS`` minus the address space the process maps now (VmSize)."""
    if rlimit_as is None:
        if resource is None or not hasattr(resource, "RLIMIT_AS"):
            return None
        rlimit_as = resource.getrlimit(resource.RLIMIT_AS)[0]
    if not 0 <= rlimit_as < UNLIMITED:
        return None
    status = _read(Path(root, "proc/self/status")) or ""
    found = re.search(r"^VmSize:\s*(\d+)\s*kB", status, re.MULTILINE)
    if found is None:
        return None
    mapped = int(found.group(1)) * 1024
    return MemoryLimit(max(0, rlimit_as - mapped), f"the address-space limit (ulimit -v {format_gib(rlimit_as)}, "
                                                    f"{format_gib(mapped)} of address space in use)")


def cgroup_limits(root: str | Path = "/") -> list[MemoryLimit]:
    """The memory limit of each cgroup this process is in, and of their parents (which bind too):
    ``memory.max`` (v2) or ``memory.limit_in_bytes`` (v1) minus the memory counted against it,
    less the inactive file cache, which the kernel reclaims before it kills (as ``docker stats``)."""
    root = Path(root)
    mounts = _cgroup_mounts(root)
    limits = []
    for line in (_read(root / "proc/self/cgroup") or "").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        version = 2 if hierarchy == "0" and controllers == "" else 1 if "memory" in controllers.split(",") else 0
        for mount_version, mount_root, mount_point in mounts:
            if mount_version == version:
                limits += _limits_along(version, _cgroup_dir(mount_root, mount_point, path), mount_point)
    return limits


def _limits_along(version: int, directory: Path, top: Path) -> list[MemoryLimit]:
    """The limits of ``directory`` and of each parent up to the hierarchy's mount point ``top``."""
    limit_file, usage_file, inactive_key = (("memory.max", "memory.current", "inactive_file") if version == 2 else
                                            ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"))
    limits = []
    while True:
        limit, usage = _number(directory / limit_file), _number(directory / usage_file)
        if limit is not None and usage is not None and limit < UNLIMITED:
            stat = _read(directory / "memory.stat") or ""
            found = re.search(rf"^{inactive_key} (\d+)$", stat, re.MULTILINE)
            used = max(0, usage - (int(found.group(1)) if found else 0))
            limits.append(MemoryLimit(max(0, limit - used), f"the process's memory limit (cgroup "
                                      f"{limit_file} {format_gib(limit)}, {format_gib(used)} in use)"))
        if directory == top or top not in directory.parents:
            return limits
        directory = directory.parent


def _cgroup_mounts(root: Path) -> list[tuple[int, str, Path]]:
    """(version, the hierarchy's path that is mounted, where) for each cgroup v2 and v1-memory mount,
    from ``/proc/self/mountinfo``; without it, the usual places under ``/sys/fs/cgroup``."""
    mounts = []
    for line in (_read(root / "proc/self/mountinfo") or "").splitlines():
        mount, _, filesystem = line.partition(" - ")
        fields, described = mount.split(), filesystem.split()
        if len(fields) < 5 or len(described) < 3:
            continue
        where = root / _unescape(fields[4]).lstrip("/")
        if described[0] == "cgroup2":
            mounts.append((2, _unescape(fields[3]), where))
        elif described[0] == "cgroup" and "memory" in described[2].split(","):
            mounts.append((1, _unescape(fields[3]), where))
    if not mounts and _read(root / "proc/self/mountinfo") is None:
        base = root / "sys/fs/cgroup"
        mounts = [(2, "/", base), (2, "/", base / "unified"), (1, "/", base / "memory")]
    return mounts


def _cgroup_dir(mount_root: str, mount_point: Path, path: str) -> Path:
    """The folder of cgroup ``path`` (as ``/proc/self/cgroup`` names it) in a mount of ``mount_root``.
    In a container without its own cgroup namespace the container's group itself is mounted."""
    relative = Path(path).relative_to(mount_root) if Path(path).is_relative_to(mount_root) else Path()
    return mount_point / relative


def _unescape(field: str) -> str:
    """mountinfo writes spaces and the like as octal escapes (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _number(path: Path) -> int | None:
    """A cgroup file's number; "max" (v2's "no limit") as :data:`UNLIMITED`; ``None`` if unreadable."""
    text = (_read(path) or "").strip()
    return UNLIMITED if text == "max" else int(text) if text.isdigit() else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None
