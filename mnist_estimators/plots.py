"""Matplotlib figures, each a function: data or a fitted net in, ``Figure`` out.

Figures are built with the object API on the Agg canvas (no pyplot state), so they are safe to
make from any thread and never open a window. Margins are set by hand: matplotlib's constrained
layout measures every text twice and cost ~45% of a tracked fit's figure time.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _figure(*size, **margins):
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


def confusion_matrix(y_true, y_pred, labels):
    """Counts of true (rows) against predicted (columns) labels."""
    from sklearn.metrics import confusion_matrix as cm

    counts = cm(y_true, y_pred, labels=labels)
    fig = _figure(5, 4.5, left=0.12, right=0.98, bottom=0.11, top=0.93)
    ax = fig.subplots()
    im = ax.imshow(counts, cmap="Blues")
    fig.colorbar(im, ax=ax)
    ticks = np.arange(len(labels))
    ax.set(xticks=ticks, yticks=ticks, xticklabels=labels, yticklabels=labels,
           xlabel="predicted", ylabel="true", title=f"Confusion matrix (n={len(y_true)})")
    for i, j in zip(*np.nonzero(counts)):
        ax.text(j, i, counts[i, j], ha="center", va="center", fontsize=7,
                color="white" if counts[i, j] > counts.max() / 2 else "black")
    return fig


def misclassified_grid(X, y_true, y_pred, max_images=36):
    """The first ``max_images`` misclassified digits, labelled ``true -> predicted``.

    Drawn as one mosaic image (one axes), which renders ~10x faster than a subplot per digit.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    wrong = np.flatnonzero(y_true != y_pred)[:max_images]
    side = int(round(np.sqrt(np.asarray(X).shape[1])))
    cols = 6
    rows = max(1, int(np.ceil(len(wrong) / cols)))
    cell = side + 10  # room for the label above each digit
    mosaic = np.zeros((rows * cell, cols * side + (cols - 1) * 2), dtype=np.float32)
    fig = _figure(cols * 1.1, rows * 1.3 + 0.4, left=0.02, right=0.98, bottom=0.02,
                  top=1 - 0.35 / (rows * 1.3 + 0.4))
    ax = fig.subplots()
    for k, i in enumerate(wrong):
        r, c = divmod(k, cols)
        top, left = r * cell + 10, c * (side + 2)
        mosaic[top:top + side, left:left + side] = np.asarray(X[i], dtype=np.float32).reshape(side, side)
        ax.text(left + side / 2, top - 2, f"{y_true[i]} -> {y_pred[i]}", ha="center",
                va="bottom", color="yellow", fontsize=7)
    ax.imshow(mosaic, cmap="gray", interpolation="nearest")
    ax.axis("off")
    ax.set_title(f"Misclassified: {int((y_true != y_pred).sum())} of {len(y_true)}"
                 + ("" if len(wrong) else " (none)"))
    return fig


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
    ax.set(title=f"Penultimate-layer activations ({method.upper()}, n={len(features)})")
    return fig
