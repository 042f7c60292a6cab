"""Every README example is run as written (team rule).

The ```python blocks and the ``mnist-estimators ...`` command lines are read from README.md when
the tests run, never copied here, and run unchanged:

- the python blocks of one ``## `` section run in order, in one fresh namespace, with ``exec``,
  in a temporary working directory, so that MLflow tracking goes to ``./mlruns`` there (the
  README's default: ``MLFLOW_TRACKING_URI`` is unset);
- the command lines of the "Every fit is tracked in MLflow", "Hyperparameter studies" and
  "Command line" sections run as subprocesses, in README order, in one temporary directory.

Speed comes from the data, not from editing the examples: ``$MNIST_ESTIMATORS_DATA``, which
``load_mnist`` reads first and at call time, points at a folder of 600 training and 200 test
images taken from the real MNIST files (``../shared/datasets/mnist``; these tests skip when it
is absent). The set-up commands are checked by ``test_readme.py``.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import FULL_MNIST, write_idx
from mnist_estimators import load_mnist

README = Path(__file__).resolve().parents[1] / "README.md"
N_TRAIN, N_TEST = 600, 200


# --------------------------------------------------------------------------- reading the README


@dataclass(frozen=True)
class Block:
    lang: str      # the fence's info string: "python", "bash", ""
    section: str   # the "## " heading it is under (sub-headings do not start a new section)
    line: int      # README line number of the block's first line of code
    code: str


def readme_blocks():
    blocks, section, fence = [], None, None
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        if fence is None:
            opening = re.match(r"^```(\S*)\s*$", line)
            if opening:
                fence = (opening.group(1), number + 1, [])
            elif line.startswith("## "):
                section = line[3:].strip()
        elif line.strip() == "```":
            blocks.append(Block(fence[0], section, fence[1], "\n".join(fence[2]) + "\n"))
            fence = None
        else:
            fence[2].append(line)
    assert fence is None, f"README.md: the code block opened at line {fence[1] - 1} is not closed"
    return blocks


def python_sections():
    sections = {}
    for block in readme_blocks():
        if block.lang == "python":
            sections.setdefault(block.section, []).append(block)
    return sections


def test_every_code_block_is_python_bash_or_plain_text():
    # A ```py or ```sh block would escape the tests below, which look for python and bash.
    langs = {block.lang for block in readme_blocks()}
    assert langs <= {"python", "bash", ""}, langs
    assert python_sections(), "README.md has no ```python block any more"


# --------------------------------------------------------------------------- the small data


@pytest.fixture(scope="module")
def small_mnist(tmp_path_factory):
    """A folder of the four IDX files holding 600 train / 200 test images of the real MNIST."""
    if not (FULL_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"full MNIST not found at {FULL_MNIST}: the README examples load it")
    folder = tmp_path_factory.mktemp("small_mnist")
    rng = np.random.default_rng(0)
    for subset, prefix, n in (("train", "train", N_TRAIN), ("test", "t10k", N_TEST)):
        X, y = load_mnist(subset, data_home=FULL_MNIST, as_images=True)
        keep = np.sort(rng.choice(len(X), size=n, replace=False))
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", X[keep])
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", y[keep])
    return folder


@pytest.fixture
def readme_env(small_mnist, tmp_path, monkeypatch):
    """What a user has who follows the README: data in $MNIST_ESTIMATORS_DATA (here the small
    folder), no MLFLOW_TRACKING_URI (so runs go to ./mlruns), tracking on (the `tracking` mark),
    and a working directory of their own."""
    import mlflow

    monkeypatch.setenv("MNIST_ESTIMATORS_DATA", str(small_mnist))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(None)  # no URI left over from another test in this process
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --------------------------------------------------------------------------- MLflow store checks


def store_runs(cwd):
    """Every run in ``cwd/mlruns`` (the README's default store), all experiments."""
    import mlflow

    db = cwd / "mlruns" / "mlflow.db"
    assert db.is_file(), f"no MLflow store at {db}: the examples were not tracked"
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(experiments, max_results=10000)


def assert_runs_complete(runs):
    """Every run FINISHED: none left RUNNING, none FAILED or KILLED (a pruned trial is a
    result: FINISHED, tagged optuna.pruned)."""
    assert runs
    for run in runs:
        status = run.info.status
        assert status == "FINISHED", (run.info.run_name, status)  # pruned trials too


def children(runs, parent):
    return [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


def named(runs, name):
    found = [r for r in runs if r.info.run_name == name]
    assert len(found) == 1, (name, sorted(r.info.run_name for r in runs))
    return found[0]


# --------------------------------------------------------------------------- python blocks

# Names a section uses but that the README defines only in an earlier section. The section
# "Every fit is tracked in MLflow" fits on `X, y`, which the README defines in the
# "Five-minute tour" (`X, y = load_mnist("train")`); a reader runs it after the tour, so it gets
# the tour's line, here on the small data. No other section needs a prelude.
PRELUDES = {
    "Every fit is tracked in MLflow": (
        "from mnist_estimators import load_mnist\n"
        "X, y = load_mnist('train')\n"),
}


def assigned_names(code):
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def check_tour(ns, cwd):
    X, X_test, clf, grid = ns["X"], ns["X_test"], ns["clf"], ns["grid"]
    # load_mnist read $MNIST_ESTIMATORS_DATA, at call time
    assert X.shape == (N_TRAIN, 784) and X.dtype == np.uint8 and X_test.shape == (N_TEST, 784)
    assert len(clf.history_) == clf.max_epochs == 10
    assert clf.score(X_test, ns["y_test"]) > 0.6
    n_candidates = len(grid.cv_results_["params"])
    assert n_candidates == 12 and grid.n_splits_ == 3 and set(grid.best_params_) == {
        "optimizer", "activation", "hidden_sizes"}
    client, runs = store_runs(cwd)
    assert_runs_complete(runs)
    # one run per fit: clf, every candidate x fold and the refit, cross_validate's 3 folds
    fits = [r.data.tags.get("estimator_class") for r in runs]
    assert fits.count("MLPClassifier") == 1 + n_candidates * grid.n_splits_ + 1, fits
    assert fits.count("SoftmaxRegressionClassifier") == 3, fits


def check_tracking(ns, cwd):
    import mlflow

    clf, X = ns["clf"], ns["X"]
    client, runs = store_runs(cwd)
    assert_runs_complete(runs)
    run = client.get_run(clf.last_run_id_)
    assert run.info.status == "FINISHED" and run.data.tags["model_uri"] == clf.last_model_uri_
    assert {"epoch/valid_acc", "summary/fit_time_s", "summary/n_epochs"} <= set(run.data.metrics)
    # the logged model gives the estimator's own predictions
    np.testing.assert_array_equal(ns["model"].predict(X[:50]), clf.predict(X[:50]))
    # the search: a parent with one child per candidate x fold, plus the refit
    search = named(runs, "GridSearchCV · mlp · 2 candidates × 3 folds")
    assert len(children(runs, search)) == 2 * 3 + 1
    assert "best_cv_score" in search.data.metrics
    # the cross-validation: a parent with its 3 folds and their mean
    cv = named(runs, "cv")
    assert len(children(runs, cv)) == 3 and "test_score_mean" in cv.data.metrics
    # the registered model and its alias
    version = client.get_model_version_by_alias("mnist-mlp", "champion")
    assert version.run_id == clf.last_run_id_
    champion = mlflow.pyfunc.load_model("models:/mnist-mlp@champion")
    np.testing.assert_array_equal(champion.predict(X[:50]), clf.predict(X[:50]))
    # the ensemble: a parent with a child per member, and the whole ensemble as its model
    vote = named(runs, "VotingClassifier · mlp + softmax (soft)")
    assert vote.info.run_id == ns["vote"].last_run_id_
    assert sorted(r.info.run_name for r in children(runs, vote)) == ["mlp-256-128", "softmax"]
    np.testing.assert_array_equal(ns["ensemble"].predict(X[:50]), ns["vote"].predict(X[:50]))


def check_study(ns, cwd):
    import optuna

    result, X = ns["result"], ns["X"]
    assert X.shape == (N_TRAIN, 784)
    assert 0 < result.best_value <= 1 and result.best_params
    assert result.best_estimator.predict(X[:10]).shape == (10,)
    study = optuna.load_study(study_name="mlp", storage="sqlite:///studies.db")
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 30, states
    client, runs = store_runs(cwd)
    assert_runs_complete(runs)
    parent = named(runs, "mlp")
    trials = [r for r in runs if "optuna.trial" in r.data.tags]
    assert len(trials) == 30 and all(r in children(runs, parent) for r in trials)
    pruned = [r for r in trials if "optuna.pruned" in r.data.tags]
    assert len(pruned) == states.count("PRUNED")
    assert parent.data.metrics["best_value"] == pytest.approx(result.best_value)


# section -> what its examples must have done (beyond raising nothing)
CHECKS = {
    "Five-minute tour": check_tour,
    "Every fit is tracked in MLflow": check_tracking,
    "Hyperparameter studies (Optuna)": check_study,
}


# `tracking`: the examples are tracked, as a user's are (tests without the mark run with it off).
@pytest.mark.parametrize("section", list(python_sections()))
@pytest.mark.tracking
@pytest.mark.full_mnist
@pytest.mark.slow
def test_python_examples_run_as_written(section, readme_env):
    from mnist_estimators import tracking

    blocks = python_sections()[section]
    ns = {"__name__": "__main__"}
    prelude = PRELUDES.get(section)
    if prelude is not None:
        # a prelude only supplies what the section itself leaves undefined
        defined = set().union(*(assigned_names(b.code) for b in blocks)) - {"load_mnist"}
        overlap = assigned_names(prelude) & defined
        assert not overlap, f"README section {section!r} now defines {overlap}: drop its prelude"
        exec(compile(prelude, f"<prelude of {section}>", "exec"), ns)
    try:
        for block in blocks:
            # compiled at its README line numbers: a traceback points into README.md
            code = compile("\n" * (block.line - 1) + block.code, str(README), "exec")
            exec(code, ns)
    finally:
        tracking.autolog(False)  # the tracking section turns it on for this whole process
    CHECKS.get(section, lambda ns, cwd: None)(ns, readme_env)
    if (readme_env / "mlruns" / "mlflow.db").is_file():
        assert_runs_complete(store_runs(readme_env)[1])


# --------------------------------------------------------------------------- command lines

BASH_SECTIONS = ("Every fit is tracked in MLflow", "Hyperparameter studies (Optuna)",
                 "The seed experiments", "Command line")
# Command lines that are not run, and why. The set-up commands are test_readme.py's.
NOT_RUN = {
    ("mnist-estimators", "ui"): "starts the MLflow UI server, which runs until stopped",
    ("mlflow", "models", "serve"): "starts a REST server, which runs until stopped",
    ("pip", "install"): "installs optuna-dashboard from the network and starts its server",
}
PLACEHOLDER = re.compile(r"\b(RUN_ID|MODEL_ID)\b")  # the reader substitutes their own id


def readme_commands():
    """(README line, argv) of each command line to run, in README order, and the skipped ones."""
    run, skipped = [], []
    blocks = [b for b in readme_blocks() if b.lang == "bash"]
    for section in BASH_SECTIONS:
        assert any(b.section == section for b in blocks), f"README has no bash block under {section!r}"
    for block in blocks:
        if block.section not in BASH_SECTIONS:
            continue
        for offset, line in enumerate(block.code.splitlines()):
            argv = shlex.split(line, comments=True)  # "# ..." comments dropped
            if not argv:
                continue
            where = f"README.md:{block.line + offset}"
            reason = next((why for prefix, why in NOT_RUN.items()
                           if tuple(argv[:len(prefix)]) == prefix), None)
            if reason is None and PLACEHOLDER.search(line):
                reason = "holds a placeholder id"
            if reason is not None:
                skipped.append((where, line, reason))
                continue
            assert argv[0] == "mnist-estimators", f"{where}: no rule for running {line!r}"
            assert not {"&&", "||", "|", ";", ">", "<"} & set(argv), (
                f"{where}: a shell construct in {line!r}; these lines run without a shell")
            run.append((where, argv))
    return run, skipped


def write_digit_pngs(folder, X):
    """The user's `my_digits/` folder: real MNIST test digits drawn as a user's own would be,
    dark ink on white, 112x112 PNGs (predict inverts, crops and rescales them)."""
    from PIL import Image

    folder.mkdir()
    for i, image in enumerate(X):
        Image.fromarray(255 - image.reshape(28, 28)).resize((112, 112), Image.BILINEAR).save(
            folder / f"digit_{i}.png")
    return sorted(folder.glob("*.png"))


def check_command(argv, out, cwd, pngs):
    """What each subcommand must have made or printed (exit status 0 is checked before)."""
    command = argv[1]
    if command == "demo":
        for name in ("softmax", "mlp", "cnn"):
            assert (cwd / "models" / f"{name}.pkl").is_file()
            assert re.search(rf"^\| {name} \| 0\.\d{{4}} \|", out, re.M), out[-2000:]
    elif command == "train":
        output = argv[argv.index("-o") + 1]
        assert (cwd / output).is_file() and f"saved to {output}" in out
    elif command == "evaluate":
        n = len(list((cwd / argv[argv.index("--images") + 1]).glob("*/*.png"))) \
            if "--images" in argv else N_TEST
        accuracy = re.search(rf"^accuracy (\d\.\d{{4}}) on {n} images", out, re.M)
        assert accuracy and 0 <= float(accuracy.group(1)) <= 1, out
    elif command == "predict":
        fmt = argv[argv.index("--format") + 1] if "--format" in argv else "text"
        inputs = [a for i, a in enumerate(argv[3:], 3) if not a.startswith("--")
                  and argv[i - 1] != "--format"]
        expected = [p.name for a in inputs for p in (
            sorted((cwd / a).glob("*.png")) if (cwd / a).is_dir() else [cwd / a])]
        assert expected and set(expected) <= {p.name for p in pngs}, (inputs, expected)
        if fmt == "csv":
            import csv
            import io

            rows = [(r["file"], r["digit"], r["probability"])
                    for r in csv.DictReader(io.StringIO(out))]
        else:
            rows = [tuple(line.split()) for line in out.splitlines()]
        assert [Path(r[0]).name for r in rows] == expected, out  # one row per image, in order
        for _, label, probability in rows:
            assert label in "0123456789" and len(label) == 1 and 0 < float(probability) <= 1
    elif command == "experiment" and argv[2] == "gradcheck":
        assert "every difference is within eps² = 0.0001" in out, out
    elif command == "reproduce":
        seeds = argv[argv.index("--seeds") + 1:]
        for seed in seeds:
            assert (cwd / "models" / f"{argv[2]}-seed{seed}.pkl").is_file()
        assert re.search(rf"test accuracy 0\.\d+ \+- 0\.\d+ over {len(seeds)} seed\(s\)", out), out
    elif command == "tune":
        import optuna

        storage, name = argv[argv.index("--storage") + 1], argv[argv.index("--study-name") + 1]
        study = optuna.load_study(study_name=name, storage=storage)
        states = [t.state.name for t in study.trials]
        assert states.count("COMPLETE") + states.count("PRUNED") == int(
            argv[argv.index("--trials") + 1]), states
        assert "best value 0." in out
    elif command == "experiment" and argv[2] == "list":
        assert re.search(r"^seed004-init +seed 004 ", out, re.M), out
    elif command == "experiment":  # run, report: the markdown report on stdout
        assert re.search(r"^\| ReLU \| 5 \| 0\.\d{4} ± 0\.\d{4} \|", out, re.M), out
        if "--output" in argv:
            folder = cwd / argv[argv.index("--output") + 1]
            assert (folder / "report.md").read_text().strip() == out.strip()
    elif command == "search":
        assert re.search(r"best cv score 0\.\d{4} with \{", out), out


@pytest.mark.timeout(900)
@pytest.mark.tracking
@pytest.mark.full_mnist
@pytest.mark.slow
def test_command_lines_run_as_written(readme_env):
    commands, skipped = readme_commands()
    assert commands
    env = dict(os.environ)  # MNIST_ESTIMATORS_DATA set, MLFLOW_TRACKING_URI unset: readme_env
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    assert shutil.which("mnist-estimators", path=env["PATH"]), "the console script is not installed"
    # `predict mlp.pkl my_digits/` reads the user's own images: made here, before the commands.
    X_test, y_test = load_mnist("test")
    pngs = write_digit_pngs(readme_env / "my_digits", X_test[:6])
    seven = write_digit_pngs(readme_env / "sevens", X_test[y_test == 7][:1])[0]  # `seven.png`
    pngs.append(seven.rename(readme_env / "seven.png"))
    # `evaluate mlp.pkl --images drawings/`: the drawing page's labelled folder, drawn here
    from mnist_estimators import strokes

    strokes.make_set(readme_env / "drawings", per_digit=3)
    for where, argv in commands:
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=readme_env, env=env, capture_output=True, text=True,
                              timeout=600)
        print(f"{where}: {shlex.join(argv[:3])} ... {time.perf_counter() - start:.1f} s")
        assert proc.returncode == 0, (
            f"{where}: {shlex.join(argv)} exited {proc.returncode}\n--- stdout\n"
            f"{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")
        check_command(argv, proc.stdout, readme_env, pngs)
    for where, line, reason in skipped:
        print(f"{where}: not run, {reason}: {line}")
    ran = {argv[1] for _, argv in commands}
    assert {"demo", "train", "evaluate", "predict", "reproduce", "tune", "search",
            "experiment"} <= ran, ran
    assert {line.split()[0] for _, line, _ in skipped} <= {"mnist-estimators", "mlflow", "pip"}
    _, runs = store_runs(readme_env)
    assert_runs_complete(runs)
