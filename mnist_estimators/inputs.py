"""What the estimators accept as X and y, and how it becomes the tensors they train on.

X: ``(n, 784)``, ``(n, 28, 28)`` or ``(n, 1, 28, 28)``, uint8 pixels or floats, arrays, pandas
frames or tensors; the module always sees a float32 ``(n, n_features)`` tensor. y: labels of
any type, encoded as their index in ``classes_``.

The adapter holds only the estimator's configuration; what ``fit`` learns from the data
(``n_features_in_``, ``input_scale_``, ``classes_``) stays on the estimator, where
scikit-learn looks for it and where fitted models pickled before this module keep it.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_X_y


class InputScaleWarning(UserWarning):
    """Features far from unit scale (e.g. PCA of raw pixels): the network trains poorly on
    them; a ``StandardScaler`` before the estimator fixes it."""


# The root mean square of the inputs as the network sees them above which a fit warns. The
# first layer's weights are drawn for inputs of scale about 1 (PyTorch's default, He and Xavier
# all scale them by 1/sqrt(fan_in)), so its pre-activations grow with the RMS of X, mean
# included: at 10x they saturate sigmoid and tanh and make the first logits huge (softmax on
# PCA of raw pixels, RMS ~240, trains at losses near 145). Measured on MNIST's 5,000-image
# sample: [0, 1] pixels 0.34, standardized pixels 0.92, StandardScaler then PCA(2..200)
# 1.7-5.9; raw-pixel features (PCA of them, mean-centred pixels) 85-540. A maximum would not
# do: standardized MNIST reaches 70 (rare pixels), which trains well.
INPUT_RMS_LIMIT = 10.0


class InputAdapter:
    """Validate and coerce the ``(X, y)`` given to one estimator.

    Parameters
    ----------
    owner : str
        The estimator's class name, for messages.
    pixel_scaling : {"auto", True, False}, default="auto"
        The estimator's ``pixel_scaling``: when pixels are divided by 255.
    """

    def __init__(self, owner, pixel_scaling="auto"):
        self.owner = owner
        self.pixel_scaling = pixel_scaling

    # ------------------------------------------------------------------ X
    def fit_X(self, X):
        """Validate the X of a fit.

        Returns
        -------
        Xt : torch.Tensor of shape (n, n_features), float32
        n_features : int
        input_scale : float
            The factor applied to float X, now and at predict time (1/255 or 1).
        """
        X = self._check_array(X, "fit")
        scale = self._pixel_scale(X)
        Xt = self._to_tensor(X, scale)
        self._warn_scale(Xt)
        return Xt, X.shape[1], scale

    def transform_X(self, X, n_features, input_scale):
        """Validate X at predict time against what fit learned; return the tensor."""
        X = self._check_array(X)
        if X.shape[1] != n_features:
            raise ValueError(f"X has {X.shape[1]} features, but {self.owner} is expecting "
                             f"{n_features} features as input.")
        return self._to_tensor(X, input_scale)

    def _check_dims(self, X, where):
        """One line for an X that is not a table of images: scikit-learn's own message for a
        1-D X prints the whole array (12,000 characters for a few images)."""
        try:
            ndim = X.dim() if torch.is_tensor(X) else getattr(X, "ndim", None)
            if ndim is None:
                ndim = np.ndim(X)  # lists; scikit-learn's _NotAnArray refuses it: then below
        except TypeError:
            return  # an array-like numpy cannot measure: scikit-learn's validation judges it
        if ndim >= 2:
            return
        shape = tuple(X.shape) if hasattr(X, "shape") else np.shape(X)
        what = "a scalar" if ndim == 0 else f"a 1-D array of shape {shape}"
        hint = ": X.reshape(1, -1) for one flattened image" if shape == (784,) else ""
        # "Reshape your data": the words scikit-learn's own message has, and its checks expect
        raise ValueError(f"{self.owner}.{where}: X must be 2-D, (n, 784), or images, (n, 28, 28) "
                         f"or (n, 1, 28, 28); got {what}. Reshape your data{hint}.")

    def _check_array(self, X, where="predict"):
        self._check_dims(X, where)
        if torch.is_tensor(X):
            X = X.detach().cpu().numpy()
        X = check_array(X, dtype="numeric", allow_nd=True, ensure_all_finite=True, input_name="X")
        # (n, 784), (n, 28, 28) and (n, 1, 28, 28) are all accepted; the module sees (n, 784).
        if X.ndim == 4 and X.shape[1] != 1:
            raise ValueError(
                f"Expected single-channel images (n, 1, H, W); got X with shape {X.shape}.")
        if X.ndim > 4:
            raise ValueError(
                f"Expected X of shape (n, 784), (n, 28, 28) or (n, 1, 28, 28); got {X.shape}.")
        return X.reshape(len(X), -1)

    def _pixel_scale(self, X):
        if self.pixel_scaling is False:
            return 1.0
        if self.pixel_scaling is True or X.dtype.kind in "ui":
            return 1.0 / 255.0
        # Floats: 0-255 pixel values get scaled; [0, 1] pixels and standardized features do not.
        if X.dtype.kind == "f" and X.min() >= 0 and 1.0 < X.max() <= 255.0:
            return 1.0 / 255.0
        return 1.0

    def _warn_scale(self, Xt):
        """One ``InputScaleWarning`` when the inputs, as the network sees them (after the pixel
        factor: uint8 and 0-255 float pixels are on [0, 1] by then), are far from unit scale."""
        if not Xt.numel():
            return
        # no copy of X: the norm reduces in place, and float32 is precise enough for a threshold
        rms = float(torch.linalg.vector_norm(Xt)) / math.sqrt(Xt.numel())
        if not rms > INPUT_RMS_LIMIT:
            return
        low, high = (float(v) for v in torch.aminmax(Xt))
        peak = high if abs(high) >= abs(low) else low
        warnings.warn(
            f"{self.owner}.fit: X's values reach {peak:,.1f} (root mean square {rms:,.1f}): "
            "features far from unit scale train poorly. Put a StandardScaler before this "
            f"estimator, e.g. make_pipeline(StandardScaler(), PCA(50), {self.owner}()).",
            InputScaleWarning, stacklevel=6)  # fit's caller: fit, _check_Xy, _check_X, fit_X

    def _to_tensor(self, X, input_scale):
        # Integer pixels are 0-255 whatever was fitted on; floats take the factor learned in fit.
        scale = 1.0 / 255.0 if (X.dtype.kind in "ui" and self.pixel_scaling is not False) \
            else input_scale
        arr = np.ascontiguousarray(X, dtype=np.float32)
        if np.may_share_memory(arr, X):
            # No copy was made: scaling in place would rewrite the caller's array (or crash on a
            # read-only memmap, as joblib hands to its workers), so scale into a new one.
            arr = arr * np.float32(scale) if scale != 1.0 else \
                (arr if arr.flags.writeable else arr.copy())
        elif scale != 1.0:
            arr *= np.float32(scale)
        return torch.from_numpy(arr)

    # ------------------------------------------------------------------ y
    def check_Xy(self, X, y):
        """Check that X and y are consistent and y holds classification labels;
        return them as arrays (X still unscaled, for ``fit_X``/``transform_X``)."""
        self._check_dims(X, "fit")
        X, y = check_X_y(X, y, dtype=None, allow_nd=True, ensure_all_finite=True,
                         ensure_min_samples=1)
        check_classification_targets(y)
        return X, y

    def fit_classes(self, y, classes=None):
        """The classes of a fit: ``classes`` when given (the estimator's ``classes``, or
        ``partial_fit``'s), else the sorted labels of ``y``; at least two."""
        found = np.unique(y) if classes is None else np.asarray(classes)
        if len(found) < 2:
            raise ValueError(f"{self.owner} needs samples of at least 2 classes; got "
                             f"1 class ({found[0]!r}) in {len(y)} samples.")
        return found

    def encode(self, y, classes):
        """Each label of ``y`` as its index in ``classes`` (int64); unknown labels raise."""
        sorter = np.argsort(classes)
        pos = np.searchsorted(classes, y, sorter=sorter)
        pos = np.clip(pos, 0, len(classes) - 1)
        idx = sorter[pos]
        unknown = classes[idx] != y
        if unknown.any():
            raise ValueError(f"y contains labels not seen in fit or given as classes: "
                             f"{np.unique(y[unknown])[:10].tolist()} (known: {classes.tolist()}).")
        return idx.astype(np.int64)
