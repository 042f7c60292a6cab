"""softmax_best, mlp_best and cnn_best's classifiers, soft voting: three kinds of model.

    mnist-estimators reproduce mixed_ensemble --seeds 0

Each member is configured from its ready pipeline's DEFAULTS (imported). Its point is the
comparison with cnn_ensemble: whether models that make different mistakes (a linear model, an
MLP, a CNN) add more to a vote than five CNNs that differ only in their seed, or whether the two
weaker members only pull the CNN down. With ``clf__random_state=s`` member ``i`` (softmax, mlp,
cnn) gets ``3*s + i``. Members are fitted one after another with every core's threads
(``n_jobs=1``): with ``n_jobs=2`` on 2 cores the softmax and MLP members finished within the
CNN's first 4 epochs, and the CNN then went on alone on one thread while the other core idled.

Seed 0 on test: 99.19%, below its own CNN alone (99.71%), ECE 0.0338; 17.8 min of fit. Mixing
kinds with equal weights costs accuracy here: docs/results.md has the figures.
"""

from mnist_estimators.estimators import CNNClassifier, MLPClassifier, SoftmaxRegressionClassifier
from mnist_estimators.pipelines import _voting, cnn_best, mlp_best, softmax_best

MEMBERS = ("softmax", "mlp", "cnn")
DEFAULTS = {
    "clf__voting": "soft",
    "clf__n_jobs": 1,  # see above
    **_voting.member_seeds(MEMBERS, 0),
}
SPACE = None  # see cnn_ensemble
GRID = {"clf__voting": ["soft", "hard"]}


def build_pipeline(**overrides):
    members = [(name, cls().set_params(**_voting.classifier_params(best.DEFAULTS)))
               for name, cls, best in zip(MEMBERS, (SoftmaxRegressionClassifier, MLPClassifier,
                                                    CNNClassifier),
                                          (softmax_best, mlp_best, cnn_best))]
    return _voting.build(members, DEFAULTS, overrides)
