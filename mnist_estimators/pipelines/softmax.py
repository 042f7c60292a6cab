"""Softmax regression on standardized pixels."""

from optuna.distributions import CategoricalDistribution, FloatDistribution
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from mnist_estimators.estimators import SoftmaxRegressionClassifier
from mnist_estimators.data import scale_pixels

DEFAULTS = {
    "clf__optimizer": "adam",
    "clf__lr": 1e-3,
    "clf__max_epochs": 10,
    "clf__lr_schedule": "cosine",
    "clf__weight_decay": 0.0,
    "clf__random_state": 0,
}
SPACE = {
    "clf__lr": FloatDistribution(1e-4, 1e-1, log=True),
    "clf__optimizer": CategoricalDistribution(["adam", "sgd", "momentum"]),
    "clf__weight_decay": FloatDistribution(1e-7, 1e-3, log=True),
    "clf__batch_size": CategoricalDistribution([64, 128, 256]),
}
GRID = {"clf__lr": [1e-3, 3e-3], "clf__optimizer": ["adam", "momentum"]}


def build_pipeline(**overrides):
    pipe = Pipeline([
        ("pixels", FunctionTransformer(scale_pixels)),
        ("scale", StandardScaler()),
        ("clf", SoftmaxRegressionClassifier()),
    ])
    return pipe.set_params(**{**DEFAULTS, **overrides})
