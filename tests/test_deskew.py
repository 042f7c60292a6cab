"""Deskewing (``deskew=True``, the CNN's default): what it does to a frame, and that fit and
predict both see it."""

import pickle

import numpy as np
import pytest
import torch
from conftest import X_TEST, X_TRAIN, Y_TRAIN

from mnist_estimators import CNNClassifier, MLPClassifier
from mnist_estimators.training.deskew import deskew, skew

FAST = {"max_epochs": 2, "batch_size": 64, "random_state": 0, "tracking": False,
        "validation_fraction": None}


def frames(X):
    return torch.from_numpy(np.asarray(X, dtype=np.float32) / 255)


def centres(frame):
    """The ink's centre column in each row that has ink."""
    rows = frame.sum(1)
    cols = frame @ torch.arange(frame.shape[1], dtype=frame.dtype)
    keep = rows > 0
    return cols[keep] / rows[keep]


def leaning_bar():
    """A 3 px wide stroke from (row 4, col 18) to (row 23, col 9): leaning right, slant -0.47."""
    img = torch.zeros(28, 28)
    for r in range(4, 24):
        c = 18 + (r - 4) * (9 - 18) / 19
        for dc in (-1, 0, 1):
            img[r, int(round(c)) + dc] = 1.0
    return img


def test_a_leaning_stroke_stands_upright_about_its_centre_of_mass():
    bar = leaning_bar()
    slant, cy = skew(bar[None])
    assert slant.item() == pytest.approx(-0.47, abs=0.03)
    out = deskew(bar.reshape(1, 784)).reshape(28, 28)
    assert abs(skew(out[None])[0].item()) < 0.01
    # every row's ink now sits in one column, the centre of mass where it was
    before, after = centres(bar), centres(out)
    assert float(before.max() - before.min()) > 8
    assert float(after.max() - after.min()) < 0.6
    assert float((after * out.sum(1)[out.sum(1) > 0]).sum() / out.sum()) == pytest.approx(
        float((before * bar.sum(1)[bar.sum(1) > 0]).sum() / bar.sum()), abs=0.05)
    assert skew(out[None])[1].item() == pytest.approx(cy.item(), abs=1e-4)  # rows stay put
    assert float(out.sum()) == pytest.approx(float(bar.sum()), rel=0.01)


def test_frames_without_a_slant_to_measure_are_left_alone():
    upright = torch.zeros(28, 28)
    upright[4:24, 13:16] = 1.0  # a vertical stroke
    flat = torch.zeros(28, 28)
    flat[14, 5:23] = 1.0  # one row: no vertical spread to measure a slant by
    blank = torch.zeros(28, 28)
    X = torch.stack([upright, flat, blank]).reshape(3, 784)
    out = deskew(X)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, X, atol=1e-6, rtol=0)
    assert skew(torch.stack([upright, flat, blank]))[0].tolist() == [0.0, 0.0, 0.0]


def test_mnist_digits_lose_their_slant_and_keep_their_ink():
    X = frames(X_TRAIN)
    out = deskew(X)
    assert out.shape == X.shape and out.dtype == X.dtype
    before = skew(X.reshape(-1, 28, 28))[0].abs()
    after = skew(out.reshape(-1, 28, 28))[0].abs()
    assert float(before.mean()) > 0.15  # MNIST's writers lean
    assert float(after.mean()) < 0.01 * float(before.mean())
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    # the frame's 4 px margin holds the sheared digit: at most a trace of ink is lost
    np.testing.assert_allclose(out.sum(1).numpy(), X.sum(1).numpy(), rtol=0.03)


def test_a_standardised_background_weighs_nothing():
    X = frames(X_TRAIN[:20])
    shifted = X - 0.4  # background -0.4, as after a StandardScaler-like centring
    torch.testing.assert_close(skew(shifted.reshape(-1, 28, 28))[0],
                               skew(X.reshape(-1, 28, 28))[0], atol=0.05, rtol=0)


def test_fit_and_predict_both_see_the_deskewed_frames():
    # A model fitted with deskew=True is the model fitted with deskew=False on frames deskewed
    # beforehand, and it predicts raw frames as that one predicts deskewed ones.
    scaled = CNNClassifier(**FAST)._inputs().fit_X(X_TRAIN)[0]
    test_scaled = CNNClassifier(**FAST)._inputs().fit_X(X_TEST)[0]
    on = CNNClassifier(**FAST).fit(X_TRAIN, Y_TRAIN)
    assert on.deskew is True  # the CNN's default
    off = CNNClassifier(**FAST, deskew=False).fit(deskew(scaled).numpy(), Y_TRAIN)
    np.testing.assert_allclose(on.predict_proba(X_TEST),
                               off.predict_proba(deskew(test_scaled).numpy()), atol=1e-6)
    # and it is not a no-op: the same fit without deskewing is another model
    plain = CNNClassifier(**FAST, deskew=False).fit(X_TRAIN, Y_TRAIN)
    assert np.abs(plain.predict_proba(X_TEST) - on.predict_proba(X_TEST)).max() > 1e-3


def test_the_mlp_takes_it_when_asked_and_a_model_pickled_before_it_reads_as_before():
    assert MLPClassifier().deskew is False
    mlp = MLPClassifier(**FAST, deskew=True).fit(X_TRAIN, Y_TRAIN)
    assert mlp.predict(X_TEST).shape == (len(X_TEST),)
    old = CNNClassifier(**FAST, deskew=False).fit(X_TRAIN, Y_TRAIN)
    expected = old.predict_proba(X_TEST)
    state = old.__getstate__()
    del state["deskew"]  # as pickled by a version without the parameter
    revived = CNNClassifier.__new__(CNNClassifier)
    revived.__setstate__(pickle.loads(pickle.dumps(state)))
    assert revived.deskew is False and revived.get_params()["deskew"] is False
    np.testing.assert_allclose(revived.predict_proba(X_TEST), expected, atol=1e-6)


def test_a_non_boolean_is_refused_at_fit():
    with pytest.raises(ValueError, match=r"The 'deskew' parameter of CNNClassifier must be True "
                                         r"or False. Got 'yes' instead"):
        CNNClassifier(**FAST, deskew="yes").fit(X_TRAIN, Y_TRAIN)
