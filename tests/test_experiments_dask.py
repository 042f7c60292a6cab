"""The experiment suite on a Dask cluster, as on several machines: a ``LocalCluster`` of two
worker processes, every worker logging to one real ``mlflow server`` on PostgreSQL (a SQLite
file cannot be shared between machines), compared cell for cell with a serial run."""

import os
import uuid

from dask import config as dask_config
import mlflow
import pytest

from mnist_estimators.experiments import runner

from conftest import write_sample_mnist
from test_tracking_server import postgres_server  # noqa: F401 - a fixture

pytestmark = pytest.mark.tracking

EXPERIMENT = """
name = "{name}"
title = "dask against serial"
estimator = "mlp"
seeds = 2
[base]
hidden_sizes = [16]
batch_size = 64
[[axes]]
param = "lr"
values = [0.001, 0.003]
[protocols.quick]
params = {{ max_epochs = 2 }}
train_size = 300
test_size = 200
"""


@pytest.mark.timeout(480)
def test_a_dask_cluster_run_matches_the_serial_run_cell_for_cell(tmp_path, monkeypatch,
                                                                  postgres_server):
    from dask.distributed import LocalCluster

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", postgres_server)
    monkeypatch.setenv("MNIST_ESTIMATORS_DATA", str(write_sample_mnist(tmp_path / "data")))
    mlflow.set_tracking_uri(postgres_server)
    tag = uuid.uuid4().hex[:8]  # the database outlives the test: names of this run's own
    (tmp_path / "serial.toml").write_text(EXPERIMENT.format(name=f"serial-{tag}"))
    (tmp_path / "dask.toml").write_text(EXPERIMENT.format(name=f"dask-{tag}"))

    # one torch thread per cell on both sides: results depend on the thread count
    serial = runner.run("serial.toml", protocol="quick", threads=1, progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        dask = runner.run("dask.toml", protocol="quick", backend="dask",
                          scheduler=cluster.scheduler_address, progress=False)

    def by_cell(result):
        return {(r["value"], r["seed"]): r for r in result.ran}

    s, d = by_cell(serial), by_cell(dask)
    assert set(s) == set(d) and len(s) == 4
    for key in s:
        assert d[key]["outcome"] == s[key]["outcome"] == "ok"
        # same data, seeds and threads: the same model, whichever process fitted it
        assert d[key]["test_accuracy"] == s[key]["test_accuracy"], key
        assert d[key]["train_accuracy"] == s[key]["train_accuracy"], key

    # every cell is a FINISHED child run on the server, fitted in the Dask workers' processes
    client = mlflow.MlflowClient(postgres_server)
    runs = client.search_runs([client.get_experiment_by_name(f"dask-{tag}").experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{dask.parent_run_id}'")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    pids = {r.data.tags["mnist_estimators.pid"] for r in runs}
    assert str(os.getpid()) not in pids and 1 <= len(pids) <= 2
    assert all(r.data.metrics["test_accuracy"] == d[(r.data.tags["experiment.value"],
                                                    int(r.data.tags["experiment.seed"]))]
               ["test_accuracy"] for r in runs)
    # the report is on the server's artifact store, beside the parent run
    assert "report.md" in {a.path for a in client.list_artifacts(dask.parent_run_id)}
    # and the rerun finds every cell done, through the server, on a LocalCluster of its own
    # that leaves this process's environment as it found it: distributed's nannies set
    # OMP_NUM_THREADS=1 (and more) in the process that starts them, as the cluster above did
    spawn_env = dask_config.get("distributed.nanny.pre-spawn-environ")
    assert os.environ.get("OMP_NUM_THREADS") == "1" and "OMP_NUM_THREADS" in spawn_env
    for key in spawn_env:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")  # a user's own setting is kept
    again = runner.run("dask.toml", protocol="quick", backend="dask", progress=False)
    assert again.ran == [] and again.skipped == 4
    assert {key: os.environ.get(key) for key in spawn_env} == {
        key: "3" if key == "MKL_NUM_THREADS" else None for key in spawn_env}
