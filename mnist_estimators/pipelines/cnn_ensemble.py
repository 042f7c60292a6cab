"""Five cnn_best CNNs, soft voting (their averaged probabilities).

    mnist-estimators reproduce cnn_ensemble --seeds 0

Each member ``cnn0``...``cnn4`` is cnn_best's classifier, configured from cnn_best's DEFAULTS
(imported, so the two stay the same network), and differs only in its seed: with
``clf__random_state=s`` member ``i`` gets ``5*s + i`` (seed 0: 0-4, seed 1: 5-9), so it
differs in initialisation, shuffling and augmentation.

Members are fitted one after another (``n_jobs=1``), each with every core's torch threads. On 2
cores that is faster than two at a time: with ``n_jobs=2`` joblib starts each loky worker with
``cpu_count // n_jobs`` = 1 OpenMP thread (torch follows it), a one-thread fit of this CNN takes
about 1.8x as long as a two-thread one, and the fifth member runs alone on one core. Measured
on 5,400 images, 2 epochs per member: 47.0 s with ``n_jobs=1`` against 56.7 s with ``n_jobs=2``.
With more cores than a member uses well, ``--param clf__n_jobs=K`` fits K at a time.

On test over seeds 0, 1 and 2: 99.75% ± 0.01% (99.74, 99.74, 99.76; seed 0's members alone:
99.66-99.72%), ECE 0.0012, 65.8-70.3 min of fit per seed on 2 cores; docs/results.md has the
table.
"""

from mnist_estimators.estimators import CNNClassifier
from mnist_estimators.pipelines import _voting, cnn_best

MEMBERS = tuple(f"cnn{i}" for i in range(5))
DEFAULTS = {
    "clf__voting": "soft",
    "clf__n_jobs": 1,  # see above: faster on 2 cores
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
