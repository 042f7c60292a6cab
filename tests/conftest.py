"""Shared fixtures: tiny real MNIST data, IDX writers, the full set when present."""

import contextlib
import gzip
import os
import socket
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from mnist_estimators import load_sample

FULL_MNIST = Path(os.environ.get("MNIST_ESTIMATORS_TEST_DATA",
                                 Path(__file__).resolve().parents[1].parent / "shared/datasets/mnist"))

_X, _Y = load_sample()
_rng = np.random.default_rng(0)
_idx = _rng.permutation(len(_X))
# Module-level tiny data (sklearn's habit): 400 train and 200 test images of real MNIST digits.
X_TRAIN, Y_TRAIN = _X[_idx[:400]], _Y[_idx[:400]]
X_TEST, Y_TEST = _X[_idx[400:600]], _Y[_idx[400:600]]


def write_idx(path, array, gz=None):
    """Write ``array`` (uint8) as an IDX file; gzip when the name ends in .gz."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    gz = str(path).endswith(".gz") if gz is None else gz
    Path(path).write_bytes(gzip.compress(data) if gz else data)
    return Path(path)


def write_sample_mnist(folder):
    """A folder in the MNIST layout holding the tests' real digits (X_TRAIN as train, X_TEST
    as test): a small data home for commands that read MNIST from disk."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, X, y in (("train", X_TRAIN, Y_TRAIN), ("t10k", X_TEST, Y_TEST)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", X.reshape(-1, 28, 28))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", y)
    return folder


def write_idx_folder(folder, n_train=30, n_test=10, gz=True, side=28, seed=0):
    """A folder in the MNIST layout holding random images and labels; returns the arrays."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    out = {}
    for subset, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        X = rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)
        y = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", X)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", y)
        out[subset] = (X.reshape(n, -1), y.astype(np.int64))
    return out


@pytest.fixture
def full_mnist_dir():
    if not (FULL_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"full MNIST not found at {FULL_MNIST}")
    return FULL_MNIST


@pytest.fixture(autouse=True)
def _environ_restored():
    """Each test leaves os.environ as it found it. A test's own dask LocalCluster sets
    OMP_NUM_THREADS=1 (and more) in this process and never takes it back (distributed's nannies
    do that by design); every later test's subprocesses then ran torch on one thread: the
    command-line test took 288 s after the Dask tests against 184 s alone."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """No test reads or writes the user's cache or depends on MNIST_ESTIMATORS_DATA."""
    monkeypatch.setenv("MNIST_ESTIMATORS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MNIST_ESTIMATORS_DATA", raising=False)


try:
    import mlflow
except ImportError:  # a machine with torch and skorch only (a lent GPU): tracking tests skip
    mlflow = None


@pytest.fixture(autouse=True)
def _tracking_only_where_tested(request, monkeypatch):
    """MLflow tracking is on by default; tests not marked ``tracking`` turn it off (and so
    make no MLflow call), the tracking tests get a store of their own."""
    from mnist_estimators import _compat, tracking

    tracking.set_tracking(None)
    if request.node.get_closest_marker("tracking") is None:
        monkeypatch.setenv("MNIST_ESTIMATORS_TRACKING", "0")
        yield
        # no MLflow call, so no URI fixed for a later test either
        if mlflow is not None:
            assert not _compat.tracking_uri_is_set(), \
                f"a test with tracking off set {mlflow.get_tracking_uri()}"
        return
    if mlflow is None:
        pytest.skip("MLflow is not installed")
    monkeypatch.setenv("MNIST_ESTIMATORS_TRACKING", "1")
    yield
    tracking.flush()
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    tracking.set_tracking(None)


def pytest_configure(config):
    # Tracking off for the whole session unless a test is marked ``tracking`` (the fixture
    # above turns it on there): a module- or session-scoped fixture runs before any function
    # fixture, and its fits went to the working folder's ./mlruns (found when such a fit fixed
    # MLflow's URI for a later tracking test). A hook, not module code: scripts that tests run
    # in subprocesses import this module for its data.
    os.environ["MNIST_ESTIMATORS_TRACKING"] = "0"


def wait_for_a_run_with_metrics(db, proc, timeout=120, count=1):
    """Poll the child's SQLite store ``db`` (a path) with plain sqlite3 (never MLflow, which
    could race the child into creating the tables: MLflow's store migrates a half-made schema
    itself, unlocked) until `count` RUNNING runs have a logged metric; returns the first id
    (all the ids when count > 1)."""
    db = Path(db)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.communicate()[1] if proc.stderr else ""
            pytest.fail(f"the child ended (rc {proc.returncode}) before a run had metrics:\n{err}")
        if db.is_file() and db.stat().st_size:
            con = sqlite3.connect(str(db), timeout=10)
            try:
                rows = con.execute(
                    "SELECT r.run_uuid FROM runs r WHERE r.status = 'RUNNING' AND EXISTS "
                    "(SELECT 1 FROM metrics m WHERE m.run_uuid = r.run_uuid)").fetchall()
            except sqlite3.OperationalError:  # tables not created yet
                rows = []
            finally:
                con.close()
            if len(rows) >= count:
                return rows[0][0] if count == 1 else [r[0] for r in rows]
        time.sleep(0.2)
    pytest.fail(f"fewer than {count} RUNNING run(s) with metrics in {db} after {timeout} s")


def assert_exactly_n_trials(trials, n):
    """n_trials COMPLETE trials, whichever worker ran them; any other is a surplus trial that a
    worker started at the same moment as another's last one, ended FAIL without being run."""
    assert [t.state.name for t in trials].count("COMPLETE") == n
    others = [t for t in trials if t.state.name != "COMPLETE"]
    assert all(t.state.name == "FAIL" and t.user_attrs.get("surplus") and not t.params
               for t in others), [(t.number, t.state.name, t.user_attrs) for t in others]


class CountingProxy:
    """A real HTTP reverse proxy on 127.0.0.1 in front of ``upstream`` (``host:port``) that
    counts what it could not deliver: a request whose upstream refused or broke the connection
    is answered 502 (Bad Gateway, a status MLflow's client retries by default) and counted in
    ``failed``. It shows how many times a client tried a dead server, with no clock involved.

    ``with CountingProxy("127.0.0.1:9") as proxy: proxy.url``"""

    def __init__(self, upstream):  # ``proxy.upstream = "host:port"`` points it elsewhere
        import http.client
        import http.server
        import threading

        self.upstream = upstream
        self.failed = 0
        self.delivered = 0
        self.failed_requests = []  # "METHOD /path" of each
        proxy = self

        class Forward(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection", "content-length")}
                target = proxy.upstream
                host, port = target.rsplit(":", 1)
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
                try:
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    status, payload, answer = resp.status, resp.read(), resp.getheaders()
                except (OSError, http.client.HTTPException) as exc:
                    with lock:
                        proxy.failed += 1
                        proxy.failed_requests.append(f"{self.command} {self.path}")
                    status, payload = 502, f"upstream {target}: {exc}".encode()
                    answer = [("Content-Type", "text/plain")]
                else:
                    with lock:
                        proxy.delivered += 1
                finally:
                    conn.close()
                self.send_response(status)
                for k, v in answer:
                    if k.lower() not in ("connection", "content-length", "transfer-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def refused_port():
    """A port on 127.0.0.1 where nothing listens, for as long as the block runs: bound and never
    listened on, so a connection is refused and no other process can take the port meanwhile
    (a port found free and released can be taken by the next socket that asks for one)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def dead_port():
    """``refused_port`` for the whole test."""
    with refused_port() as port:
        yield port
