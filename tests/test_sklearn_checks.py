"""scikit-learn's own estimator checks, with each expected failure and its reason."""

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import check_set_params, parametrize_with_checks

from mnist_estimators import CNNClassifier, MLPClassifier, SoftmaxRegressionClassifier

from conftest import X_TRAIN, Y_TRAIN

# The checks use tiny blobs of 2-10 features; enough epochs and a higher lr to learn them.
CHECKED = [
    SoftmaxRegressionClassifier(max_epochs=30, lr=0.01, random_state=0),
    MLPClassifier(hidden_sizes=(32,), max_epochs=30, lr=0.01, random_state=0),
]
# CNNClassifier is left out: it needs square images (n_features a perfect square, e.g. 784), and
# the checks' 2-10 feature blobs are not images. Its contract is tested in test_estimators.py.

EXPECTED_FAILURES = {
    "check_no_attributes_set_in_init": (
        "skorch's NeuralNet.__init__ sets history_, initialized_ and virtual_params_ itself"),
}


@parametrize_with_checks(CHECKED, expected_failed_checks=lambda est: EXPECTED_FAILURES)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", [*CHECKED, CNNClassifier(max_epochs=1)],
                         ids=lambda est: type(est).__name__)
def test_set_params_takes_any_value_and_fit_checks_it(estimator):
    # check_set_params sets -inf, inf and None on every parameter in turn; each set_params that
    # raises is only a warning there ("It is recommended to delay parameter validation until
    # fit"), so the warnings are what fails here.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_set_params(type(estimator).__name__, estimator)
    assert [str(w.message) for w in caught if "set_params" in str(w.message)] == []

    odd = clone(estimator).set_params(callbacks=-np.inf)
    with pytest.raises(ValueError, match=r"The 'callbacks' parameter of \w+ must be None, "
                                         r"'disable' or a list of callbacks. Got -inf instead."):
        odd.fit(X_TRAIN, Y_TRAIN)
    with pytest.raises(ValueError, match=r"The 'lr' parameter of \w+ must be a float > 0. Got "
                                         r"None instead."):
        odd.set_params(callbacks=None, lr=None).fit(X_TRAIN, Y_TRAIN)
