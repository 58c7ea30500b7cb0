"""The natural photographs the demo model is to be trained and measured on, and where each comes from.

Issue 11 asks for real photographs that reachable package registries ship. Four sources hold them:
scikit-image's bundled pictures (PyPI), and the photographic wallpapers of three Debian packages
(looked through by eye: the abstract art, renders and illustrations of the same packages are left
out, as are gnome-backgrounds 43.1 and ukui-wallpapers, which hold no photographs). Every entry
records its package, version, path and licence; ``split`` says whether a whole photograph is
held out (never trained on, used by every test and benchmark) or trained on.

scikit-learn's sample images (``load_sample_images``: china, flower) are reserved as an outside
check of the pack and are deliberately not listed.

    python tools/photo_sources.py --cache ~/.cache/dwgf-photos   # fetch and list (apt-get download)
"""

from __future__ import annotations

import argparse
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Photo:
    name: str
    source: str  # "skimage" or a Debian package name
    version: str
    path: str  # inside the package (Debian) or the skimage.data function
    licence: str
    kind: str  # animal, landscape, person, object, texture, plant
    split: str = "train"  # or "heldout"


DEBIAN_VERSIONS = {"mate-backgrounds": "1.26.0-1", "plasma-workspace-wallpapers": "4:5.27.5-2",
                   "lomiri-wallpapers-16.04": "20.04.0-2", "lomiri-wallpapers-20.04": "20.04.0-2"}
_MATE = "usr/share/backgrounds/mate/nature/"
_PLASMA = "usr/share/wallpapers/{}/contents/images/{}"
_LOMIRI16 = "usr/share/backgrounds/"


def _mate(name: str, kind: str, split: str = "train") -> Photo:
    return Photo(f"mate-{name.lower()}", "mate-backgrounds", DEBIAN_VERSIONS["mate-backgrounds"],
                 f"{_MATE}{name}.jpg", "GPL-2+", kind, split)


def _plasma(name: str, size: str, kind: str, split: str = "train") -> Photo:
    return Photo(f"plasma-{name.lower()}", "plasma-workspace-wallpapers",
                 DEBIAN_VERSIONS["plasma-workspace-wallpapers"], _PLASMA.format(name, size), "GPL-2+", kind, split)


def _lomiri(file: str, licence: str, kind: str, split: str = "train", release: str = "16.04") -> Photo:
    package = f"lomiri-wallpapers-{release}"
    return Photo(f"lomiri-{file.split('_by_')[0].lower()}", package, DEBIAN_VERSIONS[package],
                 f"{_LOMIRI16}{file}", licence, kind, split)


def _skimage(name: str, kind: str, split: str = "train") -> Photo:
    return Photo(f"skimage-{name}", "skimage", "scikit-image wheel", f"skimage.data.{name}",
                 "as its skimage.data docstring states (CC0 or public domain)", kind, split)


PHOTOS: tuple[Photo, ...] = (
    # held out whole: an animal, a landscape, a person, an object, a texture, and two old ones
    _lomiri("friends_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "animal", "heldout"),
    _lomiri("picosdeeuropa_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "landscape", "heldout"),
    _skimage("astronaut", "person", "heldout"),
    _plasma("ColorfulCups", "2560x1600.jpg", "object", "heldout"),
    _mate("GreenMeadow", "texture", "heldout"),
    _skimage("chelsea", "animal", "heldout"),
    _skimage("coffee", "object", "heldout"),
    # trained on
    _mate("Aqua", "object"), _mate("Blinds", "plant"), _mate("Dune", "landscape"), _mate("FreshFlower", "plant"),
    _mate("Garden", "plant"), _mate("LadyBird", "animal"), _mate("RainDrops", "plant"), _mate("Storm", "landscape"),
    _mate("TwoWings", "plant"), _mate("Wood", "texture"), _mate("YellowFlower", "plant"),
    _plasma("BytheWater", "1280x1024.jpg", "landscape"), _plasma("ColdRipple", "1280x1024.jpg", "landscape"),
    _plasma("DarkestHour", "1280x1024.jpg", "landscape"), _plasma("EveningGlow", "1280x1024.jpg", "landscape"),
    _plasma("FallenLeaf", "1280x1024.jpg", "plant"), _plasma("Grey", "1280x1024.jpg", "object"),
    _plasma("Kite", "1280x1024.jpg", "landscape"), _plasma("OneStandsOut", "1280x1024.jpg", "plant"),
    _plasma("Path", "1280x1024.jpg", "landscape"), _plasma("Volna", "5120x2880.jpg", "landscape"),
    _plasma("summer_1am", "1280x1024.jpg", "landscape"),
    _lomiri("Bridge_by_Sander_Klootwijk.jpg", "CC-BY-SA-4.0", "object"),
    _lomiri("Dragonfly_by_Bolly.jpg", "CC-BY-SA-4.0", "plant"),
    _lomiri("Picture_0B_by_freespace.jpg", "CC-BY-4.0", "object"),
    _lomiri("Picture_1A_by_freespace.jpg", "CC-BY-4.0", "object"),
    _lomiri("Wine_by_Jakkub_Mede.jpg", "CC-BY-4.0", "object"),
    _lomiri("aitzgorri_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "landscape"),
    _lomiri("analogpattern_by_Peter_Nerlich.jpg", "CC-BY-SA-4.0", "texture"),
    _lomiri("free_by_Peter_Nerlich.jpg", "CC-BY-SA-4.0", "object"),
    _lomiri("greentock_by_Peter_Nerlich.jpg", "CC-BY-SA-4.0", "object"),
    _lomiri("life_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "landscape"),
    _lomiri("seeding_by_Clements_Engelhardt.jpg", "CC0-1.0", "plant"),
    _lomiri("sunset_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "landscape"),
    _lomiri("Kleiber_by_Lukas_Baubkus.jpg", "CC-BY-SA-3.0", "animal", release="20.04"),
    _skimage("camera", "person"), _skimage("rocket", "object"), _skimage("motorcycle_left", "object"),
    _skimage("brick", "texture"), _skimage("grass", "texture"), _skimage("gravel", "texture"),
    _skimage("coins", "object"), _skimage("clock", "object"),
)


def fetch_debian_packages(cache: Path) -> dict[str, Path]:
    """Download (``apt-get download``, pinned versions) and unpack each Debian package once."""
    cache.mkdir(parents=True, exist_ok=True)
    roots = {}
    for package, version in DEBIAN_VERSIONS.items():
        root = cache / package
        if not root.is_dir():
            if subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=cache).returncode != 0:
                subprocess.run(["apt-get", "update", "-qq"], check=True)  # a fresh machine has no package lists
                subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=cache, check=True)
            (deb,) = cache.glob(f"{package}_*.deb")
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        roots[package] = root
    return roots


def load_photo(photo: Photo, roots: dict[str, Path]) -> np.ndarray:
    """The photograph as (H, W, 3) uint8 RGB."""
    if photo.source == "skimage":
        from skimage import data

        name = photo.path.rsplit(".", 1)[1]
        image = data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(data, name)()
    else:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None  # the wallpapers are up to 5120x2880
        image = np.asarray(Image.open(roots[photo.source] / photo.path).convert("RGB"))
    image = np.asarray(image)
    return np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image[..., :3]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "dwgf-photos")
    args = parser.parse_args()
    found = fetch_debian_packages(args.cache)
    for entry in PHOTOS:
        pixels = load_photo(entry, found)
        print(f"{entry.split:8s} {entry.kind:9s} {pixels.shape[1]:5d}x{pixels.shape[0]:<5d} {entry.name}",
              asdict(entry)["licence"])
