"""Five cnn_best CNNs, soft voting (their averaged probabilities).

    mnist-estimators reproduce cnn_ensemble --seeds 0

Each member ``cnn0``...``cnn4`` is cnn_best's classifier, configured from cnn_best's DEFAULTS
(imported, so the two stay the same network), and differs only in its seed: with
``clf__random_state=s`` member ``i`` gets ``5*s + i`` (seed 0: 0-4, seed 1: 5-9), so it
differs in initialisation, shuffling and augmentation. Members are fitted two at a time in
loky worker processes (``n_jobs=2``); joblib starts each worker with ``cpu_count // n_jobs``
threads for OpenMP, which torch follows (1 each on a 2-core machine), so the two workers share
the cores instead of oversubscribing them. A fit does the work of five cnn_best fits, two at a
time. Its test accuracy has not been measured on this machine yet.
"""

from mnist_estimators import CNNClassifier
from mnist_estimators.pipelines import _voting, cnn_best

MEMBERS = tuple(f"cnn{i}" for i in range(5))
DEFAULTS = {
    "clf__voting": "soft",
    "clf__n_jobs": 2,
    **_voting.member_seeds(MEMBERS, 0),
}
# An ensemble of one architecture is not searched: SPACE is None (`tune` does not apply), and
# the grid compares soft with hard voting (`mnist-estimators search --pipeline cnn_ensemble`).
SPACE = None
GRID = {"clf__voting": ["soft", "hard"]}


def build_pipeline(**overrides):
    member = _voting.classifier_params(cnn_best.DEFAULTS)
    return _voting.build([(name, CNNClassifier().set_params(**member)) for name in MEMBERS],
                         DEFAULTS, overrides)
