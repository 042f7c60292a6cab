"""Ready pipelines, installed as ``mnist_estimators.pipelines``.

Each module defines ``DEFAULTS`` (a plain dict of ``step__param`` values), ``build_pipeline(**overrides)``,
``SPACE`` (an Optuna search space: dict of distributions, or a function of the trial; None for
the ensembles, which are not tuned) and ``GRID`` (a small ``GridSearchCV`` grid). ``get(name)``
returns the module. Every ``build_pipeline`` takes ``clf__random_state``; the ensembles
(``cnn_ensemble``, ``mixed_ensemble``: soft voting over the best classifiers;
``realworld_ensemble``: over two CNNs for real handwriting) turn it into one seed per member.
"""

import importlib

NAMES = ("softmax", "mlp", "cnn", "softmax_best", "mlp_best", "mlp_augmented", "cnn_best",
         "cnn_frontier", "cnn_realworld", "cnn_ensemble", "mixed_ensemble", "realworld_ensemble")


def get(name):
    if name not in NAMES:
        raise ValueError(f"Unknown pipeline {name!r}; choose one of {list(NAMES)}.")
    return importlib.import_module(f"{__name__}.{name}")
