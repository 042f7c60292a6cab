"""What a run holds besides numbers: its figures and its MLflow model."""

from __future__ import annotations

import logging
import math
import re
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from .. import _compat
from . import scopes, store


@lru_cache(maxsize=1)
def pip_requirements():
    """Pinned requirements of a logged model; inferring them would cost ~5 s per model."""
    from importlib.metadata import version

    pins = [f"{name}=={version(name)}" for name in
            ("mlflow", "skorch", "scikit-learn", "numpy", "cloudpickle", "pandas")]
    return [f"torch=={version('torch').split('+')[0]}"] + pins


@lru_cache(maxsize=1)
def package_version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mnist-estimators")
    except PackageNotFoundError:
        return "0+unknown"


@lru_cache(maxsize=1)
def package_source():
    """A copy of this package's Python source, made once per process, that a logged model
    carries (``code_paths``) so that it loads where mnist-estimators is not installed: what
    unpickling a model imports (the package's ``__init__`` and what it imports), without the
    ready pipelines, the experiments, the command line, the draw page, the search and the
    bytecode caches: each file is one more artifact to copy, ~0.9 ms each."""
    import atexit
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="mnist-estimators-source-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    target = root / "mnist_estimators"
    shutil.copytree(Path(__file__).parents[1], target, ignore=shutil.ignore_patterns(
        "__pycache__", "pipelines", "experiments", "static", "cli.py", "draw.py", "search.py",
        "strokes.py", "*.pyc", "*.toml", "*.html"))
    return str(target)


def model_name(net):
    """The logged model's name: what it is, ``mlp-256-128``, ``cnn-32-64``, ``softmax``, or
    for an ensemble its kind and size, ``voting-5`` (MLflow forbids ``/ : . % " '`` in it). A
    pipeline is named by its steps' names, then its last step: ``pca-mlp-256-128``."""
    if hasattr(net, "steps"):
        *head, (_, last) = net.steps
        names = [re.sub(r"[^\w-]", "", name.lower()) for name, step in head
                 if step is not None and step != "passthrough"]
        return "-".join([n for n in names if n] + [model_name(last)])
    kind = scopes.class_kind(net)
    shape = getattr(net, "channels", None) or getattr(net, "hidden_sizes", None)
    if shape is None and isinstance(getattr(net, "estimators", None), (list, tuple)):
        shape = (len(net.estimators),)  # VotingClassifier, StackingClassifier
    return "-".join([kind, *map(str, shape or ())])


def log_model(client, run_id, model, X=None, registered_model_name=None, params=None, *,
              name="model", metrics=None, experiment_id=None, dataset=None, description=None):
    """Log ``model`` as run ``run_id``'s MLflow model, named ``name``. Returns its URI,
    ``models:/MODEL_ID`` (``runs:/RUN/NAME`` reaches it too).

    The LoggedModel gets the fit's ``params`` and, linked to it, the ``metrics`` (name ->
    value, at their step) with their ``dataset`` (name, digest), so that its page in the MLflow
    UI shows what it is, how good it is and on what data; ``description`` (the run's, markdown)
    is its note, the "Description" the UI's model tables show. The model itself is
    ``mlflow.sklearn.save_model``'s format:

    - cloudpickle: skops, mlflow.sklearn's default, refuses skorch nets;
    - pinned requirements: inferring them costs ~5 s a model;
    - this package's source (``code_paths``), so that the model loads and serves where
      mnist-estimators is not installed: ~3 ms and 210 kB a model, so it is kept;
    - a signature from the first rows of ``X``, and no input example: MLflow validates an
      example by reloading and serving the model (~65 ms a model).

    Written by hand around ``mlflow.sklearn.save_model`` rather than with
    ``mlflow.sklearn.log_model``, whose ``Model.log`` (MLflow 3.17) costs ~50 ms more a model:
    it re-reads the run and every metric's full history to link the metrics of one step to the
    model (we hold them in memory), and reads the LoggedModel back; it also files the model
    under the *active* experiment unless one is created first. The steps are MLflow's own:
    ``create_logged_model``, ``log_outputs``, ``log_model_artifacts``, ``finalize_logged_model``.
    """
    import tempfile

    import mlflow.sklearn
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric
    from mlflow.models import Model, infer_signature
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

    example = None if X is None else np.asarray(X)[:5]
    signature = None if example is None else infer_signature(example, model.predict(example))
    if experiment_id is None:
        experiment_id = store.call(client.get_run, run_id).info.experiment_id
    logged = store.call(client.create_logged_model, experiment_id, name=name, source_run_id=run_id,
                        params={k: str(v)[:1000] for k, v in (params or {}).items()} or None,
                        tags={MLFLOW_RUN_NOTE: description[:5000]} if description else None,
                        model_type="classifier")
    status = LoggedModelStatus.FAILED
    try:
        step = max([0] + [s for _, s in (metrics or {}).values()])
        store.call(client.log_outputs, run_id, [LoggedModelOutput(logged.model_id, step=step)])
        with tempfile.TemporaryDirectory(prefix="mnist-estimators-model-") as tmp:
            path = Path(tmp) / "model"
            mlflow.sklearn.save_model(
                model, path, serialization_format="cloudpickle", signature=signature,
                pip_requirements=pip_requirements(), code_paths=[package_source()],
                mlflow_model=Model(artifact_path=logged.artifact_location, run_id=run_id,
                                   model_uuid=logged.model_id, model_id=logged.model_id))
            store.call(client.log_model_artifacts, logged.model_id, str(path))
        status = LoggedModelStatus.READY
    finally:
        store.call(client.finalize_logged_model, logged.model_id, status)
    if metrics:
        stamp = int(time.time() * 1000)
        ds_name, ds_digest = dataset or (None, None)
        store.call(client.log_batch, run_id, metrics=[
            Metric(k, float(v), stamp, s, model_id=logged.model_id, dataset_name=ds_name,
                   dataset_digest=ds_digest) for k, (v, s) in metrics.items()])
    uri = f"models:/{logged.model_id}"
    if registered_model_name:
        import mlflow

        with _compat.using_tracking_uri(client.tracking_uri), store.quiet_mlflow():
            store.call(mlflow.register_model, uri, registered_model_name)
    store.call(client.set_tag, run_id, "model_uri", uri)
    return uri


# --------------------------------------------------------------------------- figures


def render_figures(data, kind="basic", embedding="pca"):
    """The run's figures from ``data`` (history, validation labels and predictions, weight
    snapshots, activations): name -> matplotlib Figure or PIL image.

    "basic": the confusion matrix, the misclassified digits and the reliability diagram (when
    ``data`` has the validation probabilities, ``proba``). "all" adds the learning curves
    (the MLflow UI charts every per-epoch metric already; rendering them costs ~70 ms a fit),
    weight histograms and the activation embedding.
    """
    from .. import plots

    figures = {}
    if kind == "all":
        figures["learning_curves.png"] = plots.learning_curves(data["history"])
    if "y_true" in data:
        figures["confusion_matrix.png"] = plots.confusion_matrix(data["y_true"], data["y_pred"],
                                                                 data["labels"])
        # digits only where the features are square images: not, e.g., the probabilities that
        # a stacking ensemble's final estimator is fitted on
        n_features = np.shape(data["X_valid"])[1]
        if math.isqrt(n_features) ** 2 == n_features:
            figures["misclassified.png"] = plots.misclassified_grid(
                data["X_valid"], data["y_true"], data["y_pred"])
    if "proba" in data:
        figures["reliability_diagram.png"] = plots.reliability_diagram(
            data["y_true"], data["proba"], classes=data["labels"])
    if "features" in data:
        n = len(data["features"])
        figures["embedding.png"] = plots.embedding(data["features"], data["y_true"][:n], embedding)
    if data.get("weights"):
        figures["weight_histograms.png"] = plots.weight_histograms(data["weights"])
    return figures


def log_figures(client, run_id, figures):
    """Log each figure (a matplotlib Figure or a PIL image) as ``figures/NAME``."""
    # told apart by Pillow's class: the default figures are Pillow's, and importing
    # matplotlib's Figure to check would cost a fresh process ~0.1 s for nothing
    from PIL import Image

    for name, fig in figures.items():
        if isinstance(fig, Image.Image):
            store.call(client.log_image, run_id, fig, artifact_file=f"figures/{name}")
        else:
            store.call(client.log_figure, run_id, fig, f"figures/{name}",
                       save_kwargs={"dpi": 80, "pil_kwargs": {"compress_level": 1}})


class _CloudpickleNotice(logging.Filter):
    # mlflow.sklearn warns at every cloudpickle save and recommends skops, which refuses skorch
    # nets; cloudpickle is the deliberate choice here, so the notice is dropped.
    def filter(self, record):
        return "cloudpickle format requires exercising caution" not in record.getMessage()


logging.getLogger("mlflow.sklearn").addFilter(_CloudpickleNotice())
