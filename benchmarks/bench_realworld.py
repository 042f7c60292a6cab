"""Accuracy on drawn digits that are not MNIST, level by level, with and without the
stroke-width and slant normalisation of ``preprocess_image``.

    python benchmarks/bench_realworld.py [--data-home DIR] [--per-digit 100]
        [--models cnn cnn_realworld realworld_ensemble] [--model-files NAME=PATH ...] [--images DIR]
        [--split test|validation] [--set PARAM=VALUE ...] [--seeds 0 1 2]

The sets are ``mnist_estimators.strokes``' test splits, ``--per-digit`` of each digit:

- easy: scripted pen strokes with one width per digit, mild slant, clean paper (seed 0);
- hard: pen pressure from hairline to very bold, blur and low resolution, strong slant and
  rotation, broken strokes, ruled or squared paper and scan noise (seed 100).

``--images DIR`` adds a labelled folder of your own (``DIR/<digit>/*``) as a third level.
Each model is a ready pipeline (``mnist_estimators.pipelines``: ``cnn`` is the default CNN,
``cnn_realworld`` the one trained for handwriting, ``realworld_ensemble`` it and the deskewed
CNN voting), fitted on the 60,000 MNIST training images
(tracking off, seed 0), or loaded (``--model-files cnn_best=models/cnn_best.pkl``). Every set
is read by ``preprocess_image`` twice, without the normalisation (``normalize_width=False,
normalize_slant=False``, the reader before issue 27) and with it (the default), and MNIST's own
test set is scored raw and through ``preprocess_image`` both ways (each 28x28 frame read as an
image): the normalisation must not cost MNIST more than 0.05 points. A third reader, "turned",
is the normalised one read as ``predict`` reads image files by default
(``mnist_estimators.reading``, ``reading.TURN``): a digit the model reads upright below 0.9
confidence is also read turned by -20..20 degrees, the most confident reading kept. "with" is
the same frames read upright only (``predict --turn 0``).

``--split validation`` is the command that chooses (a pipeline's recipe, a reader's option): the
levels' validation splits instead of their test splits, each model fitted on the first 50,000
MNIST training images, and the MNIST columns scored on the 10,000 held out of that fit, so
neither test set is seen. ``--set clf__augment_gaps=3`` overrides a parameter of every fitted
pipeline (a candidate); values are Python literals. ``--seeds 0 1 2`` fits each model once per
seed and adds each column's mean and range: one fit's hard-level score moves by a point or more
with the seed (docs/results.md), more than most candidates differ, so choose on means.

Prints one table and each model's commonest misreadings on the hard level ("1 read as 7 x12");
the hard level's accuracy by factor and by digit, and those misreadings, go to the JSON (--out).
Targets (issue 27), judged on the reader ``predict`` uses by default ("turned"): on the hard
level, the default CNN >= 97% and the ready pipeline for handwriting (``realworld_ensemble``;
``cnn_realworld`` is held to it too) >= 98%; MNIST test within 0.1 points of what each had
before.
"""

import ast
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import has_full_mnist, machine, parser, write_json  # noqa: E402

READERS = {"without": {"normalize_width": False, "normalize_slant": False}, "with": {}}
TARGETS = {"cnn": 0.97, "cnn_realworld": 0.98, "realworld_ensemble": 0.98}


def read(files, **options):
    """Each file through ``preprocess_image``; an image it refuses (no ink) counts as wrong."""
    from mnist_estimators.data import MNISTFormatError, preprocess_image

    rows, ok = [], []
    for p in files:
        try:
            rows.append(preprocess_image(p, **options))
            ok.append(True)
        except MNISTFormatError:
            rows.append(np.zeros(784, np.uint8))
            ok.append(False)
    return np.stack(rows), np.array(ok)


def turned(model, images, frames):
    """Digits read as ``predict`` reads image files: upright and, where the model is unsure,
    turned up to ``reading.TURN`` degrees."""
    from mnist_estimators import reading

    proba = reading.predict_proba(model, images, frames=frames)  # predict's default turn
    return np.asarray(model.classes_)[proba.argmax(axis=1)]


def labelled_files(folder):
    from mnist_estimators.data import IMAGE_SUFFIXES

    files = sorted(p for p in Path(folder).glob("[0-9]/*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"{folder}: no labelled images (expected {folder}/<digit>/*.png)")
    return files, np.array([int(p.parent.name) for p in files])


def by_factor(folder, correct):
    """Accuracy of the hard level by each transformation's strength."""
    import pandas as pd

    from mnist_estimators.strokes import read_factors

    f = read_factors(folder)
    f["correct"] = correct
    groups = {
        "width (of the digit's height)": pd.cut(f.width, [0, 0.02, 0.05, 0.1, 1]),
        "blurred": f.blur > 0, "drawn small, upscaled": f.small,
        "|rotation| (degrees)": pd.cut(f.rotation.abs(), [0, 10, 20, 30]),
        "slant (shear)": pd.cut(f.slant, [-1, -0.5, -0.2, 0.2, 1]),
        # slant and rotation lean the same way when their signs agree (strokes.draw_digit): a
        # digit leaning more than 45 degrees from upright is rare in real writing
        "lean: |rotation + atan(slant)| (degrees)": pd.cut(
            (f.rotation + np.degrees(np.arctan(f.slant))).abs(), [0, 15, 30, 45, 60, 90],
            include_lowest=True),
        "gaps": f.gaps, "paper": f.paper, "digit": f.digit,
    }
    return {name: {str(k): [round(float(v), 4), int(n)] for k, (v, n) in
                   f.groupby(g, observed=True).correct.agg(["mean", "size"]).iterrows()}
            for name, g in groups.items()}


def confusions(y, predicted, kept, top=5):
    """The commonest misreadings, e.g. ``{"1 read as 7": 12}``; a refused image reads as "none"."""
    wrong = [f"{t} read as {p if k else 'none'}"
             for t, p, k in zip(y, predicted, kept) if not (k and p == t)]
    names, counts = np.unique(wrong, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:top]
    return {str(names[i]): int(counts[i]) for i in order}


def seed_summary(rows, keys=("mnist_raw", "hard_with", "hard_turned", "easy_with",
                             "easy_turned")):
    """Per model, each key's (mean, min, max) over its rows (one a seed), and the seeds."""
    out = {}
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        out[name] = {"seeds": [r["seed"] for r in mine]}
        for k in keys:
            values = [r[k] for r in mine]
            out[name][k] = (float(np.mean(values)), float(min(values)), float(max(values)))
    return out


def main(argv=None):
    p = parser(__doc__, "realworld.json")
    p.add_argument("--images", help="a labelled folder of your own (DIR/<digit>/*.png)")
    p.add_argument("--per-digit", type=int, default=100)
    p.add_argument("--models", nargs="+", default=["cnn", "cnn_realworld", "realworld_ensemble"])
    p.add_argument("--model-files", nargs="*", default=[], metavar="NAME=PATH")
    p.add_argument("--split", choices=["test", "validation"], default="test",
                   help="validation: choose without seeing a test set (see above)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0],
                   help="fit each model once per seed (clf__random_state): a fit moves the hard "
                        "level by about a point, so compare means (default: 0)")
    p.add_argument("--set", nargs="*", default=[], metavar="PARAM=VALUE", dest="overrides",
                   help="override a parameter of every fitted pipeline, e.g. clf__augment_gaps=3")
    args = p.parse_args(argv)
    overrides = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        try:
            if not (sep and key):
                raise ValueError(item)
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            p.error(f"--set {item}: expected PARAM=VALUE, the value a Python literal "
                    f"(e.g. clf__augment_gaps=3)")
    if "clf__random_state" in overrides:
        p.error("--set clf__random_state: give the seeds with --seeds")
    if not has_full_mnist(args.data_home):
        return 0
    from mnist_estimators import load_mnist, strokes
    from mnist_estimators.data import preprocess_image
    from mnist_estimators.persistence import load_model
    from mnist_estimators.pipelines import get

    with tempfile.TemporaryDirectory() as tmp:
        levels = {}
        for level in ("easy", "hard"):
            folder = Path(tmp) / level
            strokes.make_set(folder, args.per_digit, level=level, split=args.split)
            files, y = labelled_files(folder)
            levels[level] = {"y": y, "folder": folder, "files": files, **{
                how: read(files, **options) for how, options in READERS.items()}}
        if args.images:
            files, y = labelled_files(args.images)
            levels["yours"] = {"y": y, "files": files, **{how: read(files, **options)
                                          for how, options in READERS.items()}}
        X, y = load_mnist("train", data_home=args.data_home)
        if args.split == "validation":  # the 10,000 training digits held out of every fit
            X, y, Xt, yt = X[:50_000], y[:50_000], X[50_000:], y[50_000:]
        else:
            Xt, yt = load_mnist("test", data_home=args.data_home)
        mnist = "MNIST test" if args.split == "test" else "MNIST held out (train 50k-60k)"
        start = time.perf_counter()
        mnist_read = {how: np.stack([preprocess_image(x.reshape(28, 28), **options) for x in Xt])
                      for how, options in READERS.items()}
        per_image_ms = (time.perf_counter() - start) / (2 * len(Xt)) * 1e3
        changed = float(np.mean(np.any(mnist_read["with"] != mnist_read["without"], axis=1)))
        print(f"{mnist} read through preprocess_image: {per_image_ms:.2f} ms an image; "
              f"the normalisation changed {changed:.1%} of its 10,000 digits", flush=True)

        given = dict(item.split("=", 1) for item in args.model_files)
        rows = []
        for name, seed in [(n, s) for n in args.models for s in ([None] if n in given
                                                                  else args.seeds)]:
            if name in given:
                model, fit_s = load_model(given[name]), None
            else:
                model = get(name).build_pipeline(**{"clf__random_state": seed, **overrides})
                model.set_params(**{key: False for key in model.get_params()  # an ensemble's
                                    if key.endswith("tracking")})  # members' too
                start = time.perf_counter()
                model.fit(X, y)
                fit_s = time.perf_counter() - start
            row = {"model": name, "seed": seed, "fit_s": fit_s, "overrides": repr(overrides),
                   "mnist_raw": float(model.score(Xt, yt))}
            for how in READERS:
                row[f"mnist_{how}"] = float(np.mean(model.predict(mnist_read[how]) == yt))
            row["mnist_turned"] = float(np.mean(turned(
                model, list(Xt.reshape(-1, 28, 28)), mnist_read["with"]) == yt))
            for level, data in levels.items():
                for how in (*READERS, "turned"):
                    Xl, kept = data["with" if how == "turned" else how]
                    if how == "turned":
                        predicted = np.full(len(Xl), -1)
                        files = [f for f, k in zip(data["files"], kept) if k]
                        predicted[kept] = turned(model, files, Xl[kept])
                    else:
                        predicted = model.predict(Xl)
                    correct = (predicted == data["y"]) & kept
                    row[f"{level}_{how}"] = float(correct.mean())
                    if level == "hard":
                        row[f"hard_{how}_by_factor"] = by_factor(data["folder"], correct)
                        row[f"hard_{how}_confusions"] = confusions(data["y"], predicted, kept)
            rows.append(row)
            which = f"seed {seed}" if seed is not None else "loaded"
            print(f"{name} ({which}): " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()
                                                     if isinstance(v, float) and k != "fit_s"),
                  flush=True)

    names = [level for level in levels]
    fitted_on = "MNIST train" if args.split == "test" else "MNIST train's first 50,000"
    print(f"\n### drawn digits ({args.split} splits), {args.per_digit} of each digit a level; "
          f"each model fitted on {fitted_on} (or loaded)"
          + (f", with {overrides}" if overrides else "") + "\n")
    head = " | ".join(f"{level}: without | with | turned" for level in names)
    print(f"| model | fit | {mnist}, raw | {mnist} via preprocess_image: without | with | turned "
          f"| {head} |")
    print("|---" * (6 + 3 * len(names)) + "|")
    label = (lambda r: r["model"]) if len(args.seeds) == 1 else (
        lambda r: r["model"] + (f" (seed {r['seed']})" if r["seed"] is not None else ""))
    for r in rows:
        fit = f"{r['fit_s']:.0f} s" if r["fit_s"] is not None else "loaded"
        cells = " | ".join(f"{r[f'{level}_without']:.2%} | {r[f'{level}_with']:.2%} | "
                           f"**{r[f'{level}_turned']:.2%}**" for level in names)
        print(f"| {label(r)} | {fit} | {r['mnist_raw']:.2%} | {r['mnist_without']:.2%} | "
              f"{r['mnist_with']:.2%} | {r['mnist_turned']:.2%} | {cells} |")
    from mnist_estimators import reading

    print(f"\n(with: the normalisation, read upright only, `predict --turn 0`; turned: the same "
          f"read as `predict` reads by default, turn={reading.TURN:g}: a digit read below 0.9 "
          "confidence is also read turned, and the most confident reading kept)")
    summary = seed_summary(rows)
    if any(len(cells["seeds"]) > 1 for cells in summary.values()):
        print(f"\n### over the seeds: mean (min-max)\n\n| model | seeds | {mnist}, raw | "
              "hard: with | turned | easy: with | turned |\n|---|---|---|---|---|---|---|")
        for name, cells in summary.items():
            print(f"| {name} | {len(cells['seeds'])} | " + " | ".join(
                f"{m:.2%} ({lo:.2%}-{hi:.2%})" for m, lo, hi in
                (cells[k] for k in ("mnist_raw", "hard_with", "hard_turned", "easy_with",
                                    "easy_turned"))) + " |")
    print()
    for r in rows:
        change = r["mnist_with"] - r["mnist_without"]
        print(f"{label(r)}: the normalisation changes {mnist} by {change * 100:+.2f} points "
              f"({'within' if change >= -0.0005 else 'OVER'} the 0.05-point cost limit); "
              f"its commonest errors on the hard level (turned): "
              + (", ".join(f"{k} x{v}" for k, v in r["hard_turned_confusions"].items())
                 or "none"))
    for name, cells in summary.items():
        if name in TARGETS:  # judged as predict reads by default: turned
            n = len(cells["seeds"])
            print(f"{name}: hard level read as predict reads (turned) "
                  f"{cells['hard_turned'][0]:.2%}, upright only {cells['hard_with'][0]:.2%}"
                  + (f" (means of {n} fits)" if n > 1 else "")
                  + f"; target >= {TARGETS[name]:.0%}: "
                  + ("met" if cells["hard_turned"][0] >= TARGETS[name] else "NOT met"))
    print(f"\n{machine()}")
    write_json(args.out, {"machine": machine(), "per_digit": args.per_digit, "split": args.split,
                          "overrides": repr(overrides), "over_seeds": summary,
                          "mnist_changed": changed, "preprocess_ms": per_image_ms, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
