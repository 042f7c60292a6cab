"""The CUDA path: every training option on the GPU, and a GPU-trained model pickled and used.

Skipped on a machine without CUDA (CI's); run on a lent GPU machine, where the figures of
``benchmarks/bench_gpu.py`` come from too.
"""

import pickle

import numpy as np
import pytest
import torch

from mnist_estimators import CNNClassifier, MLPClassifier, SoftmaxRegressionClassifier
from mnist_estimators.persistence import load_model, save_model

from conftest import X_TEST, X_TRAIN, Y_TEST, Y_TRAIN

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
ESTIMATORS = [SoftmaxRegressionClassifier, MLPClassifier, CNNClassifier]
EVERYTHING = dict(max_epochs=3, batch_size=32, random_state=0, precision="bfloat16",
                  augment_rotation=10, augment_scale=0.1, augment_shift=2, augment_slant=0.3,
                  augment_blur=1.0, augment_thickness=0.5, augment_erasing=0.3, augment_elastic=10,
                  weight_averaging="ema", recompute_bn=True, tta=True, lr_schedule="onecycle",
                  early_stopping=True)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_every_training_option_runs_on_the_gpu(cls):
    est = cls(device="cuda", **EVERYTHING).fit(X_TRAIN, Y_TRAIN)
    assert all(p.is_cuda for p in est.module_.parameters())
    proba = est.predict_proba(X_TEST)  # numpy on the host, five shifted views each (tta)
    assert proba.shape == (len(X_TEST), 10) and np.allclose(proba.sum(1), 1, atol=1e-4)
    assert est.score(X_TEST, Y_TEST) > 0.2  # chance is 0.1; 400 images, heavy augmentation
    assert np.isfinite(est.history_[:, "train_loss"]).all()


def test_a_gpu_model_survives_pickling_and_saving(tmp_path):
    est = CNNClassifier(device="cuda", max_epochs=2, batch_size=32, random_state=0)
    est.fit(X_TRAIN, Y_TRAIN)
    expected = est.predict(X_TEST)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(est)).predict(X_TEST), expected)
    loaded = load_model(save_model(est, tmp_path / "cnn.pkl"))
    np.testing.assert_array_equal(loaded.predict(X_TEST), expected)
    auto = CNNClassifier(device="auto", max_epochs=1, batch_size=32).fit(X_TRAIN, Y_TRAIN)
    assert next(auto.module_.parameters()).is_cuda
    assert pickle.loads(pickle.dumps(auto)).get_params()["device"] == "auto"


def test_predictions_on_the_gpu_match_the_cpu_for_the_same_weights():
    est = MLPClassifier(device="cuda", max_epochs=2, batch_size=32, random_state=0)
    est.fit(X_TRAIN, Y_TRAIN)
    on_gpu = est.predict_proba(X_TEST)
    cpu = MLPClassifier(device="cpu", max_epochs=1, batch_size=32, random_state=0)
    cpu.fit(X_TRAIN, Y_TRAIN)
    cpu.module_.load_state_dict({k: v.cpu() for k, v in est.module_.state_dict().items()})
    np.testing.assert_allclose(cpu.predict_proba(X_TEST), on_gpu, atol=1e-4)
