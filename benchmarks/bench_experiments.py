"""What each experiment's ``faithful`` protocol costs on this machine: measured time per epoch of
every value, the cell time and the projected total, serial and on a Dask cluster of N workers.

    python benchmarks/bench_experiments.py [--data-home DIR] [--experiments NAME ...]
        [--fraction 0.1] [--workers 2 8 32]

For each experiment and each value of its axes, the cell's estimator (seed 0, tracking off,
one torch thread, as on a Dask worker) trains three epochs on ``--fraction`` of the protocol's training
set (its own validation split included); skorch's per-epoch timer gives the epoch time (the
faster of epochs 2 and 3), and an epoch of the full set is it divided by the fraction. A cell
costs the fit's time outside its epochs plus the protocol's ``max_epochs`` epochs (an upper bound where
the protocol stops early: the seed 002 studies stopped after 5 to 31 of their 100), and the
experiment's total is the sum over its values times its seeds, in one-thread cell time. On N
one-thread workers (this machine: `--n-jobs 2`) the total divides by N at best (the cells are
independent), and the longest cell is a floor.

The training set here is MNIST train (60,000), so this needs the full set (``--data-home``);
it skips, saying so, without it.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import has_full_mnist, machine, parser, write_json  # noqa: E402


def epoch_seconds(exp, cell, X, y, fraction):
    """(seconds of one epoch on all of ``X``, fixed seconds per fit), from a three-epoch fit on
    ``fraction`` of it: skorch's own per-epoch timer (``history[:, "dur"]``, training and
    validation) of epochs 2 and 3, the faster of the two, scaled by the fraction; the fixed
    cost is the fit's time outside its epochs. Epoch 1 is left out: it pays for the first
    batches' allocations. (Differencing two fits' wall times was tried: on this VM, whose
    single runs vary by +-30%, it gave negative epochs.)"""
    import numpy as np

    n = max(int(len(y) * fraction), 1000)
    keep = np.random.default_rng(0).permutation(len(y))[:n]
    est = exp.build(cell)
    net = est[-1] if hasattr(est, "steps") else est
    net.set_params(max_epochs=3, tracking=False, early_stopping=False, plateau_tol=None)
    start = time.perf_counter()
    est.fit(X[keep], y[keep])
    wall = time.perf_counter() - start
    durs = list(net.history[:, "dur"])
    return min(durs[1:]) * len(y) / n, max(wall - sum(durs), 0.0)


def hours(seconds):
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def main(argv=None):
    p = parser(__doc__, "experiments.json")
    p.add_argument("--experiments", nargs="*", help="default: every experiment shipped")
    p.add_argument("--fraction", type=float, default=0.1,
                   help="share of the training set one timed epoch sees (default 0.1)")
    p.add_argument("--workers", type=int, nargs="*", default=[2, 8, 32],
                   help="one-thread workers to project on (2: this machine with --n-jobs 2)")
    p.add_argument("--protocol", default="faithful")
    p.add_argument("--threads", type=int, default=1, help="torch threads per cell (default 1)")
    args = p.parse_args(argv)
    if not has_full_mnist(args.data_home):
        return 0
    import torch

    from mnist_estimators import tracking
    from mnist_estimators.experiments import spec

    # One thread, as a cell runs on a Dask worker (`--nthreads 1`) or in each of `--n-jobs 2`
    # here; it is also steadier on this VM, where two threads' epochs varied up to 3x.
    torch.set_num_threads(args.threads)
    from mnist_estimators.experiments.runner import load_data

    tracking.set_tracking(False)
    names = args.experiments or spec.available()
    rows, cache = [], {}
    for name in names:
        exp = spec.load(name)
        if args.protocol not in exp.protocols:
            print(f"{name}: no {args.protocol} protocol; skipped")
            continue
        proto = exp.protocol(args.protocol)
        key = (proto.get("train_size"), proto.get("test_size"))
        if key not in cache:
            cache.clear()
            cache[key] = load_data(exp, args.protocol, data_home=args.data_home)
        X, y, _, _ = cache[key]
        cells = exp.cells(args.protocol, n_seeds=1)
        if not rows:  # warm-up, not timed: the process's first fit was ~30% slower
            epoch_seconds(exp, cells[0], X, y, args.fraction / 4)
        values = []
        for cell in cells:
            epochs = int(cell.params.get("max_epochs") or exp.estimator_class()().max_epochs)
            s, fixed = epoch_seconds(exp, cell, X, y, args.fraction)
            values.append({"value": cell.value, "epoch_s": s, "fixed_s": fixed, "epochs": epochs,
                           "cell_s": fixed + s * epochs,
                           "early_stopping": bool(cell.params.get("early_stopping"))})
            print(f"{name} {cell.value}: {s:.1f} s an epoch x {epochs} + {fixed:.1f} s = "
                  f"{hours(values[-1]['cell_s'])} a cell",
                  flush=True)
        total = sum(v["cell_s"] for v in values) * exp.seeds
        rows.append({"experiment": name, "n_train": len(y), "seeds": exp.seeds,
                     "cells": len(values) * exp.seeds, "values": values, "total_s": total,
                     "longest_cell_s": max(v["cell_s"] for v in values),
                     "early_stopping": any(v["early_stopping"] for v in values)})

    print(f"\n### `{args.protocol}` protocol: measured time per cell and projected totals "
          f"(three epochs on {args.fraction:.0%} of the training set per value, scaled)\n")
    head = " | ".join(f"{n} workers" for n in args.workers)
    print(f"| experiment | cells | s / epoch (values) | epochs | longest cell | one core | {head} |")
    print("|---|---|---|---|---|---|" + "---|" * len(args.workers))
    for r in rows:
        eps = [v["epoch_s"] for v in r["values"]]
        bound = " (upper bound: stops early)" if r["early_stopping"] else ""
        # N workers: the cells are independent, so the total divides by N at best, and the
        # longest cell is a floor
        per_n = " | ".join(hours(max(r["total_s"] / n, r["longest_cell_s"])) for n in args.workers)
        epochs = sorted({v["epochs"] for v in r["values"]})
        print(f"| {r['experiment']} | {r['cells']} | {min(eps):.1f}-{max(eps):.1f} | "
              f"{'-'.join(map(str, epochs))} | {hours(r['longest_cell_s'])} | "
              f"{hours(r['total_s'])}{bound} | {per_n} |")
    grand = sum(r["total_s"] for r in rows)
    print(f"\nall {len(rows)} experiments: {hours(grand)} on one core; "
          + ", ".join(f"{hours(grand / n)} on {n} workers" for n in args.workers))
    print(f"\n{machine()}")
    write_json(args.out, {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
                          "rows": rows, "grand_total_s": grand})
    return 0


if __name__ == "__main__":
    sys.exit(main())
