"""What an ensemble's members give: each member alone, the vote, more members, test-time shifts.

    python benchmarks/bench_members.py models/cnn_ensemble-seed0.pkl models/cnn_ensemble-seed1.pkl \
        models/cnn_ensemble-seed2.pkl [--sizes 5 7 10 15] [--data-home DIR]

Reads soft-voting pipelines saved by ``mnist-estimators reproduce`` (``models/NAME-seedS.pkl``)
and scores them on the 10,000 test images, fitting nothing:

- each member alone and each file's soft vote, with and without ``tta`` (the member's
  probabilities averaged over the image and its four one-pixel shifts: ``CNNClassifier(tta=True)``);
- the members of all the files pooled: the vote of ``k`` members drawn from the pool (mean and
  std over 200 draws; the whole pool once), to see what more members of the same recipe buy;
- the test images the whole pool's vote misses, and how many of them every member misses.

This is a report on test data, made after the pipelines were chosen: use it to understand an
ensemble, never to pick one (pick on a validation split). Writes benchmarks/results/members.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import common  # benchmarks/common.py, next to this script

DRAWS = 200


def member_views(pipe, X):
    """(members, 5 views, n, classes) test probabilities of a fitted soft-voting pipeline; view 0
    is the image itself, views 1-4 its one-pixel shifts."""
    import torch

    from mnist_estimators.training import shifted_views

    vote = pipe[-1]
    Xt = torch.as_tensor(np.asarray(pipe[:-1].transform(X), dtype=np.float32))
    names = [name for name, _ in vote.estimators]
    views = []
    for member in vote.estimators_:
        member = member.set_params(tta=False)  # the shifts are taken here, once per member
        views.append(np.stack([member.predict_proba(v.numpy()) for v in shifted_views(Xt, 28)]))
    return names, vote.classes_, np.stack(views)


def vote_accuracy(views, classes, y, tta):
    """Accuracy of the soft vote of ``views`` (members, 5, n, classes)."""
    proba = (views.mean(axis=1) if tta else views[:, 0]).mean(axis=0)
    return float((classes[proba.argmax(axis=1)] == y).mean())


def main(argv=None):
    p = common.parser(__doc__, "members.json")
    p.add_argument("models", nargs="+", type=Path, help="saved soft-voting pipelines")
    p.add_argument("--sizes", type=int, nargs="+", default=[5, 7, 10, 15],
                   help="ensemble sizes drawn from the pooled members")
    args = p.parse_args(argv)
    if not common.has_full_mnist(args.data_home):
        return 0
    from mnist_estimators.data import read_idx_folder
    from mnist_estimators.persistence import load_model

    X, y = read_idx_folder(args.data_home, "test")
    result = {"machine": common.machine(), "models": {}, "pooled": {}}
    pool, classes = [], None
    print("| model | member | alone | alone, tta |\n|---|---|---|---|")
    for path in args.models:
        names, classes, views = member_views(load_model(path), X)
        rows = {name: {"accuracy": vote_accuracy(v[None], classes, y, False),
                       "accuracy_tta": vote_accuracy(v[None], classes, y, True)}
                for name, v in zip(names, views)}
        rows["vote"] = {"accuracy": vote_accuracy(views, classes, y, False),
                        "accuracy_tta": vote_accuracy(views, classes, y, True)}
        for name, row in rows.items():
            print(f"| {path.name} | {name} | {row['accuracy']:.2%} | {row['accuracy_tta']:.2%} |")
        result["models"][str(path)] = rows
        pool.extend(views)
    pool = np.stack(pool)
    rng = np.random.default_rng(0)
    print(f"\n| members drawn from the {len(pool)} pooled | vote | vote, tta |\n|---|---|---|")
    for k in sorted(s for s in set(args.sizes) if s <= len(pool)):
        draws = [rng.choice(len(pool), k, replace=False) for _ in range(DRAWS if k < len(pool) else 1)]
        plain = [vote_accuracy(pool[d], classes, y, False) for d in draws]
        tta = [vote_accuracy(pool[d], classes, y, True) for d in draws]
        result["pooled"][k] = {"draws": len(draws), "accuracy_mean": float(np.mean(plain)),
                               "accuracy_std": float(np.std(plain)),
                               "accuracy_tta_mean": float(np.mean(tta)),
                               "accuracy_tta_std": float(np.std(tta))}
        print(f"| {k} ({len(draws)} draw{'s' * (len(draws) > 1)}) | {np.mean(plain):.2%} ± "
              f"{np.std(plain):.2%} | {np.mean(tta):.2%} ± {np.std(tta):.2%} |")
    # where more members of the recipe cannot help: the images every member gets wrong
    wrong = classes[pool[:, 0].argmax(axis=2)] != y  # (members, n)
    missed = classes[pool[:, 0].mean(axis=0).argmax(axis=1)] != y
    result["pool_vote_errors"] = int(missed.sum())
    result["pool_vote_errors_every_member_misses"] = int((missed & wrong.all(axis=0)).sum())
    print(f"\nthe vote of all {len(pool)} misses {int(missed.sum())} test images; every member "
          f"misses {result['pool_vote_errors_every_member_misses']} of them")
    common.write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
