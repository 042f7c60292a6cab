"""Figures, each a function: data or a fitted net in, a matplotlib ``Figure`` (or, for the three
drawn at every tracked fit, a PIL image) out.

Figures are built with the object API on the Agg canvas (no pyplot state), so they are safe to
make from any thread and never open a window. Margins are set by hand: matplotlib's constrained
layout measures every text twice and cost ~45% of a tracked fit's figure time.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np


def _figure(*size, **margins):
    # imported here: the figures of every tracked fit are Pillow's, and matplotlib's Agg
    # canvas and Figure cost a fresh process ~0.17 s to import (benchmarks/bench_coldstart.py)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(**{"left": 0.1, "right": 0.97, "bottom": 0.14, "top": 0.88, **margins})
    return fig


def learning_curves(history):
    """Train against validation loss (and validation accuracy) per epoch, from a skorch History."""
    epochs = np.arange(1, len(history) + 1)
    fig = _figure(8, 3.2, left=0.08, wspace=0.25)
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, history[:, "train_loss"], "o-", label="train")
    if "valid_loss" in history[-1]:
        ax_loss.plot(epochs, history[:, "valid_loss"], "o-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_loss.legend()
    if "valid_acc" in history[-1]:
        ax_acc.plot(epochs, history[:, "valid_acc"], "o-", color="C1")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Validation accuracy")
    return fig


# The three figures of every tracked fit ("basic") are drawn with Pillow, not matplotlib: an Agg
# canvas spends ~90 ms a figure building and drawing tick and text artists, which was over half
# of a tracked fit's fixed cost; Pillow draws the same picture in a few milliseconds. matplotlib
# has no faster path for a labelled image, so these three are drawn by hand, in matplotlib's own
# font and colour map, and the richer figures ("all") stay in matplotlib.


@lru_cache(maxsize=4)
def _font(size):
    import matplotlib
    from PIL import ImageFont

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    return ImageFont.truetype(str(path), size) if path.exists() else ImageFont.load_default(size)


def _text(draw, xy, text, size, fill="black", anchor="mm"):
    draw.text(xy, str(text), fill=fill, font=_font(size), anchor=anchor)


def confusion_matrix(y_true, y_pred, labels, cell=36):
    """Counts of true (rows) against predicted (columns) labels, as a PIL image: each cell
    shaded by its count (matplotlib's "Blues") and labelled with it."""
    import matplotlib
    from PIL import Image, ImageDraw
    from sklearn.metrics import confusion_matrix as cm

    counts = cm(y_true, y_pred, labels=labels)
    n = len(labels)
    left, top, right, bottom = 58, 40, 12, 52
    image = Image.new("RGB", (left + n * cell + right, top + n * cell + bottom), "white")
    draw = ImageDraw.Draw(image)
    shades = matplotlib.colormaps["Blues"](counts / max(1, counts.max()))[..., :3] * 255
    for i in range(n):
        for j in range(n):
            x, y = left + j * cell, top + i * cell
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=tuple(int(v) for v in shades[i, j]))
            if counts[i, j]:
                dark = counts[i, j] > counts.max() / 2
                _text(draw, (x + cell / 2, y + cell / 2), counts[i, j], 11,
                      "white" if dark else "black")
        _text(draw, (left + i * cell + cell / 2, top + n * cell + 10), labels[i], 12)
        _text(draw, (left - 10, top + i * cell + cell / 2), labels[i], 12, anchor="rm")
    draw.rectangle([left - 1, top - 1, left + n * cell, top + n * cell], outline="black")
    _text(draw, (left + n * cell / 2, top + n * cell + 34), "predicted", 13)
    _text(draw, (left + n * cell / 2, 18), f"Confusion matrix (n={len(y_true)})", 14)
    label = Image.new("RGB", (n * cell, 20), "white")
    _text(ImageDraw.Draw(label), (n * cell / 2, 10), "true", 13)
    image.paste(label.rotate(90, expand=True), (8, top))
    return image


def misclassified_grid(X, y_true, y_pred, max_images=36, scale=2):
    """The first ``max_images`` misclassified digits, labelled ``true -> predicted``, as a PIL
    image: six a row, each digit enlarged ``scale`` times."""
    from PIL import Image, ImageDraw

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    wrong = np.flatnonzero(y_true != y_pred)[:max_images]
    side = int(round(np.sqrt(np.asarray(X).shape[1])))
    cols, gap, label, title = 6, 6, 16, 30
    size = side * scale
    rows = max(1, int(np.ceil(len(wrong) / cols)))
    image = Image.new("RGB", (cols * (size + gap) + gap, title + rows * (size + label + gap)), "white")
    draw = ImageDraw.Draw(image)
    _text(draw, (image.width / 2, title / 2),
          f"Misclassified: {int((y_true != y_pred).sum())} of {len(y_true)}"
          + ("" if len(wrong) else " (none)"), 14)
    for k, i in enumerate(wrong):
        r, c = divmod(k, cols)
        x, y = gap + c * (size + gap), title + r * (size + label + gap)
        pixels = np.asarray(X[i], dtype=np.float32).reshape(side, side)
        span = float(pixels.max() - pixels.min()) or 1.0
        digit = Image.fromarray(np.uint8(255 * (pixels - pixels.min()) / span), "L")
        image.paste(digit.resize((size, size), Image.NEAREST), (x, y + label))
        _text(draw, (x + size / 2, y + label / 2), f"{y_true[i]} → {y_pred[i]}", 12)
    return image


def reliability_diagram(y_true, proba, classes=None, n_bins=15, size=300):
    """Accuracy against confidence per equal-width confidence bin, as a PIL image: a bar per
    non-empty bin at its accuracy, the gap to the bin's mean confidence shaded red, the
    diagonal of perfect calibration dashed, the count of each bin below (log scale), and the
    top-label ECE (``calibration.expected_calibration_error``) in the title.

    Drawn with Pillow like the confusion matrix: it is logged at every tracked fit with a
    validation split. ``classes`` and ``n_bins`` as ``calibration.reliability_curve``;
    ``size`` is the side of the square plot in pixels.
    """
    from PIL import Image, ImageDraw

    from .calibration import reliability_curve

    curve = reliability_curve(y_true, proba, classes=classes, n_bins=n_bins)
    seen = curve.count > 0
    n = int(curve.count.sum())
    left, top, right, hist, gap, bottom = 58, 40, 16, 56, 10, 46
    image = Image.new("RGB", (left + size + right, top + size + gap + hist + bottom), "white")
    draw = ImageDraw.Draw(image, "RGBA")  # RGBA fills blend: the gap shows the bar under it
    x = lambda v: left + v * size  # noqa: E731 - confidence -> pixel column
    y = lambda v: top + (1 - v) * size  # noqa: E731 - accuracy -> pixel row
    blue, red, grey = (31, 119, 180), (214, 39, 40), (90, 90, 90)  # matplotlib C0, C3
    pale_red = red + (90,)
    for t in np.linspace(0, 1, 6):
        draw.line([x(t), top, x(t), top + size], fill=(235, 235, 235))
        draw.line([left, y(t), left + size, y(t)], fill=(235, 235, 235))
        _text(draw, (left - 6, y(t)), f"{t:.1f}", 10, anchor="rm")
        _text(draw, (x(t), top + size + gap + hist + 10), f"{t:.1f}", 10)
    for m in np.flatnonzero(seen):
        x0, x1 = x(curve.edges[m]) + 1, x(curve.edges[m + 1]) - 1
        acc, conf = curve.accuracy[m], curve.confidence[m]
        draw.rectangle([x0, y(acc), x1, y(0)], fill=blue, outline="white")
        # the gap to the bin's mean confidence (what the ECE averages): above the bar when
        # the bin is over-confident, over its top (translucent) when under-confident
        if abs(acc - conf) * size >= 1:
            draw.rectangle([x0, y(max(acc, conf)), x1, y(min(acc, conf))], fill=pale_red,
                           outline=red)
    for k in range(0, size, 8):  # the diagonal, dashed
        draw.line([x(k / size), y(k / size), x(min(k + 4, size) / size),
                   y(min(k + 4, size) / size)], fill=grey, width=2)
    draw.rectangle([left, top, left + size, top + size], outline="black")
    # counts: most samples of a good model sit in the last bin, so the bars are on a log
    # scale, or every other bin would be a line
    base = top + size + gap
    scale = np.log1p(curve.count) / max(np.log1p(curve.count.max()), 1e-9)
    for m in np.flatnonzero(seen):
        draw.rectangle([x(curve.edges[m]) + 1, base + hist * (1 - scale[m]),
                        x(curve.edges[m + 1]) - 1, base + hist], fill=(150, 150, 150))
    draw.rectangle([left, base, left + size, base + hist], outline="black")
    _text(draw, (left - 6, base + 5), int(curve.count.max()), 10, anchor="rm")
    _text(draw, (left - 6, base + hist / 2), "count", 10, anchor="rm")
    _text(draw, (left - 6, base + hist / 2 + 11), "(log)", 9, anchor="rm")
    _text(draw, (left - 6, base + hist - 5), 0, 10, anchor="rm")
    _text(draw, (left + size / 2, image.height - 14), "confidence (top-label probability)", 13)
    _text(draw, (left + size / 2, 18),
          f"Reliability (n={n}, ECE {curve.ece:.4f}, {n_bins} bins)", 14)
    lx, ly = left + 8, top + 8
    draw.rectangle([lx - 4, ly - 4, lx + 124, ly + 42], fill="white", outline=(200, 200, 200))
    draw.rectangle([lx, ly, lx + 12, ly + 10], fill=blue)
    draw.rectangle([lx, ly + 16, lx + 12, ly + 26], fill=pale_red, outline=red)
    for k in (0, 8):
        draw.line([lx + k, ly + 37, lx + k + 4, ly + 37], fill=grey, width=2)
    for i, name in enumerate(("accuracy", "gap to confidence", "calibrated")):
        _text(draw, (lx + 18, ly + 5 + 16 * i), name, 10, anchor="lm")
    label = Image.new("RGB", (size, 20), "white")
    _text(ImageDraw.Draw(label), (size / 2, 10), "accuracy", 13)
    image.paste(label.rotate(90, expand=True), (6, top))
    return image


def weight_histograms(snapshots):
    """Weight distribution of each layer across epochs (seed 000, figure 2): one panel per layer,
    two panels a row, each epoch a line from light (first) to dark (last).

    ``snapshots`` maps layer name -> list of (epoch, weights 1-D array).
    """
    import matplotlib

    names = list(snapshots) or ["(no weights)"]
    cols = min(2, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig = _figure(6 * cols, 3.6 * rows, left=0.08, right=0.97, bottom=0.1 / rows + 0.04,
                  top=1 - 0.35 / (3.6 * rows), wspace=0.22, hspace=0.45)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    cmap = matplotlib.colormaps["viridis_r"]
    for ax, name in zip(axes, names):
        series = snapshots.get(name, [])
        for i, (epoch, weights) in enumerate(series):
            ax.hist(weights, bins=80, histtype="step", linewidth=1.2,
                    color=cmap(0.15 + 0.85 * i / max(1, len(series) - 1)), label=f"epoch {epoch}")
        ax.set(title=name, xlabel="weight", ylabel="count")
        if 1 < len(series) <= 12:
            ax.legend(fontsize=7, ncols=2)
    for ax in axes[len(names):]:
        ax.axis("off")
    return fig


def embedding(features, y, method="pca", random_state=0):
    """2-D projection (PCA or t-SNE) of penultimate-layer activations, coloured by class
    (seed 000, figure 3)."""
    if method == "tsne":
        from sklearn.manifold import TSNE

        points = TSNE(n_components=2, init="pca", random_state=random_state,
                      perplexity=min(30, max(5, len(features) // 4))).fit_transform(features)
    else:
        from sklearn.decomposition import PCA

        points = PCA(n_components=2, random_state=random_state).fit_transform(features)
    fig = _figure(5.5, 5, top=0.93)
    ax = fig.subplots()
    for label in np.unique(y):
        sel = np.asarray(y) == label
        ax.scatter(points[sel, 0], points[sel, 1], s=6, label=str(label))
    ax.legend(markerscale=3, fontsize=7, ncols=2)
    ax.set(title=f"Penultimate-layer activations ({dict(tsne='t-SNE').get(method, method.upper())}, n={len(features)})")
    return fig
