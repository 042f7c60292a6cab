"""Epoch time of each estimator against a hand-written PyTorch loop, skorch's defaults and sklearn.

    python benchmarks/bench_epoch.py [--data-home DIR] [--epochs 3] [--repeats 3]
                                     [--models softmax mlp mlp_100_100 cnn]

All run in the same process, interleaved, on the same module class, data, batch size and
optimizer (Adam, lr 1e-3, batch 128, no validation split, no schedule), so only the loop differs:

- ``ours``: the estimator, tracking off (TensorBatchIterator, skorch callbacks, history);
- ``ours_tracked``: the same with MLflow tracking on (a fresh sqlite store): per-epoch metrics
  are logged inside the epoch, so this is what a user of the defaults gets;
- ``ours_bf16``: tracked, with ``precision="bfloat16"`` (autocast; not the same arithmetic as
  the peers, so it is reported beside the ratios, not in them);
- ``hand``: a plain loop that shuffles one tensor per epoch and slices it, with torch's
  default Adam (the multi-tensor "foreach" step);
- ``hand_gather``: the same loop gathering each batch with ``index_select`` and stepping a fused
  Adam, as ours does: the ratio to it is the framework's own overhead;
- ``skorch``: ``NeuralNetClassifier`` with its per-sample ``DataLoader`` (shuffle on);
- ``sklearn`` (MLP only): ``sklearn.neural_network.MLPClassifier`` with the same layers, Adam,
  lr and batch size (no dropout: it has none), one ``partial_fit`` per epoch.

The figure is the median wall time per epoch, end of one epoch to the end of the next (every
callback and the epoch's MLflow logging included; the first epoch is dropped as warm-up).
Writes JSON to benchmarks/results/epoch.json and prints a table of ratios, and, per model,
skorch / ours within each repeat: on a shared VM the machine's speed drifts between repeats,
and that spread is the error bar of the pooled ratio.
Needs full MNIST (``--data-home`` or $MNIST_ESTIMATORS_DATA or ../shared/datasets/mnist).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings

import common  # benchmarks/common.py, next to this script

import mlflow
import numpy as np
import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SklearnMLP
from torch import nn

from mnist_estimators import (
    CNNClassifier,
    MLPClassifier,
    SoftmaxRegressionClassifier,
    load_mnist,
    tracking,
)

# name -> (estimator class, its parameters). ``mlp`` is our default MLP (256-128, dropout 0.1);
# ``mlp_100_100`` is the seeds' MLP, the one the issue's hand-loop and skorch figures were taken on.
MODELS = {
    "softmax": (SoftmaxRegressionClassifier, {}),
    "mlp": (MLPClassifier, {}),
    "mlp_100_100": (MLPClassifier, {"hidden_sizes": (100, 100), "dropout": 0.0}),
    "cnn": (CNNClassifier, {}),
}


def make(name, **params):
    cls, defaults = MODELS[name]
    return cls(**defaults, **params)
SETTINGS = dict(optimizer="adam", lr=1e-3, batch_size=128, validation_fraction=None,
                lr_schedule=None, random_state=0)


def module_kwargs(est):
    """The module class and kwargs the estimator builds, so the peers train the same network."""
    kwargs = {name: getattr(est, name) for name in est._module_params}
    return est.module, {**kwargs, "n_features": 784, "n_classes": 10}


class EpochClock(Callback):
    """Wall time from one epoch's end to the next, after every other callback (added last)."""

    def on_train_begin(self, net, **kwargs):
        self.marks = [time.perf_counter()]

    def on_epoch_end(self, net, **kwargs):
        self.marks.append(time.perf_counter())

    def epochs(self):
        return list(np.diff(self.marks))


def run_ours(name, X, y, epochs, tracked=False, precision="float32"):
    clock = EpochClock()
    make(name, **SETTINGS, max_epochs=epochs, tracking=tracked, precision=precision,
         callbacks=[("clock", clock)]).fit(X, y)
    if tracked:
        tracking.flush()  # the run's figures and model: after the clock, and before the next runner
    return clock.epochs()


def run_ours_tracked(name, X, y, epochs):
    return run_ours(name, X, y, epochs, tracked=True)


def run_ours_bf16(name, X, y, epochs):
    return run_ours(name, X, y, epochs, tracked=True, precision="bfloat16")


def run_skorch(name, X, y, epochs):
    module, kwargs = module_kwargs(make(name))
    torch.manual_seed(0)
    clock = EpochClock()
    net = NeuralNetClassifier(module, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam,
                              lr=1e-3, batch_size=128, max_epochs=epochs, train_split=None,
                              iterator_train__shuffle=True, verbose=0, callbacks=[clock],
                              **{f"module__{k}": v for k, v in kwargs.items()})
    net.fit(X.astype(np.float32) / 255.0, y)
    return clock.epochs()


def run_sklearn(name, X, y, epochs):
    est = make(name)
    if not isinstance(est, MLPClassifier):
        return []
    clf = SklearnMLP(hidden_layer_sizes=est.hidden_sizes, activation="relu", solver="adam",
                     learning_rate_init=1e-3, batch_size=128, shuffle=True, random_state=0)
    Xf, classes = X.astype(np.float32) / 255.0, np.unique(y)
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(epochs):
            start = time.perf_counter()
            clf.partial_fit(Xf, y, classes=classes)  # one pass over the data
            times.append(time.perf_counter() - start)
    return times


def run_hand(name, X, y, epochs, per_batch_gather=False):
    module_cls, kwargs = module_kwargs(make(name))
    torch.manual_seed(0)
    model = module_cls(**kwargs)
    # The plain loop takes torch's default Adam (foreach); the gathering loop takes the fused
    # step our estimators default to, so that the ratio to it is the loop's overhead alone.
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=per_batch_gather or None)
    loss_fn = nn.CrossEntropyLoss()
    Xt = torch.from_numpy(X.astype(np.float32) / 255.0)
    yt = torch.from_numpy(y)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(len(Xt))
        if not per_batch_gather:
            Xs, ys = Xt[perm], yt[perm]
        total = 0.0
        for i in range(0, len(Xt), 128):
            if per_batch_gather:
                idx = perm[i:i + 128]
                xb, yb = Xt.index_select(0, idx), yt.index_select(0, idx)
            else:
                xb, yb = Xs[i:i + 128], ys[i:i + 128]
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item()
        times.append(time.perf_counter() - start)
    return times


def run_hand_gather(name, X, y, epochs):
    return run_hand(name, X, y, epochs, per_batch_gather=True)


RUNNERS = {"ours": run_ours, "ours_tracked": run_ours_tracked, "ours_bf16": run_ours_bf16,
           "hand": run_hand,
           "hand_gather": run_hand_gather, "skorch": run_skorch, "sklearn": run_sklearn}


def main(argv=None):
    parser = common.parser(__doc__, "epoch.json")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args(argv)
    if not common.has_full_mnist(args.data_home):
        return 0
    X, y = load_mnist("train", data_home=args.data_home)
    mlflow.set_tracking_uri(f"sqlite:///{tempfile.mkdtemp(prefix='bench-epoch-')}/mlflow.db")
    MLPClassifier(max_epochs=1).fit(X[:500], y[:500])  # creates the store: not an epoch's cost
    tracking.flush()
    results = {}
    for name in args.models:
        epochs = {k: [] for k in RUNNERS}
        paired = []  # skorch / ours tracked within each repeat: the spread shows the drift
        for _ in range(args.repeats):
            this = {}
            for kind, run in RUNNERS.items():  # interleaved: drift hits all three alike
                # the first epoch warms caches and allocators: keep the rest
                this[kind] = run(name, X, y, args.epochs + 1)[1:]
                epochs[kind] += this[kind]
            paired.append(statistics.median(this["skorch"]) / statistics.median(this["ours_tracked"]))
        med = {k: statistics.median(v) for k, v in epochs.items() if v}
        results[name] = {"median_epoch_s": med, "epochs_s": epochs,
                         "ours_tracked_vs_hand": med["ours_tracked"] / med["hand"],
                         "ours_vs_hand": med["ours"] / med["hand"],
                         "ours_vs_hand_gather": med["ours"] / med["hand_gather"],
                         "skorch_vs_ours_tracked": med["skorch"] / med["ours_tracked"],
                         "skorch_vs_ours_tracked_per_repeat": paired}
        results[name]["skorch_vs_ours_bf16"] = med["skorch"] / med["ours_bf16"]
        if "sklearn" in med:
            results[name]["sklearn_vs_ours_tracked"] = med["sklearn"] / med["ours_tracked"]
        print(name, "  ".join(f"{k} {v:.3f}s" for k, v in med.items()), flush=True)
        print(f"{name}: skorch / ours tracked, repeat by repeat: "
              + ", ".join(f"{r:.2f}x" for r in paired), flush=True)
    meta = {"machine": common.machine(), "epochs": args.epochs, "repeats": args.repeats,
            "settings": SETTINGS}
    print(f"\n{meta['machine']}; median of {args.repeats}x{args.epochs} epochs on 60,000 images")
    print("| model | ours, tracked (s/epoch) | ours, untracked | hand loop | hand loop, per-batch "
          "gather | skorch default | sklearn | ours tracked / hand | ours / hand (gather) "
          "| skorch / ours tracked | sklearn / ours tracked | ours bf16 (s/epoch) | skorch / ours bf16 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        m = r["median_epoch_s"]
        sk = f"{m['sklearn']:.3f}" if "sklearn" in m else "-"
        skr = f"{r['sklearn_vs_ours_tracked']:.2f}x" if "sklearn" in m else "-"
        print(f"| {name} | {m['ours_tracked']:.3f} | {m['ours']:.3f} | {m['hand']:.3f} | "
              f"{m['hand_gather']:.3f} | {m['skorch']:.3f} | {sk} | "
              f"{r['ours_tracked_vs_hand']:.2f}x | {r['ours_vs_hand_gather']:.2f}x | "
              f"{r['skorch_vs_ours_tracked']:.2f}x | {skr} | {m['ours_bf16']:.3f} | "
              f"{r['skorch_vs_ours_bf16']:.2f}x |")
    common.write_json(args.out, {"meta": meta, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
