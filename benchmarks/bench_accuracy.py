"""Test accuracy of the ready accuracy pipelines, mean +- std over seeds, against the targets.

    python benchmarks/bench_accuracy.py [--data-home DIR] [--seeds 0 1 2]
                                        [--pipelines softmax_best ... cnn_frontier cnn_ensemble]
    python benchmarks/bench_accuracy.py --table-only     # the table from earlier results
    python benchmarks/bench_accuracy.py --pipelines cnn_ensemble --seeds 1 --append  # add a seed

Each pipeline runs through ``mnist-estimators reproduce`` (fit on the 60,000 training images per
seed, score once on the 10,000 test images, every fit tracked in MLflow). Writes
benchmarks/results/accuracy-NAME.json per pipeline and prints one table with the seeds' best
published figure and the target of issue #5 beside each, and the test ECE (top-label expected
calibration error, 15 equal-width confidence bins; lower is better calibrated).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import common  # benchmarks/common.py, next to this script

from mnist_estimators.cli import main as cli

# (model, best figure in the seeds, target; None: no target, shown for comparison)
TARGETS = {
    "softmax_best": ("softmax regression", 0.9251, 0.927),
    "mlp_best": ("MLP, no augmentation", 0.979, 0.986),
    "mlp_augmented": ("MLP, augmentation", 0.979, 0.992),
    "cnn_best": ("CNN", 0.993, 0.996),
    "cnn_frontier": ("CNN, EMA + test-time shifts", 0.993, 0.9975),
    "cnn_ensemble": ("5 CNNs, soft voting", 0.993, 0.998),
    "mixed_ensemble": ("softmax + MLP + CNN, soft voting", 0.993, None),
}


def _target(target):
    return "" if target is None else f"{target:.2%}"


def table(results_dir):
    print("| pipeline | model | test accuracy (mean +- std) | test ECE (mean +- std) | seeds | "
          "mean fit time | best in the seeds | target | margin |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for name, (model, seeds_best, target) in TARGETS.items():
        path = Path(results_dir) / f"accuracy-{name}.json"
        if not path.is_file():
            print(f"| {name} | {model} | not run | | | | {seeds_best:.2%} | {_target(target)} | |")
            continue
        r = json.loads(path.read_text())
        mean, std = r["test_accuracy_mean"], r["test_accuracy_std"]
        # results written before reproduce measured the ECE, or of a pipeline without
        # probabilities (hard voting), have none
        ece = (f"{r['test_ece_mean']:.4f} +- {r['test_ece_std']:.4f}"
               if r.get("test_ece_mean") is not None else "not measured")
        print(f"| `{name}` | {model} | {mean:.2%} +- {std:.2%} | {ece} | {len(r['runs'])} | "
              f"{r['fit_s_mean'] / 60:.1f} min | {seeds_best:.2%} | {_target(target)} | "
              f"{'' if target is None else f'{(mean - target) * 100:+.2f} pts'} |")


def main(argv=None):
    parser = common.parser(__doc__, "")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pipelines", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--append", action="store_true",
                        help="add the seeds to the results already written (reproduce --append)")
    args = parser.parse_args(argv)
    results_dir = Path(args.out)
    if not args.table_only:
        if not common.has_full_mnist(args.data_home):
            return 0
        for name in args.pipelines:
            status = cli(["reproduce", name, "--seeds", *map(str, args.seeds), "--quiet",
                          "--data-home", str(args.data_home), "--output-dir", "models",
                          "--json", str(results_dir / f"accuracy-{name}.json"),
                          *(["--append"] if args.append else [])])
            if status:
                return status
    print(f"\n{common.machine()}")
    table(results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
