"""The MLflow store: where it is, opening it safely from many processes, and reaping dead runs.

MLflow 3.17's ``SqlAlchemyStore`` creates and migrates a new SQLite database on first open with
no lock (its tracking store calls ``_initialize_tables`` directly; only its jobs and workspace
stores take ``_safe_initialize_tables``' lock, and 3.18 is the same). Two processes that open a
fresh store at once both run alembic, and the store can be left broken for good ("table
_alembic_tmp_tags already exists"). So the first open of a SQLite store in a process happens
under a file lock beside the database, and switches it to WAL (readers never block the writer).
MLflow sets a 20 s busy timeout on each session; ``call`` retries what still fails with
"database is locked", with backoff.

A remote store (``http://``) is checked with a short timeout before a fit uses it, and every
call is made with short HTTP timeouts and no retries (MLflow's defaults retry for minutes): a
tracking server that is down costs a fit seconds, not minutes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from .. import _compat
from .console import say
from .context import DEFAULT_EXPERIMENT, TrackingError

HTTP_TIMEOUT_S = 5          # per request to a tracking server, during a fit
REACH_TIMEOUT_S = 2         # the check before a fit
LOCK_TIMEOUT_S = 300        # waiting for another process to create or migrate the store
LOCKED_RETRIES = 8          # "database is locked" after MLflow's own 20 s busy timeout

_opened = {}                # uri -> MlflowClient, once per process
_opened_lock = threading.Lock()
_http_env_lock = threading.Lock()


def resolve_uri():
    """(tracking URI, artifact root) for this process: the URI the user set
    (``MLFLOW_TRACKING_URI`` or ``mlflow.set_tracking_uri``), whose artifact root their store
    decides (None), else ``./mlruns/mlflow.db`` with artifacts in ``./mlruns/artifacts``."""
    import mlflow

    if os.environ.get("MLFLOW_TRACKING_URI") or _compat.tracking_uri_is_set():
        return mlflow.get_tracking_uri(), None
    root = Path("mlruns").resolve()
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return uri, (root / "artifacts").as_uri()


def sqlite_path(uri):
    """The database file of a ``sqlite:///`` URI, else None."""
    if uri and uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):].split("?")[0])
    return None


def is_remote(uri):
    return bool(uri) and uri.startswith(("http://", "https://"))


@contextlib.contextmanager
def quiet_mlflow():
    """MLflow and alembic say "Creating initial MLflow database tables..." and "Updating
    database tables" at INFO on a new store: not the user's concern."""
    loggers = [logging.getLogger(n) for n in ("mlflow.store.db.utils", "alembic.runtime.migration",
                                              "alembic", "mlflow.store.tracking.sqlalchemy_store",
                                              "mlflow.system_metrics.system_metrics_monitor")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def open_store(uri, artifact_root=None):
    """An ``MlflowClient`` on ``uri``; the first call in a process creates or migrates a SQLite
    store under a cross-process lock, turns on WAL, and reaps runs of dead processes.

    Raises ``TrackingError`` naming the problem: a folder that cannot be written, a file that
    is not a database (never overwritten), a server that does not answer.
    """
    with _opened_lock:
        client = _opened.get(uri)
    if client is not None:
        return client
    import mlflow

    path = sqlite_path(uri)
    if path is not None:
        client = _open_sqlite(uri, path)
    else:
        if is_remote(uri):
            check_reachable(uri)
        client = mlflow.MlflowClient(uri)
    with _opened_lock:
        _opened[uri] = client
    try:
        reaped_at_open[uri] = reap(client)
    except Exception:  # noqa: BLE001 - reaping is housekeeping; a fit must not fail over it
        pass
    return client


reaped_at_open = {}         # uri -> run ids this process reaped when it first opened the store
kept_elsewhere = []         # fn(uri) -> {run id: where its model waits}: runs not to reap


def _after_fork_in_child():
    # A process forked after the store was opened (multiprocessing.Pool on Linux) inherits
    # MLflow's pooled SQLite connections, which must not be shared across processes
    # (SQLAlchemy's "using connection pools with multiprocessing"): the child drops them
    # without closing the parent's, and opens its own.
    for engine in _compat.sql_engines():
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _open_sqlite(uri, path):
    import mlflow
    from filelock import FileLock, Timeout

    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrackingError(f"cannot create the MLflow store folder {folder}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise TrackingError(f"the MLflow store folder {folder} is not writable; set "
                            "MLFLOW_TRACKING_URI to a store you can write to")
    if path.exists() and path.stat().st_size:
        with open(path, "rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                raise TrackingError(f"{path} is not an SQLite database (corrupt, or another "
                                    "kind of file); it was left untouched. Move it aside or "
                                    "point MLFLOW_TRACKING_URI at another store.")
    lock = FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S)
    try:
        with lock, quiet_mlflow():
            client = mlflow.MlflowClient(uri)
            try:
                # Both stores create their tables on first use: the tracking store now, the
                # model registry store here, each under the lock.
                _compat.sql_stores(client)
            except Exception as exc:
                raise TrackingError(f"cannot open the MLflow store {path}: "
                                    f"{type(exc).__name__}: {exc}") from exc
            _enable_wal(path)
            _relax_sync(client)
    except Timeout:
        raise TrackingError(f"waited {LOCK_TIMEOUT_S} s for another process to create the MLflow "
                            f"store {path} (lock {lock.lock_file})") from None
    return client


def _enable_wal(path):
    # WAL is a property of the database file: set once, every later connection uses it.
    con = sqlite3.connect(str(path), timeout=30)
    try:
        if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def _relax_sync(client):
    """``PRAGMA synchronous=NORMAL`` on this process's connections to the store: in WAL mode a
    commit then appends to the log without an fsync (the log is synced at checkpoints), which is
    what a per-epoch ``log_batch`` mostly waits for. A power cut can lose the last commits, never
    corrupt the store (SQLite's documented guarantee for WAL + NORMAL). MLflow sets only
    ``busy_timeout`` and ``foreign_keys`` on its sessions; it has no setting for this."""
    from sqlalchemy import event

    for engine in {store.engine for store in _compat.sql_stores(client)}:
        event.listen(engine, "connect",
                     lambda con, record: con.execute("PRAGMA synchronous=NORMAL"))
        engine.dispose()  # pooled connections made before the listener: reopened with it


def check_reachable(uri, timeout=REACH_TIMEOUT_S):
    """Raise ``TrackingError`` unless the tracking server at ``uri`` answers within
    ``timeout`` seconds."""
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            if resp.status == 200:
                return
            raise TrackingError(f"the MLflow tracking server {uri} answered {resp.status}")
    except (urllib.error.URLError, OSError, socket.timeout) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(f"the MLflow tracking server {uri} is not reachable ({reason})") from None


@contextlib.contextmanager
def http_limits():
    """Short HTTP timeouts and no retries for MLflow's REST calls made inside (MLflow reads
    them from the environment at each request and has no per-client setting), and no
    "🏃 View run ... at: URL" lines, which MLflow prints to stdout (after one more request) at
    every run's end against a server: two lines per fit, hundreds in a search. Values the user
    set win."""
    names = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(HTTP_TIMEOUT_S), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
             "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
    with _http_env_lock:
        added = [n for n in names if n not in os.environ]
        for n in added:
            os.environ[n] = names[n]
    try:
        yield
    finally:
        with _http_env_lock:
            for n in added:
                os.environ.pop(n, None)


# What a retry cures: SQLite busy (many processes writing one store), and two processes logging
# the same dataset at once (an ensemble's members, a search's candidates on one fold): MLflow's
# log_inputs looks for the dataset, then inserts it, so the slower insert breaks the unique
# (experiment, name, digest) key and rolls back; its retry finds the dataset and links it.
# The key's violation, as SQLite words it and as PostgreSQL does (an mlflow server on
# PostgreSQL passes it on in its answer). MLflow has no error code of its own for it (both are
# BAD_REQUEST, like a bad parameter), so the wording is all there is. MySQL's ("Duplicate
# entry ... for key 'datasets.PRIMARY'") is not here: no MySQL to test it against.
_RETRIED = ("database is locked", "UNIQUE constraint failed: datasets.",
            'duplicate key value violates unique constraint "dataset_pk"')


class _OurCallsOnly(logging.Filter):
    """Drops what MLflow's SQL store logs at ERROR, with a full traceback, just before it raises
    the same error (``mlflow.store.db.utils``: "SQLAlchemy database error. The following
    exception is caught."), while one of this package's calls runs in the thread: the error
    reaches the fit, which says what failed in one warning. Other callers' logs are untouched.
    MLflow has no switch for that log."""

    active = threading.local()

    def filter(self, record):
        return not getattr(self.active, "on", False) or record.levelno < logging.ERROR


_db_errors = _OurCallsOnly()
logging.getLogger("mlflow.store.db.utils").addFilter(_db_errors)


def call(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with short HTTP limits, retried with backoff while SQLite says
    "database is locked" (many processes writing one store), or after another process inserted
    the same dataset first (a SQLite store, or a server on PostgreSQL)."""
    outer = getattr(_db_errors.active, "on", False)
    _db_errors.active.on = True
    try:
        return _call(fn, *args, **kwargs)
    finally:
        _db_errors.active.on = outer


def _call(fn, *args, **kwargs):
    for attempt in range(LOCKED_RETRIES + 1):
        try:
            with http_limits():
                return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            if attempt == LOCKED_RETRIES or not any(m in str(exc) for m in _RETRIED):
                raise
            time.sleep(min(5.0, 0.05 * 2 ** attempt) * (1 + random.random()))


def experiment_id(client, name, artifact_root=None):
    """The id of experiment ``name``, created if missing (another process may create it at the
    same moment: then its id)."""
    from mlflow.exceptions import MlflowException

    exp = call(client.get_experiment_by_name, name)
    if exp is not None:
        return exp.experiment_id
    try:
        # The kind tag says what the experiment holds. MLflow 3.17's UI ignores it (it takes
        # the kind from its workflowType switch): `mnist-estimators ui` prints the URL of the
        # runs table in the model-training view.
        return call(client.create_experiment, name, artifact_location=artifact_root,
                    tags={"mlflow.experimentKind": "custom_model_development"})
    except MlflowException:
        exp = call(client.get_experiment_by_name, name)
        if exp is None:
            raise
        return exp.experiment_id


def run_tags(name=None, parent_run_id=None, tags=None):
    """The tags a new run starts with: MLflow's context tags (user, source, git commit), this
    process's (for reaping it if the process dies), its name and parent, then ``tags``."""
    from mlflow.tracking.context.registry import resolve_tags
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

    out = dict(process_tags())
    if name:
        out[MLFLOW_RUN_NAME] = name
    if parent_run_id:
        out[MLFLOW_PARENT_RUN_ID] = parent_run_id
    out.update(tags or {})
    return resolve_tags(out)


def create_run(client, experiment_id, tags, start_time=None):
    """Create a run (the package's one place that does): ``tags`` from ``run_tags``, or a
    kept run's own (the outbox). Returns the ``Run``."""
    return call(client.create_run, experiment_id, start_time=start_time, tags=tags)


def default_experiment_name():
    import mlflow

    if os.environ.get("MLFLOW_EXPERIMENT_NAME"):
        return os.environ["MLFLOW_EXPERIMENT_NAME"]
    active = os.environ.get("MLFLOW_EXPERIMENT_ID")  # mlflow.set_experiment sets it too
    if active:
        return mlflow.MlflowClient().get_experiment(active).name
    return DEFAULT_EXPERIMENT


# --------------------------------------------------------------------------- crash recovery

HOST_TAG, PID_TAG, START_TAG = "mnist_estimators.host", "mnist_estimators.pid", "mnist_estimators.pid_start"


def _process_start(pid):
    """The start time of process ``pid`` in clock ticks since boot (Linux), else None: with the
    pid it names one process, even once the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_tags():
    """Tags that name this process, for reaping its runs if it dies."""
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    start = _process_start(os.getpid())
    if start is not None:
        tags[START_TAG] = start
    return tags


def process_alive(tags):
    """Whether the process that ``tags`` (``process_tags()``) name is alive: True or False for
    a process of this host, None when they name another host's process or no process."""
    if not tags or tags.get(HOST_TAG) != socket.gethostname():
        return None
    try:
        pid = int(tags[PID_TAG])
    except (KeyError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    start = tags.get(START_TAG)
    return start is None or _process_start(pid) in (None, start)


def reap(client, parent_run_id=None):
    """Mark KILLED the RUNNING runs started on this host by processes that are gone (killed,
    crashed, out of memory), with their end time at their last logged metric; only the
    children of ``parent_run_id`` when given. Returns their ids.
    """
    from mlflow.entities import ViewType

    host = socket.gethostname()
    if parent_run_id is None:
        exps = [e.experiment_id for e in call(client.search_experiments, view_type=ViewType.ALL)]
    else:
        exps = [call(client.get_run, parent_run_id).info.experiment_id]
    where = f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'"
    if parent_run_id is not None:
        where += f" and tags.`mlflow.parentRunId` = '{parent_run_id}'"
    # A run whose fit finished while the store was failing has its model waiting locally (the
    # outbox registers here): the upload ends it with its true status, so it is not KILLED.
    waiting = {}
    for find in kept_elsewhere:
        try:
            waiting.update(find(client.tracking_uri))
        except Exception:  # noqa: BLE001 - an unreadable outbox: reap as before
            pass
    reaped, spared = [], []
    for i in range(0, len(exps), 100):
        runs = call(client.search_runs, exps[i:i + 100], max_results=1000, filter_string=where)
        for run in runs:
            tags = run.data.tags
            if process_alive(tags) is not False:  # alive, or no pid to tell
                continue
            pid = tags[PID_TAG]
            if run.info.run_id in waiting:
                spared.append(run.info.run_id)
                continue
            stamps = [m.timestamp for key in run.data.metrics
                      for m in call(client.get_metric_history, run.info.run_id, key)]
            stamps.append(run.info.start_time or 0)
            call(client.set_tag, run.info.run_id, "mnist_estimators.reaped",
                 f"process {pid} on {host} ended without finishing this run")
            call(client.set_terminated, run.info.run_id, "KILLED", end_time=max(stamps))
            reaped.append(run.info.run_id)
    if reaped:
        say(f"marked {len(reaped)} run(s) KILLED whose process had died: {', '.join(reaped)}")
    if spared:
        folders = sorted({str(waiting[run_id]) for run_id in spared})
        say(f"left {len(spared)} run(s) of finished processes RUNNING: their fits ended while "
            f"the store was failing, and their models wait in {', '.join(folders)} for "
            f"`mnist-estimators runs upload` ({', '.join(spared)})")
    return reaped
