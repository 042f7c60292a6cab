"""MLflow tracking of every fit.

Each ``fit`` of an estimator is one MLflow run, owned by its ``MlflowRunLogger`` callback:
parameters, tags (host and process too), the training data (``mlflow.data`` + ``log_input``)
at the first epoch; the metrics of each epoch in one batch; at the end the summary metrics,
figures, the model (the whole ``Pipeline`` when the estimator is its last step), a description,
and the status. **The run is complete when ``fit`` returns**: FINISHED, FAILED (the fit raised)
or KILLED (Ctrl-C or SIGTERM; the last finished epoch's model is logged).

Which run a fit uses:

- a run is active in this thread (the user's, a ``parent_run``): a child of it;
- the estimator was cloned while one was (a search with ``n_jobs=2`` ships clones to loky or
  Dask workers): a child of that run, through the clone's picklable ``RunContext``;
- otherwise a run of its own, in experiment "mnist-estimators".

Where runs go: ``MLFLOW_TRACKING_URI`` (or ``mlflow.set_tracking_uri``) when set, else
``./mlruns/`` (``mlflow.db`` SQLite + ``artifacts/``). The first open of a SQLite store in a
process happens under a file lock (creation and migration are safe with any number of
processes), and reaps the RUNNING runs of processes on this host that died.

When the store fails (unwritable, unreachable server, full disk), training goes on, one
warning says what failed, and the model, metrics and params are kept in ``fallback_dir``;
``mnist-estimators runs upload`` (or ``upload()``) logs them later. ``tracking_options=
{"on_error": "raise"}`` makes failures fatal instead. Turning it off: ``tracking=False``, or
``set_tracking(False)`` / ``MNIST_ESTIMATORS_TRACKING=0``: then no MLflow call at all.
"""

from __future__ import annotations

from .sklearn_autolog import autolog, autologging
from .callbacks import MlflowRunLogger, WeightSnapshots
from .console import TrackingWarning
from .context import (
    DEFAULT_EXPERIMENT,
    DEFAULT_OPTIONS,
    ENV_SWITCH,
    RunContext,
    TrackingError,
    is_enabled,
    resolve_options,
    set_tracking,
)
from .outbox import pending, upload
from .parents import ParentRun, capture_context, new_parent_run, parent_run
from .store import open_store, reap, resolve_uri

__all__ = [
    "DEFAULT_EXPERIMENT", "DEFAULT_OPTIONS", "ENV_SWITCH", "MlflowRunLogger", "ParentRun",
    "RunContext", "TrackingError", "TrackingWarning", "WeightSnapshots", "autolog", "autologging",
    "capture_context", "flush", "is_enabled", "log_results", "log_value", "new_parent_run",
    "open_store", "parent_run",
    "pending", "reap", "register", "resolve_options", "resolve_uri", "set_tracking", "upload",
]


def flush():
    """Kept for code written against earlier releases: a fit's run is complete when ``fit``
    returns, so there is nothing to wait for except MLflow's own asynchronous logging, if the
    user turned it on."""
    import mlflow
    from mlflow.environment_variables import MLFLOW_ENABLE_ASYNC_LOGGING

    if MLFLOW_ENABLE_ASYNC_LOGGING.get():
        mlflow.flush_async_logging()


def log_value(run_id, key, value):
    """Log one more metric on a finished fit's run (a test score, an Optuna value)."""
    log_results(run_id, {key: value})


def log_results(run_id, metrics=None, tags=None, context=None, figures=None):
    """Log metrics and tags on a finished fit's run, in one batch, in the store of ``context``
    (the fit's ``tracking_context_``, for a fit made in a worker) or this process's store;
    ``figures`` (name -> matplotlib Figure or PIL image) go under ``figures/`` on it."""
    import time

    from mlflow.entities import Metric, RunTag

    from .artifacts import log_figures
    from .store import call

    if context is not None and context.tracking_uri:
        client = open_store(context.tracking_uri, context.artifact_root)
    else:
        client = open_store(*resolve_uri())
    stamp = int(time.time() * 1000)
    call(client.log_batch, run_id,
         metrics=[Metric(k, float(v), stamp, 0) for k, v in (metrics or {}).items()],
         tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()])
    if figures:
        log_figures(client, run_id, figures)


def register(run_id, name, alias=None):
    """Register the model logged by run ``run_id`` under ``name``; optionally point ``alias`` at
    the new version. Returns the ``ModelVersion``; load it with ``models:/NAME@ALIAS``."""
    import mlflow

    uri = mlflow.MlflowClient().get_run(run_id).data.tags.get("model_uri", f"runs:/{run_id}/model")
    version = mlflow.register_model(uri, name)
    if alias:
        mlflow.MlflowClient().set_registered_model_alias(name, alias, version.version)
    return version
