"""Test-only ComfyUI nodes whose progress the test controls (issue 29, item 6).

A server test that needs "a step longer than X" or "a Cancel that lands inside a network call"
must not depend on how fast the machine is. These nodes wait on files the test writes into a
gate folder, so the order of events is fixed by the test, not by the clock. The server tests link
this folder into the server's ``custom_nodes`` beside the pack (``ComfyServer(extra_custom_nodes=...)``);
the pack itself never loads it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import comfy.model_management
import comfy.utils

POLL_SECONDS = 0.01


def wait_for(path: Path, interruptible: bool = True) -> None:
    """Block until the test creates ``path``; Cancel ends the wait when ``interruptible``."""
    while not path.exists():
        if interruptible:
            comfy.model_management.throw_exception_if_processing_interrupted()
        time.sleep(POLL_SECONDS)


class ProgressGate:
    """Passes an image through after ``steps`` progress steps, step k only once ``open_k`` exists
    in ``gate``: the test decides when every progress event is sent."""

    CATEGORY = "DWGF/testing"
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"image": ("IMAGE",), "steps": ("INT", {"default": 3, "min": 1, "max": 1000}),
                             "gate": ("STRING", {"default": ""})}}

    @classmethod
    def IS_CHANGED(cls, **_: Any) -> float:
        return math.nan  # never cached: every prompt waits on its gate again

    def run(self, image: Any, steps: int, gate: str) -> tuple[Any]:
        bar = comfy.utils.ProgressBar(steps)
        for step in range(1, steps + 1):
            wait_for(Path(gate) / f"open_{step}")
            bar.update_absolute(step, steps)
        return (image,)


class GatedModel:
    """The MODEL with its first network call held: on that call it writes ``entered`` into ``gate``
    and waits, ignoring Cancel, until ``release`` exists; then the call goes on, and ``returned`` is
    written if it comes back. A test can so press Cancel while a sampler is inside a network call,
    whatever the machine's speed, and see whether the call was stopped."""

    CATEGORY = "DWGF/testing"
    FUNCTION = "patch"
    RETURN_TYPES = ("MODEL",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"model": ("MODEL",), "gate": ("STRING", {"default": ""})}}

    @classmethod
    def IS_CHANGED(cls, **_: Any) -> float:
        return math.nan

    def patch(self, model: Any, gate: str) -> tuple[Any]:
        folder, held = Path(gate), {"done": False}

        def hold_first_call(apply_model: Any, args: dict) -> Any:
            if not held["done"]:
                held["done"] = True
                (folder / "entered").write_text("entered")
                wait_for(folder / "release", interruptible=False)
                output = apply_model(args["input"], args["timestep"], **args["c"])
                (folder / "returned").write_text("returned")
                return output
            return apply_model(args["input"], args["timestep"], **args["c"])

        patched = model.clone()
        patched.set_model_unet_function_wrapper(hold_first_call)
        return (patched,)


NODE_CLASS_MAPPINGS = {"DWGFTest_ProgressGate": ProgressGate, "DWGFTest_GatedModel": GatedModel}
