"""MLflow tracking against real stores: a sqlite store, the default ./mlruns, and (in
test_tracking_server.py) a real `mlflow server` on 127.0.0.1."""

import contextlib
import json
import os
import socket
from pathlib import Path

import mlflow
import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from skorch.callbacks import Callback

from mnist_estimators import (
    CNNClassifier,
    MLPClassifier,
    SoftmaxRegressionClassifier,
    TrainingDivergedError,
    load_mnist,
    tracking,
)
from mnist_estimators.estimators import load_model
from mnist_estimators.tracking import TrackingError

from conftest import X_TEST, X_TRAIN, Y_TEST, Y_TRAIN, write_idx

pytestmark = pytest.mark.tracking
FAST = dict(max_epochs=2, batch_size=32, random_state=0)


@pytest.fixture(scope="session")
def store_uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def store(store_uri, request, monkeypatch):
    """The session's sqlite store, and an experiment of this test's own."""
    mlflow.set_tracking_uri(store_uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", request.node.name[:200])
    return mlflow.MlflowClient(store_uri)


def _runs(client, experiment_name=None):
    exp = client.get_experiment_by_name(experiment_name or mlflow.environment_variables.MLFLOW_EXPERIMENT_NAME.get())
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)


def _fit(cls=MLPClassifier, X=X_TRAIN, y=Y_TRAIN, **params):
    est = cls(**{**FAST, **params}).fit(X, y)
    tracking.flush()
    return est


# --------------------------------------------------------------------------- one fit


def test_a_bare_fit_logs_params_metrics_tags_dataset_figures_and_model(store, tmp_path):
    folder = tmp_path / "digits"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", X_TRAIN.reshape(-1, 28, 28))
    write_idx(folder / "train-labels-idx1-ubyte.gz", Y_TRAIN)
    X, y = load_mnist("train", data_home=folder)
    est = _fit(MLPClassifier, X, y, max_epochs=3, optimizer__momentum=0.0, optimizer="sgd", lr=0.05,
               module__dropout=0.2)
    run = store.get_run(est.last_run_id_)
    assert run.info.status == "FINISHED"
    assert mlflow.get_experiment(run.info.experiment_id).name.startswith("test_a_bare_fit")
    p = run.data.params
    assert p["lr"] == "0.05" and p["optimizer"] == "sgd" and p["hidden_sizes"] == "(256, 128)"
    assert p["optimizer__momentum"] == "0.0" and p["module__dropout"] == "0.2"
    # the net's internal settings are kept apart, in one tag
    assert "callbacks__lr_scheduler__T_max" not in p
    assert json.loads(run.data.tags["mnist_estimators.internal_params"])["callbacks__lr_scheduler__T_max"] == "3"
    assert p["data.shape"] == "(400, 784)" and p["data.source"] == "folder"
    assert not {"verbose", "callbacks__print_log__sink", "tracking"} & set(p)
    # per-epoch metrics under "epoch/", step = epoch; one-value results under "summary/"
    for key in ("train_loss", "valid_loss", "valid_acc", "lr", "time_s"):
        history = store.get_metric_history(run.info.run_id, f"epoch/{key}")
        assert [m.step for m in history] == [1, 2, 3], key
    np.testing.assert_allclose([m.value for m in store.get_metric_history(run.info.run_id, "epoch/valid_acc")],
                               est.history_[:, "valid_acc"])
    lrs = [m.value for m in store.get_metric_history(run.info.run_id, "epoch/lr")]
    assert lrs[0] > lrs[-1]  # cosine schedule, visible per epoch
    m = run.data.metrics
    assert m["summary/final_valid_acc"] == pytest.approx(est.history_[-1, "valid_acc"])
    assert m["summary/n_epochs"] == 3 and m["summary/fit_time_s"] > 0
    assert {k.split("/")[0] for k in m} == {"epoch", "summary"}
    # tags
    t = run.data.tags
    assert t["estimator_class"] == "MLPClassifier" and t["mnist_estimators.version"] == "0.1.0"
    assert t["model_kind"] == "estimator" and len(t.get("git_commit", "x" * 40)) == 40
    # dataset
    (ds,) = run.inputs.dataset_inputs
    assert ds.dataset.name == "mnist-train" and ds.dataset.digest == t["data.digest"]
    assert str(folder.resolve()) in ds.dataset.source
    # figures
    figures = {a.path for a in store.list_artifacts(run.info.run_id, "figures")}
    assert figures == {"figures/confusion_matrix.png", "figures/misclassified.png",
                       "figures/reliability_diagram.png"}
    assert 0 <= m["summary/valid_ece"] <= 1 and "ECE" in t["mlflow.note.content"]
    # the model, named by what it is, with its params and its results on its dataset
    assert est.last_model_uri_ == t["model_uri"] and t["model_uri"].startswith("models:/m-")
    logged = store.get_logged_model(t["model_uri"].split("/")[-1])
    assert logged.name == "mlp-256-128" and logged.status.to_int() == 2  # READY
    assert logged.source_run_id == run.info.run_id and logged.params["lr"] == "0.05"
    linked = {x.key: x for x in logged.metrics}
    assert linked["summary/best_valid_acc"].value == pytest.approx(m["summary/best_valid_acc"])
    assert linked["summary/best_valid_acc"].dataset_digest == t["data.digest"]
    assert [o.model_id for o in run.outputs.model_outputs] == [logged.model_id]
    assert logged.tags["mlflow.note.content"] == t["mlflow.note.content"]  # the run's description
    # same predictions for raw uint8 images, by its URI or by the run and its name
    model = mlflow.pyfunc.load_model(est.last_model_uri_)
    np.testing.assert_array_equal(model.predict(X_TEST), est.predict(X_TEST))
    assert model.metadata.get_input_schema().inputs[0].type == np.dtype("uint8")
    by_run = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/mlp-256-128")
    np.testing.assert_array_equal(by_run.predict(X_TEST[:5]), est.predict(X_TEST[:5]))


def test_a_pipeline_is_logged_whole(store):
    pipe = make_pipeline(FunctionTransformer(lambda X: X / 255.0), StandardScaler(),
                         SoftmaxRegressionClassifier(**FAST))
    pipe.fit(X_TRAIN, Y_TRAIN)
    tracking.flush()
    run = store.get_run(pipe[-1].last_run_id_)
    assert run.data.tags["model_kind"] == "pipeline"
    assert run.data.params["pipeline.steps"].startswith("functiontransformer:FunctionTransformer")
    assert run.data.params["data.dtype"] == "uint8"  # the raw input, not the scaled one
    model = mlflow.pyfunc.load_model(run.data.tags["model_uri"])
    np.testing.assert_array_equal(model.predict(X_TEST), pipe.predict(X_TEST))


def test_figures_all_adds_weight_histograms_and_embedding(store):
    est = _fit(CNNClassifier, tracking_options={"figures": "all", "log_model": False})
    figures = {a.path for a in store.list_artifacts(est.last_run_id_, "figures")}
    assert {"figures/weight_histograms.png", "figures/embedding.png",
            "figures/learning_curves.png"} <= figures
    assert "model_uri" not in store.get_run(est.last_run_id_).data.tags  # log_model=False


def test_figures_that_cannot_be_drawn_leave_the_run_and_its_model_logged(store, tmp_path,
                                                                        monkeypatch):
    # t-SNE refuses 4 points (perplexity 5): a real drawing failure. It must not be taken for
    # a store failure, which sends the model to the outbox.
    monkeypatch.chdir(tmp_path)
    with pytest.warns(tracking.TrackingWarning, match="its figures could not be drawn .*perplexity"):
        est = _fit(MLPClassifier, X=X_TRAIN[:40], y=Y_TRAIN[:40], validation_fraction=0.1,
                   tracking_options={"figures": "all", "embedding": "tsne"})
    run = store.get_run(est.last_run_id_)
    assert run.info.status == "FINISHED" and run.data.tags["model_uri"].startswith("models:/")
    assert "mnist_estimators.model_kept_locally" not in run.data.tags
    assert not (tmp_path / "models").exists()


def test_validation_predictions_that_fail_leave_the_run_finished(store, monkeypatch):
    from mnist_estimators.tracking import callbacks

    def broken(*args, **kwargs):
        raise ValueError("proba must be finite")

    monkeypatch.setattr(callbacks, "expected_calibration_error", broken)
    with pytest.warns(tracking.TrackingWarning, match="validation predictions could not be made "
                                                      r"\(ValueError: proba must be finite\)"):
        est = _fit(MLPClassifier, tracking_options={"log_model": False})
    run = store.get_run(est.last_run_id_)
    assert run.info.status == "FINISHED" and "summary/valid_ece" not in run.data.metrics
    assert "summary/final_valid_acc" in run.data.metrics
    assert not store.list_artifacts(est.last_run_id_, "figures")  # no validation figures


class ValidSpy(Callback):
    """Keeps the validation dataset skorch hands the callbacks."""

    def on_epoch_end(self, net, dataset_valid=None, **kwargs):
        self.valid_ = dataset_valid


def test_valid_ece_comes_from_the_one_validation_predict_of_the_figures(store, monkeypatch):
    # The ECE and the figures share the end's single predict_proba of the validation split;
    # with figures off (a search's folds) neither is made, and nothing more is predicted
    # (the per-epoch validation accuracy predicts too: counted against the fit without figures).
    from mnist_estimators.calibration import expected_calibration_error

    calls = []
    original = MLPClassifier.predict_proba
    monkeypatch.setattr(MLPClassifier, "predict_proba",
                        lambda self, X: calls.append(1) or original(self, X))
    counts, runs = {}, {}
    spy = ValidSpy()
    for figures in ("none", "basic"):
        calls.clear()
        est = _fit(MLPClassifier, callbacks=[("spy", spy)],  # no model: its signature predicts
                   tracking_options={"figures": figures, "log_model": False})
        counts[figures], runs[figures] = len(calls), store.get_run(est.last_run_id_)
    assert counts["basic"] == counts["none"] + 1
    assert "summary/valid_ece" not in runs["none"].data.metrics
    assert not store.list_artifacts(runs["none"].info.run_id, "figures")
    proba = original(est, spy.valid_)
    expected = expected_calibration_error(spy.valid_.y.numpy(), proba)
    assert runs["basic"].data.metrics["summary/valid_ece"] == pytest.approx(expected)
    paths = {a.path for a in store.list_artifacts(runs["basic"].info.run_id, "figures")}
    assert "figures/reliability_diagram.png" in paths


class SeenInStore(Callback):
    """Records, as epoch 3 begins, which epochs another client already sees in the store."""

    def __init__(self, client):
        self.client = client

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) == 3:
            run_id = _running_run(self.client)
            self.seen_ = [m.step for m in self.client.get_metric_history(run_id, "epoch/train_loss")]


def _running_run(client):
    exp = client.get_experiment_by_name(os.environ["MLFLOW_EXPERIMENT_NAME"])
    (run,) = client.search_runs([exp.experiment_id], filter_string="attributes.status = 'RUNNING'")
    return run.info.run_id


@pytest.mark.parametrize("every_s, seen", [(0.0, [1, 2]), (3600.0, [])])
def test_epoch_metrics_are_sent_live_or_batched(store, monkeypatch, every_s, seen):
    # An epoch longer than FLUSH_EVERY_S is in the store as soon as it ends (a long fit is
    # followed live in the UI); shorter ones wait and share one batch. Either way the run is
    # whole when fit returns.
    from mnist_estimators.tracking import run as run_module

    monkeypatch.setattr(run_module, "FLUSH_EVERY_S", every_s)
    spy = SeenInStore(store)
    est = _fit(MLPClassifier, max_epochs=3, callbacks=[("spy", spy)])
    assert spy.seen_ == seen
    steps = [m.step for m in store.get_metric_history(est.last_run_id_, "epoch/train_loss")]
    assert steps == [1, 2, 3]


def test_fitted_estimator_keeps_no_run_or_data(store):
    import pickle

    est = _fit()
    size = len(pickle.dumps(est))
    untracked = MLPClassifier(**FAST, tracking=False).fit(X_TRAIN, Y_TRAIN)
    assert abs(size - len(pickle.dumps(untracked))) < 50_000  # no dataset or client inside
    assert not hasattr(est, "tracker_")


# --------------------------------------------------------------------------- runs and nesting


def test_a_fit_inside_a_user_run_is_its_child_and_leaves_it_open(store):
    with mlflow.start_run(run_name="mine") as parent:
        est = _fit()
        assert mlflow.active_run().info.run_id == parent.info.run_id
    child = store.get_run(est.last_run_id_)
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert store.get_run(parent.info.run_id).info.status == "FINISHED"  # ended by the user


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_grid_search_parent_with_a_child_per_fit_and_the_refit(store, n_jobs):
    grid = GridSearchCV(MLPClassifier(**FAST, hidden_sizes=(32,)),
                        {"optimizer": ["adam", "sgd"], "lr": [1e-3, 1e-2]}, cv=2, n_jobs=n_jobs)
    with tracking.parent_run(f"grid-{n_jobs}") as parent:
        grid.fit(X_TRAIN, Y_TRAIN)
        parent.log_search(grid, X_TRAIN)
    runs = _runs(store)
    parent_run = store.get_run(parent.run_id)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.run_id]
    assert len(children) == 4 * 2 + 1  # candidates x folds + refit
    assert all(r.info.status == "FINISHED" for r in children + [parent_run])
    assert {r.data.params["optimizer"] for r in children} == {"adam", "sgd"}
    assert all(r.data.metrics["summary/n_epochs"] == 2 for r in children)
    assert parent_run.data.params["best.optimizer"] == grid.best_params_["optimizer"]
    assert parent_run.data.metrics["best_cv_score"] == pytest.approx(grid.best_score_)
    assert {a.path for a in store.list_artifacts(parent.run_id)} >= {"cv_results.csv", "cv_results.json"}
    model = mlflow.pyfunc.load_model(parent_run.data.tags["model_uri"])
    np.testing.assert_array_equal(model.predict(X_TEST), grid.predict(X_TEST))
    # one model for the search: the refit's, with its params, metrics and dataset, linked to
    # the parent as an output (not a second, empty copy of it logged on the parent)
    (logged,) = store.search_logged_models([parent_run.info.experiment_id])
    (refit,) = [r for r in children if r.data.tags.get("search.refit") == "true"]
    assert logged.source_run_id == refit.info.run_id
    assert parent_run.data.tags["model_uri"] == f"models:/{logged.model_id}"
    assert logged.params["optimizer"] == grid.best_params_["optimizer"]
    assert {m.key for m in logged.metrics} >= {"summary/best_valid_acc"}
    assert all(m.dataset_digest for m in logged.metrics)
    assert logged.model_id in {o.model_id for o in parent_run.outputs.model_outputs}


def test_a_tracked_fit_keeps_no_reference_to_its_callers_data(store):
    # The run reads the call stack (search position, enclosing pipeline). Reading a frame's
    # f_locals stores a snapshot on it; on loky's worker loop that kept the last task's X
    # alive, so joblib could not delete its memmap and slept ~1 s after each parallel search.
    import weakref

    def caller():
        X = X_TRAIN.astype(np.float32)
        ref = weakref.ref(X)
        pipe = make_pipeline(FunctionTransformer(), MLPClassifier(**FAST)).fit(X, Y_TRAIN)
        del X
        return ref() is None, pipe[-1].last_run_id_

    freed, run_id = caller()
    assert store.get_run(run_id).data.tags["model_kind"] == "pipeline"  # the stack was read
    assert freed


def test_cross_validate_with_two_workers_under_one_parent(store):
    with tracking.parent_run("cv") as parent:
        res = cross_validate(make_pipeline(StandardScaler(), SoftmaxRegressionClassifier(**FAST)),
                             X_TRAIN, Y_TRAIN, cv=3, n_jobs=2)
        parent.log_cv(res)
    children = [r for r in _runs(store) if r.data.tags.get("mlflow.parentRunId") == parent.run_id]
    assert len(children) == 3 and all(r.data.tags["model_kind"] == "pipeline" for r in children)
    assert store.get_run(parent.run_id).data.metrics["test_score_mean"] == pytest.approx(res["test_score"].mean())


def test_run_status_failed_and_killed_reraise(store):
    with pytest.raises(TrainingDivergedError):
        MLPClassifier(**FAST, optimizer="sgd", lr=1e10).fit(X_TRAIN, Y_TRAIN)

    class CtrlC(Callback):
        def on_epoch_end(self, net, **kwargs):
            raise KeyboardInterrupt  # what a user's Ctrl-C raises mid-training

    with pytest.raises(KeyboardInterrupt):
        MLPClassifier(**FAST, callbacks=[CtrlC()]).fit(X_TRAIN, Y_TRAIN)
    statuses = sorted((r.data.tags["estimator_class"], r.info.status) for r in _runs(store))
    assert statuses == [("MLPClassifier", "FAILED"), ("MLPClassifier", "KILLED")]
    failed = [r for r in _runs(store) if r.info.status == "FAILED"][0]
    assert "TrainingDivergedError" in failed.data.tags["error"]


def test_a_fit_that_raises_before_its_first_epoch_leaves_a_failed_run(store):
    class Broken(Callback):
        def on_epoch_begin(self, net, **kwargs):
            raise RuntimeError("broken before the first epoch")

    with pytest.raises(RuntimeError, match="broken before the first epoch"):
        MLPClassifier(**FAST, callbacks=[("broken", Broken())]).fit(X_TRAIN, Y_TRAIN)
    (run,) = _runs(store)
    assert run.info.status == "FAILED" and run.info.end_time is not None
    assert "RuntimeError: broken before the first epoch" in run.data.tags["error"]
    assert run.data.params["max_epochs"] == "2" and run.inputs.dataset_inputs


def test_early_stopping_is_not_a_kill(store):
    est = _fit(MLPClassifier, early_stopping=True, patience=1, max_epochs=40, lr=0.02,
               lr_schedule=None, dropout=0.0)
    assert len(est.history_) < 40
    assert store.get_run(est.last_run_id_).info.status == "FINISHED"


# --------------------------------------------------------------------------- switches and stores


def test_tracking_off_makes_no_mlflow_call(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    est = MLPClassifier(**FAST, tracking=False).fit(X_TRAIN, Y_TRAIN)
    tracking.set_tracking(False)
    MLPClassifier(**FAST).fit(X_TRAIN, Y_TRAIN)
    tracking.set_tracking(None)
    monkeypatch.setenv("MNIST_ESTIMATORS_TRACKING", "0")
    MLPClassifier(**FAST).fit(X_TRAIN, Y_TRAIN)
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()
    assert not hasattr(est, "last_run_id_") and "mlflow" not in dict(est.callbacks_)


def test_default_store_is_mlruns_sqlite_with_artifacts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(None)
    est = _fit(SoftmaxRegressionClassifier)
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    run = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db").get_run(est.last_run_id_)
    assert mlflow.get_experiment(run.info.experiment_id).name == "mnist-estimators"
    assert run.info.artifact_uri.startswith((tmp_path / "mlruns" / "artifacts").as_uri())
    assert any((tmp_path / "mlruns" / "artifacts").rglob("confusion_matrix.png"))


def test_bad_tracking_options_are_named(store):
    with pytest.raises(ValueError, match=r"Unknown key\(s\) \['colour'\] in MLPClassifier.tracking_options"):
        MLPClassifier(tracking_options={"colour": 1}).fit(X_TRAIN, Y_TRAIN)
    with pytest.raises(ValueError, match=r"'figures'\] must be 'auto', 'none', 'basic' or 'all'"):
        MLPClassifier(tracking_options={"figures": "some"}).fit(X_TRAIN, Y_TRAIN)


def test_a_tracking_uri_where_nothing_listens_is_tried_once_and_keeps_the_model(tmp_path, dead_port):
    # MLflow's own defaults (7 retries with backoff, minutes) are left as a user has them.
    import warnings

    from conftest import CountingProxy

    mlflow.set_tracking_uri(f"http://127.0.0.1:{dead_port}")
    fallback = tmp_path / "kept"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = MLPClassifier(**FAST, tracking_options={"fallback_dir": str(fallback)}).fit(X_TRAIN, Y_TRAIN)
    ours = [w for w in caught if issubclass(w.category, tracking.TrackingWarning)]
    assert len(ours) == 1, [str(w.message) for w in caught]  # one line, not one per call
    assert "is not reachable" in str(ours[0].message) and str(fallback) in str(ours[0].message)
    assert est.score(X_TEST, Y_TEST) > 0.3  # trained all the same
    (saved,) = fallback.glob("MLPClassifier-*.pkl")
    np.testing.assert_array_equal(load_model(saved).predict(X_TEST), est.predict(X_TEST))
    (record,) = tracking.pending(fallback)
    assert record[1]["status"] == "FINISHED" and record[1]["params"]["lr"] == "0.001"
    assert [m[0] for m in record[1]["metrics"]].count("epoch/train_loss") == 2  # both epochs kept
    with pytest.raises(TrackingError, match="opening the store"):
        MLPClassifier(**FAST, tracking_options={"on_error": "raise"}).fit(X_TRAIN, Y_TRAIN)
    # Tried once, whatever the fit logs: seen through a proxy that counts what it could not
    # deliver to the dead port (answered 502, which MLflow's client retries by default).
    with CountingProxy(f"127.0.0.1:{dead_port}") as proxy:
        mlflow.set_tracking_uri(proxy.url)
        with pytest.warns(tracking.TrackingWarning, match=r"not reachable \(Bad Gateway\)"):
            MLPClassifier(**FAST, tracking_options={"fallback_dir": str(fallback)}).fit(X_TRAIN, Y_TRAIN)
    assert (proxy.failed, proxy.delivered) == (1, 0), proxy.failed_requests
    assert len(tracking.pending(fallback)) == 2


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_search_against_a_dead_server_tries_it_once_and_keeps_its_fits(tmp_path, dead_port,
                                                                          n_jobs):
    """A search's first clone that finds the server dead is the search's verdict: its other
    clones carry it and their fits report it, in worker processes too, with no second try."""
    from conftest import CountingProxy

    fallback = tmp_path / "kept"
    options = {"fallback_dir": str(fallback)}
    grid = GridSearchCV(MLPClassifier(**FAST, tracking_options=options),
                        {"lr": [1e-3, 3e-3]}, cv=2, n_jobs=n_jobs)
    with CountingProxy(f"127.0.0.1:{dead_port}") as proxy:
        mlflow.set_tracking_uri(proxy.url)
        with pytest.warns(tracking.TrackingWarning) as caught:
            grid.fit(X_TRAIN, Y_TRAIN)
        # once for the search (its first clone), where it was once per clone and once per fit
        assert proxy.failed_requests == ["GET /health"]
        said = [str(w.message) for w in caught if issubclass(w.category, tracking.TrackingWarning)]
        if n_jobs == 1:  # worker processes' warnings stay in the workers
            assert len(said) == 5 and all("not reachable" in m for m in said), said  # 4 folds + refit
        assert grid.best_score_ > 0.3  # trained all the same
        # the refit's model is kept (folds log no model), with its record
        assert [r["status"] for _, r in tracking.pending(fallback)] == ["FINISHED"]
        # The verdict was the search's: a later fit of its model tries the store again.
        with pytest.warns(tracking.TrackingWarning, match="not reachable"):
            grid.best_estimator_.fit(X_TRAIN, Y_TRAIN)
        assert proxy.failed == 2
        # ... and a cross-validation tries it once too (``cross_validate`` as the package finds
        # it; this module's name was bound before the package was imported, so it is not
        # wrapped and its folds would be checked once each)
        import sklearn.model_selection

        with pytest.warns(tracking.TrackingWarning) if n_jobs == 1 else contextlib.nullcontext():
            sklearn.model_selection.cross_validate(
                MLPClassifier(**FAST, tracking_options=options), X_TRAIN, Y_TRAIN, cv=3,
                n_jobs=n_jobs)
        assert proxy.failed == 3, proxy.failed_requests


def test_a_searchs_verdict_of_a_dead_server_holds_for_a_minute_only(tmp_path, dead_port,
                                                                      monkeypatch):
    """A verdict older than ``VERDICT_S`` is not trusted: each clone and each fit checks the
    server again, as before verdicts were shared (a server back within the search is used)."""
    from conftest import CountingProxy
    from mnist_estimators.tracking import context

    monkeypatch.setattr(context, "VERDICT_S", 0.0)  # every verdict is already too old
    grid = GridSearchCV(MLPClassifier(**FAST, tracking_options={"fallback_dir": str(tmp_path)}),
                        {"lr": [1e-3, 3e-3]}, cv=2)
    with CountingProxy(f"127.0.0.1:{dead_port}") as proxy:
        mlflow.set_tracking_uri(proxy.url)
        with pytest.warns(tracking.TrackingWarning):
            grid.fit(X_TRAIN, Y_TRAIN)
    # the base estimator's clone, then each of the 4 folds and the refit at its clone and its fit
    assert proxy.failed == 11, proxy.failed_requests


def test_a_server_that_never_answers_is_waited_for_once(tmp_path):
    """A server that accepts connections and never answers (hung, or a firewall's black hole)
    is connected to once per fit: the fit's check times out, and the fit falls back."""
    import threading

    accepted = []
    listener = socket.create_server(("127.0.0.1", 0))

    def accept():
        while True:
            try:
                accepted.append(listener.accept()[0])  # kept open, never answered
            except OSError:  # closed: the test is over
                return

    threading.Thread(target=accept, daemon=True).start()
    mlflow.set_tracking_uri(f"http://127.0.0.1:{listener.getsockname()[1]}")
    try:
        with pytest.warns(tracking.TrackingWarning, match="is not reachable"):
            est = MLPClassifier(**FAST, tracking_options={"fallback_dir": str(tmp_path)}).fit(
                X_TRAIN, Y_TRAIN)
    finally:
        with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        for conn in accepted:
            conn.close()
    assert len(accepted) == 1
    assert len(tracking.pending(tmp_path)) == 1 and est.score(X_TEST, Y_TEST) > 0.3


def test_switching_off_reaches_worker_processes(store):
    tracking.set_tracking(False)
    grid = GridSearchCV(SoftmaxRegressionClassifier(**FAST), {"lr": [1e-3, 1e-2]}, cv=2, n_jobs=2)
    grid.fit(X_TRAIN, Y_TRAIN)
    tracking.set_tracking(None)
    assert _runs(store) == []


def test_autolog_gives_searches_a_parent_run(store):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RandomizedSearchCV
    from sklearn.model_selection._search import BaseSearchCV

    original = BaseSearchCV.fit
    tracking.autolog()
    try:
        search = RandomizedSearchCV(make_pipeline(StandardScaler(), SoftmaxRegressionClassifier(**FAST)),
                                    {"softmaxregressionclassifier__lr": [1e-3, 1e-2, 3e-2]},
                                    n_iter=2, cv=2, random_state=0, n_jobs=2)
        search.fit(X_TRAIN, Y_TRAIN)
        tracking.flush()
        other = GridSearchCV(LogisticRegression(max_iter=50), {"C": [1.0]}, cv=2).fit(X_TRAIN[:100], Y_TRAIN[:100])
    finally:
        tracking.autolog(False)
    runs = _runs(store)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.run_name == \
        "RandomizedSearchCV · standardscaler → softmax · 2 candidates × 2 folds"
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_cv_score"] == pytest.approx(search.best_score_)
    assert len([r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]) == 2 * 2 + 1
    assert other.best_score_ >= 0 and len(runs) == 6  # the LogisticRegression search logged nothing
    model = mlflow.pyfunc.load_model(parent.data.tags["model_uri"])
    np.testing.assert_array_equal(model.predict(X_TEST), search.predict(X_TEST))
    assert BaseSearchCV.fit is original  # undone


def test_cli_train_logs_a_run_and_says_where(tmp_path, monkeypatch, capsys):
    from mnist_estimators.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(None)
    folder = tmp_path / "digits"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", X_TRAIN.reshape(-1, 28, 28))
    write_idx(folder / "train-labels-idx1-ubyte.gz", Y_TRAIN)
    assert main(["train", "--model", "softmax", "--data-home", str(folder), "-o", "m.pkl", "-q",
                 "--param", "max_epochs=2"]) == 0
    out = capsys.readouterr().out
    assert f"runs logged to sqlite:///{tmp_path}/mlruns/mlflow.db" in out
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("mnist-estimators").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["data.source"] == "folder"


# --------------------------------------------------------------------------- bad stores


def _one_tracking_warning(caught):
    ours = [str(w.message) for w in caught if issubclass(w.category, tracking.TrackingWarning)]
    assert len(ours) == 1, ours
    return ours[0]


@pytest.mark.parametrize("where", ["mlruns is a file", "/proc"])
def test_a_store_that_cannot_be_written_is_named_and_the_model_kept(tmp_path, monkeypatch, where):
    import warnings

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    if where == "/proc":  # not writable, even for root
        mlflow.set_tracking_uri("sqlite:////proc/mnist-estimators/mlflow.db")
        named = "/proc/mnist-estimators"
    else:
        mlflow.set_tracking_uri(None)
        (tmp_path / "mlruns").write_text("not a folder")
        named = str(tmp_path / "mlruns")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = MLPClassifier(**FAST).fit(X_TRAIN, Y_TRAIN)
    message = _one_tracking_warning(caught)
    assert named in message and "models/unlogged" in message
    (saved,) = (tmp_path / "models" / "unlogged").glob("*.pkl")
    np.testing.assert_array_equal(load_model(saved).predict(X_TEST), est.predict(X_TEST))
    with pytest.raises(TrackingError, match=named):
        MLPClassifier(**FAST, tracking_options={"on_error": "raise"}).fit(X_TRAIN, Y_TRAIN)


def test_a_corrupt_store_is_named_and_never_overwritten(tmp_path, monkeypatch):
    import warnings

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(None)
    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    junk = b"these bytes are not a database\n" * 100
    db.write_bytes(junk)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = MLPClassifier(**FAST).fit(X_TRAIN, Y_TRAIN)
    message = _one_tracking_warning(caught)
    assert f"{db} is not an SQLite database" in message and "left untouched" in message
    assert db.read_bytes() == junk
    assert est.score(X_TEST, Y_TEST) > 0.3 and len(list((tmp_path / "models/unlogged").glob("*.pkl"))) == 1
    # the user moves the junk aside: the next fit creates the store and uploads the kept model
    db.rename(tmp_path / "junk.db")
    second = MLPClassifier(**FAST).fit(X_TRAIN, Y_TRAIN)
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("mnist-estimators").experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert {r.info.run_id for r in runs} > {second.last_run_id_}
    assert list((tmp_path / "models/unlogged").iterdir()) == []


@pytest.fixture
def small_disk(tmp_path):
    """A real 32 MB filesystem (tmpfs), so that the disk can really fill; skipped where this
    process may not mount one."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32M", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_disk_that_fills_mid_fit_keeps_the_model_in_memory_and_says_so(small_disk, monkeypatch):
    import warnings


    monkeypatch.chdir(small_disk)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(None)
    MLPClassifier(**FAST, hidden_sizes=(16,)).fit(X_TRAIN, Y_TRAIN)  # the store exists, and works

    class FillTheDisk(Callback):
        def on_epoch_end(self, net, **kwargs):
            if len(net.history) == 1:
                try:
                    with open(small_disk / "filler", "wb") as f:
                        while True:
                            f.write(b"\0" * (1 << 16))
                            f.flush()
                except OSError:  # full: what this callback is for
                    pass

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = MLPClassifier(**{**FAST, "max_epochs": 3}, hidden_sizes=(16,), lr=0.01,
                            callbacks=[FillTheDisk()]).fit(X_TRAIN, Y_TRAIN)
    message = _one_tracking_warning(caught)
    assert "only in memory" in message and ("No space left" in message or "full" in message)
    assert len(est.history_) == 3 and est.score(X_TEST, Y_TEST) > 0.3  # trained, and here
    assert not list((small_disk / "models").rglob("*.pkl"))  # nothing half-written left
    (small_disk / "filler").unlink()
    # the next fit, with room again, ends the run that could not be ended: FAILED, saying why
    MLPClassifier(**FAST, hidden_sizes=(16,), tracking_options={"log_model": False}).fit(X_TRAIN, Y_TRAIN)
    run = mlflow.MlflowClient(f"sqlite:///{small_disk}/mlruns/mlflow.db").get_run(est.last_run_id_)
    assert run.info.status == "FAILED" and "the fitted model was not logged" in run.data.tags["error"]
    # with room again, the user saves the model from memory
    from mnist_estimators.persistence import save_model

    np.testing.assert_array_equal(load_model(save_model(est, small_disk / "m.pkl")).predict(X_TEST),
                                  est.predict(X_TEST))


def test_runs_upload_logs_models_kept_while_the_store_was_down(tmp_path, monkeypatch, capsys,
                                                                  dead_port):
    from mnist_estimators.cli import main

    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"http://127.0.0.1:{dead_port}")
    with pytest.warns(tracking.TrackingWarning, match="runs upload"):
        est = MLPClassifier(**FAST).fit(X_TRAIN, Y_TRAIN)
    assert len(tracking.pending("models/unlogged")) == 1
    store_uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    assert main(["runs", "upload", "models/unlogged", "--tracking-uri", store_uri]) == 0
    out = capsys.readouterr().out
    assert "1 uploaded, 0 left in models/unlogged" in out
    client = mlflow.MlflowClient(store_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("mnist-estimators").experiment_id])
    assert f"uploaded run {run.info.run_id}" in out
    assert run.info.status == "FINISHED" and run.data.params["lr"] == "0.001"
    assert run.data.tags["mlflow.runName"].startswith("mlp 256-128")
    assert [m.step for m in client.get_metric_history(run.info.run_id, "epoch/valid_acc")] == [1, 2]
    mlflow.set_tracking_uri(store_uri)
    model = mlflow.pyfunc.load_model(run.data.tags["model_uri"])
    np.testing.assert_array_equal(model.predict(X_TEST), est.predict(X_TEST))
    assert list((tmp_path / "models" / "unlogged").iterdir()) == []
    assert main(["runs", "upload", "nowhere"]) == 2  # a clear error, not a traceback
    assert "nowhere is not a folder" in capsys.readouterr().err


def test_system_metrics_are_an_option(store):
    import time


    class Slow(Callback):  # a fit long enough for MLflow's sampler (one sample every 2 s)
        def on_epoch_end(self, net, **kwargs):
            time.sleep(2.5)

    est = _fit(MLPClassifier, callbacks=[Slow()], tracking_options={"system_metrics": True})
    run = store.get_run(est.last_run_id_)
    assert run.info.status == "FINISHED"
    assert any(k.startswith("system/cpu_utilization") for k in run.data.metrics), run.data.metrics
    plain = store.get_run(_fit(MLPClassifier).last_run_id_)
    assert not any(k.startswith("system/") for k in plain.data.metrics)
    # a fit shorter than the sampling interval still shows what it sampled (MLflow itself
    # logged nothing then: "System metrics (0)" in the UI, with no word)
    short = _fit(MLPClassifier, tracking_options={"system_metrics": True})
    run = store.get_run(short.last_run_id_)
    assert run.info.status == "FINISHED"
    assert any(k.startswith("system/cpu_utilization") for k in run.data.metrics), run.data.metrics


FORK_POOL = """
import json, multiprocessing, sys
sys.path.insert(0, {tests!r})
from conftest import X_TRAIN, Y_TRAIN
from mnist_estimators import MLPClassifier, tracking

def fit(seed):
    return MLPClassifier(max_epochs=2, batch_size=32, hidden_sizes=(16,), random_state=seed).fit(
        X_TRAIN, Y_TRAIN).last_run_id_

if __name__ == "__main__":
    tracking.open_store(*tracking.resolve_uri())  # open before the fork: connections inherited
    with multiprocessing.get_context("fork").Pool(2) as pool:
        print(json.dumps(pool.map(fit, range(4))))
"""


@pytest.mark.timeout(180)
def test_fits_in_a_forked_pool_are_complete_when_the_pool_exits(tmp_path):
    # In a fresh process: torch's thread pool does not survive a fork once used (a forked child
    # then hangs in its first parallel op, tracked or not), and this pytest process has trained.
    import json
    import os
    import subprocess
    import sys

    script = tmp_path / "pool.py"
    script.write_text(FORK_POOL.format(tests=os.path.dirname(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr
    ids = json.loads(proc.stdout.strip().splitlines()[-1])
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = [client.get_run(run_id) for run_id in ids]  # read right after the pool exited
    assert [r.info.status for r in runs] == ["FINISHED"] * 4
    assert all("model_uri" in r.data.tags for r in runs)


def test_a_logged_model_loads_where_the_package_is_not_installed(store, tmp_path):
    import subprocess
    import sys

    est = _fit(MLPClassifier, hidden_sizes=(16,))
    np.save(tmp_path / "x.npy", X_TEST[:20])
    script = tmp_path / "load.py"
    script.write_text(
        "import sys\n"
        "# the package as a user without it has it: its editable-install finder taken away\n"
        "sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
        "import numpy as np, mlflow.pyfunc\n"
        f"mlflow.set_tracking_uri({mlflow.get_tracking_uri()!r})\n"
        f"model = mlflow.pyfunc.load_model({est.last_model_uri_!r})\n"
        "import mnist_estimators\n"
        "print(mnist_estimators.__file__)\n"
        f"print(' '.join(map(str, model.predict(np.load({str(tmp_path / 'x.npy')!r})))))\n")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    where, predicted = done.stdout.strip().splitlines()[-2:]
    assert "/code/mnist_estimators/" in where  # the copy the model carries
    assert predicted.split() == [str(v) for v in est.predict(X_TEST[:20])]
    code = Path(where).parent
    assert (code / "training" / "__init__.py").is_file() and not (code / "pipelines").exists()


def test_a_run_whose_model_waits_locally_is_not_reaped_as_killed(tmp_path, capsys):
    # A fit that ended while its store was failing kept its model in the outbox; its run is
    # still RUNNING in the store, and its process has exited. The reaper leaves it to the
    # upload, which ends it FINISHED; a run of a dead process with nothing kept is KILLED.
    import subprocess
    import sys

    from mnist_estimators.tracking import outbox
    from mnist_estimators.tracking import store as store_module

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = store_module.open_store(uri, (tmp_path / "artifacts").as_uri())
    exp_id = store_module.experiment_id(client, "reaping", (tmp_path / "artifacts").as_uri())
    tags = {**store_module.process_tags(), store_module.PID_TAG: str(dead)}
    tags.pop(store_module.START_TAG, None)
    kept, lost = (store_module.create_run(client, exp_id, {**tags, "which": w}).info.run_id
                  for w in ("kept", "lost"))
    model = MLPClassifier(**FAST, tracking=False).fit(X_TRAIN, Y_TRAIN)
    folder = tmp_path / "unlogged"
    outbox.save_fallback(model, {"run_id": kept, "tracking_uri": uri, "status": "FINISHED",
                                 "estimator": "MLPClassifier", "params": {}, "metrics": []},
                         folder)
    outbox.remember(folder)
    capsys.readouterr()
    assert store_module.reap(client) == [lost]
    err = capsys.readouterr().err
    assert f"marked 1 run(s) KILLED whose process had died: {lost}" in err
    assert "left 1 run(s) of finished processes RUNNING" in err and str(folder) in err
    assert kept in err and "mnist-estimators runs upload" in err
    assert client.get_run(kept).info.status == "RUNNING"
    assert client.get_run(lost).info.status == "KILLED"
    uploaded, failed = outbox.upload(folder)
    assert uploaded == [kept] and failed == {}
    assert client.get_run(kept).info.status == "FINISHED"
    assert client.get_run(kept).data.tags["model_uri"].startswith("models:/")


def test_names_say_what_a_run_and_a_model_are():
    from sklearn.decomposition import PCA
    from sklearn.ensemble import StackingClassifier, VotingClassifier
    from sklearn.pipeline import Pipeline

    from mnist_estimators.tracking import artifacts, scopes

    mlp = MLPClassifier(hidden_sizes=(256, 128))
    # a pipeline's model is named by its steps, not by its last one alone
    assert artifacts.model_name(make_pipeline(PCA(50), mlp)) == "pca-mlp-256-128"
    assert artifacts.model_name(Pipeline([("pixels", FunctionTransformer()),
                                          ("clf", CNNClassifier(channels=(16, 32)))])) \
        == "pixels-cnn-16-32"
    assert artifacts.model_name(mlp) == "mlp-256-128"
    five = VotingClassifier([(f"cnn{i}", CNNClassifier()) for i in range(5)], voting="soft")
    assert scopes.ensemble_name(five) == "VotingClassifier · cnn × 5 (soft)"
    stack = StackingClassifier([("a", mlp), ("b", make_pipeline(StandardScaler(), mlp))])
    assert scopes.ensemble_name(stack) == \
        "StackingClassifier · mlp + (standardscaler → mlp) → LogisticRegression"
    grid = GridSearchCV(make_pipeline(PCA(5), mlp), {"mlpclassifier__lr": [1e-3, 1e-2]}, cv=3)
    assert scopes.search_name(grid) == "GridSearchCV · pca → mlp"  # outside a fit: no counts


def test_one_dataset_has_one_name_on_every_run(store, tmp_path):
    # The same rows get the same name wherever they are logged: on a search's parent and in
    # its folds, on an ensemble's parent and its members fitted in worker processes (copies of
    # X, not the array the reader returned), and in cross_validate's folds; a slice says so.
    import collections

    import sklearn.model_selection
    from sklearn.ensemble import VotingClassifier

    from mnist_estimators import load_mnist

    for name, array in (("train-images-idx3-ubyte", X_TRAIN.reshape(-1, 28, 28)),
                        ("train-labels-idx1-ubyte", Y_TRAIN)):
        write_idx(tmp_path / name, array)
    X, y = load_mnist("train", data_home=tmp_path)
    X, y = X[::2], y[::2]  # a slice (a view: its base is the array the reader returned)
    tracking.autolog()
    try:
        GridSearchCV(SoftmaxRegressionClassifier(**FAST), {"lr": [1e-3, 1e-2]}, cv=2,
                     n_jobs=2).fit(X, y)
        VotingClassifier([("a", SoftmaxRegressionClassifier(**FAST)),
                          ("b", MLPClassifier(**FAST, hidden_sizes=(8,)))],
                         voting="soft", n_jobs=2).fit(X, y)
        sklearn.model_selection.cross_validate(SoftmaxRegressionClassifier(**FAST), X, y, cv=2)
    finally:
        tracking.autolog(False)
    names = collections.defaultdict(set)
    runs = _runs(store)
    for run in runs:
        for entry in run.inputs.dataset_inputs:
            names[entry.dataset.digest].add(entry.dataset.name)
    assert len(runs) == 1 + 4 + 1 + 1 + 2 + 2  # search, folds, refit; vote, members; cv folds
    assert names and all(len(v) == 1 for v in names.values()), dict(names)
    assert set().union(*names.values()) == {"mnist-subset-train"}


def test_process_alive_tells_this_hosts_processes_and_not_another_hosts():
    # what reaping and a study's workers (search._held) rely on
    import subprocess
    import sys

    from mnist_estimators.tracking import store as store_module

    mine = store_module.process_tags()
    assert store_module.process_alive(mine) is True
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)
    assert store_module.process_alive({**mine, store_module.PID_TAG: str(dead),
                                       store_module.START_TAG: "0"}) is False
    if store_module.START_TAG in mine:  # Linux: a reused pid is another process
        assert store_module.process_alive({**mine, store_module.START_TAG: "1"}) is False
    assert store_module.process_alive({**mine, store_module.HOST_TAG: "elsewhere"}) is None
    assert store_module.process_alive({store_module.HOST_TAG: mine[store_module.HOST_TAG]}) is None
    assert store_module.process_alive(None) is None
