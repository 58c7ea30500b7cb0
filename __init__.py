"""DWGF for ComfyUI: training-free image restoration by diffusion-regularised Wasserstein gradient flow.

Drop this folder into ``ComfyUI/custom_nodes/``. The algorithms live in ``dwgf/`` (pure PyTorch);
``nodes/`` adapts them to ComfyUI's MODEL, VAE and CONDITIONING.
"""

if __package__:  # imported as a package, as ComfyUI's loader does
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:  # read as a lone file (pytest collecting a checkout whose folder name is no Python name)
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
