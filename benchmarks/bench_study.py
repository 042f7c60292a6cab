"""Optuna studies on full MNIST: pruning against none, and 1 against 2 worker processes.

    python benchmarks/bench_study.py [--data-home DIR] [--trials 12] [--epochs 4]
        [--sections pruning workers exact] [--exact-tries 3]

1. The same trial budget on the MLP pipeline, median pruner against no pruner, same sampler
   seed: wall time and best validation accuracy.
2. One study on a journal file worked by 1 process, then by 2 processes (each with half the
   cores for torch): trials per minute.
3. exact: two processes on one named SQLite study of n_trials 4, then 6 (softmax regression,
   2 epochs on 5,000 images: short trials make the race for the last place likely),
   ``--exact-tries`` times each: how many COMPLETE trials the study ends with, and how many
   surplus trials (started for a place already held, ended FAIL unrun).

Tracking is off here, so the figures are the study's own. Writes benchmarks/results/study.json.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import common  # benchmarks/common.py, next to this script



def _study(data_home, trials, epochs, pruner, storage=None, name=None, threads=None):
    os.environ["MNIST_ESTIMATORS_TRACKING"] = "0"
    import optuna
    import torch

    from mnist_estimators import load_mnist
    from mnist_estimators.pipelines import get
    from mnist_estimators.search import tune

    if threads:
        torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    X, y = load_mnist("train", data_home=data_home)
    module = get("mlp")
    start = time.perf_counter()
    result = tune(module.build_pipeline(clf__max_epochs=epochs), module.SPACE, X, y,
                  n_trials=trials, pruner=pruner, storage=storage, study_name=name, seed=0,
                  refit=False)
    states = [t.state.name for t in result.study.trials]
    return {"wall_s": time.perf_counter() - start, "best_value": result.best_value,
            "complete": states.count("COMPLETE"), "pruned": states.count("PRUNED")}


def _worker(args):
    data_home, trials, epochs, storage, name, threads = args
    return _study(data_home, trials, epochs, None, storage, name, threads)


def _exact_worker(args):
    data_home, trials, storage = args
    os.environ["MNIST_ESTIMATORS_TRACKING"] = "0"
    import optuna
    import torch

    from mnist_estimators import SoftmaxRegressionClassifier, load_mnist
    from mnist_estimators.search import tune

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    X, y = load_mnist("train", data_home=data_home)
    space = {"lr": optuna.distributions.FloatDistribution(1e-4, 3e-2, log=True)}
    tune(SoftmaxRegressionClassifier(max_epochs=2, random_state=0), space, X[:5000], y[:5000],
         n_trials=trials, storage=storage, study_name="exact", refit=False, pruner=None,
         seed=None)


def section_exact(args, ctx):
    import optuna

    out = {}
    for n in (4, 6):
        tries = []
        for _ in range(args.exact_tries):
            storage = f"sqlite:///{tempfile.mkdtemp()}/study.db"
            optuna.create_study(storage=storage, study_name="exact", direction="maximize")
            with ctx.Pool(2) as pool:
                pool.map(_exact_worker, [(args.data_home, n, storage)] * 2)
            trials = optuna.load_study(study_name="exact", storage=storage).trials
            states = [t.state.name for t in trials]
            tries.append({"complete": states.count("COMPLETE"),
                          "surplus": sum(bool(t.user_attrs.get("surplus")) for t in trials)})
            print(f"n_trials={n}: {tries[-1]}", flush=True)
        out[f"n_trials={n}"] = tries
    return out


def section_pruning(args):
    results = {}
    for pruner in ("median", None):
        results[f"pruner={pruner}"] = r = _study(args.data_home, args.trials, args.epochs, pruner)
        print(f"pruner={pruner}: {r}", flush=True)
    p, n = results["pruner=median"], results["pruner=None"]
    print(f"\nMLP pipeline, {args.epochs} epochs per trial, full MNIST")
    print("| study | trials | wall (s) | best valid acc |\n|---|---|---|---|")
    print(f"| median pruner | {args.trials} ({p['pruned']} pruned) | {p['wall_s']:.1f} | {p['best_value']:.4f} |")
    print(f"| no pruner | {args.trials} | {n['wall_s']:.1f} | {n['best_value']:.4f} |")
    print(f"\npruning: {n['wall_s'] / p['wall_s']:.2f}x faster, best value "
          f"{p['best_value'] - n['best_value']:+.4f}")
    return results


def section_workers(args, ctx):
    import optuna

    from mnist_estimators.search import make_storage

    cores = os.cpu_count() or 1
    results = {}
    for workers in (1, 2):
        storage = f"journal:{tempfile.mkdtemp()}/study.log"
        optuna.create_study(storage=make_storage(storage), study_name="w", direction="maximize")
        start = time.perf_counter()
        with ctx.Pool(workers) as pool:  # a named study: --worker-trials in all, whoever runs them
            pool.map(_worker, [(args.data_home, args.worker_trials, args.epochs, storage, "w",
                                max(1, cores // workers))] * workers)
        wall = time.perf_counter() - start
        n = len(optuna.load_study(study_name="w", storage=make_storage(storage)).trials)
        results[f"workers={workers}"] = {"wall_s": wall, "trials": n, "trials_per_min": 60 * n / wall}
        print(f"workers={workers}: {results[f'workers={workers}']}", flush=True)
    w1, w2 = results["workers=1"], results["workers=2"]
    print(f"workers: 1 -> {w1['trials_per_min']:.1f} trials/min, 2 -> {w2['trials_per_min']:.1f} "
          f"trials/min ({w2['trials_per_min'] / w1['trials_per_min']:.2f}x)")
    return results


def main(argv=None):
    parser = common.parser(__doc__, "study.json")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--worker-trials", type=int, default=8)
    parser.add_argument("--sections", nargs="+", choices=("pruning", "workers", "exact"),
                        default=["pruning", "workers", "exact"])
    parser.add_argument("--exact-tries", type=int, default=3)
    args = parser.parse_args(argv)
    if not common.has_full_mnist(args.data_home):
        return 0
    ctx = multiprocessing.get_context("spawn")
    results = {}
    if "pruning" in args.sections:
        results.update(section_pruning(args))
    if "workers" in args.sections:
        results.update(section_workers(args, ctx))
    if "exact" in args.sections:
        results["exact"] = exact = section_exact(args, ctx)
        print("\ntwo processes on one study: COMPLETE trials (surplus trials) per try")
        print("| n_trials | tries |\n|---|---|")
        for key, tries in exact.items():
            print(f"| {key.split('=')[1]} | "
                  + ", ".join(f"{t['complete']} ({t['surplus']})" for t in tries) + " |")
    print(common.machine())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
