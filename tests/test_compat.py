"""The private names of scikit-learn, MLflow, Optuna and torch that the package relies on are all
in ``mnist_estimators/_compat.py``, are all still there, and a missing one fails loudly."""

import ast
from pathlib import Path

import mlflow
import optuna
import pytest
import torch

from mnist_estimators import _compat
from mnist_estimators.tracking import store

PACKAGE = Path(__file__).resolve().parents[1] / "mnist_estimators"
THIRD_PARTY = ("sklearn", "mlflow", "optuna", "optuna_integration", "skorch", "torch", "joblib",
               "dask", "distributed", "pandas", "numpy", "matplotlib", "PIL", "scipy",
               "sqlalchemy")


def test_every_private_name_is_still_there(tmp_path):
    assert _compat.search_base_class().__name__ == "BaseSearchCV"
    assert callable(_compat.validation_module().cross_validate)
    assert callable(_compat.stacking_module().cross_val_predict)
    assert _compat.tracking_uri_is_set() in (True, False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = store.open_store(uri)
    tracking_store, registry_store = _compat.sql_stores(client)
    assert tracking_store.engine is not None and registry_store.engine is not None
    assert tracking_store.engine in _compat.sql_engines()
    with _compat.using_tracking_uri(uri):
        assert mlflow.get_tracking_uri() == uri
    assert hasattr(torch, "_foreach_lerp_")  # _compat.foreach_lerp_ would fall back to a loop
    a, b = [torch.zeros(3)], [torch.ones(3)]
    _compat.foreach_lerp_(a, b, 0.25)
    assert torch.allclose(a[0], torch.full((3,), 0.25))
    assert _compat.cpu_has_native_bfloat16() in (True, False)
    sampler = optuna.samplers.TPESampler(seed=0)
    _compat.seed_tpe_sampler(sampler, 7)
    first = sampler._rng.rng.random_sample()
    _compat.seed_tpe_sampler(sampler, 7)
    assert sampler._rng.rng.random_sample() == first


def test_a_name_gone_in_an_upgrade_fails_loudly_naming_it(monkeypatch):
    from sklearn.model_selection import _search

    monkeypatch.delattr(_search, "BaseSearchCV")
    with pytest.raises(_compat.PrivateAPIError, match=r"sklearn\.model_selection\._search\."
                       r"BaseSearchCV.*checked on scikit-learn"):
        _compat.search_base_class()

    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    _compat.cpu_has_native_bfloat16.cache_clear()
    try:
        with pytest.raises(_compat.PrivateAPIError, match=r"torch\.cpu\._is_amx_tile_supported"):
            _compat.cpu_has_native_bfloat16()
    finally:
        _compat.cpu_has_native_bfloat16.cache_clear()

    class Bare:
        pass

    with pytest.raises(_compat.PrivateAPIError, match="_rng.*checked on optuna"):
        _compat.seed_tpe_sampler(Bare(), 0)


def _private_uses(path):
    """(line, what) of each private name of another library that ``path`` reaches: an import
    from a private module, or an attribute named _x of a name bound to a third-party module."""
    tree = ast.parse(path.read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in THIRD_PARTY:
                    modules.add((alias.asname or alias.name).split(".")[0])
                    if any(part.startswith("_") for part in alias.name.split(".")):
                        yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in THIRD_PARTY:
                private = [p for p in node.module.split(".") if p.startswith("_")]
                private += [a.name for a in node.names
                            if a.name.startswith("_") and not a.name.startswith("__")]
                if private:
                    yield node.lineno, f"from {node.module} import ..."
                modules.update(a.asname or a.name for a in node.names)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in modules:
                yield node.lineno, f"{root.id}...{node.attr}"


def test_private_names_of_other_libraries_are_reached_only_through_compat():
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
             for path in sorted(PACKAGE.rglob("*.py")) if path.name != "_compat.py"
             for line, what in _private_uses(path)]
    assert found == []


def test_the_scan_finds_what_it_looks_for(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import torch\nfrom sklearn.ensemble import _stacking\n"
                      "from mlflow.tracking import fluent\n"
                      "torch._foreach_lerp_([], [], 0.5)\nfluent._active_experiment_id\n")
    assert sorted(what for _, what in _private_uses(sample)) == [
        "fluent..._active_experiment_id", "from sklearn.ensemble import ...",
        "torch..._foreach_lerp_"]


def test_the_package_reads_no_call_stack():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for name in ("_getframe", "f_locals", "f_back", "inspect.stack", "extract_stack",
                     "currentframe"):
            assert name not in text, f"{path} reads the call stack ({name})"
