"""
An Optuna study with pruning
=============================

:func:`mnist_estimators.search.tune` runs an Optuna study over an estimator: each trial is one
fit, scored on its validation split and pruned epoch by epoch (optuna-integration's skorch
callback). The study is a parent run in MLflow; each trial is a child.
"""

# %%
import matplotlib.pyplot as plt
import optuna
from optuna.distributions import FloatDistribution, IntDistribution

from mnist_estimators import MLPClassifier, load_mnist
from mnist_estimators.search import tune

X, y = load_mnist("train")
X, y = X[:3000], y[:3000]

space = {"lr": FloatDistribution(1e-4, 1e-1, log=True),
         "dropout": FloatDistribution(0.0, 0.5),
         "max_epochs": IntDistribution(2, 4)}
result = tune(MLPClassifier(hidden_sizes=(64,), random_state=0), space, X, y,
              n_trials=8, pruner="median")
print("best value:", round(result.best_value, 4))
print("best params:", result.best_params)

# %%
# Optuna's own plots work on the study.
optuna.visualization.matplotlib.plot_optimization_history(result.study)
plt.show()
