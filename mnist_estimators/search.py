"""Optuna studies over the estimators (or pipelines ending in one), tracked in MLflow::

    from optuna.distributions import FloatDistribution, CategoricalDistribution
    result = tune(MLPClassifier(max_epochs=10),
                  {"lr": FloatDistribution(1e-4, 1e-2, log=True),
                   "optimizer": CategoricalDistribution(["adam", "sgd"])},
                  X, y, n_trials=20, storage="sqlite:///studies.db", study_name="mlp")

- The objective is the validation accuracy of each fit (its ``validation_fraction`` split) or,
  with ``cv=k``, the mean cross-validated score: never the test set.
- Pruning happens per epoch through optuna-integration's ``SkorchPruningCallback`` (median or
  Hyperband pruner); pruned trials are recorded as PRUNED.
- Storage: None (in memory), an RDB URL (``sqlite:///x.db``, ``postgresql://...``) or
  ``journal:PATH`` (a journal file for worker processes on one machine). A named study in a
  persistent storage resumes where it stopped, and several processes can work on it at once:
  a new SQLite study is created under a file lock, each trial's sampler is seeded by the trial
  number (so workers never draw the same parameters, and one worker is reproducible), and
  the study stops when it holds ``n_trials`` finished trials, whoever ran them (``_held``:
  a trial started for a place another worker's running trial holds ends FAIL, unrun).
- MLflow: the study is one parent run, whose id is kept in the study itself, so a resumed
  study and every worker process use the same parent; each trial's fits are its children (the
  trial number is a tag); the parent gets the best params and value, Optuna's plots, and the
  refit best model.
"""

from __future__ import annotations

import contextlib
import datetime
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
from optuna_integration import SkorchPruningCallback
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline

from . import _compat, tracking
from .tracking import store as tracking_store
from .tracking.scopes import short_kind

HISTORY_METRICS = ("valid_acc", "valid_loss", "train_loss")
PARENT_ATTR = "mlflow_parent_run_id"
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
RUNNING = optuna.trial.TrialState.RUNNING


class SurplusTrial(Exception):
    """A trial that starts when its named study already holds ``n_trials`` trials finished or
    running: it ends FAIL without fitting (user attr ``surplus``), and its worker stops."""


def _held(study, since, heartbeat, below=None):
    """How many trials of ``study`` count towards ``n_trials``: finished (COMPLETE, PRUNED),
    or RUNNING in a live worker, numbered below ``below`` when given.

    A RUNNING trial counts, so that a worker does not start a trial the study will not need
    while another worker finishes the last one (Optuna's ``MaxTrialsCallback`` counts the
    states it is given, but cannot tell a live worker's RUNNING trial from one a crashed
    worker left behind). With a heartbeat, Optuna marks the crashed ones FAIL before each
    trial. Without one (JournalStorage has none), a RUNNING trial that started before this
    ``tune`` call counts only while the process it names (user attr ``process``) is alive on
    this host: otherwise it is taken for a crashed worker's, or a rerun could never complete
    the study. Another host's trial cannot be told apart, so it is taken for a crashed one.
    """
    count = 0
    for t in study.get_trials(deepcopy=False, states=FINISHED + (RUNNING,)):
        if below is not None and t.number >= below:
            continue
        if t.state == RUNNING and not heartbeat and (t.datetime_start or since) < since \
                and not tracking_store.process_alive(t.user_attrs.get("process")):
            continue
        count += 1
    return count


class PruningCallback(SkorchPruningCallback):
    """optuna-integration's skorch pruning callback, minus the trial when copied or pickled: a
    fitted model (logged, saved) must not carry the study's storage connection.

    Its message counts epochs as the run does: optuna-integration reports Optuna's 0-based step
    ("pruned at epoch 1" after the second epoch, of a run whose ``n_epochs`` is 2)."""

    def __init__(self, trial, monitor):
        super().__init__(trial, monitor)
        self.monitor_key = monitor

    def on_epoch_end(self, net, **kwargs):
        try:
            super().on_epoch_end(net, **kwargs)
        except optuna.TrialPruned:
            epoch = len(net.history)
            value = net.history[-1, self.monitor_key]
            raise optuna.TrialPruned(
                f"pruned after epoch {epoch} of {net.max_epochs} "
                f"({self.monitor_key} {value:.4f})") from None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_trial"] = None
        return state


def make_storage(storage, heartbeat_interval=None):
    """An Optuna storage from a URL: None (memory), ``sqlite:///`` / ``postgresql://`` (RDB,
    with a heartbeat when ``heartbeat_interval`` is set, so a crashed worker's trial is marked
    FAIL), or ``journal:PATH`` (JournalStorage on a file, for processes on one machine)."""
    if storage is None or isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if not isinstance(storage, str):
        raise ValueError(f"The 'storage' parameter must be None, a URL or an Optuna storage. Got {storage!r}.")
    if storage.startswith("sqlite:///"):
        # Optuna creates (and alembic-stamps) a new SQLite storage's tables on first open, with
        # no lock: two workers starting at once on a fresh file crash. One at a time here.
        from filelock import FileLock

        path = Path(storage[len("sqlite:///"):].split("?")[0])
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=300):
            return optuna.storages.RDBStorage(storage, **_heartbeat(heartbeat_interval))
    if storage.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(storage[len("journal:"):]))
    if "://" not in storage:
        raise ValueError(f"The 'storage' parameter must be an RDB URL (sqlite:///study.db, "
                         f"postgresql://...) or journal:PATH. Got {storage!r} instead.")
    return optuna.storages.RDBStorage(storage, **_heartbeat(heartbeat_interval))


def _heartbeat(interval):
    return {"heartbeat_interval": interval, "grace_period": 2 * interval} if interval else {}


class TrialSeededTPESampler(optuna.samplers.TPESampler):
    """TPE whose random state is re-seeded at each trial from ``seed + trial.number``.

    A seeded TPESampler in each of several worker processes draws the same sequence, so two
    workers of one study try identical parameters. Trial numbers are unique in a study, so
    seeding by them keeps workers apart and keeps a single worker reproducible. Optuna has no
    per-trial seed hook: this sets the two random states TPESampler keeps
    (``_compat.seed_tpe_sampler``).
    """

    def __init__(self, seed=0, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.base_seed = seed

    def before_trial(self, study, trial):
        super().before_trial(study, trial)
        if self.base_seed is None:  # unseeded: each worker's own random state
            return
        _compat.seed_tpe_sampler(self, (int(self.base_seed) + 1_000_003 * trial.number) % (2**32))


def make_pruner(pruner):
    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    if pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if pruner is None:
        return optuna.pruners.NopPruner()
    raise ValueError(f"The 'pruner' parameter must be 'median', 'hyperband', None or an Optuna "
                     f"pruner. Got {pruner!r} instead.")


def suggest(trial, space):
    """Parameters for ``trial``: ``space`` is a dict ``name -> optuna distribution`` (or a
    list of choices), or a function ``trial -> dict`` for spaces where one choice shapes
    another (number of layers, then a width per layer)."""
    if callable(space):
        return dict(space(trial))
    params = {}
    for name, dist in space.items():
        if isinstance(dist, (list, tuple)):
            dist = optuna.distributions.CategoricalDistribution(list(dist))
        if not isinstance(dist, optuna.distributions.BaseDistribution):
            raise ValueError(f"Search space entry {name!r} must be an Optuna distribution or a "
                             f"list of choices. Got {dist!r} instead.")
        params[name] = _suggest(trial, name, dist)
    return params


def _suggest(trial, name, dist):
    """``trial.suggest_*`` for an Optuna distribution object (the public way to ask for one)."""
    dists = optuna.distributions
    if isinstance(dist, dists.CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, dists.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, dists.FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    raise ValueError(f"Search space entry {name!r}: {type(dist).__name__} is not a distribution "
                     "Optuna can suggest from (float, int or categorical).")


def _jsonable(params):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def _final_step(model):
    if isinstance(model, Pipeline):
        return model.steps[-1][0] + "__", model.steps[-1][1]
    return "", model


@dataclass
class TuneResult:
    study: optuna.Study
    best_params: dict
    best_value: float
    best_estimator: object
    run_id: str | None


def tune(estimator, space, X, y, *, n_trials=20, timeout=None, direction="maximize",
         metric="valid_acc", cv=None, scoring="accuracy", pruner="median", storage=None,
         study_name=None, n_jobs=1, seed=0, refit=True, register_as=None,
         heartbeat_interval=None, callbacks=None):
    """Run (or resume) an Optuna study over ``estimator`` and return a ``TuneResult``.

    ``estimator`` is one of ours or a Pipeline ending in one; ``space`` uses its ``set_params``
    names (``mlpclassifier__lr`` in a pipeline). With ``cv=None`` each trial is one fit scored
    on its validation split by ``metric`` (a history key: ``valid_acc``, ``valid_loss``; its
    best epoch counts) and pruned per epoch on it; with ``cv=k`` it is the mean ``scoring``
    over k folds (no per-epoch pruning then: the folds fit clones). ``direction`` is
    "maximize" or "minimize". A named study in a persistent storage runs until it holds
    ``n_trials`` finished trials (so a rerun resumes); otherwise ``n_trials`` more are run.
    """
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"The 'direction' parameter must be 'maximize' or 'minimize'. Got {direction!r}.")
    prefix, final = _final_step(estimator)
    if cv is None and metric not in HISTORY_METRICS:
        raise ValueError(f"metric {metric!r} is not in the fit's history; use one of "
                         f"{list(HISTORY_METRICS)} (or cv=k with a scikit-learn scoring).")
    if cv is None and not final._has_validation():
        raise ValueError("tune(cv=None) scores each trial on the estimator's validation split: "
                         "set validation_fraction > 0, or pass cv=k.")
    backend = make_storage(storage, heartbeat_interval)
    study = optuna.create_study(
        storage=backend, study_name=study_name,
        direction=direction, load_if_exists=study_name is not None,
        sampler=TrialSeededTPESampler(seed=seed, constant_liar=storage is not None),
        pruner=make_pruner(pruner))

    since = datetime.datetime.now()  # Optuna's trial start times are local and naive too
    # RDBStorage's public getter; a storage without one (journal, memory) has no heartbeat
    heartbeat = getattr(backend, "get_heartbeat_interval", lambda: None)() is not None

    def objective(trial):
        if study_name:  # two workers may both have started a trial for the last place
            trial.set_user_attr("process", tracking_store.process_tags())  # for _held
            held = _held(study, since, heartbeat, below=trial.number)
            if held >= n_trials:
                study.stop()
                trial.set_user_attr("surplus", True)
                raise SurplusTrial(f"study {study.study_name!r} already holds {held} finished or "
                                   f"running trials (n_trials={n_trials}): trial "
                                   f"{trial.number} is not run")
        params = suggest(trial, space)
        # what set_params got, for the refit (a function space's trial params differ from it)
        trial.set_user_attr("set_params", _jsonable(params))
        model = clone(estimator).set_params(**params)
        step = _final_step(model)[1]
        if cv is None:  # per-epoch pruning on the validation split (CV folds are clones: none)
            step.set_params(callbacks=list(step.callbacks or [])
                            + [("pruning", PruningCallback(trial, metric))])
        sampled = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in trial.params.items())
        user_tags = (step.tracking_options or {}).get("tags") or {}
        step.set_params(
            tracking_options={**(step.tracking_options or {}), "log_model": False,
                              "figures": "none", "run_name": f"trial {trial.number} · {sampled}",
                              "tags": {**user_tags, "optuna.trial": str(trial.number),
                                       "optuna.study": study.study_name,
                                       **{f"optuna.param.{k}": str(v)
                                          for k, v in trial.params.items()}}})
        if cv is None:
            model.fit(X, y)
            values = step.history_[:, metric]
            value = float(max(values) if direction == "maximize" else min(values))
            if getattr(step, "last_run_id_", None):  # the trial's value on its run, for the UI
                tracking.log_value(step.last_run_id_, "optuna/value", value)
        else:
            value = float(np.mean(cross_val_score(model, X, y, cv=cv, scoring=scoring)))
        if not math.isfinite(value):
            raise optuna.TrialPruned(f"non-finite score {value}")
        return value

    # A study named by Optuna is "no-name-<uuid>": its run gets a name a person can read
    run_name = study_name or \
        f"tune-{short_kind(final)}-{datetime.datetime.now():%Y%m%d-%H%M}"
    callbacks = list(callbacks or [])
    if study_name:
        # A named study runs until it holds n_trials complete or pruned trials, whichever
        # worker ran them (a failed trial, e.g. of a crashed worker, is not counted): a worker
        # stops once the finished trials and the other workers' running ones make n_trials.
        def stop_when_held(study, trial):
            if _held(study, since, heartbeat) >= n_trials:
                study.stop()

        callbacks.insert(0, stop_when_held)
    with tracking.parent_run(run_name, tags={"optuna.study": study.study_name},
                             run_id=_study_parent(study, storage, run_name)) as parent:
        if parent is not None:
            parent.log_new_params(_study_params(space, n_trials, study, metric, cv, scoring))
        done = len(study.get_trials(deepcopy=False, states=FINISHED))
        study.optimize(objective, n_trials=max(0, n_trials - done) if study_name else n_trials,
                       timeout=timeout, n_jobs=n_jobs, callbacks=callbacks,
                       catch=(FloatingPointError, SurplusTrial))
        best = study.best_trial
        best_model = None
        if refit:
            best_model = clone(estimator).set_params(**best.user_attrs["set_params"])
            step = _final_step(best_model)[1]
            step.set_params(tracking_options={**(step.tracking_options or {}),
                                              "run_name": f"refit best (trial {best.number})"})
            best_model.fit(X, y)
        if parent is not None:
            _log_study(parent, study, best_model, X, y, register_as)
    return TuneResult(study, best.params, best.value, best_model,
                      parent.run_id if parent is not None else None)


def _study_params(space, n_trials, study, metric, cv, scoring):
    """What the study's parent run says it searched, and how."""
    if isinstance(space, dict):
        params = {f"space.{k}": repr(v) for k, v in space.items()}
    else:  # a function of the trial
        params = {"space": getattr(space, "__qualname__", repr(space))}
    params.update({"n_trials": n_trials, "sampler": type(study.sampler).__name__,
                   "pruner": type(study.pruner).__name__,
                   "direction": study.direction.name.lower(),
                   "objective": metric if cv is None else f"{scoring}, cv={cv}"})
    return params


def _study_parent(study, storage, run_name):
    """The MLflow parent run of ``study``, created once: its id is kept in the study's own
    storage (optuna-integration keeps a trial's run id there too), so that a resumed study and
    every worker process log under one parent. Workers of a study in a local file (SQLite,
    journal) create it under a file lock beside that file, so two starting together do not make
    two parents; on a server database (PostgreSQL) that race remains, rare and harmless (a
    second parent holding that worker's trials)."""
    if not tracking.is_enabled():
        return None
    lock = contextlib.nullcontext()
    if isinstance(storage, str) and storage.startswith(("sqlite:///", "journal:")):
        from filelock import FileLock

        path = storage[len("sqlite:///"):] if storage.startswith("sqlite") else storage[8:]
        lock = FileLock(path.split("?")[0] + ".parent.lock", timeout=300)
    with lock:
        run_id = study.user_attrs.get(PARENT_ATTR)
        if run_id is None:
            run_id = tracking.new_parent_run(run_name, tags={"optuna.study": study.study_name})
            if run_id is not None:
                study.set_user_attr(PARENT_ATTR, run_id)
    return run_id


def _log_study(parent, study, best_model, X, y, register_as):
    from optuna.visualization import matplotlib as ovm

    client = parent.client
    best = study.best_trial
    # Tags, not params: every worker of the study logs its summary on the one parent as it
    # finishes, and MLflow params cannot change once logged, while the best trial can.
    for k, v in best.params.items():
        client.set_tag(parent.run_id, f"best.{k}", str(v)[:5000])
    client.set_tag(parent.run_id, "best.trial", str(best.number))
    client.log_metric(parent.run_id, "best_value", best.value)
    if X is not None:
        parent.log_dataset(X, y)  # the data every trial drew its split from
    states = [t.state.name for t in study.trials if not t.user_attrs.get("surplus")]
    for state in ("COMPLETE", "PRUNED", "FAIL"):
        client.log_metric(parent.run_id, f"optuna/n_trials_{state.lower()}",
                          states.count(state))
    plots = {"optimization_history.png": ovm.plot_optimization_history,
             "parallel_coordinate.png": ovm.plot_parallel_coordinate}
    if len([s for s in states if s == "COMPLETE"]) >= 2 and len(best.params) >= 1:
        plots["param_importances.png"] = ovm.plot_param_importances
    import warnings

    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                ax = plot(study)
        except (ValueError, RuntimeError) as exc:  # e.g. too few trials for importances
            client.set_tag(parent.run_id, f"plot_skipped.{name}", str(exc)[:500])
            continue
        fig = (ax[0] if isinstance(ax, np.ndarray) else ax).figure
        fig.set_size_inches(8, 5)
        fig.tight_layout()  # Optuna's importances plot clips long parameter names otherwise
        client.log_figure(parent.run_id, fig, f"study/{name}")
    if best_model is not None:
        parent.log_refit_model(best_model, X)
        if register_as:
            tracking.register(parent.run_id, register_as)
