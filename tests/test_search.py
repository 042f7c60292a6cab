"""Optuna studies over the estimators: real in-memory, SQLite and Journal storages, a real MLflow store."""

import multiprocessing
import os
import re
import signal
import time
import uuid

import mlflow
import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mnist_estimators import MLPClassifier, SoftmaxRegressionClassifier, tracking
from mnist_estimators.search import make_storage, tune

from conftest import X_TEST, X_TRAIN, Y_TEST, Y_TRAIN, assert_exactly_n_trials

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
    assert parent.data.tags["best.optimizer"] == result.best_params["optimizer"]
    # an unnamed study's run reads as what it is, and says what was searched and how
    assert re.fullmatch(r"tune-mlp-\d{8}-\d{4}", parent.info.run_name), parent.info.run_name
    assert result.study.study_name.startswith("no-name-")  # Optuna's own name is kept
    assert parent.data.tags["optuna.study"] == result.study.study_name
    p = parent.data.params
    assert p["space.optimizer"] == "['adam', 'sgd']" and p["space.lr"].startswith(
        "FloatDistribution(")
    assert (p["n_trials"], p["sampler"], p["pruner"], p["direction"], p["objective"]) == (
        "4", "TrialSeededTPESampler", "NopPruner", "maximize", "valid_acc")
    assert {a.path for a in store.list_artifacts(result.run_id, "study")} >= {
        "study/optimization_history.png", "study/parallel_coordinate.png", "study/param_importances.png"}
    children = store.search_runs([parent.info.experiment_id],
                                 filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'")
    by_trial = {r.data.tags.get("optuna.trial"): r for r in children}
    assert set(by_trial) == {"0", "1", "2", "3", None}  # 4 trials + the refit
    for t in trials:
        run = by_trial[str(t.number)]
        assert run.data.metrics["summary/best_valid_acc"] == pytest.approx(t.value)
        assert run.data.metrics["optuna/value"] == pytest.approx(t.value)
        assert float(run.data.params["lr"]) == pytest.approx(t.params["lr"])
    model = mlflow.pyfunc.load_model(store.get_run(result.run_id).data.tags["model_uri"])
    np.testing.assert_array_equal(model.predict(X_TEST), result.best_estimator.predict(X_TEST))
    # one model, the refit's (trials log none), linked to the parent; the parent holds the data
    (logged,) = store.search_logged_models([parent.info.experiment_id])
    assert logged.source_run_id == by_trial[None].info.run_id
    assert store.get_run(result.run_id).data.tags["model_uri"] == f"models:/{logged.model_id}"
    assert [d.dataset.digest for d in store.get_run(result.run_id).inputs.dataset_inputs] == [
        d.dataset.digest for d in by_trial[None].inputs.dataset_inputs]


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
    assert len(runs) == len(pruned) and all(r.info.status == "FINISHED" for r in runs)
    assert all(r.info.run_name.startswith("pruned · ") for r in runs)
    for run in runs:  # the tag counts epochs as the run does, from 1
        epochs = int(run.data.metrics["summary/n_epochs"])
        assert run.data.tags["optuna.pruned"].startswith(f"pruned after epoch {epochs} of "), (
            run.data.tags["optuna.pruned"], epochs)
    assert store.get_run(result.run_id).data.metrics["optuna/n_trials_pruned"] == len(pruned)


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
    # one parent, named by the study, holding the first call's params (they cannot change)
    parent = store.get_run(result.run_id)
    assert parent.info.run_name == "resume" and parent.data.params["n_trials"] == "2"


def _worker(url, n, max_epochs=FAST["max_epochs"]):
    import os

    os.environ["MNIST_ESTIMATORS_TRACKING"] = "0"
    from conftest import X_TRAIN, Y_TRAIN

    tune(SoftmaxRegressionClassifier(**{**FAST, "max_epochs": max_epochs}), SPACE, X_TRAIN,
         Y_TRAIN, n_trials=n, storage=url, study_name="shared", refit=False, pruner=None)


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
    assert len(numbers) == len(set(numbers))
    assert_exactly_n_trials(trials, 3)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the test's own ask(): no optimize
def test_a_trial_for_a_place_a_running_trial_holds_is_not_run(tmp_path):
    # Another worker finished trial 0 and is running trial 1 (a heartbeat storage: Optuna
    # would have marked it FAIL if its worker had died): a study of 2 needs no third trial.
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = make_storage(url, heartbeat_interval=60)
    study = optuna.create_study(storage=storage, study_name="held", direction="maximize")
    study.tell(study.ask(), 0.5)
    study.ask()  # trial 1, RUNNING in the other worker
    tune(SoftmaxRegressionClassifier(**FAST, tracking=False), SPACE, X_TRAIN, Y_TRAIN,
         n_trials=2, storage=url, study_name="held", refit=False, pruner=None,
         heartbeat_interval=60)
    trials = optuna.load_study(study_name="held", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "RUNNING", "FAIL"]
    assert trials[2].user_attrs["surplus"] and trials[2].params == {}  # nothing was fitted


def test_a_trial_a_crashed_worker_left_running_does_not_block_a_rerun(tmp_path):
    # Without a heartbeat nobody marks a dead worker's trial FAIL: one that was RUNNING before
    # the call is not counted, so the rerun still brings the study to n_trials.
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(storage=url, study_name="stale", direction="maximize")
    study.ask()  # trial 0: its worker died
    tune(SoftmaxRegressionClassifier(**FAST, tracking=False), SPACE, X_TRAIN, Y_TRAIN,
         n_trials=2, storage=url, study_name="stale", refit=False, pruner=None)
    states = [t.state.name for t in optuna.load_study(study_name="stale", storage=url).trials]
    assert states == ["RUNNING", "COMPLETE", "COMPLETE"]


def test_a_live_worker_that_started_first_holds_its_place_without_a_heartbeat(tmp_path):
    # Workers started one after the other on a journal (no heartbeat): the first one's RUNNING
    # trial began before the second's call, and counts while its process lives. Once that
    # process is killed, its trial no longer holds a place, and a rerun fills it.
    url = f"journal:{tmp_path / 'study.log'}"
    study = optuna.create_study(storage=make_storage(url), study_name="shared",
                                direction="maximize")
    study.tell(study.ask(), 0.5)
    first = multiprocessing.get_context("spawn").Process(target=_worker, args=(url, 2, 10**6))
    first.start()
    try:
        deadline = time.monotonic() + 120
        while not any(t.state.name == "RUNNING" and "process" in t.user_attrs
                      for t in optuna.load_study(study_name="shared",
                                                 storage=make_storage(url)).trials):
            assert time.monotonic() < deadline and first.is_alive()
            time.sleep(0.2)
        second = dict(storage=url, study_name="shared", refit=False, pruner=None)
        tune(SoftmaxRegressionClassifier(**FAST, tracking=False), SPACE, X_TRAIN, Y_TRAIN,
             n_trials=2, **second)
        trials = optuna.load_study(study_name="shared", storage=make_storage(url)).trials
        assert [t.state.name for t in trials] == ["COMPLETE", "RUNNING", "FAIL"]
        assert trials[2].user_attrs["surplus"] and trials[2].params == {}
    finally:
        first.kill()
        first.join(30)
    tune(SoftmaxRegressionClassifier(**FAST, tracking=False), SPACE, X_TRAIN, Y_TRAIN,
         n_trials=2, **second)
    trials = optuna.load_study(study_name="shared", storage=make_storage(url)).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "RUNNING", "FAIL", "COMPLETE"]


def test_minimize_valid_loss(store):
    result = tune(SoftmaxRegressionClassifier(**FAST), SPACE, X_TRAIN, Y_TRAIN, n_trials=3,
                  direction="minimize", metric="valid_loss", pruner=None, refit=False)
    assert result.study.direction.name == "MINIMIZE"
    assert result.best_value == min(t.value for t in result.study.trials)
    with pytest.raises(ValueError, match="metric 'valid_f1' is not in the fit's history"):
        tune(SoftmaxRegressionClassifier(**FAST), SPACE, X_TRAIN, Y_TRAIN, n_trials=1,
             metric="valid_f1", pruner=None, refit=False)


def test_bad_arguments():
    with pytest.raises(ValueError, match="'pruner' parameter must be"):
        tune(MLPClassifier(**FAST), SPACE, X_TRAIN, Y_TRAIN, n_trials=1, pruner="sometimes")
    with pytest.raises(ValueError, match="'storage' parameter must be an RDB URL"):
        make_storage("studies.db")
    with pytest.raises(ValueError, match="validation split"):
        tune(MLPClassifier(**FAST, validation_fraction=None), SPACE, X_TRAIN, Y_TRAIN, n_trials=1)


def _digits(tmp_path):
    from conftest import write_sample_mnist

    return write_sample_mnist(tmp_path / "digits")


def test_cli_tune_prints_progress_and_resumes(tmp_path, store, capsys):
    from mnist_estimators.cli import main

    url = f"sqlite:///{tmp_path / 'study.db'}"
    argv = ["tune", "--pipeline", "softmax", "--trials", "2", "--storage", url, "--study-name", "cli",
            "--data-home", str(_digits(tmp_path)), "--param", "clf__max_epochs=2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("COMPLETE value") + out.count("PRUNED") == 2
    assert "best value" in out and "study run" in out and f"optuna-dashboard {url}" in out
    argv[argv.index("--trials") + 1] = "3"
    assert main(argv) == 0
    assert len(optuna.load_study(study_name="cli", storage=url).trials) == 3


def test_cli_search_runs_a_tracked_grid(tmp_path, store, capsys):
    from mnist_estimators.cli import main

    assert main(["search", "--pipeline", "mlp", "--grid", '{"clf__lr": [0.001, 0.01]}', "--cv", "2",
                 "--data-home", str(_digits(tmp_path)), "--param", "clf__max_epochs=2",
                 "--param", "clf__hidden_sizes=(32,)"]) == 0
    assert "best cv score" in capsys.readouterr().out
    runs = store.search_runs([store.get_experiment_by_name("study").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].data.params["best.clf__lr"] in ("0.001", "0.01")
    assert len(runs) == 1 + 2 * 2 + 1
    assert main(["search", "--pipeline", "mlp", "--grid", "{lr: 1}"]) == 2


@pytest.mark.parametrize("name", ["softmax", "mlp", "cnn", "softmax_best", "mlp_best",
                                  "mlp_augmented", "cnn_best", "cnn_frontier", "cnn_realworld"])
def test_ready_pipelines_fit(name):
    from mnist_estimators.pipelines import get

    module = get(name)
    pipe = module.build_pipeline(clf__max_epochs=4, clf__batch_size=32, clf__tracking=False)
    assert pipe.get_params()["clf__random_state"] == 0  # reproducible by default
    assert pipe.fit(X_TRAIN, Y_TRAIN).score(X_TEST, Y_TEST) > 0.3  # chance is 0.1
    trial = optuna.trial.FixedTrial({"depth": 1, "width_0": 128, "activation": "relu", "dropout": 0.1,
                                     "lr": 1e-3, "batch_size": 64, "channels": "8-16",
                                     "kernel_size": 3, "pool_first": True,
                                     "lr_schedule": "cosine"})
    from mnist_estimators.search import suggest

    if callable(module.SPACE):
        params = suggest(trial, module.SPACE)
        module.build_pipeline(**params)  # every key is a real parameter
    else:
        assert all(key in pipe.get_params() for key in module.SPACE)
    assert all(key in pipe.get_params() for key in module.GRID)


POSTGRES = os.environ.get("MNIST_ESTIMATORS_TEST_POSTGRES", "postgresql://mnist:mnist@127.0.0.1:5432/optuna")


def _postgres_or_skip():
    import sqlalchemy

    try:
        with sqlalchemy.create_engine(POSTGRES).connect():
            return POSTGRES
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES} (.ci/system-deps starts it): {exc}")


def test_two_workers_on_postgresql(tmp_path):
    url = _postgres_or_skip()
    name = f"pg-{uuid.uuid4().hex[:8]}"
    optuna.create_study(storage=url, study_name=name, direction="maximize")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker_named, args=(url, name, 3)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    trials = optuna.load_study(study_name=name, storage=url).trials
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials)))
    assert_exactly_n_trials(trials, 3)
    params = [tuple(sorted(t.params.items())) for t in trials if t.params]
    assert len(set(params)) == len(params)  # no trial evaluated twice
    optuna.delete_study(study_name=name, storage=url)


def _worker_named(url, name, n):
    import os

    os.environ["MNIST_ESTIMATORS_TRACKING"] = "0"
    from conftest import X_TRAIN, Y_TRAIN

    tune(SoftmaxRegressionClassifier(**FAST), SPACE, X_TRAIN, Y_TRAIN, n_trials=n, storage=url,
         study_name=name, refit=False, pruner=None, seed=None)


def _slow_worker(url, name):
    import os

    os.environ["MNIST_ESTIMATORS_TRACKING"] = "0"
    from conftest import X_TRAIN, Y_TRAIN

    tune(MLPClassifier(max_epochs=100000, batch_size=8), SPACE, X_TRAIN, Y_TRAIN, n_trials=1,
         storage=url, study_name=name, refit=False, pruner=None, heartbeat_interval=1)


def test_a_crashed_worker_leaves_its_trial_failed_and_the_study_goes_on(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = make_storage(url, heartbeat_interval=1)
    optuna.create_study(storage=storage, study_name="crash", direction="maximize")
    proc = multiprocessing.get_context("spawn").Process(target=_slow_worker, args=(url, "crash"))
    proc.start()
    deadline = time.time() + 120
    while time.time() < deadline:
        trials = optuna.load_study(study_name="crash", storage=storage).trials
        if trials and trials[0].state.name == "RUNNING":
            break
        time.sleep(0.5)
    else:
        pytest.fail("the worker never started its trial")
    time.sleep(2)  # a heartbeat or two
    os.kill(proc.pid, signal.SIGKILL)  # the worker dies mid-trial
    proc.join()
    time.sleep(3)  # past the grace period (2 heartbeats)
    result = tune(SoftmaxRegressionClassifier(**FAST), SPACE, X_TRAIN, Y_TRAIN, n_trials=3,
                  storage=url, study_name="crash", refit=False, pruner=None, heartbeat_interval=1)
    states = [t.state.name for t in result.study.trials]
    assert states[0] == "FAIL"  # marked by the heartbeat check, not left RUNNING
    assert states[1:] == ["COMPLETE"] * 3  # the study went on: 3 trials finish in this session


def test_optuna_search_cv_is_a_drop_in(store):
    from optuna_integration import OptunaSearchCV

    search = OptunaSearchCV(MLPClassifier(**FAST, hidden_sizes=(32,)),
                            {"lr": FloatDistribution(1e-3, 3e-2, log=True),
                             "optimizer": CategoricalDistribution(["adam", "rmsprop"])},
                            n_trials=3, cv=2, random_state=0, refit=True)
    search.fit(X_TRAIN, Y_TRAIN)
    assert len(search.trials_) == 3 and set(search.best_params_) == {"lr", "optimizer"}
    assert search.score(X_TEST, Y_TEST) > 0.3
    assert search.best_estimator_.optimizer == search.best_params_["optimizer"]


def test_optuna_dashboard_reads_the_study(tmp_path):
    import json
    import sys
    import urllib.request

    from test_tracking_server import start_on_a_free_port, stop

    url = f"sqlite:///{tmp_path / 'study.db'}"
    tune(SoftmaxRegressionClassifier(**FAST, tracking=False), SPACE, X_TRAIN, Y_TRAIN, n_trials=2,
         storage=url, study_name="dash", refit=False, pruner=None)
    exe = os.path.join(os.path.dirname(sys.executable), "optuna-dashboard")
    proc, port = start_on_a_free_port(lambda port: (
        [exe, url, "--host", "127.0.0.1", "--port", str(port)],
        f"http://127.0.0.1:{port}/api/studies"))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=10) as resp:
            studies = json.loads(resp.read())["study_summaries"]
    finally:
        stop(proc)
    assert [s["study_name"] for s in studies] == ["dash"]


def test_cli_reproduce_fits_each_seed_and_logs_mean_and_std(tmp_path, store, capsys):
    import json

    from mnist_estimators.cli import main
    from mnist_estimators.estimators import load_model

    out_json = tmp_path / "res" / "softmax.json"
    assert main(["reproduce", "softmax_best", "--seeds", "0", "1", "--quiet",
                 "--data-home", str(_digits(tmp_path)), "--param", "clf__max_epochs=3",
                 "--output-dir", str(tmp_path / "models"), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "seed 0: test accuracy" in out and "seed 1: test accuracy" in out
    result = json.loads(out_json.read_text())
    accs = [r["test_accuracy"] for r in result["runs"]]
    assert [r["seed"] for r in result["runs"]] == [0, 1] and len(set(accs)) == 2  # seeds differ
    assert result["test_accuracy_mean"] == pytest.approx(np.mean(accs))
    assert result["test_accuracy_std"] == pytest.approx(np.std(accs))
    # the ECE of each seed, on the probabilities its accuracy is the argmax of
    from mnist_estimators.calibration import expected_calibration_error

    eces = [r["test_ece"] for r in result["runs"]]
    assert result["test_ece_mean"] == pytest.approx(np.mean(eces))
    assert result["test_ece_std"] == pytest.approx(np.std(eces))
    assert re.search(r"seed 1: test accuracy 0\.\d+, ECE 0\.\d+,", out), out
    assert re.search(r"test accuracy 0\.\d+ \+- 0\.\d+ over 2 seed\(s\), ECE 0\.\d+ \+- "
                     r"0\.\d+,", out), out
    assert result["params"]["clf__max_epochs"] == 3 and result["params"]["scale"] == "passthrough"
    model = load_model(result["runs"][1]["model"])
    assert model.score(X_TEST, Y_TEST) == pytest.approx(accs[1])  # the saved model is the scored one
    assert expected_calibration_error(Y_TEST, model.predict_proba(X_TEST),
                                      classes=model.classes_) == pytest.approx(eces[1])
    runs = store.search_runs([store.get_experiment_by_name("study").experiment_id])
    parent = next(r for r in runs if r.info.run_name == "reproduce softmax_best")
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["test_accuracy_mean"] == pytest.approx(np.mean(accs))
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.metrics["test_accuracy"] for r in children) == pytest.approx(sorted(accs))
    assert sorted(r.data.metrics["test_ece"] for r in children) == pytest.approx(sorted(eces))
    assert parent.data.metrics["test_ece_mean"] == pytest.approx(np.mean(eces))
    for child in children:  # the test set's reliability diagram, next to the fit's figures
        paths = {a.path for a in store.list_artifacts(child.info.run_id, "figures")}
        assert "figures/test_reliability_diagram.png" in paths
    assert {r.data.params["random_state"] for r in children} == {"0", "1"}


def test_cli_reproduce_append_adds_seeds_to_the_json_and_refuses_another_setup(
        tmp_path, store, capsys):
    """A long reproduction split over sessions: seed 0 now, seed 1 later, one result."""
    import json

    from mnist_estimators.cli import main

    out_json = tmp_path / "res.json"
    common = ["--quiet", "--data-home", str(_digits(tmp_path)), "--param", "clf__max_epochs=2",
              "--output-dir", str(tmp_path / "models"), "--json", str(out_json), "--append"]
    # a missing file is the first part
    assert main(["reproduce", "softmax_best", "--seeds", "0", *common]) == 0
    first = json.loads(out_json.read_text())
    assert [r["seed"] for r in first["runs"]] == [0]
    assert main(["reproduce", "softmax_best", "--seeds", "1", *common]) == 0
    assert "adding to 1 earlier seed(s)" in capsys.readouterr().out
    both = json.loads(out_json.read_text())
    assert [r["seed"] for r in both["runs"]] == [0, 1]
    assert both["runs"][0] == first["runs"][0]  # the earlier row is kept as it was
    accs = [r["test_accuracy"] for r in both["runs"]]
    assert both["test_accuracy_mean"] == pytest.approx(np.mean(accs))
    assert both["test_accuracy_std"] == pytest.approx(np.std(accs))
    assert both["fit_s_mean"] == pytest.approx(np.mean([r["fit_s"] for r in both["runs"]]))
    # a seed run again replaces its row instead of counting twice
    assert main(["reproduce", "softmax_best", "--seeds", "1", *common]) == 0
    again = json.loads(out_json.read_text())
    assert [r["seed"] for r in again["runs"]] == [0, 1]
    assert again["runs"][1]["fit_s"] != both["runs"][1]["fit_s"]
    capsys.readouterr()
    # another setup is refused before any fit, naming the file and what differs; file untouched
    before = out_json.read_bytes()
    assert main(["reproduce", "softmax_best", "--seeds", "2", *common,
                 "--param", "clf__lr=0.5"]) == 2
    err = capsys.readouterr().err
    assert str(out_json) in err and "other parameters" in err and "clf__lr" in err, err
    assert main(["reproduce", "mlp_best", "--seeds", "2", *common]) == 2
    assert "another pipeline ('softmax_best' there, 'mlp_best' now)" in capsys.readouterr().err
    assert out_json.read_bytes() == before
    assert not (tmp_path / "models" / "softmax_best-seed2.pkl").exists()
    out_json.write_text("{not json")
    assert main(["reproduce", "softmax_best", "--seeds", "2", *common]) == 2
    assert "is not a reproduce result" in capsys.readouterr().err
    assert main(["reproduce", "softmax_best", "--seeds", "2", "--append"]) == 2
    assert "give --json" in capsys.readouterr().err


def test_cli_reproduce_rejects_an_unknown_pipeline(capsys):
    from mnist_estimators.cli import main

    with pytest.raises(SystemExit):
        main(["reproduce", "resnet"])
    assert "invalid choice: 'resnet'" in capsys.readouterr().err
