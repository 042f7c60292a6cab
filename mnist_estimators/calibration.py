"""How far a classifier's confidence is from its accuracy: expected and maximum calibration
error, and the reliability curve behind both. Pure numpy.

A model is calibrated when, of the images it labels with confidence 0.8, 80% are right. The
measures here are *top-label* ones (Guo et al., "On Calibration of Modern Neural Networks",
ICML 2017): each sample counts once, by its highest probability (the confidence) and whether
that class is the true one. Samples are grouped by confidence into ``n_bins`` equal-width bins
of [0, 1], bin m = 1 ... n_bins holding the confidences in ((m - 1) / n_bins, m / n_bins] (the
first also takes 0, which only rows that do not sum to one can reach).

    ECE = sum over bins of  |B_m| / n * |accuracy(B_m) - mean confidence(B_m)|
    MCE = max over non-empty bins of  |accuracy(B_m) - mean confidence(B_m)|

Both are biased upwards on few samples: a perfectly calibrated model's expected ECE on n
samples is at most about sqrt(2 / pi) * 0.5 * sqrt(n_bins / n) (each bin's accuracy is a mean of
Bernoulli draws around its confidence): 0.005 at n = 100,000 with 15 bins, 0.015 at 10,000.
"""

from __future__ import annotations

from numbers import Integral
from typing import NamedTuple

import numpy as np


class ReliabilityCurve(NamedTuple):
    """Per-bin values of ``reliability_curve``, each an array of ``n_bins`` (``edges``: of
    ``n_bins + 1``). An empty bin has count 0 and NaN confidence and accuracy."""

    confidence: np.ndarray  # mean top-label probability of the bin's samples
    accuracy: np.ndarray    # fraction of them whose top-label class is the true one
    count: np.ndarray       # how many samples fell in the bin
    edges: np.ndarray       # bin m is (edges[m], edges[m + 1]]

    @property
    def ece(self):
        """The expected calibration error: the count-weighted mean of the bins' gaps."""
        seen = self.count > 0
        gaps = np.abs(self.accuracy[seen] - self.confidence[seen])
        return float(np.sum(self.count[seen] * gaps) / self.count.sum())

    @property
    def mce(self):
        """The maximum calibration error: the largest gap of a non-empty bin."""
        seen = self.count > 0
        return float(np.max(np.abs(self.accuracy[seen] - self.confidence[seen])))


def reliability_curve(y_true, proba, *, classes=None, n_bins=15):
    """Mean confidence, accuracy and count of the samples in each equal-width confidence bin.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels: column indices of ``proba`` when ``classes`` is None, else values of
        ``classes``.
    proba : array-like of shape (n_samples, n_classes)
        Predicted probabilities, e.g. ``predict_proba(X)``; each in [0, 1].
    classes : array-like of shape (n_classes,), default=None
        The label of each column of ``proba`` (``estimator.classes_``). None: the labels are
        the column indices 0 ... n_classes - 1.
    n_bins : int, default=15
        Number of equal-width bins of [0, 1] (15, as in Guo et al. 2017).

    Returns
    -------
    ReliabilityCurve
        ``(confidence, accuracy, count, edges)``, per bin; empty bins have NaN confidence and
        accuracy. Its ``ece`` and ``mce`` are the two errors of this curve.

    See Also
    --------
    expected_calibration_error : the count-weighted mean gap of this curve.
    mnist_estimators.plots.reliability_diagram : this curve drawn.

    Examples
    --------
    >>> curve = reliability_curve([0, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]], n_bins=2)
    >>> curve.count.tolist(), curve.accuracy.tolist()
    ([0, 3], [nan, 0.6666666666666666])
    """
    confidence, correct, n_bins = _top_label(y_true, proba, classes, n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # side="left": a confidence equal to an edge falls in the bin that edge closes, (lo, hi];
    # comparing with the same ``edges`` array keeps 0.6 out of the bin (0.6000000000000001, 0.8]
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):  # empty bins: 0 / 0 -> NaN
        mean_conf = np.bincount(bins, weights=confidence, minlength=n_bins) / count
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / count
    return ReliabilityCurve(mean_conf, accuracy, count, edges)


def expected_calibration_error(y_true, proba, *, classes=None, n_bins=15):
    """Top-label expected calibration error (ECE) with equal-width confidence bins.

    The mean, weighted by each bin's share of the samples, of ``|accuracy - mean confidence|``
    over ``n_bins`` equal-width bins of the top-label probability (Guo et al., "On Calibration
    of Modern Neural Networks", ICML 2017). 0 is perfect; an over-confident network that
    says 0.99 and is right 95% of the time scores about 0.04.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels: column indices of ``proba`` when ``classes`` is None, else values of
        ``classes``.
    proba : array-like of shape (n_samples, n_classes)
        Predicted probabilities, e.g. ``predict_proba(X)``; each in [0, 1].
    classes : array-like of shape (n_classes,), default=None
        The label of each column of ``proba`` (``estimator.classes_``). None: the labels are
        the column indices 0 ... n_classes - 1.
    n_bins : int, default=15
        Number of equal-width bins of [0, 1].

    Returns
    -------
    float
        The ECE, in [0, 1].

    See Also
    --------
    maximum_calibration_error : the largest gap of one bin.
    reliability_curve : the per-bin values behind both.

    Examples
    --------
    >>> expected_calibration_error([0, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]], n_bins=2)
    0.1333...
    """
    return reliability_curve(y_true, proba, classes=classes, n_bins=n_bins).ece


def maximum_calibration_error(y_true, proba, *, classes=None, n_bins=15):
    """Top-label maximum calibration error (MCE): the largest ``|accuracy - mean confidence|``
    of a non-empty equal-width confidence bin (Guo et al. 2017).

    The worst case, where the ECE is the average: it weighs a bin of 3 samples like one of
    3,000, so it is noisy on small sets and with many bins. Parameters as
    ``expected_calibration_error``.

    Returns
    -------
    float
        The MCE, in [0, 1].

    Examples
    --------
    >>> maximum_calibration_error([0, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]], n_bins=2)
    0.1333...
    """
    return reliability_curve(y_true, proba, classes=classes, n_bins=n_bins).mce


def _top_label(y_true, proba, classes, n_bins):
    """Checked inputs as (confidence, correct as 0/1 floats, n_bins)."""
    if isinstance(n_bins, (bool, np.bool_)) or not isinstance(n_bins, Integral) or n_bins < 1:
        raise ValueError(f"The 'n_bins' parameter must be an int >= 1. Got {n_bins!r} instead.")
    proba = np.asarray(proba)
    if proba.ndim != 2 or proba.shape[0] == 0 or proba.shape[1] == 0:
        raise ValueError("proba must be a 2-D array of shape (n_samples, n_classes) with at "
                         f"least one sample and one class. Got shape {proba.shape} instead.")
    if not np.issubdtype(proba.dtype, np.number) or np.issubdtype(proba.dtype, np.complexfloating):
        raise ValueError(f"proba must hold real numbers. Got dtype {proba.dtype} instead.")
    proba = proba.astype(np.float64, copy=False)
    if not np.isfinite(proba).all():
        raise ValueError(f"proba must be finite. Got {int((~np.isfinite(proba)).sum())} NaN or "
                         "infinite value(s) instead.")
    # a float32 softmax can round to 1 + 1e-7: tolerated, then clipped
    low, high = proba.min(), proba.max()
    if low < -1e-6 or high > 1 + 1e-6:
        raise ValueError("proba must hold probabilities, in [0, 1]. Got values in "
                         f"[{low:.6g}, {high:.6g}] instead (scores or logits, not probabilities?).")
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"y_true must be a 1-D array of labels. Got shape {y.shape} instead.")
    if len(y) != len(proba):
        raise ValueError(f"y_true and proba must have the same number of samples. Got "
                         f"{len(y)} labels and proba of shape {proba.shape} instead.")
    n_classes = proba.shape[1]
    if classes is None:
        column = _column_indices(y, n_classes)
    else:
        column = _lookup(y, classes, n_classes)
    predicted = proba.argmax(axis=1)
    confidence = np.clip(proba[np.arange(len(proba)), predicted], 0.0, 1.0)
    return confidence, (predicted == column).astype(np.float64), int(n_bins)


def _column_indices(y, n_classes):
    message = (f"y_true must hold column indices of proba (integers in [0, {n_classes})) when "
               "'classes' is None; pass classes=estimator.classes_ for other labels.")
    if y.dtype.kind in "iu":
        column = y.astype(np.int64)
    elif y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0):
        column = y.astype(np.int64)  # 3.0 is column 3; 3.5 is nothing
    else:
        raise ValueError(f"{message} Got labels such as {_some(y)} instead.")
    outside = (column < 0) | (column >= n_classes)
    if outside.any():
        raise ValueError(f"{message} Got labels such as {_some(y[outside])} instead.")
    return column


def _lookup(y, classes, n_classes):
    classes = np.asarray(classes)
    if classes.ndim != 1 or len(classes) != n_classes:
        raise ValueError(f"classes must name each of the {n_classes} columns of proba once. Got "
                         f"shape {classes.shape} instead.")
    # a dict, not searchsorted: it takes any mix of label types numpy cannot order (a few ms
    # on 10,000 labels)
    index = {label: i for i, label in enumerate(classes.tolist())}
    if len(index) != n_classes:
        raise ValueError(f"classes must not repeat a label. Got {classes.tolist()!r} instead.")
    column = np.array([index.get(label, -1) for label in y.tolist()], dtype=np.int64)
    unknown = column < 0
    if unknown.any():
        raise ValueError(f"y_true holds labels that are not in classes {classes.tolist()!r}. "
                         f"Got labels such as {_some(y[unknown])} instead.")
    return column


def _some(values, k=5):
    """Up to ``k`` distinct values, for an error message."""
    seen = list(dict.fromkeys(np.asarray(values, dtype=object).tolist()))
    return repr(seen[:k]) + (f" (and {len(seen) - k} more)" if len(seen) > k else "")


__all__ = ["ReliabilityCurve", "expected_calibration_error", "maximum_calibration_error",
           "reliability_curve"]
