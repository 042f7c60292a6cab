"""Weight averaging (EMA, SWA), BatchNorm recomputation and test-time augmentation."""

import copy

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from conftest import X_TEST, X_TRAIN, Y_TEST, Y_TRAIN
from mnist_estimators import CNNClassifier, MLPClassifier, SoftmaxRegressionClassifier


class Snapshots(Callback):
    """The module's own weights after every training batch and after every epoch."""

    def initialize(self):
        self.batches, self.epochs = [], []
        return self

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            self.batches.append(copy.deepcopy(net.module_.state_dict()))

    def on_epoch_end(self, net, **kwargs):
        self.epochs.append(copy.deepcopy(net.module_.state_dict()))


def _fit(cls, snapshots=None, **params):
    params = {"max_epochs": 2, "random_state": 0, "validation_fraction": None, **params}
    if snapshots is not None:
        params["callbacks"] = [("snapshots", snapshots)]
    return cls(**params).fit(X_TRAIN, Y_TRAIN)


def test_ema_is_the_warmed_up_exponential_average_of_every_training_step():
    snaps = Snapshots()
    clf = _fit(SoftmaxRegressionClassifier, snaps, batch_size=100, max_epochs=2,
               weight_averaging="ema", averaging_decay=0.9)
    assert len(snaps.batches) == 8  # 400 images, batch 100, 2 epochs
    expected = snaps.batches[0]["linear.weight"].clone()
    for n, state in enumerate(snaps.batches[1:], start=1):
        decay = min(0.9, (1 + n) / (10 + n))  # the warm-up, then the decay asked for
        expected = decay * expected + (1 - decay) * state["linear.weight"]
    final = clf.module_.linear.weight.detach()
    torch.testing.assert_close(final, expected)
    assert not torch.allclose(final, snaps.batches[-1]["linear.weight"])


def test_swa_averages_the_epochs_after_its_start():
    snaps = Snapshots()
    clf = _fit(MLPClassifier, snaps, hidden_sizes=(16,), max_epochs=4, weight_averaging="swa",
               averaging_start=0.5)
    # epochs 3 and 4 are after half of 4
    for name, value in clf.module_.state_dict().items():
        if value.is_floating_point() and "running" not in name:
            mean = (snaps.epochs[2][name] + snaps.epochs[3][name]) / 2
            torch.testing.assert_close(value, mean, msg=name)


def test_recompute_bn_sets_the_statistics_of_the_final_weights_on_the_training_data():
    with_bn = _fit(CNNClassifier, channels=(8,), hidden_sizes=(), recompute_bn=True)
    without = _fit(CNNClassifier, channels=(8,), hidden_sizes=(), recompute_bn=False)
    bn = _bn
    assert not torch.allclose(bn(with_bn).running_var, bn(without).running_var)
    without.recompute_batchnorm(X_TRAIN)  # the same thing by hand, on the same training data
    torch.testing.assert_close(bn(with_bn).running_mean, bn(without).running_mean)
    torch.testing.assert_close(bn(with_bn).running_var, bn(without).running_var)
    np.testing.assert_array_equal(with_bn.predict(X_TEST), without.predict(X_TEST))


def test_bn_recompute_uses_the_training_split_only_and_records_final_validation():
    clf = _fit(CNNClassifier, channels=(8,), hidden_sizes=(), recompute_bn=True,
               weight_averaging="ema", validation_fraction=0.25)
    last = clf.history_[-1]
    assert 0 <= last["valid_acc_final"] <= 1 and last["valid_loss_final"] > 0
    # the same split as the fit (stratified, seeded), so the same statistics by hand
    train_idx = _training_split(clf, n=len(X_TRAIN))
    twin = copy.deepcopy(clf).recompute_batchnorm(X_TRAIN[train_idx])
    torch.testing.assert_close(_bn(twin).running_mean, _bn(clf).running_mean)
    everything = copy.deepcopy(clf).recompute_batchnorm(X_TRAIN)  # the validation part too
    assert not torch.allclose(_bn(everything).running_mean, _bn(clf).running_mean)


def _bn(clf):
    return next(m for m in clf.module_.modules() if isinstance(m, torch.nn.BatchNorm2d))


def _training_split(clf, n):
    from sklearn.model_selection import train_test_split

    idx_train, _ = train_test_split(np.arange(n), test_size=clf.n_valid_samples(n),
                                    stratify=Y_TRAIN, random_state=clf.random_state)
    return idx_train


def test_tta_is_the_mean_over_the_image_and_its_four_one_pixel_shifts():
    clf = _fit(CNNClassifier, channels=(8,), hidden_sizes=())
    X = X_TEST[:20].reshape(-1, 28, 28)
    padded = np.pad(X, ((0, 0), (1, 1), (1, 1)))
    views = [X] + [padded[:, dy:dy + 28, dx:dx + 28] for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2))]
    expected = np.mean([clf.predict_proba(v) for v in views], axis=0)
    clf.set_params(tta=True)
    np.testing.assert_allclose(clf.predict_proba(X), expected, rtol=1e-5, atol=1e-6)
    assert clf.score(X_TEST, Y_TEST) == np.mean(clf.predict(X_TEST) == Y_TEST)


def test_tta_is_off_during_training_and_refuses_non_square_images():
    clf = _fit(CNNClassifier, channels=(8,), hidden_sizes=(), tta=True, validation_fraction=0.25)
    off = copy.deepcopy(clf).set_params(tta=False)
    assert not np.allclose(clf.predict_proba(X_TEST), off.predict_proba(X_TEST))
    mlp = MLPClassifier(max_epochs=1, tta=True, hidden_sizes=(8,)).fit(X_TRAIN[:, :30], Y_TRAIN)
    with pytest.raises(ValueError, match="tta=True.*30 features"):
        mlp.predict(X_TRAIN[:, :30])


@pytest.mark.parametrize("param, value, message", [
    ("weight_averaging", "mean", "'weight_averaging' parameter .* None, 'ema' or 'swa'"),
    ("averaging_decay", 1.0, "'averaging_decay' parameter .* in \\(0, 1\\)"),
    ("averaging_start", -0.1, "'averaging_start' parameter .* in \\[0, 1\\)"),
    ("recompute_bn", "yes", "'recompute_bn' parameter .* True or False"),
    ("tta", 5, "'tta' parameter .* True or False"),
])
def test_bad_averaging_params_are_named(param, value, message):
    with pytest.raises(ValueError, match=message):
        MLPClassifier(**{param: value}).fit(X_TRAIN, Y_TRAIN)
