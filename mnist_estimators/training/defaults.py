"""The callbacks every fit gets, built from the estimator's parameters.

skorch asks for them at each ``initialize`` and at each ``get_params(deep=True)``; the latter
happens with whatever values are set, invalid ones included (``fit`` validates them first,
``set_params`` never does), so everything here tolerates any value without raising.
"""

from __future__ import annotations

import numbers

from skorch.callbacks import Checkpoint, EpochScoring, EpochTimer, PassthroughScoring

from .averaging import BatchNormRecompute, WeightAveraging
from .callbacks import (
    DivergenceGuard,
    EarlyStoppingCallback,
    EpochTable,
    PlateauStopping,
    RecordLR,
    valid_accuracy,
)
from .schedules import make_lr_scheduler


def flag(value):
    """Truthiness that tolerates any value: None, False and 0 are off, everything else on."""
    return not (value is None or value is False or (isinstance(value, numbers.Real) and value == 0))


def has_validation(net):
    """Whether ``net``'s fits hold out validation data (a ``train_split`` or a fraction)."""
    return net.train_split is not None or flag(net.validation_fraction)


def default_callbacks(net, extra=()):
    """The ``(name, callback)`` pairs of a fit of ``net``, in the order they run.

    ``extra`` (the estimator's hooks: tracking's MLflow run) comes after the callbacks that
    change the weights at train end, so that it logs the model they leave and their final
    validation scores, and before the per-epoch table.
    """
    callbacks = [
        ("epoch_timer", EpochTimer()),
        ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
    ]
    if has_validation(net):
        callbacks += [
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            ("valid_acc", EpochScoring(valid_accuracy, name="valid_acc", lower_is_better=False)),
        ]
    callbacks += [("divergence_guard", DivergenceGuard()), ("record_lr", RecordLR())]
    if isinstance(net.lr_schedule, str):
        monitor = "valid_loss" if has_validation(net) else "train_loss"
        callbacks.append(("lr_scheduler", make_lr_scheduler(
            net.lr_schedule, lr=net.lr, max_epochs=net.max_epochs, monitor=monitor)))
    if flag(net.early_stopping):
        callbacks.append(("early_stopping", EarlyStoppingCallback(
            monitor="valid_loss", patience=net.patience, load_best=True)))
    if net.plateau_tol is not None:
        callbacks.append(("plateau_stopping", PlateauStopping(tol=net.plateau_tol)))
    if net.weight_averaging in ("ema", "swa"):
        callbacks.append(("weight_averaging", WeightAveraging(
            net.weight_averaging, decay=net.averaging_decay, start=net.averaging_start)))
    if net.recompute_bn is True:
        callbacks.append(("batchnorm_recompute", BatchNormRecompute()))
    if net.checkpoint_dir is not None:
        callbacks.append(("checkpoint", Checkpoint(
            monitor=None, dirname=str(net.checkpoint_dir),
            f_params="params_epoch{last_epoch[epoch]}.pt", f_optimizer=None,
            f_criterion=None, f_history="history.json", load_best=False)))
    callbacks += list(extra)
    callbacks.append(("print_log", EpochTable()))
    return callbacks
