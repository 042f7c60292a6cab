"""scikit-learn estimators: thin skorch ``NeuralNetClassifier`` subclasses with working defaults.

skorch's own defaults are fixed here (see docs/design.md and the README's table):

- criterion: ``CrossEntropyLoss`` on logits (skorch's default ``NLLLoss`` expects log-probabilities);
- the training iterator shuffles (skorch's does not);
- the validation split is the documented ``validation_fraction`` (skorch silently holds out 20%);
- uint8 pixels 0-255 are scaled to [0, 1] (``pixel_scaling``);
- batches are tensor slices (``TensorBatchIterator``), not a per-sample ``DataLoader``.
"""

from __future__ import annotations

import math
import os
import warnings
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from skorch import NeuralNetClassifier
from skorch.dataset import Dataset
from skorch.utils import is_dataset
from torch import nn

from . import _compat, hooks
from .inputs import InputAdapter, InputScaleWarning  # noqa: F401 - public here, beside the others
from .modules import CNN, MLP, SoftmaxRegression
from .params import Hidden, InstanceOf, Interval, Options, StartsWith, validate
from .persistence import load_model, save_model  # noqa: F401 - public here too
from .signals import StopTraining, fit_running, raise_if_interrupt_requested
from .training.augment import AUGMENT_PARAMS, Augment, shifted_views
from .training.deskew import deskew as deskew_frames
from .training.batches import AugmentedBatches, TensorBatchIterator
from .training.defaults import default_callbacks, has_validation
from .training.init import init_weights
from .training.optim import resolve_optimizer, use_fused_kernel
from .training.schedules import LR_SCHEDULES
from .training.schedules import n_train_samples as _n_train_samples  # noqa: F401 - old pickles
from .training.speedups import SkorchLoopSpeedups

PRECISIONS = ("float32", "bfloat16", "auto")


def _one_thread_after_fork():
    # torch's OpenMP thread pool does not survive a fork once it has run: a process forked
    # after a fit (a multiprocessing "fork" Pool, the default start method on Linux) hung for
    # ever in its first parallel operation (gomp_team_barrier_wait_end). With one thread, the
    # child runs those operations on its own thread, as torch's DataLoader workers do (they
    # call torch.set_num_threads(1) too). torch has no fork hook of its own for this.
    torch.set_num_threads(1)


os.register_at_fork(after_in_child=_one_thread_after_fork)


class SmallSplitWarning(UserWarning):
    """The validation split of a fit leaves classes out of training, or is too small to score."""


MIN_VALID_SAMPLES = 10  # fewer, and valid_acc moves in steps of 10% or more


class SlowPrecisionWarning(UserWarning):
    """``precision="bfloat16"`` on a device that only emulates bfloat16 (many times slower)."""


def native_bfloat16(device_type):
    """Does ``device_type`` ("cpu", "cuda") compute bfloat16 in hardware?"""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device_type == "cpu" and _compat.cpu_has_native_bfloat16()


def resolve_device(device):
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``; anything else unchanged."""
    if isinstance(device, str) and device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class _MNISTClassifier(SkorchLoopSpeedups, NeuralNetClassifier):
    """Shared machinery of the three estimators. Not public: use the subclasses."""

    _mnist_estimator = True  # how tracking's sklearn glue knows ours without importing us

    # The keys of __init__ that configure the module, forwarded as module kwargs.
    _module_params = ()

    def __init__(
        self,
        module,
        *,
        init="default",
        optimizer="adam",
        lr=1e-3,
        weight_decay=0.0,
        l1=0.0,
        batch_size=128,
        max_epochs=10,
        lr_schedule=None,
        validation_fraction=0.1,
        early_stopping=False,
        patience=5,
        plateau_tol=None,
        checkpoint_dir=None,
        random_state=None,
        pixel_scaling="auto",
        deskew=False,
        augment_rotation=0.0,
        augment_scale=0.0,
        augment_shift=0.0,
        augment_slant=0.0,
        augment_blur=0.0,
        augment_thickness=0.0,
        augment_gaps=0,
        augment_erasing=0.0,
        augment_elastic=0.0,
        augment_elastic_sigma=4.0,
        weight_averaging=None,
        averaging_decay=0.999,
        averaging_start=0.75,
        recompute_bn=False,
        tta=False,
        precision="float32",
        device="cpu",
        verbose=0,
        tracking=True,
        tracking_options=None,
        criterion=nn.CrossEntropyLoss,
        iterator_train=TensorBatchIterator,
        iterator_valid=TensorBatchIterator,
        train_split=None,
        **kwargs,
    ):
        super().__init__(
            module,
            criterion=criterion,
            optimizer=optimizer,
            lr=lr,
            batch_size=batch_size,
            max_epochs=max_epochs,
            iterator_train=iterator_train,
            iterator_valid=iterator_valid,
            train_split=train_split,
            device=device,
            verbose=verbose,
            **kwargs,
        )
        self.init = init
        self.weight_decay = weight_decay
        self.l1 = l1
        self.lr_schedule = lr_schedule
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.patience = patience
        self.plateau_tol = plateau_tol
        self.checkpoint_dir = checkpoint_dir
        self.random_state = random_state
        self.pixel_scaling = pixel_scaling
        self.deskew = deskew
        # Flat parameters rather than skorch's prefix style (augment__rotation): skorch's
        # set_params raises "Something went wrong" for a non-module prefix on a fitted net.
        self.augment_rotation = augment_rotation
        self.augment_scale = augment_scale
        self.augment_shift = augment_shift
        self.augment_slant = augment_slant
        self.augment_blur = augment_blur
        self.augment_thickness = augment_thickness
        self.augment_gaps = augment_gaps
        self.augment_erasing = augment_erasing
        self.augment_elastic = augment_elastic
        self.augment_elastic_sigma = augment_elastic_sigma
        self.weight_averaging = weight_averaging
        self.averaging_decay = averaging_decay
        self.averaging_start = averaging_start
        self.recompute_bn = recompute_bn
        self.tta = tta
        self.precision = precision
        self.tracking = tracking
        self.tracking_options = tracking_options

    # ------------------------------------------------------------------ device
    # skorch reads ``self.device`` everywhere (module, criterion, batches). "auto" is resolved on
    # read, while get_params/clone/pickle keep the value the user gave.
    @property
    def device(self):
        return resolve_device(self.__dict__.get("device", "cpu"))

    @device.setter
    def device(self, value):
        self.__dict__["device"] = value

    def get_params(self, deep=True, **kwargs):
        params = super().get_params(deep=deep, **kwargs)
        params["device"] = self.__dict__.get("device", "cpu")
        return params

    def _get_param_names(self):
        # skorch lists every public-looking attribute, its private '_params_to_validate' included.
        return [k for k in super()._get_param_names() if not k.startswith("_")]

    def set_params(self, **params):
        # skorch's set_params rebuilds callbacks_ whenever a ``callbacks*`` key comes in, from
        # the ``callbacks`` list it is about to replace, so a value that is not a list (
        # scikit-learn's check_set_params sets -inf, inf and None on every parameter) made that
        # call and every later one raise TypeError. ``callbacks`` is a parameter like the
        # others: stored now, used and checked when fit builds callbacks_ (initialize). Only
        # ``callbacks__name__key`` keys edit callbacks_, and they still take skorch's way.
        if "callbacks" in params:
            self.callbacks = params.pop("callbacks")
        return super().set_params(**params)

    def __setstate__(self, state):
        # a model pickled before the parameter existed was fitted without deskewing
        state.setdefault("deskew", False)
        requested = state.get("device", "cpu")
        state["device"] = resolve_device(requested)
        super().__setstate__(state)
        if requested == "auto":
            self.__dict__["device"] = requested

    # ------------------------------------------------------------------ validation
    # What each parameter accepts, checked by params.validate at fit and partial_fit (never in
    # __init__ or set_params); params.describe_all(cls) renders it as text for the docs.
    _parameter_constraints: ClassVar[dict] = {
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "l1": [Interval(Real, 0, None, closed="left")],
        "validation_fraction": [None, Interval(Real, 0, 1, closed="left")],
        "lr_schedule": [None, Options(LR_SCHEDULES)],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "plateau_tol": [None, Interval(Real, 0, None, closed="neither")],
        "pixel_scaling": ["auto", True, False],
        "deskew": [InstanceOf((bool, np.bool_))],
        "precision": [Options(PRECISIONS)],
        "weight_averaging": [None, "ema", "swa"],
        "averaging_decay": [Interval(Real, 0, 1, closed="neither")],
        "averaging_start": [Interval(Real, 0, 1, closed="left")],
        "recompute_bn": [InstanceOf((bool, np.bool_))],
        "tta": [InstanceOf((bool, np.bool_))],
        "tracking": [InstanceOf(bool)],  # tracking's hooks test ``is True``: no numpy bools
        "tracking_options": [None, InstanceOf(dict)],
        # None: skorch's "leave the module where it is"; "auto" is read resolved (the property)
        "device": [Hidden(None), "cpu", StartsWith("cuda", "'cuda', 'cuda:N'"), "auto"],
        # skorch's: it adds these to the default callbacks at initialize (an empty tuple too)
        "callbacks": [None, "disable", InstanceOf(list, "a list of callbacks"), Hidden(())],
    }

    def _validate_hyperparams(self):
        # The table first, in its order; then the rules that span parameters or belong to others.
        validate(self)
        hooks.check_param(self, "tracking_options")  # tracking's own rules for its options
        if str(self.device).startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"{type(self).__name__}(device={self.__dict__.get('device')!r}) "
                             "needs CUDA, which this machine does not have; use device='auto' "
                             "or 'cpu'.")
        if self.early_stopping and not self._has_validation():
            raise ValueError(f"{type(self).__name__}(early_stopping=True) monitors the validation "
                             "loss: set validation_fraction > 0 (or a train_split).")
        resolve_optimizer(self.optimizer)
        device_type = torch.device(self.device).type
        if self.precision == "bfloat16" and not native_bfloat16(device_type):
            warnings.warn(
                f"{type(self).__name__}(precision='bfloat16'): this {device_type.upper()} has "
                "no bfloat16 instructions (AVX512-BF16 or AMX), so torch emulates them: a CNN "
                "trains ~13x slower than in float32 here. precision='auto' takes bfloat16 only "
                "where it is fast.", SlowPrecisionWarning, stacklevel=3)
        try:
            self._make_augment()
        except ValueError as exc:
            raise ValueError(f"{type(self).__name__}: {exc}") from None

    def _make_augment(self, generator=None):
        return Augment(**{name: getattr(self, f"augment_{name}") for name in AUGMENT_PARAMS},
                       generator=generator)

    def __sklearn_clone__(self):
        twin = super().__sklearn_clone__()
        hooks.cloned(self, twin)  # tracking: where the twin's run goes, wherever it is fitted
        return twin

    def _has_validation(self):
        return has_validation(self)

    def n_valid_samples(self, n):
        """Number of the ``n`` fit samples held out for validation."""
        if self.train_split is not None or not self.validation_fraction:
            return 0
        return math.ceil(self.validation_fraction * n)

    # ------------------------------------------------------------------ inputs
    # inputs.py validates and converts; what fit learns from the data is kept here.
    def _inputs(self):
        return InputAdapter(type(self).__name__, self.pixel_scaling)

    def _check_X(self, X, reset):
        """Validate X and return a float32 tensor ``(n, n_features)`` scaled by ``input_scale_``
        (and deskewed with ``deskew=True``)."""
        if reset:
            Xt, self.n_features_in_, self.input_scale_ = self._inputs().fit_X(X)
        else:
            Xt = self._inputs().transform_X(X, self.n_features_in_, self.input_scale_)
        if self.deskew:
            try:
                Xt = deskew_frames(Xt)
            except ValueError as exc:
                raise ValueError(f"{type(self).__name__}: {exc}") from None
        return Xt

    def _check_Xy(self, X, y, reset, classes=None):
        inputs = self._inputs()
        X, y = inputs.check_Xy(X, y)
        Xt = self._check_X(X, reset=reset)
        if reset:
            self.classes_inferred_ = inputs.fit_classes(
                y, classes if classes is not None else self.classes)
        return Xt, torch.from_numpy(inputs.encode(y, self.classes_))

    def _encode(self, y):
        return self._inputs().encode(y, self.classes_)

    @property
    def classes_(self):
        try:
            return self.classes_inferred_
        except AttributeError:
            raise AttributeError(f"{type(self).__name__} has no attribute 'classes_' before fit.") \
                from None

    def check_data(self, X, y=None):
        # Done in fit/partial_fit (_check_Xy); skorch's version would re-infer classes from the
        # encoded labels.
        pass

    # ------------------------------------------------------------------ callbacks
    def notify(self, method_name, **cb_kwargs):
        super().notify(method_name, **cb_kwargs)
        if method_name == "on_batch_end":
            raise_if_interrupt_requested()  # SIGTERM in the CLI: stop here, cleanly

    def on_train_error(self, net, error=None, **kwargs):
        """Called when a fit raises, before the error propagates (skorch has no such event)."""

    def _notify_train_error(self, error):
        # skorch has no event for a failed fit: the net and the callbacks that define one hear
        # it (the MLflow run ends FAILED or KILLED there).
        self.on_train_error(self, error=error)
        for _, cb in self.callbacks_:
            if getattr(type(cb), "on_train_error", None) is not None:
                cb.on_train_error(self, error=error)

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y, **fit_params):
        """Validate the data, initialize the network (unless ``warm_start``) and train.

        Every fit is tracked in MLflow unless ``tracking=False`` (see
        ``mnist_estimators.tracking``).

        Parameters
        ----------
        X : array-like of shape (n, 784), (n, 28, 28) or (n, 1, 28, 28)
            uint8 pixels (0-255) or floats; a pandas DataFrame works too.
        y : array-like of shape (n,)
            Labels of any type (ints, strings).

        Returns
        -------
        self
        """
        self._validate_hyperparams()
        reset = not (self.warm_start and self.initialized_)
        Xt, yt = self._check_Xy(X, y, reset=reset)
        if reset:
            self.initialize()
        self._train(Xt, yt, X, y, **fit_params)
        return self

    def partial_fit(self, X, y, classes=None, **fit_params):
        """Train for ``max_epochs`` more epochs without re-initializing (first call initializes).

        ``classes`` lists every label when a batch may not show them all.
        """
        self._validate_hyperparams()
        first = not self.initialized_ or not hasattr(self, "n_features_in_")
        Xt, yt = self._check_Xy(X, y, reset=first, classes=classes)
        if first:
            self.initialize()
        self._train(Xt, yt, X, y, **fit_params)
        return self

    def _train(self, Xt, yt, X_raw, y_raw, **fit_params):
        # skorch's partial_fit, except that only a callback's StopTraining ends training quietly;
        # a user's KeyboardInterrupt propagates (skorch swallows both). skorch has no event for
        # a failed fit: ``on_train_error(net, error)`` tells the callbacks that define it (the
        # MLflow run ends FAILED or KILLED there), then the error propagates.
        self.augment_ = self._start_augment(Xt)
        with fit_running():
            try:
                self.notify("on_train_begin", X=Xt, y=yt, X_raw=X_raw, y_raw=y_raw)
                try:
                    self.fit_loop(Xt, yt, **fit_params)
                except StopTraining:
                    pass
                self.notify("on_train_end", X=Xt, y=yt)
            except BaseException as exc:
                self._notify_train_error(exc)
                raise
            finally:
                del self.augment_  # holds a torch.Generator; only training uses it

    def _start_augment(self, Xt):
        augment = self._make_augment()
        if not augment.active:
            return None
        side = math.isqrt(Xt.shape[1])
        if side * side != Xt.shape[1]:
            raise ValueError(f"{type(self).__name__}: augmentation needs square images, but X has "
                             f"{Xt.shape[1]} features per sample (784 for 28x28).")
        if self.random_state is not None:
            # One stream per fit, continued across epochs; partial_fit calls draw new ones.
            augment.generator = torch.Generator(device=self.device).manual_seed(
                int(self.random_state) + 7919 * (len(self.history_) + 1))
        return augment

    def initialize_module(self):
        kwargs = {name: getattr(self, name) for name in self._module_params}
        kwargs["n_features"] = getattr(self, "n_features_in_", 784)
        kwargs["n_classes"] = len(self.classes_) if hasattr(self, "classes_inferred_") else 10
        kwargs.update(self.get_params_for("module"))
        if self.random_state is not None:
            # Seeds module init and then dropout for the fit that follows: same seed, same model.
            torch.manual_seed(self.random_state)
        module = self.initialized_instance(self.module, kwargs)
        self.module_ = init_weights(module, self.init, kwargs.get("activation", "relu"))
        return self

    def initialize_optimizer(self, triggered_directly=None):
        named_parameters = self.get_all_learnable_params()
        args, kwargs = self.get_params_for_optimizer("optimizer", named_parameters)
        cls, defaults = resolve_optimizer(self.optimizer)
        if self.weight_decay:
            defaults["weight_decay"] = self.weight_decay
        if use_fused_kernel(cls, kwargs, args[0]):
            defaults["fused"] = True
        self.optimizer_ = cls(*args, **{**defaults, **kwargs})
        return self

    @property
    def _default_callbacks(self):
        # training/defaults.py builds them; tracking's run (when on) goes before the epoch table
        return default_callbacks(self, extra=hooks.fit_callbacks(self))

    def get_split_datasets(self, X, y=None, **fit_params):
        if self.train_split is not None:
            return super().get_split_datasets(X, y, **fit_params)
        device = self.device
        n_valid = self.n_valid_samples(len(X))
        if not n_valid:
            return Dataset(X.to(device), y.to(device)), None
        y_np = y.numpy()
        counts = np.bincount(y_np)
        n_classes = int((counts > 0).sum())
        stratify = y_np if (counts[counts > 0].min() >= 2 and n_valid >= n_classes
                            and len(y_np) - n_valid >= n_classes) else None
        idx_train, idx_valid = train_test_split(
            np.arange(len(y_np)), test_size=n_valid, stratify=stratify,
            random_state=self.random_state)
        self._warn_small_split(y_np, idx_train, n_valid)
        idx_train, idx_valid = torch.from_numpy(idx_train), torch.from_numpy(idx_valid)
        return (Dataset(X[idx_train].to(device), y[idx_train].to(device)),
                Dataset(X[idx_valid].to(device), y[idx_valid].to(device)))

    def _warn_small_split(self, y, idx_train, n_valid):
        """Warn once per fit when the held-out split makes the fit or its scores meaningless:
        classes that only the validation split holds (never trained on), or fewer than
        ``MIN_VALID_SAMPLES`` validation samples."""
        problems = []
        left_out = np.setdiff1d(np.unique(y), np.unique(y[idx_train]))
        if len(left_out):
            labels = np.asarray(self.classes_)[left_out].tolist()
            problems.append(f"class(es) {labels} are only in the validation split, so the "
                            "network never trains on them")
        if n_valid < MIN_VALID_SAMPLES:
            problems.append(f"the validation split holds {n_valid} of {len(y)} samples, too few "
                            "for valid_acc and valid_loss to mean anything")
        if problems:
            warnings.warn(
                f"{type(self).__name__}(validation_fraction={self.validation_fraction}): "
                + "; ".join(problems) + ". Fit on more data, or set validation_fraction=None.",
                SmallSplitWarning, stacklevel=2)

    def get_iterator(self, dataset, training=False):
        if not training:
            return super().get_iterator(dataset, training=False)
        # skorch's default training iterator does not shuffle; ours does, seeded by random_state.
        kwargs = self.get_params_for("iterator_train")
        kwargs.setdefault("shuffle", True)
        if kwargs["shuffle"] and self.random_state is not None:
            kwargs.setdefault("generator", torch.Generator().manual_seed(int(self.random_state)))
        kwargs.setdefault("batch_size", self.batch_size)
        if kwargs["batch_size"] == -1:
            kwargs["batch_size"] = len(dataset)
        batches = self.iterator_train(dataset, **kwargs)
        augment = self.__dict__.get("augment_")
        return AugmentedBatches(batches, augment) if augment is not None else batches

    def get_dataset(self, X, y=None):
        if torch.is_tensor(X) and y is None:
            return Dataset(X, None)
        return super().get_dataset(X, y)

    def uses_bfloat16(self):
        """Does the forward pass run under bfloat16 autocast? ``precision="bfloat16"``: yes;
        "auto": where the device computes bfloat16 in hardware (a CUDA GPU that supports it, a
        CPU with AVX512-BF16 or AMX), else float32."""
        precision = getattr(self, "precision", "float32")
        if precision != "auto":
            return precision == "bfloat16"
        return native_bfloat16(torch.device(self.device).type)

    def infer(self, x, **fit_params):
        if not self.uses_bfloat16():
            return super().infer(x, **fit_params)
        # Mixed precision: the forward pass under autocast (bfloat16 matmuls and convolutions;
        # 1.7x faster for the CNN on an AVX512-BF16 CPU), the logits and loss in float32.
        # skorch has no autocast switch of its own (only through its accelerate integration).
        device_type = torch.device(self.device).type
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
            return super().infer(x, **fit_params).float()

    def get_loss(self, y_pred, y_true, X=None, training=False):
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if training and self.l1:
            # L1 on weights (not biases); skorch has no penalty hook, and optimizers only do L2.
            penalty = sum(p.abs().sum() for p in self.module_.parameters() if p.dim() > 1)
            loss = loss + self.l1 * penalty
        return loss

    def recompute_batchnorm(self, X):
        """Recompute the BatchNorm running statistics on ``X`` (no augmentation) with the
        current weights; what ``recompute_bn=True`` does on the training split when ``fit`` ends.
        A no-op for a module without BatchNorm. Returns self."""
        self.check_is_fitted(["module_", "n_features_in_"])
        self._recompute_batchnorm(self._check_X(X, reset=False))
        return self

    def _recompute_batchnorm(self, Xt):
        from torch.optim.swa_utils import update_bn

        batches = (Xt[i:i + 1024].to(self.device) for i in range(0, len(Xt), 1024))
        if self.uses_bfloat16():  # the statistics of the forward pass that predicts
            with torch.autocast(device_type=torch.device(self.device).type, dtype=torch.bfloat16):
                update_bn(batches, self.module_)
        else:
            update_bn(batches, self.module_)

    # ------------------------------------------------------------------ prediction
    def predict_proba(self, X):
        """Class probabilities, shape (n, n_classes), columns in the order of ``classes_``.

        With ``tta=True``, the mean of the probabilities of five views of each image: itself and
        shifted by one pixel up, down, left and right (5x the cost)."""
        self.check_is_fitted(["module_", "n_features_in_"])
        if is_dataset(X):  # skorch's scoring callbacks pass the validation Dataset itself
            return super().predict_proba(X)
        X = self._check_X(X, reset=False)
        if not self.tta:
            return super().predict_proba(X)
        side = math.isqrt(X.shape[1])
        if side * side != X.shape[1]:
            raise ValueError(f"{type(self).__name__}(tta=True) shifts square images, but X has "
                             f"{X.shape[1]} features per sample (784 for 28x28).")
        total = None
        for view in shifted_views(X, side):
            proba = super().predict_proba(view)
            total = proba if total is None else total + proba
        return total / 5

    def predict(self, X):
        """Predicted labels, taken from ``classes_``."""
        proba = self.predict_proba(X)  # first: raises NotFittedError before fit
        return self.classes_[proba.argmax(axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = self.random_state is None
        return tags


_COMMON_DOC = """
    init : str, default="default" ("he_normal" for MLPClassifier)
        Weight initialization: "default" (PyTorch's), "zero", "uniform" (U(0, 1)), "normal"
        (N(0, 0.01^2)), "he_uniform", "he_normal", "xavier_uniform", "xavier_normal".
    optimizer : str or torch optimizer class, default="adam"
        "sgd", "momentum" (SGD, momentum 0.9), "nesterov", "rmsprop", "adam", "adamw", or a class.
        Extra arguments go through ``optimizer__*`` (e.g. ``optimizer__momentum=0.95``).
        Adam and AdamW (by name or class) take torch's fused single-kernel step unless
        ``optimizer__fused``, ``foreach``, ``differentiable`` or ``capturable`` is given.
    lr : float, default=1e-3
        Learning rate (the peak rate with ``lr_schedule="onecycle"``).
    weight_decay : float, default=0.0
        L2 penalty, passed to the optimizer.
    l1 : float, default=0.0
        L1 penalty: ``l1 * sum(|w|)`` over weight matrices and kernels is added to the loss.
    batch_size : int, default=128
    max_epochs : int, default=10
    lr_schedule : {None, "step", "exponential", "cosine", "onecycle", "plateau"}, default=None
        Learning-rate schedule (skorch ``LRScheduler``; its arguments are reachable as
        ``callbacks__lr_scheduler__*``).
    validation_fraction : float or None, default=0.1
        Share of the fit data held out (stratified, seeded by ``random_state``) to report
        ``valid_loss``/``valid_acc`` each epoch and drive early stopping. None or 0 trains on all
        of it. Unlike skorch's default, nothing is held out that this parameter does not say.
    early_stopping : bool, default=False
        Stop when ``valid_loss`` has not improved for ``patience`` epochs, and restore the best
        weights (skorch ``EarlyStopping(load_best=True)``).
    patience : int, default=5
    plateau_tol : float or None, default=None
        Stop when the std of the last 5 epoch training losses is below ``plateau_tol`` times their
        mean (seed 004's plateau criterion).
    checkpoint_dir : str or None, default=None
        Save the weights after every epoch as ``params_epochN.pt`` there, plus ``history.json``.
    random_state : int or None, default=None
        Seeds weight init, dropout, shuffling and the validation split: same seed, same
        predictions on CPU. Note that it seeds torch's global generator at initialization.
    pixel_scaling : {"auto", True, False}, default="auto"
        "auto" divides integer-typed X (uint8 pixels) by 255, at fit and predict time alike.
        For float X the factor is learned in ``fit`` (``input_scale_``): 1/255 when the fit data
        were integers or floats in (1, 255], else 1 ([0, 1] images and standardized features
        pass unchanged), and float X at predict time is taken on that same scale. A fit whose
        inputs, so scaled, are far from unit scale (root mean square above 10, e.g. PCA of raw
        pixels) warns once with ``InputScaleWarning``: put a ``StandardScaler`` first.
    deskew : bool, default=False (True for CNNClassifier)
        Shear each square frame about its centre of mass until its ink's second-moment slant
        (``mu11 / mu02``) is 0, at fit and predict time alike (``training.deskew``): the
        network then never sees a lean. Ink is light on a 0 background; negative pixels weigh
        nothing. For the default CNN (four seeds, 50,000 training digits): +0.16 points on the
        10,000 held out, +1.0 on the hard real-world level (``docs/results.md``); ~0.6 s per
        60,000 images on 2 CPU cores, once per ``fit``. Needs square frames (784 features).
    augment_rotation, augment_scale, augment_shift : float, default=0.0
        Training-only random affine augmentation: largest rotation (degrees), relative zoom in
        and out (0.1 scales by U(0.9, 1.1)) and shift (pixels), drawn per image.
    augment_slant : float, default=0.0
        Largest horizontal shear, drawn per image as s ~ U(-augment_slant, augment_slant):
        ``x' = x + s * y``, y from the image centre, so the centre row stays put and the top
        and bottom lean opposite ways. It mimics the varying slant of real handwriting
        (issue #27): MNIST's own digits lean by shears of about +-0.4; typical: 0.3. Part of
        the same affine map as rotation, zoom and shift (sheared first), at no extra cost.
    augment_blur : float, default=0.0
        Largest Gaussian blur sigma (pixels), drawn per image.
    augment_thickness : float, default=0.0
        Largest stroke-width change, in [0, 2], drawn per image as t ~ U(-augment_thickness,
        augment_thickness): ``|t|`` steps of 3x3 dilation (t > 0, a thicker pen) or erosion (t < 0,
        a thinner one), a fractional step blended in linearly. One step changes a stroke's
        width by about 2 pixels. It mimics real handwriting's varying pen width (issue #27).
        Typical: 0.5 (MNIST digits keep 0.6x to 1.5x their ink); at 1 a full erosion removes
        most of a thin digit. Applied before the geometric transforms and blur.
    augment_gaps : int, default=0
        Largest number of breaks in the strokes, in [0, 8], drawn per image as k ~ U{0, ...,
        augment_gaps}: k discs of radius 0.75-1.5 pixels, each centred on an ink pixel, set to
        the background, so a stroke of MNIST's width is cut across by 1.5-3 pixels. It mimics
        the broken strokes of real handwriting and scans (issue #27); cnn_realworld sets 1
        (docs/results.md, "Real-world digits"). Applied after the thickness.
    augment_erasing : float, default=0.0
        Probability of erasing one random rectangle (2-20% of the image) to 0.
    augment_elastic : float, default=0.0
        Elastic distortion strength alpha in pixels (Simard et al. 2003 used 34 with sigma 4).
    augment_elastic_sigma : float, default=4.0
        Smoothness (pixels) of the elastic displacement field.

        All augmentation runs on whole batches as tensor ops inside the training iterator
        (``mnist_estimators.training.Augment``); validation, ``predict`` and ``score`` never see
        it. It assumes images with background 0, as pixels scaled to [0, 1] are.
    weight_averaging : {None, "ema", "swa"}, default=None
        Average the weights during training and predict with the average (``WeightAveraging``
        callback on ``torch.optim.swa_utils.AveragedModel``): "ema" is an exponential moving
        average over training steps (BatchNorm statistics averaged too); "swa" the plain mean of
        the end-of-epoch weights from ``averaging_start`` on (pair it with ``recompute_bn``).
        The history's ``valid_acc`` columns keep each epoch's own weights; the last row gains
        ``valid_acc_final``/``valid_loss_final``, the averaged model's.
    averaging_decay : float, default=0.999
        EMA decay per training step (0.999: an average over roughly the last 1,000 batches).
    averaging_start : float, default=0.75
        SWA: the share of ``max_epochs`` after which end-of-epoch weights join the average.
    recompute_bn : bool, default=False
        When training ends, recompute the BatchNorm running statistics on the training split,
        without augmentation, with the final weights (``recompute_batchnorm``).
    tta : bool, default=False
        Test-time augmentation in ``predict``/``predict_proba``/``score``: the mean probability
        over each image and its four one-pixel shifts (5x the prediction cost). Training and the
        per-epoch validation scores never use it.
    precision : {"float32", "bfloat16", "auto"}, default="float32"
        "bfloat16" runs the forward pass (training and prediction) under ``torch.autocast``:
        bfloat16 convolutions and matmuls, float32 weights, logits and loss. Faster on CPUs with
        AVX512-BF16/AMX and on recent GPUs; predictions can differ from float32 in rare ties.
        Elsewhere torch emulates it, ~13x slower for a CNN on an AVX2 CPU: a fit warns then.
        "auto" takes bfloat16 where the device computes it in hardware, else float32.
    device : {"cpu", "cuda", "cuda:N", "auto"}, default="cpu"
        "auto" takes CUDA when available.
    verbose : int, default=0
        1 prints skorch's per-epoch table.
    tracking : bool, default=True
        Log every fit to MLflow (params, per-epoch metrics, figures, model); see
        ``mnist_estimators.tracking``. ``set_tracking(False)`` turns it off everywhere.
    tracking_options : dict or None, default=None
        Keys of ``mnist_estimators.tracking.DEFAULT_OPTIONS``: ``experiment``, ``run_name``,
        ``tags``, ``log_model`` (True, False, "auto": not in search/CV folds), ``figures``
        ("auto", "none", "basic", "all"), ``embedding`` ("pca", "tsne"), ``register_as``,
        ``on_error`` ("warn", "raise"), ``fallback_dir``, ``system_metrics``.
    **kwargs
        Any skorch ``NeuralNet`` argument (``callbacks``, ``warm_start``, ``iterator_train``,
        ``module__*``, ...). ``iterator_train=torch.utils.data.DataLoader`` restores skorch's
        per-sample loader (``iterator_train__shuffle`` defaults to True either way).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    input_scale_ : float
    module_ : torch.nn.Module
    history_ : skorch.History
        Per-epoch ``train_loss``, ``valid_loss``, ``valid_acc``, ``dur`` (and per-batch values).
    last_run_id_ : str
        The MLflow run of the last tracked fit.
    last_model_uri_ : str or None
        Its logged model, ``models:/MODEL_ID`` (``mlflow.pyfunc.load_model`` takes it), or None
        when no model was logged.
"""


class SoftmaxRegressionClassifier(_MNISTClassifier):
    __doc__ = """Multinomial logistic (softmax) regression trained by mini-batch gradient descent.

    Parameters
    ----------""" + _COMMON_DOC + """
    See Also
    --------
    MLPClassifier, CNNClassifier

    Examples
    --------
    >>> from mnist_estimators import SoftmaxRegressionClassifier, load_mnist
    >>> X, y = load_mnist("train", data_home=None)  # doctest: +SKIP
    >>> clf = SoftmaxRegressionClassifier(max_epochs=2).fit(X[:500], y[:500])  # doctest: +SKIP
    >>> clf.predict(X[:3]).shape  # doctest: +SKIP
    (3,)
    """

    _module_params = ()

    def __init__(self, *, module=SoftmaxRegression, init="default", optimizer="adam", lr=1e-3,
                 batch_size=128, max_epochs=10, lr_schedule="cosine", **kwargs):
        super().__init__(module, init=init, optimizer=optimizer, lr=lr, batch_size=batch_size,
                         max_epochs=max_epochs, lr_schedule=lr_schedule, **kwargs)


class MLPClassifier(_MNISTClassifier):
    __doc__ = """Multi-layer perceptron.

    Parameters
    ----------
    hidden_sizes : tuple of int, default=(256, 128)
        Width of each hidden layer; its length is the depth.
    activation : {"relu", "leaky_relu", "elu", "tanh", "sigmoid", "gelu"}, default="relu"
    dropout : float, default=0.1
        Dropout after each hidden activation.
    batch_norm : bool, default=False
        BatchNorm1d after each hidden linear layer.""" + _COMMON_DOC + """
    See Also
    --------
    SoftmaxRegressionClassifier, CNNClassifier, sklearn.neural_network.MLPClassifier
    """

    _module_params = ("hidden_sizes", "activation", "dropout", "batch_norm")

    def __init__(self, *, hidden_sizes=(256, 128), activation="relu", dropout=0.1,
                 batch_norm=False, module=MLP, init="he_normal", optimizer="adam", lr=1e-3,
                 batch_size=128, max_epochs=10, lr_schedule="cosine", **kwargs):
        super().__init__(module, init=init, optimizer=optimizer, lr=lr, batch_size=batch_size,
                         max_epochs=max_epochs, lr_schedule=lr_schedule, **kwargs)
        self.hidden_sizes = hidden_sizes
        self.activation = activation
        self.dropout = dropout
        self.batch_norm = batch_norm


class CNNClassifier(_MNISTClassifier):
    __doc__ = """Convolutional network; takes flat (n, 784) or image-shaped input.

    Parameters
    ----------
    channels : tuple of int, default=(16, 32)
        Output channels of each block: Conv3x3 -> MaxPool2 -> BatchNorm -> activation (or
        Conv3x3 -> BatchNorm -> activation -> MaxPool2 with ``pool_first=False``).
    hidden_sizes : tuple of int, default=(128,)
        Fully connected layers after the conv blocks.
    activation : str, default="relu"
    dropout : float, default=0.25
        Dropout after each fully connected hidden layer.
    batch_norm : bool, default=True
    pool_first : bool, default=True
        Max-pool right after each block's last convolution, before BatchNorm and the
        activation, which then run on a quarter of the elements (``modules.CNN``): the default
        CNN fits 1.62x faster on 2 CPU cores at the same accuracy (test 0.9925 against 0.9923,
        ``benchmarks/bench_defaults.py``). False is the classic Conv-BN-ReLU-Pool order. Without
        BatchNorm the two orders compute the same function (max-pooling commutes with ReLU).""" + _COMMON_DOC + """
    See Also
    --------
    SoftmaxRegressionClassifier, MLPClassifier
    """

    _module_params = ("channels", "hidden_sizes", "activation", "dropout", "batch_norm",
                      "pool_first")

    def __init__(self, *, channels=(16, 32), hidden_sizes=(128,), activation="relu", dropout=0.25,
                 batch_norm=True, pool_first=True, module=CNN, init="default", optimizer="adam",
                 lr=3e-3,
                 batch_size=128, max_epochs=4, lr_schedule="onecycle", deskew=True, **kwargs):
        super().__init__(module, init=init, optimizer=optimizer, lr=lr, batch_size=batch_size,
                         max_epochs=max_epochs, lr_schedule=lr_schedule, deskew=deskew, **kwargs)
        self.channels = channels
        self.hidden_sizes = hidden_sizes
        self.activation = activation
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.pool_first = pool_first


ESTIMATORS = {
    "softmax": SoftmaxRegressionClassifier,
    "mlp": MLPClassifier,
    "cnn": CNNClassifier,
}

# The plugins the package names (tracking) are imported with the estimators, wherever they are
# imported from (``from mnist_estimators import MLPClassifier``, this module directly, or
# unpickling in a worker process): tracking's scikit-learn wrappers are then in place before the
# user's own ``from sklearn.model_selection import cross_validate`` binds the name.
hooks.load_plugins_with_estimators()
