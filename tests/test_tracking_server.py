"""Real MLflow processes on 127.0.0.1: a tracking server with an SQL backend and artifact
serving, model serving over REST, the registry, and `mnist-estimators ui`."""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import mlflow
import numpy as np
import pytest
from skorch.callbacks import Callback

from mnist_estimators import MLPClassifier, SoftmaxRegressionClassifier, tracking

from conftest import X_TEST, X_TRAIN, Y_TRAIN

pytestmark = pytest.mark.tracking
FAST = dict(max_epochs=2, batch_size=32, random_state=0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            log = open(proc.log_path).read()[-3000:] if hasattr(proc, "log_path") else ""
            raise RuntimeError(f"{proc.args[:4]} exited with {proc.returncode}:\n{log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout} s")


def start(cmd, url, env=None, cwd=None):
    # mlflow runs helpers (uvicorn) by name: the interpreter's bin folder goes first on PATH
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    # The log goes to a file: an unread pipe fills up and blocks the server mid-request.
    log_path = os.path.join(tempfile.mkdtemp(prefix="mlflow-proc-"), "log.txt")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PATH": path, **(env or {})}, cwd=cwd)
    proc.log_path = log_path
    try:
        wait_for(url, proc)
    except BaseException:
        proc.kill()
        raise
    return proc


def start_on_a_free_port(build, env=None, cwd=None, tries=3):
    """``(start(*build(port)), port)`` on a port found free. A port is free when found, not
    when the server binds it (the next socket that asks for any port may get it), so a server
    that exits with "address already in use" is started again on another port."""
    for attempt in range(tries):
        port = free_port()
        try:
            return start(*build(port), env=env, cwd=cwd), port
        except RuntimeError as exc:
            if "already in use" not in str(exc) or attempt == tries - 1:
                raise


def stop(proc):
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    proc, port = start_on_a_free_port(lambda port: (
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
        f"http://127.0.0.1:{port}/health"))
    yield f"http://127.0.0.1:{port}", root
    stop(proc)


def test_fits_log_over_http_to_a_real_server(server, monkeypatch):
    uri, root = server
    mlflow.set_tracking_uri(uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "remote")
    with tracking.parent_run("remote-parent") as parent:
        est = MLPClassifier(**FAST).fit(X_TRAIN, Y_TRAIN)
    tracking.flush()
    client = mlflow.MlflowClient(uri)
    run = client.get_run(est.last_run_id_)
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == parent.run_id
    assert [m.step for m in client.get_metric_history(run.info.run_id, "epoch/valid_loss")] == [1, 2]
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # served by the server
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert "figures/confusion_matrix.png" in figures
    assert any((root / "artifacts").rglob("confusion_matrix.png"))  # stored server-side
    model = mlflow.pyfunc.load_model(est.last_model_uri_)
    np.testing.assert_array_equal(model.predict(X_TEST), est.predict(X_TEST))


def test_a_clone_made_while_the_server_was_down_is_tracked_once_it_is_back(server, dead_port):
    """A fit that found the server dead at its start reports that without a second try, but a
    clone's context, captured when it was cloned, is checked again when the clone is fitted."""
    import warnings

    from sklearn.base import clone

    from conftest import CountingProxy

    with CountingProxy(f"127.0.0.1:{dead_port}") as proxy:
        mlflow.set_tracking_uri(proxy.url)
        twin = clone(MLPClassifier(**FAST))
        assert "not reachable" in twin.tracking_context_.store_error  # the server was down
        assert proxy.failed == 1
        proxy.upstream = server[0].removeprefix("http://")  # ... and is back
        with warnings.catch_warnings():
            warnings.simplefilter("error", tracking.TrackingWarning)
            twin.fit(X_TRAIN, Y_TRAIN)
        run = mlflow.MlflowClient(proxy.url).get_run(twin.last_run_id_)
        assert run.info.status == "FINISHED" and run.data.params["max_epochs"] == "2"
        assert proxy.failed == 1 and proxy.delivered > 0


def test_a_search_keeps_its_verdict_of_a_dead_server_and_its_model_is_tracked_once_it_is_back(
        server, dead_port, tmp_path):
    """With autolog, a search against a dead server tries it twice: its parent run, then its
    first clone, whose verdict its other clones and fits share. Its model, fitted again once
    the server is back, checks the store again and is tracked."""
    import warnings

    from sklearn.model_selection import GridSearchCV

    from conftest import CountingProxy

    options = {"fallback_dir": str(tmp_path)}
    grid = GridSearchCV(MLPClassifier(**FAST, tracking_options=options), {"lr": [1e-3, 3e-3]},
                        cv=2)
    with CountingProxy(f"127.0.0.1:{dead_port}") as proxy:
        mlflow.set_tracking_uri(proxy.url)
        tracking.autolog()
        try:
            with pytest.warns(tracking.TrackingWarning, match="its fits are not grouped"):
                grid.fit(X_TRAIN, Y_TRAIN)
        finally:
            tracking.autolog(False)
        # 12 before verdicts were shared: the parent run, 6 clones and 5 fits
        assert proxy.failed_requests == ["GET /health"] * 2
        proxy.upstream = server[0].removeprefix("http://")  # the server is back
        model = grid.best_estimator_
        with warnings.catch_warnings():
            warnings.simplefilter("error", tracking.TrackingWarning)
            model.fit(X_TRAIN, Y_TRAIN)
        run = mlflow.MlflowClient(proxy.url).get_run(model.last_run_id_)
        assert run.info.status == "FINISHED" and run.data.params["lr"] == str(grid.best_params_["lr"])
        assert proxy.failed == 2 and proxy.delivered > 0


def test_registry_name_alias_and_load(server, monkeypatch):
    uri, _ = server
    mlflow.set_tracking_uri(uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "registry")
    est = SoftmaxRegressionClassifier(**FAST, tracking_options={"register_as": "mnist-softmax"})
    est.fit(X_TRAIN, Y_TRAIN)
    tracking.flush()
    client = mlflow.MlflowClient(uri)
    (v1,) = client.search_model_versions("name='mnist-softmax'")
    assert v1.run_id == est.last_run_id_
    second = SoftmaxRegressionClassifier(**{**FAST, "max_epochs": 3}).fit(X_TRAIN, Y_TRAIN)
    tracking.flush()
    v2 = tracking.register(second.last_run_id_, "mnist-softmax", alias="champion")
    assert v2.version == "2"
    model = mlflow.pyfunc.load_model("models:/mnist-softmax@champion")
    np.testing.assert_array_equal(model.predict(X_TEST), second.predict(X_TEST))
    first = mlflow.pyfunc.load_model("models:/mnist-softmax/1")
    np.testing.assert_array_equal(first.predict(X_TEST), est.predict(X_TEST))


def test_served_model_answers_rest_requests(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    est = MLPClassifier(**FAST).fit(X_TRAIN, Y_TRAIN)
    tracking.flush()
    proc, port = start_on_a_free_port(lambda port: (
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", est.last_model_uri_,
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        f"http://127.0.0.1:{port}/ping"), env={"MLFLOW_TRACKING_URI": uri})
    try:
        body = json.dumps({"inputs": X_TEST[:25].tolist()}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            predictions = json.loads(resp.read())["predictions"]
    finally:
        stop(proc)
    np.testing.assert_array_equal(predictions, est.predict(X_TEST[:25]))


def test_ui_command_serves_the_default_store(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    subprocess.run([sys.executable, "-c",
                    "import sys; sys.path.insert(0, %r)\n"
                    "from conftest import X_TRAIN, Y_TRAIN\n"
                    "from mnist_estimators import SoftmaxRegressionClassifier\n"
                    "SoftmaxRegressionClassifier(max_epochs=1).fit(X_TRAIN, Y_TRAIN)\n"
                    % os.path.dirname(__file__)],
                   cwd=tmp_path, env=env, check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mnist_estimators.cli", "ui", "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        first = proc.stdout.readline()
        assert "mlruns/mlflow.db" in first
        wait_for(f"http://127.0.0.1:{port}/health", proc)
        api = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=mnist-estimators"
        with urllib.request.urlopen(api, timeout=10) as resp:
            exp_id = json.loads(resp.read())["experiment"]["experiment_id"]
        # the address it prints is the experiment's runs table in the model-training view,
        # not MLflow 3's GenAI overview
        url = re.search(r"http://\S+", first)[0]
        assert url == (f"http://127.0.0.1:{port}/#/experiments/{exp_id}/runs"
                       "?workflowType=machine_learning")
        if os.path.exists(CHROMIUM):
            _first_page_shows_the_runs(url, tmp_path)
    finally:
        stop(proc)


def _first_page_shows_the_runs(url, folder):
    """Open ``url`` as a user would, in Chromium: the page that comes up is the runs table,
    with the fit's run in it; a screenshot of it goes to test-artifacts/."""
    from playwright.sync_api import expect, sync_playwright

    client = mlflow.MlflowClient(f"sqlite:///{folder}/mlruns/mlflow.db")
    exp_id = client.get_experiment_by_name("mnist-estimators").experiment_id
    run_id = client.search_runs([exp_id])[0].info.run_id
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(url, wait_until="domcontentloaded")
            expect(page.locator(f"[row-id='{run_id}']").first).to_be_visible(timeout=60_000)
            assert "/runs" in page.url and "traces" not in page.url, page.url
            os.makedirs(ARTIFACTS, exist_ok=True)
            page.screenshot(path=os.path.join(ARTIFACTS, "mlflow-ui-first-page.png"))
        finally:
            browser.close()


_SERVERS = []
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test-artifacts")


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed (.ci/run installs it)")
def test_mlflow_ui_shows_the_search_in_a_browser(server, monkeypatch):
    from playwright.sync_api import expect, sync_playwright
    from sklearn.model_selection import GridSearchCV

    uri, _ = server
    mlflow.set_tracking_uri(uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "ui-grid")
    grid = GridSearchCV(MLPClassifier(**FAST, hidden_sizes=(32,)), {"optimizer": ["adam", "sgd"]}, cv=2)
    with tracking.parent_run("grid-search") as parent:
        grid.fit(X_TRAIN, Y_TRAIN)
        parent.log_search(grid, X_TRAIN)
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("ui-grid").experiment_id
    children = {r.info.run_name: r.info.run_id for r in client.search_runs(
        [exp], filter_string=f"tags.mlflow.parentRunId = '{parent.run_id}'")}
    assert len(children) == 5
    # children are named by their fold, then the values they tried
    first, second = children["fold 1/2 · optimizer=adam"], children["fold 1/2 · optimizer=sgd"]
    (refit,) = [run_id for name, run_id in children.items() if name.startswith("refit · optimizer=")]
    os.makedirs(ARTIFACTS, exist_ok=True)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)  # a single-page app: charts appear after their data
        try:
            # the experiment's runs table (an AG Grid): the parent, expanded to its children
            page.goto(f"{uri}/#/experiments/{exp}/runs", wait_until="domcontentloaded")
            parent_row = page.locator(f"[row-id='{parent.run_id}']").first
            expect(parent_row).to_be_visible()
            expect(parent_row).to_contain_text("grid-search")
            parent_row.locator("button").first.click()
            for run_id in children.values():
                expect(page.locator(f"[row-id='{run_id}']").first).to_be_visible()
            expect(page.locator(f"[row-id='{refit}']").first).to_contain_text("refit")
            page.screenshot(path=os.path.join(ARTIFACTS, "mlflow-ui-runs.png"))

            # a child run: its params and metrics
            page.goto(f"{uri}/#/experiments/{exp}/runs/{first}", wait_until="domcontentloaded")
            expect(page.get_by_text("fold 1/2 · optimizer=adam").first).to_be_visible()
            # its description: model, the values it tried, data and result
            expect(page.get_by_text("Search candidate:").first).to_be_visible()
            expect(page.get_by_text("hidden_sizes").first).to_be_visible()
            expect(page.get_by_text("valid_acc").first).to_be_visible()
            page.screenshot(path=os.path.join(ARTIFACTS, "mlflow-ui-run.png"))

            # its metric charts
            page.goto(f"{uri}/#/experiments/{exp}/runs/{first}/model-metrics", wait_until="domcontentloaded")
            # a chart's title: "time_s" under its section (MLflow 3.17), "epoch/time_s" (3.10)
            expect(page.get_by_text(re.compile(r"^(epoch/)?time_s$")).first).to_be_visible()
            expect(page.locator(".js-plotly-plot").first).to_be_visible()  # a chart is drawn
            page.wait_for_timeout(500)
            page.screenshot(path=os.path.join(ARTIFACTS, "mlflow-ui-metrics.png"))
            # the sections, in page order: the training curves lead, the one-value results follow
            text = page.locator("body").inner_text()
            sections = re.findall(r"^(\w[\w ]*)\n\((\d+)\)$", text, flags=re.M)
            assert sections[:2] == [("epoch", "5"), ("summary", "7")], sections
            page.get_by_placeholder("Search metric charts").fill("valid_loss")  # charts render lazily
            expect(page.get_by_text(re.compile(r"^(epoch/)?valid_loss$")).first).to_be_visible()

            # two runs side by side
            page.goto(f'{uri}/#/compare-runs?runs=["{first}","{second}"]&experiments=["{exp}"]',
                      wait_until="domcontentloaded")
            expect(page.get_by_text("Comparing 2 Runs").first).to_be_visible()
            expect(page.get_by_text("fold 1/2 · optimizer=sgd").first).to_be_visible()
            page.screenshot(path=os.path.join(ARTIFACTS, "mlflow-ui-compare.png"), full_page=True)
        finally:
            browser.close()
    for name in ("runs", "run", "metrics", "compare"):
        assert os.path.getsize(os.path.join(ARTIFACTS, f"mlflow-ui-{name}.png")) > 10_000


class KillServer(Callback):
    """Stops the tracking server in _SERVERS after the first epoch."""

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == 1:
            stop(_SERVERS[0])


def _mlflow_command(tmp_path, port):
    return ([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
             "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
            f"http://127.0.0.1:{port}/health")


def _mlflow_server(tmp_path, port):
    return start(*_mlflow_command(tmp_path, port))


def test_server_dying_mid_fit_is_tried_once_keeps_the_model_and_uploads_it_later(tmp_path):
    import warnings

    from conftest import CountingProxy

    from mnist_estimators.persistence import load_model

    # MLflow's own HTTP defaults (7 retries with backoff, minutes) are left as a user has them.
    # The fit reaches the server through a proxy that counts the requests it could not deliver
    # once the server is dead (answered 502, which MLflow's client retries by default).
    proc, port = start_on_a_free_port(lambda port: _mlflow_command(tmp_path, port))
    _SERVERS[:] = [proc]
    fallback = tmp_path / "kept"
    params = {**FAST, "max_epochs": 3}
    with CountingProxy(f"127.0.0.1:{port}") as proxy:
        uri = proxy.url
        mlflow.set_tracking_uri(uri)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                est = MLPClassifier(**params, callbacks=[KillServer()],
                                    tracking_options={"fallback_dir": str(fallback)}).fit(X_TRAIN, Y_TRAIN)
        finally:
            stop(proc)
        # Each call after the death tried once: the epoch's metrics (then tracking stops for
        # this fit) and the final attempt to send the model, made once with short timeouts.
        assert proxy.failed == 2, proxy.failed
        assert proxy.delivered > 0  # the run was started and its first epoch logged
        ours = [str(w.message) for w in caught if issubclass(w.category, tracking.TrackingWarning)]
        assert len(ours) == 1 and "MLflow tracking failed while" in ours[0] and str(fallback) in ours[0]
        assert len(est.history_) == 3  # training went on to the end
        (saved,) = fallback.glob("MLPClassifier-*.pkl")
        np.testing.assert_array_equal(load_model(saved).predict(X_TEST), est.predict(X_TEST))

        # the server comes back: one call logs what was kept, into the run the fit had started
        proc = _mlflow_server(tmp_path, port)
        try:
            uploaded, failed = tracking.upload(fallback)
            assert failed == {} and uploaded == [est.last_run_id_]
            client = mlflow.MlflowClient(uri)
            run = client.get_run(est.last_run_id_)
            assert run.info.status == "FINISHED" and run.data.params["max_epochs"] == "3"
            assert [m.step for m in client.get_metric_history(run.info.run_id, "epoch/train_loss")] == [1, 2, 3]
            assert run.data.metrics["summary/n_epochs"] == 3
            model = mlflow.pyfunc.load_model(run.data.tags["model_uri"])
            np.testing.assert_array_equal(model.predict(X_TEST), est.predict(X_TEST))
            assert list(fallback.iterdir()) == []  # the outbox is empty once uploaded
        finally:
            stop(proc)


# --------------------------------------------------------------------------- PostgreSQL

POSTGRES = os.environ.get("MNIST_ESTIMATORS_TEST_POSTGRES_MLFLOW",
                          "postgresql+psycopg://mnist:mnist@127.0.0.1:5432/mlflow")


@pytest.fixture
def postgres_server(tmp_path):
    """An ``mlflow server`` on PostgreSQL with its own artifact root, on 127.0.0.1."""
    import sqlalchemy

    try:
        with sqlalchemy.create_engine(POSTGRES).connect():
            pass
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES} (.ci/system-deps starts it): {exc}")
    proc, port = start_on_a_free_port(lambda port: (
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", POSTGRES, "--artifacts-destination", str(tmp_path / "artifacts"),
         "--workers", "1"],
        f"http://127.0.0.1:{port}/health"))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.mark.timeout(180)
def test_a_dataset_another_writer_inserts_first_is_linked_on_postgresql(postgres_server,
                                                                       request):
    # Two fits logging the same training data at once (an ensemble's members, a Dask cluster's
    # cells): MLflow's log_inputs looks the dataset up, finds nothing, inserts it, and the
    # slower insert breaks the (experiment, name, digest) key. Made real here, not mocked: a
    # second connection inserts that row first and holds it uncommitted, so the server's insert
    # waits on PostgreSQL's lock, then fails when the row is committed.
    import threading
    import uuid

    import mlflow.data
    import sqlalchemy
    from mlflow.entities import DatasetInput

    from mnist_estimators.tracking import store

    client = mlflow.MlflowClient(postgres_server)
    experiment_id = client.create_experiment(f"dataset-race-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(experiment_id).info.run_id
    dataset = mlflow.data.from_numpy(X_TRAIN[:50], targets=Y_TRAIN[:50], name="race")
    entity = dataset._to_mlflow_entity()
    engine = sqlalchemy.create_engine(POSTGRES)
    request.addfinalizer(engine.dispose)  # its pooled connections close with the test
    outcome = {}

    def log():
        try:
            outcome["result"] = store.call(client.log_inputs, run_id,
                                           datasets=[DatasetInput(entity)])
        except Exception as exc:  # noqa: BLE001 - the test reports it below
            outcome["error"] = exc

    with engine.connect() as other:
        other.execute(sqlalchemy.text(
            "INSERT INTO datasets (dataset_uuid, experiment_id, name, digest, "
            "dataset_source_type, dataset_source) VALUES (:uuid, :exp, :name, :digest, "
            ":source_type, :source)"),
            {"uuid": uuid.uuid4().hex, "exp": int(experiment_id), "name": entity.name,
             "digest": entity.digest, "source_type": entity.source_type,
             "source": entity.source})
        writer = threading.Thread(target=log)
        writer.start()
        # autocommit: in a transaction, PostgreSQL's pg_stat_activity stays the first snapshot
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watch:
            deadline = time.time() + 30
            while not watch.execute(sqlalchemy.text(  # the server's insert waits on the row
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE 'INSERT INTO datasets%'")).scalar():
                assert time.time() < deadline and writer.is_alive(), outcome
                time.sleep(0.05)
        other.commit()
    writer.join(60)
    assert "error" not in outcome, outcome.get("error")
    inputs = client.get_run(run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [(entity.name, entity.digest)]
    with engine.connect() as con:
        assert con.execute(sqlalchemy.text(
            "SELECT count(*) FROM datasets WHERE experiment_id = :exp"),
            {"exp": int(experiment_id)}).scalar() == 1
