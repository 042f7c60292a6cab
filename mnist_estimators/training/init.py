"""Named weight initialization schemes; skorch has no init hook beyond the module itself."""

from __future__ import annotations

from torch import nn

INIT_SCHEMES = (
    "default", "zero", "uniform", "normal",
    "he_uniform", "he_normal", "xavier_uniform", "xavier_normal",
)
_INIT_ALIASES = {
    "he": "he_normal", "kaiming": "he_normal", "kaiming_normal": "he_normal",
    "kaiming_uniform": "he_uniform", "xavier": "xavier_uniform", "glorot": "xavier_uniform",
    "glorot_uniform": "xavier_uniform", "glorot_normal": "xavier_normal", "zeros": "zero",
    None: "default",
}
# torch.nn.init.calculate_gain knows no 'elu'/'gelu'; ReLU's gain is the usual stand-in.
_GAIN_NAME = {"relu": "relu", "leaky_relu": "leaky_relu", "tanh": "tanh", "sigmoid": "sigmoid",
              "elu": "relu", "gelu": "relu"}


def init_weights(module, scheme="default", activation="relu"):
    """Re-initialize every ``Linear``/``Conv2d`` weight of ``module`` in place.

    Schemes: ``"default"`` (PyTorch's own), ``"zero"``, ``"uniform"`` (U(0, 1), seed 004's
    "random"), ``"normal"`` (N(0, 0.01^2)), ``"he_uniform"``, ``"he_normal"``,
    ``"xavier_uniform"``, ``"xavier_normal"`` (aliases: ``he``, ``kaiming*``, ``xavier``,
    ``glorot*``).
    Biases are set to zero for every scheme but ``"default"``. BatchNorm layers are left alone.
    """
    name = _INIT_ALIASES.get(scheme, scheme)
    if name not in INIT_SCHEMES:
        raise ValueError(
            f"The 'init' parameter must be one of {list(INIT_SCHEMES)} (or an alias: "
            f"{sorted(k for k in _INIT_ALIASES if k)}). Got {scheme!r} instead."
        )
    if name == "default":
        return module
    nonlinearity = _GAIN_NAME.get(activation, "relu")
    for layer in module.modules():
        if not isinstance(layer, (nn.Linear, nn.Conv2d)):
            continue
        w = layer.weight
        if name == "zero":
            nn.init.zeros_(w)
        elif name == "uniform":
            nn.init.uniform_(w, 0.0, 1.0)
        elif name == "normal":
            nn.init.normal_(w, 0.0, 0.01)
        elif name == "he_uniform":
            nn.init.kaiming_uniform_(w, nonlinearity=nonlinearity)
        elif name == "he_normal":
            nn.init.kaiming_normal_(w, nonlinearity=nonlinearity)
        elif name == "xavier_uniform":
            nn.init.xavier_uniform_(w, gain=nn.init.calculate_gain(nonlinearity))
        elif name == "xavier_normal":
            nn.init.xavier_normal_(w, gain=nn.init.calculate_gain(nonlinearity))
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    return module
