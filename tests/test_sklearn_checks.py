"""scikit-learn's own estimator checks, with each expected failure and its reason."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from mnist_estimators import MLPClassifier, SoftmaxRegressionClassifier

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
