"""
A first fit, and the run it leaves in MLflow
=============================================

An :class:`~mnist_estimators.MLPClassifier` is a scikit-learn estimator: ``fit``, ``predict``
and ``score`` as usual. Every fit is also one MLflow run, complete when ``fit`` returns: its
parameters, the per-epoch metrics, figures and the model itself.
"""

# %%
# Fit on a slice of MNIST (the full set is 60,000 images; 5,000 keep this page fast).
import matplotlib.pyplot as plt
import mlflow

from mnist_estimators import MLPClassifier, load_mnist

X, y = load_mnist("train")
X_test, y_test = load_mnist("test")
X, y = X[:5000], y[:5000]

clf = MLPClassifier(hidden_sizes=(256, 128), max_epochs=5, random_state=0)
clf.fit(X, y)
print(f"test accuracy: {clf.score(X_test, y_test):.4f}")

# %%
# The history holds the per-epoch metrics on the 10% validation split.
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
epochs = clf.history_[:, "epoch"]
left.plot(epochs, clf.history_[:, "train_loss"], "o-", label="train")
left.plot(epochs, clf.history_[:, "valid_loss"], "o-", label="validation")
left.set(xlabel="epoch", ylabel="loss", title="Loss")
left.legend()
right.plot(epochs, clf.history_[:, "valid_acc"], "o-", color="C2")
right.set(xlabel="epoch", ylabel="accuracy", title="Validation accuracy")
plt.show()

# %%
# The MLflow run: FINISHED when ``fit`` returned, with the same metrics under ``epoch/`` and a
# model that predicts as the estimator does.
run = mlflow.get_run(clf.last_run_id_)
print(run.info.run_name, run.info.status)
print(sorted(k for k in run.data.metrics if k.startswith("epoch/")))
model = mlflow.pyfunc.load_model(clf.last_model_uri_)
print("same predictions:", (model.predict(X_test[:100]) == clf.predict(X_test[:100])).all())
