"""Every private name of another library that this package touches, and the only place it does.

Each one is here because no public API does the same job; each says why. A later release of
that library may drop or rename it: then the function here raises ``PrivateAPIError`` naming
the name and the versions it was checked on, instead of misbehaving, and
``tests/test_compat.py`` fails on the upgrade, naming it too.

Checked on the floor and the newest of each declared range (``CHECKED_ON``; ``.ci/run`` runs
both lanes).
"""

from __future__ import annotations

import functools
import importlib

CHECKED_ON = {"scikit-learn": ("1.7.0", "1.9.1"), "mlflow": ("3.10.0", "3.17.2"),
              "optuna": ("4.5.0", "5.1.0"), "torch": ("2.13.0",)}


class PrivateAPIError(RuntimeError):
    """A private name this package relies on is gone from the library installed."""


def _get(module, path, library):
    obj = importlib.import_module(module)
    try:
        for part in path.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise PrivateAPIError(
            f"mnist-estimators uses {module}.{path}, which the installed {library} no longer "
            f"has (checked on {library} {' and '.join(CHECKED_ON[library])}); pin {library} "
            "to a checked version, or report it") from None
    return obj


# --------------------------------------------------------------------------- scikit-learn

def search_base_class():
    """``BaseSearchCV``: every search (``GridSearchCV``, ``RandomizedSearchCV``, the halving
    searches, third-party ones) runs its ``fit``; the public classes inherit it without
    defining their own, and scikit-learn does not export the base class."""
    return _get("sklearn.model_selection._search", "BaseSearchCV", "scikit-learn")


def validation_module():
    """The module that defines ``cross_validate`` and ``cross_val_predict``:
    ``cross_val_score`` calls the ``cross_validate`` of its own module globals, so wrapping the
    public name in ``sklearn.model_selection`` alone would miss it."""
    module = importlib.import_module("sklearn.model_selection")
    owner = importlib.import_module(module.cross_validate.__module__)
    for name in ("cross_validate", "cross_val_predict"):
        _get(owner.__name__, name, "scikit-learn")
    return owner


def stacking_module():
    """``sklearn.ensemble._stacking``: ``StackingClassifier.fit`` calls the
    ``cross_val_predict`` bound in its module, in a joblib worker when ``n_jobs`` > 1."""
    module = importlib.import_module("sklearn.ensemble._stacking")
    _get(module.__name__, "cross_val_predict", "scikit-learn")
    return module


# --------------------------------------------------------------------------- MLflow

def tracking_uri_is_set():
    """Did the user set a tracking URI (``mlflow.set_tracking_uri``)? ``get_tracking_uri``
    returns MLflow's default when nothing was set, which cannot be told from a user's choice."""
    return _get("mlflow.tracking._tracking_service.utils", "is_tracking_uri_set", "mlflow")()


def using_tracking_uri(uri):
    """A context in which MLflow's fluent API (``mlflow.register_model``) uses ``uri``; the
    fluent registry has no per-call URI."""
    return _get("mlflow.tracking._tracking_service.utils", "_use_tracking_uri", "mlflow")(uri)


def sql_stores(client):
    """The tracking and registry SQLAlchemy stores behind ``client``: creating them creates
    and migrates the tables (done once, under a lock), and their engines take the SQLite
    settings MLflow has no option for."""
    tracking = _get("mlflow.tracking.client", "MlflowClient", "mlflow")
    if not hasattr(client, "_tracking_client") or not hasattr(client, "_get_registry_client"):
        raise PrivateAPIError(f"{tracking.__name__} no longer has _tracking_client and "
                              "_get_registry_client (checked on mlflow "
                              f"{' and '.join(CHECKED_ON['mlflow'])})")
    return client._tracking_client.store, client._get_registry_client().store


def sql_engines():
    """Every SQLAlchemy engine MLflow's SQL stores opened in this process (their class-level
    cache), for a forked child to drop without closing its parent's connections."""
    import sys

    engines = []
    for module in ("mlflow.store.tracking.sqlalchemy_store",
                   "mlflow.store.model_registry.sqlalchemy_store"):
        store = getattr(sys.modules.get(module), "SqlAlchemyStore", None)  # opened ones only
        if store is not None:
            engines += list(_get(module, "SqlAlchemyStore._engine_map", "mlflow").values())
    return engines


# --------------------------------------------------------------------------- torch

def foreach_lerp_(tensors, others, weight):
    """``torch._foreach_lerp_``: one fused update of every averaged weight (the optimizers use
    it; torch has no public multi-tensor lerp). Falls back to a loop if it is gone."""
    import torch

    fused = getattr(torch, "_foreach_lerp_", None)
    if fused is not None:
        return fused(tensors, others, weight)
    for t, o in zip(tensors, others):
        t.lerp_(o, weight)
    return tensors


@functools.lru_cache(maxsize=1)
def cpu_has_native_bfloat16():
    """Does this CPU compute bfloat16 in hardware (AVX512-BF16 or AMX)? torch's public
    ``torch.backends.cpu.get_cpu_capability()`` says "AVX512" for CPUs with and without it;
    ``torch.cpu._is_avx512_bf16_supported`` and ``_is_amx_tile_supported`` tell them apart.
    Without either, torch emulates bfloat16 autocast, ~13x slower than float32 for the CNNs
    here (AVX2 AMD EPYC, torch 2.13)."""
    checks = [_get("torch.cpu", name, "torch")
              for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks)


# --------------------------------------------------------------------------- Optuna

def seed_tpe_sampler(sampler, seed):
    """Seed the two random states a ``TPESampler`` keeps (``_rng`` and its startup
    ``_random_sampler._rng``): Optuna has no per-trial seed hook, and a seeded sampler in each
    of several worker processes would draw the same sequence."""
    try:
        states = (sampler._rng.rng, sampler._random_sampler._rng.rng)
    except AttributeError:
        raise PrivateAPIError(
            "mnist-estimators seeds optuna's TPESampler._rng and _random_sampler._rng, which the "
            f"installed optuna no longer has (checked on optuna "
            f"{' and '.join(CHECKED_ON['optuna'])})") from None
    for state in states:
        state.seed(seed)
