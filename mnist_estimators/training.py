"""Training pieces that skorch does not ship.

- ``TensorBatchIterator``: slices one tensor per batch. skorch's default is a per-sample
  ``DataLoader`` (index, then collate), 1.8-2.6x slower per epoch on MNIST (skorch issues #1100, #336).
- ``init_weights``: named initialization schemes; skorch has no init hook beyond the module itself.
- ``resolve_optimizer``: string names (``"adam"``) so param grids and Optuna can use them.
- ``OneCycleLRScheduler``: skorch's ``LRScheduler`` takes fixed kwargs, but ``OneCycleLR`` needs
  ``total_steps``, known only once the data is seen.
- ``PlateauStopping`` (seed 004's criterion) and ``DivergenceGuard`` (NaN/inf loss) callbacks.
- ``check_gradients``: backprop against central finite differences (seed 002).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skorch.callbacks import Callback, EarlyStopping, LRScheduler
from torch import nn


class TrainingDivergedError(FloatingPointError):
    """Raised when the training loss becomes NaN or infinite."""


class StopTraining(KeyboardInterrupt):
    """A callback's request to end training early.

    skorch's callbacks stop training with a plain ``KeyboardInterrupt``, and its ``partial_fit``
    swallows every one, a user's Ctrl-C included. This subclass tells the two apart, so a real
    interrupt can end the run as KILLED and propagate.
    """


# --------------------------------------------------------------------------- batches


class TensorBatchIterator:
    """Iterate over ``(X, y)`` batches by slicing whole tensors, optionally shuffled.

    Takes the same arguments as ``torch.utils.data.DataLoader`` that matter here
    (``batch_size``, ``shuffle``, ``generator``, ``drop_last``), so the two are interchangeable
    through skorch's ``iterator_train``/``iterator_valid``.

    Parameters
    ----------
    dataset : skorch.dataset.Dataset
        Holds ``X`` (tensor) and ``y`` (tensor or None).
    batch_size : int, default=128
    shuffle : bool, default=False
        Draw a new permutation every epoch (every ``iter``).
    generator : torch.Generator or None, default=None
        Source of the permutations; None uses torch's global generator.
    drop_last : bool, default=False
    """

    def __init__(self, dataset, batch_size=128, shuffle=False, generator=None, drop_last=False):
        X, y = getattr(dataset, "X", None), getattr(dataset, "y", None)
        if not torch.is_tensor(X):
            raise TypeError(
                "TensorBatchIterator needs a dataset holding tensors (skorch Dataset of torch "
                f"tensors); got X of type {type(X).__name__}. Use iterator_train=DataLoader instead."
            )
        self.X, self.y = X, y
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"The 'batch_size' parameter must be >= 1. Got {batch_size} instead.")
        self.shuffle, self.generator, self.drop_last = shuffle, generator, drop_last

    def __len__(self):
        n = len(self.X)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n, bs = len(self.X), self.batch_size
        stop = n - n % bs if self.drop_last else n
        X, y = self.X, self.y
        if not self.shuffle:
            for start in range(0, stop, bs):  # views, no copy
                yield X[start:start + bs], (y[start:start + bs] if y is not None else None)
            return
        # A new permutation per epoch; each batch gathers its rows with index_select. Measured
        # here: 10 ms per MNIST epoch, against 52 ms for permuting the whole tensor up front
        # (a 188 MB copy that leaves the cache cold) and 24 ms for fancy indexing.
        perm = torch.randperm(n, generator=self.generator).to(X.device)
        for start in range(0, stop, bs):
            idx = perm[start:start + bs]
            yield X.index_select(0, idx), (y.index_select(0, idx) if y is not None else None)


# --------------------------------------------------------------------------- initialization

INIT_SCHEMES = (
    "default", "zero", "uniform", "normal",
    "he_uniform", "he_normal", "xavier_uniform", "xavier_normal",
)
_INIT_ALIASES = {
    "he": "he_normal", "kaiming": "he_normal", "kaiming_normal": "he_normal",
    "kaiming_uniform": "he_uniform", "xavier": "xavier_uniform", "glorot": "xavier_uniform",
    "glorot_uniform": "xavier_uniform", "glorot_normal": "xavier_normal", "zeros": "zero",
    None: "default",
}
# torch.nn.init.calculate_gain knows no 'elu'/'gelu'; ReLU's gain is the usual stand-in.
_GAIN_NAME = {"relu": "relu", "leaky_relu": "leaky_relu", "tanh": "tanh", "sigmoid": "sigmoid",
              "elu": "relu", "gelu": "relu"}


def init_weights(module, scheme="default", activation="relu"):
    """Re-initialize every ``Linear``/``Conv2d`` weight of ``module`` in place.

    Schemes: ``"default"`` (PyTorch's own), ``"zero"``, ``"uniform"`` (U(0, 1), seed 004's
    "random"), ``"normal"`` (N(0, 0.01^2)), ``"he_uniform"``, ``"he_normal"``,
    ``"xavier_uniform"``, ``"xavier_normal"`` (aliases: ``he``, ``kaiming*``, ``xavier``, ``glorot*``).
    Biases are set to zero for every scheme but ``"default"``. BatchNorm layers are left alone.
    """
    name = _INIT_ALIASES.get(scheme, scheme)
    if name not in INIT_SCHEMES:
        raise ValueError(
            f"The 'init' parameter must be one of {list(INIT_SCHEMES)} (or an alias: "
            f"{sorted(k for k in _INIT_ALIASES if k)}). Got {scheme!r} instead."
        )
    if name == "default":
        return module
    nonlinearity = _GAIN_NAME.get(activation, "relu")
    for layer in module.modules():
        if not isinstance(layer, (nn.Linear, nn.Conv2d)):
            continue
        w = layer.weight
        if name == "zero":
            nn.init.zeros_(w)
        elif name == "uniform":
            nn.init.uniform_(w, 0.0, 1.0)
        elif name == "normal":
            nn.init.normal_(w, 0.0, 0.01)
        elif name == "he_uniform":
            nn.init.kaiming_uniform_(w, nonlinearity=nonlinearity)
        elif name == "he_normal":
            nn.init.kaiming_normal_(w, nonlinearity=nonlinearity)
        elif name == "xavier_uniform":
            nn.init.xavier_uniform_(w, gain=nn.init.calculate_gain(nonlinearity))
        elif name == "xavier_normal":
            nn.init.xavier_normal_(w, gain=nn.init.calculate_gain(nonlinearity))
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    return module


# --------------------------------------------------------------------------- optimizers

# name -> (class, defaults); "momentum"/"nesterov" are SGD with momentum 0.9.
OPTIMIZERS = {
    "sgd": (torch.optim.SGD, {}),
    "momentum": (torch.optim.SGD, {"momentum": 0.9}),
    "nesterov": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    "rmsprop": (torch.optim.RMSprop, {}),
    "adam": (torch.optim.Adam, {}),
    "adamw": (torch.optim.AdamW, {}),
}


def resolve_optimizer(optimizer):
    """Map an optimizer name or class to ``(class, default_kwargs)``."""
    if isinstance(optimizer, str):
        try:
            cls, defaults = OPTIMIZERS[optimizer.lower()]
        except KeyError:
            raise ValueError(
                f"The 'optimizer' parameter must be a torch optimizer class or one of "
                f"{sorted(OPTIMIZERS)}. Got {optimizer!r} instead."
            ) from None
        return cls, dict(defaults)
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        return optimizer, {}
    raise ValueError(
        f"The 'optimizer' parameter must be a torch optimizer class or one of {sorted(OPTIMIZERS)}. "
        f"Got {optimizer!r} instead."
    )


# --------------------------------------------------------------------------- callbacks


class OneCycleLRScheduler(LRScheduler):
    """skorch ``LRScheduler`` for ``OneCycleLR`` that works out ``total_steps`` at train begin.

    ``n_train`` is a callable ``(net, X) -> number of training samples`` (after the validation split).
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


# --------------------------------------------------------------------------- gradient check


def check_gradients(module, X, y, n_checks=20, eps=1e-5, random_state=0):
    """Compare backprop gradients with central finite differences.

    The loss is the mean cross-entropy of ``module(X)`` against ``y``. A copy of the module is
    evaluated in float64 and eval mode (no dropout noise, BatchNorm on running stats).
    ``torch.autograd.gradcheck`` would build the full Jacobian, one forward pass per parameter
    (hundreds of thousands here); this samples ``n_checks`` coordinates per parameter tensor.

    Returns
    -------
    report : list of dict
        One row per checked coordinate: ``param``, ``index``, ``backprop``, ``numerical``,
        ``abs_diff``, ``rel_diff``.
    """
    import copy

    net = copy.deepcopy(module).double().eval()
    X = torch.as_tensor(np.asarray(X), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(y), dtype=torch.long)
    loss_fn = nn.CrossEntropyLoss()

    def loss():
        return loss_fn(net(X), y)

    net.zero_grad()
    loss().backward()
    rng = np.random.default_rng(random_state)
    report = []
    with torch.no_grad():
        for name, p in net.named_parameters():
            grads = p.grad.detach().clone().reshape(-1)
            flat = p.data.reshape(-1)
            for idx in rng.choice(flat.numel(), size=min(n_checks, flat.numel()), replace=False):
                orig = flat[idx].item()
                flat[idx] = orig + eps
                up = loss().item()
                flat[idx] = orig - eps
                down = loss().item()
                flat[idx] = orig
                num = (up - down) / (2 * eps)
                bp = grads[idx].item()
                diff = abs(bp - num)
                report.append({"param": name, "index": int(idx), "backprop": bp, "numerical": num,
                               "abs_diff": diff, "rel_diff": diff / max(abs(bp) + abs(num), 1e-12)})
    return report
