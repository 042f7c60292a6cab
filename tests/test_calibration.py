"""Calibration measures (top-label ECE, MCE, reliability curve) and their figure."""

import doctest

import numpy as np
import pytest

from mnist_estimators import calibration, plots
from mnist_estimators.calibration import (
    expected_calibration_error,
    maximum_calibration_error,
    reliability_curve,
)

# Hand-computed over-confident case, two bins hit with 15 bins:
#   4 rows say class 0 with 0.95, 2 of them right: accuracy 0.5, gap 0.45
#   6 rows say class 1 with 0.70, 3 of them right: accuracy 0.5, gap 0.20
# ECE = 0.4 * 0.45 + 0.6 * 0.20 = 0.30; MCE = 0.45
PROBA = np.array([[0.95, 0.05]] * 4 + [[0.3, 0.7]] * 6)
LABELS = np.array([0, 0, 1, 1, 1, 1, 1, 0, 0, 0])


def _calibrated(n, n_classes=10, seed=0):
    """Probabilities and labels drawn from them: calibrated by construction (for every row,
    P(label = argmax) = max probability)."""
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.full(n_classes, 0.3), size=n)
    # inverse-CDF draw of one label per row, vectorised
    labels = (proba.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    return np.minimum(labels, n_classes - 1), proba


def test_calibrated_probabilities_have_an_ece_near_zero():
    y, proba = _calibrated(100_000)
    # Each bin's accuracy is a mean of n_m Bernoulli draws whose mean is the bin's mean
    # confidence, so E|gap_m| <= sqrt(2/pi) * 0.5 / sqrt(n_m), and by Cauchy-Schwarz
    # E[ECE] <= sqrt(2/pi) * 0.5 * sqrt(n_bins / n) = 0.0049 here; 0.01 is twice that bound.
    ece = expected_calibration_error(y, proba)
    assert 0 <= ece < 0.01
    # the same probabilities sharpened (p**3, renormalised) are over-confident: far larger
    sharp = proba ** 3 / (proba ** 3).sum(axis=1, keepdims=True)
    assert expected_calibration_error(y, sharp) > 0.05


def test_an_over_confident_model_has_the_hand_computed_errors():
    assert expected_calibration_error(LABELS, PROBA) == pytest.approx(0.30)
    assert maximum_calibration_error(LABELS, PROBA) == pytest.approx(0.45)
    curve = reliability_curve(LABELS, PROBA)
    assert curve.count.sum() == 10 and (curve.count > 0).sum() == 2
    assert curve.count[14] == 4 and curve.count[10] == 6  # (14/15, 1] and (10/15, 11/15]
    np.testing.assert_allclose(curve.confidence[[10, 14]], [0.7, 0.95])
    np.testing.assert_allclose(curve.accuracy[[10, 14]], [0.5, 0.5])
    assert np.isnan(curve.accuracy[0]) and np.isnan(curve.confidence[0])
    np.testing.assert_allclose(curve.edges, np.linspace(0, 1, 16))


def test_a_perfect_confident_model_has_zero_error():
    proba = np.eye(3)[[0, 1, 2, 2]]
    assert expected_calibration_error([0, 1, 2, 2], proba) == 0.0
    assert maximum_calibration_error([0, 1, 2, 2], proba) == 0.0


def test_one_bin_is_the_gap_between_mean_accuracy_and_mean_confidence():
    y, proba = _calibrated(500, seed=1)
    sharp = proba ** 2 / (proba ** 2).sum(axis=1, keepdims=True)
    accuracy = np.mean(sharp.argmax(axis=1) == y)
    assert expected_calibration_error(y, sharp, n_bins=1) == pytest.approx(
        abs(accuracy - sharp.max(axis=1).mean()))


def test_bins_are_closed_on_the_right():
    # 0.5 with 2 bins is in (0, 0.5]; 0.6 with 5 bins in (0.4, 0.6] although linspace's edge
    # is 0.6000000000000001; 1.0 in the last bin
    assert reliability_curve([0], [[0.5, 0.5]], n_bins=2).count.tolist() == [1, 0]
    assert reliability_curve([0], [[0.6, 0.4]], n_bins=5).count.tolist() == [0, 0, 1, 0, 0]
    assert reliability_curve([0], [[1.0, 0.0]], n_bins=3).count.tolist() == [0, 0, 1]


def test_more_bins_than_samples_and_a_zero_confidence():
    curve = reliability_curve(LABELS, PROBA, n_bins=1000)
    assert curve.count.sum() == 10 and len(curve.count) == 1000
    assert expected_calibration_error(LABELS, PROBA, n_bins=1000) == pytest.approx(0.30)
    # a row of zeros (not a distribution, but finite) lands in the first bin
    assert reliability_curve([0], [[0.0, 0.0]], n_bins=4).count.tolist() == [1, 0, 0, 0]


@pytest.mark.parametrize("n_bins", [0, -3, 2.5, "15", True, None])
def test_n_bins_must_be_a_positive_int(n_bins):
    with pytest.raises(ValueError, match=r"The 'n_bins' parameter must be an int >= 1\. Got "
                                         + repr(n_bins).replace(".", r"\.") + " instead"):
        expected_calibration_error(LABELS, PROBA, n_bins=n_bins)


def test_numpy_integer_n_bins_is_accepted():
    assert expected_calibration_error(LABELS, PROBA, n_bins=np.int64(15)) == pytest.approx(0.30)


@pytest.mark.parametrize("proba, match", [
    (np.full(10, 0.5), r"2-D array .* Got shape \(10,\) instead"),
    (np.full((10, 2, 1), 0.5), r"Got shape \(10, 2, 1\) instead"),
    (np.empty((0, 2)), r"at least one sample .* Got shape \(0, 2\) instead"),
    (np.full((10, 2), np.nan), r"must be finite\. Got 20 NaN"),
    (np.full((10, 2), 3.0), r"in \[0, 1\]\. Got values in \[3, 3\] instead \(scores or logits"),
    (np.full((10, 2), "a"), r"real numbers\. Got dtype <U1"),
])
def test_bad_probabilities_are_named_with_their_shape_or_values(proba, match):
    with pytest.raises(ValueError, match=match):
        expected_calibration_error(LABELS, proba)


def test_float32_rounding_above_one_is_tolerated():
    proba = np.array([[1 + 1e-7, 0.0]], dtype=np.float64)
    assert expected_calibration_error([0], proba) == pytest.approx(0.0)


@pytest.mark.parametrize("y, match", [
    (LABELS[:9], r"same number of samples\. Got 9 labels and proba of shape \(10, 2\)"),
    (LABELS.reshape(5, 2), r"1-D array of labels\. Got shape \(5, 2\) instead"),
    (np.r_[LABELS[:9], 2], r"integers in \[0, 2\).* Got labels such as \[2\] instead"),
    (np.r_[LABELS[:9], -1], r"Got labels such as \[-1\] instead"),
    (np.r_[LABELS[:9], 0.5], r"Got labels such as .*0\.5.* instead"),
    (np.array(["a"] * 10), r"pass classes=estimator\.classes_ .* Got labels such as \['a'\]"),
])
def test_labels_must_be_column_indices_without_classes(y, match):
    with pytest.raises(ValueError, match=match):
        expected_calibration_error(y, PROBA)


def test_integral_float_labels_are_column_indices():
    assert expected_calibration_error(LABELS.astype(float), PROBA) == pytest.approx(0.30)


def test_string_labels_with_classes():
    names = np.array(["cat", "dog"])
    assert expected_calibration_error(names[LABELS], PROBA, classes=names) == pytest.approx(0.30)
    # classes in any order: column j is classes[j]
    flipped = PROBA[:, ::-1]
    assert expected_calibration_error(list(names[LABELS]), flipped,
                                      classes=["dog", "cat"]) == pytest.approx(0.30)
    # MNIST's own: integer labels with an estimator's classes_ (not starting at 0)
    assert expected_calibration_error(LABELS + 3, PROBA, classes=[3, 4]) == pytest.approx(0.30)


@pytest.mark.parametrize("classes, y, match", [
    (["cat"], None, r"each of the 2 columns of proba once\. Got shape \(1,\) instead"),
    (["cat", "cat"], None, r"must not repeat a label\. Got \['cat', 'cat'\] instead"),
    (["cat", "dog"], np.array(["cat"] * 9 + ["cow"]), r"not in classes \['cat', 'dog'\]\. Got "
                                                      r"labels such as \['cow'\] instead"),
    (["cat", "dog"], LABELS, r"Got labels such as \[0, 1\] instead"),
])
def test_classes_must_match_the_columns_and_the_labels(classes, y, match):
    y = np.array(["cat"] * 10) if y is None else y
    with pytest.raises(ValueError, match=match):
        expected_calibration_error(y, PROBA, classes=classes)


def test_docstring_examples():
    failed, _ = doctest.testmod(calibration, optionflags=doctest.ELLIPSIS)
    assert failed == 0


def test_reliability_diagram_is_an_image_for_any_labels_and_bins():
    y, proba = _calibrated(300, seed=2)
    image = plots.reliability_diagram(y, proba)
    assert image.mode == "RGB" and image.width > 300 and image.height > 300
    # string labels and one bin go through the same checks
    names = np.array(list("abcdefghij"))
    plots.reliability_diagram(names[y], proba, classes=names, n_bins=1)
    with pytest.raises(ValueError, match="'n_bins' parameter"):
        plots.reliability_diagram(y, proba, n_bins=0)
