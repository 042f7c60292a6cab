import numpy as np
import pytest
import torch
from skorch.dataset import Dataset

from mnist_estimators import CNNClassifier, TensorBatchIterator, check_gradients
from mnist_estimators.modules import CNN, MLP, SoftmaxRegression

from conftest import X_TRAIN, Y_TRAIN

# A little noise breaks exact ties (max-pooling over blank background), where the loss has kinks
# and no finite difference can match any gradient.
X = X_TRAIN[:16].astype(np.float64) / 255 + np.random.default_rng(0).normal(0, 0.01, (16, 784))
Y = Y_TRAIN[:16]


@pytest.mark.parametrize("make, tol", [
    (lambda: SoftmaxRegression(), 1e-7),
    (lambda: MLP(hidden_sizes=(128,), activation="tanh"), 1e-7),  # seed 002: one tanh layer of 128
    (lambda: MLP(hidden_sizes=(32, 16), activation="sigmoid", batch_norm=True, dropout=0.5), 1e-7),
    (lambda: CNN(channels=(4, 8), hidden_sizes=(16,), activation="tanh", batch_norm=False), 1e-7),
    # ReLU + max-pool: a perturbation can cross a kink, so seed 002's own bound (1e-4) applies.
    (lambda: CNN(channels=(4, 8), hidden_sizes=(16,)), 1e-4),
], ids=["softmax", "mlp_tanh", "mlp_bn_dropout", "cnn_tanh", "cnn_relu"])
def test_backprop_matches_finite_differences(make, tol):
    torch.manual_seed(0)
    module = make()
    report = check_gradients(module, X, Y, n_checks=8, eps=1e-6)
    assert len(report) >= 8 * len(list(module.parameters())) // 2
    worst = max(r["abs_diff"] for r in report)
    assert worst < tol, worst
    # the check is not vacuous: some gradients are clearly non-zero
    assert max(abs(r["backprop"]) for r in report) > 1e-4


def test_gradient_check_catches_a_wrong_gradient():
    class Broken(SoftmaxRegression):
        def forward(self, X):
            out = super().forward(X)
            # forward value unchanged, backward scaled by 3: a wrong gradient on purpose
            return out + 2 * (out - out.detach())

    report = check_gradients(Broken(), X, Y, n_checks=10, eps=1e-6)
    assert max(r["rel_diff"] for r in report) > 0.4


def test_tensor_batch_iterator_covers_all_rows_once_per_epoch():
    Xt, yt = torch.arange(10).float().reshape(10, 1), torch.arange(10)
    it = TensorBatchIterator(Dataset(Xt, yt), batch_size=3, shuffle=True,
                             generator=torch.Generator().manual_seed(0))
    assert len(it) == 4
    epoch1 = [yb for _, yb in it]
    epoch2 = [yb for _, yb in it]
    assert [len(b) for b in epoch1] == [3, 3, 3, 1]
    assert sorted(torch.cat(epoch1).tolist()) == list(range(10))
    assert torch.cat(epoch1).tolist() != torch.cat(epoch2).tolist()
    for xb, yb in it:  # X and y stay aligned after shuffling
        assert torch.equal(xb[:, 0].long(), yb)
    drop = TensorBatchIterator(Dataset(Xt, yt), batch_size=3, drop_last=True)
    assert len(drop) == 3 and [len(b) for _, b in drop] == [3, 3, 3]
    plain = [yb for _, yb in TensorBatchIterator(Dataset(Xt, None), batch_size=4)]
    assert plain == [None, None, None]


def test_tensor_batch_iterator_needs_tensors():
    with pytest.raises(TypeError, match="needs a dataset holding tensors .*=DataLoader"):
        TensorBatchIterator(Dataset(np.zeros((3, 2)), np.zeros(3)))
    with pytest.raises(ValueError, match="'batch_size' parameter must be >= 1"):
        TensorBatchIterator(Dataset(torch.zeros(3, 2), None), batch_size=0)


def test_cnn_blocks_of_several_convs():
    module = CNN(channels=(4, 8), hidden_sizes=(16,), convs_per_block=2)
    convs = [m for m in module.features if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 4), (4, 4), (4, 8), (8, 8)]
    assert module(torch.rand(3, 784)).shape == (3, 10)
    with pytest.raises(ValueError, match="'convs_per_block' parameter must be positive integers"):
        CNN(convs_per_block=0)


def test_cnn_pool_first_pools_before_batchnorm_and_activation():
    torch.manual_seed(0)
    first = CNN(channels=(4, 8), hidden_sizes=(16,), convs_per_block=2, pool_first=True)
    kinds = [type(m).__name__ for m in first.features]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"] * 2
    last = CNN(channels=(4, 8), hidden_sizes=(16,), convs_per_block=2)
    with torch.no_grad():  # same parameters (fresh BatchNorm statistics), pooling elsewhere
        for ours, theirs in zip(last.parameters(), first.parameters(), strict=True):
            ours.copy_(theirs)
    X = torch.from_numpy(X_TRAIN[:32].astype(np.float32) / 255)
    # Evaluated with positive BatchNorm scales, BatchNorm and ReLU are increasing maps, which
    # commute with max-pooling: the same function.
    first.eval(), last.eval()
    torch.testing.assert_close(first(X), last(X), rtol=1e-4, atol=1e-5)
    # Training, the batch statistics are taken over pooled maps: a different network.
    first.train(), last.train()
    assert not torch.allclose(first(X), last(X), atol=1e-3)


def test_cnn_first_stride_halves_the_first_block_by_its_conv_instead_of_a_pool():
    plain = CNN(channels=(4, 8, 16), hidden_sizes=(16,), pool_first=True)
    strided = CNN(channels=(4, 8, 16), hidden_sizes=(16,), pool_first=True, first_stride=2)
    kinds = [type(m).__name__ for m in strided.features]
    pooled_block = ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU"] + pooled_block * 2
    strides = [m.stride for m in strided.features if isinstance(m, torch.nn.Conv2d)]
    assert strides == [(2, 2), (1, 1), (1, 1)]
    # Same parameter shapes (the stride has no weights), so the same head: 16 x 3 x 3 features.
    assert [p.shape for p in strided.parameters()] == [p.shape for p in plain.parameters()]
    X = torch.from_numpy(X_TRAIN[:8].astype(np.float32) / 255)
    maps = strided.features(X.reshape(-1, 1, 28, 28))
    assert maps.shape == (8, 16, 3, 3) == plain.features(X.reshape(-1, 1, 28, 28)).shape
    assert strided.features[:3](X.reshape(-1, 1, 28, 28)).shape == (8, 4, 14, 14)
    # Either order, several convs a block, other kernels: the stride is the first conv's only.
    classic = CNN(channels=(4, 8), hidden_sizes=(), convs_per_block=2, kernel_size=5,
                  first_stride=2)
    assert [type(m).__name__ for m in classic.features].count("MaxPool2d") == 1
    strides = [m.stride for m in classic.features if isinstance(m, torch.nn.Conv2d)]
    assert strides == [(2, 2)] + [(1, 1)] * 3
    assert classic(X).shape == (8, 10)
    for bad in (0, 3, 1.5, True):
        with pytest.raises(ValueError,
                           match=f"'first_stride' parameter must be 1 or 2. Got {bad!r}"):
            CNN(first_stride=bad)


def test_cnn_classifier_takes_first_stride_as_a_module_parameter():
    clf = CNNClassifier(channels=(4, 8), module__first_stride=2, max_epochs=1, tracking=False,
                        random_state=0).fit(X_TRAIN[:256], Y_TRAIN[:256])
    first = clf.module_.features[0]
    assert first.stride == (2, 2) and clf.predict(X_TRAIN[:5]).shape == (5,)
    with pytest.raises(ValueError, match="'first_stride' parameter must be 1 or 2. Got 4"):
        CNNClassifier(module__first_stride=4, max_epochs=1,
                      tracking=False).fit(X_TRAIN[:64], Y_TRAIN[:64])


def test_channels_last_is_a_layout_not_a_different_network():
    torch.manual_seed(0)
    nhwc = CNN(channels=(4, 8), hidden_sizes=(16,))
    nchw = CNN(channels=(4, 8), hidden_sizes=(16,), channels_last=False)
    nchw.load_state_dict(nhwc.state_dict())
    conv = nhwc.features[4].weight  # (8, 4, 3, 3): with one input channel both layouts coincide
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    X = torch.from_numpy(X_TRAIN[:32].astype(np.float32) / 255)
    nhwc.eval(), nchw.eval()
    torch.testing.assert_close(nhwc(X), nchw(X), rtol=1e-4, atol=1e-5)
