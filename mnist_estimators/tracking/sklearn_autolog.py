"""scikit-learn integration: the public methods that tell a fit where it stands, and
``autolog``'s parent runs for searches and ensembles.

**What importing the estimators changes in scikit-learn.** ``install()`` runs once, when this
package is imported (with the estimators: ``hooks.load_plugins``), and wraps these, as MLflow's own ``mlflow.sklearn.autolog`` wraps ``fit`` methods:

- ``Pipeline.fit``: its last step learns its Pipeline and raw X (the whole Pipeline is
  logged as the model);
- ``fit`` of every search (``BaseSearchCV``: ``GridSearchCV``, ``RandomizedSearchCV``...),
  ``cross_validate`` (``cross_val_score`` calls it), ``cross_val_predict``,
  ``learning_curve``, ``validation_curve`` and ``permutation_test_score``: the clones they
  make of our estimators carry their fold, candidate and values (``scopes``);
- ``VotingClassifier.fit`` and ``StackingClassifier.fit``: the members they clone keep the
  place of the ensemble in a search.

Each wrapper only records, around the original call, and returns what it returns; for an
estimator with none of ours inside, it records nothing. ``uninstall()`` puts every original
back. Nothing here reads the call stack (see the design page, docs/design.md).

A function imported before the estimators (``from sklearn.model_selection import
cross_validate`` above ``from mnist_estimators import MLPClassifier`` in a script) is the
original, unwrapped; its
folds are still told they are folds by the ``clone`` that scikit-learn's validation module
calls for each of them (wrapped in that module: ``_compat.validation_module``), only with the
generic label ``of cross_validate``.
"""

from __future__ import annotations

import contextlib
import functools
import time

from .. import _compat, hooks
from .callbacks import MlflowRunLogger, WeightSnapshots
from .console import logger
from .context import is_enabled, resolve_options
from .parents import capture_context, carrying, current_parent, parent_run
from . import artifacts, scopes

_originals = {}          # (owner, name) -> the original, while installed
_autolog = [False]
_CV_FUNCTIONS = ("cross_validate", "cross_val_predict", "learning_curve", "validation_curve",
                 "permutation_test_score")


# --------------------------------------------------------------------------- the hooks

@hooks.on_clone
def _clone_hook(source, twin):
    """Where ``twin``'s run will go, wherever it is fitted: the run context of this process,
    and its place in the search or cross-validation that cloned it."""
    if getattr(twin, "tracking", True) is not True:
        return
    claim = scopes.claim(source, twin)
    position = claim.position if claim is not None else None
    inherited = getattr(source, "tracking_context_", None)
    if claim is not None and claim.inherit and inherited is not None:
        # A member cloned by an ensemble that is itself a search's fold or refit, maybe in a
        # worker process: the member is that fold or refit too. In a worker nothing is open,
        # and the context the search gave the member is where its run goes.
        if "fold" in (position or {}) and current_parent() is None:
            twin.tracking_context_ = inherited.replace(position=position)
            return
    # One look at the store a minute for a search, cross-validation or ensemble: a store one of
    # its clones found unusable is its verdict for its later clones and their fits, for
    # VERDICT_S (scopes' "Scope verdicts"); the switch and a parent run opened since come first.
    scope = claim.scope if claim is not None else None
    verdict = getattr(scope, "store_verdict", None)
    if verdict is not None and verdict.verdict_holds() and is_enabled() \
            and current_parent() is None:
        context = verdict
    else:
        context = capture_context()
        if scope is not None and context.store_error is not None:
            context = scope.store_verdict = context.replace(verdict_at=time.time())
    if claim is not None and claim.data_source is not None:
        context = context.replace(data_source=claim.data_source)
    twin.tracking_context_ = context.replace(position=position) if position else context


@hooks.on_fit
def _fit_callbacks(net):
    """The MLflow run of a tracked fit: its ``tracking`` flag, and the switch as it stood where
    it was cloned (a worker's own environment may be stale), else this process's switch."""
    if getattr(net, "tracking", True) is not True:
        return []
    context = getattr(net, "tracking_context_", None)
    if not (context.enabled if context is not None else is_enabled()):
        return []
    callbacks = [("mlflow", MlflowRunLogger(context=context, options=net.tracking_options))]
    options = net.tracking_options
    if isinstance(options, dict) and options.get("figures") == "all":
        callbacks.append(("weight_snapshots", WeightSnapshots()))
    return callbacks


hooks.param_check("tracking_options")(resolve_options)


# --------------------------------------------------------------------------- the wrappers

def _scope(make, *args):
    """A scope from ``make(*args)``; a failure to set one up (an unusual ``cv``) costs the
    runs their position, never the fit."""
    try:
        return make(*args)
    except Exception as exc:  # noqa: BLE001
        logger.debug("no tracking scope for %s", args[0], exc_info=exc)
        return contextlib.nullcontext()


def _pipeline_fit(original):
    @functools.wraps(original)
    def fit(self, X, y=None, **params):
        with scopes.entered("pipeline", self, X):
            return original(self, X, y, **params)

    return fit


def _search_fit(original):
    @functools.wraps(original)
    def fit(self, X, y=None, **params):
        with _scope(scopes.search, self, X, y, params.get("groups")) as scope:
            if not (_autolog[0] and is_enabled() and scopes.ours(self.estimator)) \
                    or current_parent() is not None:
                return original(self, X, y, **params)
            from ..data import data_source

            with parent_run(scopes.search_name(self, scope),
                            tags={"search_class": type(self).__name__},
                            data_source=data_source(X)) as parent:
                original(self, X, y, **params)
                if parent is not None:
                    parent.log_search(self, X, y)
        return self

    return fit


def _ensemble_fit(original):
    @functools.wraps(original)
    def fit(self, X, y, **params):
        with _scope(scopes.ensemble, self):
            if not (_autolog[0] and is_enabled() and scopes.ours(self)) or _in_fold(self):
                return original(self, X, y, **params)
            pipeline, pipe_X = scopes.enclosing_pipeline(self)
            X_raw = pipe_X if pipe_X is not None else X
            kind = type(self).__name__
            start = time.time()
            from ..data import data_source

            # the members' data is named after the ensemble's X (a worker's copy of it is not
            # the array the reader returned), a subset only when it has other rows
            with parent_run(scopes.ensemble_name(self), tags={"ensemble_class": kind},
                            data_source=data_source(X_raw)) as parent:
                with _as_members(self):
                    original(self, X, y, **params)
                # where this fit's run is, as our estimators keep it (``reproduce`` reads it)
                self.last_run_id_ = None if parent is None else parent.run_id
                if parent is not None:
                    parent.log_ensemble(self, pipeline, X_raw, y, time.time() - start)
        return self

    return fit


def _cv_function(original, label):
    @functools.wraps(original)
    def run(estimator, *args, **kwargs):
        X = args[0] if args else kwargs.get("X")
        with _scope(scopes.cross_validation, estimator, label, X):
            context = getattr(scopes.last_step(estimator), "tracking_context_", None)
            if label != "of cross_val_predict" or context is None \
                    or context.parent_run_id is None or current_parent() is not None:
                return original(estimator, *args, **kwargs)
            # A stacking ensemble runs cross_val_predict in a joblib worker (n_jobs > 1), where
            # no run is open: the folds go under the run the estimator was cloned under.
            with carrying(context):
                return original(estimator, *args, **kwargs)

    return run


def _validation_clone(original):
    """``clone`` as the functions of scikit-learn's validation module call it: a clone of ours
    made there, that no scope knows of, is a fold of ``cross_validate`` (or of a function like
    it imported before this package, so not wrapped). ``clone(parameters, safe=False)``, a
    search's candidate values, is left alone: the search's scope knows its folds."""
    @functools.wraps(original)
    def clone(estimator, *, safe=True):
        if not safe or scopes.known(estimator):
            return original(estimator, safe=safe)
        with _scope(scopes.cross_validation, estimator, "of cross_validate"):
            return original(estimator, safe=safe)

    return clone


def _in_fold(ensemble):
    """Is ``ensemble`` a search's or cross-validation's fold? Its members were cloned as one."""
    return any("fold" in (getattr(getattr(net, "tracking_context_", None), "position", None)
                          or {}) for net in scopes.ours(ensemble))


# --------------------------------------------------------------------------- install

def _targets():
    """(label, [(owner, name), ...], make wrapper): every name a wrapper goes on. Names bound
    to one function get one wrapper."""
    from sklearn import model_selection
    from sklearn.ensemble import StackingClassifier, VotingClassifier
    from sklearn.pipeline import Pipeline

    validation = _compat.validation_module()
    stacking = _compat.stacking_module()
    targets = [([(Pipeline, "fit")], _pipeline_fit),
               ([(_compat.search_base_class(), "fit")], _search_fit),
               ([(VotingClassifier, "fit")], _ensemble_fit),
               ([(StackingClassifier, "fit")], _ensemble_fit)]
    for name in _CV_FUNCTIONS:
        owners = [(validation, name), (model_selection, name)]
        if name == "cross_val_predict":
            owners.append((stacking, name))
        label = "of cross_val_predict" if name == "cross_val_predict" else "of cross_validate"
        targets.append((owners, functools.partial(_cv_function, label=label)))
    targets.append(([(validation, "clone")], _validation_clone))
    return targets


def install():
    """Wrap the public scikit-learn methods listed in this module's docstring (once)."""
    if _originals:
        return
    for owners, make in _targets():
        original = getattr(*owners[0])
        wrapper = make(original)
        for owner, name in owners:
            if getattr(owner, name) is original:
                _originals[(owner, name)] = original
                setattr(owner, name, wrapper)


def uninstall():
    """Put back every scikit-learn method and function ``install`` wrapped."""
    for (owner, name), original in list(_originals.items()):
        setattr(owner, name, original)
        del _originals[(owner, name)]


def installed():
    """The wrapped names, as ``{"Pipeline.fit": original, ...}``."""
    return {f"{getattr(owner, '__name__', owner)}.{name}": original
            for (owner, name), original in _originals.items()}


# --------------------------------------------------------------------------- autolog

def autolog(enable=True):
    """Give every scikit-learn search and ensemble over these estimators a parent run,
    automatically.

    Once called:

    - ``GridSearchCV``/``RandomizedSearchCV`` (any ``BaseSearchCV``) whose estimator is one of
      ours, a Pipeline ending in one, or an ensemble of them, runs its ``fit`` inside
      ``parent_run`` and logs the summary (``log_search``);
    - ``VotingClassifier`` and ``StackingClassifier`` with at least one member that is, or
      ends in, one of ours are one parent run with a child run per member fit, named by the
      member's name in ``estimators`` (``cnn0``) and tagged ``ensemble.member``, in worker
      processes too (``n_jobs=2``). A stacking ensemble's ``cross_val_predict`` fits are
      children too, tagged ``search.fold`` like CV folds, and so is a final estimator of ours
      (``final_estimator``). Members log their params, epochs and figures but no model of
      their own (unless their ``tracking_options`` ask for one): the parent logs the whole
      ensemble, or the ``Pipeline`` that ends in it, as one MLflow model, with the ensemble's
      params (``ensemble.voting``, ``ensemble.weights``, ``ensemble.members``...), the
      dataset and ``n_members``. The fitted ensemble's ``last_run_id_`` is its parent run.
      Opened inside another run (the user's, ``reproduce``'s, a search's refit), the
      ensemble's run is a child of it; an ensemble fitted as a search's or cross-validation's
      fold is left alone: its members log as that search's fold fits, children of the
      search's run, also when the search runs the fold in a worker process.

    Searches over other estimators, and searches inside a run already open, are left alone.
    It uses the wrappers ``install`` put on the public ``fit`` methods at import (see this
    module); ``autolog(False)`` turns the parent runs off again. ``cross_validate`` gets no
    parent run of its own: wrap it in ``parent_run`` and call ``log_cv``.

    Returns whether autolog was on before the call, so that a caller can put it back.

    >>> tracking.autolog()                                  # doctest: +SKIP
    >>> vote = VotingClassifier([("mlp", MLPClassifier()), ("cnn", CNNClassifier())],
    ...                         voting="soft", n_jobs=2).fit(X, y)
    >>> mlflow.pyfunc.load_model(f"runs:/{vote.last_run_id_}/voting-2").predict(X)
    """
    was_on = _autolog[0]
    install()
    _autolog[0] = bool(enable)
    return was_on


def is_autologging():
    return _autolog[0]


@contextlib.contextmanager
def autologging():
    """``autolog()`` for the duration of a block, then as it was before (left on if it was)."""
    was_on = autolog()
    try:
        yield
    finally:
        if not was_on:
            autolog(False)


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
    kind = type(ensemble).__name__
    saved = []  # (name, net, its own tracking_options)
    for name, member in scopes.members(ensemble):
        net = scopes.last_step(member)
        if not scopes.is_ours(net):
            continue
        own = net.tracking_options
        options = dict(own or {})
        options["tags"] = {**(options.get("tags") or {}), "ensemble.member": name,
                           "ensemble.class": kind}
        if options.get("run_name") is None:  # its name, and what it is: "wide · mlp-512"
            shape = artifacts.model_name(net)
            options["run_name"] = shape if shape == name or shape.startswith(name + "-") \
                else f"{name} · {shape}"
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
                twin = scopes.last_step(twin)
                twin.tracking_options = own  # attribute: no skorch re-initialization
                for _, callback in getattr(twin, "callbacks_", None) or []:
                    if isinstance(callback, MlflowRunLogger):  # a later partial_fit's run too
                        callback.options = own


install()
