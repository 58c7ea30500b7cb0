"""Shared fixtures: the real ComfyUI (vendored 2024 copy, or DWGF_COMFYUI_ROOT) and the pack in it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))  # the harness modules, by bare name
sys.path.insert(0, str(REPO / "tests"))  # doubles.py, the tests' small exact models

import comfyui_env  # noqa: E402


def _register_core_package() -> None:
    """Make the pure core importable as ``dwgf`` without putting the repo root (and its
    ``nodes/`` package, which would shadow ComfyUI's ``nodes.py``) on ``sys.path``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "dwgf", REPO / "dwgf" / "__init__.py", submodule_search_locations=[str(REPO / "dwgf")]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["dwgf"] = module
    spec.loader.exec_module(module)


_register_core_package()


def pytest_report_header(config: pytest.Config) -> str:
    root = comfyui_env.comfyui_root()
    return f"ComfyUI: {root} (version {comfyui_env.comfyui_version(root)})"


@pytest.fixture()
def single_thread():
    """Tiny tensors run fastest on one thread (two threads spin against each other on 2 cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def comfy_nodes():
    """ComfyUI's ``nodes`` module after its own loader imported the pack."""
    return comfyui_env.import_comfyui()


@pytest.fixture(scope="session")
def pack(comfy_nodes):
    """The pack's top-level module as ComfyUI imported it."""
    return sys.modules[comfyui_env.pack_module_name()]


@pytest.fixture(scope="session")
def core(pack):
    """The pack's ``dwgf`` core package (the same module objects the nodes use)."""
    return comfyui_env.pack_submodule("dwgf")


@pytest.fixture(scope="module")
def demo(comfy_nodes) -> dict:
    """The demo model's MODEL, VAE and conditioning ("unconditional" for both), built as ComfyUI would."""
    model, vae, positive, negative, *_ = comfyui_env.call_node("DWGF_DemoModel", prompt="unconditional", batch_size=1)
    return {"model": model, "vae": vae, "positive": positive, "negative": negative}


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A real ComfyUI server (ComfyUI's own main.py) on a free loopback port, with the pack."""
    from comfy_server import ComfyServer

    with ComfyServer(workdir=tmp_path_factory.mktemp("server")) as running:
        yield running
