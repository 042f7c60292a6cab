"""Backprop against central finite differences (seed 002)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def check_gradients(module, X, y, n_checks=20, eps=1e-5, random_state=0, coords=None,
                    loss=None, copy=True):
    """Compare backprop gradients with central finite differences.

    The loss is ``loss(module, X, y)``, by default the mean cross-entropy of ``module(X)``
    against ``y``. A copy of the module is evaluated in float64 and eval mode (no dropout
    noise, BatchNorm on running stats); ``copy=False`` uses ``module`` as it is (already a
    float64 copy that ``loss`` refers to, e.g. for an estimator's penalty).
    ``torch.autograd.gradcheck`` would build the full Jacobian, one forward pass per parameter
    (hundreds of thousands here); this samples ``n_checks`` coordinates per parameter tensor,
    or checks the given ``coords``: ``(parameter name, index tuple)`` pairs.

    Returns
    -------
    report : list of dict
        One row per checked coordinate: ``param``, ``index``, ``backprop``, ``numerical``,
        ``abs_diff``, ``rel_diff``.
    """
    import copy as copying

    net = copying.deepcopy(module).double().eval() if copy else module
    X = torch.as_tensor(np.asarray(X), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(y), dtype=torch.long)
    if loss is None:
        criterion = nn.CrossEntropyLoss()

        def loss(m, X, y):
            return criterion(m(X), y)

    net.zero_grad()
    loss(net, X, y).backward()
    params = dict(net.named_parameters())
    if coords is None:
        rng = np.random.default_rng(random_state)
        # Index by position, not through reshape(-1): that copies a channels-last kernel.
        coords = [(name, np.unravel_index(int(idx), tuple(p.shape)))
                  for name, p in params.items()
                  for idx in rng.choice(p.numel(), size=min(n_checks, p.numel()), replace=False)]
    report = []
    with torch.no_grad():
        for name, pos in coords:
            p, pos = params[name], tuple(int(i) for i in pos)
            orig = p.data[pos].item()
            p.data[pos] = orig + eps
            up = loss(net, X, y).item()
            p.data[pos] = orig - eps
            down = loss(net, X, y).item()
            p.data[pos] = orig
            num = (up - down) / (2 * eps)
            bp = p.grad[pos].item()
            diff = abs(bp - num)
            report.append({"param": name, "index": int(np.ravel_multi_index(pos, p.shape)),
                           "backprop": bp, "numerical": num, "abs_diff": diff,
                           "rel_diff": diff / max(abs(bp) + abs(num), 1e-12)})
    return report
