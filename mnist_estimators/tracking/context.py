"""What crosses process boundaries: the switch, the options, and a small picklable run context.

A search clones estimators in the main process and fits the clones elsewhere (loky workers, Dask
workers, Optuna threads). MLflow's active run is per thread and per process, so the clone
carries a ``RunContext`` instead: where runs go, in which experiment, under which parent, and
where the fit stands (its ``position`` in a search or cross-validation, see ``scopes``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

ENV_SWITCH = "MNIST_ESTIMATORS_TRACKING"
DEFAULT_EXPERIMENT = "mnist-estimators"
DEFAULT_OPTIONS = {
    "experiment": None,       # experiment name; default: the active/env one, else "mnist-estimators"
    "run_name": None,         # default: what is distinctive in the fit (module, optimizer, lr, ...)
    "tags": None,             # extra tags for the run (dict)
    "log_model": "auto",      # True, False, or "auto": yes, except in search/CV fold fits
    "figures": "auto",        # "none", "basic", "all", or "auto": "basic", "none" in fold fits
    "embedding": "pca",       # "pca" or "tsne", for the "all" figures' activation embedding
    "register_as": None,      # register the logged model under this name
    "on_error": "warn",       # "warn": keep training, save the model locally; "raise": fail
    "fallback_dir": "models/unlogged",
    "system_metrics": False,  # MLflow's system metrics (CPU, memory) in the run's System tab
}

_enabled = None
VERDICT_S = 60.0  # how long a search's verdict of a dead store holds (``RunContext.verdict_at``)


class TrackingError(RuntimeError):
    """MLflow logging failed and ``on_error="raise"`` was asked for, or a store is unusable."""


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


def resolve_options(options, owner="tracking_options"):
    options = dict(options or {})
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ValueError(f"Unknown key(s) {unknown} in {owner}; valid keys: {sorted(DEFAULT_OPTIONS)}.")
    merged = {**DEFAULT_OPTIONS, **options}
    if merged["figures"] not in ("auto", "none", "basic", "all"):
        raise ValueError(f"{owner}['figures'] must be 'auto', 'none', 'basic' or 'all'. "
                         f"Got {merged['figures']!r}.")
    if merged["log_model"] not in ("auto", True, False):
        raise ValueError(f"{owner}['log_model'] must be True, False or 'auto'. "
                         f"Got {merged['log_model']!r}.")
    if merged["on_error"] not in ("warn", "raise"):
        raise ValueError(f"{owner}['on_error'] must be 'warn' or 'raise'. Got {merged['on_error']!r}.")
    return merged


@dataclass(frozen=True)
class RunContext:
    """Where a fit's run goes, decided in the process that cloned the estimator.

    Picklable and small: it travels with a clone to loky, Dask and Optuna workers, whose own
    environment (cwd, env vars, active run) may differ from the process that started the search.
    """

    enabled: bool = True
    tracking_uri: str | None = None
    artifact_root: str | None = None
    experiment_id: str | None = None
    parent_run_id: str | None = None
    data_source: dict | None = None  # where a search's X came from (folds lose the link)
    # Where the fit stands, told by the search or cross-validation that cloned it (``scopes``):
    # ``fold`` ("2/3", "of cross_validate"...), ``candidate`` ("1/4"), ``parameters`` (the
    # candidate's values), or ``refit``; None for a fit of its own.
    position: dict | None = None
    # Why the store could not be opened when this context was captured ("the MLflow tracking
    # server ... is not reachable ..."): a fit that captured it at its start reports it as its
    # own, without trying the store a second time (a server that does not answer costs its
    # timeout once). A clone's context, captured earlier, is checked again at its fit, unless
    # it is a scope's recent verdict (``verdict_at``).
    store_error: str | None = None
    # When ``store_error`` is the verdict of the search, cross-validation or ensemble that
    # cloned this estimator: the wall-clock time (``time.time()``, comparable across the
    # processes of a machine) its clone found the store unusable. The scope gives it to its
    # later clones, and a clone's first fit reports it without trying the store again, for
    # ``VERDICT_S`` seconds (``verdict_holds``): a search against a dead server tries it once a
    # minute, not twice a fit, and sees a server that came back within a minute. A later fit
    # of the same estimator checks the store again.
    verdict_at: float | None = None

    def verdict_holds(self):
        """Is this context's ``store_error`` a scope's verdict recent enough to trust?"""
        import time

        return (self.store_error is not None and self.verdict_at is not None
                and 0 <= time.time() - self.verdict_at < VERDICT_S)

    def replace(self, **changes):
        return replace(self, **changes)
