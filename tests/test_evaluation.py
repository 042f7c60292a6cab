"""evaluate_images: a saved model on a folder of drawn digits (strokes.make_set), with and
without an MLflow store."""

import csv
import io
from pathlib import Path

import mlflow
import numpy as np
import pytest

from mnist_estimators import MLPClassifier, evaluate_images, load_images
from mnist_estimators.calibration import expected_calibration_error
from mnist_estimators.persistence import save_model
from mnist_estimators.strokes import make_set

from conftest import X_TRAIN, Y_TRAIN

PER_DIGIT = 4


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    folder = tmp_path_factory.mktemp("drawn") / "drawings"
    make_set(folder, per_digit=PER_DIGIT, seed=0)
    return folder


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    est = MLPClassifier(hidden_sizes=(32,), max_epochs=3, random_state=0, tracking=False)
    return save_model(est.fit(X_TRAIN, Y_TRAIN), tmp_path_factory.mktemp("model") / "mlp.pkl")


@pytest.fixture
def store(tmp_path, monkeypatch, request):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", request.node.name[:200])
    return mlflow.MlflowClient(uri)


def _runs(client):
    exp = client.get_experiment_by_name(mlflow.environment_variables.MLFLOW_EXPERIMENT_NAME.get())
    return [] if exp is None else client.search_runs([exp.experiment_id])


def test_result_matches_the_model_on_the_images(drawn, model_file, tmp_path, monkeypatch):
    from mnist_estimators.persistence import load_model

    from mnist_estimators import reading

    monkeypatch.chdir(tmp_path)
    result = evaluate_images(model_file, drawn, top=3)
    model = load_model(model_file)
    X, y, files = load_images(drawn, return_files=True)
    n = 10 * PER_DIGIT
    assert result.n == n and result.files == files and result.run_id is None
    # read as predict reads image files: unsure digits also turned (reading.TURN)
    proba = reading.predict_proba(model, files, frames=X)
    assert result.turn == reading.TURN
    assert result.accuracy == pytest.approx(np.mean(model.classes_[proba.argmax(1)] == y))
    assert result.ece == pytest.approx(expected_calibration_error(
        y, proba, classes=model.classes_))
    assert result.confusion.shape == (10, 10) and result.confusion.sum() == n
    np.testing.assert_array_equal(result.confusion.sum(axis=1), [PER_DIGIT] * 10)
    np.testing.assert_array_equal(np.diag(result.confusion) / PER_DIGIT,
                                  [result.per_digit[d] for d in range(10)])
    # every misclassified image, most confident first, with its own file and labels
    wrong = np.flatnonzero(model.classes_[proba.argmax(1)] != y)
    assert len(result.mistakes) == len(wrong) > 0
    probs = [m["probability"] for m in result.mistakes]
    assert probs == sorted(probs, reverse=True)
    for m in result.mistakes:
        i = files.index(m["file"])
        assert Path(m["file"]).parent.name == str(m["true"]) == str(y[i])
        assert m["predicted"] != m["true"] and m["probability"] == pytest.approx(proba[i].max())
    assert not (tmp_path / "mlruns").exists()  # tracking is off in this test: no store made


def test_report_lines(drawn, model_file):
    result = evaluate_images(model_file, drawn, top=3)
    lines = result.report().splitlines()
    assert lines[0] == (f"accuracy {result.accuracy:.4f} on 40 images (labelled images in {drawn}; "
                        "unsure ones also read turned up to 20 degrees)")
    assert lines[1].startswith(f"ECE {result.ece:.4f} (top-label calibration error, 15 ")
    header = lines.index("confusion (rows: true digit, columns: predicted digit)")
    assert lines[header + 1].split() == ["true", *map(str, range(10)), "images", "accuracy"]
    for d in range(10):
        cells = lines[header + 2 + d].split()
        assert [int(c) for c in cells[:12]] == [d, *result.confusion[d], PER_DIGIT]
        assert cells[12] == f"{result.per_digit[d]:.4f}"
    start = next(i for i, line in enumerate(lines) if line.startswith("worst mistakes: 3 of"))
    assert lines[start + 1].split() == ["probability", "true", "predicted", "file"]
    shown = [line.split() for line in lines[start + 2:]]
    assert [row[3] for row in shown] == [m["file"] for m in result.mistakes[:3]]
    assert [float(row[0]) for row in shown] == [round(m["probability"], 4)
                                                for m in result.mistakes[:3]]
    assert result.report(top=0).splitlines()[-1] == "probability  true  predicted  file"


def test_a_model_without_probabilities_and_a_perfect_score(tmp_path):
    class Oracle:  # predicts the digit of the subfolder, in file order; no predict_proba
        classes_ = np.arange(10)

        def predict(self, X):
            return np.arange(len(X))

    make_set(tmp_path / "one", per_digit=1, seed=1)
    result = evaluate_images(Oracle(), tmp_path / "one")
    assert result.accuracy == 1.0 and result.model == "Oracle" and result.mistakes == []
    assert result.ece is None and "ECE" not in result.report()  # no probabilities
    last = result.report().splitlines()[-1]
    assert last == "worst mistakes: none, every image is classified right"
    (tmp_path / "one" / "9" / "000.png").unlink()
    result = evaluate_images(Oracle(), tmp_path / "one")  # no 9 left: its row is empty
    row = [line.split() for line in result.report().splitlines() if line.startswith("   9 ")]
    assert np.isnan(result.per_digit[9]) and row[0][-2:] == ["0", "-"]


def test_top_must_be_a_count(drawn, model_file):
    with pytest.raises(ValueError, match="'top' parameter must be an int >= 0. Got -1"):
        evaluate_images(model_file, drawn, top=-1)


@pytest.mark.tracking
def test_the_evaluation_run_holds_metrics_figures_dataset_and_ends_finished(drawn, model_file,
                                                                           store):
    result = evaluate_images(model_file, drawn)
    (run,) = _runs(store)
    assert run.info.run_id == result.run_id and run.info.status == "FINISHED"
    assert run.data.tags["mnist_estimators.kind"] == "evaluation"
    assert run.data.tags["mlflow.runName"] == "evaluate mlp on drawings"
    p = run.data.params
    assert p["model"] == str(model_file) and p["images.folder"] == str(drawn.resolve())
    assert p["images.n"] == "40" and p["model.class"] == "MLPClassifier"
    m = run.data.metrics
    assert "accuracy" not in m and "model.uri" not in p  # one accuracy; a model never logged
    assert m["ece"] == pytest.approx(result.ece)
    for d in range(10):
        assert m[f"digit_accuracy/{d}"] == pytest.approx(result.per_digit[d])
    # mlflow.models.evaluate's metrics, from the same predictions
    assert m["accuracy_score"] == pytest.approx(result.accuracy) and m["example_count"] == 40
    assert {"f1_score", "precision_score", "recall_score"} <= set(m)
    (ds,) = run.inputs.dataset_inputs
    assert ds.dataset.name == "images-drawings" and str(drawn.resolve()) in ds.dataset.source
    assert {t.key: t.value for t in ds.tags} == {"mlflow.data.context": "evaluation"}
    artifacts = {a.path for a in store.list_artifacts(run.info.run_id)}
    assert {"figures", "mistakes.csv", "per_class_metrics.csv", "confusion_matrix.png"} <= artifacts
    figures = {a.path for a in store.list_artifacts(run.info.run_id, "figures")}
    # one confusion matrix: mlflow.models.evaluate's (confusion_matrix.png, above)
    assert figures == {"figures/misclassified.png", "figures/reliability_diagram.png"}
    table = list(csv.DictReader(io.StringIO(
        mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/mistakes.csv"))))
    assert [r["file"] for r in table] == [m["file"] for m in result.mistakes]
    image = mlflow.artifacts.load_image(f"runs:/{run.info.run_id}/figures/misclassified.png")
    assert image.width > 100
    assert mlflow.active_run() is None


@pytest.mark.tracking
def test_the_evaluation_run_is_linked_to_the_logged_model_it_scored(drawn, store, tmp_path):
    est = MLPClassifier(hidden_sizes=(32,), max_epochs=2, random_state=0).fit(X_TRAIN, Y_TRAIN)
    model_id = est.last_model_uri_.split("/")[-1]
    result = evaluate_images(save_model(est, tmp_path / "tracked.pkl"), drawn)
    run = store.get_run(result.run_id)
    assert run.data.params["model.uri"] == est.last_model_uri_
    assert [m.model_id for m in run.inputs.model_inputs] == [model_id]
    # the model's page lists the evaluation's results on the images, beside its validation's
    linked = {m.key: m for m in store.get_logged_model(model_id).metrics}
    assert linked["ece"].value == pytest.approx(result.ece)
    assert linked["ece"].dataset_name == "images-drawings"
    assert "summary/best_valid_acc" in linked


@pytest.mark.tracking
def test_inside_a_users_run_it_is_a_child_and_the_users_run_stays_active(drawn, model_file, store):
    with mlflow.start_run() as parent:
        result = evaluate_images(model_file, drawn)
        assert mlflow.active_run().info.run_id == parent.info.run_id
    run = store.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id


@pytest.mark.tracking
def test_a_failure_while_logging_ends_the_run_failed_and_keeps_the_result(drawn, model_file, store,
                                                                        monkeypatch):
    from mnist_estimators import plots
    from mnist_estimators.tracking import TrackingWarning

    def broken(*args, **kwargs):
        raise RuntimeError("no figure today")

    monkeypatch.setattr(plots, "misclassified_grid", broken)
    with pytest.warns(TrackingWarning, match="marked FAILED"):
        result = evaluate_images(model_file, drawn)
    assert result.accuracy > 0 and result.run_id
    run = store.get_run(result.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: no figure today"
    assert mlflow.active_run() is None


@pytest.mark.tracking
def test_an_interrupt_ends_the_run_killed(drawn, model_file, store, monkeypatch):
    from mnist_estimators import plots

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "misclassified_grid", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate_images(model_file, drawn)
    (run,) = _runs(store)
    assert run.info.status == "KILLED"
    assert mlflow.active_run() is None


@pytest.mark.tracking
def test_log_false_logs_nothing(drawn, model_file, store):
    assert evaluate_images(model_file, drawn, log=False).run_id is None
    assert _runs(store) == []
