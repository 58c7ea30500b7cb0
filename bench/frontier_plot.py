"""The frontier plot: particle-mean PSNR against network evaluations per image (log axis), one
curve per method and task, drawn with PIL (the pack does not depend on a plotting library)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 940, 560
LEFT, RIGHT, TOP, BOTTOM = 70, 290, 40, 60
TASK_COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)]
METHOD_DASH = {"DWGF": None, "PSLD": 6}


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default()


def _dashed(draw: ImageDraw.ImageDraw, a: tuple[float, float], b: tuple[float, float], colour: tuple, dash: int | None,
            width: int = 3) -> None:
    if dash is None:
        draw.line([a, b], fill=colour, width=width)
        return
    length = math.dist(a, b)
    pieces = max(1, int(length // dash))
    for i in range(0, pieces, 2):
        s, e = i / pieces, min(1.0, (i + 1) / pieces)
        draw.line([(a[0] + (b[0] - a[0]) * s, a[1] + (b[1] - a[1]) * s),
                   (a[0] + (b[0] - a[0]) * e, a[1] + (b[1] - a[1]) * e)], fill=colour, width=width)


def draw(cache: dict[str, Any], tasks: Sequence[str], settings: Sequence[Any], key: Callable, path: Path,
         crops: Sequence[int]) -> None:
    """Write the plot of ``settings`` (reference-form runs of both methods) for ``tasks`` to ``path``,
    PSNR averaged over ``crops`` (ones every plotted run has, so the points are comparable)."""
    def psnr(run: dict[str, Any]) -> float:
        values = dict(zip(run["indices"], run["psnr_mean"], strict=True))
        return statistics.fmean(values[i] for i in crops)

    curves = []
    for t_index, task in enumerate(tasks):
        for method in ("DWGF", "PSLD"):
            points = [(cache[key(task, s)]["evaluations_per_image"], psnr(cache[key(task, s)]), s.steps)
                      for s in settings if s.method == method and key(task, s) in cache]
            if points:
                curves.append((task, method, TASK_COLOURS[t_index % len(TASK_COLOURS)], sorted(points)))
    if not curves:
        return
    xs = [p[0] for *_, pts in curves for p in pts]
    ys = [p[1] for *_, pts in curves for p in pts]
    x_lo, x_hi = math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)))
    y_lo, y_hi = math.floor(min(ys)) - 0.5, math.ceil(max(ys)) + 0.5
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw_ = ImageDraw.Draw(image)
    font, small = _font(15), _font(12)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def at(x: float, y: float) -> tuple[float, float]:
        return (LEFT + (math.log10(x) - x_lo) / (x_hi - x_lo) * plot_w, TOP + (y_hi - y) / (y_hi - y_lo) * plot_h)

    for decade in range(x_lo, x_hi + 1):
        px = at(10**decade, y_lo)[0]
        draw_.line([(px, TOP), (px, TOP + plot_h)], fill=(225, 225, 225))
        draw_.text((px - 14, TOP + plot_h + 6), f"10^{decade}", fill="black", font=small)
    for level in range(math.ceil(y_lo), math.floor(y_hi) + 1):
        py = at(10**x_lo, level)[1]
        draw_.line([(LEFT, py), (LEFT + plot_w, py)], fill=(225, 225, 225))
        draw_.text((LEFT - 30, py - 7), f"{level}", fill="black", font=small)
    draw_.rectangle([LEFT, TOP, LEFT + plot_w, TOP + plot_h], outline="black")
    draw_.text((LEFT + plot_w / 2 - 150, HEIGHT - 28), "network evaluations per image (log scale)", fill="black",
               font=font)
    draw_.text((10, 10), f"PSNR of the particle mean (dB) against cost, demo model, {len(crops)} held-out crops",
               fill="black", font=font)
    for row, (task, method, colour, points) in enumerate(curves):
        dash = METHOD_DASH[method]
        for a, b in zip(points, points[1:], strict=False):
            _dashed(draw_, at(a[0], a[1]), at(b[0], b[1]), colour, dash)
        for x, y, steps in points:
            cx, cy = at(x, y)
            shape = [cx - 4, cy - 4, cx + 4, cy + 4]
            (draw_.ellipse if method == "DWGF" else draw_.rectangle)(shape, fill=colour)
            draw_.text((cx + 5, cy - 15), str(steps), fill=colour, font=small)
        ly = TOP + 10 + row * 22
        _dashed(draw_, (WIDTH - RIGHT + 15, ly + 7), (WIDTH - RIGHT + 45, ly + 7), colour, dash)
        draw_.text((WIDTH - RIGHT + 52, ly), f"{method}, {task}", fill="black", font=small)
    draw_.text((WIDTH - RIGHT + 15, TOP + 10 + len(curves) * 22 + 8), "labels: iterations / steps", fill="black",
               font=small)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
