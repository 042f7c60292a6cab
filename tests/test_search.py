"""Optuna studies over the estimators: real in-memory, SQLite and Journal storages, a real MLflow store."""

import multiprocessing

import mlflow
import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mnist_estimators import MLPClassifier, SoftmaxRegressionClassifier, tracking
from mnist_estimators.search import make_storage, tune

from conftest import X_TEST, X_TRAIN, Y_TRAIN

pytestmark = pytest.mark.tracking
FAST = dict(max_epochs=3, batch_size=32, random_state=0)
SPACE = {"lr": FloatDistribution(1e-4, 3e-2, log=True), "optimizer": ["adam", "sgd"]}


@pytest.fixture
def store(tmp_path, monkeypatch, request):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "study")
    return mlflow.MlflowClient(uri)


def test_study_logs_parent_trials_and_refit(store):
    result = tune(MLPClassifier(**FAST, hidden_sizes=(32,)), SPACE, X_TRAIN, Y_TRAIN, n_trials=4,
                  pruner=None, seed=0)
    tracking.flush()
    trials = result.study.trials
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    assert result.best_value == max(t.value for t in trials)
    parent = store.get_run(result.run_id)
    assert parent.data.metrics["best_value"] == pytest.approx(result.best_value)
    assert parent.data.params["best.optimizer"] == result.best_params["optimizer"]
    assert {a.path for a in store.list_artifacts(result.run_id, "study")} >= {
        "study/optimization_history.png", "study/parallel_coordinate.png", "study/param_importances.png"}
    children = store.search_runs([parent.info.experiment_id],
                                 filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'")
    by_trial = {r.data.tags.get("optuna.trial"): r for r in children}
    assert set(by_trial) == {"0", "1", "2", "3", None}  # 4 trials + the refit
    for t in trials:
        run = by_trial[str(t.number)]
        assert run.data.metrics["best_valid_acc"] == pytest.approx(t.value)
        assert float(run.data.params["lr"]) == pytest.approx(t.params["lr"])
    model = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model")
    np.testing.assert_array_equal(model.predict(X_TEST), result.best_estimator.predict(X_TEST))


def test_pruned_trials_are_recorded(store):
    space = {"lr": FloatDistribution(1e-5, 1e-1, log=True)}
    result = tune(SoftmaxRegressionClassifier(**{**FAST, "max_epochs": 6}), space, X_TRAIN, Y_TRAIN,
                  n_trials=12, pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
                  seed=1, refit=False)
    tracking.flush()
    pruned = [t for t in result.study.trials if t.state.name == "PRUNED"]
    assert pruned, [t.state.name for t in result.study.trials]
    runs = store.search_runs([store.get_run(result.run_id).info.experiment_id],
                             filter_string="tags.`optuna.pruned` LIKE '%pruned%'")
    assert len(runs) == len(pruned) and all(r.info.status == "KILLED" for r in runs)
    assert store.get_run(result.run_id).data.metrics["n_trials_pruned"] == len(pruned)


def test_function_space_and_pipeline(store):
    def space(trial):
        n = trial.suggest_int("n_layers", 1, 2)
        sizes = tuple(trial.suggest_categorical(f"width_{i}", [16, 32]) for i in range(n))
        return {"mlpclassifier__hidden_sizes": sizes,
                "mlpclassifier__lr": trial.suggest_float("lr", 1e-3, 1e-2, log=True)}

    pipe = make_pipeline(StandardScaler(), MLPClassifier(**FAST))
    result = tune(pipe, space, X_TRAIN, Y_TRAIN, n_trials=3, cv=2, pruner=None)
    assert set(result.best_params) >= {"n_layers", "width_0", "lr"}
    assert len(result.best_estimator[-1].hidden_sizes) == result.best_params["n_layers"]


def test_sqlite_study_resumes_without_repeating(tmp_path, store):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    tune(SoftmaxRegressionClassifier(**FAST), SPACE, X_TRAIN, Y_TRAIN, n_trials=2, storage=url,
         study_name="resume", refit=False, pruner=None)
    result = tune(SoftmaxRegressionClassifier(**FAST), SPACE, X_TRAIN, Y_TRAIN, n_trials=5,
                  storage=url, study_name="resume", refit=False, pruner=None)
    numbers = [t.number for t in result.study.trials]
    assert numbers == [0, 1, 2, 3, 4]  # 2 before, 3 more: none lost, none repeated
    reloaded = optuna.load_study(study_name="resume", storage=url)
    assert len(reloaded.trials) == 5


def _worker(url, n):
    import os

    os.environ["MNIST_ESTIMATORS_TRACKING"] = "0"
    from conftest import X_TRAIN, Y_TRAIN

    tune(SoftmaxRegressionClassifier(**FAST), SPACE, X_TRAIN, Y_TRAIN, n_trials=n, storage=url,
         study_name="shared", refit=False, pruner=None)


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_two_worker_processes_share_one_study(tmp_path, kind):
    url = f"journal:{tmp_path / 'study.log'}" if kind == "journal" else f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(storage=make_storage(url), study_name="shared", direction="maximize")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(url, 3)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    trials = optuna.load_study(study_name="shared", storage=make_storage(url)).trials
    numbers = [t.number for t in trials]
    assert len(trials) >= 3 and len(numbers) == len(set(numbers))
    assert all(t.state.name == "COMPLETE" for t in trials)


def test_bad_arguments():
    with pytest.raises(ValueError, match="'pruner' parameter must be"):
        tune(MLPClassifier(**FAST), SPACE, X_TRAIN, Y_TRAIN, n_trials=1, pruner="sometimes")
    with pytest.raises(ValueError, match="'storage' parameter must be an RDB URL"):
        make_storage("studies.db")
    with pytest.raises(ValueError, match="validation split"):
        tune(MLPClassifier(**FAST, validation_fraction=None), SPACE, X_TRAIN, Y_TRAIN, n_trials=1)
