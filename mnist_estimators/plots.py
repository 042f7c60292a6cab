"""Matplotlib figures, each a function: data or a fitted net in, ``Figure`` out.

Figures are built with the object API on the Agg canvas (no pyplot state), so they are safe to
make from any thread and never open a window.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _figure(*size):
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def learning_curves(history):
    """Train against validation loss (and validation accuracy) per epoch, from a skorch History."""
    epochs = np.arange(1, len(history) + 1)
    fig = _figure(8, 3.2)
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
    fig = _figure(5, 4.5)
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
    fig = _figure(cols * 1.1, rows * 1.3 + 0.4)
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
    """Weight distribution of each layer across epochs (seed 000, figure 2).

    ``snapshots`` maps layer name -> list of (epoch, weights 1-D array).
    """
    names = list(snapshots)
    fig = _figure(4 * max(1, len(names)), 3.2)
    axes = np.atleast_1d(fig.subplots(1, max(1, len(names))))
    for ax, name in zip(axes, names):
        series = snapshots[name]
        colors = np.linspace(0.2, 1.0, len(series))
        for (epoch, weights), c in zip(series, colors):
            ax.hist(weights, bins=60, histtype="step", color=(0.1, 0.3, c),
                    label=f"epoch {epoch}")
        ax.set(title=name, xlabel="weight", ylabel="count")
    if names:
        axes[0].legend(fontsize=7)
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
    fig = _figure(5.5, 5)
    ax = fig.subplots()
    for label in np.unique(y):
        sel = np.asarray(y) == label
        ax.scatter(points[sel, 0], points[sel, 1], s=6, label=str(label))
    ax.legend(markerscale=3, fontsize=7, ncols=2)
    ax.set(title=f"Penultimate-layer activations ({method.upper()}, n={len(features)})")
    return fig
