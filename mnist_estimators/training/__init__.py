"""Training pieces that skorch does not ship, one concern a module.

- ``batches``: ``TensorBatchIterator`` (one tensor sliced per batch) and ``AugmentedBatches``;
- ``augment``: ``Augment`` (random transforms of whole batches) and ``shifted_views`` (TTA);
- ``init``: ``init_weights``, named initialization schemes;
- ``optim``: ``resolve_optimizer`` (optimizers by name) and ``use_fused_kernel``;
- ``schedules``: learning-rate schedules by name, ``OneCycleLRScheduler``;
- ``callbacks``: stopping, divergence, the learning-rate record, the epoch table;
- ``defaults``: ``default_callbacks(net)``, the callbacks a fit gets, from its parameters;
- ``averaging``: ``WeightAveraging`` and ``BatchNormRecompute``, which replace the weights
  or their BatchNorm statistics when training ends;
- ``gradcheck``: ``check_gradients``, backprop against finite differences.

Every public name is importable from here (``from mnist_estimators.training import Augment``).
Modules of this package import each other directly, never this ``__init__``.
"""

from .augment import AUGMENT_PARAMS, Augment, gaussian_blur, shifted_views
from .averaging import BatchNormRecompute, WeightAveraging, record_final_validation
from .batches import AugmentedBatches, TensorBatchIterator
from .callbacks import (
    DivergenceGuard,
    EarlyStoppingCallback,
    EpochTable,
    PlateauStopping,
    RecordLR,
    TrainingDivergedError,
    valid_accuracy,
)
from .defaults import default_callbacks
from .gradcheck import check_gradients
from .init import INIT_SCHEMES, init_weights
from .optim import FUSED_OPTIMIZERS, OPTIMIZERS, resolve_optimizer, use_fused_kernel
from .schedules import LR_SCHEDULES, OneCycleLRScheduler, make_lr_scheduler, n_train_samples

__all__ = [
    "AUGMENT_PARAMS",
    "FUSED_OPTIMIZERS",
    "INIT_SCHEMES",
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "Augment",
    "AugmentedBatches",
    "BatchNormRecompute",
    "DivergenceGuard",
    "EarlyStoppingCallback",
    "EpochTable",
    "OneCycleLRScheduler",
    "PlateauStopping",
    "RecordLR",
    "TensorBatchIterator",
    "TrainingDivergedError",
    "WeightAveraging",
    "check_gradients",
    "default_callbacks",
    "gaussian_blur",
    "init_weights",
    "make_lr_scheduler",
    "n_train_samples",
    "record_final_validation",
    "resolve_optimizer",
    "shifted_views",
    "use_fused_kernel",
    "valid_accuracy",
]

