"""Where a fit stands: the search, candidate, fold, Pipeline and ensemble around it, told to it
by public scikit-learn methods, never read off the call stack.

``tracking.sklearn_autolog`` wraps the public ``fit`` of ``Pipeline``, ``VotingClassifier``,
``StackingClassifier`` and of every search, and the public functions ``cross_validate`` and
``cross_val_predict``. The wrappers keep two records here:

- **This thread's fit stack** (``entered``): the Pipeline, ensemble, search or
  cross-validation whose ``fit`` runs in this thread, outermost first. A Pipeline's last step
  finds its Pipeline and raw X there (``enclosing_pipeline``), and a candidate's values are read
  from what the search cloned (``fold_root``).
- **This process's open clone scopes** (``search``, ``cross_validation``, ``ensemble``): a
  search, a cross-validation or an ensemble running here, and which of our estimators it will
  clone (an ensemble's members take its place: a fold of a search, its refit). scikit-learn
  clones once per (candidate, fold), in candidate-major order, in the process that runs the
  search, whatever the joblib backend (``BaseSearchCV.fit``: ``clone(base_estimator)`` for each
  of ``product(candidates, splits)``, after one clone of ``estimator`` into ``base_estimator``;
  checked with n_jobs=1, loky and Dask, scikit-learn 1.7 and 1.9, tests/test_lineage.py). So
  the k-th clone of one of our estimators of the base estimator is candidate k // n_splits,
  fold k % n_splits; the refit is the clone made once ``best_params_`` is set. The position
  goes into the clone's ``RunContext`` and travels with it to any worker.

Clones can be made in joblib's dispatch threads, so the clone scopes are per process, under a
lock, and found by the identity of the object being cloned, never by thread.

Scope verdicts: a clone of a scope that finds the tracking store unusable (a server that
refuses or does not answer) leaves that context in the scope's ``store_verdict``; the scope's
later clones carry it without trying the store again, and their first fits trust it, for
``context.VERDICT_S`` from when it was found (``RunContext.verdict_at``). A search against a
dead server tries it once a minute, not twice a fit.
"""

from __future__ import annotations

import contextlib
import numbers
import threading
from dataclasses import dataclass, replace

_local = threading.local()
_lock = threading.Lock()
_clone_scopes = []  # the open SearchScope/CrossValidationScope of this process


# --------------------------------------------------------------------------- the fit stack

@dataclass(eq=False)
class Entry:
    kind: str        # "pipeline", "ensemble", "search" or "cross-validation"
    owner: object    # the object whose fit (or the cross-validation of which) runs
    X: object = None  # its raw input, for a Pipeline (the model's example and dataset)


def _stack():
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


@contextlib.contextmanager
def entered(kind, owner, X=None):
    """``owner``'s fit runs in this thread for the duration."""
    entry = Entry(kind, owner, X)
    stack = _stack()
    stack.append(entry)
    try:
        yield entry
    finally:
        stack.remove(entry)


def enclosing_pipeline(estimator):
    """The ``Pipeline`` fitting ``estimator`` as its last step in this thread, and its raw X;
    ``(None, None)`` outside one."""
    for entry in reversed(_stack()):
        if entry.kind == "pipeline" and last_step(entry.owner) is estimator:
            return entry.owner, entry.X
    return None, None


def fold_root(estimator):
    """What a search or cross-validation cloned, of which ``estimator`` is part: the outermost
    Pipeline or ensemble fitting in this thread since the innermost search here (in a worker,
    since the task began), else ``estimator`` itself."""
    stack = _stack()
    start = max((i + 1 for i, e in enumerate(stack)
                 if e.kind in ("search", "cross-validation")), default=0)
    above = [e.owner for e in stack[start:] if e.kind in ("pipeline", "ensemble")]
    return above[0] if above else estimator


# --------------------------------------------------------------------------- the clone scopes

@dataclass(frozen=True)
class Claim:
    """What a scope says of a clone it made: its ``position``, and whether it ``inherit``s the
    place of the object cloned (an ensemble's member takes the ensemble's)."""

    position: dict | None
    inherit: bool = False
    # where the scope's X came from (``data.data_source``), found here, in the process that has
    # it: a fold is a copy, and a worker's copy of X is not the array a reader returned
    data_source: dict | None = None
    # the scope that made the clone (set by ``claim``), whose ``store_verdict`` its clones share
    scope: object = None


class SearchScope:
    """A search's ``fit`` running in this process: the positions of the clones it makes.

    ``mine``: ids of our estimators in ``search.estimator`` (their first clones make the base
    estimator); ``base``: id of each base twin -> how many times it has been cloned since.
    """

    kind = "search"
    store_verdict = None  # see ``Scope verdicts`` in the module's docstring

    def __init__(self, search, n_splits, candidates, n_candidates, keys, data_source=None):
        self.search = search
        self.data_source = data_source
        self.n_splits = n_splits
        self.candidates = candidates      # the candidates' values in order, when reproducible
        self.n_candidates = n_candidates  # None when the search decides as it goes (halving)
        self.keys = keys                  # the searched names, when the values are not known
        self.mine = {id(net) for net in ours(search.estimator)}
        self.base = {}
        self.best_before = search.__dict__.get("best_params_")

    def claim(self, source, twin):
        key = id(source)
        if key in self.mine:  # base_estimator = clone(estimator): never fitted
            self.base[id(twin)] = 0
            return Claim(None, data_source=self.data_source)
        if key not in self.base:
            return None
        k = self.base[key]
        self.base[key] = k + 1
        best = self.search.__dict__.get("best_params_")
        if best is not None and best is not self.best_before:
            return Claim({"refit": "true", "parameters": dict(best)}, data_source=self.data_source)
        candidate, fold = divmod(k, self.n_splits)
        total = "?" if self.n_candidates is None else self.n_candidates
        position = {"fold": f"{fold + 1}/{self.n_splits}", "candidate": f"{candidate + 1}/{total}"}
        if self.candidates is not None and candidate < len(self.candidates):
            position["parameters"] = dict(self.candidates[candidate])
        elif self.keys:
            position["keys"] = list(self.keys)  # read from the fold's estimator when it fits
        return Claim(position, data_source=self.data_source)


class CrossValidationScope:
    """``cross_validate`` (and what calls it) or ``cross_val_predict`` running in this process:
    every clone of our estimators in ``estimator`` is one of its folds (scikit-learn passes no
    fold number to them; the tag says which function: ``of cross_validate``)."""

    kind = "cross-validation"
    store_verdict = None  # see ``Scope verdicts`` in the module's docstring

    def __init__(self, estimator, label, data_source=None):
        self.label = label
        self.data_source = data_source
        self.mine = {id(net) for net in ours(estimator)}

    def claim(self, source, twin):
        return Claim({"fold": self.label}, data_source=self.data_source) \
            if id(source) in self.mine else None


class EnsembleScope:
    """A voting or stacking ensemble fitting in this process: the clones it makes of its
    members are in its place (a search's fold or refit, or nowhere in particular), with the
    candidate's values read from ``root``, what the search cloned (``fold_root``)."""

    kind = "ensemble"
    store_verdict = None  # see ``Scope verdicts`` in the module's docstring

    def __init__(self, ensemble):
        self.root = fold_root(ensemble)
        self.mine = {id(net) for net in ours(ensemble)}

    def claim(self, source, twin):
        if id(source) not in self.mine:
            return None
        context = getattr(source, "tracking_context_", None)
        position = getattr(context, "position", None)
        return Claim(resolve(position, self.root) if position else None, inherit=True)


@contextlib.contextmanager
def _open(scope, owner):
    with _lock:
        _clone_scopes.append(scope)
    try:
        with entered(scope.kind, owner):
            yield scope
    finally:
        with _lock:
            _clone_scopes.remove(scope)


def search(search_cv, X, y=None, groups=None):
    """The scope of ``search_cv.fit(X, y)``, or a null context when nothing of ours is in it."""
    from sklearn.base import is_classifier
    from sklearn.model_selection import (
        GridSearchCV,
        ParameterGrid,
        ParameterSampler,
        RandomizedSearchCV,
        check_cv,
    )

    if not ours(search_cv.estimator):
        return contextlib.nullcontext()
    cv = check_cv(search_cv.cv, y, classifier=is_classifier(search_cv.estimator))
    n_splits = cv.get_n_splits(X, y, groups)
    candidates = n_candidates = None
    grid = getattr(search_cv, "param_grid", None)
    distributions = getattr(search_cv, "param_distributions", None)
    if isinstance(search_cv, GridSearchCV):
        candidates = list(ParameterGrid(grid))
        n_candidates = len(candidates)
    elif isinstance(search_cv, RandomizedSearchCV):
        sampler = ParameterSampler(distributions, search_cv.n_iter,
                                   random_state=search_cv.random_state)
        n_candidates = len(sampler)
        if isinstance(search_cv.random_state, numbers.Integral):  # drawn again, the same
            candidates = list(sampler)
    space = grid if grid is not None else distributions
    spaces = space if isinstance(space, (list, tuple)) else [space] if space else []
    keys = sorted({k for s in spaces if isinstance(s, dict) for k in s})
    return _open(SearchScope(search_cv, n_splits, candidates, n_candidates, keys,
                             _data_source(X)), search_cv)


def ensemble(ensemble_estimator):
    """The scope of an ensemble's ``fit``: the thread's fit stack always, and a clone scope
    when some member is ours."""
    if not ours(ensemble_estimator):
        return entered("ensemble", ensemble_estimator)
    return _open(EnsembleScope(ensemble_estimator), ensemble_estimator)


def cross_validation(estimator, label, X=None):
    """The scope of a ``cross_validate``/``cross_val_predict`` of ``estimator`` on ``X`` (None
    when the caller cannot tell)."""
    if not ours(estimator):
        return contextlib.nullcontext()
    return _open(CrossValidationScope(estimator, label, _data_source(X)), estimator)


def _data_source(X):
    from ..data import data_source

    return None if X is None else data_source(X)


def known(estimator):
    """Does a scope open in this process already know ``estimator``'s estimators of ours?"""
    ids = {id(net) for net in ours(estimator)}
    with _lock:
        return any(ids & scope.mine or ids & set(getattr(scope, "base", ()))
                   for scope in _clone_scopes)


def claim(source, twin):
    """What the innermost search, cross-validation or ensemble open in this process that made
    ``twin``, a clone of ``source``, says of it (a ``Claim``, naming the scope); None if none
    made it."""
    with _lock:
        for scope in reversed(_clone_scopes):
            said = scope.claim(source, twin)
            if said is not None:
                return replace(said, scope=scope)
    return None


def resolve(position, root):
    """``position`` with the candidate's values filled in, read from ``root`` (the fold's
    estimator, see ``fold_root``) when the search could not know them in advance (a randomized
    search without an integer ``random_state``)."""
    if not position or "keys" not in position:
        return position
    out = {k: v for k, v in position.items() if k != "keys"}
    try:
        params = root.get_params(deep=True)
    except Exception:  # noqa: BLE001 - a name the run does not need
        return out
    values = {k: params[k] for k in position["keys"] if k in params}
    if values:
        out["parameters"] = values
    return out


# --------------------------------------------------------------------------- our estimators

def last_step(estimator):
    steps = getattr(estimator, "steps", None)
    return steps[-1][1] if isinstance(steps, list) and steps else estimator


def is_ours(estimator):
    return getattr(type(estimator), "_mnist_estimator", False) is True


def ours(estimator, _depth=0):
    """Our estimators inside ``estimator``: itself, a Pipeline's steps, an ensemble's members
    and final estimator, a meta-estimator's ``estimator`` (found through the public
    ``get_params(deep=False)``), in order, each object once."""
    found = []
    if is_ours(estimator):
        return [estimator]
    if _depth > 8 or not hasattr(estimator, "get_params") or isinstance(estimator, type):
        return found
    try:
        values = estimator.get_params(deep=False).values()
    except Exception:  # noqa: BLE001 - not an estimator scikit-learn could clone either
        return found
    for value in values:
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, tuple) and len(item) >= 2:  # ("name", estimator)
                item = item[1]
            for net in ours(item, _depth + 1):
                if not any(net is f for f in found):
                    found.append(net)
    return found


def members(estimator, final=True):
    """(name, member) of a voting or stacking ensemble (any estimator whose ``estimators``
    parameter is a list of (name, estimator) pairs), its final estimator included (named
    ``final_estimator``) unless ``final=False``; [] for anything else, or for ``estimators``
    the fit will reject."""
    if isinstance(estimator, type) or not hasattr(estimator, "get_params"):
        return []
    try:
        params = estimator.get_params(deep=False)
        pairs = params.get("estimators")
        if not isinstance(pairs, (list, tuple)):
            return []
        out = [(name, member) for name, member in pairs
               if member is not None and not isinstance(member, str)]  # "drop"
    except (TypeError, ValueError):
        return []  # malformed: the ensemble's own fit says what is wrong
    if final and params.get("final_estimator") is not None:
        out.append(("final_estimator", params["final_estimator"]))
    return out


def class_kind(estimator):
    """An estimator's class as a short lowercase word: ``mlp``, ``cnn``, ``softmax``,
    ``voting``, ``stacking`` (run and model names)."""
    return type(estimator).__name__.replace("Classifier", "") \
        .replace("SoftmaxRegression", "softmax").lower()


def short_kind(estimator):
    """What an estimator is, briefly, for a run's name: ``mlp``, ``cnn``, ``softmax`` for ours,
    ``standardscaler → mlp`` for a pipeline, the class name for anything else."""
    if hasattr(estimator, "steps"):
        return " → ".join(short_kind(step) for _, step in estimator.steps
                          if step is not None and not isinstance(step, str))
    name = type(estimator).__name__
    if is_ours(estimator):
        return class_kind(estimator)
    # a transformer by its pipeline step name (pca), a predictor by its class name
    return name if hasattr(estimator, "predict") else name.lower()


def search_name(search_cv, scope=None):
    """A search's parent run name: ``GridSearchCV · mlp · 4 candidates × 2 folds`` (``?``
    candidates for a search that decides as it goes)."""
    parts = [type(search_cv).__name__, short_kind(search_cv.estimator)]
    if isinstance(scope, SearchScope):
        total = "?" if scope.n_candidates is None else scope.n_candidates
        parts.append(f"{total} candidate{'' if total == 1 else 's'} × {scope.n_splits} folds")
    return " · ".join(parts)


def ensemble_name(ensemble):
    """An ensemble's parent run name: ``VotingClassifier · mlp + softmax (soft)``,
    ``VotingClassifier · cnn × 5 (soft)``, ``StackingClassifier · mlp + cnn → LogisticRegression``."""
    counts = {}  # kind -> members, in order: five CNNs read "cnn × 5"
    for _, member in members(ensemble, final=False):
        k = short_kind(member)
        counts[k] = counts.get(k, 0) + 1
    body = " + ".join((f"({k})" if " → " in k else k) + (f" × {n}" if n > 1 else "")
                      for k, n in counts.items())
    params = ensemble.get_params(deep=False)
    if params.get("final_estimator") is not None:
        body += " → " + short_kind(params["final_estimator"])
    elif "final_estimator" in params:
        body += " → LogisticRegression"  # StackingClassifier's default
    if isinstance(params.get("voting"), str):
        body += f" ({params['voting']})"
    return f"{type(ensemble).__name__} · {body}"


def kind(member):
    """What a member is: ``MLPClassifier``, or ``Pipeline(StandardScaler, MLPClassifier)``."""
    if hasattr(member, "steps"):
        return "Pipeline(" + ", ".join(step if isinstance(step, str) else type(step).__name__
                                       for _, step in member.steps) + ")"
    return type(member).__name__
