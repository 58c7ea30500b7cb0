"""Print a ComfyUI copy's own ``requirements.txt`` ready for ``pip install -r``.

Torch, torchvision and torchaudio lines are dropped: torch and torchvision come from this
machine's local wheels (other versions download gigabytes) and the pack needs no torchaudio.
``requests`` is added: current ComfyUI's server imports it without listing it.

    python tools/comfyui_requirements.py [COMFYUI_ROOT]   # default: the copy comfyui_env finds
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfyui_env import comfyui_root  # noqa: E402

LOCAL_WHEELS = re.compile(r"^(torch|torchvision|torchaudio)\s*([<>=!~;\[#]|$)")
UNLISTED = ["requests"]


def installable_requirements(root: Path) -> list[str]:
    """The requirement lines of ``root/requirements.txt`` minus the locally provided ones."""
    source = root / "requirements.txt"
    if not source.is_file():
        raise FileNotFoundError(f"{source} does not exist: is {root} a ComfyUI folder?")
    lines = [line.strip() for line in source.read_text().splitlines()]
    kept = [line for line in lines if line and not line.startswith("#") and not LOCAL_WHEELS.match(line)]
    return kept + [name for name in UNLISTED if name not in kept]


if __name__ == "__main__":
    chosen = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else comfyui_root()
    print("\n".join(installable_requirements(chosen)))
