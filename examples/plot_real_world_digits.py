"""
Real-world digits: from a drawing to what the model sees
=========================================================

A digit drawn on a canvas is not an MNIST digit: dark ink on light paper (or on a transparent
background), anywhere on the page, any size. :func:`~mnist_estimators.preprocess_image` makes
it one, as MNIST itself was made: ink on black, fitted into 20×20, centred by its centre of
mass in 28×28.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

from mnist_estimators import CNNClassifier, load_mnist, preprocess_image
from mnist_estimators.strokes import draw_digit

X, y = load_mnist("train")
cnn = CNNClassifier(max_epochs=2, random_state=0).fit(X[:10000], y[:10000])

# %%
# Draw a few digits as a hand would (seeded), preprocess them, and predict.
rng = np.random.default_rng(3)
drawings = [draw_digit(digit, rng) for digit in (2, 5, 7, 9)]
frames = np.stack([preprocess_image(d) for d in drawings])
predicted = cnn.predict(frames)
print("drawn:    ", [2, 5, 7, 9])
print("predicted:", predicted.tolist())

fig, axes = plt.subplots(2, 4, figsize=(8, 4), layout="constrained")
for i, (drawing, frame) in enumerate(zip(drawings, frames)):
    axes[0, i].imshow(drawing, cmap="gray")
    axes[0, i].set_title("as drawn")
    axes[1, i].imshow(frame.reshape(28, 28), cmap="gray")
    axes[1, i].set_title(f"model sees; says {predicted[i]}")
for ax in axes.flat:
    ax.axis("off")
plt.show()
