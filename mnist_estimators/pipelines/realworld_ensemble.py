"""Two CNNs that read real handwriting differently, soft voting (their averaged probabilities).

    mnist-estimators reproduce realworld_ensemble --seeds 0

Member ``realworld`` is cnn_realworld's classifier: it learns leans, pen widths, gaps and blur
from augmentation. Member ``deskewed`` is the default CNN, which deskews every frame (no lean
reaches it), with broken strokes in training (``augment_gaps=1``). Both are configured from
their pipelines' DEFAULTS (imported, so they stay the same networks). With
``clf__random_state=s`` member ``i`` gets ``2*s + i``.

Chosen on the hard stroke level's validation split, never its test split: on 3,000 validation
digits (``strokes.make_set(DIR, 300, level="hard", split="validation")``), with members fitted
on MNIST's first 50,000 training digits, five pairs of seeds read 96.95% upright and 97.83%
turned (as ``predict`` reads images), against 96.35% and 97.06% for ``cnn_realworld`` alone (three
seeds) and 96.57% and 97.27% for three ``cnn_realworld`` voting. On the same three seeds, the
pair read 97.02% and 97.93%; with a ``deskewed`` member without gaps, 96.96% and 97.68%; with
three members (both ``deskewed`` kinds), 96.92% and 97.95%, for more fit. The pair costs ~1.2x
one ``cnn_realworld`` fit. docs/results.md has the test split's figures.
"""

from mnist_estimators.estimators import CNNClassifier
from mnist_estimators.pipelines import _voting, cnn, cnn_realworld

MEMBERS = ("realworld", "deskewed")
DEFAULTS = {
    "clf__voting": "soft",
    "clf__n_jobs": 1,  # one after another, each with every core's threads (see cnn_ensemble)
    **_voting.member_seeds(MEMBERS, 0),
}
# An ensemble is not searched: SPACE is None (`tune` does not apply), and the grid compares soft
# with hard voting (`mnist-estimators search --pipeline realworld_ensemble`).
SPACE = None
GRID = {"clf__voting": ["soft", "hard"]}


def member_params():
    """Each member's classifier settings, from its pipeline's DEFAULTS."""
    return {
        "realworld": _voting.classifier_params(cnn_realworld.DEFAULTS),
        "deskewed": _voting.classifier_params({**cnn.DEFAULTS, "clf__augment_gaps": 1}),
    }


def build_pipeline(**overrides):
    params = member_params()
    return _voting.build([(name, CNNClassifier().set_params(**params[name])) for name in MEMBERS],
                         DEFAULTS, overrides)
