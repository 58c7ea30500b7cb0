"""A ComfyUI-Distributed cluster on this machine: a master and local CPU workers on loopback (issue 28).

ComfyUI-Distributed (robertvoy/ComfyUI-Distributed, Apache-2.0) is not a dependency of the pack:
its snapshot in ``../shared/vendor/`` is unpacked into a temporary folder, linked into every
server's ``custom_nodes`` beside the pack, and configured the way its panel would (a
``gpu_config.json`` naming the workers). Nothing of it is copied into the project. Used by
``tests/test_distributed.py`` and ``bench/distributed.py``.

Each process runs torch on one thread: three processes with torch's default threads on two cores
ran 3x slower than one server (issue 28); one thread each is what makes it pay.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

from comfy_server import ComfyServer, PromptRejected, RunResult

REPO = Path(__file__).resolve().parents[1]
SNAPSHOTS = REPO.parent / "shared" / "vendor"
SNAPSHOT_GLOB = "ComfyUI-Distributed-*.tar.gz"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
WORKER_TIMEOUT_S = 10  # the master's wait for a silent worker before its collector gives up (it probes a
# worker that is still busy and waits on)


def snapshot(folder: Path = SNAPSHOTS) -> Path | None:
    """The vendored ComfyUI-Distributed archive, or None where this checkout has none."""
    found = sorted(folder.glob(SNAPSHOT_GLOB)) if folder.is_dir() else []
    return found[-1] if found else None


def unpack(archive: Path, into: Path) -> Path:
    """The archive's ``ComfyUI-Distributed`` folder, unpacked under ``into`` (members checked to stay inside)."""
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            target = (into / member.name).resolve()
            if not str(target).startswith(str(into.resolve())) or member.issym() or member.islnk():
                raise RuntimeError(f"{archive.name}: unexpected member {member.name!r}")
        tar.extractall(into)
    return into / "ComfyUI-Distributed"


class Cluster:
    """A master and ``workers`` worker servers, each a real ComfyUI process with the pack and
    ComfyUI-Distributed; use as a context manager. ``worker_ids`` are the ids in the master's config
    (their order is the collector's order and the seed offsets: worker k draws seed + k)."""

    def __init__(self, workers: int = 2, archive: Path | None = None, workdir: Path | None = None,
                 env: dict[str, str] | None = None, one_thread: bool = True) -> None:
        self.archive = archive or snapshot()
        if self.archive is None:
            raise FileNotFoundError(f"no {SNAPSHOT_GLOB} in {SNAPSHOTS}")
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="dwgf-distributed-"))
        self._own_workdir = workdir is None
        self.env = {**(ONE_THREAD if one_thread else {}), **(env or {})}
        self.package = unpack(self.archive, self.workdir / "package")
        self.worker_servers = [self._server(f"worker{k + 1}") for k in range(workers)]
        self.worker_ids = [str(k + 1) for k in range(workers)]
        self.master = self._server("master")

    def _server(self, name: str) -> ComfyServer:
        return ComfyServer(workdir=self.workdir / name, extra_custom_nodes=[self.package], env=self.env)

    def write_config(self) -> Path:
        """ComfyUI-Distributed's own config file, as its panel writes it: the workers on loopback."""
        config = {
            "master": {"host": "127.0.0.1"},
            "workers": [{"id": worker_id, "name": f"worker {worker_id}", "host": "127.0.0.1", "port": server.port,
                         "enabled": True, "type": "remote"}
                        for worker_id, server in zip(self.worker_ids, self.worker_servers, strict=True)],
            "settings": {"debug": False, "auto_launch_workers": False, "stop_workers_on_master_exit": False,
                         "master_delegate_only": False, "worker_timeout_seconds": WORKER_TIMEOUT_S},
        }
        path = self.package / "gpu_config.json"
        path.write_text(json.dumps(config, indent=2) + "\n")
        return path

    def start(self) -> Cluster:
        self.write_config()
        try:
            for server in [*self.worker_servers, self.master]:
                server.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in [self.master, *self.worker_servers]:
            server.stop()

    def close(self) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, workers: list[str] | None = None) -> Callable[[dict[str, Any]], str]:
        """A ``submit`` for :meth:`ComfyServer.run`: ``POST /distributed/queue`` on the master with these
        worker ids (all by default): the headless way ComfyUI-Distributed documents."""
        chosen = list(self.worker_ids if workers is None else workers)

        def queue(prompt: dict[str, Any]) -> str:
            body = {"prompt": prompt, "client_id": self.master.client_id, "enabled_worker_ids": chosen}
            try:
                answer = self.master.post_json("/distributed/queue", body)
            except urllib.error.HTTPError as error:
                raise PromptRejected(json.loads(error.read() or b"{}")) from None
            if answer.get("worker_count") != len(chosen):
                raise RuntimeError(f"ComfyUI-Distributed reached {answer.get('worker_count')} of {len(chosen)} "
                                   f"workers: {answer}")
            return answer["prompt_id"]

        return queue

    def run(self, prompt: dict[str, Any], workers: list[str] | None = None, timeout: float | None = None) -> RunResult:
        """Run ``prompt`` on the master and ``workers``; the master's result (its collector's images)."""
        return self.master.run(prompt, timeout=timeout, submit=self.submit(workers))
