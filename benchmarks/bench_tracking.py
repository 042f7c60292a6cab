"""Cost of MLflow tracking: per fit, per grid search, and with many processes on one store.

    python benchmarks/bench_tracking.py [--data-home DIR] [--sections fixed calls dead grid processes]
        [--repeats 5] [--grid-repeats 3] [--grid-estimator mlp|cnn] [--processes 1 2 4 8]
        [--fits 4] [--with-models]

1. fixed: the fixed cost of one tracked fit, ``MLPClassifier(max_epochs=1, random_state=0)`` on
   5,000 images, against the same fit untracked (``tracking=False``), interleaved, same seed,
   median of ``--repeats``, with a warm store (created, and a first fit done). Variants: default
   options (basic figures + model), ``figures="none"``, and ``log_model=False, figures="none"``
   (what a search's fold fit does by default); a per-phase profile of the default; and the first
   fit of a fresh process (new store, existing store, untracked).
1b. calls: a search's fold fit (the grid's tiny MLP on 750 images, no model or figures), tracked
   against untracked, interleaved, 20 x ``--repeats`` fits, with every MLflow store call timed:
   what each costs a fit, and the rest.
2. grid: a 16-fit ``GridSearchCV`` (8 candidates, cv=2, n_jobs=2, 2 epochs, 1,500 images) inside
   ``tracking.parent_run`` on a fresh SQLite store, against ``set_tracking(False)``, interleaved,
   median of ``--grid-repeats``, after an untimed untracked and tracked search (loky workers
   started, MLflow imported, the store open in them). Target: tracked/untracked at most 1.15x.
   Every child run (16 folds + the refit) must end FINISHED.
1c. dead: a fit whose tracking server is down, ``MLPClassifier(max_epochs=1)`` on 5,000 images
   with its model kept in a fallback folder, against the same fit untracked, interleaved,
   median of ``--repeats``: a port where nothing listens (refused), and a server that accepts
   connections and never answers (hung, or a firewall dropping the answers), whose connections
   are counted. The extra is the price of the fit's check; the bound is one timeout. Then a
   ``GridSearchCV`` of the same fit (2 candidates x 2 folds, and the refit) against the hung
   server and untracked: the search's connections and extra time (one check for the search).
3. processes: N processes (one torch thread each) released at once, each doing ``--fits`` small
   tracked fits (500 images, 1 epoch, no model or figures unless ``--with-models``) on one fresh
   SQLite store, after one untimed warm-up fit each; the same N untracked. Fits per second, the
   extra time tracking costs a fit, and whether all N x (fits + 1) runs are in the store FINISHED.

Everything happens in temporary folders (the package's default ``./mlruns`` store, or an
explicit sqlite URI for the grid); MLFLOW_TRACKING_URI and MNIST_ESTIMATORS_TRACKING from the
environment are ignored. Writes benchmarks/results/tracking.json and prints one table a section.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # benchmarks/common.py, next to this script

SECTIONS = ("fixed", "calls", "dead", "grid", "processes")
median = statistics.median

# The first fit of a fresh process (argv: data home, tracked 0/1): imports, store creation and
# MLflow's lazy imports all land in it, as they do for a user's first fit of the day.
FIRST_FIT = r"""
import json, sys, time
from mnist_estimators import MLPClassifier, load_mnist
X, y = load_mnist("train", data_home=sys.argv[1])
start = time.perf_counter()
MLPClassifier(max_epochs=1, random_state=0, tracking=sys.argv[2] == "1").fit(X[:5000], y[:5000])
print(json.dumps({"fit_s": time.perf_counter() - start}))
"""

# One of N concurrent processes (argv: data home, fits, with models 0/1). It warms up (imports,
# torch, and with tracking on the store's first open and MLflow's lazy imports: one fit),
# says "ready", and starts its timed fits when the parent says go, at the same moment as the
# others.
WORKER = r"""
import json, sys, time
import torch
torch.set_num_threads(1)
from mnist_estimators import MLPClassifier, load_mnist
data_home, fits, with_models = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
X, y = load_mnist("train", data_home=data_home)
X, y = X[:500], y[:500]
options = None if with_models else {"figures": "none", "log_model": False}
fit = lambda seed: MLPClassifier(max_epochs=1, hidden_sizes=(32,), random_state=seed,
                                 tracking_options=options).fit(X, y)
fit(0)
print("ready", flush=True)
sys.stdin.readline()
start = time.time()
for seed in range(1, fits + 1):
    fit(seed)
print(json.dumps({"start": start, "end": time.time()}), flush=True)
"""


def clean_env(**extra):
    # Children get the package's defaults: no store or switch inherited from this shell.
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "MNIST_ESTIMATORS_TRACKING")}
    return {**env, **extra}


@contextlib.contextmanager
def in_temp_folder(prefix):
    """A temporary folder, made the working directory (where the default ./mlruns store goes)."""
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        os.chdir(tmp)
        try:
            yield tmp
        finally:
            os.chdir(here)


def finished_runs(uri, experiment="mnist-estimators", parent=None):
    """Status -> count of the runs in ``uri`` (children of ``parent`` only, if given)."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    where = f"tags.mlflow.parentRunId = '{parent}'" if parent else ""
    runs = client.search_runs([exp.experiment_id], filter_string=where, max_results=10000)
    counts = {}
    for run in runs:
        counts[run.info.status] = counts.get(run.info.status, 0) + 1
    return counts


# --------------------------------------------------------------------------- 1. fixed cost


PHASES = {  # (owner, attribute) -> label; make_dataset runs inside _start
    ("run", "_open"): "_open", ("run", "_start"): "_start",
    ("run_module", "make_dataset"): "  make_dataset",
    ("run", "_send"): "_send (metric batches)", ("artifacts", "render_figures"): "render_figures",
    ("artifacts", "log_figures"): "log_figures", ("artifacts", "log_model"): "log_model",
    ("run", "_end"): "_end",
}


def patch_phases(totals):
    """Wrap the tracking phases with timers adding to ``totals`` (label -> seconds), in this
    process only. ``run`` calls ``artifacts.log_figures(...)`` through the module, and the
    callback imports ``render_figures`` at each call, so patching module attributes is enough."""
    from mnist_estimators.tracking import artifacts
    from mnist_estimators.tracking import run as run_module
    from mnist_estimators.tracking.run import FitRun

    owners = {"run": FitRun, "artifacts": artifacts, "run_module": run_module}
    for (owner, name), label in PHASES.items():
        fn = getattr(owners[owner], name)

        def timed(*args, _fn=fn, _label=label, **kwargs):
            start = time.perf_counter()
            try:
                return _fn(*args, **kwargs)
            finally:
                totals[_label] = totals.get(_label, 0.0) + time.perf_counter() - start

        setattr(owners[owner], name, timed)


def section_fixed(args, X, y):
    from mnist_estimators import MLPClassifier

    variants = {"default (basic figures + model)": None,
                'figures="none"': {"figures": "none"},
                'log_model=False, figures="none" (a fold fit)': {"log_model": False, "figures": "none"}}
    X, y = X[:5000], y[:5000]
    phases = {}  # the current fit's phase totals; only the default variant's are kept
    patch_phases(phases)

    def fit(tracking, options=None):
        phases.clear()
        start = time.perf_counter()
        MLPClassifier(max_epochs=1, random_state=0, tracking=tracking,
                      tracking_options=options).fit(X, y)
        return time.perf_counter() - start

    # Warm: the store exists and a first tracked fit (MLflow's lazy imports) and a first
    # untracked one (torch's) are done before the clock.
    fit(True), fit(False)
    times = {name: {"untracked": [], "tracked": []} for name in variants}
    profile = []
    for r in range(args.repeats):
        for name, options in variants.items():  # each tracked fit right after its untracked twin
            times[name]["untracked"].append(fit(False))
            times[name]["tracked"].append(fit(True, options))
            if options is None:
                profile.append(dict(phases))
        print(f"repeat {r + 1}: " + ", ".join(
            f"{t['tracked'][-1] - t['untracked'][-1]:+.3f} s" for t in times.values()), flush=True)

    # The first fit of a fresh process: untracked, tracked on a new store, tracked on the store
    # the previous one created (a fresh process, an existing store).
    first = {"untracked": [], "tracked, new store": [], "tracked, existing store": []}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="bench-tracking-first-") as tmp:
            for name, tracked in zip(first, ("0", "1", "1")):
                out = subprocess.run([sys.executable, "-c", FIRST_FIT, str(args.data_home), tracked],
                                     cwd=tmp, env=clean_env(), capture_output=True, text=True)
                if out.returncode:
                    raise RuntimeError(f"first-fit subprocess failed:\n{out.stderr[-3000:]}")
                first[name].append(json.loads(out.stdout.strip().splitlines()[-1])["fit_s"])
    print("first fits: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in first.items()), flush=True)

    result = {"n_images": len(X), "repeats": args.repeats, "variants": {}, "first_fit": {}}
    print(f"\n### fixed cost: MLPClassifier(max_epochs=1) on {len(X):,} images, median of "
          f"{args.repeats}, warm store\n")
    print("| variant | untracked (s) | tracked (s) | tracked - untracked (ms) | ratio |\n|---|---|---|---|---|")
    for name, t in times.items():
        delta = median(a - b for a, b in zip(t["tracked"], t["untracked"]))
        ratio = median(t["tracked"]) / median(t["untracked"])
        result["variants"][name] = {**t, "median_delta_s": delta, "ratio": ratio}
        print(f"| {name} | {median(t['untracked']):.3f} | {median(t['tracked']):.3f} | "
              f"{delta * 1000:.0f} | {ratio:.2f}x |")
    # Top-level phases (not _dataset, inside _start) against the whole measured overhead.
    default = times[next(iter(variants))]
    rest = [(a - b) - sum(v for k, v in p.items() if not k.startswith(" "))
            for a, b, p in zip(default["tracked"], default["untracked"], profile)]
    result["phases_ms"] = {label: 1000 * median(p.get(label, 0.0) for p in profile)
                           for label in PHASES.values()}
    result["phases_ms"]["rest (describe, callbacks, summary...)"] = 1000 * median(rest)
    print("\n| phase of a default tracked fit | median (ms) |\n|---|---|")
    for label, ms in result["phases_ms"].items():
        print(f"| {label} | {ms:.1f} |")
    print("\n| first fit in a fresh process | fit (s) | - untracked (s) |\n|---|---|---|")
    for name, t in first.items():
        result["first_fit"][name] = {"seconds": t, "median_s": median(t)}
        print(f"| {name} | {median(t):.2f} | {median(t) - median(first['untracked']):+.2f} |")
    return result


def section_calls(args, X, y):
    """Where a fold fit's tracking time goes: the grid's fold fit (2 epochs, 64 units, 750
    images, no model or figures) tracked and untracked, interleaved, and each MLflow store call
    it makes timed (``store.call`` is the one door to the store)."""
    from mnist_estimators import MLPClassifier
    from mnist_estimators.tracking import store

    X, y = X[:750], y[:750]
    calls, counts = {}, {}
    inner = store._call

    def timed(fn, *a, **k):
        start = time.perf_counter()
        try:
            return inner(fn, *a, **k)
        finally:
            name = getattr(fn, "__name__", str(fn))
            calls[name] = calls.get(name, 0.0) + time.perf_counter() - start
            counts[name] = counts.get(name, 0) + 1

    def fit(tracking):
        start = time.perf_counter()
        MLPClassifier(max_epochs=2, hidden_sizes=(64,), random_state=0, tracking=tracking,
                      tracking_options={"log_model": False, "figures": "none"}).fit(X, y)
        return time.perf_counter() - start

    fit(True), fit(False)  # warm: the store, MLflow's lazy imports, torch
    store._call = timed
    n = 20 * args.repeats
    times = {"untracked": [], "tracked": []}
    try:
        for _ in range(n):
            times["untracked"].append(fit(False))
            times["tracked"].append(fit(True))
    finally:
        store._call = inner
    extra = median(times["tracked"]) - median(times["untracked"])
    print(f"\n### a fold fit's store calls: MLP (64,) 2 epochs on 750 images, no model or "
          f"figures, {n} fits, warm store\n")
    print(f"untracked {median(times['untracked']) * 1000:.1f} ms, tracked "
          f"{median(times['tracked']) * 1000:.1f} ms: **+{extra * 1000:.1f} ms a fit**\n")
    print("| store call | calls a fit | ms a fit (mean) |\n|---|---|---|")
    for name in calls:
        print(f"| {name} | {counts[name] / n:g} | {calls[name] / n * 1000:.1f} |")
    total = sum(calls.values()) / n
    print(f"| all store calls | {sum(counts.values()) / n:g} | {total * 1000:.1f} |")
    print(f"| the rest (params, tags, dataset digest, callbacks) | | {(extra - total) * 1000:.1f} |")
    return {"n_fits": n, "seconds": times, "extra_s": extra,
            "calls_ms": {k: calls[k] / n * 1000 for k in calls},
            "calls_per_fit": {k: counts[k] / n for k in counts}}


# --------------------------------------------------------------------------- 1c. a dead server


def section_dead(args, X, y):
    """A fit's cost when its tracking server is down: refused, or hung (accepts, never answers)."""
    import socket
    import threading
    import warnings

    import mlflow

    from mnist_estimators import MLPClassifier
    from mnist_estimators.tracking import TrackingWarning, store

    X, y = X[:5000], y[:5000]
    refused = socket.socket()  # bound, never listening: connections are refused
    refused.bind(("127.0.0.1", 0))
    hung = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def accept():
        while True:
            try:
                accepted.append(hung.accept()[0])  # kept open, never answered
            except OSError:  # closed: done
                return

    threading.Thread(target=accept, daemon=True).start()
    servers = {"refused": refused.getsockname()[1], "hung": hung.getsockname()[1]}

    def fit(tracking, fallback, search=False):
        from sklearn.model_selection import GridSearchCV

        est = MLPClassifier(max_epochs=1, random_state=0, tracking=tracking,
                            tracking_options={"fallback_dir": fallback})
        if search:  # 2 candidates x 2 folds, then the refit: five fits
            est = GridSearchCV(est, {"lr": [1e-3, 3e-3]}, cv=2)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TrackingWarning)
            est.fit(X, y)
        return time.perf_counter() - start

    times = {"untracked": [], **{name: [] for name in servers}, "search, untracked": [],
             "search, hung": []}
    connections, search_connections = [], []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-tracking-dead-") as fallback:
            fit(False, fallback)  # warm: torch, MLflow's imports
            for _ in range(args.repeats):
                times["untracked"].append(fit(False, fallback))
                for name, port in servers.items():
                    mlflow.set_tracking_uri(f"http://127.0.0.1:{port}")
                    before = len(accepted)
                    times[name].append(fit(True, fallback))
                    if name == "hung":
                        connections.append(len(accepted) - before)
                times["search, untracked"].append(fit(False, fallback, search=True))
                mlflow.set_tracking_uri(f"http://127.0.0.1:{servers['hung']}")
                before = len(accepted)
                times["search, hung"].append(fit(True, fallback, search=True))
                search_connections.append(len(accepted) - before)
            kept = len(list(Path(fallback).glob("*.pkl")))
    finally:
        refused.close()
        with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
            hung.shutdown(socket.SHUT_RDWR)
        hung.close()
        for conn in accepted:
            conn.close()
        mlflow.set_tracking_uri(None)
    base = median(times["untracked"])
    print(f"\n### a fit whose tracking server is down: MLP 1 epoch on 5,000 images, median of "
          f"{args.repeats}; the check's timeout is {store.REACH_TIMEOUT_S} s\n")
    print("| server | fit | extra over untracked | connections a fit |\n|---|---|---|---|")
    print(f"| none (untracked) | {base:.2f} s | | |")
    for name in servers:
        extra = median(times[name]) - base
        conns = f"{median(connections):g}" if name == "hung" else ""
        print(f"| {name} | {median(times[name]):.2f} s | +{extra:.2f} s | {conns} |")
    base = median(times["search, untracked"])
    extra = median(times["search, hung"]) - base
    print(f"\n| a 2 x 2 GridSearchCV and its refit (5 fits) | search | extra over untracked | "
          f"connections a search |\n|---|---|---|---|\n| untracked | {base:.2f} s | | |\n"
          f"| hung | {median(times['search, hung']):.2f} s | +{extra:.2f} s | "
          f"{median(search_connections):g} |")
    # each fit's model (a search's refit's only: its folds log none)
    print(f"\nmodels kept in the fallback folder: {kept} of {3 * args.repeats}")
    return {"seconds": times, "hung_connections": connections,
            "search_hung_connections": search_connections, "models_kept": kept,
            "reach_timeout_s": store.REACH_TIMEOUT_S}


# --------------------------------------------------------------------------- 2. grid search


def section_grid(args, X, y):
    import mlflow
    from sklearn.model_selection import GridSearchCV

    from mnist_estimators import MLPClassifier, tracking

    X, y = X[:1500], y[:1500]
    grid = {"lr": [1e-3, 3e-3], "batch_size": [64, 128], "dropout": [0.0, 0.1]}  # 8 candidates

    if args.grid_estimator == "cnn":  # the default CNN (4 epochs): ~1 s a fit here
        from mnist_estimators import CNNClassifier

        base, grid = CNNClassifier(random_state=0), {
            "lr": [1e-3, 3e-3], "batch_size": [64, 128], "dropout": [0.0, 0.25]}
    else:  # a tiny MLP, 2 epochs: ~0.05 s a fit, the fixed cost's worst case
        base = MLPClassifier(max_epochs=2, hidden_sizes=(64,), random_state=0)

    def search():
        return GridSearchCV(base, grid, cv=2, n_jobs=2)

    def untracked():
        tracking.set_tracking(False)
        try:
            start = time.perf_counter()
            search().fit(X, y)
            return time.perf_counter() - start
        finally:
            tracking.set_tracking(None)

    def tracked(uri, label):
        start = time.perf_counter()
        with tracking.parent_run("grid") as parent:
            if parent is None:
                raise RuntimeError("parent_run yielded None: the store is unusable")
            search().fit(X, y)
        wall = time.perf_counter() - start
        children = finished_runs(uri, parent=parent.run_id)
        print(f"{label}: {wall:.2f} s; child runs {children} (expected 17 FINISHED)", flush=True)
        if children != {"FINISHED": 17}:
            raise RuntimeError(f"grid search: expected 17 FINISHED child runs, found {children}")
        return wall

    times = {"untracked": [], "tracked": []}
    # cwd too: a sqlite URI without an artifact root puts artifacts in ./mlruns
    with in_temp_folder("bench-tracking-grid-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        mlflow.set_tracking_uri(uri)
        # Warm-up, not timed: starts the loky workers, and makes them import MLflow and open
        # the store, so that neither side pays for that in only some of its repeats (a fresh
        # process's first fit is section 1's).
        untracked()
        tracked(uri, "warm-up, tracked")
        for _ in range(args.grid_repeats):
            times["untracked"].append(untracked())
            print(f"untracked: {times['untracked'][-1]:.2f} s", flush=True)
            times["tracked"].append(tracked(uri, "tracked"))
    ratio = median(times["tracked"]) / median(times["untracked"])
    print(f"\n### grid search of {type(base).__name__}: 8 candidates x cv=2 (16 fits + refit), "
          f"n_jobs=2, {base.max_epochs} epochs, "
          f"{len(X):,} images, median of {args.grid_repeats}, warm workers and store\n")
    print("| tracking | wall (s) |\n|---|---|")
    for name, t in times.items():
        print(f"| {name} | {median(t):.2f} |")
    print(f"| **ratio** | **{ratio:.2f}x** (target <= 1.15x: {'met' if ratio <= 1.15 else 'NOT met'}) |")
    return {"n_images": len(X), "repeats": args.grid_repeats, "seconds": times, "ratio": ratio,
            "child_runs_finished": 17}


# --------------------------------------------------------------------------- 3. processes


def run_processes(args, n, tracked):
    """N workers released at once on a fresh default store; (wall, runs by status)."""
    with tempfile.TemporaryDirectory(prefix="bench-tracking-procs-") as tmp:
        env = clean_env(MNIST_ESTIMATORS_TRACKING="1" if tracked else "0", OMP_NUM_THREADS="1")
        logs = [open(f"{tmp}/stderr-{i}.txt", "w") for i in range(n)]  # a pipe could fill up
        procs = [subprocess.Popen(
            [sys.executable, "-c", WORKER, str(args.data_home), str(args.fits),
             "1" if args.with_models else "0"], cwd=tmp, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log) for log in logs]
        try:
            for p in procs:
                if p.stdout.readline().strip() != "ready":
                    raise RuntimeError
            for p in procs:
                p.stdin.write("go\n")
                p.stdin.flush()
            spans = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
            if any(p.returncode for p in procs):
                raise RuntimeError
        except (RuntimeError, ValueError, IndexError):
            for p in procs:
                p.kill()
            i = next((i for i, p in enumerate(procs) if p.wait()), 0)
            raise RuntimeError(f"worker {i} of {n} failed (rc {procs[i].returncode}):\n"
                               f"{Path(tmp, f'stderr-{i}.txt').read_text()[-3000:]}") from None
        finally:
            for log in logs:
                log.close()
        wall = max(s["end"] for s in spans) - min(s["start"] for s in spans)
        runs = finished_runs(f"sqlite:///{tmp}/mlruns/mlflow.db") if tracked else {}
    return wall, runs


def section_processes(args):
    rows = {}
    for n in args.processes:
        wall_on, runs = run_processes(args, n, True)
        wall_off, _ = run_processes(args, n, False)
        expected = n * (args.fits + 1)  # each worker's warm-up fit is a run too
        lost = expected - runs.get("FINISHED", 0)
        rows[n] = {"fits": n * args.fits, "wall_tracked_s": wall_on, "wall_untracked_s": wall_off,
                   "fits_per_s_tracked": n * args.fits / wall_on,
                   "fits_per_s_untracked": n * args.fits / wall_off,
                   "tracking_ms_per_fit": 1000 * (wall_on - wall_off) / args.fits,
                   "runs_expected": expected, "runs": runs, "runs_lost": lost}
        print(f"N={n}: tracked {wall_on:.2f} s, untracked {wall_off:.2f} s, runs {runs} "
              f"(expected {expected} FINISHED)", flush=True)
    cores = os.cpu_count() or 1
    what = "models + figures" if args.with_models else "no model, no figures"
    print(f"\n### {args.fits} fits per process (500 images, 1 epoch, {what}), one SQLite store, "
          f"{cores} CPUs\n")
    print("| processes | fits | tracked: wall (s) | fits/s | untracked: wall (s) | fits/s | "
          "tracking per fit (ms) | runs FINISHED | lost |\n|---|---|---|---|---|---|---|---|---|")
    for n, r in rows.items():
        print(f"| {n} | {r['fits']} | {r['wall_tracked_s']:.2f} | {r['fits_per_s_tracked']:.1f} | "
              f"{r['wall_untracked_s']:.2f} | {r['fits_per_s_untracked']:.1f} | "
              f"{r['tracking_ms_per_fit']:.0f} | {r['runs'].get('FINISHED', 0)}/{r['runs_expected']} "
              f"| {r['runs_lost']} |")
    print("\ntracking per fit = (tracked wall - untracked wall) / fits per process: what a fit "
          "waits for the store (and the CPU its logging needs), with N processes at once.")
    lost = sum(r["runs_lost"] for r in rows.values())
    if lost:  # reported, and the benchmark exits 1 once the results are written
        print(f"\n!! {lost} run(s) lost or not FINISHED: "
              f"{ {n: r['runs'] for n, r in rows.items() if r['runs_lost']} }")
    return {"fits_per_process": args.fits, "with_models": args.with_models, "runs_lost": lost,
            "by_processes": {str(n): r for n, r in rows.items()}}


# --------------------------------------------------------------------------- main


def main(argv=None):
    parser = common.parser(__doc__, "tracking.json")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--repeats", type=int, default=5, help="fixed: fits per variant")
    parser.add_argument("--grid-repeats", type=int, default=3)
    parser.add_argument("--grid-estimator", choices=["mlp", "cnn"], default="mlp",
                        help="mlp: a tiny MLP, 2 epochs (worst case); cnn: the default CNN")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--fits", type=int, default=4, help="processes: timed fits per process")
    parser.add_argument("--with-models", action="store_true",
                        help="processes: log models and basic figures too")
    args = parser.parse_args(argv)
    if not common.has_full_mnist(args.data_home):
        return 0
    args.data_home, args.out = Path(args.data_home).resolve(), Path(args.out).resolve()
    for key in ("MLFLOW_TRACKING_URI", "MNIST_ESTIMATORS_TRACKING"):
        os.environ.pop(key, None)

    from mnist_estimators import load_mnist

    X, y = load_mnist("train", data_home=args.data_home)
    results = {"machine": common.machine(), "args": vars(args)}
    if "fixed" in args.sections:
        with in_temp_folder("bench-tracking-fixed-"):  # the package's default store, ./mlruns
            results["fixed"] = section_fixed(args, X, y)
    if "calls" in args.sections:
        with in_temp_folder("bench-tracking-calls-"):
            results["calls"] = section_calls(args, X, y)
    if "dead" in args.sections:
        with in_temp_folder("bench-tracking-dead-"):
            results["dead"] = section_dead(args, X, y)
    if "grid" in args.sections:
        results["grid"] = section_grid(args, X, y)
    if "processes" in args.sections:
        results["processes"] = section_processes(args)
    print(f"\n{results['machine']}")
    common.write_json(args.out, results)
    return 1 if results.get("processes", {}).get("runs_lost") else 0


if __name__ == "__main__":
    sys.exit(main())
