"""
A seed experiment in a few lines: weight initialisation
========================================================

Seed 004 compares weight initialisations. Each scheme is one value of the ``init``
parameter, so the comparison is a loop (or a ``GridSearchCV``). The full study, five seeds
and a report with confidence intervals, is one command:
``mnist-estimators experiment run seed004-init --protocol fast``.
"""

# %%
import matplotlib.pyplot as plt

from mnist_estimators import MLPClassifier, load_mnist

X, y = load_mnist("train")
X_test, y_test = load_mnist("test")
X, y = X[:5000], y[:5000]

fig, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
for init in ("zero", "normal", "xavier_uniform", "he_normal"):
    clf = MLPClassifier(hidden_sizes=(128,), init=init, max_epochs=4, random_state=0).fit(X, y)
    ax.plot(clf.history_[:, "epoch"], clf.history_[:, "valid_acc"], "o-", label=init)
    print(f"{init:15s} test accuracy {clf.score(X_test, y_test):.4f}")
ax.set(xlabel="epoch", ylabel="validation accuracy", title="Initialisation, MLP 128")
ax.legend()
plt.show()
