"""mnist-estimators: softmax regression, MLP and CNN digit classifiers as scikit-learn estimators.

Importing the package imports nothing heavy: each public name is imported from its module the
first time it is used (PEP 562), so ``mnist-estimators --help`` answers before torch,
scikit-learn or MLflow is loaded. ``from mnist_estimators import MLPClassifier`` and
``mnist_estimators.MLPClassifier`` behave as before.

Tracking is a plugin of the estimators (``hooks.py``): it is registered here by name, and
imported the first time an estimator is built or unpickled, which installs its scikit-learn
wrappers before any search or pipeline can fit one.
"""

from __future__ import annotations

import importlib

from . import hooks

hooks.register_plugin(f"{__name__}.tracking")

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "expected_calibration_error": "calibration",
    "maximum_calibration_error": "calibration",
    "reliability_curve": "calibration",
    "ChecksumError": "data",
    "EmptyImageError": "data",
    "MNISTFormatError": "data",
    "download_mnist": "data",
    "load_images": "data",
    "load_mnist": "data",
    "load_sample": "data",
    "read_idx": "data",
    "read_idx_folder": "data",
    "preprocess_image": "data",
    "preprocess_turns": "data",
    "ink_crop": "data",
    "read_images": "data",
    "read_mnist_csv": "data",
    "CNNClassifier": "estimators",
    "MLPClassifier": "estimators",
    "SoftmaxRegressionClassifier": "estimators",
    "Evaluation": "evaluation",
    "evaluate_images": "evaluation",
    "Augment": "training",
    "TensorBatchIterator": "training",
    "TrainingDivergedError": "training",
    "check_gradients": "training",
    "init_weights": "training",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None and name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if module is None:
        # a submodule not imported yet (mnist_estimators.tracking, .pipelines...)
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # the next look-up is a plain attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
