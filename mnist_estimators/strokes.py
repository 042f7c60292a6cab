"""Digits drawn as pen strokes, the way people draw them on a canvas: a labelled test set that is
not MNIST.

Each digit is one or two strokes (polylines through a written shape), drawn with a random slant,
rotation, size, aspect, position, stroke width, wobble and canvas size, dark on light (some on a
transparent background, as a browser canvas exports them), anti-aliased. They are scripted
strokes, not human handwriting: a check of the preprocessing and of how far models trained on
MNIST carry to drawn input, not a measure of human variety.

    python -m mnist_estimators.strokes OUT_FOLDER [--per-digit 30] [--seed 0]

writes ``OUT_FOLDER/<digit>/<n>.png``, a labelled folder that ``evaluate --images`` and
``load_images`` read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def _arc(cx, cy, rx, ry, start, end, n=24):
    t = np.radians(np.linspace(start, end, n))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _line(*points):
    return np.array(points, dtype=float)


def _shape(digit, rng):
    """The digit's strokes in a unit box (x right, y down), with some variety of form."""
    j = lambda s=0.04: rng.uniform(-s, s)  # noqa: E731 - a small jitter of one coordinate
    if digit == 0:
        return [_arc(0.5, 0.5, 0.3 + j(), 0.42 + j(), -90, 275 + rng.uniform(0, 20))]
    if digit == 1:
        stem = _line((0.5 + j(), 0.08), (0.5 + j(), 0.92))
        strokes = [np.concatenate([_line((0.32 + j(), 0.28 + j())), stem])] \
            if rng.random() < 0.5 else [stem]  # with the flag at the top, or a bare stem
        if rng.random() < 0.2:  # a base
            strokes.append(_line((0.32, 0.92), (0.68, 0.92)))
        return strokes
    if digit == 2:
        if rng.random() < 0.3:  # a loop at the bottom left
            return [np.concatenate([_arc(0.5, 0.3, 0.25, 0.2 + j(), 190, 370),
                                    _line((0.72, 0.42), (0.3, 0.85)),
                                    _arc(0.3, 0.8, 0.08, 0.08, 90, 400, n=10),
                                    _line((0.36, 0.88), (0.82 + j(), 0.88))])]
        return [np.concatenate([_arc(0.5, 0.3, 0.25, 0.2 + j(), 190, 370),
                                _line((0.72, 0.42), (0.22 + j(), 0.9), (0.8 + j(), 0.9))])]
    if digit == 3:
        if rng.random() < 0.3:  # a flat top, like a Z
            return [np.concatenate([_line((0.22, 0.1), (0.75, 0.1), (0.42, 0.45)),
                                    _arc(0.47, 0.68, 0.28 + j(), 0.24, 270, 500)])]
        return [np.concatenate([_arc(0.47, 0.29, 0.25, 0.2, 210, 450),
                                _arc(0.47, 0.7, 0.28 + j(), 0.22, 270, 510)])]
    if digit == 4:
        if rng.random() < 0.5:  # open top: two strokes
            return [_line((0.3 + j(), 0.08), (0.22, 0.6), (0.82, 0.6)),
                    _line((0.64 + j(), 0.2), (0.62 + j(), 0.92))]
        return [_line((0.65 + j(), 0.92), (0.65, 0.08), (0.18 + j(), 0.64), (0.85, 0.64))]
    if digit == 5:
        return [np.concatenate([_line((0.75 + j(), 0.1), (0.32, 0.1), (0.28 + j(), 0.45)),
                                _arc(0.48, 0.64, 0.27, 0.24 + j(), 230, 495)])]
    if digit == 6:
        return [np.concatenate([_arc(0.62, 0.55, 0.37, 0.45, 250, 180, n=12),
                                _arc(0.5, 0.7, 0.25 + j(), 0.2, 180, 540)])]
    if digit == 7:
        strokes = [_line((0.2 + j(), 0.12 + j()), (0.8, 0.12), (0.42 + j(0.1), 0.92))]
        if rng.random() < 0.25:  # the continental bar
            strokes.append(_line((0.38, 0.52), (0.74, 0.52)))
        return strokes
    if digit == 8:
        t = np.radians(np.linspace(0, 360, 48))
        return [np.stack([0.5 + (0.23 + j()) * np.sin(2 * t), 0.5 - 0.42 * np.cos(t)], axis=1)]
    if digit == 9:
        stem = _line((0.74, 0.3), (0.7 + j(0.08), 0.92)) if rng.random() < 0.6 else \
            _arc(0.44, 0.3, 0.3, 0.62, 0, 110, n=12)  # a straight or a curved tail
        return [np.concatenate([_arc(0.5, 0.3, 0.24 + j(), 0.2, 0, 360), stem])]
    raise ValueError(f"digit must be 0-9, got {digit!r}")


def draw_digit(digit, rng=None, canvas=None, transparent=None):
    """One drawn ``digit`` as a PIL image (RGBA when transparent, else L)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(rng)
    size = int(canvas or rng.choice([140, 200, 280, 400]))
    strokes = _shape(digit, rng)
    # slant, rotation, aspect and size, then a place on the canvas: as people draw
    slant, angle = rng.uniform(-0.45, 0.25), np.radians(rng.uniform(-15, 15))
    aspect = rng.uniform(0.75, 1.15)
    height = rng.uniform(0.35, 0.85) * size
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    out = []
    # a smooth random warp of the whole shape: a hand does not repeat a template
    amp, freq, phase = rng.uniform(0, 0.05, 2), rng.uniform(2, 5, 2), rng.uniform(0, 2 * np.pi, 2)
    for s in strokes:
        p = s + amp * np.sin(freq * s[:, ::-1] + phase) - 0.5
        p = np.stack([(p[:, 0] + slant * -p[:, 1]) * aspect, p[:, 1]], axis=1) @ rot.T * height
        out.append(p)
    pts = np.concatenate(out)
    fit = min(1.0, 0.9 * size / max(np.ptp(pts, axis=0).max(), 1e-9))  # on the canvas, whole
    out, pts = [p * fit for p in out], pts * fit
    low, high = pts.min(0), pts.max(0)
    width = max(2.0, rng.uniform(0.025, 0.09) * size)
    room = np.maximum(size - (high - low) - 1.5 * width, 1)  # the pen's width inside too
    offset = rng.uniform(0.05, 0.95, 2) * room - low + 0.75 * width
    scale = 4  # drawn at 4x and reduced: anti-aliased strokes, as a canvas draws them
    img = Image.new("L", (size * scale, size * scale), 0)
    pen = ImageDraw.Draw(img)
    for p in out:
        p = p + offset
        p = p + np.cumsum(rng.normal(0, width * 0.04, p.shape), axis=0) * 0.5  # a hand's wobble
        xy = [tuple(v) for v in p * scale]
        w = int(width * scale)
        pen.line(xy, fill=255, width=w, joint="curve")
        for x, y in (xy[0], xy[-1]):
            pen.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=255)
    ink = np.asarray(img.reduce(scale), dtype=np.float32) / 255.0
    tone = rng.uniform(0, 60)  # pen colour: black to dark gray
    if transparent if transparent is not None else rng.random() < 0.3:
        rgba = np.zeros((size, size, 4), np.uint8)
        rgba[..., :3] = tone
        rgba[..., 3] = (ink * 255).round()
        return Image.fromarray(rgba, "RGBA")
    paper = rng.uniform(225, 255)
    return Image.fromarray((paper - ink * (paper - tone)).round().astype(np.uint8), "L")


def make_set(folder, per_digit=30, seed=0):
    """Write ``per_digit`` drawings of each digit to ``folder/<digit>/<n>.png``; returns the
    number written."""
    from .persistence import atomic_write

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    for digit in range(10):
        for i in range(per_digit):
            with atomic_write(folder / str(digit) / f"{i:03d}.png") as f:
                draw_digit(digit, rng).save(f, format="PNG")
    return 10 * per_digit


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder")
    p.add_argument("--per-digit", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    n = make_set(args.folder, args.per_digit, args.seed)
    print(f"{n} drawings written to {args.folder}/<digit>/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
