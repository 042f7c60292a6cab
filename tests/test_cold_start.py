"""The first call of a fresh process: what importing the package and the command line load.

Each test runs a new Python process, the way a user's script or shell starts one, and looks at
``sys.modules`` there. No wall-clock time is asserted (benchmarks/bench_coldstart.py times it).
"""

import json
import os
import pickle
import subprocess
import sys
import textwrap

import pytest

from mnist_estimators import cli
from mnist_estimators.estimators import ESTIMATORS

HEAVY = ("torch", "sklearn", "skorch", "numpy", "mlflow", "optuna", "pandas", "matplotlib",
         "fastapi", "PIL", "scipy")


def _fresh(code, *args, env=None, cwd=None):
    """Run ``code`` in a new interpreter; it prints one JSON line last, returned parsed."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=300, env=env, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


_CLI = """
    import contextlib, io, json, sys
    from mnist_estimators.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(sys.argv[1:])
        except SystemExit as exc:
            code = exc.code
    heavy = sorted(m for m in {heavy!r} if m in sys.modules)
    print(json.dumps({{"code": code, "out": out.getvalue(), "err": err.getvalue(), "heavy": heavy}}))
""".format(heavy=HEAVY)


@pytest.mark.parametrize("argv", [
    ["--help"], ["demo", "--help"], ["train", "--help"], ["evaluate", "--help"],
    ["predict", "--help"], ["tune", "--help"], ["search", "--help"], ["reproduce", "--help"],
    ["draw", "--help"], ["ui", "--help"], ["runs", "--help"], ["experiment", "--help"],
])
def test_help_imports_nothing_heavy(argv):
    got = _fresh(_CLI, *argv)
    assert got["code"] == 0 and "usage: mnist-estimators" in got["out"]
    assert got["heavy"] == []


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "svm", "-o", "x.pkl"], "invalid choice: 'svm'"),
    (["train", "--model", "mlp"], "the following arguments are required: -o/--output"),
    (["train", "--model", "mlp", "-o", "x.pkl", "--param", "lr"], "expected KEY=VALUE"),
    (["tune", "--pipeline", "nope"], "invalid choice: 'nope'"),
    (["experiment", "explode"], "invalid choice: 'explode'"),
    (["nothing"], "invalid choice: 'nothing'"),
    (["predict", "m.pkl", "a.png", "--turn", "120"], "expected degrees from 0 to 90, got '120'"),
])
def test_bad_arguments_are_refused_before_anything_heavy_is_imported(argv, message):
    got = _fresh(_CLI, *argv)
    assert got["code"] == 2 and message in got["err"]
    assert got["heavy"] == []


def test_the_cli_knows_the_estimators_by_name_without_importing_them():
    assert list(cli.ESTIMATOR_NAMES) == list(ESTIMATORS)


def test_importing_the_package_imports_nothing_heavy_and_names_still_resolve():
    got = _fresh("""
        import json, sys
        import mnist_estimators
        light = sorted(m for m in %r if m in sys.modules)
        from mnist_estimators import MLPClassifier, load_sample, tracking
        print(json.dumps({"light": light, "est": MLPClassifier.__module__,
                          "sample": load_sample.__module__, "tracking": tracking.__name__,
                          "all": sorted(mnist_estimators.__all__) == sorted(
                              n for n in mnist_estimators.__all__
                              if getattr(mnist_estimators, n, None) is not None)}))
    """ % (HEAVY,))
    assert got["light"] == []
    assert got == {"light": [], "est": "mnist_estimators.estimators",
                   "sample": "mnist_estimators.data", "tracking": "mnist_estimators.tracking",
                   "all": True}


def test_an_unknown_name_is_an_attribute_error():
    import mnist_estimators

    with pytest.raises(AttributeError, match="has no attribute 'NoSuchThing'"):
        mnist_estimators.NoSuchThing  # noqa: B018


def test_importing_the_estimators_loads_tracking_and_its_sklearn_wrappers():
    # A script that names the estimators first and scikit-learn's functions after gets the
    # wrapped functions; MLflow itself is not imported until a fit needs it.
    got = _fresh("""
        import json, sys
        import mnist_estimators
        before = "mnist_estimators.tracking" in sys.modules
        from mnist_estimators import MLPClassifier
        from sklearn.model_selection import cross_validate
        from mnist_estimators.tracking import sklearn_autolog
        print(json.dumps({"before": before, "after": "mnist_estimators.tracking" in sys.modules,
                          "wrapped": cross_validate.__wrapped__ is sklearn_autolog.installed()[
                              "sklearn.model_selection.cross_validate"],
                          "pipeline": "Pipeline.fit" in sklearn_autolog.installed(),
                          "mlflow": "mlflow" in sys.modules}))
    """)
    assert got == {"before": False, "after": True, "wrapped": True, "pipeline": True,
                   "mlflow": False}


def test_an_estimator_unpickled_in_a_fresh_process_loads_tracking(tmp_path):
    path = tmp_path / "est.pkl"
    path.write_bytes(pickle.dumps(ESTIMATORS["softmax"](max_epochs=1)))
    got = _fresh("""
        import json, pickle, sys
        est = pickle.load(open(sys.argv[1], "rb"))
        from mnist_estimators.tracking import sklearn_autolog
        print(json.dumps({"tracking": "mnist_estimators.tracking" in sys.modules,
                          "wrapped": "Pipeline.fit" in sklearn_autolog.installed()}))
    """, str(path))
    assert got == {"tracking": True, "wrapped": True}


_FIRST_FIT = """
    import json, sys
    from mnist_estimators import MLPClassifier, load_sample
    X, y = load_sample()
    X, y = X[::7], y[::7]  # every digit
    est = MLPClassifier(max_epochs=3, batch_size=32, random_state=0).fit(X, y)
    import mlflow
    client = mlflow.MlflowClient()
    run = client.get_run(est.last_run_id_)
    print(json.dumps({
        "uri": mlflow.get_tracking_uri(), "status": run.info.status,
        "steps": [m.step for m in client.get_metric_history(run.info.run_id, "epoch/train_loss")],
        "model": run.data.tags.get("model_uri", ""), "params": run.data.params.get("max_epochs"),
        "datasets": len(run.inputs.dataset_inputs), "name": run.data.tags["mlflow.runName"],
        "user": "mlflow.user" in run.data.tags,
        "figures": sorted(a.path for a in client.list_artifacts(run.info.run_id, "figures")),
        "agg": [m for m in ("matplotlib.figure", "matplotlib.backends.backend_agg")
                if m in sys.modules]}))
"""


@pytest.mark.parametrize("store", ["new", "existing"])
def test_the_first_tracked_fit_of_a_fresh_process_is_whole_when_fit_returns(tmp_path, store):
    # MLflow's import and the store's creation or migration all land in this fit: the run is
    # still whole when fit returns.
    pytest.importorskip("mlflow")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MNIST_ESTIMATORS_TRACKING"] = "1"
    if store == "existing":
        _fresh(_FIRST_FIT, env=env, cwd=tmp_path)
    got = _fresh(_FIRST_FIT, env=env, cwd=tmp_path)
    assert got["uri"] == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert got["status"] == "FINISHED"
    assert got["steps"] == [1, 2, 3] and got["model"].startswith("models:/")
    assert got["params"] == "3" and got["datasets"] == 1 and got["user"]
    assert got["name"].startswith("mlp 256-128")
    # the default figures are drawn with Pillow: matplotlib's canvas is never imported for them
    assert got["figures"] == ["figures/confusion_matrix.png", "figures/misclassified.png",
                              "figures/reliability_diagram.png"] and got["agg"] == []


def test_predict_leaves_tracking_and_mlflow_unimported(tmp_path):
    # predict only applies a model: the estimators come without the tracking plugin (its
    # scikit-learn wrappers import sklearn.ensemble), and the answer is the model's own
    from mnist_estimators import load_sample
    from mnist_estimators.persistence import save_model
    from PIL import Image

    X, y = load_sample()
    model = ESTIMATORS["softmax"](max_epochs=2, random_state=0, tracking=False).fit(X, y)
    save_model(model, tmp_path / "m.pkl")
    Image.fromarray(X[0].reshape(28, 28)).save(tmp_path / "one.png")
    got = _fresh(_CLI.replace(repr(HEAVY), repr(HEAVY + (
        "mnist_estimators.tracking", "sklearn.ensemble"))), "predict", str(tmp_path / "m.pkl"),
        str(tmp_path / "one.png"))
    assert got["code"] == 0, got["err"]
    assert got["out"].split()[:2] == [str(tmp_path / "one.png"), str(model.predict(X[:1])[0])]
    assert "mlflow" not in got["heavy"] and "mnist_estimators.tracking" not in got["heavy"]
    assert "sklearn.ensemble" not in got["heavy"]


def test_a_fit_after_deferred_plugins_still_loads_tracking(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MNIST_ESTIMATORS_TRACKING"] = "1"
    got = _fresh("""
        import json, sys
        from mnist_estimators import hooks
        hooks.defer_plugins()
        from mnist_estimators import SoftmaxRegressionClassifier, load_sample
        before = "mnist_estimators.tracking" in sys.modules
        X, y = load_sample()
        est = SoftmaxRegressionClassifier(max_epochs=1).fit(X, y)
        print(json.dumps({"before": before, "run": est.last_run_id_ is not None}))
    """, env=env, cwd=tmp_path)
    assert got == {"before": False, "run": True}
