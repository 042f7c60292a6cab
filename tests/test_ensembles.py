"""scikit-learn's voting and stacking ensembles over our estimators, tracked by ``autolog``: one
parent run per ensemble fit with a child per member fit (in loky workers too), one MLflow model
for the whole ensemble, and the ready ensemble pipelines."""

import json
import os

import mlflow
import numpy as np
import pytest
from sklearn.ensemble import StackingClassifier, VotingClassifier, _stacking, _voting
from sklearn.model_selection import GridSearchCV
from sklearn.model_selection._search import BaseSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer

from mnist_estimators import (
    MLPClassifier,
    SoftmaxRegressionClassifier,
    TrainingDivergedError,
    tracking,
)
from mnist_estimators.data import scale_pixels
from mnist_estimators.pipelines import NAMES, cnn_best, get

from conftest import X_TRAIN, Y_TRAIN, write_sample_mnist

X, Y = X_TRAIN[:300], Y_TRAIN[:300]
# scikit-learn's own methods (mnist_estimators wraps the public ones at import: see
# tracking/sklearn_autolog.py; autolog is off unless a test turns it on)
ORIGINALS = (getattr(BaseSearchCV.fit, "__wrapped__", None), _voting._BaseVoting.fit,
             _stacking._BaseStacking.fit, getattr(_stacking.cross_val_predict, "__wrapped__", None))
TINY = dict(max_epochs=1, batch_size=32, random_state=0)
tracked = pytest.mark.tracking


def members():
    # validation_fraction: the MLP draws its figures, which members keep
    return [("mlp", MLPClassifier(hidden_sizes=(16,), validation_fraction=0.2, **TINY)),
            ("softmax", SoftmaxRegressionClassifier(**TINY))]


@pytest.fixture
def store(tmp_path):
    """A fresh store of this test's own, and autolog on for the test (off after it, whatever
    happens)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    tracking.autolog()
    try:
        yield mlflow.MlflowClient(uri)
    finally:
        tracking.autolog(False)


def all_runs(client):
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, max_results=1000)


def children(runs, parent):
    return [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


def the_parent(runs):
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [(r.info.run_name, r.info.status) for r in runs]
    return parents[0]


def assert_reloads(client, parent, model, X):
    """The parent's one MLflow model gives the fitted model's predictions back."""
    uri = parent.data.tags["model_uri"]
    np.testing.assert_array_equal(mlflow.pyfunc.load_model(uri).predict(X), model.predict(X))
    # the model's description is its run's
    logged = client.get_logged_model(uri.split("/")[-1])
    assert logged.tags["mlflow.note.content"] == parent.data.tags["mlflow.note.content"]
    return uri


# --------------------------------------------------------------------------- voting


@tracked
def test_soft_voting_with_n_jobs_2_is_one_parent_with_a_child_per_member(store):
    vote = VotingClassifier(members(), voting="soft", n_jobs=2).fit(X, Y)
    runs = all_runs(store)
    parent = the_parent(runs)
    assert parent.info.run_name == "VotingClassifier · mlp + softmax (soft)"
    assert parent.info.status == "FINISHED"
    assert vote.last_run_id_ == parent.info.run_id
    kids = children(runs, parent)
    # each member by its name and what it is: "mlp-16" (named mlp), "softmax"
    assert len(runs) == 3 and sorted(r.info.run_name for r in kids) == ["mlp-16", "softmax"]
    for kid in kids:
        assert kid.info.status == "FINISHED"
        assert kid.info.run_name.startswith(kid.data.tags["ensemble.member"])
        assert "model_uri" not in kid.data.tags  # the ensemble's model holds the members
        assert kid.data.tags["mnist_estimators.pid"] != str(os.getpid())  # a loky worker
        assert "epoch/train_loss" in kid.data.metrics and "lr" in kid.data.params
    mlp = next(r for r in kids if r.info.run_name == "mlp-16")
    assert [a.path for a in store.list_artifacts(mlp.info.run_id, "figures")]
    # the parent: the ensemble's params, its members, the dataset, its counts and one model
    p = parent.data.params
    assert p["ensemble.voting"] == "soft" and p["ensemble.weights"] == "None"
    assert p["ensemble.members"] == "mlp:MLPClassifier, softmax:SoftmaxRegressionClassifier"
    assert parent.data.metrics["n_members"] == 2 and parent.data.metrics["tracking/n_fits_logged"] == 2
    assert parent.inputs.dataset_inputs
    uri = assert_reloads(store, parent, vote, X)
    logged = store.get_logged_model(uri.split("/")[-1])
    assert logged.name == "voting-2"
    # how good it is: on the data it was fitted on (said so), and its members' validation
    m = parent.data.metrics
    assert m["training_accuracy_score"] == pytest.approx(vote.score(X, Y))
    best = [max(est.history_[:, "valid_acc"]) for est in vote.estimators_]
    assert m["members/best_valid_acc_mean"] == pytest.approx(np.mean(best))
    assert m["members/best_valid_acc_max"] == pytest.approx(max(best))
    assert {x.key for x in logged.metrics} >= {"training_accuracy_score",
                                               "members/best_valid_acc_mean"}
    assert "fitted on: " in parent.data.tags["mlflow.note.content"]
    # the members' own tracking_options are back, on the fitted clones too
    assert all(est.tracking_options is None for _, est in vote.estimators)
    assert all(est.tracking_options is None for est in vote.estimators_)
    # and in their fitted callbacks: a later partial_fit is a run of its own, not "mlp" again
    assert all(dict(est.callbacks_)["mlflow"].options is None for est in vote.estimators_)


@tracked
def test_a_pipeline_ending_in_an_ensemble_is_logged_whole(store):
    pipe = make_pipeline(FunctionTransformer(scale_pixels),
                         VotingClassifier(members(), voting="soft")).fit(X, Y)
    runs = all_runs(store)
    parent = the_parent(runs)
    assert pipe[-1].last_run_id_ == parent.info.run_id and len(children(runs, parent)) == 2
    assert parent.data.tags["model_kind"] == "pipeline"
    assert parent.data.params["pipeline.steps"].startswith("functiontransformer:")
    uri = assert_reloads(store, parent, pipe, X)  # raw uint8 images in: the pipeline's job
    assert isinstance(mlflow.sklearn.load_model(uri), Pipeline)


@tracked
def test_an_ensemble_inside_an_open_run_is_its_child(store):
    with tracking.parent_run("outer") as outer:
        vote = VotingClassifier(members(), voting="soft").fit(X, Y)
    runs = all_runs(store)
    top = the_parent(runs)
    assert top.info.run_id == outer.run_id and top.info.status == "FINISHED"
    (ensemble,) = children(runs, top)
    assert ensemble.info.run_id == vote.last_run_id_ and ensemble.info.status == "FINISHED"
    assert sorted(r.info.run_name for r in children(runs, ensemble)) == ["mlp-16", "softmax"]


@tracked
@pytest.mark.parametrize("n_jobs", [None, 2])
def test_an_ensemble_searched_is_left_alone_in_folds_and_a_parent_in_the_refit(store, n_jobs):
    # n_jobs=2: the folds run in loky workers, where the ensemble clones its members again
    # with no parent run open; they must still be the search's children, not top-level runs
    grid = GridSearchCV(VotingClassifier(members(), voting="soft"), {"weights": [None]},
                        cv=2, n_jobs=n_jobs).fit(X, Y)
    runs = all_runs(store)
    search = the_parent(runs)
    assert search.info.run_name == "GridSearchCV · VotingClassifier · 1 candidate × 2 folds"
    assert search.info.status == "FINISHED"
    direct = children(runs, search)
    folds = [r for r in direct if "search.fold" in r.data.tags]
    assert len(folds) == 2 * 2 and not any("ensemble.member" in r.data.tags for r in folds)
    (refit,) = [r for r in direct if r not in folds]
    assert refit.info.run_name == "VotingClassifier · mlp + softmax (soft)"
    assert refit.info.run_id == grid.best_estimator_.last_run_id_
    assert sorted(r.info.run_name for r in children(runs, refit)) == ["mlp-16", "softmax"]
    assert all(r.info.status == "FINISHED" for r in runs)


@tracked
def test_a_member_that_fails_leaves_the_parent_failed_and_no_child_running(store):
    bad = MLPClassifier(hidden_sizes=(16,), optimizer="sgd", lr=1e10, **TINY)
    slow = SoftmaxRegressionClassifier(max_epochs=200, batch_size=16, random_state=0)
    vote = VotingClassifier([("bad", bad), ("slow", slow)], voting="soft", n_jobs=2)
    with pytest.raises(TrainingDivergedError):
        vote.fit(X, Y)
    runs = all_runs(store)
    parent = the_parent(runs)
    assert parent.info.status == "FAILED"
    statuses = {r.info.run_name: r.info.status for r in children(runs, parent)}
    assert statuses["bad · mlp-16"] == "FAILED"  # its name, and what it is
    # "slow" finished, or was still training when joblib killed its worker: then KILLED
    assert "RUNNING" not in statuses.values(), statuses
    assert bad.tracking_options is None and slow.tracking_options is None


# --------------------------------------------------------------------------- stacking


@tracked
def test_stacking_is_one_parent_with_members_folds_and_final_estimator(store):
    stack = StackingClassifier(members(), final_estimator=SoftmaxRegressionClassifier(**TINY),
                               cv=2, n_jobs=2).fit(X, Y)
    runs = all_runs(store)
    parent = the_parent(runs)
    assert parent.info.run_name == "StackingClassifier · mlp + softmax → softmax"
    assert parent.info.status == "FINISHED"
    assert stack.last_run_id_ == parent.info.run_id
    kids = children(runs, parent)
    # every fit is a child, the folds cross_val_predict made in a loky worker's threads too
    assert len(runs) == 1 + len(kids) and all(r.info.status == "FINISHED" for r in kids)
    folds = [r for r in kids if r.data.tags.get("search.fold") == "of cross_val_predict"]
    assert sorted(r.info.run_name for r in folds) == [  # named apart from the members' fits
        "cv fold · mlp-16", "cv fold · mlp-16", "cv fold · softmax", "cv fold · softmax"]
    assert sorted(r.info.run_name for r in kids if r not in folds) == [
        "final_estimator · softmax", "mlp-16", "softmax"]
    assert not any("model_uri" in r.data.tags for r in kids)
    assert parent.data.params["ensemble.final_estimator"] == "SoftmaxRegressionClassifier"
    assert parent.data.params["ensemble.cv"] == "2"
    assert_reloads(store, parent, stack, X)


# --------------------------------------------------------------------------- autolog


def test_the_wrappers_are_installed_once_and_uninstall_restores_sklearns_own_methods():
    from sklearn.model_selection import _validation

    from mnist_estimators.tracking import sklearn_autolog as wrappers

    wrapped = wrappers.installed()
    assert set(wrapped) >= {"Pipeline.fit", "BaseSearchCV.fit", "VotingClassifier.fit",
                            "StackingClassifier.fit", "sklearn.model_selection.cross_validate",
                            "sklearn.ensemble._stacking.cross_val_predict"}
    # one wrapper per function, whatever names it is bound to
    assert _validation.cross_val_predict is _stacking.cross_val_predict
    assert _validation.cross_val_predict.__wrapped__ is wrapped[
        "sklearn.model_selection._validation.cross_val_predict"]
    try:
        assert tracking.autolog() is False
        assert tracking.autolog() is True  # a second call changes nothing
        with tracking.autologging():  # on already: left on after the block
            pass
        assert wrappers.is_autologging()
    finally:
        tracking.autolog(False)
    assert not wrappers.is_autologging()
    try:
        wrappers.uninstall()
        assert wrappers.installed() == {}
        assert (BaseSearchCV.fit, _voting._BaseVoting.fit, _stacking._BaseStacking.fit,
                _stacking.cross_val_predict) == ORIGINALS
        assert VotingClassifier.fit is wrapped["VotingClassifier.fit"]
        assert Pipeline.fit is wrapped["Pipeline.fit"]
    finally:
        wrappers.install()
    assert Pipeline.fit.__wrapped__ is wrapped["Pipeline.fit"]



@tracked
def test_ensembles_of_other_estimators_and_untracked_fits_are_left_alone(store):
    from sklearn.dummy import DummyClassifier

    vote = VotingClassifier([("prior", DummyClassifier())]).fit(X, Y)
    assert not hasattr(vote, "last_run_id_") and not all_runs(store)
    tracking.set_tracking(False)
    vote = VotingClassifier(members(), voting="soft").fit(X, Y)
    assert not hasattr(vote, "last_run_id_") and not all_runs(store)


# --------------------------------------------------------------------------- ready pipelines


@pytest.mark.parametrize("name", ["cnn_ensemble", "mixed_ensemble", "realworld_ensemble"])
def test_ready_ensembles_build_and_seed_each_member_apart(name):
    module = get(name)
    assert name in NAMES and module.SPACE is None
    pipe = module.build_pipeline()
    assert all(key in pipe.get_params() for key in module.DEFAULTS)  # plain step__param values
    vote = pipe[-1]
    assert isinstance(vote, VotingClassifier) and vote.voting == "soft" and vote.n_jobs == 1
    n = len(vote.estimators)

    def seeds(p):
        return [est.random_state for _, est in p[-1].estimators]

    assert seeds(pipe) == list(range(n))
    assert seeds(module.build_pipeline(clf__random_state=3)) == [3 * n + i for i in range(n)]
    assert seeds(module.build_pipeline(clf__random_state=None)) == [None] * n
    first = vote.estimators[0][0]
    assert seeds(module.build_pipeline(**{"clf__random_state": 1,
                                          f"clf__{first}__random_state": 99}))[0] == 99
    if name == "realworld_ensemble":
        return  # its members: the next test
    # the last member is cnn_best's classifier, configured from its DEFAULTS
    cnn = vote.estimators[-1][1]
    assert cnn.channels == cnn_best.DEFAULTS["clf__channels"]
    assert cnn.get_params()["module__convs_per_block"] == 2 and cnn.augment_rotation == 10.0


def test_the_realworld_ensemble_votes_cnn_realworld_with_the_deskewed_cnn_and_fits():
    from mnist_estimators.pipelines import cnn_realworld

    pipe = get("realworld_ensemble").build_pipeline()
    (first, realworld), (second, deskewed) = pipe[-1].estimators
    assert (first, second) == ("realworld", "deskewed")
    # configured from cnn_realworld's and the default CNN's DEFAULTS (imported, not copied)
    assert realworld.channels == cnn_realworld.DEFAULTS["clf__channels"] == (32, 64)
    assert realworld.deskew is False and realworld.augment_slant == 0.3
    assert realworld.max_epochs == cnn_realworld.DEFAULTS["clf__max_epochs"]
    assert deskewed.deskew is True and deskewed.augment_gaps == 1 and deskewed.channels == (16, 32)
    assert deskewed.augment_slant == 0.0 and deskewed.max_epochs == 4
    small = {f"clf__{m}__{k}": v for m in ("realworld", "deskewed")
             for k, v in {"max_epochs": 1, "tracking": False, "validation_fraction": None}.items()}
    fitted = get("realworld_ensemble").build_pipeline(clf__random_state=1, **small).fit(X, Y)
    proba = fitted.predict_proba(X[:20])
    members = [est.predict_proba(scale_pixels(X[:20])) for est in fitted[-1].estimators_]
    np.testing.assert_allclose(proba, np.mean(members, axis=0), atol=1e-6)  # soft voting
    assert [est.random_state for est in fitted[-1].estimators_] == [2, 3]


def test_an_ensemble_member_gets_only_the_shared_pixels_step():
    from mnist_estimators.pipelines._voting import classifier_params

    assert classifier_params({"scale": "passthrough", "clf__lr": 0.1}) == {"lr": 0.1}
    with pytest.raises(ValueError, match="also sets"):
        classifier_params({"scale": "standard", "clf__lr": 0.1})


@tracked
def test_cli_reproduce_fits_an_ensemble_pipeline(tmp_path, store, monkeypatch, capsys):
    from mnist_estimators.cli import main

    tracking.autolog(False)  # reproduce turns it on for itself, and off again
    tiny = {"clf__channels": (4,), "clf__hidden_sizes": (8,), "clf__max_epochs": 1,
            "clf__batch_size": 64, "clf__validation_fraction": None}
    monkeypatch.setattr(cnn_best, "DEFAULTS", tiny)  # the members' settings come from it
    out_json = tmp_path / "ensemble.json"
    assert main(["reproduce", "cnn_ensemble", "--seeds", "1", "--quiet", "--param",
                 "clf__n_jobs=1", "--data-home", str(write_sample_mnist(tmp_path / "digits")),
                 "--output-dir", str(tmp_path / "models"), "--json", str(out_json)]) == 0
    assert "seed 1: test accuracy" in capsys.readouterr().out
    assert _voting._BaseVoting.fit is ORIGINALS[1]
    result = json.loads(out_json.read_text())
    assert result["runs"][0]["epochs"] == [1] * 5
    runs = all_runs(store)
    top = the_parent(runs)
    assert top.info.run_name == "reproduce cnn_ensemble" and top.info.status == "FINISHED"
    (ensemble,) = children(runs, top)
    assert ensemble.info.run_name == "VotingClassifier · cnn × 5 (soft)"
    assert ensemble.info.status == "FINISHED"
    assert ensemble.data.metrics["test_accuracy"] == pytest.approx(
        result["runs"][0]["test_accuracy"])
    members_ = children(runs, ensemble)
    assert sorted(r.info.run_name for r in members_) == [f"cnn{i} · cnn-4" for i in range(5)]
    assert sorted(int(r.data.params["random_state"]) for r in members_) == list(range(5, 10))
    assert all(r.info.status == "FINISHED" for r in members_)


def test_a_dataset_another_process_inserted_first_is_retried():
    # An ensemble's members log the same dataset at the same moment: MLflow looks for it, then
    # inserts it, and the slower insert fails on the unique key; the retry finds it.
    from mnist_estimators.tracking import store

    calls = []

    def log_inputs():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("(sqlite3.IntegrityError) UNIQUE constraint failed: "
                               "datasets.experiment_id, datasets.name, datasets.digest")
        return "linked"

    assert store.call(log_inputs) == "linked" and len(calls) == 2
    with pytest.raises(RuntimeError, match="UNIQUE constraint failed: runs"):
        store.call(lambda: (_ for _ in ()).throw(RuntimeError("UNIQUE constraint failed: runs")))


def test_tuning_an_ensemble_pipeline_is_refused_with_what_to_run_instead(capsys):
    from mnist_estimators.cli import main

    assert main(["tune", "--pipeline", "cnn_ensemble", "--trials", "1"]) != 0
    err = capsys.readouterr().err
    assert "cnn_ensemble has no search space" in err and "search --pipeline cnn_ensemble" in err
