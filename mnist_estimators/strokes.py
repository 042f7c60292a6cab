"""Digits drawn as pen strokes, the way people draw them on a canvas: a labelled test set that is
not MNIST.

Each digit is one or two strokes (polylines through a written shape), drawn with a random slant,
rotation, size, aspect, position, stroke width, wobble and canvas size, dark on light (some on a
transparent background, as a browser canvas exports them), anti-aliased. They are scripted
strokes, not human handwriting: a check of the preprocessing and of how far models trained on
MNIST carry to drawn input, not a measure of human variety.

Two levels: "easy" (the first set: one pen width per digit, mild slant, clean paper; the
default CNN scores ~100% on it) and "hard" (pen pressure from hairline to very bold, blur and
low resolution, strong slant and rotation, broken strokes, ruled or squared paper and scan
noise: see ``draw_digit``). Each has a test and a validation split (another seed).

    python -m mnist_estimators.strokes OUT_FOLDER [--level hard] [--split validation]
        [--per-digit 30] [--seed N]

writes ``OUT_FOLDER/<digit>/<n>.png``, a labelled folder that ``evaluate --images`` and
``load_images`` read, and ``OUT_FOLDER/factors.csv``, each drawing's transformations
(``read_factors``).
"""

from __future__ import annotations

import argparse
import csv
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


LEVELS = ("easy", "hard")
FACTORS_FILE = "factors.csv"
SPLITS = {"test": 0, "validation": 1}  # the seed of each split; choose on validation, report test


def draw_digit(digit, rng=None, canvas=None, transparent=None, level="easy"):
    """One drawn ``digit`` as a PIL image (RGBA when transparent, else L).

    ``level="easy"``: one pen width per digit, mild slant (shear -0.45 to 0.25) and rotation
    (up to 15 degrees), clean paper. ``level="hard"`` draws like real scanned handwriting:

    - pen pressure: a width from hairline (1 px) to very bold (a fifth of the digit's height),
      varying along the stroke by up to 2x either way;
    - blur and low resolution: some digits drawn on a 14-40 px canvas and then upscaled, some
      blurred (sigma up to 4% of the canvas);
    - strong slant (shear -0.8 to 0.5) and rotation (up to 30 degrees);
    - broken strokes: up to three gaps, each 3-10% of the stroke length;
    - ruled or squared paper (lines at 5-15% of the ink's contrast) and scan noise, besides
      plain paper and the transparent canvas.

    MNIST's own equivalents: its writers' pens varied in width (but not from hairline to bold:
    its strokes are 2-4 px wide in 28x28, see ``data.MNIST_STROKE_WIDTH``); its digits were
    scanned at 300 dpi from forms and downsampled (blur and low resolution); its slants go to
    about +-0.4 shear; it has no paper texture (the forms' boxes were cut away) and few gaps.
    """
    from PIL import Image, ImageDraw
    from scipy.ndimage import gaussian_filter  # Pillow's GaussianBlur takes no float images

    if level not in LEVELS:
        raise ValueError(f"The 'level' parameter must be one of {list(LEVELS)}. Got {level!r}.")
    hard = level == "hard"
    rng = np.random.default_rng(rng)
    size = int(canvas or rng.choice([140, 200, 280, 400]))
    small = hard and canvas is None and rng.random() < 0.3  # drawn small, upscaled at the end
    final_size, size = size, (int(rng.integers(14, 41)) if small else size)
    strokes = _shape(digit, rng)
    # slant, rotation, aspect and size, then a place on the canvas: as people draw
    slant = rng.uniform(-0.8, 0.5) if hard else rng.uniform(-0.45, 0.25)
    angle = np.radians(rng.uniform(-30, 30) if hard else rng.uniform(-15, 15))
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
    if hard:  # hairline to very bold, log-uniform: as many thin pens as bold ones
        width = float(np.exp(rng.uniform(np.log(1.0), np.log(max(1.5, 0.2 * np.ptp(pts[:, 1]))))))
    else:
        width = max(2.0, rng.uniform(0.025, 0.09) * size)
    room = np.maximum(size - (high - low) - 1.5 * width, 1)  # the pen's width inside too
    offset = rng.uniform(0.05, 0.95, 2) * room - low + 0.75 * width
    scale = 4  # drawn at 4x and reduced: anti-aliased strokes, as a canvas draws them
    img = Image.new("L", (size * scale, size * scale), 0)
    pen = ImageDraw.Draw(img)
    pressure = rng.uniform(0.0, np.log(2.0)) if hard else 0.0  # width varies up to 2x either way
    gaps = int(rng.integers(0, 4)) if hard and rng.random() < 0.5 else 0
    total = sum(_length(p) for p in out)
    cuts = [(c, c + rng.uniform(0.03, 0.1) * total) for c in rng.uniform(0.05, 0.95, gaps) * total]
    start = 0.0
    for p in out:
        p = p + offset
        p = p + np.cumsum(rng.normal(0, width * 0.04, p.shape), axis=0) * 0.5  # a hand's wobble
        if not hard:
            xy = [tuple(v) for v in p * scale]
            w = int(width * scale)
            pen.line(xy, fill=255, width=w, joint="curve")
            for x, y in (xy[0], xy[-1]):
                pen.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=255)
            continue
        p, along = _densify(p, step=max(width / 3, 0.5))
        along = along + start
        start = along[-1]
        w = width * np.exp(pressure * np.sin(along / total * rng.uniform(2, 8) + rng.uniform(0, 6.3)))
        drawn = ~np.any([(along >= a) & (along <= b) for a, b in cuts], axis=0) if cuts else \
            np.ones(len(p), bool)
        for i in range(len(p)):
            if not drawn[i]:
                continue
            r = max(w[i], 1.0) * scale / 2
            x, y = p[i] * scale
            pen.ellipse((x - r, y - r, x + r, y + r), fill=255)
            if i + 1 < len(p) and drawn[i + 1]:
                pen.line([(x, y), tuple(p[i + 1] * scale)], fill=255, width=int(2 * r))
    ink = np.asarray(img.reduce(scale), dtype=np.float32) / 255.0
    if hard and small:  # a small drawing upscaled, as a low-resolution scan or photo is
        ink = np.asarray(Image.fromarray(ink, mode="F").resize(
            (final_size, final_size), Image.Resampling.BILINEAR), dtype=np.float32)
    blur = 0.0
    if hard and not small and rng.random() < 0.4:  # out of focus
        blur = rng.uniform(0.5, 0.04 * size)
        ink = gaussian_filter(ink, blur)
    size = final_size
    ink = np.clip(ink / max(float(ink.max()), 1e-6), 0.0, 1.0)
    tone = rng.uniform(0, 60)  # pen colour: black to dark gray
    factors = {"level": level, "width": width / np.ptp(pts[:, 1]), "pressure": pressure,
               "small": small, "blur": blur / size, "slant": slant,
               "rotation": float(np.degrees(angle)), "gaps": gaps, "paper": "transparent"}
    if transparent if transparent is not None else rng.random() < (0.2 if hard else 0.3):
        rgba = np.zeros((size, size, 4), np.uint8)
        rgba[..., :3] = tone
        rgba[..., 3] = (ink * 255).round()
        return _with_factors(Image.fromarray(rgba, "RGBA"), factors)
    paper = rng.uniform(225, 255)
    if hard:
        lines, factors["paper"] = _paper_lines(size, rng)
        paper = paper - lines * (paper - tone)
        noise = rng.normal(0, rng.uniform(0, 0.03) * 255, (size, size)).astype(np.float32)
        noise = gaussian_filter(noise, 0.7)  # a scanner's noise is not pixel-sharp
        page = paper - ink * (paper - tone) + noise
    else:
        page = paper - ink * (paper - tone)
        factors["paper"] = "plain"
    return _with_factors(Image.fromarray(np.clip(page, 0, 255).round().astype(np.uint8), "L"),
                         factors)


def _with_factors(image, factors):
    """``image`` with what was drawn in ``image.info["factors"]``: which of the hard level's
    transformations, how strong (widths and blur relative to the digit's height and canvas)."""
    image.info["factors"] = {k: (round(float(v), 4) if isinstance(v, (float, np.floating)) else
                                 bool(v) if isinstance(v, (bool, np.bool_)) else
                                 int(v) if isinstance(v, (int, np.integer)) else str(v))
                             for k, v in factors.items()}
    return image


def _length(p):
    return float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum())


def _densify(p, step):
    """Points every ``step`` px along the polyline ``p``, and the distance of each from its start."""
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    along = np.concatenate([[0.0], np.cumsum(seg)])
    at = np.linspace(0.0, along[-1], max(2, int(along[-1] / step) + 1))
    return np.stack([np.interp(at, along, p[:, 0]), np.interp(at, along, p[:, 1])], 1), at


def _paper_lines(size, rng):
    """Plain (0), ruled or squared paper: an (size, size) array of line strength in [0, 0.15]."""
    kind = rng.choice(["plain", "ruled", "squared"])
    lines = np.zeros((size, size), np.float32)
    if kind == "plain":
        return lines, str(kind)
    spacing = max(4, int(rng.uniform(0.1, 0.3) * size))
    strength = rng.uniform(0.05, 0.15)
    first = int(rng.integers(0, spacing))
    lines[first::spacing, :] = strength
    if kind == "squared":
        lines[:, int(rng.integers(0, spacing))::spacing] = strength
    return lines, str(kind)


def make_set(folder, per_digit=30, seed=None, level="easy", split="test"):
    """Write ``per_digit`` drawings of each digit to ``folder/<digit>/<n>.png``; returns the
    number written.

    ``level`` is "easy" or "hard" (see ``draw_digit``); ``split`` "test" or "validation" draws
    a different set of the same level (its seed, ``SPLITS``): choose on validation, report on
    test. An explicit ``seed`` overrides the split's.
    """
    from .persistence import atomic_write

    if split not in SPLITS:
        raise ValueError(f"The 'split' parameter must be one of {list(SPLITS)}. Got {split!r}.")
    if level not in LEVELS:
        raise ValueError(f"The 'level' parameter must be one of {list(LEVELS)}. Got {level!r}.")
    if seed is None:  # the easy test set is seed 0, as it always was
        seed = SPLITS[split] + (100 if level == "hard" else 0)
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    rows = []
    for digit in range(10):
        for i in range(per_digit):
            image = draw_digit(digit, rng, level=level)
            with atomic_write(folder / str(digit) / f"{i:03d}.png") as f:
                image.save(f, format="PNG")
            rows.append({"file": f"{digit}/{i:03d}.png", "digit": digit, **image.info["factors"]})
    with atomic_write(folder / FACTORS_FILE, "w") as f:  # written last: the set is whole
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return 10 * per_digit


def read_factors(folder):
    """The ``factors.csv`` that ``make_set`` wrote in ``folder``, as a pandas DataFrame indexed
    by file (``<digit>/<n>.png``): what each drawing's transformations were."""
    import pandas as pd

    path = Path(folder) / FACTORS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {folder} was not written by make_set "
                                "(or was written by a version before 0.9).")
    return pd.read_csv(path, index_col="file")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder")
    p.add_argument("--per-digit", type=int, default=30)
    p.add_argument("--level", choices=LEVELS, default="easy")
    p.add_argument("--split", choices=list(SPLITS), default="test")
    p.add_argument("--seed", type=int, default=None, help="overrides the split's seed")
    args = p.parse_args(argv)
    n = make_set(args.folder, args.per_digit, args.seed, level=args.level, split=args.split)
    print(f"{n} drawings written to {args.folder}/<digit>/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
