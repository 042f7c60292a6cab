"""The MLflow run of one fit: started at the first epoch, ended with its true status.

Every MLflow call goes through ``FitRun._safe``. The first failure (a store that cannot be
opened, a server that went away, a full disk) stops MLflow calls for the rest of the fit; the
metrics are still recorded in memory, and at the end the model is saved to the local outbox
(``fallback_dir``) with all it needs for ``mnist-estimators runs upload`` to log it later.
"""

from __future__ import annotations

import atexit
import json
import time

import numpy as np

from . import artifacts, outbox, store
from .console import brief, warn
from .context import TrackingError
from .datasets import dataset_input, make_dataset

FLUSH_EVERY_S = 2.0  # epoch metrics wait at most this long before they are sent (log_metrics)
_NOISY_PARAMS = ("verbose", "callbacks", "iterator_valid", "dataset", "predict_nonlinearity",
                 "use_caching", "torch_load_kwargs", "compile", "tracking", "tracking_options")
_NOISY_CALLBACKS = ("print_log", "epoch_timer", "train_loss", "valid_loss", "valid_acc",
                    "divergence_guard", "mlflow", "record_lr", "weight_snapshots")


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


def describe(net):
    """A short name for what ``net`` is: ``mlp 256-128 · adam lr=0.001 · 10 ep``."""
    kind = type(net).__name__.replace("Classifier", "").replace("SoftmaxRegression", "softmax").lower()
    shape = getattr(net, "channels", None) or getattr(net, "hidden_sizes", None)
    head = f"{kind} {'-'.join(map(str, shape))}" if shape else kind
    opt = net.optimizer if isinstance(net.optimizer, str) else getattr(net.optimizer, "__name__", "opt")
    return f"{head} · {opt} lr={net.lr:g} · {net.max_epochs} ep"


class FitRun:
    """One fit's run. ``context`` says where (store, experiment, parent); ``options`` are the
    estimator's resolved ``tracking_options``."""

    def __init__(self, context, options):
        self.context = context
        self.options = options
        self.client = self.run_id = self.dataset = self.model_uri = None
        self.broken = None       # (what failed, the exception), once tracking has failed
        self.record = {}         # what the outbox needs if the run cannot be completed
        self.metrics = []        # every metric logged, as (key, value, step, timestamp)
        self.started = self.last_sent = time.time()
        self.unsent = []         # metrics not sent yet (see log_metrics)

    # -- failure handling
    def _safe(self, what, fn, *args, **kwargs):
        if self.broken is not None:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - no backend fault may cost the model
            self.broken = (what, exc)
            if self.options["on_error"] == "raise":
                raise TrackingError(f"MLflow tracking failed while {what}: "
                                    f"{brief(exc)}") from exc
            return None

    @property
    def active(self):
        return self.run_id is not None and self.broken is None

    # -- start
    def start(self, net, X_raw, y_raw, pipeline, position, source):
        """Open the store and create the run with its tags, params and dataset."""
        self.record = {"estimator": type(net).__name__, "start_time": int(self.started * 1000),
                       "model_name": artifacts.model_name(pipeline if pipeline is not None
                                                          else net)}
        self._describe(net, X_raw, pipeline, position, source)  # kept for the outbox too
        self._safe("opening the store", self._open)
        self._safe("starting the run", self._start, X_raw, y_raw, source)

    def _open(self):
        ctx = self.context
        uri, root = ctx.tracking_uri, ctx.artifact_root
        if uri is None:
            uri, root = store.resolve_uri()
        self.record.update(tracking_uri=uri, artifact_root=root, parent_run_id=ctx.parent_run_id)
        outbox.remember(self.options["fallback_dir"])  # its waiting runs are not reaped
        if ctx.store_error is not None:  # found when the context was captured, moments ago
            raise TrackingError(ctx.store_error)
        self.client = store.open_store(uri, root)
        if _unended:
            end_pending()
        _upload_kept(uri, self.options["fallback_dir"])
        if store.is_remote(uri):
            store.check_reachable(uri)  # every fit: a server seen earlier may be gone now
        exp_id = ctx.experiment_id if ctx.parent_run_id else None
        if exp_id is None:
            name = self.options["experiment"] or store.default_experiment_name()
            self.record["experiment"] = name
            exp_id = store.experiment_id(self.client, name, root)
        self.record["experiment_id"] = exp_id

    def _describe(self, net, X_raw, pipeline, position, source):
        tags = {
            "estimator_class": type(net).__name__,
            "mnist_estimators.version": artifacts.package_version(),
            "model_kind": "pipeline" if pipeline is not None else "estimator",
        }
        tags.update({f"search.{k}": str(v) for k, v in position.items()
                     if k not in ("parameters", "keys")})
        tags.update({str(k): str(v) for k, v in (self.options["tags"] or {}).items()})
        tags = store.run_tags(run_name(net, position, self.options["run_name"]),
                              self.context.parent_run_id, tags)
        params = flat_params(net)
        # What a person sets and searches is the constructor's own parameters; the rest is the
        # deep expansion of the net's internal callbacks (``callbacks__lr_scheduler__T_max``).
        # Kept, in one tag, so that they do not sit between ``batch_size`` and ``dropout`` in
        # the params table and the compare view.
        shallow = set(net.get_params(deep=False))
        internals = {k: params.pop(k) for k in list(params) if k not in shallow}
        if internals:
            tags["mnist_estimators.internal_params"] = json.dumps(internals, sort_keys=True)[:5000]
        if pipeline is not None:
            params["pipeline.steps"] = " -> ".join(
                f"{name}:{type(step).__name__}" for name, step in pipeline.steps)[:1000]
        params["data.shape"] = str(tuple(np.shape(X_raw)))
        params["data.dtype"] = str(getattr(X_raw, "dtype", type(X_raw).__name__))
        params["data.source"] = source["kind"]
        self.record.update(tags=tags, params=params)

    def _start(self, X_raw, y_raw, source):
        from mlflow.entities import Param

        ds = make_dataset(X_raw, y_raw, source)
        self.dataset_name = ds.name
        self.dataset = (ds.name, ds.digest)  # for the model's metrics
        tags, params = {**self.record["tags"], "data.digest": ds.digest}, self.record["params"]
        run = store.create_run(self.client, self.record["experiment_id"], tags,
                               start_time=self.record["start_time"])
        self.run_id = self.record["run_id"] = run.info.run_id
        items = [Param(k, v) for k, v in sorted(params.items())]
        for i in range(0, len(items), 90):  # MLflow takes at most 100 params per batch
            store.call(self.client.log_batch, self.run_id, params=items[i:i + 90])
        store.call(self.client.log_inputs, self.run_id, datasets=[dataset_input(ds)])
        if self.options["system_metrics"]:
            try:
                self._start_system_metrics()
            except Exception as exc:  # noqa: BLE001 - an extra: the run goes on without it
                warn(f"MLflow system metrics could not start ({brief(exc)}); "
                     "the run is logged without them", exc)

    def _start_system_metrics(self):
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        # MLflow's sampler (CPU, memory, disk, network, GPU): a sample every 2 s
        self.monitor = SystemMetricsMonitor(self.run_id, sampling_interval=2,
                                            tracking_uri=self.client.tracking_uri)
        with store.quiet_mlflow():
            self.monitor.start()
        self.monitor_started = time.monotonic()

    def _finish_system_metrics(self, monitor):
        """Stop MLflow's sampler. It logs the mean of every ``samples_before_logging`` samples,
        so a fit shorter than that (2 s x 5 by default) left "System metrics (0)" in the UI
        with no word: its samples, taken from the start, are then logged as one step."""
        with store.quiet_mlflow():
            monitor.finish()
            first = monitor.sampling_interval * monitor.samples_before_logging
            if time.monotonic() - self.monitor_started < first:
                monitor.publish_metrics(monitor.aggregate_metrics())
                monitor.mlflow_logger.flush()

    # -- during training
    def log_metrics(self, values, step, flush=False, tags=None):
        """Record one epoch's ``values``; send what is waiting in one batch when the last send
        is ``FLUSH_EVERY_S`` old, or when ``flush`` (the end of the fit, with ``tags``).

        A batch costs ~10 ms on a SQLite store whatever its size: short epochs (a search's
        folds, a small model) share one, and an epoch of more than ``FLUSH_EVERY_S`` is sent
        as soon as it ends, so that the MLflow UI follows a long fit live.
        """
        stamp = int(time.time() * 1000)
        rows = [(k, float(v), step, stamp) for k, v in values.items()]
        self.metrics += rows
        self.unsent += rows
        if self.active and (flush or time.time() - self.last_sent >= FLUSH_EVERY_S):
            self._send(tags)

    def _send(self, tags=None):
        from mlflow.entities import Metric, RunTag

        rows, self.unsent = self.unsent, []
        self.last_sent = time.time()
        self._safe("logging metrics", store.call, self.client.log_batch, self.run_id,
                   metrics=[Metric(k, v, ts, s) for k, v, s, ts in rows],
                   tags=[RunTag(k, v) for k, v in (tags or {}).items()], synchronous=True)

    # -- end
    def finish(self, status, model, summary, figures=None, description=None, example=None,
               error=None, registered_name=None):
        """End the run with ``status``: the summary metrics, figures, model and description
        first, the status last. Whatever could not be logged goes to the outbox with the model.
        Returns the path of the local copy, if one had to be made."""
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

        summary = {f"summary/{k}": v for k, v in summary.items()}  # see MlflowRunLogger
        tags = {} if description is None else {MLFLOW_RUN_NOTE: description}
        if error is not None:
            tags["error"] = f"{type(error).__name__}: {error}"[:5000]
        # the epochs not sent yet, the summary, the description and the error: one batch
        self.log_metrics(summary, step=max([m[2] for m in self.metrics] + [0]), flush=True,
                         tags=tags)
        if figures and self.active:
            try:  # drawing is not tracking: a figure that fails must not send the model away
                drawn = figures()
            except Exception as exc:  # noqa: BLE001
                drawn = None
                warn(f"run {self.run_id}: its figures could not be drawn ({type(exc).__name__}: "
                     f"{exc}); the run is logged without them", exc)
            if drawn:
                self._safe("logging figures", artifacts.log_figures, self.client, self.run_id,
                           drawn)
        if model is not None and self.active:
            step = max([m[2] for m in self.metrics] + [0])
            self.model_uri = self._safe(
                "logging the model", artifacts.log_model, self.client, self.run_id, model,
                example, registered_name, self.record.get("params"),
                name=self.record["model_name"], experiment_id=self.record["experiment_id"],
                metrics={k: (v, step) for k, v in summary.items()}, dataset=self.dataset,
                description=description)
        monitor = getattr(self, "monitor", None)
        if monitor is not None:
            try:  # an extra: the run and its model are logged with or without them
                self._finish_system_metrics(monitor)
            except Exception as exc:  # noqa: BLE001
                warn(f"run {self.run_id}: its system metrics could not be logged ({brief(exc)})",
                     exc)
        self.record.update(status=status, end_time=int(time.time() * 1000), metrics=self.metrics)
        kept = None
        if self.broken is not None and self.options["on_error"] != "raise" \
                and (model is not None or error is None):
            kept = self._fall_back(model, example)
        if self.run_id is not None:
            self._end(status, kept)
        return kept

    def _end(self, status, kept):
        # Attempted even after a failure (one try, short timeouts): a run whose model went to
        # the outbox ends FINISHED and says where its model is (the upload completes it); a run
        # whose model could not be kept anywhere ends FAILED, with what failed, so that it
        # never looks complete. If even that fails (the store is gone), it is tried again at
        # this process's next tracked fit and at exit.
        tags = {}
        if kept is not None:
            tags["mnist_estimators.model_kept_locally"] = str(kept)
        elif self.broken is not None and status == "FINISHED":
            what, exc = self.broken
            status = "FAILED"
            tags["error"] = (f"tracking failed while {what} ({brief(exc)}); the "
                             "fitted model was not logged")[:5000]
        try:
            for key, value in tags.items():
                store.call(self.client.set_tag, self.run_id, key, value)
            store.call(self.client.set_terminated, self.run_id, status)
        except Exception as exc:  # noqa: BLE001
            if self.options["on_error"] == "raise" and self.broken is None:
                raise TrackingError(f"MLflow tracking failed while ending the run: {exc}") from exc
            _unended.append((self.client, self.run_id, status, tags))
            if self.broken is None:
                self.broken = ("ending the run", exc)
                warn(f"MLflow could not mark run {self.run_id} {status} ({type(exc).__name__}: "
                     f"{exc}); it is tried again at the next fit and at exit", exc)


    def _fall_back(self, model, example):
        what, exc = self.broken
        problem = f"MLflow tracking failed while {what} ({brief(exc)})"
        if model is None:
            warn(f"{problem}; the run's metrics are lost (no model was to be logged)", exc)
            return None
        if example is not None:
            ex = np.asarray(example)
            self.record["input_example"] = {"dtype": str(ex.dtype), "data": ex.tolist()}
        self.record["error"] = problem
        try:
            path = outbox.save_fallback(model, self.record, self.options["fallback_dir"])
        except Exception as save_exc:  # noqa: BLE001 - e.g. the same full disk
            warn(f"{problem}; saving the model locally failed too ({brief(save_exc)})"
                 f": the fitted model exists only in memory, in this estimator", exc)
            return None
        warn(f"{problem}; the fitted model was saved to {path} (`mnist-estimators runs upload "
             f"{self.options['fallback_dir']}` logs it to MLflow once the store works)", exc)
        return path


_unended = []  # (client, run id, status, tags) of runs whose end could not be written yet
_uploads_tried = set()  # (store, folder): the outbox is emptied at most once per process


def _upload_kept(uri, folder):
    """The first fit that reaches a store logs the models kept for that store in ``folder``
    while it was failing (``mnist-estimators runs upload`` does the same on demand)."""
    if (uri, folder) in _uploads_tried:
        return
    _uploads_tried.add((uri, folder))
    if any(rec.get("tracking_uri") == uri for _, rec in outbox.pending(folder)):
        outbox.upload(folder, only_uri=uri)


def end_pending():
    """Write the end of the runs whose store failed when they ended (at the next tracked fit
    and at exit); those that still fail stay for the next try, or for ``runs reap``."""
    for item in list(_unended):
        client, run_id, status, tags = item
        try:
            for key, value in tags.items():
                store.call(client.set_tag, run_id, key, value)
            store.call(client.set_terminated, run_id, status)
        except Exception:  # noqa: BLE001 - still failing: left for later
            continue
        _unended.remove(item)


atexit.register(end_pending)



def run_name(net, position, name=None):
    """The run's name: the fold and the values a search tried (``fold 2/3 · lr=0.003
    dropout=0.2``), ``refit · ...`` for a search's refit, else what the fit is (``describe``). A
    ``name`` given (``tracking_options["run_name"]``, an ensemble member's name) replaces what
    the fit is, and a fold still says which (``cv fold · cnn0``: a stacking ensemble's folds).
    What tells a run from its siblings comes first: the runs table cuts long names off."""
    values = position.get("parameters")
    tried = " ".join(f"{k.split('__', 1)[-1] if k.count('__') == 1 else k}={_short(v)}"
                     for k, v in (values or {}).items())
    if "fold" in position:
        fold = position["fold"]
        return (f"fold {fold}" if fold[0].isdigit() else "cv fold") + \
            f" · {name or tried or describe(net)}"
    if name:
        return name
    if "refit" in position:
        return f"refit · {tried or describe(net)}"
    return describe(net)


def _short(value):
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return "-".join(map(str, value))
    return getattr(value, "__name__", str(value))
