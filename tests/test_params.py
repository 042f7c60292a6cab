"""The parameter table (params.py): what each constraint accepts, and how messages say it."""

from numbers import Integral, Real

import numpy as np
import pytest

from mnist_estimators import CNNClassifier, MLPClassifier, SoftmaxRegressionClassifier, params
from mnist_estimators.params import (
    Hidden,
    InstanceOf,
    Interval,
    InvalidParameterError,
    Options,
    StartsWith,
    describe,
)

ESTIMATORS = [SoftmaxRegressionClassifier, MLPClassifier, CNNClassifier]


@pytest.mark.parametrize("constraints, text", [
    ([Interval(Real, 0, None, closed="neither")], "a float > 0"),
    ([Interval(Integral, 1, None, closed="left")], "an int >= 1"),
    ([Interval(Real, None, 1, closed="right")], "a float <= 1"),
    ([None, Interval(Real, 0, 1, closed="left")], "None or a float in [0, 1)"),
    ([Interval(Real, 0, 1, closed="both")], "a float in [0, 1]"),
    ([None, Options(("step", "cosine"))], "None or one of ['step', 'cosine']"),
    (["auto", True, False], "'auto', True or False"),
    ([InstanceOf((bool, np.bool_))], "True or False"),
    ([None, InstanceOf(dict)], "None or a dict"),
    ([Hidden(None), "cpu", StartsWith("cuda", "'cuda', 'cuda:N'"), "auto"],
     "'cpu', 'cuda', 'cuda:N' or 'auto'"),
])
def test_constraints_read_as_messages_say_them(constraints, text):
    assert describe(constraints) == text


@pytest.mark.parametrize("constraint, accepted, refused", [
    (Interval(Real, 0, None, closed="neither"), [1e-3, 2, np.float32(0.5)], [0, -1, np.nan, "1"]),
    (Interval(Integral, 1, None, closed="left"), [1, np.int64(3)], [0, 2.0, None]),
    (Interval(Real, 0, 1, closed="left"), [0, 0.5], [1, -0.1, np.inf]),
    (Options(("float32", "bfloat16")), ["float32"], ["fp8", None, np.array([1, 2])]),
    (InstanceOf(bool), [True, False], [np.True_, 1]),
    (StartsWith("cuda", ""), ["cuda", "cuda:1"], ["cpu", None]),
    (Hidden(None), [None], [0, "None"]),
])
def test_constraints_accept_and_refuse(constraint, accepted, refused):
    assert all(constraint.is_satisfied_by(value) for value in accepted)
    assert not any(constraint.is_satisfied_by(value) for value in refused)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_the_table_names_parameters_and_the_defaults_pass_it(cls):
    est = cls()
    assert set(cls._parameter_constraints) <= set(est.get_params(deep=False))
    params.validate(est)
    texts = params.describe_all(cls)
    assert texts["lr"] == "a float > 0" and texts["precision"] == "one of ['float32', 'bfloat16', 'auto']"


def test_validation_follows_the_table_order_and_waits_for_fit():
    est = MLPClassifier(lr=-1, batch_size=0)  # __init__ and set_params take anything
    est.set_params(max_epochs="many")
    with pytest.raises(InvalidParameterError,
                       match=r"^The 'lr' parameter of MLPClassifier must be a float > 0. "
                             r"Got -1 instead.$") as raised:
        params.validate(est)
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, TypeError)
    est.set_params(lr=0.1)
    with pytest.raises(InvalidParameterError, match="'batch_size' parameter .* Got 0 instead"):
        params.validate(est)
    # a table of one's own, and "no_validation" for a parameter anything goes for
    params.validate(est, {"lr": [Interval(Real, 0, None, closed="neither")],
                          "batch_size": "no_validation"})
