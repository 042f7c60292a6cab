"""Learning-rate schedules by name (``lr_schedule="cosine"``), as skorch callbacks.

skorch's ``LRScheduler`` takes fixed kwargs, but ``OneCycleLR`` needs ``total_steps``, known only
once the data is seen: ``OneCycleLRScheduler`` works it out at train begin.
"""

from __future__ import annotations

import math
import numbers

import torch
from skorch.callbacks import LRScheduler

LR_SCHEDULES = ("step", "exponential", "cosine", "onecycle", "plateau")


def make_lr_scheduler(name, lr, max_epochs, monitor="valid_loss"):
    """The skorch callback of schedule ``name`` (one of ``LR_SCHEDULES``).

    ``lr`` is one-cycle's peak rate, ``max_epochs`` the length of the step, cosine and
    one-cycle schedules (10 when it is not an int), ``monitor`` what the plateau schedule
    watches. Any other name gives the plateau schedule: ``fit`` validates the name first.
    """
    sched = torch.optim.lr_scheduler
    epochs = max_epochs if isinstance(max_epochs, numbers.Integral) else 10
    if name == "step":
        return LRScheduler(sched.StepLR, step_size=max(1, epochs // 3), gamma=0.1)
    if name == "exponential":
        return LRScheduler(sched.ExponentialLR, gamma=0.9)
    if name == "cosine":
        return LRScheduler(sched.CosineAnnealingLR, T_max=epochs)
    if name == "onecycle":
        return OneCycleLRScheduler(n_train=n_train_samples, max_lr=lr, epochs=epochs)
    return LRScheduler(sched.ReduceLROnPlateau, monitor=monitor, patience=2, factor=0.1)


def n_train_samples(net, X):
    """The number of the ``len(X)`` fit samples that ``net`` trains on, after its split."""
    return len(X) - net.n_valid_samples(len(X))


class OneCycleLRScheduler(LRScheduler):
    """skorch ``LRScheduler`` for ``OneCycleLR`` that works out ``total_steps`` at train begin.

    ``n_train`` is a callable ``(net, X) -> number of training samples`` (after the validation
    split).
    """

    def __init__(self, n_train=None, max_lr=0.01, epochs=10, **kwargs):
        super().__init__(policy=torch.optim.lr_scheduler.OneCycleLR, step_every="batch",
                         max_lr=max_lr, **kwargs)
        self.n_train = n_train
        self.epochs = epochs

    @property
    def kwargs(self):
        kwargs = dict(super().kwargs)
        kwargs.pop("n_train", None)
        kwargs.pop("epochs", None)
        return kwargs

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        n = self.n_train(net, X) if callable(self.n_train) else len(X)
        steps = math.ceil(n / net.batch_size) * self.epochs
        self.total_steps_ = max(steps, 1)
        super().on_train_begin(net, X=X, y=y, **kwargs)

    def _get_scheduler(self, net, policy, **scheduler_kwargs):
        scheduler_kwargs.pop("last_epoch", None)
        scheduler_kwargs["total_steps"] = self.total_steps_
        return policy(net.optimizer_, **scheduler_kwargs)

    def on_batch_end(self, net, training, **kwargs):
        # warm_start / partial_fit can train past the planned cycle: hold the final lr then.
        if training and self.lr_scheduler_.last_epoch + 1 >= self.total_steps_:
            return
        super().on_batch_end(net, training, **kwargs)
