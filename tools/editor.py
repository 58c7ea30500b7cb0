"""Drive ComfyUI's real editor page in headless Chromium (Playwright, Debian's /usr/bin/chromium).

Both frontends ComfyUI has served — the 2024 litegraph page in the vendored copy and the current
Vue package — expose ``window.app`` (``loadGraphData``, ``graphToPrompt``, ``queuePrompt``) and
``window.LiteGraph``; this module talks to the page only through those, as an extension would.
Playwright's own browser download is not used: the system Chromium is launched by path.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("DWGF_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PACK_NODE_TYPES = ("DWGF_DegradationOperator", "DWGF_Sampler", "DWGF_ParticleDecode", "DWGF_DemoModel")
# The current frontend's first-run tour and release notes would cover the canvas.
QUIET_SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Validation.Workflows": False,
                  "Comfy.Release.Version": "99.0.0", "Comfy.Release.Status": "skipped"}


def chromium_available() -> bool:
    return CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)


DEFAULT_GRAPH_WAIT_MS = 30_000


class Editor:
    """One browser tab on a running :class:`comfy_server.ComfyServer`; use as a context manager."""

    def __init__(self, base_url: str, width: int = 1600, height: int = 900, timeout_s: float = 120.0) -> None:
        self.base_url = base_url
        self.viewport = {"width": width, "height": height}
        self.timeout_ms = timeout_s * 1000
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.startup_errors: list[str] = []
        self._profile = Path(tempfile.mkdtemp(prefix="dwgf-chromium-"))

    def __enter__(self) -> Editor:
        from playwright.sync_api import sync_playwright  # a test/tool dependency only

        self._playwright = sync_playwright().start()
        self._context = self._playwright.chromium.launch_persistent_context(
            str(self._profile), executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS,
            viewport=self.viewport)
        self.page = self._context.pages[0] if self._context.pages else self._context.new_page()
        self.page.set_default_timeout(self.timeout_ms)
        self.page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda error: self.page_errors.append(error.stack or str(error)))
        self._quiet_first_run()
        self.page.goto(self.base_url)
        self.page.wait_for_function(
            "types => !!(window.app && window.app.graph && window.LiteGraph"
            " && types.every(t => window.LiteGraph.registered_node_types[t]))", arg=list(PACK_NODE_TYPES))
        self.wait_for_default_graph()
        # Errors the page raised while starting, before any graph of ours (the current frontend,
        # 1.27, throws one from its settings store on a fresh profile); later ones are ours.
        self.startup_errors, self.page_errors = self.page_errors, []
        return self

    def __exit__(self, *exc: object) -> None:
        self._context.close()
        self._playwright.stop()
        shutil.rmtree(self._profile, ignore_errors=True)

    def wait_for_default_graph(self) -> None:
        """Wait until the page has put its default graph on the canvas, so it cannot replace the graph a
        test loads next (issue 29: no fixed sleep that a slow machine could outrun); a page that shows
        no default graph is waited for at most DEFAULT_GRAPH_WAIT_MS."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function("() => window.app.graph._nodes.length > 0", timeout=DEFAULT_GRAPH_WAIT_MS)
        except PlaywrightTimeout:
            pass

    def _quiet_first_run(self) -> None:
        """Pre-set the current frontend's settings so no dialog opens over the canvas (the 2024
        page has no such settings and ignores them)."""
        from urllib.request import Request, urlopen

        for key, value in QUIET_SETTINGS.items():
            try:
                urlopen(Request(f"{self.base_url}/settings/{key}", data=json.dumps(value).encode(),
                                method="POST", headers={"Content-Type": "application/json"}), timeout=10).read()
            except OSError:
                pass

    # -- graph --------------------------------------------------------------------------------
    def missing_node_types(self, ui: dict[str, Any]) -> list[str]:
        """Node types of a workflow that this editor does not know (what its load dialog lists)."""
        return self.page.evaluate(
            "types => types.filter(t => !window.LiteGraph.registered_node_types[t])",
            sorted({node["type"] for node in ui["nodes"]}))

    def load(self, ui: dict[str, Any]) -> None:
        self.page.evaluate("async wf => { await window.app.loadGraphData(wf); }", ui)
        self.page.wait_for_timeout(100)

    def loaded_node_types(self) -> dict[str, str]:
        """Node id -> type of the graph on the canvas, for nodes the editor could build."""
        return self.page.evaluate(
            "() => Object.fromEntries(window.app.graph._nodes"
            ".filter(n => n.constructor === window.LiteGraph.registered_node_types[n.type])"
            ".map(n => [String(n.id), n.type]))")

    def graph_to_prompt(self) -> dict[str, Any]:
        """The API prompt the editor would queue for the graph on the canvas."""
        return self.page.evaluate("async () => (await window.app.graphToPrompt()).output")

    def serialize(self) -> dict[str, Any]:
        return self.page.evaluate("() => window.app.graph.serialize()")

    def computed_sizes(self) -> dict[str, list[float]]:
        """Each node's natural size as the editor lays it out (slots and widgets)."""
        return self.page.evaluate(
            "() => Object.fromEntries(window.app.graph._nodes.map(n => [String(n.id), Array.from(n.computeSize())]))")

    def set_widget(self, node_id: int | str, name: str, value: Any) -> None:
        """Type a value into a node's widget, as a user would."""
        found = self.page.evaluate(
            """([id, name, value]) => {
                 const node = window.app.graph.getNodeById(Number(id));
                 const widget = node && node.widgets.find(w => w.name === name);
                 if (!widget) return false;
                 widget.value = value; if (widget.callback) widget.callback(value);
                 return true; }""", [str(node_id), name, value])
        if not found:
            raise KeyError(f"node {node_id} has no widget {name!r}")

    def queue(self) -> None:
        """Press Queue Prompt."""
        self.page.evaluate("async () => { await window.app.queuePrompt(0, 1); }")

    def wait_for_node_images(self, node_id: int | str, timeout_s: float = 300.0) -> list[dict[str, Any]]:
        """Wait until a node shows its output images in the canvas; their URLs and pixel sizes."""
        self.page.wait_for_function(
            """id => { const n = window.app.graph.getNodeById(Number(id));
                       window.app.graph.setDirtyCanvas(true, true);
                       return !!(n && n.imgs && n.imgs.length && n.imgs.every(i => i.complete && i.naturalWidth)); }""",
            arg=str(node_id), timeout=timeout_s * 1000, polling=250)
        return self.page.evaluate(
            "id => window.app.graph.getNodeById(Number(id)).imgs"
            ".map(i => ({src: i.src, width: i.naturalWidth, height: i.naturalHeight}))", str(node_id))

    # -- pictures -----------------------------------------------------------------------------
    def fit_view(self, margin: float = 40.0, top: float = 0.0) -> None:
        """Zoom and pan so the whole graph fills the canvas."""
        self.page.evaluate(
            """([margin, top]) => {
                 const canvas = window.app.canvas, nodes = window.app.graph._nodes;
                 const title = window.LiteGraph.NODE_TITLE_HEIGHT || 30;
                 const x0 = Math.min(...nodes.map(n => n.pos[0])), y0 = Math.min(...nodes.map(n => n.pos[1] - title));
                 const x1 = Math.max(...nodes.map(n => n.pos[0] + n.size[0]));
                 const y1 = Math.max(...nodes.map(n => n.pos[1] + n.size[1]));
                 const el = canvas.canvas, w = el.clientWidth, h = el.clientHeight - top;
                 const scale = Math.min((w - 2 * margin) / (x1 - x0), (h - 2 * margin) / (y1 - y0), 1.5);
                 canvas.ds.scale = scale;
                 canvas.ds.offset[0] = (w / scale - (x1 - x0)) / 2 - x0;
                 canvas.ds.offset[1] = (top + (h - scale * (y1 - y0)) / 2) / scale - y0;
                 canvas.setDirty(true, true); }""", [margin, top])
        self.page.wait_for_timeout(300)

    def hide_menus(self) -> None:
        """Hide the 2024 page's floating menu (for thumbnails that show only the graph)."""
        self.page.add_style_tag(content=".comfy-menu, .comfy-settings-btn { display: none !important; }")

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path))
        return path

    def wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.page.wait_for_timeout(100)
