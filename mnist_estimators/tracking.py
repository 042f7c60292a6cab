"""MLflow tracking of every fit.

Each ``fit`` of an estimator runs inside ``track_fit``, which opens an MLflow run, logs the
parameters, the training data (``mlflow.data`` + ``log_input``) and tags, lets the
``MlflowEpochLogger`` callback log per-epoch metrics, and at the end logs the final metrics,
figures and the model (the whole ``Pipeline`` when the estimator is its last step). The run ends
FINISHED, FAILED (exception) or KILLED (``KeyboardInterrupt``); both errors re-raise.

Which run a fit uses:

- an MLflow run is active in this process (the user's, a search's parent): a child of it;
- the estimator was cloned while a run was active (``GridSearchCV`` / ``cross_validate`` with
  ``n_jobs=2`` ship clones to loky worker processes, where no run is active): a child of that run;
- otherwise: a run of its own, in experiment "mnist-estimators".

Where runs go: ``MLFLOW_TRACKING_URI`` (or ``mlflow.set_tracking_uri``) when set, else an
embedded store in ``./mlruns/`` (``mlflow.db`` sqlite + ``artifacts/``), no server needed.

Turning it off: ``tracking=False`` on an estimator, or globally ``set_tracking(False)`` /
``MNIST_ESTIMATORS_TRACKING=0``. Off means no MLflow call at all.

A failing backend never costs the model: training goes on, a warning names the problem, and the
fitted model is pickled under ``fallback_dir``. ``tracking_options={"on_error": "raise"}`` makes
tracking failures fatal instead.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import subprocess
import sys
import threading
import time
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
from skorch.callbacks import Callback, MlflowLogger
from skorch.callbacks.logging import filter_log_keys

ENV_SWITCH = "MNIST_ESTIMATORS_TRACKING"
DEFAULT_EXPERIMENT = "mnist-estimators"
DEFAULT_OPTIONS = {
    "experiment": None,       # experiment name; default: the active/env one, else "mnist-estimators"
    "run_name": None,
    "tags": None,             # extra tags for the run (dict)
    "log_model": True,        # log the fitted model (or its Pipeline) as an MLflow model
    "figures": "basic",       # "none", "basic" (curves, confusion, misclassified) or "all"
    "embedding": "pca",       # "pca" or "tsne", for the "all" figures' activation embedding
    "register_as": None,      # register the logged model under this name
    "on_error": "warn",       # "warn": keep training, save the model locally; "raise": fail
    "fallback_dir": "models/unlogged",
}
# Parameters that say nothing about the model: left out of the logged params.
_NOISY_PARAMS = ("verbose", "callbacks", "iterator_valid", "dataset", "predict_nonlinearity",
                 "use_caching", "torch_load_kwargs", "compile", "tracking", "tracking_options")
_NOISY_CALLBACKS = ("print_log", "epoch_timer", "train_loss", "valid_loss", "valid_acc",
                    "divergence_guard", "mlflow", "record_lr", "weight_snapshots")

_enabled = None


class TrackingError(RuntimeError):
    """MLflow logging failed and ``on_error="raise"`` was asked for."""


def set_tracking(enabled):
    """Turn MLflow tracking on or off for every estimator in this process.

    ``None`` goes back to the ``MNIST_ESTIMATORS_TRACKING`` environment variable (default on).
    """
    global _enabled
    _enabled = None if enabled is None else bool(enabled)


def is_enabled():
    if _enabled is not None:
        return _enabled
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "off", "no")


def enabled_for(estimator):
    """Is this estimator's fit tracked? Its ``tracking`` flag, and the switch as it stood where
    it was cloned (a worker's own environment may be stale), else this process's switch."""
    context = getattr(estimator, "tracking_context_", None)
    enabled = context["enabled"] if context is not None else is_enabled()
    return enabled and estimator.tracking is True


def resolve_options(options, owner="tracking_options"):
    options = dict(options or {})
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ValueError(f"Unknown key(s) {unknown} in {owner}; valid keys: {sorted(DEFAULT_OPTIONS)}.")
    merged = {**DEFAULT_OPTIONS, **options}
    if merged["figures"] not in ("none", "basic", "all"):
        raise ValueError(f"{owner}['figures'] must be 'none', 'basic' or 'all'. Got {merged['figures']!r}.")
    if merged["on_error"] not in ("warn", "raise"):
        raise ValueError(f"{owner}['on_error'] must be 'warn' or 'raise'. Got {merged['on_error']!r}.")
    return merged


# --------------------------------------------------------------------------- store & context


def ensure_store():
    """Point MLflow at ``./mlruns/`` unless a tracking URI was set; return (uri, artifact_root).

    ``artifact_root`` is None when the user chose the store (their server decides).
    """
    import mlflow
    from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

    if os.environ.get("MLFLOW_TRACKING_URI") or is_tracking_uri_set():
        return mlflow.get_tracking_uri(), None
    root = Path("mlruns").resolve()
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return uri, (root / "artifacts").as_uri()


def experiment_id(client, name, artifact_root):
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        # The kind tag makes the MLflow UI open on the runs table, not its GenAI overview.
        return client.create_experiment(name, artifact_location=artifact_root,
                                        tags={"mlflow.experimentKind": "custom_model_development"})
    except MlflowException:  # created meanwhile by another process
        return client.get_experiment_by_name(name).experiment_id


def capture_context():
    """Tracking as decided in this process, for a clone that may be fitted in another one.

    Called by ``__sklearn_clone__``: a search clones in the main process, then ships the clone to
    a loky worker, whose environment was fixed when it started. The clone carries whether
    tracking is on and the parent run (MLflow has no cross-process parent of its own).
    """
    if not is_enabled():
        return {"enabled": False}
    return {"enabled": True, "parent": capture_parent()}


def capture_parent():
    """The active run (or an open ``parent_run``) as a parent for fits elsewhere, or None."""
    import mlflow

    run = mlflow.active_run()
    if run is None:
        # MLflow's active run is per thread, and joblib clones later candidates from its own
        # callback thread: the parent_run() open in this process stands in.
        with _threads_lock:
            return dict(_open_parents[-1]) if _open_parents else None
    return {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
            "tracking_uri": mlflow.get_tracking_uri()}


def start_parent_run(run_name=None, experiment=None, tags=None):
    """Open a top-level run in the right store and experiment, made active (for searches)."""
    import mlflow

    uri, artifact_root = ensure_store()
    client = mlflow.MlflowClient(uri)
    exp_id = experiment_id(client, experiment or _default_experiment_name(), artifact_root)
    return mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags=tags)


@contextlib.contextmanager
def parent_run(run_name=None, experiment=None, tags=None):
    """A parent run for a search or a cross-validation: every fit inside becomes its child.

    Fits in worker processes (``n_jobs=2``) attach to it too. On exit, waits for the children's
    logging, then ends the run FINISHED, FAILED (exception) or KILLED (``KeyboardInterrupt``).
    Yields a ``ParentRun`` (None when tracking is off) whose ``log_search`` and ``log_cv`` put
    the summary on the parent.

    >>> with parent_run("grid") as parent:          # doctest: +SKIP
    ...     grid.fit(X, y)
    ...     parent.log_search(grid)
    """
    if not is_enabled():
        yield None
        return
    import mlflow

    run = start_parent_run(run_name=run_name, experiment=experiment, tags=tags)
    entry = {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
             "tracking_uri": mlflow.get_tracking_uri()}
    with _threads_lock:
        _open_parents.append(entry)
    status = "FINISHED"
    try:
        yield ParentRun(run.info.run_id)
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        with _threads_lock:
            _open_parents.remove(entry)
        flush()
        mlflow.end_run(status)


class ParentRun:
    """The summary of a search or cross-validation, logged on its parent run."""

    def __init__(self, run_id):
        import mlflow

        self.run_id = run_id
        self.client = mlflow.MlflowClient()

    def log_search(self, search, X=None):
        """Best params and score, ``cv_results_`` as a table, and the refit model."""
        import pandas as pd

        self.client.log_batch(self.run_id, params=_params({
            f"best.{k}": v for k, v in search.best_params_.items()}))
        self.client.log_metric(self.run_id, "best_cv_score", float(search.best_score_))
        self.client.set_tag(self.run_id, "search_class", type(search).__name__)
        table = pd.DataFrame(search.cv_results_).astype(
            {k: str for k in search.cv_results_ if k.startswith("param")})
        self.client.log_table(self.run_id, table, "cv_results.json")
        self.client.log_text(self.run_id, table.to_csv(index=False), "cv_results.csv")
        if getattr(search, "refit", False) and hasattr(search, "best_estimator_"):
            self.log_model(search.best_estimator_, X)

    def log_cv(self, results):
        """Mean and std of every score column of ``cross_validate``'s result, and the table."""
        import pandas as pd

        table = pd.DataFrame({k: v for k, v in results.items() if k != "estimator"})
        for col in table:
            self.client.log_metric(self.run_id, f"{col}_mean", float(table[col].mean()))
            self.client.log_metric(self.run_id, f"{col}_std", float(table[col].std(ddof=0)))
        self.client.log_text(self.run_id, table.to_csv(index=False), "cv_results.csv")

    def log_model(self, model, X=None):
        """Log a fitted estimator or pipeline as this run's MLflow model."""
        log_sklearn_model(self.client, self.run_id, model, X)


def log_sklearn_model(client, run_id, model, X=None, registered_model_name=None):
    """Log ``model`` on run ``run_id``: cloudpickle (skops refuses skorch nets), pinned
    requirements (inferring them costs ~5 s), this package's code, and a signature and input
    example from the first rows of ``X``."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    example = None if X is None else np.asarray(X)[:5]
    signature = None if example is None else infer_signature(example, model.predict(example))
    # log_model(run_id=...) files the LoggedModel under the *active* experiment, where
    # runs:/RUN/model cannot find it; creating it in the run's experiment first avoids that.
    exp_id = client.get_run(run_id).info.experiment_id
    logged = client.create_logged_model(exp_id, name="model", source_run_id=run_id)
    info = mlflow.sklearn.log_model(
        model, name="model", serialization_format="cloudpickle", signature=signature,
        input_example=example, pip_requirements=pip_requirements(),
        code_paths=[str(Path(__file__).parent)], run_id=run_id, model_id=logged.model_id,
        registered_model_name=registered_model_name)
    client.set_tag(run_id, "model_uri", f"runs:/{run_id}/model")
    return info


_autolog = {}


def autolog(enable=True):
    """Give every scikit-learn search over these estimators a parent run, automatically.

    Once called, ``GridSearchCV``/``RandomizedSearchCV`` (any ``BaseSearchCV``) whose estimator
    is, or ends in, one of ours runs its ``fit`` inside ``parent_run`` and logs the summary
    (``log_search``): best params and score, ``cv_results``, the refit model. Searches over
    other estimators, and searches inside a run already open, are left alone. Like
    ``mlflow.sklearn.autolog``, it patches ``BaseSearchCV.fit``; ``autolog(False)`` undoes it.
    ``cross_validate`` is a function that callers bind at import, so it cannot be patched
    reliably: wrap it in ``parent_run`` and call ``log_cv``.
    """
    from sklearn.model_selection._search import BaseSearchCV

    if not enable:
        if "fit" in _autolog:
            BaseSearchCV.fit = _autolog.pop("fit")
        return
    if "fit" in _autolog:
        return
    original = BaseSearchCV.fit

    def fit(self, X, y=None, **params):
        import mlflow

        if not (is_enabled() and _ours(self.estimator)) or mlflow.active_run() is not None \
                or _open_parents:
            return original(self, X, y, **params)
        with parent_run(type(self).__name__, tags={"search_class": type(self).__name__}) as parent:
            original(self, X, y, **params)
            parent.log_search(self, X)
        return self

    fit.__wrapped__ = original
    fit.__doc__ = original.__doc__
    _autolog["fit"] = original
    BaseSearchCV.fit = fit


def _ours(estimator):
    from sklearn.pipeline import Pipeline

    from .estimators import _MNISTClassifier

    if isinstance(estimator, Pipeline):
        estimator = estimator.steps[-1][1]
    return isinstance(estimator, _MNISTClassifier)


def log_value(run_id, key, value):
    """Log one more metric on a finished fit's run (waits for its background logging first)."""
    import mlflow

    flush()
    mlflow.MlflowClient().log_metric(run_id, key, float(value))


def register(run_id, name, alias=None):
    """Register the model logged by run ``run_id`` under ``name``; optionally point ``alias`` at
    the new version. Returns the ``ModelVersion``; load it with ``models:/NAME@ALIAS``."""
    import mlflow

    version = mlflow.register_model(f"runs:/{run_id}/model", name)
    if alias:
        mlflow.MlflowClient().set_registered_model_alias(name, alias, version.version)
    return version


def _params(mapping):
    from mlflow.entities import Param

    return [Param(str(k), str(v)[:1000]) for k, v in mapping.items()]


def _default_experiment_name():
    import mlflow

    if os.environ.get("MLFLOW_EXPERIMENT_NAME"):
        return os.environ["MLFLOW_EXPERIMENT_NAME"]
    active = mlflow.tracking.fluent._active_experiment_id or os.environ.get("MLFLOW_EXPERIMENT_ID")
    if active:
        return mlflow.MlflowClient().get_experiment(active).name
    return DEFAULT_EXPERIMENT


@lru_cache(maxsize=1)
def git_commit():
    """The git commit of the installed package's checkout, or None."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


# --------------------------------------------------------------------------- params


def flat_params(estimator):
    """Every parameter as a string, nested keys flattened, noise left out."""
    out = {}
    for key, value in estimator.get_params(deep=True).items():
        head = key.split("__")[0]
        if head in _NOISY_PARAMS and not key.startswith("callbacks__"):
            continue
        if key.startswith("callbacks__"):
            parts = key.split("__")
            if len(parts) < 3 or parts[1] in _NOISY_CALLBACKS or "sink" in parts[2]:
                continue
        if isinstance(value, type):
            value = f"{value.__module__}.{value.__qualname__}"
        elif callable(value) and not isinstance(value, (int, float, str)):
            value = getattr(value, "__qualname__", repr(value))
        out[key] = str(value)[:1000]
    return out


# --------------------------------------------------------------------------- callbacks


class MlflowEpochLogger(MlflowLogger):
    """skorch's ``MlflowLogger``, batched: one ``log_batch`` per epoch, and failures reported to
    the fit's tracker instead of stopping training. skorch's version makes one blocking
    ``log_metric`` call per value and needs a fluent active run.
    """

    def __init__(self, **kwargs):
        super().__init__(create_artifact=False, terminate_after_train=False, **kwargs)

    def initialize(self):
        self.keys_ignored_ = {"batches", "train_batch_count", "valid_batch_count"}
        self.batch_suffix_ = self.epoch_suffix_ = ""
        self.dataset_valid_ = None
        self.tracker_ = None
        return self

    def on_train_begin(self, net, **kwargs):
        self._batch_count = 0

    def on_epoch_end(self, net, dataset_valid=None, **kwargs):
        # The fit's tracker lives on the net only during fit (so warm starts log to their own run).
        self.tracker_ = getattr(net, "tracker_", None)
        if self.tracker_ is None:
            return
        self.dataset_valid_ = dataset_valid
        self._iteration_log(net.history[-1], "", len(net.history))

    def _iteration_log(self, logs, suffix, step):
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = []
        for key in filter_log_keys(logs.keys(), self.keys_ignored_):
            value = logs[key]
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
                continue
            name = "epoch_time_s" if key == "dur" else key + suffix
            metrics.append(Metric(name, float(value), stamp, step))
        self.tracker_.log_metrics(metrics)

    def on_train_end(self, net, **kwargs):
        self.tracker_ = None


class WeightSnapshots(Callback):
    """Keep a sample of every weight layer after each epoch, for the weight-histogram figure."""

    def __init__(self, max_values=20000):
        self.max_values = max_values

    def initialize(self):
        self.snapshots_ = {}
        return self

    def on_epoch_end(self, net, **kwargs):
        import torch

        epoch = len(net.history)
        for name, p in net.module_.named_parameters():
            if p.dim() < 2:
                continue
            flat = p.detach().reshape(-1)
            if flat.numel() > self.max_values:
                idx = torch.linspace(0, flat.numel() - 1, self.max_values).long().to(flat.device)
                flat = flat[idx]
            self.snapshots_.setdefault(name, []).append((epoch, flat.cpu().numpy().copy()))


# --------------------------------------------------------------------------- one fit's run


class FitTracker:
    """The MLflow run of one fit. Every MLflow call goes through ``_safe``."""

    def __init__(self, estimator, X, y, options):
        self.estimator = estimator
        self.X, self.y = X, y
        self.options = options
        self.client = None
        self.run_id = None
        self.broken = None  # the first failure, once tracking has failed
        self.valid_data = None
        self.model_copy = self.figure_data = None
        self.in_worker = False
        self.pipeline = enclosing_pipeline(estimator)  # now, while Pipeline.fit is on the stack
        self.started = time.perf_counter()

    @property
    def active(self):
        return self.run_id is not None and self.broken is None

    # -- failure handling
    def _safe(self, what, fn, *args, **kwargs):
        if self.broken is not None:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any backend fault must not cost the model
            self.broken = f"{what}: {type(exc).__name__}: {exc}"
            if self.options["on_error"] == "raise":
                raise TrackingError(f"MLflow tracking failed while {self.broken}") from exc
            warnings.warn(f"MLflow tracking failed while {self.broken}. Training continues "
                          "untracked; the fitted model will be saved locally.", RuntimeWarning,
                          stacklevel=3)
            return None

    # -- start
    def start(self):
        self._safe("starting the run", self._start)

    def _start(self):
        import mlflow
        from mlflow.tracking.context.registry import resolve_tags
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

        from . import __version__

        est = self.estimator
        parent = mlflow.active_run()
        captured = (getattr(est, "tracking_context_", None) or {}).get("parent")
        if parent is None and captured is None:
            captured = capture_parent()  # a parent_run() open in another thread of this process
        if parent is not None:
            uri, _ = ensure_store()
            parent_id, exp_id = parent.info.run_id, parent.info.experiment_id
        elif captured is not None:
            self.in_worker = True
            mlflow.set_tracking_uri(captured["tracking_uri"])  # this (worker) process's store
            uri, parent_id, exp_id = captured["tracking_uri"], captured["run_id"], captured["experiment_id"]
        else:
            uri, artifact_root = ensure_store()
            parent_id = None
            name = self.options["experiment"] or _default_experiment_name()
            exp_id = experiment_id(mlflow.MlflowClient(uri), name, artifact_root)
        self.client = mlflow.MlflowClient(uri)
        pipeline, _ = self.pipeline
        position = search_position()
        tags = {
            MLFLOW_RUN_NAME: self.options["run_name"] or _run_name(est, position),
            "estimator_class": type(est).__name__,
            "mnist_estimators.version": __version__,
            "model_kind": "pipeline" if pipeline is not None else "estimator",
        }
        if parent_id is not None:
            tags[MLFLOW_PARENT_RUN_ID] = parent_id
        tags.update({f"search.{k}": v for k, v in position.items()})
        tags.update({str(k): str(v) for k, v in (self.options["tags"] or {}).items()})
        if git_commit():
            tags["git_commit"] = git_commit()
        run = self.client.create_run(exp_id, tags=resolve_tags(tags))
        self.run_id = run.info.run_id
        self._log_params()

    def _log_params(self):
        from mlflow.entities import Param

        params = flat_params(self.estimator)
        pipeline, _ = self.pipeline
        if pipeline is not None:
            params["pipeline.steps"] = " -> ".join(
                f"{name}:{type(step).__name__}" for name, step in pipeline.steps)[:1000]
        X = self.raw_X
        params["data.shape"] = str(tuple(np.shape(X)))
        params["data.dtype"] = str(getattr(X, "dtype", type(X).__name__))
        params["data.source"] = self.source["kind"]
        items = [Param(k, v) for k, v in sorted(params.items())]
        for i in range(0, len(items), 90):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i:i + 90])

    def _log_dataset(self):
        import mlflow.data
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        X = np.asarray(self.raw_X)
        src = self.source
        name = {"folder": "mnist", "cache": "mnist", "download": "mnist", "sample": "mnist-sample",
                "csv": "mnist-csv"}.get(src["kind"], "arrays")
        if src.get("rows") == "subset":
            name += "-subset"
        path = src.get("path") if src["kind"] in ("folder", "cache", "download", "csv") else None
        with warnings.catch_warnings():
            # MLflow registers LocalArtifactDatasetSource twice (schemes "" and "file"), so every
            # local path "can be interpreted in multiple ways", both of them the same class.
            warnings.filterwarnings("ignore", message="The specified dataset source can be "
                                    "interpreted in multiple ways")
            ds = mlflow.data.from_numpy(X, targets=np.asarray(self.y),
                                        name=f"{name}-{src.get('subset', 'train')}", source=path)
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(
            ds._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, "training")])])
        self.client.set_tag(self.run_id, "data.digest", ds.digest)

    # -- during training
    def log_metrics(self, metrics):
        # One batched call per epoch (a few ms against a sqlite store, an epoch takes seconds).
        # MLflow's asynchronous queue was tried first: its executor is shut down by any
        # mlflow.end_run() in the process, after which queued logging fails.
        if not self.active or not metrics:
            return
        self._safe("logging epoch metrics", self.client.log_batch, self.run_id, metrics=metrics,
                   synchronous=True)

    # -- end
    def finish(self, status, error=None):
        """End the run with ``status``.

        On FINISHED, the final metrics are logged and the model and figure data snapshotted at
        once; the slow part (dataset digest, rendering figures, the MLflow model, the end status)
        runs in a background thread so that ``fit`` returns without waiting for it
        (``tracking.flush()`` waits; interpreter exit waits too). With ``on_error="raise"`` it
        all happens before ``fit`` returns, so a failure can raise.
        """
        if self.run_id is None:
            if status == "FINISHED" and self.broken is not None:
                self.model_copy = self._model()
                self._save_locally()
            return
        if status != "FINISHED":
            if error is not None:
                self._safe("tagging the error", self.client.set_tag, self.run_id, "error",
                           f"{type(error).__name__}: {error}"[:5000])
            self._end(status)
            return
        self._safe("logging final metrics", self._log_final)
        self._snapshot()
        # In a worker process (a search's n_jobs=2) the work is done before returning: the
        # worker may be shut down once idle, which would cut a background thread short.
        if self.options["on_error"] == "raise" or self.in_worker:
            self._complete()
        else:
            _background(self._complete)

    def _complete(self):
        self._safe("logging the dataset", self._log_dataset)
        if self.options["figures"] != "none":
            self._safe("logging figures", self._log_figures)
        if self.options["log_model"]:
            self._safe("logging the model", self._log_model)
        if self.broken is not None:
            self._save_locally()
        self._end("FINISHED")
        self.model_copy = self.figure_data = None

    def _end(self, status):
        # The end status is attempted even after a failure, so no run is left RUNNING if the
        # backend comes back.
        try:
            self.client.set_terminated(self.run_id, status)
        except Exception as exc:  # noqa: BLE001
            if self.options["on_error"] == "raise" and status == "FINISHED":
                raise TrackingError(f"MLflow tracking failed while ending the run: {exc}") from exc
            warnings.warn(f"MLflow could not mark run {self.run_id} {status}: {exc}",
                          RuntimeWarning, stacklevel=2)

    def _model(self):
        pipeline, _ = self.pipeline
        return pipeline if pipeline is not None else self.estimator

    def _snapshot(self):
        """Copy what the background work needs, so later changes to the estimator cannot leak in."""
        import copy

        est = self.estimator
        self.model_copy = copy.deepcopy(self._model())
        self.figure_data = None
        if self.options["figures"] == "none":
            return
        data = {"history": copy.deepcopy(est.history_)}
        ds = self.valid_data
        if ds is not None:
            proba = est.predict_proba(ds)
            data["y_true"] = est.classes_[ds.y.cpu().numpy()]
            data["y_pred"] = est.classes_[proba.argmax(1)]
            data["X_valid"] = ds.X.cpu().numpy()
            data["labels"] = est.classes_
            if self.options["figures"] == "all":
                n = min(1000, len(ds.X))
                data["features"] = penultimate_activations(est, ds.X[:n])
        snaps = dict(est.callbacks_).get("weight_snapshots")
        if snaps is not None:
            data["weights"], snaps.snapshots_ = snaps.snapshots_, {}
        self.figure_data = data

    def _log_final(self):
        from mlflow.entities import Metric

        history = self.estimator.history_
        stamp, step = int(time.time() * 1000), len(history)
        values = {"fit_time_s": time.perf_counter() - self.started, "n_epochs": len(history)}
        last = history[-1] if len(history) else {}
        for key in ("train_loss", "valid_loss", "valid_acc"):
            if key in last:
                values[f"final_{key}"] = last[key]
        if len(history) and "valid_loss" in last:
            values["best_valid_loss"] = float(np.min(history[:, "valid_loss"]))
            values["best_valid_acc"] = float(np.max(history[:, "valid_acc"]))
        self.client.log_batch(self.run_id, metrics=[
            Metric(k, float(v), stamp, step) for k, v in values.items()])

    def _log_figures(self):
        from . import plots

        d = self.figure_data
        figures = {"learning_curves.png": plots.learning_curves(d["history"])}
        if "y_true" in d:
            figures["confusion_matrix.png"] = plots.confusion_matrix(d["y_true"], d["y_pred"], d["labels"])
            figures["misclassified.png"] = plots.misclassified_grid(d["X_valid"], d["y_true"], d["y_pred"])
        if "features" in d:
            n = len(d["features"])
            figures["embedding.png"] = plots.embedding(d["features"], d["y_true"][:n],
                                                       self.options["embedding"])
        if "weights" in d:
            figures["weight_histograms.png"] = plots.weight_histograms(d["weights"])
        for name, fig in figures.items():
            self.client.log_figure(self.run_id, fig, f"figures/{name}")

    def _log_model(self):
        log_sklearn_model(self.client, self.run_id, self.model_copy, self.raw_X,
                          registered_model_name=self.options["register_as"])

    def _save_locally(self):
        from .estimators import save_model

        model = self.model_copy
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        path = Path(self.options["fallback_dir"]) / f"{type(self.estimator).__name__}-{stamp}.pkl"
        try:
            save_model(model, path)
        except Exception as exc:  # noqa: BLE001
            warnings.warn(f"Could not save the model locally either ({exc}); it is still in memory.",
                          RuntimeWarning, stacklevel=3)
            return
        self.saved_to = path
        warnings.warn(f"MLflow tracking failed ({self.broken}); the fitted model was saved to {path}.",
                      RuntimeWarning, stacklevel=3)

    # -- context
    @property
    def raw_X(self):
        _, raw = self.pipeline
        return raw if raw is not None else self.X

    @property
    def source(self):
        from .data import data_source

        return data_source(self.raw_X) or {"kind": "arrays"}


def _run_name(est, position=None):
    name = type(est).__name__
    if position and "refit" in position:
        return f"{name} refit"
    if position and "candidate" in position:
        return f"{name} candidate {position['candidate']} fold {position['fold']}"
    return f"{name}-{datetime.datetime.now().strftime('%H%M%S')}"


def search_position():
    """Candidate and fold when a scikit-learn search or cross_validate runs this fit, read from
    the call stack (sklearn passes them to ``_fit_and_score`` for its progress messages only)."""
    from sklearn.model_selection._search import BaseSearchCV

    frame = sys._getframe(1)
    while frame is not None:
        code, local = frame.f_code, frame.f_locals
        if code.co_name == "_fit_and_score":
            split, cand = local.get("split_progress"), local.get("candidate_progress")
            out = {}
            if split:
                out["fold"] = f"{split[0] + 1}/{split[1]}"
            if cand:
                out["candidate"] = f"{cand[0] + 1}/{cand[1]}"
            elif split:
                out["candidate"] = "1/1"
            return out
        if code.co_name == "fit" and isinstance(local.get("self"), BaseSearchCV):
            return {"refit": "true"}
        frame = frame.f_back
    return {}


def enclosing_pipeline(estimator):
    """The ``Pipeline`` whose ``fit`` is fitting ``estimator`` as its last step, and its raw X.

    scikit-learn gives an estimator no handle on the pipeline that fits it, so the call stack is
    read: ``Pipeline.fit`` fits the preprocessing steps first, so by the time the last step's
    fit ends, the pipeline is whole and can be logged as the model.
    """
    from sklearn.pipeline import Pipeline

    frame = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, Pipeline) and frame.f_code.co_name in ("fit", "fit_predict"):
            try:
                if owner._final_estimator is estimator:
                    return owner, frame.f_locals.get("X")
            except (AttributeError, IndexError):
                pass
        frame = frame.f_back
    return None, None


def penultimate_activations(est, X):
    """Inputs of the module's last Linear layer for ``X`` (a float tensor), as a numpy array."""
    import torch

    last = [m for m in est.module_.modules() if isinstance(m, torch.nn.Linear)][-1]
    captured = []
    handle = last.register_forward_hook(lambda mod, inp, out: captured.append(inp[0].detach().cpu()))
    try:
        est.module_.eval()
        with torch.no_grad():
            est.module_(X.to(next(est.module_.parameters()).device))
    finally:
        handle.remove()
    return torch.cat(captured).numpy()


class _CloudpickleNotice(logging.Filter):
    # mlflow.sklearn warns at every cloudpickle save and recommends skops, which refuses skorch
    # nets; cloudpickle is the deliberate choice here, so the notice is dropped.
    def filter(self, record):
        return "cloudpickle format requires exercising caution" not in record.getMessage()


logging.getLogger("mlflow.sklearn").addFilter(_CloudpickleNotice())

_threads = []
_threads_lock = threading.Lock()
_open_parents = []  # parent_run()s open in this process, innermost last


def _background(job):
    """Run ``job`` in a non-daemon thread: the interpreter waits for it at exit."""
    thread = threading.Thread(target=job, name="mnist-estimators-tracking")
    with _threads_lock:
        _threads[:] = [t for t in _threads if t.is_alive()]
        _threads.append(thread)
    thread.start()


def flush(timeout=None):
    """Wait until every fit's background logging (figures, model, end status) is done."""
    with _threads_lock:
        threads = list(_threads)
    for thread in threads:
        thread.join(timeout)


@lru_cache(maxsize=1)
def pip_requirements():
    """Pinned requirements of a logged model; inferring them would cost ~5 s per model."""
    from importlib.metadata import version

    pins = [f"{name}=={version(name)}" for name in
            ("mlflow", "skorch", "scikit-learn", "numpy", "cloudpickle", "pandas")]
    return [f"torch=={version('torch').split('+')[0]}"] + pins


@contextlib.contextmanager
def track_fit(estimator, X, y):
    """Run a fit inside an MLflow run (or nothing, when tracking is off).

    skorch has no callback for a failed fit, so the run's end status is set here, around the
    training, rather than in a callback.
    """
    if not enabled_for(estimator):
        yield None
        return
    tracker = FitTracker(estimator, X, y, resolve_options(estimator.tracking_options))
    tracker.start()
    estimator.tracker_ = tracker
    try:
        yield tracker
    except KeyboardInterrupt:
        _detach(estimator)
        tracker.finish("KILLED")
        raise
    except BaseException as exc:
        _detach(estimator)
        if type(exc).__name__ == "TrialPruned":  # Optuna stopped it: not a failure
            if tracker.run_id is not None:
                tracker._safe("tagging the pruning", tracker.client.set_tag, tracker.run_id,
                              "optuna.pruned", str(exc))
            tracker.finish("KILLED")
            raise
        tracker.finish("FAILED", exc)
        raise
    else:
        tracker.valid_data = _detach(estimator)
        tracker.finish("FINISHED")
    finally:
        _detach(estimator)
        tracker.valid_data = None
        estimator.last_run_id_ = tracker.run_id


def _detach(estimator):
    """Drop the run and the data from the estimator (it must pickle, and stay small).

    Returns the validation dataset the logger saw, for the figures."""
    estimator.__dict__.pop("tracker_", None)
    logger = dict(getattr(estimator, "callbacks_", None) or []).get("mlflow")
    if logger is None:
        return None
    valid, logger.dataset_valid_, logger.tracker_ = logger.dataset_valid_, None, None
    return valid
