"""Reading digit images with a fitted model: upright, and turned where the model is unsure.

    from mnist_estimators.reading import predict_proba
    proba = predict_proba(model, ["scan1.png", "scan2.png"])  # turn=20, the default

    mnist-estimators predict model.pkl scans/            # the same reading
    mnist-estimators predict model.pkl scans/ --turn 0   # upright only

A written digit is often turned a little on the page, and ``preprocess_image`` undoes its slant,
not its turn (a rotation cannot be told from MNIST's own slant by the ink's moments: rotating the
principal axis into MNIST's range cost MNIST 2 points, docs/results.md). So the model reads every
image upright, as ``preprocess_image`` frames it; where its most likely digit has a probability
below ``confidence``, the image is read again turned by ``-turn .. turn`` degrees in steps of
``TURN_STEP`` (each turn framed anew: turned before the slant, the box and the centring), and the
model's most confident reading is kept. Confident readings are never changed.

On by default for image files (``TURN``, 20 degrees: ``predict``, ``evaluate --images``, the draw
page; ``turn=0`` or ``--turn 0`` reads upright only). It was chosen on validation splits, never
on a test split: a 3,000-digit hard validation level, the easy level's validation split, and
10,000 MNIST training digits held out of the fits, read through ``preprocess_image``. There, the
default CNN (four seeds) went from 96.02% to 96.96% on the hard level and from 99.21% to 99.22%
on MNIST, for 99.75% to 99.40% on the easy level; ``cnn_realworld`` (three seeds) from 96.34% to
97.06%, 99.20% to 99.39% and 98.80% to 98.80%; ``realworld_ensemble``'s members voting (three
seeds) from 97.02% to 97.93%, 99.40% to 99.42% and 99.43% to 99.07% (docs/results.md,
"Real-world digits"). Averaging the turns instead of keeping the most confident one cost the
easy level less (0.13 points on the CNN) but gained the hard level less (0.86): not kept.
Frames given as arrays (``model.predict``, a CSV's rows, MNIST) are read as given.

scikit-learn has no test-time augmentation, and skorch's ``predict_proba`` reads the arrays it is
given: the readings are made here, and any fitted classifier with ``predict_proba`` reads them.
"""

from __future__ import annotations

import numbers

import numpy as np

from .data import preprocess_image, preprocess_turns

TURN = 20.0  # the default for image files: predict, evaluate --images, the draw page
TURN_STEP = 10.0
CONFIDENCE = 0.9


def turns(turn, step=TURN_STEP):
    """The turns besides upright for ``turn`` degrees: ``(-turn, ..., -step, step, ..., turn)``."""
    if not (isinstance(turn, numbers.Real) and np.isfinite(turn) and 0 <= turn <= 90):
        raise ValueError(f"turn must be a number of degrees from 0 to 90; got {turn!r}.")
    k = int(turn // step)
    return [step * i for i in range(-k, k + 1) if i]


def default_turn(model, turn=None):
    """``turn``, checked; ``None`` means ``TURN`` for a model with ``predict_proba`` and 0
    (upright) for one without, which has no confidence to keep the most confident reading by."""
    if turn is None:
        return TURN if hasattr(model, "predict_proba") else 0.0
    turns(turn)
    if turn and not hasattr(model, "predict_proba"):
        raise ValueError(f"turn={turn:g} keeps a digit's most confident reading, but "
                         f"{type(model).__name__} has no predict_proba; use turn=0.")
    return float(turn)


def predict_proba(model, images, *, turn=TURN, confidence=CONFIDENCE, frames=None,
                  turned_frames=None, **options):
    """Class probabilities for ``images``, each read upright and, where the model is unsure,
    turned.

    Parameters
    ----------
    model : fitted classifier with ``predict_proba``
        A pipeline or estimator of this package, or any scikit-learn classifier taking rows of
        784 pixels.
    images : sequence
        What ``preprocess_image`` reads: files, PIL images or arrays.
    turn : float, default=TURN (20.0)
        Largest turn tried, in degrees (0 to 90), in steps of ``TURN_STEP``; 0 reads upright only.
    confidence : float, default=0.9
        An upright reading whose most likely digit has at least this probability is kept as is.
    frames : ndarray of shape (len(images), 784), default=None
        The upright frames, when the caller has already read them.
    turned_frames : dict, default=None
        Where the turned frames are kept, by ``(index in images, degrees)``: pass the same dict
        to read the same images with several models, and each turn is framed once (the drawing
        page does, for its side-by-side view).
    **options
        Passed to ``preprocess_image`` (``normalize_width``, ``normalize_slant``, ``name``).

    Returns
    -------
    proba : ndarray of shape (len(images), n_classes)
        For each image, the probabilities of its most confident reading.
    """
    angles = turns(turn)
    if not (isinstance(confidence, numbers.Real) and 0 < confidence <= 1):
        raise ValueError(f"confidence must be a probability in (0, 1]; got {confidence!r}.")
    if frames is None:
        frames = np.stack([preprocess_image(image, **options) for image in images])
    elif len(frames) != len(images):
        raise ValueError(f"frames holds {len(frames)} rows for {len(images)} images.")
    proba = np.array(model.predict_proba(frames))
    unsure = np.flatnonzero(proba.max(axis=1) < confidence)
    if angles and unsure.size:
        kept = {} if turned_frames is None else turned_frames
        for i in unsure.tolist():
            missing = [a for a in angles if (i, a) not in kept]
            if missing:  # one read and crop of the image for all of its turns
                kept.update(zip([(i, a) for a in missing],
                                preprocess_turns(images[i], missing, **options)))
        turned = np.stack([kept[i, a] for i in unsure.tolist() for a in angles])
        turned = np.asarray(model.predict_proba(turned)).reshape(len(unsure), len(angles), -1)
        best = turned[np.arange(len(unsure)), turned.max(axis=2).argmax(axis=1)]
        better = best.max(axis=1) > proba[unsure].max(axis=1)
        proba[unsure[better]] = best[better]
    return proba
