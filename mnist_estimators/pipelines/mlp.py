"""Multi-layer perceptron on [0, 1] pixels; the search space sets depth, then each width."""

from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from mnist_estimators.estimators import MLPClassifier
from mnist_estimators.data import scale_pixels

DEFAULTS = {
    "clf__hidden_sizes": (256, 128),
    "clf__activation": "relu",
    "clf__dropout": 0.1,
    "clf__optimizer": "adam",
    "clf__lr": 1e-3,
    "clf__max_epochs": 10,
    "clf__lr_schedule": "cosine",
    "clf__random_state": 0,
}
GRID = {"clf__hidden_sizes": [(100, 100), (256, 128)], "clf__optimizer": ["adam", "momentum"]}


def SPACE(trial):  # noqa: N802 - a space, like the dict ones
    depth = trial.suggest_int("depth", 1, 3)
    return {
        "clf__hidden_sizes": tuple(trial.suggest_categorical(f"width_{i}", [128, 256, 512, 1024])
                                   for i in range(depth)),
        "clf__activation": trial.suggest_categorical("activation", ["relu", "elu", "tanh"]),
        "clf__dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "clf__lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "clf__batch_size": trial.suggest_categorical("batch_size", [64, 128, 256]),
    }


def build_pipeline(**overrides):
    pipe = Pipeline([("pixels", FunctionTransformer(scale_pixels)), ("clf", MLPClassifier())])
    return pipe.set_params(**{**DEFAULTS, **overrides})
