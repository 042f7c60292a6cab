"""Choose cnn_frontier on validation: which levers pay, measured on a held-out 10% of MNIST train.

    python benchmarks/bench_frontier.py --name long36 --param clf__max_epochs=36
    python benchmarks/bench_frontier.py --name elastic --param clf__augment_elastic=8 ...
    python benchmarks/bench_frontier.py --table-only

Each run fits ``cnn_best`` with the given overrides, plus exponential weight averaging, on 54,000
training images (the other 6,000, stratified and seeded, are the validation set; the test set is
never read). One fit measures four levers at once, because each is a change to the fitted model
or to prediction only:

- the weights of the last epoch (what cnn_best predicts with);
- the EMA of the weights (``weight_averaging="ema"``);
- either one with BatchNorm statistics recomputed on the un-augmented training split;
- each of those with test-time augmentation (``tta=True``).

Writes benchmarks/results/frontier.json (one entry per --name, kept across runs) and prints a
table of validation accuracy and errors per variant. 6,000 validation images: one error is
0.017 points, so differences of a few errors are noise.
"""

from __future__ import annotations

import copy
import json
import sys
import time

import common  # benchmarks/common.py, next to this script
from skorch.callbacks import Callback
from sklearn.model_selection import train_test_split

from mnist_estimators import load_mnist
from mnist_estimators.pipelines import cnn_best


class KeepLastWeights(Callback):
    """The module's own weights after the last epoch, before averaging replaces them."""

    def on_epoch_end(self, net, **kwargs):
        self.state_ = copy.deepcopy(net.module_.state_dict())


def _value(text):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    if "," in text:
        return tuple(_value(t) for t in text.split(",") if t)
    return text


def variants(pipe, X_train, X_val, y_val, raw_state, averaged_state):
    clf = pipe[-1]
    scores = {}
    for weights, state in (("last", raw_state), ("ema", averaged_state)):
        for bn in (False, True):
            clf.module_.load_state_dict(state)
            if bn:
                clf.recompute_batchnorm(pipe[:-1].transform(X_train))
            for tta in (False, True):
                clf.set_params(tta=tta)
                name = f"{weights}{' +bn' if bn else ''}{' +tta' if tta else ''}"
                scores[name] = float(pipe.score(X_val, y_val))
    clf.set_params(tta=False)
    clf.module_.load_state_dict(averaged_state)
    return scores


def table(results):
    names = list(next(iter(results.values()))["scores"]) if results else []
    print("| run | overrides | fit min | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for run, r in results.items():
        cells = " | ".join(f"{r['scores'][n]:.2%} ({r['errors'][n]})" for n in names)
        print(f"| {run} | {r['overrides']} | {r['fit_s'] / 60:.1f} | {cells} |")


def main(argv=None):
    parser = common.parser(__doc__, "frontier.json")
    parser.add_argument("--name", help="a name for this configuration's row")
    parser.add_argument("--param", action="append", default=[], metavar="STEP__PARAM=VALUE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args(argv)
    results = json.loads(open(args.out).read()) if common.Path(args.out).is_file() else {}
    if not args.table_only:
        if not args.name:
            parser.error("--name is required to run")
        if not common.has_full_mnist(args.data_home):
            return 0
        X, y = load_mnist("train", data_home=args.data_home)
        X_train, X_val, y_train, y_val = train_test_split(
            X, y, test_size=6000, stratify=y, random_state=0)
        overrides = dict(p.split("=", 1) for p in args.param)
        overrides = {k: _value(v) for k, v in overrides.items()}
        keep = KeepLastWeights()
        pipe = cnn_best.build_pipeline(**{
            "clf__weight_averaging": "ema", "clf__random_state": args.seed, "clf__verbose": 1,
            "clf__tracking": False, "clf__callbacks": [("keep_last", keep)], **overrides})
        start = time.perf_counter()
        pipe.fit(X_train, y_train)
        fit_s = time.perf_counter() - start
        averaged = copy.deepcopy(pipe[-1].module_.state_dict())
        scores = variants(pipe, X_train, X_val, y_val, keep.state_, averaged)
        results[args.name] = {
            "overrides": {k: str(v) for k, v in overrides.items()}, "seed": args.seed,
            "fit_s": fit_s, "epochs": len(pipe[-1].history_), "scores": scores,
            "errors": {k: round((1 - v) * len(y_val)) for k, v in scores.items()},
            "machine": common.machine()}
        common.write_json(args.out, results)
    table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
