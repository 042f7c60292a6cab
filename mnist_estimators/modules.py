"""Plain torch modules: softmax regression, MLP and CNN.

Every module takes a flat float batch ``(N, n_features)`` and returns logits ``(N, n_classes)``;
the loss (cross-entropy on logits) lives in the estimator. Nothing here knows about
scikit-learn or MLflow.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
}


def make_activation(name):
    """Return a fresh activation layer for ``name`` (a key of ``ACTIVATIONS``)."""
    try:
        return ACTIVATIONS[name]()
    except (KeyError, TypeError):
        raise ValueError(
            f"The 'activation' parameter must be one of {sorted(ACTIVATIONS)}. Got {name!r} instead."
        ) from None


def _check_sizes(name, sizes):
    sizes = tuple(sizes)
    if not all(isinstance(s, int) and s > 0 for s in sizes):
        raise ValueError(f"The '{name}' parameter must be positive integers. Got {sizes!r} instead.")
    return sizes


class SoftmaxRegression(nn.Module):
    """One linear layer: ``(N, n_features) -> (N, n_classes)`` logits."""

    def __init__(self, n_features=784, n_classes=10):
        super().__init__()
        self.linear = nn.Linear(n_features, n_classes)

    def forward(self, X):
        return self.linear(X)


class MLP(nn.Module):
    """Fully connected network: ``[Linear -> (BatchNorm) -> activation -> (Dropout)] * k -> Linear``."""

    def __init__(self, n_features=784, n_classes=10, hidden_sizes=(256, 128), activation="relu",
                 dropout=0.0, batch_norm=False):
        super().__init__()
        layers, width = [], n_features
        for size in _check_sizes("hidden_sizes", hidden_sizes):
            layers.append(nn.Linear(width, size))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(make_activation(activation))
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        self.hidden = nn.Sequential(*layers)  # (N, n_features) -> (N, hidden_sizes[-1])
        self.output = nn.Linear(width, n_classes)

    def forward(self, X):
        return self.output(self.hidden(X))


class CNN(nn.Module):
    """Convolutional network for square single-channel images given flat.

    Each entry of ``channels`` adds a block of ``convs_per_block`` times
    ``Conv(kernel_size) -> (BatchNorm) -> activation``, then ``MaxPool2``; ``hidden_sizes`` adds
    fully connected layers before the output. ``channels_last`` stores the conv kernels as
    NHWC, which oneDNN runs 1.3-1.7x faster on this 2-core CPU (benchmarks/bench_speed.py).

    ``pool_first=True`` pools right after each block's last conv:
    ``Conv -> MaxPool2 -> (BatchNorm) -> activation``. The BatchNorm and activation then run
    on a quarter of the elements. Small CNNs on a CPU spend most of their time there, not in
    the convolutions. This is the speed ordering of the fast CIFAR-10 training scripts
    (hlb-CIFAR10). Max-pooling commutes with the ReLU, but the BatchNorm statistics are taken
    after pooling, so it is a different network, not a faster way to compute the same one.

    ``first_stride=2`` gives the first convolution a stride of 2 and drops the first block's
    ``MaxPool2``: the first block then runs at half the side (14x14 for MNIST), a quarter of its
    convolution, BatchNorm and activation work, and its max-pool, which on a CPU costs as much
    as the convolution it follows. A different network again (a strided stem, as ResNets
    have); ``benchmarks/bench_speed.py``'s time-to-99% recipe measures what it costs.
    """

    def __init__(self, n_features=784, n_classes=10, channels=(32, 64), hidden_sizes=(128,),
                 activation="relu", dropout=0.0, batch_norm=True, kernel_size=3, convs_per_block=1,
                 channels_last=True, pool_first=False, first_stride=1):
        super().__init__()
        if first_stride not in (1, 2) or isinstance(first_stride, bool):
            raise ValueError(
                f"The 'first_stride' parameter must be 1 or 2. Got {first_stride!r} instead."
            )
        side = math.isqrt(n_features)
        if side * side != n_features:
            raise ValueError(
                f"CNN needs square images: n_features must be a perfect square (784 for 28x28). "
                f"Got {n_features} features instead."
            )
        self.side = side
        blocks, in_ch = [], 1
        (convs_per_block,) = _check_sizes("convs_per_block", (convs_per_block,))
        for b, out_ch in enumerate(_check_sizes("channels", channels)):
            # The first block halves the side by its first conv's stride (first_stride=2) or
            # by a max-pool; every other block by a max-pool.
            strided = b == 0 and first_stride == 2
            for i in range(convs_per_block):  # (N, in_ch, s, s) -> (N, out_ch, s, s)
                stride = 2 if strided and i == 0 else 1
                blocks.append(nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride,
                                        padding=kernel_size // 2, bias=not batch_norm))
                if pool_first and i == convs_per_block - 1 and not strided:
                    blocks.append(nn.MaxPool2d(2))
                if batch_norm:
                    blocks.append(nn.BatchNorm2d(out_ch))
                blocks.append(make_activation(activation))
                in_ch = out_ch
            if not pool_first and not strided:
                blocks.append(nn.MaxPool2d(2))  # (N, C, s, s) -> (N, C, s//2, s//2)
            # A stride-2 conv with padding k//2 gives (s + 2(k//2) - k)//2 + 1: s//2 for odd k.
            side = (side + 2 * (kernel_size // 2) - kernel_size) // 2 + 1 if strided else side // 2
        if side < 1:
            raise ValueError(f"Too many conv blocks ({len(channels)}) for {self.side}x{self.side} images.")
        self.features = nn.Sequential(*blocks)  # (N, 1, 28, 28) -> (N, 64, 7, 7) by default
        head, width = [nn.Flatten()], in_ch * side * side
        for size in _check_sizes("hidden_sizes", hidden_sizes):
            head += [nn.Linear(width, size), make_activation(activation)]
            if dropout:
                head.append(nn.Dropout(dropout))
            width = size
        head.append(nn.Linear(width, n_classes))
        self.classifier = nn.Sequential(*head)
        if channels_last:
            # Conv outputs follow the kernels' layout; in-place re-inits keep it.
            self.to(memory_format=torch.channels_last)

    def forward(self, X):
        X = X.reshape(-1, 1, self.side, self.side)  # (N, 784) -> (N, 1, 28, 28)
        return self.classifier(self.features(X))
