"""MLflow tracking across real processes: fresh stores opened by many processes at once, loky
workers, SIGKILL and SIGTERM mid-fit, short-lived scripts, concurrent `mnist-estimators tune`
workers on one study, and tracking failures inside worker processes.

No mocks: every test starts child Python processes (``sys.executable``) in a fresh folder, with
the default store (``./mlruns/mlflow.db``), then inspects that store from here.
"""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.entities import ViewType

from conftest import (X_TEST, X_TRAIN, Y_TRAIN, assert_exactly_n_trials,
                      wait_for_a_run_with_metrics, write_idx)

pytestmark = pytest.mark.tracking

PY = sys.executable

# What every child script starts with: a fixed random subset of the bundled sample (sorted by
# class, so its first rows are all zeros) holding all ten digits.
PRELUDE = textwrap.dedent("""\
    import json, os, sys, time
    import numpy as np
    from mnist_estimators import load_sample
    X, y = load_sample()
    _idx = np.random.default_rng(0).permutation(len(X))[:{n}]
    X, y = X[_idx], y[_idx]
    assert len(np.unique(y)) == 10
""")

# A callback that makes each epoch last a while, so a fit can be killed mid-way.
SLOW = textwrap.dedent("""\
    from skorch.callbacks import Callback

    class Slow(Callback):
        def on_epoch_end(self, net, **kwargs):
            time.sleep(0.3)
""")


# --------------------------------------------------------------------------- helpers


def child_env(**extra):
    env = dict(os.environ)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        env.pop(name, None)
    env["MNIST_ESTIMATORS_TRACKING"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env["OMP_NUM_THREADS"] = "1"  # many children share few cores: no torch oversubscription
    env.update(extra)
    return env


def script(folder, body, n=300, name="child.py"):
    path = Path(folder) / name
    path.write_text(PRELUDE.format(n=n) + textwrap.dedent(body))
    return path


def run(args, cwd, timeout, env=None):
    """Run a child to its end; returns the CompletedProcess (text stdout and stderr)."""
    return subprocess.run(args, cwd=cwd, env=env or child_env(), capture_output=True, text=True,
                          timeout=timeout)


def start(args, cwd, name, env=None):
    """Start a child whose stdout and stderr go to files NAME.out / NAME.err in ``cwd``."""
    out = open(Path(cwd) / f"{name}.out", "w")
    err = open(Path(cwd) / f"{name}.err", "w")
    proc = subprocess.Popen(args, cwd=cwd, env=env or child_env(), stdout=out, stderr=err,
                            text=True)
    out.close()
    err.close()
    proc.name = name
    return proc


def outputs(proc, cwd):
    return ((Path(cwd) / f"{proc.name}.out").read_text(),
            (Path(cwd) / f"{proc.name}.err").read_text())


def wait_all(procs, timeout):
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            p.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def assert_clean(stderr):
    """Nothing on stderr that says something went wrong underneath."""
    assert "Traceback" not in stderr, stderr
    assert "alembic" not in stderr.lower(), stderr
    assert "database is locked" not in stderr, stderr


def store_db(folder):
    return Path(folder) / "mlruns" / "mlflow.db"


def client_for(folder):
    """A client on the folder's store, which also becomes this process's tracking URI (for
    ``runs:/`` model URIs); the conftest fixture resets it after the test."""
    uri = f"sqlite:///{store_db(folder)}"
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(uri)


def all_runs(client):
    exps = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return client.search_runs(exps, max_results=1000, run_view_type=ViewType.ALL)


def unlogged(folder):
    path = Path(folder) / "models" / "unlogged"
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


# --------------------------------------------------------------------------- 1. fresh store + loky


CV_CHILD = """
from sklearn.model_selection import cross_validate
from mnist_estimators import CNNClassifier

est = CNNClassifier(max_epochs=1, channels=(4, 8), hidden_sizes=(16,), batch_size=64,
                    random_state=0, tracking_options={options})
res = cross_validate(est, X, y, cv=3, n_jobs=2)
print(json.dumps({{"scores": res["test_score"].tolist(), "pid": os.getpid()}}))
"""



# The race runs four times a CI run (three times, and once with the model logged); a fifth
# time cost 15-20 s that the 35-minute cap no longer had on a slow host.
@pytest.mark.timeout(240)
@pytest.mark.parametrize("case", [f"fresh-{i}" for i in range(3)] + ["fresh-3-log_model"])
def test_a_fresh_store_first_used_by_cross_validate_with_two_workers(tmp_path, case):
    log_model = case.endswith("log_model")
    path = script(tmp_path, CV_CHILD.format(options={"log_model": True} if log_model else None))
    proc = run([PY, str(path)], tmp_path, timeout=200)
    assert proc.returncode == 0, proc.stderr
    assert_clean(proc.stderr)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(result["scores"]) == 3 and all(0.0 <= s <= 1.0 for s in result["scores"])

    client = client_for(tmp_path)
    runs = all_runs(client)
    assert len(runs) == 3, [(r.info.run_id, r.info.status) for r in runs]
    assert [r.info.status for r in runs] == ["FINISHED"] * 3
    assert all(r.data.params["data.shape"] == "(200, 784)" for r in runs)  # a fold's 2/3
    assert all(r.data.metrics["summary/n_epochs"] == 1 for r in runs)
    # the fits ran in the loky workers, not in the child itself
    assert str(result["pid"]) not in {r.data.tags["mnist_estimators.pid"] for r in runs}
    assert unlogged(tmp_path) == []
    if log_model:
        for r in runs:
            assert r.data.tags["model_uri"].startswith("models:/")
            model = mlflow.pyfunc.load_model(r.data.tags["model_uri"])
            assert model.predict(X_TEST[:8]).shape == (8,)
    else:  # by design, fold fits log no model and no figures unless asked
        for r in runs:
            assert "model_uri" not in r.data.tags, f"fold run {r.info.run_id} logged a model"
            assert client.list_artifacts(r.info.run_id, "figures") == [], r.info.run_id
            assert r.info.run_name.startswith("cv fold · ") and r.data.tags["search.fold"]


# --------------------------------------------------------------------------- 2. 8 processes at once


MANY_CHILD = """
from mnist_estimators import MLPClassifier

ids = []
for seed in range(3):
    est = MLPClassifier(max_epochs=1, hidden_sizes=(16,), batch_size=64, random_state=seed)
    est.fit(X, y)
    ids.append(est.last_run_id_)
print(json.dumps(ids))
"""


@pytest.mark.timeout(300)
def test_eight_processes_start_at_once_on_one_fresh_store(tmp_path):
    path = script(tmp_path, MANY_CHILD, n=200)
    procs = [start([PY, str(path)], tmp_path, f"p{i}") for i in range(8)]
    wait_all(procs, timeout=270)
    ids = []
    for p in procs:
        out, err = outputs(p, tmp_path)
        assert p.returncode == 0, err
        assert_clean(err)
        ids += json.loads(out.strip().splitlines()[-1])
    assert len(set(ids)) == 24
    client = client_for(tmp_path)
    runs = {r.info.run_id: r for r in all_runs(client)}
    assert set(runs) == set(ids)
    for run_id, r in runs.items():
        assert r.info.status == "FINISHED", run_id
        assert r.data.tags.get("model_uri", "").startswith("models:/"), run_id
        assert r.data.metrics["summary/n_epochs"] == 1
    assert len({r.data.tags["mnist_estimators.pid"] for r in runs.values()}) == 8
    assert unlogged(tmp_path) == []
    # one of them, reloaded: the artifacts are whole
    some = ids[len(ids) // 2]
    uri = runs[some].data.tags["model_uri"]
    assert mlflow.pyfunc.load_model(uri).predict(X_TEST[:5]).shape == (5,)


# --------------------------------------------------------------------------- 3. SIGKILL


LONG_FIT = SLOW + """
from mnist_estimators import MLPClassifier

MLPClassifier(max_epochs=1000, hidden_sizes=(16,), batch_size=64, random_state=0,
              callbacks=[("slow", Slow())]).fit(X, y)
"""

REAPING_FIT = """
from mnist_estimators import SoftmaxRegressionClassifier

est = SoftmaxRegressionClassifier(max_epochs=1, batch_size=64, random_state=0).fit(X, y)
print(json.dumps(est.last_run_id_))
"""



def signal_mid_fit(tmp_path, signum):
    """Start a long fit in a child, send it ``signum`` once its run has a metric, and wait for
    it: (process, run id, stdout, stderr)."""
    path = script(tmp_path, LONG_FIT, n=200)
    proc = subprocess.Popen([PY, str(path)], cwd=tmp_path, env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_id = wait_for_a_run_with_metrics(store_db(tmp_path), proc)
        os.kill(proc.pid, signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc, run_id, out, err


@pytest.mark.timeout(240)
@pytest.mark.parametrize("reaper", ["tracked_fit", "cli_runs_reap"])
def test_a_run_of_a_sigkilled_process_is_reaped_by_the_next_process(tmp_path, reaper):
    proc, run_id, _, _ = signal_mid_fit(tmp_path, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    # nothing ended it: still RUNNING
    con = sqlite3.connect(str(store_db(tmp_path)))
    try:
        (status,), = con.execute("SELECT status FROM runs WHERE run_uuid = ?", (run_id,)).fetchall()
    finally:
        con.close()
    assert status == "RUNNING"

    if reaper == "tracked_fit":
        later = run([PY, str(script(tmp_path, REAPING_FIT, n=200, name="later.py"))], tmp_path,
                    timeout=150)
        assert later.returncode == 0, later.stderr
        new_id = json.loads(later.stdout.strip().splitlines()[-1])
    else:
        later = run([PY, "-m", "mnist_estimators.cli", "runs", "reap"], tmp_path, timeout=150)
        assert later.returncode == 0, later.stderr
        new_id = None
    assert_clean(later.stderr)
    # one line on stderr names the reaped run
    assert f"marked 1 run(s) KILLED whose process had died: {run_id}" in later.stderr, later.stderr

    client = client_for(tmp_path)
    killed = client.get_run(run_id)
    assert killed.info.status == "KILLED"
    assert killed.info.end_time is not None and killed.info.end_time >= killed.info.start_time
    assert f"process {proc.pid} on " in killed.data.tags["mnist_estimators.reaped"]
    last_metric = max(m.timestamp for k in killed.data.metrics
                      for m in client.get_metric_history(run_id, k))
    assert killed.info.end_time == last_metric  # ended at its last sign of life
    if new_id is not None:
        fresh = client.get_run(new_id)
        assert fresh.info.status == "FINISHED"
        assert "mnist_estimators.reaped" not in fresh.data.tags
    else:  # the command's own summary line counts what was reaped
        assert "1 run(s) of dead processes marked KILLED" in later.stdout, later.stdout


# --------------------------------------------------------------------------- 4. SIGTERM


@pytest.mark.timeout(240)
def test_sigterm_mid_fit_in_a_plain_script_ends_the_run_killed_with_its_model(tmp_path):
    proc, run_id, out, err = signal_mid_fit(tmp_path, signal.SIGTERM)
    assert proc.returncode != 0  # the interrupt propagates out of the script
    assert proc.returncode != -signal.SIGTERM, "SIGTERM killed the child with no cleanup"
    assert f"run {run_id} ended KILLED" in err, err
    assert "model was logged with the run" in err, err
    assert "alembic" not in err.lower()

    client = client_for(tmp_path)
    r = client.get_run(run_id)
    assert r.info.status == "KILLED" and r.info.end_time is not None
    assert "terminated by signal" in r.data.tags.get("error", ""), r.data.tags
    assert r.data.tags["model_uri"].startswith("models:/")
    n_epochs = r.data.metrics["summary/n_epochs"]
    assert 1 <= n_epochs < 1000
    # the summary counts the finished epochs, as the console does (not the interrupted one)
    said = int(re.search(r"ended KILLED after (\d+) finished epoch", err)[1])
    assert n_epochs == said, (n_epochs, said)
    model = mlflow.pyfunc.load_model(r.data.tags["model_uri"])
    pred = model.predict(X_TEST[:20])
    assert pred.shape == (20,) and set(np.asarray(pred).tolist()) <= set(range(10))
    assert unlogged(tmp_path) == []


SEARCH_FIT = SLOW + """
from sklearn.model_selection import GridSearchCV
from mnist_estimators import MLPClassifier, tracking

tracking.autolog()
est = MLPClassifier(max_epochs=1000, hidden_sizes=(16,), batch_size=64, random_state=0,
                    callbacks=[("slow", Slow())])
GridSearchCV(est, {"lr": [0.01]}, cv=2, n_jobs=2).fit(X, y)
"""


@pytest.mark.timeout(240)
def test_sigterm_while_a_parallel_search_waits_on_its_workers_ends_every_run_and_says_so(tmp_path):
    # The search's own process fits nothing (loky workers do): before, it died at once on
    # SIGTERM, silent, with the search's run RUNNING until a later `runs reap`.
    path = script(tmp_path, SEARCH_FIT, n=200)
    proc = subprocess.Popen([PY, str(path)], cwd=tmp_path, env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # both folds under way (a loky worker can start seconds after the other on a busy host)
        fold_ids = wait_for_a_run_with_metrics(store_db(tmp_path), proc, count=2)
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != -signal.SIGTERM, "SIGTERM killed the search with no cleanup"
    assert proc.returncode != 0
    # read before any MLflow client (which could reap): the child itself ended everything
    con = sqlite3.connect(str(store_db(tmp_path)))
    try:
        rows = con.execute("SELECT r.run_uuid, r.status, t.value FROM runs r LEFT JOIN tags t "
                           "ON t.run_uuid = r.run_uuid AND t.key = 'mlflow.parentRunId'").fetchall()
    finally:
        con.close()
    parents = [(run_id, status) for run_id, status, parent in rows if parent is None]
    assert len(parents) == 1, rows
    parent_id, parent_status = parents[0]
    assert parent_status == "KILLED", rows
    folds = {run_id: status for run_id, status, parent in rows if parent == parent_id}
    assert set(folds) == set(fold_ids), rows
    assert set(folds.values()) == {"KILLED"}, rows  # the workers were stopped; none left RUNNING
    # the console names the search's run and why it ended
    assert f"parent run {parent_id} ('GridSearchCV · mlp · 1 candidate × 2 folds') ended KILLED (terminated by signal " \
        f"{int(signal.SIGTERM)}); 2 fit(s) under it are logged" in err, err
    assert "alembic" not in err.lower()
    client = client_for(tmp_path)
    for run_id in folds:
        assert "ended without finishing" in client.get_run(run_id).data.tags[
            "mnist_estimators.reaped"]


# --------------------------------------------------------------------------- 5. fit and exit


@pytest.mark.timeout(180)
def test_a_one_line_script_that_fits_and_exits_leaves_a_finished_run(tmp_path):
    code = ("from mnist_estimators import MLPClassifier, load_sample; import numpy as np; "
            "X, y = load_sample(); i = np.random.default_rng(0).permutation(len(X))[:300]; "
            "MLPClassifier(max_epochs=1, hidden_sizes=(32,)).fit(X[i], y[i])")
    proc = run([PY, "-c", code], tmp_path, timeout=150)
    assert proc.returncode == 0, proc.stderr
    assert_clean(proc.stderr)
    client = client_for(tmp_path)
    (r,) = all_runs(client)
    run_id = r.info.run_id
    assert r.info.status == "FINISHED" and r.info.end_time is not None
    assert r.data.tags["model_uri"].startswith("models:/")
    figures = client.list_artifacts(run_id, "figures")
    assert figures, "no figures logged"
    assert all(a.path.endswith(".png") and a.file_size > 0 for a in figures), figures
    assert mlflow.pyfunc.load_model(r.data.tags["model_uri"]).predict(X_TEST[:5]).shape == (5,)


FORK_AFTER_FIT = """
import multiprocessing
import torch
from mnist_estimators import MLPClassifier

torch.set_num_threads(2)
MLPClassifier(max_epochs=1, hidden_sizes=(64,), random_state=0).fit(X, y)  # the pool has run
parent_threads = torch.get_num_threads()

def work(seed):
    a = torch.randn(512, 512)
    (a @ a).sum().item()  # a parallel operation: it hung for ever here
    m = MLPClassifier(max_epochs=1, hidden_sizes=(64,), random_state=seed).fit(X, y)
    return {"threads": torch.get_num_threads(), "run": m.last_run_id_}

with multiprocessing.get_context("fork").Pool(2) as pool:
    print(json.dumps({"parent_threads": parent_threads,
                      "children": pool.map_async(work, [1, 2]).get(timeout=120)}))
"""


@pytest.mark.timeout(300)
def test_a_fork_pool_after_a_fit_trains_and_its_runs_finish(tmp_path):
    # torch's OpenMP pool does not survive a fork once used: the children get one thread.
    proc = run([PY, str(script(tmp_path, FORK_AFTER_FIT))], tmp_path, timeout=240,
               env=child_env(OMP_NUM_THREADS="2"))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["parent_threads"] == 2
    assert [c["threads"] for c in got["children"]] == [1, 1]
    client = client_for(tmp_path)
    statuses = {r.info.run_id: r.info.status for r in all_runs(client)}
    assert len(statuses) == 3 and set(statuses.values()) == {"FINISHED"}
    assert {c["run"] for c in got["children"]} <= set(statuses)


DISK_FULL = """
import resource, signal
from skorch.callbacks import Callback
from mnist_estimators import MLPClassifier

MLPClassifier(max_epochs=1, hidden_sizes=(32,), random_state=0).fit(X, y)  # the store exists
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)

class DiskFull(Callback):  # from the end of the first epoch, no file may grow past 4 kB
    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == 1:
            resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))

est = MLPClassifier(max_epochs=2, hidden_sizes=(256,), random_state=1,
                    callbacks=[("full", DiskFull())]).fit(X, y)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print(json.dumps({"run": est.last_run_id_, "score": est.score(X, y)}))
"""


@pytest.mark.timeout(300)
def test_a_full_disk_mid_fit_gives_one_warning_and_a_failed_run(tmp_path):
    # The store, the artifacts and the fallback folder are all on the full "disk" (a real
    # write limit: RLIMIT_FSIZE). The fit still returns its model; the user gets one warning
    # line, not MLflow's tracebacks; the run ends FAILED, and last_run_id_ names it.
    proc = run([PY, str(script(tmp_path, DISK_FULL))], tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["score"] > 0.3
    warnings = [line for line in proc.stderr.splitlines() if "TrackingWarning" in line]
    assert len(warnings) == 1, proc.stderr
    assert "saving the model locally failed too" in warnings[0]
    assert "Traceback" not in proc.stderr and "ERROR" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2, proc.stderr  # the warning and its source
    run_ = client_for(tmp_path).get_run(got["run"])
    assert run_.info.status == "FAILED"
    assert "the fitted model was not logged" in run_.data.tags["error"]


# --------------------------------------------------------------------------- 6. two tune workers



@pytest.mark.timeout(300)
def test_two_tune_processes_share_one_study_and_one_parent_run(tmp_path):
    import optuna

    digits = tmp_path / "digits"
    digits.mkdir()
    write_idx(digits / "train-images-idx3-ubyte.gz", X_TRAIN.reshape(-1, 28, 28))
    write_idx(digits / "train-labels-idx1-ubyte.gz", Y_TRAIN)
    args = [PY, "-m", "mnist_estimators.cli", "tune", "--pipeline", "softmax", "--trials", "4",
            "--storage", "sqlite:///study.db", "--study-name", "s", "--param",
            "clf__max_epochs=1", "--pruner", "none", "--data-home", str(digits)]
    procs = [start(args, tmp_path, f"tune{i}") for i in range(2)]
    wait_all(procs, timeout=270)
    for p in procs:
        out, err = outputs(p, tmp_path)
        assert p.returncode == 0, err
        assert "Traceback" not in err and "alembic" not in err.lower(), err
        assert "best value" in out, out

    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/study.db")
    # 4 COMPLETE; a trial started for a place the other worker's last one held: FAIL, unrun
    assert_exactly_n_trials(study.trials, 4)
    ran = [t for t in study.trials if not t.user_attrs.get("surplus")]
    params = [tuple(sorted(t.params.items())) for t in ran]
    assert len(set(params)) == len(params), params  # the two workers never drew the same values

    client = client_for(tmp_path)
    runs = all_runs(client)
    parents = {r.info.run_id: r for r in runs if "mlflow.parentRunId" not in r.data.tags
               and r.data.tags.get("optuna.study") == "s"}
    assert study.user_attrs["mlflow_parent_run_id"] in parents
    assert all(r.info.status == "FINISHED" for r in parents.values())
    trials = [r for r in runs if r.data.tags.get("optuna.trial") is not None]
    assert sorted(int(r.data.tags["optuna.trial"]) for r in trials) == \
        sorted(t.number for t in ran)
    assert all(r.info.status == "FINISHED" for r in trials)
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} <= set(parents)
    # Exactly one parent for the study, whichever worker created it (both start at once).
    assert len(parents) == 1, [(run_id, r.data.tags.get("mnist_estimators.pid"))
                               for run_id, r in parents.items()]


# --------------------------------------------------------------------------- 7. failing workers


WORKERS_FAIL = """
from sklearn.model_selection import cross_validate
from mnist_estimators import MLPClassifier

# log_model=True: fold fits keep no model by default, and only a model goes to the outbox
est = MLPClassifier(max_epochs=1, hidden_sizes=(16,), batch_size=64, random_state=0,
                    tracking_options={"log_model": True})
res = cross_validate(est, X, y, cv=2, n_jobs=2)
print(json.dumps({"scores": res["test_score"].tolist(), "pid": os.getpid()}))
"""


@pytest.mark.timeout(240)
def test_a_tracking_failure_in_worker_processes_reaches_the_console_and_keeps_the_models(tmp_path,
                                                                                       dead_port):
    uri = f"http://127.0.0.1:{dead_port}"
    proc = run([PY, str(script(tmp_path, WORKERS_FAIL, n=200))], tmp_path, timeout=200,
               env=child_env(MLFLOW_TRACKING_URI=uri))
    assert proc.returncode == 0, proc.stderr
    scores = json.loads(proc.stdout.strip().splitlines()[-1])["scores"]
    assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)  # training went on
    err = proc.stderr
    assert "TrackingWarning" in err, err
    assert "is not reachable" in err and uri in err, err
    assert "models/unlogged" in err, err
    names = unlogged(tmp_path)
    assert len([n for n in names if n.endswith(".pkl")]) == 2, names
    assert len([n for n in names if n.endswith(".json")]) == 2, names
    from mnist_estimators import tracking

    records = [rec for _, rec in tracking.pending(tmp_path / "models" / "unlogged")]
    assert [rec["status"] for rec in records] == ["FINISHED", "FINISHED"]
    assert all(rec["tracking_uri"] == uri for rec in records)
    # the failures happened in the loky workers; their warnings reached this console anyway
    child_pid = str(json.loads(proc.stdout.strip().splitlines()[-1])["pid"])
    assert all(rec["tags"]["mnist_estimators.pid"] != child_pid for rec in records)
    assert err.count("TrackingWarning") == 2, err  # one line per fit, no more
    assert not store_db(tmp_path).exists()  # nothing went to a local store instead
