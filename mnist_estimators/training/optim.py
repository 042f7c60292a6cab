"""Optimizers by name (``"adam"``), so that parameter grids and Optuna can use strings, and
the choice of torch's fused single-kernel step."""

from __future__ import annotations

import torch

# name -> (class, defaults); "momentum"/"nesterov" are SGD with momentum 0.9.
OPTIMIZERS = {
    "sgd": (torch.optim.SGD, {}),
    "momentum": (torch.optim.SGD, {"momentum": 0.9}),
    "nesterov": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    "rmsprop": (torch.optim.RMSprop, {}),
    "adam": (torch.optim.Adam, {}),
    "adamw": (torch.optim.AdamW, {}),
}


def resolve_optimizer(optimizer):
    """Map an optimizer name or class to ``(class, default_kwargs)``."""
    if isinstance(optimizer, str):
        try:
            cls, defaults = OPTIMIZERS[optimizer.lower()]
        except KeyError:
            raise ValueError(
                f"The 'optimizer' parameter must be a torch optimizer class or one of "
                f"{sorted(OPTIMIZERS)}. Got {optimizer!r} instead."
            ) from None
        return cls, dict(defaults)
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        return optimizer, {}
    raise ValueError(
        "The 'optimizer' parameter must be a torch optimizer class or one of "
        f"{sorted(OPTIMIZERS)}. Got {optimizer!r} instead."
    )


# torch's Adam and AdamW default to the multi-tensor ("foreach") step; their single-kernel
# ("fused") step is opt-in, though torch plans to make it the default. On this 2-core CPU it took
# 15-20% off an MLP epoch in a hand-loop microbenchmark (docs/results.md, epoch time), so we opt
# in where torch supports it.
FUSED_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW)
_FUSED_DEVICES = ("cpu", "cuda")
_FUSED_EXCLUSIVE = ("fused", "foreach", "differentiable", "capturable")


def use_fused_kernel(cls, kwargs, params):
    """True when ``cls`` has a fused step that the user did not rule out and ``params`` can use.

    ``params`` is what the optimizer receives (tensors or param-group dicts). A user's own
    ``optimizer__fused``/``foreach``/``differentiable``/``capturable`` always wins.
    """
    if not issubclass(cls, FUSED_OPTIMIZERS) or any(key in kwargs for key in _FUSED_EXCLUSIVE):
        return False
    tensors = []
    for item in params:
        if isinstance(item, dict):
            tensors.extend(item["params"])
        elif isinstance(item, tuple):  # (name, parameter) pairs
            tensors.append(item[1])
        else:
            tensors.append(item)
    return bool(tensors) and all(
        t.device.type in _FUSED_DEVICES and t.is_floating_point() for t in tensors
    )
