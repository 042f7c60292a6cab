"""Parent runs: a search, a study, a cross-validation or an ensemble as one run with a child
per fit, the summary logged on it, and the context a clone carries to a worker process.

The parent runs open in this process form a stack (``current_parent``): a fit starting here,
in any thread, becomes a child of the innermost (MLflow's own active run is per thread, and
joblib's threading backend and Optuna's ``n_jobs`` fit in other threads).
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from ..signals import catch_sigterm, release_sigterm
from . import artifacts, outbox, store
from . import context as switch
from .console import brief, say, warn
from .context import RunContext, is_enabled
from .datasets import dataset_input, make_dataset
from .scopes import kind, members

_open_parents = []          # RunContexts of the parent_run()s open in this process, innermost last
_parents_lock = threading.Lock()


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
def carrying(context):
    """``context`` (a ``RunContext`` from another process) is this process's open parent for
    the duration, and its switch this process's: the fits cloned inside go where it says."""
    previous = switch._enabled
    switch.set_tracking(context.enabled)
    with _parents_lock:
        _open_parents.append(context)
    try:
        yield
    finally:
        with _parents_lock:
            _open_parents.remove(context)
        switch.set_tracking(previous)


def capture_context():
    """The run context of this process now: tracking on or off, the store, and the parent run
    (the active MLflow run, or an open ``parent_run``), for a clone fitted elsewhere.

    Opening the store here also creates and migrates it once, in the parent, before any worker
    process can race to do it.
    """
    if not is_enabled():
        return RunContext(enabled=False)
    parent = current_parent()
    if parent is not None:
        return parent
    uri = artifact_root = None
    try:
        uri, artifact_root = store.resolve_uri()
        store.open_store(uri, artifact_root)
    except Exception as exc:  # noqa: BLE001 - the fit reports an unusable store, once
        return RunContext(enabled=True, tracking_uri=uri, artifact_root=artifact_root,
                          store_error=str(exc) if isinstance(exc, store.TrackingError)
                          else f"{type(exc).__name__}: {exc}")
    return RunContext(enabled=True, tracking_uri=uri, artifact_root=artifact_root)


@contextlib.contextmanager
def parent_run(run_name=None, experiment=None, tags=None, run_id=None, data_source=None):
    """A parent run for a search or a cross-validation: every fit inside becomes its child,
    fits in worker processes (``n_jobs=2``, Dask) included.

    ``run_id`` resumes that run (a study resumed later, or by another process). Opened while
    another run is open (the user's, another ``parent_run``), it is that run's child. On exit
    the parent records how many of its fits were logged and how many fell back to local pickles
    (and says so on this console), then ends FINISHED, FAILED (exception) or KILLED (Ctrl-C,
    or SIGTERM, which it turns into an interrupt in the main thread while it is open, unless a
    handler is already installed; the console says so); after a failure or an interrupt,
    children left RUNNING by worker processes that are gone (joblib kills its loky workers when
    a task fails or the wait is interrupted) are marked KILLED.
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
        run = _start_parent(client, root, run_name, experiment, tags, run_id, current_parent())
    except Exception as exc:  # noqa: BLE001 - the fits inside fall back and say so
        warn(f"MLflow tracking failed while starting the parent run '{run_name}' "
             f"({brief(exc)}); its fits are not grouped", exc)
        yield None
        return
    # nested: MLflow refuses a second active run in a thread otherwise (the first stays open)
    mlflow.start_run(run_id=run.info.run_id, nested=mlflow.active_run() is not None)
    context = RunContext(enabled=True, tracking_uri=uri, artifact_root=root,
                         experiment_id=run.info.experiment_id, parent_run_id=run.info.run_id,
                         data_source=data_source)
    with _parents_lock:
        _open_parents.append(context)
    status, reason = "FINISHED", None
    parent = ParentRun(run.info.run_id, client)
    # A search in the main process waits on its workers and fits nothing itself, so no fit's
    # handler is there: SIGTERM would end the process with this run RUNNING and no word.
    previous_sigterm = catch_sigterm()
    try:
        yield parent
    except KeyboardInterrupt as exc:
        status, reason = "KILLED", str(exc) or "Ctrl-C"
        raise
    except BaseException as exc:
        status, reason = "FAILED", f"{brief(exc)}"
        raise
    finally:
        release_sigterm(previous_sigterm)
        with _parents_lock:
            _open_parents.remove(context)
        if status != "FINISHED":
            try:
                store.reap(client, parent_run_id=run.info.run_id)
            except Exception as exc:  # noqa: BLE001 - `runs reap` and the next open do it too
                warn(f"could not end the orphaned fits of parent run {run.info.run_id}: {exc}", exc)
        counted = None
        try:
            counted = parent.count_fits()
        except Exception as exc:  # noqa: BLE001
            warn(f"could not count the fits of parent run {run.info.run_id}: {exc}", exc)
        try:  # retried like every write: another process may hold the store for a moment
            if mlflow.active_run() is not None and mlflow.active_run().info.run_id == run.info.run_id:
                store.call(mlflow.end_run, status)
            else:
                store.call(client.set_terminated, run.info.run_id, status)
        except Exception as exc:  # noqa: BLE001 - never hide the exception that ended the block
            warn(f"MLflow could not mark parent run {run.info.run_id} {status} "
                 f"({brief(exc)}); `mnist-estimators runs reap` ends it once this "
                 "process has exited", exc)
        else:
            if status == "KILLED":  # a fit says so itself; the search around it does too
                fits = "" if counted is None else f"; {counted[0]} fit(s) under it are logged"
                say(f"parent run {run.info.run_id} ('{run_name or run.info.run_name}') ended "
                    f"KILLED ({reason}){fits}")


def new_parent_run(run_name=None, experiment=None, tags=None):
    """Create a parent run without entering it (``parent_run(run_id=...)`` enters it later, in
    this or another process); its id, or None when tracking is off or the store fails."""
    if not is_enabled():
        return None
    try:
        uri, root = store.resolve_uri()
        client = store.open_store(uri, root)
        return _start_parent(client, root, run_name, experiment, tags, None, None).info.run_id
    except Exception as exc:  # noqa: BLE001 - parent_run says it again, once, if it fails too
        warn(f"MLflow tracking failed while creating the parent run '{run_name}' "
             f"({brief(exc)})", exc)
        return None


def _start_parent(client, root, run_name, experiment, tags, run_id, outer):
    from mlflow.exceptions import MlflowException

    if run_id is not None:
        try:
            run = store.call(client.get_run, run_id)
            store.call(client.update_run, run_id, status="RUNNING")
            for k, v in store.process_tags().items():
                store.call(client.set_tag, run_id, k, v)
            return run
        except MlflowException:
            pass  # gone (deleted): a new one
    if outer is not None and experiment is None:
        # a child of the run open around it (the UI nests runs of one experiment only)
        exp_id, parent_id = outer.experiment_id, outer.parent_run_id
    else:
        exp_id = store.experiment_id(client, experiment or store.default_experiment_name(), root)
        parent_id = None
    return store.create_run(client, exp_id, store.run_tags(run_name, parent_id, tags))


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
            self.log_refit_model(search.best_estimator_, X)

    def log_dataset(self, X, y=None):
        """The search's or ensemble's data, named like its fits' (``datasets``)."""
        from ..data import data_source

        ds = make_dataset(X, y, data_source(X))
        store.call(self.client.log_inputs, self.run_id, datasets=[dataset_input(ds)])
        return ds.name, ds.digest

    def log_cv(self, results):
        """Mean and std of every score column of ``cross_validate``'s result, and the table."""
        import pandas as pd

        table = pd.DataFrame({k: v for k, v in results.items() if k != "estimator"})
        for col in table:
            store.call(self.client.log_metric, self.run_id, f"{col}_mean", float(table[col].mean()))
            store.call(self.client.log_metric, self.run_id, f"{col}_std", float(table[col].std(ddof=0)))
        store.call(self.client.log_text, self.run_id, table.to_csv(index=False), "cv_results.csv")

    def log_ensemble(self, ensemble, pipeline=None, X=None, y=None, fit_time=None):
        """What a person compares: the ensemble's own params (``ensemble.voting``,
        ``ensemble.weights``, ``ensemble.cv``...), its members and their kinds, the dataset,
        ``n_members`` and the fit time, a description, and the model: ``pipeline`` (the
        ``Pipeline`` whose last step the ensemble is) when given, else the ensemble."""
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

        kinds = {name: kind(member) for name, member in members(ensemble, final=False)}
        params = {f"ensemble.{k}": v for k, v in ensemble.get_params(deep=False).items()
                  if k not in ("estimators", "final_estimator", "verbose")}
        params["ensemble.class"] = type(ensemble).__name__
        params["ensemble.members"] = ", ".join(f"{name}:{kind}" for name, kind in kinds.items())
        if hasattr(ensemble, "final_estimator"):  # stacking: the default is LogisticRegression
            params["ensemble.final_estimator"] = kind(getattr(ensemble, "final_estimator_", None)
                                                       or ensemble.final_estimator)
        if pipeline is not None:
            params["pipeline.steps"] = " -> ".join(
                f"{name}:{type(step).__name__}" for name, step in pipeline.steps)
        if X is not None:
            params["data.shape"] = str(tuple(np.shape(X)))
        n_members = len(kinds)
        store.call(self.client.log_batch, self.run_id, params=_params(params))
        store.call(self.client.log_metric, self.run_id, "n_members", n_members)
        if fit_time is not None:
            store.call(self.client.log_metric, self.run_id, "fit_time_s", float(fit_time))
        store.call(self.client.set_tag, self.run_id, "model_kind",
                   "pipeline" if pipeline is not None else "estimator")
        dataset = self.log_dataset(X, y) if X is not None else None
        scores = _ensemble_scores(ensemble, pipeline, X, y)
        how = f"{ensemble.voting} voting" if hasattr(ensemble, "voting") else \
            f"stacked into {params.get('ensemble.final_estimator')}, cv={ensemble.cv}"
        took = "" if fit_time is None else f" Fitted in {fit_time:.1f} s."
        note = (f"**{type(ensemble).__name__}** ({how}) of {n_members} members: "
                + ", ".join(f"{name} ({kind})" for name, kind in kinds.items())
                + f". Data: shape {params.get('data.shape', '?')}.{took} Each member fit is a "
                "child run; this run holds the model.")
        if "training_accuracy_score" in scores:
            note += (f" Accuracy on the data it was fitted on: "
                     f"{scores['training_accuracy_score']:.4f}")
        if "members/best_valid_acc_mean" in scores:
            note += (f"; its members' best validation accuracy: "
                     f"{scores['members/best_valid_acc_mean']:.4f} on average, "
                     f"{scores['members/best_valid_acc_max']:.4f} at best.")
        store.call(self.client.set_tag, self.run_id, MLFLOW_RUN_NOTE, note)
        # the scores go in with the model, linked to it and to the dataset
        self.log_model(pipeline if pipeline is not None else ensemble, X, params, description=note,
                       metrics={k: (v, 0) for k, v in scores.items()}, dataset=dataset)

    def log_refit_model(self, model, X=None):
        """A search's or study's model is its refit's: that child run logged it with its
        params, metrics and dataset, so it is linked to this run as an output (the MLflow UI
        lists it on both runs' pages, and this run's ``model_uri`` tag names it) rather than
        logged a second time, empty. Logged here only when the refit logged none (its store
        failed, or its tracking was off). Returns the model's URI."""
        from mlflow.entities import LoggedModelOutput

        net = model.steps[-1][1] if hasattr(model, "steps") else model
        uri = getattr(net, "last_model_uri_", None)
        if not (isinstance(uri, str) and uri.startswith("models:/")):
            return self.log_model(model, X)
        store.call(self.client.log_outputs, self.run_id,
                   [LoggedModelOutput(uri[len("models:/"):], step=0)])
        store.call(self.client.set_tag, self.run_id, "model_uri", uri)
        return uri

    def log_model(self, model, X=None, params=None, description=None, metrics=None,
                  dataset=None):
        """Log a fitted estimator or pipeline as this run's MLflow model (``params`` go on the
        logged model's page, ``description`` is its note, ``metrics`` (name -> (value, step))
        are logged on this run linked to it and to ``dataset`` (name, digest))."""
        return artifacts.log_model(self.client, self.run_id, model, X, params=params,
                                   description=description, metrics=metrics, dataset=dataset,
                                   name=artifacts.model_name(model))

    def log_new_params(self, mapping):
        """Log the params of ``mapping`` this run does not hold yet (a resumed run keeps the
        values it was started with: MLflow params cannot change). Returns the names logged."""
        held = store.call(self.client.get_run, self.run_id).data.params
        new = {k: v for k, v in mapping.items() if str(k) not in held}
        if new:
            store.call(self.client.log_batch, self.run_id, params=_params(new))
        return sorted(new)

    def count_fits(self, fallback_dir="models/unlogged"):
        """Log ``tracking/n_fits_logged`` and ``tracking/n_fits_fallback`` (children kept in the
        outbox; under "tracking/", apart from the results, as the fits' "epoch/" curves), and tell
        this console when any fit fell back: it may have happened in a worker process."""
        children = store.call(self.client.search_runs, [store.call(
            self.client.get_run, self.run_id).info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.run_id}'", max_results=10000)
        kept = outbox.pending(fallback_dir, parent_run_id=self.run_id)
        logged = [r for r in children if r.info.status != "RUNNING"
                  and r.info.run_id not in {rec.get("run_id") for _, rec in kept}]
        store.call(self.client.log_metric, self.run_id, "tracking/n_fits_logged", len(logged))
        store.call(self.client.log_metric, self.run_id, "tracking/n_fits_fallback", len(kept))
        if kept:
            warn(f"{len(kept)} fit(s) of run {self.run_id} could not be logged to MLflow; their "
                 f"models are in {fallback_dir} (`mnist-estimators runs upload {fallback_dir}` "
                 "logs them once the store works)")
        return len(logged), len(kept)


def _ensemble_scores(ensemble, pipeline=None, X=None, y=None):
    """What an ensemble's parent can say of how good it is. An ensemble holds out no data of
    its own, so: its accuracy on the data it was fitted on (``training_accuracy_score``, as
    MLflow's scikit-learn autolog names it; optimistic, and labelled so), and the best
    validation accuracy of each member of ours, from its own held-out split (mean and max)."""
    scores = {}
    if X is not None and y is not None:
        model = pipeline if pipeline is not None else ensemble
        try:
            scores["training_accuracy_score"] = float(model.score(X, y))
        except Exception as exc:  # noqa: BLE001 - a score the parent cannot make costs nothing
            warn(f"the ensemble's accuracy on its training data could not be computed "
                 f"({brief(exc)}); its run is logged without it", exc)
    best = []
    for member in getattr(ensemble, "estimators_", None) or []:
        net = member.steps[-1][1] if hasattr(member, "steps") else member
        history = getattr(net, "history_", None)
        try:
            values = [v for v in history[:, "valid_acc"] if v is not None] if history else []
        except KeyError:  # a member fitted without a validation split
            values = []
        if values:
            best.append(float(max(values)))
    if best:
        scores["members/best_valid_acc_mean"] = float(np.mean(best))
        scores["members/best_valid_acc_max"] = float(max(best))
    return scores


def _params(mapping):
    from mlflow.entities import Param

    return [Param(str(k), str(v)[:1000]) for k, v in mapping.items()]
