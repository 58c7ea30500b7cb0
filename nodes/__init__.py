"""The ComfyUI layer: thin node classes over the pure-PyTorch core in ``dwgf/``.

Each node module is imported on its own, so a module that fails to import disables its nodes
only, with the reason in ComfyUI's log, not the whole pack.
"""

from __future__ import annotations

import importlib
import logging

NODE_MODULES = ("degradation_node", "dwgf_sampler_node", "psld_sampler_node", "particle_decode_node",
                "demo_model_node", "region_nodes", "custom_sampler_node", "collected_images_node")

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}

for _name in NODE_MODULES:
    try:
        _module = importlib.import_module(f".{_name}", __name__)
    except Exception as error:  # one broken node module must not take the pack down
        logging.getLogger(__name__).error("DWGF: nodes in %s disabled: %s", _name, error)
        continue
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)
