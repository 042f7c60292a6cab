"""scikit-learn glue: parent runs for searches, ensembles and groups of fits, their summaries,
autolog, and where a fit stands inside a search, an ensemble or a Pipeline."""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
import time

import numpy as np

from . import artifacts, store
from .context import RunContext, is_enabled
from .report import say, warn

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
             f"({type(exc).__name__}: {exc}); its fits are not grouped", exc)
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
    from ..training import catch_sigterm, release_sigterm

    # A search in the main process waits on its workers and fits nothing itself, so no fit's
    # handler is there: SIGTERM would end the process with this run RUNNING and no word.
    previous_sigterm = catch_sigterm()
    try:
        yield parent
    except KeyboardInterrupt as exc:
        status, reason = "KILLED", str(exc) or "Ctrl-C"
        raise
    except BaseException as exc:
        status, reason = "FAILED", f"{type(exc).__name__}: {exc}"
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
                 f"({type(exc).__name__}: {exc}); `mnist-estimators runs reap` ends it once this "
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
             f"({type(exc).__name__}: {exc})", exc)
        return None


def _start_parent(client, root, run_name, experiment, tags, run_id, outer):
    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

    if run_id is not None:
        try:
            run = store.call(client.get_run, run_id)
            store.call(client.update_run, run_id, status="RUNNING")
            for k, v in store.process_tags().items():
                store.call(client.set_tag, run_id, k, v)
            return run
        except MlflowException:
            pass  # gone (deleted): a new one
    all_tags = {**(tags or {}), **store.process_tags()}
    if outer is not None and experiment is None:
        # a child of the run open around it (the UI nests runs of one experiment only)
        exp_id = outer.experiment_id
        all_tags[MLFLOW_PARENT_RUN_ID] = outer.parent_run_id
    else:
        exp_id = store.experiment_id(client, experiment or store.default_experiment_name(), root)
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

    def log_ensemble(self, ensemble, pipeline=None, X=None, y=None, fit_time=None):
        """What a person compares: the ensemble's own params (``ensemble.voting``,
        ``ensemble.weights``, ``ensemble.cv``...), its members and their kinds, the dataset,
        ``n_members`` and the fit time, a description, and the model: ``pipeline`` (the
        ``Pipeline`` whose last step the ensemble is) when given, else the ensemble."""
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

        kinds = {name: _kind(member) for name, member in _members(ensemble, final=False)}
        params = {f"ensemble.{k}": v for k, v in ensemble.get_params(deep=False).items()
                  if k not in ("estimators", "final_estimator", "verbose")}
        params["ensemble.class"] = type(ensemble).__name__
        params["ensemble.members"] = ", ".join(f"{name}:{kind}" for name, kind in kinds.items())
        if hasattr(ensemble, "final_estimator"):  # stacking: the default is LogisticRegression
            params["ensemble.final_estimator"] = _kind(getattr(ensemble, "final_estimator_", None)
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
        if X is not None:
            self.log_dataset(X, y)
        how = f"{ensemble.voting} voting" if hasattr(ensemble, "voting") else \
            f"stacked into {params.get('ensemble.final_estimator')}, cv={ensemble.cv}"
        took = "" if fit_time is None else f" Fitted in {fit_time:.1f} s."
        store.call(self.client.set_tag, self.run_id, MLFLOW_RUN_NOTE,
                   f"**{type(ensemble).__name__}** ({how}) of {n_members} members: "
                   + ", ".join(f"{name} ({kind})" for name, kind in kinds.items())
                   + f". Data: shape {params.get('data.shape', '?')}.{took} Each member fit is a "
                   "child run; this run holds the model.")
        self.log_model(pipeline if pipeline is not None else ensemble, X, params)

    def log_model(self, model, X=None, params=None):
        """Log a fitted estimator or pipeline as this run's MLflow model (``params`` go on the
        logged model's page)."""
        return artifacts.log_model(self.client, self.run_id, model, X, params=params,
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
    """Give every scikit-learn search and ensemble over these estimators a parent run,
    automatically.

    Once called:

    - ``GridSearchCV``/``RandomizedSearchCV`` (any ``BaseSearchCV``) whose estimator is one of
      ours, a Pipeline ending in one, or an ensemble of them, runs its ``fit`` inside
      ``parent_run`` and logs the summary (``log_search``);
    - ``VotingClassifier`` and ``StackingClassifier`` (scikit-learn's ``_BaseVoting`` and
      ``_BaseStacking``) with at least one member that is, or ends in, one of ours are one
      parent run with a child run per member fit, named by the member's name in
      ``estimators`` (``cnn0``) and tagged ``ensemble.member``, in worker processes too
      (``n_jobs=2``). A stacking ensemble's ``cross_val_predict`` fits are children too,
      tagged ``search.fold`` like CV folds, and so is a final estimator of ours
      (``final_estimator``). Members log their params, epochs and figures but no model of
      their own (unless their ``tracking_options`` ask for one): the parent logs the whole
      ensemble, or the ``Pipeline`` that ends in it, as one MLflow model, with the ensemble's
      params (``ensemble.voting``, ``ensemble.weights``, ``ensemble.members``...), the
      dataset and ``n_members``. The fitted ensemble's ``last_run_id_`` is its parent run.
      Opened inside another run (the user's, ``reproduce``'s, a search's refit), the
      ensemble's run is a child of it; an ensemble fitted as a search's or cross-validation's
      fold is left alone: its members log as that search's fold fits, children of the
      search's run, also when the search runs the fold in a worker process (``n_jobs=2``:
      see the estimators' ``__sklearn_clone__``).

    Searches over other estimators, and searches inside a run already open, are left alone.
    Like ``mlflow.sklearn.autolog``, it patches the classes' ``fit`` (and the name
    ``cross_val_predict`` in ``sklearn.ensemble._stacking``); ``autolog(False)`` undoes every
    patch. ``cross_validate`` is a function that callers bind at import, so it cannot be patched
    reliably: wrap it in ``parent_run`` and call ``log_cv``.

    Returns whether autolog was on before the call, so that a caller can put it back.

    >>> tracking.autolog()                                  # doctest: +SKIP
    >>> vote = VotingClassifier([("mlp", MLPClassifier()), ("cnn", CNNClassifier())],
    ...                         voting="soft", n_jobs=2).fit(X, y)
    >>> mlflow.pyfunc.load_model(f"runs:/{vote.last_run_id_}/voting-2").predict(X)
    """
    from sklearn.ensemble import _stacking, _voting
    from sklearn.model_selection._search import BaseSearchCV

    was_on = bool(_autolog)
    patches = {  # key: (owner, attribute, replacement given the original)
        "search": (BaseSearchCV, "fit", _search_fit),
        "voting": (_voting._BaseVoting, "fit", _ensemble_fit),
        "stacking": (_stacking._BaseStacking, "fit", _ensemble_fit),
        # the name _BaseStacking.fit hands to joblib (see _cross_val_predict)
        "cross_val_predict": (_stacking, "cross_val_predict", lambda original: _cross_val_predict),
    }
    for key, (owner, attribute, replacement) in patches.items():
        if not enable and key in _autolog:
            setattr(owner, attribute, _autolog.pop(key))
        elif enable and key not in _autolog:
            _autolog[key] = getattr(owner, attribute)
            setattr(owner, attribute, replacement(_autolog[key]))
    return was_on


@contextlib.contextmanager
def autologging():
    """``autolog()`` for the duration of a block, then as it was before (left on if it was)."""
    was_on = autolog()
    try:
        yield
    finally:
        if not was_on:
            autolog(False)


def _search_fit(original):
    @functools.wraps(original)
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

    return fit


def _ensemble_fit(original):
    @functools.wraps(original)
    def fit(self, X, y, **params):
        if not (is_enabled() and _ours(self)) or "fold" in search_position():
            return original(self, X, y, **params)
        pipeline, pipe_X = enclosing_pipeline(self)
        X_raw = pipe_X if pipe_X is not None else X
        kind = type(self).__name__
        start = time.time()
        # no data_source for the members: it would name their data a subset of the parent's
        # (as for a search's folds), and a voting ensemble's members fit on all of it
        with parent_run(kind, tags={"ensemble_class": kind}) as parent:
            with _as_members(self):
                original(self, X, y, **params)
            # where this fit's run is, as our estimators keep it (``reproduce`` reads it)
            self.last_run_id_ = None if parent is None else parent.run_id
            if parent is not None:
                parent.log_ensemble(self, pipeline, X_raw, _decoded(self, y),
                                    time.time() - start)
        return self

    return fit


def _decoded(ensemble, y):
    # _BaseVoting/_BaseStacking.fit get y label-encoded (0..n-1) by the classifier's fit
    encoder = getattr(ensemble, "le_", None) or getattr(ensemble, "_label_encoder", None)
    return encoder.inverse_transform(y) if hasattr(encoder, "inverse_transform") else y


@contextlib.contextmanager
def _as_members(ensemble):
    """For the duration of an ensemble's fit, each member of ours has its run named after its
    name in ``estimators`` and tagged ``ensemble.member``, and logs no model of its own (the
    ensemble's model holds it) unless its ``tracking_options`` ask for one. The members' own
    ``tracking_options`` are put back afterwards, on the fitted clones too.

    scikit-learn gives a member no handle on its ensemble, nor its name: ``_fit_single_estimator``
    gets a clone, X and y, and the clone may be fitted in another process. A clone carries its
    params, so the member's ``tracking_options`` carry the name there.
    """
    from .callbacks import MlflowRunLogger

    kind = type(ensemble).__name__
    saved = []  # (name, net, its own tracking_options)
    for name, member in _members(ensemble):
        net = _last_step(member)
        if not getattr(net, "_mnist_estimator", False):
            continue
        own = net.tracking_options
        options = dict(own or {})
        options["tags"] = {**(options.get("tags") or {}), "ensemble.member": name,
                           "ensemble.class": kind}
        if options.get("run_name") is None:
            options["run_name"] = name
        if options.get("log_model", "auto") == "auto":
            options["log_model"] = False
        net.set_params(tracking_options=options)
        saved.append((name, net, own))
    try:
        yield
    finally:
        fitted = dict(getattr(ensemble, "named_estimators_", None) or {})
        if hasattr(ensemble, "final_estimator_"):
            fitted["final_estimator"] = ensemble.final_estimator_
        # reversed: an object listed twice in ``estimators`` gets its own options back last
        for name, net, own in reversed(saved):
            net.set_params(tracking_options=own)
            twin = fitted.get(name)
            if twin is not None and not isinstance(twin, str):
                twin = _last_step(twin)
                twin.tracking_options = own  # attribute: no skorch re-initialization
                for _, callback in getattr(twin, "callbacks_", None) or []:
                    if isinstance(callback, MlflowRunLogger):  # a later partial_fit's run too
                        callback.options = own


def _cross_val_predict(estimator, *args, **kwargs):
    """``cross_val_predict``, run under the parent run ``estimator`` was cloned under.

    ``_BaseStacking.fit`` hands it to joblib; with ``n_jobs=2`` it runs in a loky worker, and
    clones its estimator there for each fold (joblib runs nested jobs in threads of the worker),
    where no parent run is open: each fold would be a top-level run in the worker's default
    store. The estimator it is handed was cloned in the ensemble's process and carries that
    process's ``RunContext``, which becomes this process's open parent (and tracking switch)
    for the duration. A module-level function, so that joblib pickles it by reference.
    """
    from sklearn.model_selection import cross_val_predict

    from . import context as switch

    context = getattr(_last_step(estimator), "tracking_context_", None)
    if context is None or context.parent_run_id is None or current_parent() is not None:
        return cross_val_predict(estimator, *args, **kwargs)
    previous = switch._enabled
    switch.set_tracking(context.enabled)
    with _parents_lock:
        _open_parents.append(context)
    try:
        return cross_val_predict(estimator, *args, **kwargs)
    finally:
        with _parents_lock:
            _open_parents.remove(context)
        switch.set_tracking(previous)


def _last_step(estimator):
    return estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator


def _members(estimator, final=True):
    """(name, member) of a voting or stacking ensemble, its final estimator included (named
    ``final_estimator``) unless ``final=False``; [] for anything else, or for ``estimators``
    the fit will reject."""
    from sklearn.ensemble._base import _BaseHeterogeneousEnsemble

    if not isinstance(estimator, _BaseHeterogeneousEnsemble):
        return []
    try:
        out = [(name, member) for name, member in estimator.estimators
               if member is not None and not isinstance(member, str)]  # "drop"
    except (TypeError, ValueError):
        return []  # malformed: the ensemble's own fit says what is wrong
    if final and getattr(estimator, "final_estimator", None) is not None:
        out.append(("final_estimator", estimator.final_estimator))
    return out


def _ours(estimator):
    """Is ``estimator`` one of ours, a Pipeline ending in one, or an ensemble with one among
    its members (a member may itself be such a Pipeline)?"""
    estimator = _last_step(estimator)
    if getattr(estimator, "_mnist_estimator", False):
        return True
    return any(_ours(member) for _, member in _members(estimator))


def _kind(member):
    """What a member is, for the ensemble's params: ``MLPClassifier``, or
    ``Pipeline(StandardScaler, SoftmaxRegressionClassifier)``."""
    if hasattr(member, "steps"):
        return "Pipeline(" + ", ".join(step if isinstance(step, str) else type(step).__name__
                                       for _, step in member.steps) + ")"
    return type(member).__name__


def search_position():
    """Fold, candidate and the candidate's values when a scikit-learn search or cross_validate
    runs this fit; a fold of ``cross_val_predict`` (a ``StackingClassifier``'s folds);
    ``refit`` and the best values for a search's refit.

    scikit-learn gives a fitted estimator no handle on its search: it passes these to
    ``_fit_and_score`` for its progress messages only, so the call stack is read, here alone.
    """
    from sklearn.model_selection._search import BaseSearchCV

    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_name
        if name == "_fit_and_predict" and frame.f_globals.get("__name__", "").startswith(
                "sklearn."):  # cross_val_predict's fold; it passes no fold number
            return {"fold": "of cross_val_predict"}
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
