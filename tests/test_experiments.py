"""The experiment suite end to end: real fits, a real MLflow store, real processes (loky
workers, a CLI killed mid-run, a Dask LocalCluster)."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from mnist_estimators.experiments import runner, spec
from mnist_estimators.tracking import open_store
from mnist_estimators.experiments.spec import ExperimentError

from conftest import write_sample_mnist

pytestmark = pytest.mark.tracking

# Two small experiments of the suite's own shape (the packaged ones are checked below too):
# a one-axis MLP study and a two-axis softmax one, each cell ~1 s.
ONE_AXIS = """
name = "t-activation"
source = "002"
title = "activations"
estimator = "mlp"
seeds = 2
baseline = "relu"
cell_figures = ["weight_histograms", "embedding"]
embedding = "pca"
[base]
hidden_sizes = [16]
batch_size = 64
[[axes]]
param = "activation"
values = ["relu", "tanh"]
labels = ["relu", "tanh"]
[seed_reported]
relu = "0.9769"
[[claims]]
text = "relu and tanh are within noise"
kind = "similar"
a = "relu"
b = "tanh"
[protocols.quick]
params = { max_epochs = 2 }
train_size = 300
test_size = 200
"""

TWO_AXES = """
name = "t-softmax-grid"
title = "softmax lr x batch"
estimator = "softmax"
seeds = 2
[[axes]]
param = "lr"
values = [0.001, 0.01]
[[axes]]
param = "batch_size"
values = [32, 128]
[protocols.quick]
params = { max_epochs = 1 }
train_size = 300
test_size = 200
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh folder with a small real MNIST (from the tests' sample) as the data home, the
    default ./mlruns store, and the two experiment files."""
    data = write_sample_mnist(tmp_path / "data")
    (tmp_path / "one.toml").write_text(ONE_AXIS)
    (tmp_path / "two.toml").write_text(TWO_AXES)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MNIST_ESTIMATORS_DATA", str(data))
    mlflow.set_tracking_uri(None)
    return tmp_path


def client_of(folder):
    return mlflow.MlflowClient(f"sqlite:///{folder}/mlruns/mlflow.db")


def children(client, parent_id):
    exp = client.get_run(parent_id).info.experiment_id
    return client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
                              max_results=1000)


def test_two_experiments_end_to_end_with_two_workers_then_a_rerun_trains_nothing(workdir):
    one = runner.run("one.toml", protocol="quick", n_jobs=2, progress=False)
    two = runner.run("two.toml", protocol="quick", n_jobs=2, progress=False)
    assert len(one.ran) == 4 and len(two.ran) == 8 and one.skipped == two.skipped == 0
    assert {r["outcome"] for r in one.ran + two.ran} == {"ok"}
    assert len({r["run_id"] for r in one.ran}) == 4

    client = client_of(workdir)
    # one MLflow experiment per suite experiment, one parent per protocol, a child per cell
    parent = client.get_run(one.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.info.run_name == "t-activation · quick"
    assert parent.data.tags["experiment.protocol"] == "quick"
    assert parent.data.tags["seed.relu"] == "0.9769"  # the seed's figure beside ours
    runs = children(client, one.parent_run_id)
    assert sorted(r.info.run_name for r in runs) == [
        "relu · seed 0", "relu · seed 1", "tanh · seed 0", "tanh · seed 1"]
    # the parent carries the training data, named and digested as each cell's
    (data,) = [d.dataset for d in parent.inputs.dataset_inputs]
    assert data.name == "mnist-subset-train"  # the quick protocol's draw from the train set
    for r in runs:
        assert [(d.dataset.name, d.dataset.digest) for d in r.inputs.dataset_inputs] == [
            (data.name, data.digest)]
    for r in runs:
        assert r.data.tags["experiment.outcome"] == "ok" and r.info.status == "FINISHED"
        assert 0 < r.data.metrics["test_accuracy"] <= 1 and "train_accuracy" in r.data.metrics
        assert r.data.params["hidden_sizes"] == "(16,)" and r.data.params["max_epochs"] == "2"
        assert "model_uri" not in r.data.tags  # a quick run's cells keep no model
    # the fits ran in two worker processes, with one torch thread each on this 2-core machine
    assert len({r.data.tags["mnist_estimators.pid"] for r in runs} - {str(os.getpid())}) >= 1
    names = sorted(r.info.run_name for r in children(client, two.parent_run_id))
    assert names[0] == "lr=0.001 · batch_size=128 · seed 0" and len(names) == 8

    # the report: a table row per value, the seed's figure, the claim, logged on the parent
    md = one.report.markdown
    assert "| relu |" in md and "0.9769" in md and "relu and tanh are within noise" in md
    assert "quick" in md
    artifacts = {a.path for a in client.list_artifacts(one.parent_run_id)}
    assert {"report.md", "results.json"} <= artifacts
    # cell_figures: each value's seed-0 run draws them, and the report shows them side by side
    for r in runs:
        drawn = {a.path for a in client.list_artifacts(r.info.run_id, "figures")}
        wanted = {"figures/weight_histograms.png", "figures/embedding.png"}
        assert (wanted <= drawn) == (r.data.tags["experiment.seed"] == "0"), r.info.run_name
    assert sorted(one.report.images) == [
        "cells/relu/embedding.png", "cells/relu/weight_histograms.png",
        "cells/tanh/embedding.png", "cells/tanh/weight_histograms.png"]
    assert all(data.startswith(b"\x89PNG") for data in one.report.images.values())
    assert "## Seed 0 of each value" in md and "(figures/cells/tanh/embedding.png)" in md
    cells = {a.path for a in client.list_artifacts(one.parent_run_id, "figures/cells/relu")}
    assert cells == {"figures/cells/relu/weight_histograms.png", "figures/cells/relu/embedding.png"}

    # the same command again: every cell is done, nothing is trained, the report is the same
    again = runner.run("one.toml", protocol="quick", n_jobs=2, progress=False)
    assert again.ran == [] and again.skipped == 4 and again.parent_run_id == one.parent_run_id
    assert len(children(client, one.parent_run_id)) == 4
    # --force reruns every cell
    forced = runner.run("one.toml", protocol="quick", n_seeds=1, force=True, progress=False)
    assert len(forced.ran) == 2


RUN_CLI = [sys.executable, "-m", "mnist_estimators.cli", "experiment", "run", "two.toml",
           "--protocol", "quick", "--n-jobs", "1", "-q"]


@pytest.mark.timeout(300)
def test_an_interrupted_run_resumes_with_the_missing_cells_only(workdir):
    # cells of a few seconds each, so that Ctrl-C surely lands while cells are left and one
    # fits (at 150 epochs a cell took 0.2-0.8 s on a fast host, and the signal landed between
    # two: no run KILLED)
    (workdir / "two.toml").write_text(TWO_AXES.replace("max_epochs = 1", "max_epochs = 1000"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # SIGINT back to its default in the child: a shell runs background jobs (CI under nohup
    # or `&`) with SIGINT ignored, the child inherits that, and Python then never turns
    # SIGINT into KeyboardInterrupt
    proc = subprocess.Popen(RUN_CLI, cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 200
        done = running = 0
        # let a cell finish and the next one start, then Ctrl-C: a signal that lands between two
        # cells leaves no fit to kill
        while time.time() < deadline and (done < 1 or running < 1):
            time.sleep(0.5)
            if (workdir / "mlruns" / "mlflow.db").exists():
                # through open_store, which waits for the store's creation under its lock (a
                # bare MlflowClient would race the CLI to create the tables)
                client = open_store(f"sqlite:///{workdir}/mlruns/mlflow.db",
                                    (workdir / "mlruns" / "artifacts").as_uri())
                exps = [e.experiment_id for e in client.search_experiments()]
                done = len(client.search_runs(exps, "tags.`experiment.outcome` = 'ok'"))
                running = len(client.search_runs(
                    exps, "tags.`experiment.cell_id` LIKE '%' and attributes.status = 'RUNNING'"))
        assert done >= 1 and running >= 1, "no cell finished and another started in time"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted" in err

    # a report of the unfinished store counts what is missing and judges no claim on it
    partial = subprocess.run([sys.executable, "-m", "mnist_estimators.cli", "experiment",
                              "report", "two.toml", "--protocol", "quick"],
                             cwd=workdir, capture_output=True, text=True, timeout=120)
    assert partial.returncode == 0, partial.stderr
    missing = int(re.search(r"\*\*(\d+) of 8 cells have no result yet\*\*", partial.stdout)[1])
    assert 1 <= missing <= 7

    again = subprocess.run(RUN_CLI, cwd=workdir, env=env, capture_output=True, text=True,
                           timeout=240)
    assert again.returncode == 0, again.stderr
    ran, skipped = (int(x) for x in
                    __import__("re").search(r"(\d+) cell\(s\) run, (\d+) already done",
                                            again.stderr).groups())
    assert ran + skipped == 8 and skipped >= 1 and ran >= 1
    # every cell has exactly one result now; the interrupted fit's run says KILLED
    client = client_of(workdir)
    results = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                 filter_string="tags.`experiment.outcome` = 'ok'")
    assert len({r.data.tags["experiment.cell_id"] for r in results}) == 8
    assert "| lr=0.01 · batch_size=32 |" in again.stdout  # the report, on stdout
    assert "have no result yet" not in again.stdout
    # the interrupted attempt names the run that replaced it, and the UI filter for the
    # latest run of each cell shows one run a cell
    everything = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                    filter_string="tags.`experiment.cell_id` LIKE '%'")
    by_id = {r.info.run_id: r for r in everything}
    killed = [r for r in everything if r.info.status == "KILLED"]
    assert killed
    for run in killed:
        result = by_id[run.data.tags["experiment.superseded"]]
        assert result.data.tags["experiment.cell_id"] == run.data.tags["experiment.cell_id"]
        assert result.info.status == "FINISHED"
    latest = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                filter_string="tags.`experiment.superseded` = 'no'")
    assert sorted(r.data.tags["experiment.cell_id"] for r in latest) == \
        sorted(r.data.tags["experiment.cell_id"] for r in results)

    # and the report rebuilds from the store alone
    rebuilt = subprocess.run([sys.executable, "-m", "mnist_estimators.cli", "experiment",
                              "report", "two.toml", "--protocol", "quick", "--output", "rep"],
                             cwd=workdir, capture_output=True, text=True, timeout=120)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout == again.stdout
    assert (workdir / "rep" / "report.md").read_text().strip() == rebuilt.stdout.strip()


def _running(pid):
    """Is ``pid`` a live process (not gone, not a zombie waiting to be reaped)?"""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children_of(pid):
    """The pids of the live processes whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


@pytest.mark.timeout(300)
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_loky_workers_do_not_outlive_a_sigkilled_experiment_run(workdir):
    # cells long enough to be mid-fit in both workers when the parent is SIGKILLed: at 400
    # epochs a cell took 0.6-2 s on a fast host, and both workers had finished theirs between the
    # poll that saw them fitting and the kill (every cell FINISHED, none KILLED); the kill comes
    # as soon as both fit, so longer cells cost the test nothing
    (workdir / "two.toml").write_text(TWO_AXES.replace("max_epochs = 1", "max_epochs = 5000"))
    cli = [a if a != "1" else "2" for a in RUN_CLI]  # --n-jobs 2
    proc = subprocess.Popen(cli, cwd=workdir, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, workers = time.time() + 200, []
        while time.time() < deadline and len(workers) < 2:
            time.sleep(0.5)
            if (workdir / "mlruns" / "mlflow.db").exists():
                client = open_store(f"sqlite:///{workdir}/mlruns/mlflow.db",
                                    (workdir / "mlruns" / "artifacts").as_uri())
                exps = [e.experiment_id for e in client.search_experiments()]
                running = client.search_runs(exps, "attributes.status = 'RUNNING'")
                # two cells' runs RUNNING: both workers are fitting
                if len([r for r in running if "experiment.cell_id" in r.data.tags]) >= 2:
                    workers = [c for c in _children_of(proc.pid)
                               if "loky" in Path(f"/proc/{c}/cmdline").read_bytes().decode(
                                   errors="replace")]
        assert len(workers) >= 2, "the workers never started fitting"
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.time() + 45
        while time.time() < deadline and any(map(_running, workers)):
            time.sleep(0.5)
        alive = [w for w in workers if _running(w)]
        assert not alive, f"loky workers {alive} outlived their SIGKILLed parent"
        # their cells' runs ended KILLED (SIGTERM stops a fit at its next batch), not RUNNING
        cells = [r for r in client.search_runs(exps) if "experiment.cell_id" in r.data.tags]
        assert "RUNNING" not in {r.info.status for r in cells}
        assert "KILLED" in {r.info.status for r in cells}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_every_packaged_experiment_loads_and_expands():
    found = spec.available()
    assert "seed004-init" in found
    for name, path in found.items():
        exp = spec.load(path)
        assert exp.name == name and exp.source
        for protocol in ("quick", "fast", "faithful"):
            cells = exp.cells(protocol)
            assert len({c.id for c in cells}) == len(cells), (name, protocol)


@pytest.mark.parametrize("change, message", [
    (lambda t: t.replace('param = "activation"', 'param = "activaton"'),
     r"one\.toml: axes\[0\] value 'relu' sets \['activaton'\], which MLPClassifier does not have"),
    (lambda t: t.replace('baseline = "relu"', 'baseline = "gelu"'),
     r"baseline names 'gelu', which is not one of the values"),
    (lambda t: t.replace('kind = "similar"', 'kind = "roughly"'),
     r"has kind 'roughly', not one of"),
    (lambda t: t.replace('estimator = "mlp"', 'estimator = "rnn"'), r"estimator 'rnn' is not one of"),
    (lambda t: t + "\n[protocols.medium]\n", r"protocol 'medium' is not one of"),
    (lambda t: t.replace('"embedding"]', '"saliency"]'), r"cell_figures \['saliency'\] are not among"),
])
def test_a_bad_experiment_file_is_named_with_what_is_wrong(workdir, change, message):
    (workdir / "one.toml").write_text(change(ONE_AXIS))
    with pytest.raises(ExperimentError, match=message):
        runner.run("one.toml", protocol="quick", progress=False)
    assert not (workdir / "mlruns").exists()  # nothing started


def test_bad_names_protocols_and_unreachable_engines_fail_before_training(workdir, capsys):
    from mnist_estimators.cli import main

    assert main(["experiment", "run", "no-such-experiment"]) == 2
    assert "Unknown experiment 'no-such-experiment'; choose one of" in capsys.readouterr().err
    assert main(["experiment", "run", "one.toml", "--protocol", "fast"]) == 2
    assert "has no protocol 'fast'; it has ['quick']" in capsys.readouterr().err
    assert main(["experiment", "run", "one.toml", "--protocol", "quick", "--backend", "dask",
                 "--scheduler", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    # given up after the connect timeout passed to distributed (10 s), not its default of 30 s:
    # distributed's own message says which it used
    assert "The Dask scheduler at tcp://127.0.0.1:9 could not be reached within 10 s" in err
    assert re.search(r"Timed out trying to connect to tcp://127\.0\.0\.1:9 after 10(\.0)? s", err), err
    assert not (workdir / "mlruns").exists()
    os.environ["MLFLOW_TRACKING_URI"] = "http://127.0.0.1:9"
    try:
        assert main(["experiment", "run", "one.toml", "--protocol", "quick"]) == 2
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    err = capsys.readouterr().err
    assert "The MLflow tracking store http://127.0.0.1:9 cannot be used" in err
    assert "unset MLFLOW_TRACKING_URI" in err
    assert not (workdir / "mlruns").exists()


def test_experiment_list_names_each_with_its_seed(capsys):
    from mnist_estimators.cli import main

    assert main(["experiment", "list"]) == 0
    out = capsys.readouterr().out
    assert "seed004-init" in out and "seed 004" in out


def test_run_all_runs_every_experiment_of_the_folder_in_turn(workdir, monkeypatch, capsys):
    from mnist_estimators.cli import main

    # the packaged folder, swapped for one holding the two small experiments
    folder = workdir / "suite"
    folder.mkdir()
    (folder / "one.toml").write_text(ONE_AXIS)
    (folder / "two.toml").write_text(TWO_AXES)
    monkeypatch.setattr(spec, "folder", lambda: folder)
    assert main(["experiment", "run", "all", "--protocol", "quick", "--seeds", "1", "-q",
                 "--output", "reports"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n# ") + out.startswith("# ") == 2  # two reports
    for name in ("t-activation", "t-softmax-grid"):
        assert (workdir / "reports" / f"{name}-quick" / "report.md").is_file()
