"""
A grid search, tracked as one parent run
=========================================

The estimators drop into :class:`~sklearn.model_selection.GridSearchCV`. With
:func:`mnist_estimators.tracking.autolog` on, the search is one MLflow parent run, named by
what it is, with one child run per candidate and fold, plus the refit.
"""

# %%
import matplotlib.pyplot as plt
import mlflow
import pandas as pd
from sklearn.model_selection import GridSearchCV

from mnist_estimators import SoftmaxRegressionClassifier, load_mnist, tracking

X, y = load_mnist("train")
X, y = X[:3000], y[:3000]

tracking.autolog()
grid = GridSearchCV(SoftmaxRegressionClassifier(max_epochs=3, random_state=0),
                    {"lr": [1e-3, 1e-2], "optimizer": ["adam", "sgd"]}, cv=2)
grid.fit(X, y)
print("best:", grid.best_params_, f"{grid.best_score_:.4f}")

# %%
# ``cv_results_`` is the usual scikit-learn table.
results = pd.DataFrame(grid.cv_results_)
print(results[["param_optimizer", "param_lr", "mean_test_score", "rank_test_score"]])

fig, ax = plt.subplots(figsize=(5, 3), layout="constrained")
for optimizer, rows in results.groupby("param_optimizer"):
    ax.plot(rows["param_lr"], rows["mean_test_score"], "o-", label=optimizer)
ax.set(xscale="log", xlabel="learning rate", ylabel="mean CV accuracy")
ax.legend(title="optimizer")
plt.show()

# %%
# The runs: a parent named by the search, its children named by candidate and fold.
runs = mlflow.search_runs(search_all_experiments=True, order_by=["start_time ASC"])
print(runs["tags.mlflow.runName"].tolist())
