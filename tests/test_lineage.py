"""Where a fit stands, as its run says it: the fold and candidate tags, run names, nesting and
models of every fit of a search, a cross-validation, a stacking ensemble and an ensemble
searched, with ``n_jobs=1``, ``n_jobs=2`` (loky workers) and joblib's Dask backend.

The expected values are literal: they are what the runs said before tracking learned its
context from public hooks (``tracking.scopes``) instead of the call stack, and must not move.
"""

import os
import subprocess
import sys

import mlflow
import pytest
from sklearn.ensemble import StackingClassifier, VotingClassifier
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mnist_estimators import MLPClassifier, SoftmaxRegressionClassifier, tracking

from conftest import X_TRAIN, Y_TRAIN

pytestmark = pytest.mark.tracking
X, Y = X_TRAIN[:200], Y_TRAIN[:200]
TINY = dict(max_epochs=1, batch_size=50, random_state=0)


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the artifacts of a store given by URI go to ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(uri)


@pytest.fixture
def autologged(client):
    tracking.autolog()
    try:
        yield client
    finally:
        tracking.autolog(False)


def lineage(client):
    """Each run as (its parent's name, its name, fold, candidate, refit, model logged?)."""
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              max_results=1000)
    names = {r.info.run_id: r.info.run_name for r in runs}
    assert all(r.info.status == "FINISHED" for r in runs), [(r.info.run_name, r.info.status)
                                                           for r in runs]
    return sorted((names.get(r.data.tags.get("mlflow.parentRunId"), "-"), r.info.run_name,
                   r.data.tags.get("search.fold", "-"), r.data.tags.get("search.candidate", "-"),
                   r.data.tags.get("search.refit", "-"), "model_uri" in r.data.tags)
                  for r in runs)


def pipeline_grid(n_jobs):
    return GridSearchCV(make_pipeline(StandardScaler(), SoftmaxRegressionClassifier(**TINY)),
                        {"softmaxregressionclassifier__lr": [1e-3, 1e-2],
                         "standardscaler__with_mean": [True, False]}, cv=2, n_jobs=n_jobs)


GRID = "GridSearchCV · standardscaler → softmax · 4 candidates × 2 folds"
GRID_FOLDS = [
    (GRID, f"fold {fold}/2 · lr={lr} with_mean={mean}", f"{fold}/2", f"{cand}/4",
     "-", False)
    for cand, (lr, mean) in enumerate([("0.001", True), ("0.001", False), ("0.01", True),
                                       ("0.01", False)], start=1)
    for fold in (1, 2)]


def grid_lineage(best):
    return sorted(GRID_FOLDS + [
        ("-", GRID, "-", "-", "-", True),
        (GRID, f"refit · lr={best['softmaxregressionclassifier__lr']:g} "
                         f"with_mean={best['standardscaler__with_mean']}", "-", "-", "true",
         True)])


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_grid_search_over_a_pipeline(autologged, n_jobs):
    grid = pipeline_grid(n_jobs).fit(X, Y)
    assert lineage(autologged) == grid_lineage(grid.best_params_)


def test_a_grid_search_on_the_dask_backend(autologged):
    import joblib
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        with joblib.parallel_backend("dask"):
            grid = pipeline_grid(2).fit(X, Y)
    assert lineage(autologged) == grid_lineage(grid.best_params_)


def test_a_grid_search_without_autolog_still_tags_its_folds(client):
    grid = pipeline_grid(2).fit(X, Y)
    expected = [("-",) + row[1:] for row in GRID_FOLDS]
    best = grid.best_params_
    expected.append(("-", f"refit · lr={best['softmaxregressionclassifier__lr']:g} "
                          f"with_mean={best['standardscaler__with_mean']}", "-", "-", "true",
                     True))
    assert lineage(client) == sorted(expected)


def test_a_randomized_search_without_a_seed(autologged):
    search = RandomizedSearchCV(SoftmaxRegressionClassifier(**TINY), {"lr": [1e-3, 1e-2]},
                                n_iter=2, cv=2, n_jobs=2).fit(X, Y)
    tried = [f"{p['lr']:g}" for p in search.cv_results_["params"]]
    name = "RandomizedSearchCV · softmax · 2 candidates × 2 folds"
    expected = [(name, f"fold {fold}/2 · lr={lr}", f"{fold}/2", f"{cand}/2",
                 "-", False) for cand, lr in enumerate(tried, start=1) for fold in (1, 2)]
    expected += [("-", name, "-", "-", "-", True),
                 (name, f"refit · lr={search.best_params_['lr']:g}", "-", "-",
                  "true", True)]
    assert lineage(autologged) == sorted(expected)


def test_cross_validate_with_two_workers(client):
    cross_validate(make_pipeline(StandardScaler(), SoftmaxRegressionClassifier(**TINY)), X, Y,
                   cv=3, n_jobs=2)
    assert lineage(client) == [("-", "cv fold · softmax · adam lr=0.001 · 1 ep",
                                "of cross_validate", "-", "-", False)] * 3


def test_stacking_folds_in_workers(autologged):
    StackingClassifier([("mlp", MLPClassifier(hidden_sizes=(16,), **TINY)),
                        ("softmax", SoftmaxRegressionClassifier(**TINY))],
                       final_estimator=SoftmaxRegressionClassifier(**TINY), cv=2,
                       n_jobs=2).fit(X, Y)
    # members by their name and what they are ("mlp-16"; "softmax" is both)
    stack = "StackingClassifier · mlp + softmax → softmax"
    fold = (stack, "cv fold · {}", "of cross_val_predict", "-", "-", False)
    assert lineage(autologged) == sorted(
        [("-", stack, "-", "-", "-", True)]
        + [(stack, name, "-", "-", "-", False)
           for name in ("final_estimator · softmax", "mlp-16", "softmax")]
        + [fold[:1] + (fold[1].format(name),) + fold[2:] for name in ("mlp-16", "softmax")] * 2)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_an_ensemble_searched(autologged, n_jobs):
    grid = GridSearchCV(VotingClassifier([("mlp", MLPClassifier(hidden_sizes=(16,), **TINY)),
                                          ("softmax", SoftmaxRegressionClassifier(**TINY))],
                                         voting="soft"),
                        {"weights": [None, (2, 1)]}, cv=2, n_jobs=n_jobs).fit(X, Y)
    member = {"mlp-16": "mlp 16 · adam lr=0.001 · 1 ep", "softmax": "softmax · adam lr=0.001 · 1 ep"}
    search, vote = ("GridSearchCV · VotingClassifier · 2 candidates × 2 folds",
                    "VotingClassifier · mlp + softmax (soft)")
    expected = [(search, f"fold {fold}/2 · weights={w}", f"{fold}/2", f"{cand}/2", "-",
                 False) for cand, w in enumerate(["None", "2-1"], start=1) for fold in (1, 2)
                for _ in member]
    expected += [("-", search, "-", "-", "-", True), (search, vote, "-", "-", "-", True)]
    # the refit's members are fits of the search's refit too
    expected += [(vote, name, "-", "-", "true", False) for name in member]
    assert grid.best_params_ in ({"weights": None}, {"weights": (2, 1)})
    assert lineage(autologged) == sorted(expected)


def test_cross_validate_imported_before_the_package_still_tags_its_folds(tmp_path):
    # a script that imports scikit-learn's function first holds the original, unwrapped one
    script = tmp_path / "early.py"
    script.write_text(
        "from sklearn.model_selection import cross_val_predict, cross_validate\n"
        "from sklearn.pipeline import make_pipeline\n"
        "from sklearn.preprocessing import StandardScaler\n"
        "from mnist_estimators import SoftmaxRegressionClassifier, load_sample\n"
        "X, y = load_sample()\n"
        "X, y = X[::20], y[::20]  # 200 images of every class\n"
        "est = make_pipeline(StandardScaler(), SoftmaxRegressionClassifier("
        "max_epochs=1, batch_size=50, random_state=0))\n"
        "cross_validate(est, X, y, cv=2, n_jobs=2)\n"
        "cross_val_predict(est, X, y, cv=2)\n")
    env = {**os.environ, "MNIST_ESTIMATORS_TRACKING": "1",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert lineage(client) == [("-", "cv fold · softmax · adam lr=0.001 · 1 ep",
                                "of cross_validate", "-", "-", False)] * 4
