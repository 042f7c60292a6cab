"""Run an experiment's cells: one MLflow parent run per experiment and protocol, one child run
per cell (value x seed), on this machine's cores (joblib's loky) or on a Dask cluster (joblib's
Dask backend). A cell whose run already holds its result is not run again, so the same command
after Ctrl-C, a crash or a lost worker finishes only the missing cells.

    result = run("seed004-init", protocol="fast", n_jobs=2)
    result.report.markdown
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from . import lookup
from .lookup import TAG
from .spec import Experiment, ExperimentError, load

BACKENDS = ("loky", "dask")
DONE = ("ok", "diverged")      # outcomes that are results: a rerun would give the same


@dataclass
class RunResult:
    experiment: Experiment
    protocol: str
    parent_run_id: str | None
    ran: list = field(default_factory=list)        # rows of the cells run now
    skipped: int = 0                                # cells already done in the store
    report: object = None                           # report.Report, when tracking is on


# --------------------------------------------------------------------------- data


def load_data(exp, protocol, data_home=None):
    """The protocol's training and test images: ``train_size`` (``test_size``) drawn from MNIST
    train (test), stratified, the same draw for every cell and run (seed 0)."""
    from sklearn.model_selection import train_test_split

    from ..data import load_mnist, mark_subset

    spec = exp.protocol(protocol)
    X, y = load_mnist("train", data_home=data_home)
    Xt, yt = load_mnist("test", data_home=data_home)

    def draw(X, y, n, what):
        if n is None or n >= len(y):
            return X, y
        if n < 10 * len(np.unique(y)):
            raise ExperimentError(f"{exp.path}: protocols.{protocol}.{what} = {n} is too small "
                                  "to hold every class")
        keep, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=0)
        keep.sort()
        return mark_subset(X[keep], X, y[keep]), y[keep]

    return (*draw(X, y, spec.get("train_size"), "train_size"),
            *draw(Xt, yt, spec.get("test_size"), "test_size"))


# --------------------------------------------------------------------------- one cell


def run_cell(estimator, cell, X, y, X_test, y_test, threads, parent_pid=None):
    """Fit one cell where joblib puts it (this process, a loky worker, a Dask worker) and put
    its result on its run: test and train accuracy and ``experiment.outcome``. A fit that
    diverges is a result (the seeds' "overflow"), not an error; any other failure is recorded
    as "failed" and the next run of the experiment tries the cell again. ``parent_pid``: the
    process running the experiment, which a loky worker does not outlive."""
    import torch

    from .. import tracking
    from ..signals import exit_with_parent, parent_gone
    from ..training import TrainingDivergedError

    exit_with_parent(parent_pid)

    torch.set_num_threads(threads)  # n_jobs workers share the cores instead of oversubscribing
    net = estimator[-1] if hasattr(estimator, "steps") else estimator
    start = time.perf_counter()
    outcome, error, metrics = "ok", "", {}
    try:
        estimator.fit(X, y)
        metrics["test_accuracy"] = float(estimator.score(X_test, y_test))
        n = min(len(y), 10_000)  # the training figure, on a fixed share of the training set
        metrics["train_accuracy"] = float(estimator.score(X[:n], y[:n]))
    except TrainingDivergedError as exc:
        outcome, error = "diverged", str(exc)
    except Exception as exc:  # noqa: BLE001 - one cell's failure must not stop the others
        outcome, error = "failed", f"{type(exc).__name__}: {exc}"
    except KeyboardInterrupt:
        if parent_gone.is_set():  # the fit ended its run KILLED; no one waits for this cell
            os._exit(1)
        raise
    row = {"cell_id": cell.id, "value": cell.value, "seed": cell.seed, "outcome": outcome,
           "error": error, "seconds": time.perf_counter() - start, **metrics,
           "run_id": getattr(net, "last_run_id_", None)}
    if row["run_id"]:
        tracking.log_results(row["run_id"], metrics, {TAG + "outcome": outcome},
                             context=getattr(net, "tracking_context_", None))
    return row


# --------------------------------------------------------------------------- the experiment


def run(experiment, protocol="fast", n_seeds=None, n_jobs=1, backend="loky", scheduler=None,
        force=False, data_home=None, progress=True, connect_timeout=10, threads=None):
    """Run the cells of ``experiment`` (a name, a ``.toml`` path or an ``Experiment``) under
    ``protocol`` that are not done yet (all of them with ``force``); then rebuild its report
    from the store and log it on the parent run. Returns a ``RunResult``.

    ``threads``: torch threads per cell; by default this machine's cores shared among the
    ``n_jobs`` loky workers, and 1 on Dask (give each worker as many processes as cores).
    Results depend on it in the last digits: compare runs made with the same value.

    Everything that can be checked is checked before any training: the experiment, protocol
    and seeds, the backend and the Dask scheduler (reached within ``connect_timeout``), the
    tracking store.
    """
    from sklearn.base import clone

    from .. import tracking

    exp = experiment if isinstance(experiment, Experiment) else load(experiment)
    cells = exp.cells(protocol, n_seeds)
    if backend not in BACKENDS:
        raise ExperimentError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if n_jobs < 1:
        raise ExperimentError(f"n_jobs must be at least 1, got {n_jobs}")
    client, environ = (_dask_client(scheduler, connect_timeout) if backend == "dask"
                       else (None, None))
    try:
        store = lookup.open_checked_store() if tracking.is_enabled() else None
        data = load_data(exp, protocol, data_home)
        parent_id = lookup.find_parent(store, exp, protocol) if store else None
        tags = {TAG + "name": exp.name, TAG + "protocol": protocol, TAG + "source": exp.source,
                TAG + "parent": "true", TAG + "file": str(exp.path),
                **{_tag_key(f"seed.{k}"): v for k, v in exp.seed_reported.items()}}
        result = RunResult(exp, protocol, parent_id)
        from ..data import data_source

        # the training data, named as its cells name it (they fit copies of it in workers)
        with tracking.parent_run(f"{exp.name} · {protocol}", experiment=exp.name, tags=tags,
                                 run_id=parent_id, data_source=data_source(data[0])) as parent:
            result.parent_run_id = parent.run_id if parent is not None else None
            if parent is not None:
                parent.log_dataset(data[0], data[1])
            done = set() if force or parent is None else lookup.done_cells(store, parent.run_id)
            todo = [c for c in cells if c.id not in done]
            result.skipped = len(cells) - len(todo)
            # cloned here, inside the parent run: each clone carries the parent's context to
            # the process that fits it (see tracking.capture_context)
            jobs = [(clone(_with_run_options(exp.build(c), c, exp)), c) for c in todo]
            if threads is None:
                threads = max(1, (os.cpu_count() or 1) // n_jobs) if backend == "loky" else 1
            result.ran = _execute(jobs, data, n_jobs, backend, progress, exp, protocol,
                                  result.skipped, len(cells), threads)
            if parent is not None:
                from . import report

                report.mark_superseded(store, parent.run_id)
                result.report = report.build(store, parent.run_id, exp, protocol)
                report.log(store, parent.run_id, result.report)
        return result
    finally:
        if client is not None:
            client.close()
            _restore_environ(environ)


def _restore_environ(environ):
    """Give back the environment variables of ``environ`` (name -> value, None: unset)."""
    for key, value in (environ or {}).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _tag_key(key):
    """MLflow tag keys allow letters, digits and ``_-. /`` only (a label may be "U(0,1)")."""
    import re

    return re.sub(r"[^\w\-. /]", "_", key)[:250]


def _with_run_options(estimator, cell, exp):
    net = estimator[-1] if hasattr(estimator, "steps") else estimator
    figures = {"figures": "all", "embedding": exp.embedding} \
        if exp.cell_figures and cell.seed == 0 else {}  # the report shows seed 0's
    # a quick run's cells are a smoke test of the grid: no model each (fast and faithful keep
    # theirs, to be reloaded and compared)
    models = {"log_model": False} if cell.protocol == "quick" else {}
    net.set_params(tracking_options={
        **(net.tracking_options or {}), **figures, **models, "run_name": cell.name,
        "tags": {TAG + "cell_id": cell.id, TAG + "value": cell.value, TAG + "seed": cell.seed,
                 TAG + "name": cell.experiment, TAG + "protocol": cell.protocol,
                 lookup.SUPERSEDED: "no"}})
    return estimator


def _execute(jobs, data, n_jobs, backend, progress, exp, protocol, skipped, total, threads):
    """Run ``jobs`` with joblib, in completion order, with a progress bar (cells done and to
    go, ETA). Returns the rows."""
    import joblib
    from tqdm.auto import tqdm

    if not jobs:
        return []
    bar = tqdm(total=total, initial=skipped, unit="cell", disable=not progress,
               desc=f"{exp.name} · {protocol}", dynamic_ncols=True)
    rows = []
    # loky's workers are this process's children: they end when it does (a Dask worker's
    # life is its cluster's business)
    parent_pid = os.getpid() if backend == "loky" else None
    tasks = (joblib.delayed(run_cell)(est, cell, *data, threads, parent_pid) for est, cell in jobs)
    with joblib.parallel_config(backend=backend, n_jobs=n_jobs if backend == "loky" else -1):
        for row in joblib.Parallel(return_as="generator_unordered")(tasks):
            rows.append(row)
            bar.update(1)
            if row["outcome"] == "failed":
                bar.write(f"cell {row['value']} · seed {row['seed']} failed: {row['error']}")
    bar.close()
    return rows


def _dask_client(scheduler, timeout):
    """A ``dask.distributed`` client of ``scheduler`` (an address; None starts a LocalCluster)
    and the environment variables to give back when it closes (``_restore_environ``), or an
    error naming the address when it cannot be reached within ``timeout`` seconds."""
    try:
        import dask
        from dask.distributed import Client
    except ImportError as exc:
        raise ExperimentError("backend 'dask' needs dask.distributed (a dependency of "
                              "mnist-estimators: reinstall it)") from exc
    if scheduler is None:
        # distributed's nannies write their pre-spawn environment (OMP_NUM_THREADS=1,
        # MKL_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_, ...) into the os.environ of the process that
        # starts a LocalCluster, and never take it back (by design: dask/distributed#6681); every
        # process this one starts afterwards (a later search's loky workers, a subprocess) would
        # run torch on one thread. distributed has no option to undo it, so run() does, when the
        # client is closed and no nanny spawns any more.
        keys = dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}
        environ = {key: os.environ.get(key) for key in keys}
        return Client(processes=True, threads_per_worker=1), environ
    try:
        return Client(scheduler, timeout=timeout), None
    except (OSError, TimeoutError) as exc:
        raise ExperimentError(f"The Dask scheduler at {scheduler} could not be reached within "
                              f"{timeout} s ({type(exc).__name__}: {exc}); start one with "
                              "`dask scheduler` or check the address") from exc
