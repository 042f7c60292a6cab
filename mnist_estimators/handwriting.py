"""Bring a real digit's stroke width and slant into MNIST's range, before the 20x20 fit.

MNIST's writers used pens of similar width, on forms scanned at one resolution; real inputs come
as a hairline on a 400 px canvas, a finger's bold stroke, a blurred photo, a strongly slanted
hand. ``preprocess_image`` calls ``normalize_width`` and ``normalize_slant`` on the cropped ink
(light on 0, peak 1, any resolution). Both leave a digit alone when it already lies inside
MNIST's own range (measured: ``benchmarks/bench_realworld.py`` scores MNIST's test set through
``preprocess_image`` with and without them, and the default CNN scores it no worse with them).

Every quantity is measured the same way on MNIST (by ``mnist_statistics``, on the training set's
crops) and on an input, relative to the digit's long side as ``DIGIT_BOX`` (20) px, so the
ranges below carry to any resolution:

- **stroke width**: twice the area of the stroke's core over its perimeter (a band of width
  w and length L has area wL and perimeter ~2L). The core is the ink at least half as bright as
  the brightest ink near it (a window of an eighth of the long side), so a faint or blurred
  stroke keeps its whole line;
- **softness**: the share of the ink outside that core (0.07 for a typical MNIST digit, ~0.25 for
  a Gaussian-blurred line);
- **skew**: the second-moment slant ``mu11 / mu02`` of the ink (y down; negative leans right).

A stroke thinner than MNIST's 1st percentile, or softer than its 99.5th, is redrawn along its
skeleton at MNIST's median width (thinning: scipy has none, and scikit-image is not in the stack,
so ``skeleton`` is Zhang and Suen's algorithm, vectorised). Thick strokes are kept: redrawing a
bold digit from its skeleton lost more (closed loops) than it gained on the validation split of
the hard stroke set. A skew outside MNIST's middle half (25th-75th percentiles) is sheared back
to the nearer bound: on that validation split, the middle half read better than the 5th-95th
percentiles (94.3% against 93.7% for the default CNN) and MNIST's own test digits too.
"""

from __future__ import annotations

import numpy as np

DIGIT_BOX = 20  # px: MNIST's box for the digit's long side (data.DIGIT_BOX)
# Measured by mnist_statistics() on MNIST's 60,000 training digits (tests/test_handwriting.py
# measures them again when the data are present):
MNIST_STROKE_WIDTH = 2.11  # median stroke width, px of the 20-px box
MNIST_MIN_STROKE_WIDTH = 1.44  # 1st percentile: thinner is thickened
MNIST_MAX_SOFTNESS = 0.186  # 99.5th percentile of softness: blurrier is redrawn
MNIST_SKEW_RANGE = (-0.311, 0.063)  # 25th and 75th percentiles of mu11/mu02
# The width a redrawn stroke is drawn at, at the input's resolution, so that in the 28x28 frame it
# measures as MNIST's median: the fit to 20 px blurs a crisp edge, and a stroke of 2.11 drawn
# measures 1.56 there (tests/test_handwriting.py measures it on four pens and canvases).
REDRAW_WIDTH = 2.9
CORE_WINDOW = 0.125  # the window of "the brightest ink near it", a share of the long side
WORK_SIDE = 160  # px: skeletons are taken on the core pooled to at most this long side


def ink_core(ink):
    """The stroke's core: ink at least half as bright as the brightest ink near it."""
    from scipy.ndimage import maximum_filter

    size = max(3, int(max(ink.shape) * CORE_WINDOW) | 1)
    return (ink >= 0.5 * maximum_filter(ink, size=size)) & (ink > 0)


def _pool(mask, side=WORK_SIDE):
    """A boolean mask any-pooled (a thin line survives) to a long side of at most ``side``."""
    h, w = mask.shape
    k = max(1, -(-max(h, w) // side))
    if k == 1:
        return mask
    padded = np.pad(mask, ((0, -h % k), (0, -w % k)))
    return padded.reshape(padded.shape[0] // k, k, padded.shape[1] // k, k).any(axis=(1, 3))


def stroke_width(core):
    """Stroke width of a boolean ``core``, in px of a ``DIGIT_BOX`` long side: 2 area/perimeter."""
    core = _pool(core).astype(np.float32)
    gy, gx = np.gradient(np.pad(core, 1))
    perimeter = float(np.hypot(gy, gx).sum())
    return 2 * float(core.sum()) / max(perimeter, 1e-9) * DIGIT_BOX / max(core.shape)


def softness(ink, core):
    """Share of the ink's mass outside its core: 0 for a crisp stroke, ~0.25 blurred."""
    return float(ink[~core].sum() / max(float(ink.sum()), 1e-9))


def skeleton(mask):
    """One-pixel-wide skeleton of a boolean mask (Zhang and Suen 1984, both sub-iterations
    vectorised over the whole image)."""
    b = np.pad(mask.astype(bool), 1)
    while True:
        changed = False
        for step in (0, 1):
            p = np.pad(b, 1)
            # the 8 neighbours P2..P9, clockwise from north
            n = [p[:-2, 1:-1], p[:-2, 2:], p[1:-1, 2:], p[2:, 2:],
                 p[2:, 1:-1], p[2:, :-2], p[1:-1, :-2], p[:-2, :-2]]
            count = sum(x.astype(np.uint8) for x in n)
            transitions = sum((~n[i] & n[(i + 1) % 8]).astype(np.uint8) for i in range(8))
            p2, _, p4, _, p6, _, p8, _ = n
            if step == 0:
                keep = (p2 & p4 & p6) | (p4 & p6 & p8)
            else:
                keep = (p2 & p4 & p8) | (p2 & p6 & p8)
            remove = b & (count >= 2) & (count <= 6) & (transitions == 1) & ~keep
            if remove.any():
                b &= ~remove
                changed = True
        if not changed:
            return b[1:-1, 1:-1]


def redraw(core, width=REDRAW_WIDTH):
    """The stroke of ``core`` drawn again along its skeleton, ``width`` px of the 20-px box wide
    (anti-aliased edges), cropped to its ink: float32 in [0, 1]."""
    from scipy.ndimage import distance_transform_edt

    core = _pool(core)
    target = width * max(core.shape) / DIGIT_BOX  # in the pooled image's px
    line = np.pad(skeleton(core), int(np.ceil(target)) + 2)
    ink = np.clip(target / 2 + 0.5 - distance_transform_edt(~line), 0.0, 1.0).astype(np.float32)
    rows, cols = np.nonzero(ink.any(axis=1))[0], np.nonzero(ink.any(axis=0))[0]
    return ink[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]


def normalize_width(ink):
    """``ink`` (cropped, light on 0, peak 1) with a stroke too thin or too blurred for MNIST
    redrawn at MNIST's median width; else ``ink`` itself."""
    core = ink_core(ink)
    if (stroke_width(core) >= MNIST_MIN_STROKE_WIDTH
            and softness(ink, core) <= MNIST_MAX_SOFTNESS):
        return ink
    return redraw(core)


def skew(ink):
    """(mu11 / mu02, the centre row) of the ink's intensity; y down, negative leans right."""
    h, w = ink.shape
    mass = float(ink.sum())
    rows, cols = ink.sum(axis=1), ink.sum(axis=0)
    cy = float(rows @ np.arange(h)) / mass
    cx = float(cols @ np.arange(w)) / mass
    dy, dx = np.arange(h)[:, None] - cy, np.arange(w)[None, :] - cx
    mu02 = float((ink * dy * dy).sum()) / mass
    mu11 = float((ink * dy * dx).sum()) / mass
    return mu11 / max(mu02, 1e-9), cy


def normalize_slant(ink):
    """``ink`` sheared so that its skew lies in MNIST's middle half (the nearer bound);
    ``ink`` itself when it does."""
    from PIL import Image

    value, cy = skew(ink)
    s = value - float(np.clip(value, *MNIST_SKEW_RANGE))
    if s == 0:
        return ink
    h, w = ink.shape
    extra = int(np.ceil(abs(s) * h)) + 2
    # output (x', y) reads input x = x' - extra + s * (y - cy): the shear x' = x - s (y - cy)
    sheared = Image.fromarray(ink.astype(np.float32), mode="F").transform(
        (w + 2 * extra, h), Image.Transform.AFFINE, (1, s, -extra - s * cy, 0, 1, 0),
        resample=Image.Resampling.BILINEAR)
    out = np.clip(np.asarray(sheared), 0.0, 1.0)
    cols = np.nonzero(out.max(axis=0) > 0)[0]
    return out[:, cols[0]: cols[-1] + 1]


def rotate(ink, degrees):
    """``ink`` turned by ``degrees`` (counter-clockwise as displayed), bilinear, on a canvas
    grown to hold it and cropped back to the ink; ``ink`` itself for 0."""
    if degrees == 0:
        return ink
    from scipy.ndimage import rotate as nd_rotate

    out = np.clip(nd_rotate(ink, degrees, reshape=True, order=1, cval=0.0), 0.0, 1.0)
    rows, cols = np.nonzero(out.max(axis=1) > 0)[0], np.nonzero(out.max(axis=0) > 0)[0]
    return out[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]


def mnist_statistics(crops):
    """The percentiles behind this module's constants, measured on ``crops``: MNIST digits as
    ``preprocess_image`` crops them before these steps (e.g. ``data.ink_crop(row.reshape(28,
    28))`` for each row of ``load_mnist("train")``). A dict of stroke width (1st, 50th
    percentiles), softness (99.5th) and skew (25th, 75th)."""
    widths, soft, skews = [], [], []
    for ink in crops:
        core = ink_core(ink)
        widths.append(stroke_width(core))
        soft.append(softness(ink, core))
        skews.append(skew(ink)[0])
    return {"stroke_width": tuple(float(v) for v in np.percentile(widths, [1, 50])),
            "softness": float(np.percentile(soft, 99.5)),
            "skew": tuple(float(v) for v in np.percentile(skews, [25, 75]))}
