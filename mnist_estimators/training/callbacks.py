"""The skorch callbacks that skorch does not ship (the schedules are in ``schedules``).

- ``PlateauStopping`` (seed 004's criterion), ``EarlyStoppingCallback`` (skorch's, stopping
  with ``StopTraining``) and ``DivergenceGuard`` (NaN/inf loss).
- ``RecordLR`` (the rate as ``lr`` in the history) and ``EpochTable`` (the per-epoch table).
"""

from __future__ import annotations

import math
import os
import re
import sys

import numpy as np
import torch
from skorch.callbacks import Callback, EarlyStopping, PrintLog

from ..signals import StopTraining


class TrainingDivergedError(FloatingPointError):
    """Raised when the training loss becomes NaN or infinite."""


class PlateauStopping(Callback):
    """Stop when the training loss has flattened (seed 004's "plateau method").

    Training stops once the standard deviation of the last ``window`` epoch losses falls below
    ``tol`` times their mean.

    Parameters
    ----------
    monitor : str, default="train_loss"
    window : int, default=5
    tol : float, default=1e-3
    """

    def __init__(self, monitor="train_loss", window=5, tol=1e-3, sink=print):
        self.monitor = monitor
        self.window = window
        self.tol = tol
        self.sink = sink

    def on_epoch_end(self, net, **kwargs):
        values = net.history[:, self.monitor]
        if len(values) < self.window:
            return
        recent = np.asarray(values[-self.window:], dtype=float)
        if recent.std() < self.tol * abs(recent.mean()):
            if net.verbose and self.sink is not None:
                self.sink(f"Stopping at epoch {len(values)}: {self.monitor} plateaued "
                          f"(std {recent.std():.3g} < {self.tol} * mean {recent.mean():.3g}).")
            raise StopTraining


class EarlyStoppingCallback(EarlyStopping):
    """skorch's ``EarlyStopping``, stopping with ``StopTraining``."""

    def on_epoch_end(self, net, **kwargs):
        try:
            super().on_epoch_end(net, **kwargs)
        except StopTraining:
            raise
        except KeyboardInterrupt:
            raise StopTraining from None


class RecordLR(Callback):
    """Record the optimizer's learning rate as ``lr`` in the history after every epoch.

    skorch's ``LRScheduler`` records it only as ``event_lr``, only with a schedule, and per batch
    for batch-stepped schedules.
    """

    def on_epoch_end(self, net, **kwargs):
        net.history.record("lr", float(net.optimizer_.param_groups[0]["lr"]))


class DivergenceGuard(Callback):
    """Raise ``TrainingDivergedError`` as soon as a training batch loss is NaN or infinite."""

    def on_batch_end(self, net, batch=None, training=False, loss=None, **kwargs):
        if not training or loss is None:
            return
        value = loss.item()  # a scalar already synced by skorch's history: cheaper than isfinite
        if not math.isfinite(value):
            epoch = len(net.history)
            raise TrainingDivergedError(
                f"Training diverged: the loss became {value} in epoch {epoch}, "
                f"batch {len(net.history[-1, 'batches'])}. Try a lower learning rate "
                f"(lr={net.lr}), a smaller init scale, gradient clipping or batch norm."
            )


def valid_accuracy(net, X, y):
    """Accuracy on encoded labels; skorch's 'accuracy' scorer would compare decoded labels."""
    y_true = y.numpy() if torch.is_tensor(y) else np.asarray(y)
    return float((net.predict_proba(X).argmax(1) == y_true).mean())


class EpochTable(PrintLog):
    """skorch's per-epoch table (``verbose=1``), fit for a pipe or a log file.

    skorch's ``PrintLog`` colours each column's best value with ANSI codes, which show as
    garbage in piped output, and it prints the scheduler's ``event_lr`` beside our ``lr`` (the
    same number twice). Colours are kept for a terminal only (and never with ``NO_COLOR``).
    """

    def __init__(self, keys_ignored=("event_lr",), **kwargs):
        super().__init__(keys_ignored=list(keys_ignored), **kwargs)

    def format_row(self, row, key, color):
        text = super().format_row(row, key, color)
        if isinstance(text, str) and (os.environ.get("NO_COLOR") or not sys.stdout.isatty()):
            text = re.sub(r"\x1b\[[0-9;]*m", "", text)
        return text
