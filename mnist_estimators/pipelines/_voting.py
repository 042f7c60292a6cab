"""What the ensemble pipelines share: members configured from the ready pipelines, one pixels
step in front, and the rule that seeds each member apart."""

from sklearn.ensemble import VotingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from mnist_estimators.data import scale_pixels


def classifier_params(defaults):
    """The classifier's own settings in a ready pipeline's ``DEFAULTS`` (``clf__lr`` -> ``lr``),
    to make that classifier an ensemble member behind a shared pixels step.

    Its other steps must add nothing to the pixels step (``"scale": "passthrough"`` in
    softmax_best): a member here sees only what ``scale_pixels`` gives.
    """
    other = {key: value for key, value in defaults.items()
             if not key.startswith("clf__") and value != "passthrough"}
    if other:
        raise ValueError(f"an ensemble member gets only the shared pixels step, but its pipeline "
                         f"also sets {other}")
    return {key[len("clf__"):]: value for key, value in defaults.items()
            if key.startswith("clf__")}


def member_seeds(names, seed):
    """``clf__NAME__random_state`` of each member: with ``n`` members, member ``i`` gets
    ``n * seed + i``, so that no two members, and no two seeds of ``reproduce``, share an
    initialisation, a shuffling order or an augmentation stream. ``seed=None``: all unseeded."""
    n = len(names)
    return {f"clf__{name}__random_state": None if seed is None else n * seed + i
            for i, name in enumerate(names)}


def build(members, defaults, overrides):
    """``Pipeline([pixels, clf=VotingClassifier(members)])`` set to ``defaults``, then
    ``overrides``; ``clf__random_state=s`` among them (a VotingClassifier has none) seeds the
    members by ``member_seeds``, and an override of one member's seed wins over it."""
    overrides = dict(overrides)
    names = [name for name, _ in members]
    seeds = member_seeds(names, overrides.pop("clf__random_state")) \
        if "clf__random_state" in overrides else {}
    pipe = Pipeline([("pixels", FunctionTransformer(scale_pixels)),
                     ("clf", VotingClassifier(members))])
    return pipe.set_params(**{**defaults, **seeds, **overrides})
