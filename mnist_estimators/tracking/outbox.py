"""The local fallback (the "outbox") for models whose run could not be logged, and the upload
that empties it once the store works again (``mnist-estimators runs upload``)."""

from __future__ import annotations

import datetime
import json
import time
import uuid
from pathlib import Path

import numpy as np

from ..persistence import load_model, save_model, write_json
from . import artifacts, store
from .console import say
from .context import DEFAULT_OPTIONS

_folders = {DEFAULT_OPTIONS["fallback_dir"]}  # the fallback folders this process knows


def remember(folder):
    """Count ``folder`` among the fallback folders whose runs the reaper leaves alone."""
    _folders.add(str(folder))


def waiting_runs(uri):
    """{run id: folder} of the runs of store ``uri`` whose model waits in a fallback folder
    known to this process (the default one, and any a fit or an upload used)."""
    return {record["run_id"]: folder for folder in sorted(_folders)
            for _, record in pending(folder)
            if record.get("run_id") and record.get("tracking_uri") == uri}


store.kept_elsewhere.append(waiting_runs)


def save_fallback(model, record, fallback_dir):
    """Keep a model whose run could not be logged: ``NAME.pkl`` (the model, checksummed) and
    ``NAME.json`` (where it belongs, its params, tags, metrics and status), written in that
    order, each atomically, so a JSON always has its model. Returns the model's path."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    stem = f"{record.get('estimator', 'model')}-{stamp}-{uuid.uuid4().hex[:6]}"
    folder = Path(fallback_dir)
    path = save_model(model, folder / f"{stem}.pkl")
    write_json(folder / f"{stem}.json", {**record, "model_file": path.name,
                                         "saved_at": int(time.time() * 1000)})
    return path


def pending(fallback_dir="models/unlogged", parent_run_id=None):
    """The records of models waiting in ``fallback_dir`` (optionally: children of one parent
    run), as a list of (json path, record)."""
    remember(fallback_dir)
    out = []
    for path in sorted(Path(fallback_dir).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if parent_run_id is None or record.get("parent_run_id") == parent_run_id:
            out.append((path, record))
    return out


def upload(fallback_dir="models/unlogged", tracking_uri=None, quiet=False, only_uri=None):
    """Log every model waiting in ``fallback_dir`` to its MLflow store (or ``tracking_uri``):
    the run it started (or a new one), its metrics, the model, its final status. Uploaded
    entries are removed; the others stay, with the reason returned. ``only_uri``: only the
    models that belong to that store.

    Returns ``(uploaded run ids, {json path: error})``.
    """
    uploaded, failed = [], {}
    for path, record in pending(fallback_dir):
        if only_uri is not None and record.get("tracking_uri") != only_uri:
            continue
        try:
            uploaded.append(_upload_one(path, record, tracking_uri))
        except Exception as exc:  # noqa: BLE001 - each entry on its own; the rest go on
            failed[str(path)] = f"{type(exc).__name__}: {exc}"
    if uploaded and not quiet:
        say(f"uploaded {len(uploaded)} model(s) kept in {fallback_dir} while tracking was "
            f"failing: runs {', '.join(uploaded)}")
    return uploaded, failed


def _upload_one(path, record, tracking_uri):
    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    uri = tracking_uri or record["tracking_uri"]
    client = store.open_store(uri, record.get("artifact_root"))
    model_file = path.parent / record["model_file"]
    model = load_model(model_file)
    run_id, logged = record.get("run_id"), set()
    if run_id:
        try:
            run = store.call(client.get_run, run_id)
            logged = {(k, m.step) for k in run.data.metrics
                      for m in store.call(client.get_metric_history, run_id, k)}
        except MlflowException:
            run_id = None  # the run never reached the store: a new one
    if not run_id:
        exp_id = record.get("experiment_id") or store.experiment_id(
            client, record.get("experiment") or store.default_experiment_name(),
            record.get("artifact_root"))
        tags = dict(record.get("tags") or {})
        if record.get("parent_run_id"):
            tags[MLFLOW_PARENT_RUN_ID] = record["parent_run_id"]
        run_id = store.create_run(client, exp_id, tags,
                                  start_time=record.get("start_time")).info.run_id
        params = [Param(k, v) for k, v in (record.get("params") or {}).items()]
        for i in range(0, len(params), 90):
            store.call(client.log_batch, run_id, params=params[i:i + 90])
    metrics = [Metric(k, float(v), int(ts), int(step)) for k, v, step, ts in record.get("metrics", [])
               if (k, int(step)) not in logged]
    for i in range(0, len(metrics), 900):
        store.call(client.log_batch, run_id, metrics=metrics[i:i + 900])
    example = record.get("input_example")
    X = None if example is None else np.asarray(example["data"], dtype=example["dtype"])
    artifacts.log_model(client, run_id, model, X, params=record.get("params"),
              name=record.get("model_name", "model"))
    store.call(client.set_tag, run_id, "mnist_estimators.uploaded_from", str(model_file))
    store.call(client.set_terminated, run_id, record.get("status", "FINISHED"),
               end_time=record.get("end_time"))
    model_file.unlink(missing_ok=True)
    path.unlink(missing_ok=True)
    return run_id
