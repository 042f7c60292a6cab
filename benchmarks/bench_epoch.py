"""Epoch time of each estimator against a hand-written PyTorch loop and skorch's defaults.

    python benchmarks/bench_epoch.py [--data-home DIR] [--epochs 3] [--repeats 3] [--models softmax mlp cnn]

All three run in the same process, interleaved, on the same module class, data, batch size and
optimizer (Adam, batch 128, no validation split, no schedule), so only the training loop differs:

- ``ours``: the estimator (TensorBatchIterator, skorch callbacks, history);
- ``hand``: a plain loop that shuffles one tensor per epoch and slices it;
- ``hand_gather``: the same loop gathering each batch with ``index_select``, as ours does: the
  ratio to it is the framework's own overhead;
- ``skorch``: ``NeuralNetClassifier`` with its per-sample ``DataLoader`` (shuffle on).

The figure is the median time per epoch (skorch's ``dur`` for the nets, the loop's own clock for
the hand loop). Writes JSON to benchmarks/results/epoch.json and prints a table of ratios.
Needs full MNIST (``--data-home`` or $MNIST_ESTIMATORS_DATA or ../shared/datasets/mnist).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import common  # benchmarks/common.py, next to this script

import numpy as np
import torch
from skorch import NeuralNetClassifier
from torch import nn

from mnist_estimators import CNNClassifier, MLPClassifier, SoftmaxRegressionClassifier, load_mnist

ESTIMATORS = {"softmax": SoftmaxRegressionClassifier, "mlp": MLPClassifier, "cnn": CNNClassifier}
SETTINGS = dict(optimizer="adam", lr=1e-3, batch_size=128, validation_fraction=None,
                lr_schedule=None, random_state=0)


def module_kwargs(est):
    """The module class and kwargs the estimator builds, so the peers train the same network."""
    kwargs = {name: getattr(est, name) for name in est._module_params}
    return est.module, {**kwargs, "n_features": 784, "n_classes": 10}


def run_ours(name, X, y, epochs):
    est = ESTIMATORS[name](**SETTINGS, max_epochs=epochs).fit(X, y)
    return list(est.history_[:, "dur"])


def run_skorch(name, X, y, epochs):
    module, kwargs = module_kwargs(ESTIMATORS[name]())
    torch.manual_seed(0)
    net = NeuralNetClassifier(module, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam,
                              lr=1e-3, batch_size=128, max_epochs=epochs, train_split=None,
                              iterator_train__shuffle=True, verbose=0,
                              **{f"module__{k}": v for k, v in kwargs.items()})
    net.fit(X.astype(np.float32) / 255.0, y)
    return list(net.history_[:, "dur"])


def run_hand(name, X, y, epochs, per_batch_gather=False):
    module_cls, kwargs = module_kwargs(ESTIMATORS[name]())
    torch.manual_seed(0)
    model = module_cls(**kwargs)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
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


RUNNERS = {"ours": run_ours, "hand": run_hand, "hand_gather": run_hand_gather, "skorch": run_skorch}


def main(argv=None):
    parser = common.parser(__doc__, "epoch.json")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(ESTIMATORS), choices=list(ESTIMATORS))
    args = parser.parse_args(argv)
    if not common.has_full_mnist(args.data_home):
        return 0
    X, y = load_mnist("train", data_home=args.data_home)
    results = {}
    for name in args.models:
        epochs = {k: [] for k in RUNNERS}
        for _ in range(args.repeats):
            for kind, run in RUNNERS.items():  # interleaved: drift hits all three alike
                # the first epoch warms caches and allocators: keep the rest
                epochs[kind] += run(name, X, y, args.epochs + 1)[1:]
        med = {k: statistics.median(v) for k, v in epochs.items()}
        results[name] = {"median_epoch_s": med, "epochs_s": epochs,
                         "ours_vs_hand": med["ours"] / med["hand"],
                         "ours_vs_hand_gather": med["ours"] / med["hand_gather"],
                         "skorch_vs_ours": med["skorch"] / med["ours"]}
        print(name, "  ".join(f"{k} {v:.3f}s" for k, v in med.items()), flush=True)
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
                       f"{torch.get_num_threads()} threads", "python": sys.version.split()[0],
            "epochs": args.epochs, "repeats": args.repeats, "settings": SETTINGS}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"\n{meta['machine']}; median of {args.repeats}x{args.epochs} epochs on 60,000 images")
    print("| model | ours s/epoch | hand loop | hand loop, per-batch gather | skorch default "
          "| ours / hand | ours / hand (gather) | skorch / ours |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        m = r["median_epoch_s"]
        print(f"| {name} | {m['ours']:.3f} | {m['hand']:.3f} | {m['hand_gather']:.3f} | "
              f"{m['skorch']:.3f} | {r['ours_vs_hand']:.2f}x | {r['ours_vs_hand_gather']:.2f}x | "
              f"{r['skorch_vs_ours']:.2f}x |")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
