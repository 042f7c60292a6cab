import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from skorch.callbacks import Callback
from torch.utils.data import DataLoader

from mnist_estimators import (
    CNNClassifier,
    MLPClassifier,
    SoftmaxRegressionClassifier,
    TrainingDivergedError,
)
from mnist_estimators.estimators import load_model, save_model

from conftest import X_TEST, X_TRAIN, Y_TEST, Y_TRAIN

ESTIMATORS = [SoftmaxRegressionClassifier, MLPClassifier, CNNClassifier]
FAST = dict(max_epochs=2, random_state=0, batch_size=32)


def small(cls, **params):
    return cls(**{**FAST, **params})


@pytest.fixture(scope="module", params=ESTIMATORS, ids=lambda c: c.__name__)
def fitted(request):
    return small(request.param, max_epochs=6).fit(X_TRAIN, Y_TRAIN)


# --------------------------------------------------------------------------- the contract


def test_fit_returns_self_and_learns(fitted):
    assert fitted.n_features_in_ == 784
    np.testing.assert_array_equal(fitted.classes_, np.arange(10))
    assert fitted.score(X_TEST, Y_TEST) > 0.6  # 400 images, a few epochs: well above chance
    proba = fitted.predict_proba(X_TEST)
    assert proba.shape == (len(X_TEST), 10)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    np.testing.assert_array_equal(fitted.predict(X_TEST), fitted.classes_[proba.argmax(1)])
    assert set(fitted.history_[0]) >= {"train_loss", "valid_loss", "valid_acc", "dur"}


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_not_fitted_error(cls):
    with pytest.raises(NotFittedError):
        cls().predict(X_TEST)


def test_pickle_round_trip_gives_identical_predictions(fitted, tmp_path):
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict_proba(X_TEST), fitted.predict_proba(X_TEST))
    path = save_model(fitted, tmp_path / "m.pkl")
    np.testing.assert_array_equal(load_model(path).predict(X_TEST), fitted.predict(X_TEST))


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_get_set_params_and_clone(cls):
    est = cls(lr=0.05, optimizer="sgd", module__dropout=0.0, optimizer__momentum=0.5)
    params = est.get_params()
    assert params["lr"] == 0.05 and params["optimizer"] == "sgd"
    assert params["module__dropout"] == 0.0 and params["optimizer__momentum"] == 0.5
    twin = clone(est)
    assert twin.get_params(deep=False).keys() == est.get_params(deep=False).keys()
    assert twin.optimizer__momentum == 0.5
    est.set_params(max_epochs=3, optimizer="nesterov", module__dropout=0.2)
    assert est.max_epochs == 3 and est.optimizer == "nesterov" and est.module__dropout == 0.2


def test_nested_module_params_reach_the_module():
    est = small(MLPClassifier, hidden_sizes=(16,), max_epochs=1).fit(X_TRAIN, Y_TRAIN)
    assert [m.out_features for m in est.module_.modules() if isinstance(m, torch.nn.Linear)] == [16, 10]
    est.set_params(module__hidden_sizes=(8, 8)).fit(X_TRAIN, Y_TRAIN)
    assert [m.out_features for m in est.module_.modules() if isinstance(m, torch.nn.Linear)] == [8, 8, 10]


def test_string_labels_and_classes():
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    est = small(SoftmaxRegressionClassifier, max_epochs=4).fit(X_TRAIN, names[Y_TRAIN])
    assert list(est.classes_) == sorted(names)
    pred = est.predict(X_TEST)
    assert pred.dtype.kind == "U" and set(pred) <= set(names)
    assert est.score(X_TEST, names[Y_TEST]) > 0.5
    with pytest.raises(ValueError, match="labels not seen in fit"):
        est.partial_fit(X_TEST[:5], np.array(["ten"] * 5))


def test_partial_fit_and_warm_start():
    est = small(MLPClassifier, max_epochs=1)
    est.partial_fit(X_TRAIN, Y_TRAIN, classes=np.arange(10))
    est.partial_fit(X_TRAIN, Y_TRAIN)
    assert len(est.history_) == 2
    warm = small(MLPClassifier, max_epochs=1, warm_start=True).fit(X_TRAIN, Y_TRAIN).fit(X_TRAIN, Y_TRAIN)
    assert len(warm.history_) == 2


# --------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize("form", ["flat_uint8", "images", "channels", "float32_01", "float64_255",
                                  "dataframe"])
def test_input_forms_give_the_same_model(cls, form):
    X = {
        "flat_uint8": X_TRAIN,
        "images": X_TRAIN.reshape(-1, 28, 28),
        "channels": X_TRAIN.reshape(-1, 1, 28, 28),
        "float32_01": X_TRAIN.astype(np.float32) / 255,
        "float64_255": X_TRAIN.astype(np.float64),
        "dataframe": pd.DataFrame(X_TRAIN),
    }[form]
    est = small(cls, max_epochs=1).fit(X, Y_TRAIN)
    ref = small(cls, max_epochs=1).fit(X_TRAIN, Y_TRAIN)
    assert est.n_features_in_ == 784
    # Deskewing shears by a slant measured from the pixels, so the last bit of 1/255-scaled
    # floats against uint8 moves a deskewed pixel by up to ~4e-6, and a fit's probabilities by
    # ~3e-5; a wrong scale would move them by tenths.
    atol = 1e-4 if est.deskew else 1e-5
    np.testing.assert_allclose(est.predict_proba(X_TEST), ref.predict_proba(X_TEST), atol=atol)


def test_features_far_from_unit_scale_warn_once_and_scaled_ones_do_not():
    # PCA of raw pixels: components in the hundreds (only uint8 and 0-255 float pixels are
    # scaled for the user), on which the networks train poorly.
    from mnist_estimators.estimators import InputScaleWarning

    components = PCA(n_components=50, random_state=0).fit_transform(X_TRAIN)
    for fit in (lambda: small(SoftmaxRegressionClassifier, max_epochs=1).fit(components, Y_TRAIN),
                lambda: make_pipeline(PCA(n_components=50, random_state=0),
                                      small(MLPClassifier, max_epochs=2)).fit(X_TRAIN, Y_TRAIN),
                lambda: small(MLPClassifier, max_epochs=1).partial_fit(components, Y_TRAIN)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit()
        (warning,) = [w for w in caught if w.category is InputScaleWarning]  # one per fit
    message = str(warning.message)
    rms = np.sqrt(np.mean(components.astype(np.float32) ** 2))
    peak = components.flat[np.abs(components).argmax()]
    assert message.startswith(f"MLPClassifier.fit: X's values reach {peak:,.1f} (root mean "
                              f"square {rms:,.1f}): features far from unit scale train poorly.")
    assert "make_pipeline(StandardScaler(), PCA(50), MLPClassifier())" in message
    with pytest.warns(InputScaleWarning) as caught:
        small(MLPClassifier, max_epochs=1).fit(components, Y_TRAIN)
    assert caught[0].filename == __file__  # points at the line that called fit

    with warnings.catch_warnings():
        warnings.simplefilter("error", InputScaleWarning)
        for X in (X_TRAIN,                                          # uint8 pixels
                  X_TRAIN.astype(np.float32) / 255,                 # [0, 1] pixels
                  X_TRAIN.astype(np.float64),                       # 0-255 floats, auto-scaled
                  StandardScaler().fit_transform(X_TRAIN),          # standardized (max |x| ~20)
                  make_pipeline(StandardScaler(), PCA(n_components=50, random_state=0))
                  .fit_transform(X_TRAIN)):                         # RMS ~3, max |x| ~60
            small(MLPClassifier, max_epochs=1).fit(X, Y_TRAIN)
        make_pipeline(StandardScaler(), PCA(n_components=50, random_state=0),
                      small(SoftmaxRegressionClassifier, max_epochs=1)).fit(X_TRAIN, Y_TRAIN)


def test_the_callers_array_is_never_rewritten_and_read_only_memmaps_work(tmp_path):
    # float32 pixels 0-255 need no conversion copy: scaling them must not happen in the
    # caller's array (it did: fit left X divided by 255), nor crash on a read-only memmap
    # (joblib hands one to its workers; writing into it was a segfault).
    X = X_TRAIN.astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    est = small(MLPClassifier, max_epochs=1).fit(X, Y_TRAIN)
    proba = est.predict_proba(X)
    np.testing.assert_array_equal(X, X_TRAIN.astype(np.float32))
    assert X.max() == X_TRAIN.max() > 1
    np.testing.assert_array_equal(small(MLPClassifier, max_epochs=1).fit(mapped, Y_TRAIN)
                                  .predict_proba(mapped), proba)
    np.testing.assert_array_equal(mapped, X)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_bad_inputs_get_clear_errors(cls):
    est = cls(max_epochs=1)
    nan = X_TRAIN.astype(float)
    nan[3, 5] = np.nan
    inf = X_TRAIN.astype(float)
    inf[0, 0] = np.inf
    with pytest.raises(ValueError, match="Input X contains NaN"):
        est.fit(nan, Y_TRAIN)
    with pytest.raises(ValueError, match="Input X contains infinity"):
        est.fit(inf, Y_TRAIN)
    with pytest.raises(ValueError, match=r"0 sample\(s\)"):
        est.fit(X_TRAIN[:0], Y_TRAIN[:0])
    with pytest.raises(ValueError, match=r"inconsistent numbers of samples: \[400, 399\]"):
        est.fit(X_TRAIN, Y_TRAIN[:-1])
    with pytest.raises(ValueError, match=r"single-channel images .* shape \(400, 3, 28, 28\)"):
        est.fit(np.repeat(X_TRAIN.reshape(-1, 1, 28, 28), 3, axis=1), Y_TRAIN)
    # One line naming what is wrong, not scikit-learn's message with the whole array in it
    with pytest.raises(ValueError, match=rf"^{cls.__name__}\.fit: X must be 2-D.* got a 1-D "
                       r"array of shape \(784,\)\. Reshape your data: X\.reshape\(1, -1\) for one "
                       r"flattened image\.$"):
        est.fit(X_TRAIN[0], Y_TRAIN[:1])
    fitted = small(cls, max_epochs=1).fit(X_TRAIN, Y_TRAIN)
    with pytest.raises(ValueError, match="X has 700 features, but .* is expecting 784"):
        fitted.predict(X_TEST[:, :700])
    for bad, what in ((X_TEST[:3].ravel(), r"a 1-D array of shape \(2352,\)\. Reshape your data\.$"),
                      (list(X_TEST[0]), r"a 1-D array of shape \(784,\)"),
                      (torch.zeros(784), r"a 1-D array of shape \(784,\)"),
                      (np.float32(3.0), r"a scalar\. Reshape your data\.$")):
        for method in (fitted.predict, fitted.predict_proba):
            with pytest.raises(ValueError, match=rf"^{cls.__name__}\.predict: .*got {what}") as exc:
                method(bad)
            assert len(str(exc.value)) < 200 and "\n" not in str(exc.value)


def test_a_split_too_small_to_mean_anything_warns_once_saying_why():
    from mnist_estimators.estimators import SmallSplitWarning

    idx = [int(np.flatnonzero(Y_TRAIN == d)[0]) for d in (3, 5, 8)]  # one image each of 3, 5, 8
    with pytest.warns(SmallSplitWarning) as caught:
        small(MLPClassifier, max_epochs=1).fit(X_TRAIN[idx], Y_TRAIN[idx])
    (warning,) = [w for w in caught if w.category is SmallSplitWarning]
    message = str(warning.message)
    assert message.startswith("MLPClassifier(validation_fraction=0.1): class(es) [")
    assert "are only in the validation split, so the network never trains on them" in message
    assert "the validation split holds 1 of 3 samples" in message
    six = np.concatenate([np.flatnonzero(Y_TRAIN == d)[:6] for d in range(10)])
    with pytest.warns(SmallSplitWarning, match=r"holds 6 of 60 samples") as caught:
        small(MLPClassifier, max_epochs=1).fit(X_TRAIN[six], Y_TRAIN[six])
    assert "only in the validation split" not in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallSplitWarning)
        small(MLPClassifier, max_epochs=1).fit(X_TRAIN, Y_TRAIN)  # 40 stratified: no warning
        small(MLPClassifier, max_epochs=1, validation_fraction=None).fit(X_TRAIN[idx], Y_TRAIN[idx])


def test_cnn_needs_square_images():
    with pytest.raises(ValueError, match="perfect square .* Got 700 features"):
        small(CNNClassifier, deskew=False).fit(X_TRAIN[:, :700], Y_TRAIN)
    # deskewing (the CNN's default) checks first, at fit and predict alike
    with pytest.raises(ValueError, match=r"^CNNClassifier: deskew=True needs square images: "
                                         r"got 700 features per sample"):
        small(CNNClassifier).fit(X_TRAIN[:, :700], Y_TRAIN)
    with pytest.raises(ValueError, match=r"^MLPClassifier: deskew=True needs square images"):
        small(MLPClassifier, deskew=True).fit(X_TRAIN[:, :700], Y_TRAIN)


@pytest.mark.parametrize("param, value, message", [
    ("lr", -1, r"'lr' parameter of MLPClassifier must be a float > 0. Got -1 instead"),
    ("batch_size", 0, r"'batch_size' parameter of MLPClassifier must be an int >= 1. Got 0"),
    ("validation_fraction", 1.5, r"'validation_fraction' .* Got 1.5"),
    ("lr_schedule", "linear", r"'lr_schedule' .* Got 'linear'"),
    ("optimizer", "adagradx", r"'optimizer' parameter must be .* Got 'adagradx'"),
    ("activation", "swish", r"'activation' parameter must be one of .* Got 'swish'"),
    ("init", "orthogonal", r"'init' parameter must be one of .* Got 'orthogonal'"),
    ("pixel_scaling", "yes", r"'pixel_scaling' .* Got 'yes'"),
    ("device", "tpu", r"'device' .* Got 'tpu'"),
])
def test_bad_params_are_named(param, value, message):
    with pytest.raises(ValueError, match=message):
        MLPClassifier(max_epochs=1, **{param: value}).fit(X_TRAIN, Y_TRAIN)


def test_early_stopping_needs_validation():
    with pytest.raises(ValueError, match=r"early_stopping=True\) .* validation_fraction"):
        MLPClassifier(early_stopping=True, validation_fraction=None).fit(X_TRAIN, Y_TRAIN)


# --------------------------------------------------------------------------- sklearn tools


@pytest.mark.parametrize("cls, pre", [
    (SoftmaxRegressionClassifier, StandardScaler()),
    (MLPClassifier, PCA(n_components=40, random_state=0)),
    (CNNClassifier, FunctionTransformer(lambda X: X / 255.0)),
    (MLPClassifier, FunctionTransformer(np.sqrt)),
])
def test_last_step_of_a_pipeline(cls, pre):
    pipe = make_pipeline(pre, small(cls, max_epochs=4)).fit(X_TRAIN, Y_TRAIN)
    assert pipe.score(X_TEST, Y_TEST) > 0.5


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_grid_search_with_string_names(n_jobs):
    grid = GridSearchCV(
        small(MLPClassifier, hidden_sizes=(32,), max_epochs=5),
        {"optimizer": ["adam", "sgd"], "activation": ["relu", "tanh"]},
        cv=2, n_jobs=n_jobs)
    grid.fit(X_TRAIN, Y_TRAIN)
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_params_["optimizer"] == "adam"  # SGD at lr 1e-3 barely moves in 5 epochs
    assert grid.score(X_TEST, Y_TEST) > 0.4


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_randomized_search_and_cross_validate(n_jobs):
    search = RandomizedSearchCV(small(SoftmaxRegressionClassifier),
                                {"lr": [1e-3, 3e-3, 1e-2], "batch_size": [32, 64]},
                                n_iter=3, cv=2, n_jobs=n_jobs, random_state=0)
    search.fit(X_TRAIN, Y_TRAIN)
    assert len(search.cv_results_["params"]) == 3
    res = cross_validate(make_pipeline(StandardScaler(), small(CNNClassifier, max_epochs=1)),
                         X_TRAIN, Y_TRAIN, cv=3, n_jobs=n_jobs)
    assert res["test_score"].shape == (3,) and (res["test_score"] > 0.3).all()


# --------------------------------------------------------------------------- training controls


def test_defaults_fix_skorch_traps():
    est = MLPClassifier()
    assert est.criterion is torch.nn.CrossEntropyLoss
    assert est.train_split is None and est.validation_fraction == 0.1
    est.set_params(max_epochs=1, random_state=0).fit(X_TRAIN, Y_TRAIN)
    # 10% held out, stratified, and said so; nothing else
    assert est.history_[-1, "train_batch_count"] == int(np.ceil(360 / 128))
    assert est.history_[-1, "valid_batch_count"] == 1
    assert est.history_[-1, "batches", -1, "valid_batch_size"] == 40
    none = small(MLPClassifier, validation_fraction=None, max_epochs=1).fit(X_TRAIN, Y_TRAIN)
    assert "valid_loss" not in none.history_[-1]
    assert sum(none.history_[-1, "batches", :, "train_batch_size"]) == 400


def test_training_iterator_shuffles_every_epoch():
    seen = []

    class Spy(SoftmaxRegressionClassifier):
        def train_step(self, batch, **kw):
            seen.append(batch[1].clone())
            return super().train_step(batch, **kw)

    Spy(max_epochs=2, batch_size=400, validation_fraction=None, random_state=0).fit(X_TRAIN, Y_TRAIN)
    first, second = seen
    assert not torch.equal(first, torch.as_tensor(Y_TRAIN))
    assert not torch.equal(first, second)
    assert sorted(first.tolist()) == sorted(Y_TRAIN.tolist())


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_same_seed_same_predictions(cls):
    a = small(cls, max_epochs=2).fit(X_TRAIN, Y_TRAIN)
    b = small(cls, max_epochs=2).fit(X_TRAIN, Y_TRAIN)
    c = small(cls, max_epochs=2, random_state=1).fit(X_TRAIN, Y_TRAIN)
    np.testing.assert_array_equal(a.predict_proba(X_TEST), b.predict_proba(X_TEST))
    assert not np.array_equal(a.predict_proba(X_TEST), c.predict_proba(X_TEST))


def test_dataloader_remains_available():
    est = small(MLPClassifier, iterator_train=DataLoader, iterator_valid=DataLoader).fit(X_TRAIN, Y_TRAIN)
    assert est.score(X_TEST, Y_TEST) > 0.3


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "leaky_relu", "elu"])
def test_activations(activation):
    est = small(MLPClassifier, activation=activation, max_epochs=4).fit(X_TRAIN, Y_TRAIN)
    layer = {"sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh, "relu": torch.nn.ReLU,
             "leaky_relu": torch.nn.LeakyReLU, "elu": torch.nn.ELU}[activation]
    assert any(isinstance(m, layer) for m in est.module_.modules())
    assert est.score(X_TEST, Y_TEST) > 0.5


@pytest.mark.parametrize("optimizer, cls, extra", [
    ("sgd", torch.optim.SGD, {"momentum": 0}),
    ("momentum", torch.optim.SGD, {"momentum": 0.9, "nesterov": False}),
    ("nesterov", torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    ("rmsprop", torch.optim.RMSprop, {}),
    ("adam", torch.optim.Adam, {"fused": True}),  # the single-kernel step, where torch has one
    ("adamw", torch.optim.AdamW, {"fused": True}),
    (torch.optim.Adam, torch.optim.Adam, {"fused": True}),
    (torch.optim.Adagrad, torch.optim.Adagrad, {}),
])
def test_optimizers(optimizer, cls, extra):
    lr = 0.05 if optimizer in ("sgd", "momentum", "nesterov") else 1e-3
    est = small(MLPClassifier, optimizer=optimizer, lr=lr, weight_decay=1e-4).fit(X_TRAIN, Y_TRAIN)
    assert type(est.optimizer_) is cls
    group = est.optimizer_.param_groups[0]
    assert group["weight_decay"] == 1e-4
    for key, val in extra.items():
        assert group[key] == val
    assert est.score(X_TEST, Y_TEST) > 0.4


@pytest.mark.parametrize("kwargs, fused", [
    ({}, True),
    ({"optimizer__foreach": True}, None),  # the user's choice of step wins
    ({"optimizer__fused": False}, False),
    ({"optimizer__param_groups": [("output.*", {"lr": 1e-4})]}, True),
])
def test_adam_steps_fused_unless_told_otherwise(kwargs, fused):
    est = small(MLPClassifier, max_epochs=2, random_state=0, **kwargs).fit(X_TRAIN, Y_TRAIN)
    assert all(group["fused"] is fused for group in est.optimizer_.param_groups)
    if "optimizer__param_groups" in kwargs:
        assert [g.get("initial_lr", g["lr"]) for g in est.optimizer_.param_groups] == [1e-4, 1e-3]
    # the same arithmetic, so the same model up to float rounding
    plain = small(MLPClassifier, max_epochs=2, random_state=0, optimizer__foreach=False,
                  **{k: v for k, v in kwargs.items() if k == "optimizer__param_groups"})
    plain.fit(X_TRAIN, Y_TRAIN)
    np.testing.assert_allclose(est.predict_proba(X_TEST), plain.predict_proba(X_TEST), atol=1e-4)


def test_epoch_loop_records_what_skorchs_loop_records():
    from skorch import NeuralNetClassifier

    class SkorchLoop(MLPClassifier):  # skorch's own methods for each of our speed patches
        run_single_epoch = NeuralNetClassifier.run_single_epoch
        _set_training = NeuralNetClassifier._set_training
        notify = NeuralNetClassifier.notify

    # a partial last batch, a validation split, and augmentation's own batch iterator
    kwargs = dict(validation_fraction=0.25, batch_size=48, augment_shift=1.0)
    ours = small(MLPClassifier, **kwargs).fit(X_TRAIN, Y_TRAIN)
    theirs = small(SkorchLoop, **kwargs).fit(X_TRAIN, Y_TRAIN)
    assert len(ours.history) == len(theirs.history) == 2
    for mine, skorchs in zip(ours.history, theirs.history):
        assert mine["train_batch_count"] == skorchs["train_batch_count"] == 7
        assert [sorted(b) for b in mine["batches"]] == [sorted(b) for b in skorchs["batches"]]
        for key in ("train_batch_size", "valid_batch_size", "train_loss", "valid_loss"):
            np.testing.assert_allclose([b[key] for b in mine["batches"] if key in b],
                                       [b[key] for b in skorchs["batches"] if key in b], rtol=1e-5)
        np.testing.assert_allclose(mine["valid_acc"], skorchs["valid_acc"])
    sizes = [b["train_batch_size"] for b in ours.history[0, "batches"] if "train_batch_size" in b]
    valid = sum(b["valid_batch_size"] for b in ours.history[0, "batches"] if "valid_batch_size" in b)
    assert sum(sizes) + valid == len(X_TRAIN) and 0 < sizes[-1] < 48 and valid > 0


class _RecordModes(Callback):
    def __init__(self):
        self.seen = []

    def on_batch_end(self, net, training=False, **kwargs):  # after the batch's step
        self.seen.append((training, {m.training for m in net.module_.modules()}))


def test_modules_train_in_training_batches_and_evaluate_otherwise():
    record = _RecordModes()
    est = small(MLPClassifier, validation_fraction=0.25, callbacks=[("modes", record)])
    est.fit(X_TRAIN, Y_TRAIN)
    est.predict(X_TEST)  # leaves the module in eval mode
    assert not est.module_.training
    record.seen = []
    est.partial_fit(X_TRAIN, Y_TRAIN)
    assert {training for training, _ in record.seen} == {True, False}
    # every submodule (the Dropout layers included) follows the batch's mode
    assert all(modes == {training} for training, modes in record.seen)


@pytest.mark.parametrize("schedule", ["step", "exponential", "cosine", "onecycle", "plateau"])
def test_lr_schedules_change_the_rate(schedule):
    est = small(MLPClassifier, lr_schedule=schedule, max_epochs=6, lr=0.01).fit(X_TRAIN, Y_TRAIN)
    final = est.optimizer_.param_groups[0]["lr"]
    if schedule == "plateau":
        assert final <= 0.01  # lowers only when valid_loss stalls
        assert any(name == "lr_scheduler" for name, _ in est.callbacks_)
    else:
        assert final < 0.01 * 0.9


@pytest.mark.parametrize("init", ["zero", "uniform", "normal", "he_uniform", "he_normal",
                                  "xavier_uniform", "xavier_normal", "he", "xavier"])
def test_init_schemes(init):
    est = small(MLPClassifier, init=init, max_epochs=1).initialize()
    w = est.module_.hidden[0].weight.detach()
    if init == "zero":
        assert w.abs().max() == 0
    elif init == "uniform":
        assert w.min() >= 0 and w.max() <= 1 and w.mean() > 0.4
    elif init == "normal":
        assert abs(w.std().item() - 0.01) < 0.002
    elif init.startswith("he"):
        assert abs(w.std().item() - np.sqrt(2 / 784)) < 0.01
    else:
        assert abs(w.std().item() - np.sqrt(2 / (784 + 256)) * np.sqrt(2)) < 0.01


def test_l1_penalty_shrinks_weights():
    plain = small(SoftmaxRegressionClassifier, max_epochs=5).fit(X_TRAIN, Y_TRAIN)
    sparse = small(SoftmaxRegressionClassifier, max_epochs=5, l1=1e-3).fit(X_TRAIN, Y_TRAIN)
    norm = lambda est: est.module_.linear.weight.abs().sum().item()  # noqa: E731
    assert norm(sparse) < 0.7 * norm(plain)
    assert sparse.history_[-1, "train_loss"] > plain.history_[-1, "train_loss"]  # loss includes it


def test_dropout_and_batch_norm_layers():
    est = small(MLPClassifier, dropout=0.3, batch_norm=True, max_epochs=1).fit(X_TRAIN, Y_TRAIN)
    kinds = {type(m) for m in est.module_.modules()}
    assert torch.nn.Dropout in kinds and torch.nn.BatchNorm1d in kinds
    cnn = small(CNNClassifier, batch_norm=False, dropout=0.0, max_epochs=1).fit(X_TRAIN, Y_TRAIN)
    assert not {torch.nn.BatchNorm2d, torch.nn.Dropout} & {type(m) for m in cnn.module_.modules()}


def test_early_stopping_restores_best_weights():
    # A large lr on tiny data overfits fast: valid_loss rises and training stops early.
    est = small(MLPClassifier, early_stopping=True, patience=2, max_epochs=60, lr=0.01,
                lr_schedule=None, dropout=0.0).fit(X_TRAIN, Y_TRAIN)
    losses = est.history_[:, "valid_loss"]
    assert len(est.history_) < 60
    best = int(np.argmin(losses))
    assert len(losses) - 1 - best == 2  # stopped `patience` epochs after the best
    # the weights in place are the best epoch's: recomputing valid loss gives the best value
    ds = est.get_split_datasets(est._check_X(X_TRAIN, reset=False),
                                torch.from_numpy(est._encode(Y_TRAIN)))[1]
    proba = est.predict_proba(ds)
    nll = -np.log(proba[np.arange(len(proba)), ds.y.numpy()]).mean()
    assert nll == pytest.approx(losses[best], rel=1e-3)


def test_plateau_stopping():
    est = small(SoftmaxRegressionClassifier, plateau_tol=0.05, max_epochs=100, lr=1e-3,
                lr_schedule=None).fit(X_TRAIN, Y_TRAIN)
    losses = np.asarray(est.history_[:, "train_loss"])
    assert 5 <= len(losses) < 100
    recent = losses[-5:]
    assert recent.std() < 0.05 * recent.mean()
    assert losses[-6:-1].std() >= 0.05 * losses[-6:-1].mean() or len(losses) == 5


def test_checkpoint_every_epoch(tmp_path):
    est = small(CNNClassifier, max_epochs=3, checkpoint_dir=tmp_path / "ckpt").fit(X_TRAIN, Y_TRAIN)
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == ["history.json", "params_epoch1.pt", "params_epoch2.pt", "params_epoch3.pt"]
    twin = small(CNNClassifier, max_epochs=1).fit(X_TRAIN, Y_TRAIN)
    twin.load_params(f_params=tmp_path / "ckpt" / "params_epoch3.pt")
    np.testing.assert_allclose(twin.predict_proba(X_TEST), est.predict_proba(X_TEST), atol=1e-6)


def test_device_auto_resolves_and_clone_keeps_auto():
    est = small(SoftmaxRegressionClassifier, device="auto", max_epochs=1)
    assert est.get_params()["device"] == "auto"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert est.device == expected
    est.fit(X_TRAIN, Y_TRAIN)
    assert next(est.module_.parameters()).device.type == expected
    assert clone(est).get_params()["device"] == "auto"
    assert pickle.loads(pickle.dumps(est)).get_params()["device"] == "auto"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="device='cuda'.* needs CUDA"):
        small(MLPClassifier, device="cuda").fit(X_TRAIN, Y_TRAIN)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_cuda_training(cls):
    est = small(cls, device="cuda", max_epochs=3).fit(X_TRAIN, Y_TRAIN)
    assert next(est.module_.parameters()).is_cuda
    assert est.score(X_TEST, Y_TEST) > 0.5


# --------------------------------------------------------------------------- numerical safety


@pytest.mark.parametrize("init", ["zero", "uniform"])
@pytest.mark.parametrize("hidden", [(100, 100), (100, 100, 100, 100), (400, 100, 50)])
def test_seed_004_overflow_settings_train_or_stop_cleanly(init, hidden):
    """Seed 004 overflowed with zero/uniform init and deep nets; logits + log-softmax do not."""
    est = small(MLPClassifier, init=init, hidden_sizes=hidden, batch_size=16, max_epochs=2,
                lr=1e-3, dropout=0.0)
    try:
        est.fit(X_TRAIN, Y_TRAIN)
    except TrainingDivergedError as exc:
        assert "lower learning rate" in str(exc) and "epoch" in str(exc)
        return
    losses = np.asarray(est.history_[:, "train_loss"])
    assert np.isfinite(losses).all()
    assert np.isfinite(est.predict_proba(X_TEST)).all()
    if init == "zero":
        # symmetric zero weights: only the output bias learns -> a finite loss near log(10)
        assert losses[-1] == pytest.approx(np.log(10), abs=0.1)


def test_batch_size_4_trains():
    est = small(MLPClassifier, batch_size=4, hidden_sizes=(100, 100), init="xavier_uniform",
                max_epochs=1).fit(X_TRAIN, Y_TRAIN)
    assert np.isfinite(est.history_[-1, "train_loss"])
    assert est.score(X_TEST, Y_TEST) > 0.5


def test_divergence_stops_with_a_clear_error():
    with pytest.raises(TrainingDivergedError, match=r"loss became (nan|inf) in epoch 1.*lower learning rate"):
        small(MLPClassifier, optimizer="sgd", lr=1e10, max_epochs=3,
              lr_schedule=None).fit(X_TRAIN, Y_TRAIN)


@pytest.mark.parametrize("cls", [MLPClassifier, CNNClassifier])
def test_bfloat16_precision_trains_and_predicts_like_float32(cls):
    params = dict(FAST, max_epochs=4)
    mixed = cls(**params, precision="bfloat16").fit(X_TRAIN, Y_TRAIN)
    full = cls(**params).fit(X_TRAIN, Y_TRAIN)
    assert all(p.dtype == torch.float32 for p in mixed.module_.parameters())  # weights stay fp32
    proba = mixed.predict_proba(X_TEST)
    assert proba.dtype == np.float32 and np.allclose(proba.sum(1), 1, atol=1e-5)
    agree = (mixed.predict(X_TEST) == full.predict(X_TEST)).mean()
    assert agree > 0.8 and mixed.score(X_TEST, Y_TEST) > 0.6
    with pytest.raises(ValueError, match=r"'precision' parameter of .* must be one of "
                                         r"\['float32', 'bfloat16', 'auto'\]. Got 'fp8'"):
        cls(precision="fp8").fit(X_TRAIN, Y_TRAIN)


@pytest.mark.parametrize("native", [True, False])
def test_precision_auto_takes_bfloat16_only_where_the_cpu_has_it(native, monkeypatch):
    # Which CPU runs the tests decides the real answer (an AVX2 AMD EPYC has no bfloat16, an
    # AMX Xeon has): both are checked here by setting the answer.
    from mnist_estimators import _compat
    from mnist_estimators.estimators import SlowPrecisionWarning

    monkeypatch.setattr(_compat, "cpu_has_native_bfloat16", lambda: native)
    auto = CNNClassifier(**FAST, precision="auto").fit(X_TRAIN, Y_TRAIN)
    assert auto.uses_bfloat16() is native
    assert CNNClassifier(precision="float32").uses_bfloat16() is False
    assert CNNClassifier(precision="bfloat16").uses_bfloat16() is True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        CNNClassifier(**FAST, precision="bfloat16").fit(X_TRAIN, Y_TRAIN)
    slow = [w for w in caught if issubclass(w.category, SlowPrecisionWarning)]
    if native:
        assert slow == []
    else:
        (warning,) = slow
        assert "precision='bfloat16'" in str(warning.message) and "'auto'" in str(warning.message)
        assert warning.filename == __file__  # points at the user's fit


def test_cpu_bfloat16_check_answers_on_this_machine():
    from mnist_estimators import _compat

    assert _compat.cpu_has_native_bfloat16() in (True, False)
