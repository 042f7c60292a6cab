"""Seed 002's gradient check: backpropagation's gradient of chosen weights against the central
difference ``(E(w + eps) - E(w - eps)) / (2 eps)``, on one training image.

The seed checked its hand-written backprop this way (a 128-unit tanh MLP, eps = 1e-2: the two
should agree within eps**2 = 1e-4) on the same six weights as here: the last output bias, the
last hidden bias, two input-to-hidden and two hidden-to-output weights. Ours checks torch's
autograd through the estimator's own module and loss (L1 penalty included), in float64 so that
the difference is the method's truncation error rather than float32 rounding, with
``mnist_estimators.check_gradients`` on the seed's coordinates.

    from mnist_estimators.experiments.gradcheck import gradient_check
    gradient_check()            # the seed's network at its initialization, on a training image
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch
from torch import nn


def _linears(module):
    layers = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if len(layers) < 2:
        raise ValueError("the gradient check needs a network with a hidden layer (two or more "
                         f"Linear layers); {type(module).__name__} has {len(layers)}")
    return layers[0], layers[-1]


def _inputs(net, X):
    X = np.asarray(X)
    if hasattr(net, "n_features_in_"):  # fitted: the estimator's own scaling
        return net._check_X(X, reset=False).double()
    flat = torch.as_tensor(X.reshape(len(X), -1), dtype=torch.float64)
    return flat / 255.0 if X.dtype.kind in "ui" else flat


def pick_weights(module, x, label):
    """The seed's six weights: (row name, parameter name, index), for input ``x`` (1, n) of
    class ``label``. Input-to-hidden weights start at the image's brightest pixels, so that
    their gradient is not zero."""
    first, last = _linears(module)
    names = {id(p): name for name, p in module.named_parameters()}
    bright = torch.argsort(x[0], descending=True)[:2].tolist()
    other = (label + 1) % last.out_features
    return [
        ("output bias (last)", names[id(last.bias)], (last.out_features - 1,)),
        ("hidden bias (last)", names[id(first.bias)], (first.out_features - 1,)),
        ("input to hidden i", names[id(first.weight)], (first.out_features // 2, bright[0])),
        ("input to hidden ii", names[id(first.weight)], (0, bright[1])),
        ("hidden to output i", names[id(last.weight)], (label, last.in_features - 1)),
        ("hidden to output ii", names[id(last.weight)], (other, 0)),
    ]


def table(report, picks, eps):
    """``check_gradients``' report as the seed's table, with whether each is within eps**2."""
    return pd.DataFrame([{"weight": row, "index": str(index), "numerical": r["numerical"],
                          "backprop": r["backprop"], "abs_difference": r["abs_diff"],
                          "within_eps2": r["abs_diff"] <= eps ** 2}
                         for (row, _, index), r in zip(picks, report)])


def gradient_check(estimator=None, X=None, y=None, eps=1e-2, sample=0, data_home=None):
    """Seed 002's table for ``estimator`` (default: its 128-unit tanh MLP, initialized, seed 0;
    fitted or not) on training image ``sample`` of ``X``, ``y`` (default: MNIST train)."""
    from ..data import load_mnist
    from ..estimators import MLPClassifier
    from ..training import check_gradients

    if X is None:
        X, y = load_mnist("train", data_home=data_home)
    if not 0 <= sample < len(X):
        raise ValueError(f"sample must be an index of X (0..{len(X) - 1}), got {sample}")
    if estimator is None:
        estimator = MLPClassifier(hidden_sizes=(128,), activation="tanh", init="xavier_uniform",
                                  random_state=0, tracking=False)
    net = estimator[-1] if hasattr(estimator, "steps") else estimator
    if not hasattr(net, "module_"):
        net.initialize()
    net = copy.deepcopy(net)  # float64 here, never the caller's model
    net.module_.double().eval()  # eval: dropout would make E(w) random
    x = _inputs(net, np.asarray(X)[sample:sample + 1])
    if hasattr(net, "classes_"):
        label = int(np.flatnonzero(np.asarray(net.classes_) == y[sample])[0])
    else:
        label = int(y[sample])
    target = torch.tensor([label])
    picks = pick_weights(net.module_, x, label)
    report = check_gradients(net.module_, x, target, eps=eps, copy=False,
                             coords=[(name, index) for _, name, index in picks],
                             loss=lambda m, X, y: net.get_loss(m(X), y, training=True))
    return table(report, picks, eps)


def markdown(table, eps):
    lines = ["| weight | numerical | backprop | absolute difference |", "|---|---|---|---|"]
    lines += [f"| {r.weight} | {r.numerical:.6g} | {r.backprop:.6g} | {r.abs_difference:.2g} |"
              for r in table.itertuples()]
    held = bool(table["within_eps2"].all())
    lines += ["", f"eps = {eps:g}: every difference is {'within' if held else 'NOT within'} "
              f"eps² = {eps ** 2:g} (largest {table['abs_difference'].max():.2g})."]
    return "\n".join(lines)
