"""
What softmax regression learns: one template per digit
========================================================

Softmax regression has one weight per pixel and class. Drawn as 28×28 images, the weights of
each class look like a blurred template of its digit: positive where its ink usually is,
negative where other digits' ink is.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

from mnist_estimators import SoftmaxRegressionClassifier, load_mnist

X, y = load_mnist("train")
X_test, y_test = load_mnist("test")
X, y = X[:10000], y[:10000]
clf = SoftmaxRegressionClassifier(max_epochs=5, random_state=0).fit(X, y)
print(f"test accuracy: {clf.score(X_test, y_test):.4f}")

# %%
# ``module_`` is the fitted torch module: a single linear layer.
weights = clf.module_.linear.weight.detach().numpy().reshape(10, 28, 28)
limit = np.abs(weights).max()
fig, axes = plt.subplots(2, 5, figsize=(8, 3.6), layout="constrained")
for digit, ax in enumerate(axes.flat):
    ax.imshow(weights[digit], cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_title(str(digit))
    ax.axis("off")
plt.show()
