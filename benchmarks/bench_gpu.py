"""The estimators on a CUDA GPU: epoch time against a hand-written PyTorch loop on the same GPU,
and the default recipes' fit time and test accuracy.

    python benchmarks/bench_gpu.py [--data-home DIR] [--epochs 4] [--repeats 3]
                                   [--sections epoch defaults]

- ``epoch``: for softmax, the default MLP and the default CNN, the median wall time of an epoch
  (after the first) on 60,000 images: ``ours`` (the estimator, ``device="cuda"``, tracking off,
  Adam 1e-3, batch 128, no validation split, no schedule), ``ours_bf16`` (the same with
  ``precision="bfloat16"``) and ``hand``: a plain loop over the same module class and data,
  already on the GPU, sliced per batch, stepping the fused Adam ours uses and reading each
  batch's loss with ``.item()`` as skorch's history does. Interleaved, ``--repeats`` times; the
  ratio ours / hand is the framework's overhead on a GPU.
- ``defaults``: each estimator as a user gets it (``device="cuda"``, its own defaults: epochs,
  schedule, 10% validation split), fitted once on the 60,000 training images and scored once on
  the 10,000 test images: fit seconds and test accuracy.

Needs a CUDA GPU and full MNIST; says so and exits 0 without either. Imports no MLflow (tracking
is off), so it runs where only torch, scikit-learn and skorch are installed.
Writes benchmarks/results/gpu.json and prints one table a section.
"""

from __future__ import annotations

import statistics
import sys
import time

import common  # benchmarks/common.py, next to this script

import numpy as np
import torch
from skorch.callbacks import Callback
from torch import nn

from mnist_estimators import CNNClassifier, MLPClassifier, SoftmaxRegressionClassifier, load_mnist

MODELS = {"softmax": SoftmaxRegressionClassifier, "mlp": MLPClassifier, "cnn": CNNClassifier}
SETTINGS = dict(optimizer="adam", lr=1e-3, batch_size=128, validation_fraction=None,
                lr_schedule=None, random_state=0, tracking=False, device="cuda")


class EpochClock(Callback):
    """Wall time from one epoch's end to the next, the GPU's queue drained at each mark."""

    def on_train_begin(self, net, **kwargs):
        torch.cuda.synchronize()
        self.marks = [time.perf_counter()]

    def on_epoch_end(self, net, **kwargs):
        torch.cuda.synchronize()
        self.marks.append(time.perf_counter())


def run_ours(name, X, y, epochs, precision="float32"):
    clock = EpochClock()
    MODELS[name](**SETTINGS, max_epochs=epochs, precision=precision,
                 callbacks=[("clock", clock)]).fit(X, y)
    return list(np.diff(clock.marks))


def run_hand(name, X, y, epochs):
    est = MODELS[name]()
    kwargs = {p: getattr(est, p) for p in est._module_params}
    torch.manual_seed(0)
    model = est.module(**kwargs, n_features=784, n_classes=10).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    loss_fn = nn.CrossEntropyLoss()
    Xt = torch.from_numpy(X.astype(np.float32) / 255.0).cuda()
    yt = torch.from_numpy(y).cuda()
    times = []
    for _ in range(epochs):
        torch.cuda.synchronize()
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(len(Xt), device="cuda")
        Xs, ys = Xt[perm], yt[perm]
        for i in range(0, len(Xt), 128):
            opt.zero_grad()
            loss = loss_fn(model(Xs[i:i + 128]), ys[i:i + 128])
            loss.backward()
            opt.step()
            loss.item()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def section_epoch(X, y, epochs, repeats):
    runners = {"ours": run_ours, "ours_bf16": lambda *a: run_ours(*a, precision="bfloat16"),
               "hand": run_hand}
    rows = {}
    print(f"\nepoch: median s/epoch on 60,000 images, epochs 2..{epochs}, {repeats} repeats")
    print(f"{'model':8} {'ours':>8} {'ours_bf16':>10} {'hand':>8} {'ours/hand':>10}")
    for name in MODELS:
        times = {k: [] for k in runners}
        for _ in range(repeats):
            for key, run in runners.items():  # interleaved: drift hits all alike
                times[key] += run(name, X, y, epochs)[1:]
        med = {k: statistics.median(v) for k, v in times.items()}
        rows[name] = {**med, "ratio": med["ours"] / med["hand"]}
        print(f"{name:8} {med['ours']:8.3f} {med['ours_bf16']:10.3f} {med['hand']:8.3f} "
              f"{rows[name]['ratio']:9.2f}x")
    return rows


def section_defaults(X, y, X_test, y_test):
    rows = {}
    print("\ndefaults: each estimator as a user gets it, device='cuda'")
    print(f"{'model':8} {'epochs':>6} {'fit s':>7} {'test acc':>9}")
    for name, cls in MODELS.items():
        est = cls(device="cuda", tracking=False, random_state=0)
        torch.cuda.synchronize()
        start = time.perf_counter()
        est.fit(X, y)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        acc = float(est.score(X_test, y_test))
        rows[name] = {"epochs": est.max_epochs, "fit_s": seconds, "test_acc": acc}
        print(f"{name:8} {est.max_epochs:6d} {seconds:7.2f} {acc:9.4f}")
    return rows


def main(argv=None):
    p = common.parser(__doc__, "gpu.json")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sections", nargs="+", default=["epoch", "defaults"],
                   choices=["epoch", "defaults"])
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU: skipping")
        return 0
    if not common.has_full_mnist(args.data_home):
        return 0
    X, y = load_mnist("train", data_home=args.data_home)
    X_test, y_test = load_mnist("test", data_home=args.data_home)
    print(common.machine())
    out = {"machine": common.machine()}
    if "epoch" in args.sections:
        out["epoch"] = section_epoch(X, y, args.epochs, args.repeats)
    if "defaults" in args.sections:
        out["defaults"] = section_defaults(X, y, X_test, y_test)
    common.write_json(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
