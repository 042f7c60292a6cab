"""Free speed for the default CNN? The demo's CNN as it is, against the same with one change.

    python benchmarks/bench_defaults.py [--repeats 2] [--change pool_first=False]

Fits ``CNNClassifier(random_state=0)`` (the demo's CNN: 16-32 channels, BatchNorm, FC 128,
4 epochs, one-cycle to 3e-3, 10% held out for validation) on the 60,000 training images, and the
same with ``--change`` (by default ``pool_first=False``, the default before it was measured here
to be 1.62x slower at the same accuracy), alternately, ``--repeats`` times each, tracking off, two torch threads.
Prints test accuracy, validation accuracy and fit time of each, and the fit-time ratio.
Writes benchmarks/results/defaults.json.
"""

from __future__ import annotations

import statistics
import sys
import time

import common  # benchmarks/common.py, next to this script

from mnist_estimators import CNNClassifier, load_mnist


def main(argv=None):
    parser = common.parser(__doc__, "defaults.json")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--change", action="append", default=[], metavar="PARAM=VALUE")
    args = parser.parse_args(argv)
    if not common.has_full_mnist(args.data_home):
        return 0
    change = {}
    for item in args.change or ["pool_first=False"]:
        key, value = item.split("=", 1)
        change[key] = {"True": True, "False": False}.get(value, value)
    X, y = load_mnist("train", data_home=args.data_home)
    X_test, y_test = load_mnist("test", data_home=args.data_home)
    runs = {"default": [], "changed": []}
    for _ in range(args.repeats):
        for name, params in (("default", {}), ("changed", change)):
            clf = CNNClassifier(random_state=0, tracking=False, **params)
            start = time.perf_counter()
            clf.fit(X, y)
            fit_s = time.perf_counter() - start
            runs[name].append({"fit_s": fit_s, "test_accuracy": float(clf.score(X_test, y_test)),
                               "valid_acc": float(clf.history_[-1, "valid_acc"])})
            print(f"{name}: {runs[name][-1]}", flush=True)
    median = {k: statistics.median(r["fit_s"] for r in v) for k, v in runs.items()}
    print(f"\n{common.machine()}\nchange: {change}\n\n| | fit time (median of {args.repeats}) | "
          "test accuracy | validation accuracy |\n|---|---|---|---|")
    for name, rows in runs.items():
        print(f"| {name} | {median[name]:.1f} s | {rows[0]['test_accuracy']:.4f} | "
              f"{rows[0]['valid_acc']:.4f} |")
    print(f"| changed / default | **{median['changed'] / median['default']:.2f}x** | | |")
    common.write_json(args.out, {"change": {k: str(v) for k, v in change.items()}, "runs": runs,
                                 "ratio": median["changed"] / median["default"],
                                 "machine": common.machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
