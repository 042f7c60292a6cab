"""mnist-estimators: softmax regression, MLP and CNN digit classifiers as scikit-learn estimators."""

from .calibration import expected_calibration_error, maximum_calibration_error, reliability_curve
from .data import (
    ChecksumError,
    EmptyImageError,
    MNISTFormatError,
    download_mnist,
    load_images,
    load_mnist,
    load_sample,
    read_idx,
    read_idx_folder,
    preprocess_image,
    read_images,
    read_mnist_csv,
)
from .estimators import CNNClassifier, MLPClassifier, SoftmaxRegressionClassifier
from .evaluation import Evaluation, evaluate_images
from . import tracking  # noqa: F401 - registers tracking's hooks on the estimators (hooks.py)
from .training import (
    Augment,
    TensorBatchIterator,
    TrainingDivergedError,
    check_gradients,
    init_weights,
)

__version__ = "0.1.0"

__all__ = [
    "Augment",
    "CNNClassifier",
    "ChecksumError",
    "EmptyImageError",
    "Evaluation",
    "MLPClassifier",
    "MNISTFormatError",
    "SoftmaxRegressionClassifier",
    "TensorBatchIterator",
    "TrainingDivergedError",
    "check_gradients",
    "download_mnist",
    "evaluate_images",
    "expected_calibration_error",
    "init_weights",
    "load_images",
    "load_mnist",
    "load_sample",
    "maximum_calibration_error",
    "preprocess_image",
    "read_idx",
    "read_idx_folder",
    "read_images",
    "read_mnist_csv",
    "reliability_curve",
    "__version__",
]
