"""Seed 002's gradient check: backprop against central differences on chosen weights."""

import numpy as np
import pytest
import torch
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mnist_estimators import MLPClassifier
from mnist_estimators.cli import main
from mnist_estimators import check_gradients
from mnist_estimators.experiments.gradcheck import gradient_check, markdown, pick_weights, table

from conftest import X_TRAIN, Y_TRAIN, write_sample_mnist

WEIGHTS = ["output bias (last)", "hidden bias (last)", "input to hidden i", "input to hidden ii",
           "hidden to output i", "hidden to output ii"]


def test_the_seeds_network_passes_with_six_nonzero_gradients():
    table = gradient_check(X=X_TRAIN, y=Y_TRAIN, sample=3)
    assert list(table["weight"]) == WEIGHTS
    assert table["within_eps2"].all() and (table["abs_difference"] <= 1e-4).all()
    assert (table["backprop"].abs() > 1e-6).all()  # each chosen weight does move the loss
    assert len(set(table["backprop"].round(12))) == 6
    text = markdown(table, 1e-2)
    assert "| hidden bias (last) |" in text and "every difference is within eps² = 0.0001" in text


def test_a_wrong_backward_is_caught():
    class BadTanh(torch.autograd.Function):  # the derivative off by 10%
        @staticmethod
        def forward(ctx, x):
            out = torch.tanh(x)
            ctx.save_for_backward(out)
            return out

        @staticmethod
        def backward(ctx, grad):
            (out,) = ctx.saved_tensors
            return grad * (1 - out ** 2) * 1.1

    torch.manual_seed(0)
    first, last = torch.nn.Linear(784, 16).double(), torch.nn.Linear(16, 10).double()
    module = torch.nn.Sequential(first, last)
    x = torch.as_tensor(X_TRAIN[:1] / 255.0)
    label = int(Y_TRAIN[0])
    target = torch.tensor([label])

    def check(act):
        report = check_gradients(module, x, target, eps=1e-2, copy=False,
                                 coords=[(name, index) for _, name, index in picks],
                                 loss=lambda m, X, y: torch.nn.functional.cross_entropy(
                                     m[1](act(m[0](X))), y))
        return table(report, picks, 1e-2)

    picks = pick_weights(module, x, label)
    good, bad = check(torch.tanh), check(BadTanh.apply)
    assert good["within_eps2"].all()
    # the output layer's gradients do not go through the activation's backward; the rest do
    assert list(bad["within_eps2"]) == [True, False, False, False, True, True]


def test_a_fitted_pipeline_with_an_l1_penalty_is_checked_as_it_trains():
    pipe = make_pipeline(StandardScaler(), MLPClassifier(
        hidden_sizes=(32,), activation="tanh", l1=0.01, max_epochs=1, random_state=0,
        tracking=False)).fit(X_TRAIN, Y_TRAIN)
    Xz = StandardScaler().fit(X_TRAIN).transform(X_TRAIN)
    coarse, fine = gradient_check(pipe[-1], Xz, Y_TRAIN), gradient_check(pipe[-1], Xz, Y_TRAIN, eps=1e-3)
    # z-scores of rarely inked pixels reach 20 and more, so the input weights' central
    # difference has a large O(eps²) term: over 1e-4 at eps 1e-2 (the seed's bound is a rule of
    # thumb), and 100 times less at eps 1e-3, as the truncation error of a right gradient is
    ratio = coarse["abs_difference"] / fine["abs_difference"]
    assert ((ratio > 50) & (ratio < 200)).all(), ratio
    pipe[-1].set_params(l1=0.0)
    without = gradient_check(pipe[-1], Xz, Y_TRAIN, eps=1e-3)
    weights = ~fine["weight"].str.contains("bias")
    # the penalty adds l1 * sign(w) to each weight's gradient and nothing to a bias's
    np.testing.assert_allclose(np.abs(fine["backprop"] - without["backprop"])[weights], 0.01,
                               rtol=1e-6)
    np.testing.assert_allclose(fine["backprop"][~weights], without["backprop"][~weights])


def test_cli_prints_the_table_and_names_a_bad_sample(tmp_path, capsys):
    data = write_sample_mnist(tmp_path / "data")
    assert main(["experiment", "gradcheck", "--data-home", str(data)]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("| ") for line in out.splitlines()) == 7 and "within eps²" in out
    with pytest.raises(ValueError, match=r"sample must be an index of X \(0\.\.399\), got 400"):
        gradient_check(X=X_TRAIN, y=Y_TRAIN, sample=400)
