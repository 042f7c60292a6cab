"""scikit-learn glue: parent runs for searches and groups of fits, their summaries, autolog,
and where a fit stands inside a search or a Pipeline."""

from __future__ import annotations

import contextlib
import sys
import threading

import numpy as np

from . import artifacts, store
from .context import RunContext, is_enabled
from .report import warn

_open_parents = []          # RunContexts of the parent_run()s open in this process, innermost last
_parents_lock = threading.Lock()
_autolog = {}


def current_parent():
    """The run a fit starting now in this process belongs under, as a ``RunContext``: the active
    MLflow run of this thread, else the innermost open ``parent_run`` (joblib's threading
    backend and Optuna's ``n_jobs`` fit in other threads, where MLflow sees no active run)."""
    import mlflow

    run = mlflow.active_run()
    with _parents_lock:
        top = _open_parents[-1] if _open_parents else None
    if run is not None and (top is None or top.parent_run_id != run.info.run_id):
        return RunContext(enabled=True, tracking_uri=mlflow.get_tracking_uri(),
                          experiment_id=run.info.experiment_id, parent_run_id=run.info.run_id)
    return top


@contextlib.contextmanager
def parent_run(run_name=None, experiment=None, tags=None, run_id=None, data_source=None):
    """A parent run for a search or a cross-validation: every fit inside becomes its child,
    fits in worker processes (``n_jobs=2``, Dask) included.

    ``run_id`` resumes that run (a study resumed later, or by another process). On exit the
    parent records how many of its fits were logged and how many fell back to local pickles
    (and says so on this console), then ends FINISHED, FAILED (exception) or KILLED (Ctrl-C).
    Yields a ``ParentRun`` (None when tracking is off or the store is unusable).

    >>> with parent_run("grid") as parent:          # doctest: +SKIP
    ...     grid.fit(X, y)
    ...     parent.log_search(grid, X)
    """
    if not is_enabled():
        yield None
        return
    import mlflow

    try:
        uri, root = store.resolve_uri()
        client = store.open_store(uri, root)
        run = _start_parent(client, root, run_name, experiment, tags, run_id)
    except Exception as exc:  # noqa: BLE001 - the fits inside fall back and say so
        warn(f"MLflow tracking failed while starting the parent run '{run_name}' "
             f"({type(exc).__name__}: {exc}); its fits are not grouped", exc)
        yield None
        return
    mlflow.start_run(run_id=run.info.run_id)
    context = RunContext(enabled=True, tracking_uri=uri, artifact_root=root,
                         experiment_id=run.info.experiment_id, parent_run_id=run.info.run_id,
                         data_source=data_source)
    with _parents_lock:
        _open_parents.append(context)
    status = "FINISHED"
    parent = ParentRun(run.info.run_id, client)
    try:
        yield parent
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        with _parents_lock:
            _open_parents.remove(context)
        try:
            parent.count_fits()
        except Exception as exc:  # noqa: BLE001
            warn(f"could not count the fits of parent run {run.info.run_id}: {exc}", exc)
        try:  # retried like every write: another process may hold the store for a moment
            if mlflow.active_run() is not None and mlflow.active_run().info.run_id == run.info.run_id:
                store.call(mlflow.end_run, status)
            else:
                store.call(client.set_terminated, run.info.run_id, status)
        except Exception as exc:  # noqa: BLE001 - never hide the exception that ended the block
            warn(f"MLflow could not mark parent run {run.info.run_id} {status} "
                 f"({type(exc).__name__}: {exc}); `mnist-estimators runs reap` ends it once this "
                 "process has exited", exc)


def new_parent_run(run_name=None, experiment=None, tags=None):
    """Create a parent run without entering it (``parent_run(run_id=...)`` enters it later, in
    this or another process); its id, or None when tracking is off or the store fails."""
    if not is_enabled():
        return None
    try:
        uri, root = store.resolve_uri()
        client = store.open_store(uri, root)
        return _start_parent(client, root, run_name, experiment, tags, None).info.run_id
    except Exception as exc:  # noqa: BLE001 - parent_run says it again, once, if it fails too
        warn(f"MLflow tracking failed while creating the parent run '{run_name}' "
             f"({type(exc).__name__}: {exc})", exc)
        return None


def _start_parent(client, root, run_name, experiment, tags, run_id):
    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

    if run_id is not None:
        try:
            run = store.call(client.get_run, run_id)
            store.call(client.update_run, run_id, status="RUNNING")
            for k, v in store.process_tags().items():
                store.call(client.set_tag, run_id, k, v)
            return run
        except MlflowException:
            pass  # gone (deleted): a new one
    exp_id = store.experiment_id(client, experiment or store.default_experiment_name(), root)
    all_tags = {**(tags or {}), **store.process_tags()}
    if run_name:
        all_tags[MLFLOW_RUN_NAME] = run_name
    from mlflow.tracking.context.registry import resolve_tags

    return store.call(client.create_run, exp_id, tags=resolve_tags(all_tags))


class ParentRun:
    """The summary of a search or cross-validation, logged on its parent run."""

    def __init__(self, run_id, client=None):
        import mlflow

        self.run_id = run_id
        self.client = client or mlflow.MlflowClient()

    def log_search(self, search, X=None, y=None):
        """What a person compares: the dataset, the grid and ``cv``; best params and score; the
        ``cv_results_`` table (score and rank columns first); the refit model; a description."""
        import pandas as pd
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

        grid = getattr(search, "param_grid", None) or getattr(search, "param_distributions", None)
        params = {f"best.{k}": v for k, v in search.best_params_.items()}
        params.update({"search.cv": search.cv, "search.scoring": search.scoring,
                       "search.grid": grid, "search.n_candidates": len(search.cv_results_["params"])})
        store.call(self.client.log_batch, self.run_id, params=_params(params))
        store.call(self.client.log_metric, self.run_id, "best_cv_score", float(search.best_score_))
        store.call(self.client.set_tag, self.run_id, "search_class", type(search).__name__)
        table = pd.DataFrame(search.cv_results_).astype(
            {k: str for k in search.cv_results_ if k.startswith("param")})
        first = [c for c in ("rank_test_score", "mean_test_score", "std_test_score", "params")
                 if c in table]
        table = table[first + [c for c in table if c not in first]]
        store.call(self.client.log_table, self.run_id, table, "cv_results.json")
        store.call(self.client.log_text, self.run_id, table.to_csv(index=False), "cv_results.csv")
        if X is not None:
            self.log_dataset(X, y)
        top = table.sort_values("rank_test_score").head(5) if "rank_test_score" in table else table
        rows = "\n".join(f"| {r.get('rank_test_score', '')} | {r.get('mean_test_score', float('nan')):.4f} "
                         f"± {r.get('std_test_score', float('nan')):.4f} | {r['params']} |"
                         for r in top.to_dict("records"))
        store.call(self.client.set_tag, self.run_id, MLFLOW_RUN_NOTE,
                   f"**{type(search).__name__}** over {type(search.estimator).__name__}, "
                   f"cv={search.cv}: best score {search.best_score_:.4f} with "
                   f"`{search.best_params_}`.\n\n| rank | score | params |\n|---|---|---|\n{rows}")
        if getattr(search, "refit", False) and hasattr(search, "best_estimator_"):
            self.log_model(search.best_estimator_, X)

    def log_dataset(self, X, y=None):
        import mlflow.data
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        from ..data import data_source

        src = data_source(X) or {"kind": "arrays"}
        name = "mnist" if src["kind"] in ("folder", "cache", "download") else src["kind"]
        ds = mlflow.data.from_numpy(np.asarray(X), targets=None if y is None else np.asarray(y),
                                    name=f"{name}-{src.get('subset', 'train')}")
        store.call(self.client.log_inputs, self.run_id, datasets=[DatasetInput(
            ds._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, "training")])])

    def log_cv(self, results):
        """Mean and std of every score column of ``cross_validate``'s result, and the table."""
        import pandas as pd

        table = pd.DataFrame({k: v for k, v in results.items() if k != "estimator"})
        for col in table:
            store.call(self.client.log_metric, self.run_id, f"{col}_mean", float(table[col].mean()))
            store.call(self.client.log_metric, self.run_id, f"{col}_std", float(table[col].std(ddof=0)))
        store.call(self.client.log_text, self.run_id, table.to_csv(index=False), "cv_results.csv")

    def log_model(self, model, X=None):
        """Log a fitted estimator or pipeline as this run's MLflow model."""
        return artifacts.log_model(self.client, self.run_id, model, X,
                                   name=artifacts.model_name(model))

    def count_fits(self, fallback_dir="models/unlogged"):
        """Log ``n_fits_logged`` and ``n_fits_fallback`` (children kept in the outbox), and tell
        this console when any fit fell back: it may have happened in a worker process."""
        children = store.call(self.client.search_runs, [store.call(
            self.client.get_run, self.run_id).info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.run_id}'", max_results=10000)
        kept = artifacts.pending(fallback_dir, parent_run_id=self.run_id)
        logged = [r for r in children if r.info.status != "RUNNING"
                  and r.info.run_id not in {rec.get("run_id") for _, rec in kept}]
        store.call(self.client.log_metric, self.run_id, "n_fits_logged", len(logged))
        store.call(self.client.log_metric, self.run_id, "n_fits_fallback", len(kept))
        if kept:
            warn(f"{len(kept)} fit(s) of run {self.run_id} could not be logged to MLflow; their "
                 f"models are in {fallback_dir} (`mnist-estimators runs upload {fallback_dir}` "
                 "logs them once the store works)")
        return len(logged), len(kept)


def _params(mapping):
    from mlflow.entities import Param

    return [Param(str(k), str(v)[:1000]) for k, v in mapping.items()]


def autolog(enable=True):
    """Give every scikit-learn search over these estimators a parent run, automatically.

    Once called, ``GridSearchCV``/``RandomizedSearchCV`` (any ``BaseSearchCV``) whose estimator
    is, or ends in, one of ours runs its ``fit`` inside ``parent_run`` and logs the summary
    (``log_search``). Searches over other estimators, and searches inside a run already open,
    are left alone. Like ``mlflow.sklearn.autolog``, it patches ``BaseSearchCV.fit``;
    ``autolog(False)`` undoes it. ``cross_validate`` is a function that callers bind at import,
    so it cannot be patched reliably: wrap it in ``parent_run`` and call ``log_cv``.
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
        from ..data import data_source

        if not (is_enabled() and _ours(self.estimator)) or current_parent() is not None:
            return original(self, X, y, **params)
        with parent_run(type(self).__name__, tags={"search_class": type(self).__name__},
                        data_source=data_source(X)) as parent:
            original(self, X, y, **params)
            if parent is not None:
                parent.log_search(self, X, y)
        return self

    fit.__wrapped__ = original
    fit.__doc__ = original.__doc__
    _autolog["fit"] = original
    BaseSearchCV.fit = fit


def _ours(estimator):
    if hasattr(estimator, "steps"):
        estimator = estimator.steps[-1][1]
    return getattr(estimator, "_mnist_estimator", False)


def search_position():
    """Fold, candidate and the candidate's values when a scikit-learn search or cross_validate
    runs this fit; ``refit`` and the best values for a search's refit.

    scikit-learn gives a fitted estimator no handle on its search: it passes these to
    ``_fit_and_score`` for its progress messages only, so the call stack is read, here alone.
    """
    from sklearn.model_selection._search import BaseSearchCV

    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_name
        if name not in ("_fit_and_score", "fit"):
            # f_locals only where needed: reading it stores a snapshot of the frame's locals
            # on the frame (Python < 3.13). On loky's worker loop that snapshot kept the last
            # task's arguments alive, so joblib could not delete its memmapped copy of X and
            # slept ~1 s in delete_folder at the end of every parallel search.
            frame = frame.f_back
            continue
        local = frame.f_locals
        if name == "_fit_and_score":
            split, cand = local.get("split_progress"), local.get("candidate_progress")
            # cross_validate passes no progress: a fold all the same, number unknown
            out = {"fold": f"{split[0] + 1}/{split[1]}" if split else "of cross_validate"}
            if cand:
                out["candidate"] = f"{cand[0] + 1}/{cand[1]}"
            elif split:
                out["candidate"] = "1/1"
            if local.get("parameters"):
                out["parameters"] = dict(local["parameters"])
            return out
        if isinstance(local.get("self"), BaseSearchCV):
            return {"refit": "true", "parameters": dict(getattr(local["self"], "best_params_", {}))}
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
        # co_name first: f_locals is read only on fit frames (see search_position)
        owner = frame.f_locals.get("self") if frame.f_code.co_name in ("fit", "fit_predict") \
            else None
        if isinstance(owner, Pipeline):
            try:
                if owner._final_estimator is estimator:
                    return owner, frame.f_locals.get("X")
            except (AttributeError, IndexError):
                pass
        frame = frame.f_back
    return None, None
