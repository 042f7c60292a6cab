"""Optuna studies on full MNIST: pruning against none, and 1 against 2 worker processes.

    python benchmarks/bench_study.py [--data-home DIR] [--trials 12] [--epochs 4]

1. The same trial budget on the MLP pipeline, median pruner against no pruner, same sampler
   seed: wall time and best validation accuracy.
2. One study on a journal file worked by 1 process, then by 2 processes (each with half the
   cores for torch): trials per minute.

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


def main(argv=None):
    parser = common.parser(__doc__, "study.json")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--worker-trials", type=int, default=8)
    args = parser.parse_args(argv)
    if not common.has_full_mnist(args.data_home):
        return 0
    results = {}
    for pruner in ("median", None):
        results[f"pruner={pruner}"] = r = _study(args.data_home, args.trials, args.epochs, pruner)
        print(f"pruner={pruner}: {r}", flush=True)
    cores = os.cpu_count() or 1
    ctx = multiprocessing.get_context("spawn")
    for workers in (1, 2):
        storage = f"journal:{tempfile.mkdtemp()}/study.log"
        import optuna

        from mnist_estimators.search import make_storage

        optuna.create_study(storage=make_storage(storage), study_name="w", direction="maximize")
        per = args.worker_trials // workers
        start = time.perf_counter()
        with ctx.Pool(workers) as pool:
            pool.map(_worker, [(args.data_home, per, args.epochs, storage, "w",
                                max(1, cores // workers))] * workers)
        wall = time.perf_counter() - start
        n = len(optuna.load_study(study_name="w", storage=make_storage(storage)).trials)
        results[f"workers={workers}"] = {"wall_s": wall, "trials": n, "trials_per_min": 60 * n / wall}
        print(f"workers={workers}: {results[f'workers={workers}']}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    p, n = results["pruner=median"], results["pruner=None"]
    w1, w2 = results["workers=1"], results["workers=2"]
    print(f"\nMLP pipeline, {args.epochs} epochs per trial, full MNIST ({cores} CPUs)")
    print("| study | trials | wall (s) | best valid acc |\n|---|---|---|---|")
    print(f"| median pruner | {args.trials} ({p['pruned']} pruned) | {p['wall_s']:.1f} | {p['best_value']:.4f} |")
    print(f"| no pruner | {args.trials} | {n['wall_s']:.1f} | {n['best_value']:.4f} |")
    print(f"\npruning: {n['wall_s'] / p['wall_s']:.2f}x faster, best value "
          f"{p['best_value'] - n['best_value']:+.4f}")
    print(f"workers: 1 -> {w1['trials_per_min']:.1f} trials/min, 2 -> {w2['trials_per_min']:.1f} "
          f"trials/min ({w2['trials_per_min'] / w1['trials_per_min']:.2f}x)\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
