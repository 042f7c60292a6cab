"""Speed beyond the epoch: time to 99% (CNN), prediction throughput, scaling, batch size,
augmentation cost and torch.compile, each against a peer timed in the same run.

    python benchmarks/bench_speed.py [--data-home DIR] [--sections time_to_99 predict scaling
                                      batch_size augment compile]

- ``time_to_99``: training wall time until 99.0% test accuracy. Ours is ``TIME_TO_99`` (a small
  BatchNorm CNN whose first conv has stride 2 and whose other blocks pool before BatchNorm,
  bfloat16 where the CPU computes it, one-cycle LR, label smoothing), fitted for 1, 2, 3...
  epochs until a fit ends at 99.0% or more: its time is that fit's; ``TIME_TO_99_BEFORE``, the
  recipe before the strided first conv, is fitted the same way beside it. The peer is
  seed 000's recipe (conv 32 -> 64, FC 128, dropout 0.5, Adam 1e-3, batch 128) in a plain
  PyTorch loop, tested after every epoch (testing is not timed) until it reaches 99.0% or 10
  epochs.
- ``predict``: images per second over the 10,000 test images for each estimator's ``predict``,
  against sklearn's ``MLPClassifier.predict`` on the same layers and a bare ``module(X)`` forward.
- ``scaling``: fit time (2 epochs) and peak extra memory (resident set, measured in a fresh
  process per point) at 7.5k, 15k, 30k and 60k training images.
- ``batch_size``: seed 004's sweep (MLP 100-100, ReLU, Xavier init, lr 1e-3), batch 8 to 512:
  time per epoch and test accuracy after 3 epochs, with Adam (seed 004 used plain SGD).
- ``augment``: seconds each training-only transform adds to an MLP epoch.
- ``compile``: ``compile=True`` (skorch's torch.compile switch) against eager, time per epoch
  after the first, and the first epoch's extra cost (compilation).
- ``profile``: where an epoch of our MLP and softmax goes (torch.profiler, top operators by
  self CPU time), to show how much of it is arithmetic no loop can avoid.

Every estimator runs with tracking off here (bench_epoch.py measures tracking's cost).
Writes benchmarks/results/speed.json and prints one table per section.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import common  # benchmarks/common.py, next to this script

import numpy as np
import torch
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
from mnist_estimators.modules import CNN

ESTIMATORS = {"softmax": SoftmaxRegressionClassifier, "mlp": MLPClassifier, "cnn": CNNClassifier}
SECTIONS = ("time_to_99", "predict", "scaling", "batch_size", "augment", "compile", "profile")

# Chosen on a 10% validation split of the training set (valid accuracy 0.9922, 0.9912, 0.9913
# after one epoch for random_state 0, 1, 2); the test set only measures it. Tried there: 12-24,
# 16-32, 32-64 and 16-32-64 channels, pooling before or after BatchNorm+ReLU, batch 64 to 512,
# peak lr 4e-3 to 1.5e-2, label smoothing, 1-2 epochs. Pooling first (``pool_first``) and
# channel counts that are multiples of 16 matter most: oneDNN's channels-last BatchNorm has no
# fast path for 12 or 24 channels, and BatchNorm+ReLU, not the convolutions, were 70% of the
# 12-24 network's epoch.
# precision="auto": bfloat16 where the CPU computes it (AVX512-BF16/AMX), where the 3.2 s of
# docs/results.md was measured; float32 elsewhere (emulated bfloat16 is ~13x slower).
# deskew=False: the CNN's default since (deskew=True) costs this one-epoch fit ~0.9 s of ~4 s
# for +0.1 point it does not need (54,000 / 6,000 validation split, seeds 0 and 1, AVX512-BF16
# EPYC: 3.97 and 3.53 s, 99.40% and 99.48% with it; 3.05 and 2.68 s, 99.33% and 99.35% without).
TIME_TO_99_BEFORE = dict(channels=(16, 32, 64), module__pool_first=True, hidden_sizes=(128,),
                         dropout=0.0, batch_size=128, lr=8e-3, lr_schedule="onecycle",
                         criterion__label_smoothing=0.1, precision="auto", deskew=False,
                         validation_fraction=None, random_state=0)
# The recipe since issue 25's last session: a stride-2 first conv in place of the first block's
# max-pool (``module__first_stride=2``), batch 192, peak lr 1e-2. Chosen on the 54,000 / 6,000
# validation split, seeds 0-2, one epoch, on a 2-core Xeon with AMX (bfloat16 native), the
# 54,000 images' fit time scaled to 60,000:
#   TIME_TO_99_BEFORE                 3.38-3.91 s  valid 99.17 / 99.28 / 99.22%
#   first_stride=2, batch 128, 8e-3   2.67-2.72 s  99.18 / 99.15 / 99.05%
#   first_stride=2, batch 192, 1e-2   2.42-2.46 s  99.15 / 99.23 / 99.10%   <- kept
#   first_stride=2, batch 256, 1.2e-2 2.21-2.32 s  99.13 / 99.05 / 99.03%
#   first_stride=2, batch 256, 1e-2   2.25-2.28 s  99.12 / 99.13 / 98.98%
# Also tried there, slower or less accurate: a 5x5 stride-2 stem (batch 128: 99.13 / 99.22% in
# ~2.8-3.6 s; batch 192 and 256 no better than 3x3), channels 16-32-48 and 32-32-64 at batch
# 192. The profile that led to it (torch.profiler, 30,000 images): the three max-pools'
# forward, backward and zero-fill were 29% of the epoch, the convolutions' 27%.
TIME_TO_99 = {**TIME_TO_99_BEFORE, "module__first_stride": 2, "batch_size": 192, "lr": 1e-2}
# Tried for issue 25's 2 s and not kept: half the channels (8-16-32) scored 99.18% and 99.18%
# valid (54,000 / 6,000, seeds 0 and 1, one epoch, float32, 2-core AVX2 EPYC) in 4.0-4.3 s,
# against 99.25% and 99.27% in 7.1-7.5 s for this recipe, but 98.97% on the test set after one
# epoch on all 60,000 images, so it needed two (9.1 s against 8.7 s). Also tried there, each
# under 99.1% valid on a seed or slower: batch 256 and 512 (lr 1.2e-2, 1.6e-2), 8-16 and 4-8-16
# channels (4-8-16 is slower: oneDNN's small-channel paths), FC 64 or none, no BatchNorm, lr
# 5e-3 or 1.2e-2, 16-16-32, and 36,000 training images. On an EPYC with AVX512-BF16 (bfloat16
# native), 54,000 / 6,000, seeds 0 and 1, 54,000 images' fit time: batch 256 (lr 1.2e-2)
# 2.44-2.50 s, 99.25-99.30% valid; batch 512 (1.6e-2) 2.36-2.39 s, 98.98-99.05%; 8-16-32
# channels 2.04-2.34 s, 99.07-99.12%, and at batch 256 1.80-1.85 s, 98.95-99.17%: the 2 s on
# 60,000 images would take the 8-16-32 network at batch 256, whose validation accuracy is too
# near 99% for the test set to pass reliably. Not kept.


def _scaled(X):
    return torch.from_numpy(X.astype(np.float32) / 255.0)


def _ours_to_99(name, config, X, y, X_test, y_test):
    # A one-cycle schedule fixes its length up front, so ours is refitted with 1, 2, 3, ...
    # epochs until one reaches 99.0% (the rule time-to-accuracy benchmarks use); the figure is
    # that fit's time, and every attempt is reported.
    CNNClassifier(**{**config, "max_epochs": 1}).fit(X[:2048], y[:2048])  # warm-up
    attempts = []
    for epochs in range(1, 5):
        start = time.perf_counter()
        ours = CNNClassifier(**{**config, "max_epochs": epochs}).fit(X, y)
        ours_s = time.perf_counter() - start
        ours_acc = float(ours.score(X_test, y_test))
        attempts.append({"epochs": epochs, "seconds": ours_s, "test_accuracy": ours_acc})
        print(f"{name}, {epochs} epoch(s): {ours_acc:.4f} after {ours_s:.1f} s", flush=True)
        if ours_acc >= 0.99:
            break
    return {"seconds": ours_s, "test_accuracy": ours_acc, "epochs": epochs,
            "reached": ours_acc >= 0.99, "config": {**config, "max_epochs": epochs},
            "precision": "bfloat16" if ours.uses_bfloat16() else "float32", "attempts": attempts}


def time_to_99(X, y, X_test, y_test):
    # "ours_before": the recipe before the strided first conv, beside it in the same run.
    recipes = {"ours": TIME_TO_99, "ours_before": TIME_TO_99_BEFORE}
    rows = {name: _ours_to_99(name, config, X, y, X_test, y_test)
            for name, config in recipes.items()}

    # Seed 000's recipe, as the seed trained it: a plain loop, default (NCHW) layout.
    torch.manual_seed(0)
    model = CNN(channels=(32, 64), hidden_sizes=(128,), dropout=0.5, batch_norm=False,
                channels_last=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    Xt, yt, Xv = _scaled(X), torch.from_numpy(y), _scaled(X_test)
    trained, accs = 0.0, []
    for _ in range(10):
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(len(Xt))
        for i in range(0, len(Xt), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            nn.functional.cross_entropy(model(Xt[idx]), yt[idx]).backward()
            opt.step()
        trained += time.perf_counter() - start
        model.eval()
        with torch.no_grad():
            accs.append(float((model(Xv).argmax(1).numpy() == y_test).mean()))
        print(f"seed-000 recipe: epoch {len(accs)} {accs[-1]:.4f} after {trained:.1f} s", flush=True)
        if accs[-1] >= 0.99:
            break
    rows["seed_000"] = {"seconds": trained, "test_accuracy": accs[-1], "epochs": len(accs),
                        "reached": accs[-1] >= 0.99, "accuracy_per_epoch": accs}
    print("\n| time to 99.0% test accuracy | epochs | training time | test accuracy | seed 000 / it |"
          "\n|---|---|---|---|---|")
    for name in (*recipes, "seed_000"):
        r = rows[name]
        label = f"{name} ({r['precision']})" if name in recipes else name
        print(f"| {label}{'' if r['reached'] else ' (not reached)'} | {r['epochs']} | "
              f"{r['seconds']:.1f} s | {r['test_accuracy']:.4f} | {trained / r['seconds']:.1f}x |")
        r["seed_000_over_it"] = trained / r["seconds"]
    return rows


def predict(X, y, X_test, y_test, repeats=5):
    def rate(fn):
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return len(X_test) / statistics.median(times)

    rows = {}
    for name, cls in ESTIMATORS.items():
        est = cls(max_epochs=1, random_state=0).fit(X[:10000], y[:10000])
        Xv = _scaled(X_test)
        module = est.module_.eval()

        def bare(module=module, Xv=Xv):
            with torch.no_grad():
                return module(Xv).argmax(1)

        rows[name] = {"ours_images_per_s": rate(lambda est=est: est.predict(X_test)),
                      "bare_forward_images_per_s": rate(bare)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SklearnMLP(hidden_layer_sizes=MLPClassifier().hidden_sizes, max_iter=1,
                        random_state=0).fit(X[:10000] / 255.0, y[:10000])
    Xs = X_test / 255.0
    sk_rate = rate(lambda: sk.predict(Xs))
    rows["sklearn_mlp_images_per_s"] = sk_rate
    print("\n| predict, 10,000 images | ours (images/s) | bare module forward | "
          "ours / sklearn MLPClassifier |\n|---|---|---|---|")
    for name in ESTIMATORS:
        r = rows[name]
        r["ours_vs_sklearn_mlp"] = r["ours_images_per_s"] / sk_rate
        print(f"| {name} | {r['ours_images_per_s']:,.0f} | {r['bare_forward_images_per_s']:,.0f} "
              f"| {r['ours_vs_sklearn_mlp']:.2f}x |")
    print(f"| sklearn MLPClassifier{MLPClassifier().hidden_sizes} | {sk_rate:,.0f} | | 1.00x |")
    return rows


def _scaling_point(model, n, data_home):
    """Run in a fresh process: fit ``model`` on ``n`` images, print time and peak memory."""
    tracking.set_tracking(False)
    X, y = load_mnist("train", data_home=data_home)
    X, y = np.ascontiguousarray(X[:n]), np.ascontiguousarray(y[:n])
    ESTIMATORS[model](max_epochs=1, random_state=0).fit(X[:256], y[:256])  # warm-up
    # ru_maxrss is inherited across fork (it would report the parent's peak): use the kernel's
    # high-water mark, reset here by writing 5 to clear_refs (Linux).
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    ESTIMATORS[model](max_epochs=2, random_state=0, validation_fraction=None).fit(X, y)
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    print(json.dumps({"fit_s": seconds, "peak_rss_mib": peak / 1024,
                      "peak_extra_mib": max(peak - before, 0) / 1024}))


def _status_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} (the scaling section needs Linux)")


def scaling(data_home, sizes=(7500, 15000, 30000, 60000)):
    rows = {}
    for model in ESTIMATORS:
        rows[model] = {}
        for n in sizes:
            out = subprocess.run([sys.executable, __file__, "--scaling-point", model, str(n),
                                  "--data-home", str(data_home)],
                                 capture_output=True, text=True, check=True)
            rows[model][n] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{model} {n}: {rows[model][n]}", flush=True)
    print("\n| scaling (2 epochs) | " + " | ".join(f"{n:,} images" for n in sizes)
          + " | 60k / 7.5k time |\n|---|" + "---|" * (len(sizes) + 1))
    for model, r in rows.items():
        cells = [f"{r[n]['fit_s']:.1f} s, +{r[n]['peak_extra_mib']:.0f} MiB" for n in sizes]
        ratio = r[sizes[-1]]["fit_s"] / r[sizes[0]]["fit_s"]
        print(f"| {model} | " + " | ".join(cells) + f" | {ratio:.1f}x (data: {sizes[-1] / sizes[0]:.0f}x) |")
    return rows


def batch_size(X, y, X_test, y_test, sizes=(8, 16, 32, 64, 128, 256, 512), epochs=3):
    rows = {}
    for bs in sizes:
        est = MLPClassifier(hidden_sizes=(100, 100), activation="relu", init="xavier_uniform",
                            dropout=0.0, lr=1e-3, lr_schedule=None, batch_size=bs,
                            max_epochs=epochs, validation_fraction=None, random_state=0).fit(X, y)
        rows[bs] = {"epoch_s": statistics.median(est.history_[:, "dur"]),
                    "test_accuracy": float(est.score(X_test, y_test))}
        print(f"batch {bs}: {rows[bs]}", flush=True)
    print(f"\n| batch size (MLP 100-100, Adam, {epochs} epochs) | s/epoch | test accuracy |"
          "\n|---|---|---|")
    for bs, r in rows.items():
        print(f"| {bs} | {r['epoch_s']:.2f} | {r['test_accuracy']:.4f} |")
    return rows


AUGMENTS = {
    "none": {},
    "affine (rotation 10, scale 0.1, shift 2)": dict(augment_rotation=10.0, augment_scale=0.1,
                                                      augment_shift=2.0),
    "elastic (alpha 34, sigma 4)": dict(augment_elastic=34.0),
    "blur (sigma up to 1)": dict(augment_blur=1.0),
    "erasing (p 0.5)": dict(augment_erasing=0.5),
    "all of them": dict(augment_rotation=10.0, augment_scale=0.1, augment_shift=2.0,
                        augment_elastic=34.0, augment_blur=1.0, augment_erasing=0.5),
}


def augment(X, y, epochs=3):
    rows = {}
    for name, params in AUGMENTS.items():
        est = MLPClassifier(max_epochs=epochs, random_state=0, validation_fraction=None,
                            **params).fit(X, y)
        rows[name] = {"epoch_s": statistics.median(est.history_[:, "dur"][1:])}
        print(f"{name}: {rows[name]}", flush=True)
    base = rows["none"]["epoch_s"]
    print("\n| augmentation (MLP 256-128, 60k images) | s/epoch | added per epoch |\n|---|---|---|")
    for name, r in rows.items():
        r["added_s"] = r["epoch_s"] - base
        print(f"| {name} | {r['epoch_s']:.2f} | {r['added_s']:+.2f} s |")
    return rows


def compile_(X, y, epochs=3):
    rows = {}
    for model in ("mlp", "cnn"):
        for compiled in (False, True):
            est = ESTIMATORS[model](max_epochs=epochs, random_state=0, validation_fraction=None,
                                    compile=compiled)
            try:
                est.fit(X, y)
            except Exception as exc:  # report what torch.compile says on this machine
                rows[f"{model}_compiled"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
                print(f"{model} compile failed: {exc}", flush=True)
                continue
            dur = list(est.history_[:, "dur"])
            rows[f"{model}_{'compiled' if compiled else 'eager'}"] = {
                "first_epoch_s": dur[0], "epoch_s": statistics.median(dur[1:])}
            print(f"{model} compile={compiled}: {dur}", flush=True)
    print("\n| torch.compile on CPU | eager s/epoch | compiled s/epoch | eager / compiled | "
          "first compiled epoch |\n|---|---|---|---|---|")
    for model in ("mlp", "cnn"):
        e, c = rows.get(f"{model}_eager"), rows.get(f"{model}_compiled", {})
        if not e or "error" in c:
            print(f"| {model} | {e and round(e['epoch_s'], 2)} | failed: {c.get('error')} | | |")
            continue
        print(f"| {model} | {e['epoch_s']:.2f} | {c['epoch_s']:.2f} | "
              f"{e['epoch_s'] / c['epoch_s']:.2f}x | {c['first_epoch_s']:.1f} s |")
    return rows


def profile(X, y):
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    rows = {}
    for model in ("softmax", "mlp"):
        est = ESTIMATORS[model](max_epochs=1, random_state=0, validation_fraction=None)
        est.fit(X[:5000], y[:5000])  # warm-up
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            est.set_params(max_epochs=1).partial_fit(X, y)
        total = sum(e.self_cpu_time_total for e in prof.key_averages())
        top = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:10]
        rows[model] = {"total_self_cpu_s": total / 1e6, "top": [
            {"op": e.key, "self_cpu_s": e.self_cpu_time_total / 1e6,
             "share": e.self_cpu_time_total / total, "calls": e.count} for e in top]}
        print(f"\n| {model}: top operators of one epoch (profiled) | self CPU | share | calls |"
              "\n|---|---|---|---|")
        for r in rows[model]["top"]:
            print(f"| `{r['op']}` | {r['self_cpu_s']:.3f} s | {r['share']:.0%} | {r['calls']} |")
    return rows


def main(argv=None):
    parser = common.parser(__doc__, "speed.json")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--scaling-point", nargs=2, metavar=("MODEL", "N"), help=argparse_hidden())
    args = parser.parse_args(argv)
    if args.scaling_point:
        _scaling_point(args.scaling_point[0], int(args.scaling_point[1]), args.data_home)
        return 0
    if not common.has_full_mnist(args.data_home):
        return 0
    tracking.set_tracking(False)
    X, y = load_mnist("train", data_home=args.data_home)
    X_test, y_test = load_mnist("test", data_home=args.data_home)
    results = {"meta": {"machine": common.machine()}}
    for section in args.sections:
        print(f"\n== {section}", flush=True)
        if section == "time_to_99":
            results[section] = time_to_99(X, y, X_test, y_test)
        elif section == "predict":
            results[section] = predict(X, y, X_test, y_test)
        elif section == "scaling":
            results[section] = scaling(args.data_home)
        elif section == "batch_size":
            results[section] = batch_size(X, y, X_test, y_test)
        elif section == "augment":
            results[section] = augment(X, y)
        elif section == "compile":
            results[section] = compile_(X, y)
        elif section == "profile":
            results[section] = profile(X, y)
    print(f"\nmachine: {results['meta']['machine']}")
    common.write_json(args.out, results)
    return 0


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
