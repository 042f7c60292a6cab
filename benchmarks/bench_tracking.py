"""Cost of MLflow tracking: MLPClassifier on full MNIST, 5 epochs, tracking on against off.

    python benchmarks/bench_tracking.py [--data-home DIR] [--repeats 3] [--epochs 5]

Both run in the same process, interleaved, with the same seed. "On" is the default tracking
(params, dataset, per-epoch metrics, the three basic figures and the MLflow model, all logged to
a fresh local sqlite store in a temporary folder); "off" is ``tracking=False``. Two figures:

- ``fit``: wall time until ``fit`` returns (what a user waits for; figures, the model and the end
  status are then finished in a background thread);
- ``fit + flush``: until that background logging is done too (``tracking.flush()``), so the next
  measurement never shares the CPU with it.

Writes benchmarks/results/tracking.json and prints a table.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common  # benchmarks/common.py, next to this script

import mlflow

from mnist_estimators import MLPClassifier, load_mnist, tracking



def main(argv=None):
    parser = common.parser(__doc__, "tracking.json")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args(argv)
    if not common.has_full_mnist(args.data_home):
        return 0
    X, y = load_mnist("train", data_home=args.data_home)
    store = tempfile.mkdtemp(prefix="bench-tracking-")
    mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
    MLPClassifier(max_epochs=1).fit(X[:500], y[:500])  # creates the store: not part of a fit's cost
    tracking.flush()
    times = {"off": [], "on": [], "off_flushed": [], "on_flushed": []}
    for _ in range(args.repeats):
        for mode in ("off", "on"):
            est = MLPClassifier(max_epochs=args.epochs, random_state=0, tracking=(mode == "on"))
            start = time.perf_counter()
            est.fit(X, y)
            times[mode].append(time.perf_counter() - start)
            tracking.flush()
            times[f"{mode}_flushed"].append(time.perf_counter() - start)
            print(f"{mode}: fit {times[mode][-1]:.2f} s, fit + flush "
                  f"{times[mode + '_flushed'][-1]:.2f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    overhead = med["on"] / med["off"] - 1
    overhead_flushed = med["on_flushed"] / med["off_flushed"] - 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seconds": times, "median_s": med, "overhead_fit": overhead,
                               "overhead_fit_and_flush": overhead_flushed,
                               "epochs": args.epochs}, indent=2))
    print(f"\nMLPClassifier, {args.epochs} epochs on 60,000 images, median of {args.repeats}")
    print("| tracking | fit | fit + flush |\n|---|---|---|")
    print(f"| off | {med['off']:.2f} s | {med['off_flushed']:.2f} s |")
    print(f"| on | {med['on']:.2f} s | {med['on_flushed']:.2f} s |")
    print(f"| overhead | {overhead * 100:+.1f}% | {overhead_flushed * 100:+.1f}% |")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
