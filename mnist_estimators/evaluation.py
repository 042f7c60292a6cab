"""A saved model on a folder of labelled digit images: accuracy, per-digit confusion, the worst
mistakes, and an MLflow evaluation run.

    result = evaluate_images("cnn.pkl", "drawings/")      # or a fitted estimator
    print(result.report())

``mnist-estimators evaluate MODEL --images DIR`` prints ``result.report()``. The folder is read
by ``load_images`` (subfolders ``0/`` ... ``9/``, or the digit in each file name), and read
as ``predict`` reads images: one the model is unsure of is also read turned by up to 20
degrees (``mnist_estimators.reading``; ``turn=0``, ``--turn 0``: upright only).

The MLflow run (when tracking is on) holds the params (model, folder, n, turn), the metrics
(``accuracy``, ``ece`` for a model with ``predict_proba``, ``digit_accuracy/0`` ... ``/9``, and
those of ``mlflow.models.evaluate``), the images as a dataset input, the figures
(``figures/confusion_matrix.png``, ``figures/misclassified.png``, most confident mistakes
first, and ``figures/reliability_diagram.png`` with probabilities) and ``mistakes.csv``. It ends
FINISHED, FAILED with the error in its ``error`` tag, or KILLED on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DIGITS = list(range(10))


@dataclass
class Evaluation:
    """What ``evaluate_images`` found. ``mistakes`` are the misclassified images, most confident
    first: dicts with ``file``, ``true``, ``predicted`` and ``probability`` (of the predicted
    digit; None for a model without ``predict_proba``). ``ece``: the top-label expected
    calibration error over 15 confidence bins (``calibration.expected_calibration_error``;
    None without ``predict_proba``); on a few dozen images it is mostly noise."""

    model: str                       # the model file as given, or the estimator's class name
    model_class: str
    folder: str
    accuracy: float
    n: int
    confusion: np.ndarray            # (10, 10) counts, rows true digit, columns predicted
    per_digit: dict                  # digit -> accuracy on its images (NaN when it has none)
    mistakes: list = field(repr=False)
    files: list = field(repr=False)
    y_true: np.ndarray = field(repr=False)
    y_pred: np.ndarray = field(repr=False)
    ece: float | None = None
    top: int = 10
    turn: float = 0.0                # degrees: unsure images were also read turned (reading)
    run_id: str | None = None
    model_uri: str | None = None     # the MLflow model the estimator was logged as, if it was

    def report(self, top=None):
        """The text ``evaluate --images`` prints: the accuracy line, the confusion table with
        each digit's accuracy, and the ``top`` most confident mistakes."""
        top = self.top if top is None else top
        lines = [f"accuracy {self.accuracy:.4f} on {self.n} images (labelled images in "
                 f"{self.folder}" + (f"; unsure ones also read turned up to {self.turn:g} degrees"
                                     if self.turn else "") + ")"]
        if self.ece is not None:
            lines.append(f"ECE {self.ece:.4f} (top-label calibration error, 15 equal-width "
                         "confidence bins; 0 when confidence matches accuracy)")
        lines += ["", "confusion (rows: true digit, columns: predicted digit)"]
        width = max(4, len(str(self.confusion.max())) + 1)
        lines.append("true " + "".join(f"{d:>{width}}" for d in DIGITS) + "  images  accuracy")
        for d in DIGITS:
            acc = self.per_digit[d]
            lines.append(f"{d:>4} " + "".join(f"{c:>{width}}" for c in self.confusion[d])
                         + f"  {self.confusion[d].sum():>6}  "
                         + (f"{'-':>8}" if np.isnan(acc) else f"{acc:>8.4f}"))
        lines.append("")
        if not self.mistakes:
            lines.append("worst mistakes: none, every image is classified right")
            return "\n".join(lines)
        shown = self.mistakes[:top]
        lines.append(f"worst mistakes: {len(shown)} of {len(self.mistakes)} misclassified, "
                     "most confident first")
        lines.append("probability  true  predicted  file")
        for m in shown:
            p = "-" if m["probability"] is None else f"{m['probability']:.4f}"
            lines.append(f"{p:>11}  {m['true']:>4}  {m['predicted']:>9}  {m['file']}")
        return "\n".join(lines)


def evaluate_images(model, folder, *, top=10, log=True, on_error="raise", turn=None):
    """Evaluate ``model`` on the labelled images of ``folder``.

    Parameters
    ----------
    model : str, Path or fitted estimator
        A file saved by ``save_model``, or any fitted classifier of 784-pixel rows (a
        ``predict_proba`` ranks the mistakes by confidence).
    folder : str or Path
        Labelled images, read by ``load_images``.
    top : int, default=10
        How many of the worst mistakes ``report()`` shows.
    log : bool, default=True
        Log an evaluation run to MLflow when tracking is on (see ``tracking.is_enabled``); a
        store that fails costs a warning, never the result.
    on_error : {"raise", "skip"}, default="raise"
        Passed to ``load_images``: what to do with an unreadable, blank or unlabelled file.
    turn : float, default=None
        Degrees (0 to 90): an image whose upright reading is below 0.9 confidence is also read
        turned by up to ``turn`` degrees, and the most confident reading is kept
        (``reading.predict_proba``, as ``predict`` reads); 0 reads upright only, and a turn
        needs a model with ``predict_proba``. None: ``reading.TURN`` (20) for a model with
        ``predict_proba``, upright for one without.

    Returns
    -------
    Evaluation
        With ``run_id`` set when a run was logged.

    Examples
    --------
    >>> result = evaluate_images("cnn.pkl", "drawings/")  # doctest: +SKIP
    >>> result.accuracy, result.mistakes[0]["file"]  # doctest: +SKIP
    (0.982, 'drawings/4/017.png')
    """
    from . import reading
    from .calibration import expected_calibration_error
    from .data import load_images
    from .persistence import load_model

    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise ValueError(f"The 'top' parameter must be an int >= 0. Got {top!r} instead.")
    if turn is not None:
        reading.turns(turn)  # a bad turn is named before the model and the images are read
    name = str(model) if isinstance(model, (str, Path)) else type(model).__name__
    if isinstance(model, (str, Path)):
        model = load_model(model)
    turn = reading.default_turn(model, turn)  # said before the images are read
    X, y, files = load_images(folder, on_error=on_error, return_files=True)

    if turn:
        proba = reading.predict_proba(model, files, turn=turn, frames=X)
    else:
        proba = model.predict_proba(X) if hasattr(model, "predict_proba") else None
    ece = None
    if proba is not None:
        y_pred = np.asarray(model.classes_)[proba.argmax(axis=1)].astype(np.int64)
        confidence = proba.max(axis=1)
        if np.isin(y, model.classes_).all():  # a digit the model never saw has no column
            ece = expected_calibration_error(y, proba, classes=model.classes_)
    else:
        y_pred, confidence = np.asarray(model.predict(X)).astype(np.int64), None
    from sklearn.metrics import confusion_matrix

    counts = confusion_matrix(y, y_pred, labels=DIGITS)
    support = counts.sum(axis=1)
    per_digit = {d: float(counts[d, d] / support[d]) if support[d] else float("nan")
                 for d in DIGITS}
    wrong = np.flatnonzero(y != y_pred)
    if confidence is not None:
        wrong = wrong[np.argsort(-confidence[wrong], kind="stable")]  # ties: in file order
    mistakes = [{"file": files[i], "true": int(y[i]), "predicted": int(y_pred[i]),
                 "probability": None if confidence is None else float(confidence[i])}
                for i in wrong]
    net = model.steps[-1][1] if hasattr(model, "steps") else model
    result = Evaluation(model=name, model_class=type(model).__name__, folder=str(folder),
                        model_uri=getattr(net, "last_model_uri_", None),
                        accuracy=float((y == y_pred).mean()),
                        n=len(y), confusion=counts, per_digit=per_digit, mistakes=mistakes,
                        files=files, y_true=y, y_pred=y_pred, ece=ece, top=top,
                        turn=float(turn))
    from . import tracking

    if log and tracking.is_enabled():
        result.run_id = _log_run(result, X, wrong, proba, getattr(model, "classes_", None))
    return result


# --------------------------------------------------------------------------- MLflow


def _log_run(result, X, wrong, proba=None, classes=None):
    """Log ``result`` as an evaluation run and return its id; None (with a warning) when no
    run could be started. The run ends FINISHED, FAILED (with the error, and a warning) or
    KILLED (Ctrl-C, SIGTERM through the CLI), never RUNNING."""
    import mlflow
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

    from .tracking import store
    from .tracking.console import warn
    from .tracking.parents import current_parent

    folder = Path(result.folder)
    try:
        uri, root = store.resolve_uri()
        client = store.open_store(uri, root)
        parent = current_parent()  # an active run (the user's): this one becomes its child
        if parent is not None:
            exp_id = parent.experiment_id
        else:
            exp_id = store.experiment_id(client, store.default_experiment_name(), root)
        tags = store.run_tags(f"evaluate {Path(result.model).stem} on {folder.resolve().name}",
                              parent.parent_run_id if parent is not None else None,
                              {"mnist_estimators.kind": "evaluation"})
        run_id = store.create_run(client, exp_id, tags).info.run_id
    except Exception as exc:  # noqa: BLE001 - the result is printed anyway
        warn(f"MLflow tracking failed while starting the evaluation run ({type(exc).__name__}: "
             f"{exc}); nothing was logged", exc)
        return None
    status, error = "FAILED", None
    try:
        _log_contents(client, run_id, result, X, wrong, proba, classes)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except Exception as exc:  # noqa: BLE001 - reported on the run and as a warning
        error = exc
        warn(f"MLflow tracking failed while logging evaluation run {run_id} "
             f"({type(exc).__name__}: {exc}); it is marked FAILED", exc)
    finally:
        with contextlib.suppress(Exception):
            if error is not None:
                store.call(client.set_tag, run_id, "error",
                           f"{type(error).__name__}: {error}"[:5000])
            elif status == "FINISHED":
                store.call(client.set_tag, run_id, MLFLOW_RUN_NOTE,
                           f"accuracy {result.accuracy:.4f} on {result.n} images of {folder}, "
                           f"{len(result.mistakes)} misclassified")
        try:
            # mlflow.models.evaluate ran inside ``mlflow.start_run``: off the fluent run stack
            # (a user's run it was nested in is active again), then ended in the store
            if (active := mlflow.active_run()) is not None and active.info.run_id == run_id:
                store.call(mlflow.end_run, status)
            store.call(client.set_terminated, run_id, status)
        except Exception as exc:  # noqa: BLE001 - `mnist-estimators runs reap` ends it later
            warn(f"MLflow could not mark evaluation run {run_id} {status} ({exc})", exc)
    return run_id


def _log_contents(client, run_id, result, X, wrong, proba=None, classes=None):
    import mlflow
    from mlflow.entities import LoggedModelInput, Metric, Param

    from . import plots
    from .tracking import artifacts, store
    from .tracking.datasets import dataset_input, make_dataset

    folder = Path(result.folder)
    model = Path(result.model)
    params = {"model": str(model.resolve()) if model.is_file() else result.model,
              "model.class": result.model_class, "images.folder": str(folder.resolve()),
              "images.n": result.n, "top": result.top, "turn": result.turn}
    # The MLflow model the estimator was logged as when it was trained, if it is in this store:
    # the run takes it as an input and its metrics are linked to it, so the model's page lists
    # this evaluation beside its validation results.
    model_id = _logged_model_id(client, result.model_uri)
    if model_id is not None:
        params["model.uri"] = result.model_uri
    store.call(client.log_batch, run_id,
               params=[Param(k, str(v)[:1000]) for k, v in params.items()])

    ds = make_dataset(X, result.y_true, {"kind": "images", "path": str(folder.resolve())})
    store.call(client.log_inputs, run_id, datasets=[dataset_input(ds, "evaluation")],
               models=[LoggedModelInput(model_id)] if model_id is not None else None)

    # MLflow's own evaluation, next to ours: accuracy_score, precision/recall/f1 (weighted),
    # example_count, per_class_metrics.csv and its confusion_matrix.png. Measured (MLP, 2
    # cores): 0.8 s a call warm, 1.8 s in a fresh process (imports), on 200 to 500 images.
    # It takes a pyfunc model or a callable, not our estimator: a callable has no
    # predict_proba, so MLflow logs no log_loss, ROC or PR curves (only a pyfunc loaded from an
    # mlflow.sklearn model exposes it, and logging the model again costs seconds and a copy of
    # it per evaluation). The callable returns the predictions already made, row for row, so the
    # model is run once. SHAP is off (log_model_explainability): it is not installed and would
    # cost minutes on 784 features. mlflow.models.evaluate works on the fluent API, so the run
    # is made active for it.
    def predictions(frame):
        if len(frame) != len(result.y_pred):
            raise ValueError(f"expected the {len(result.y_pred)} evaluated rows, got {len(frame)}")
        return result.y_pred

    mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None)
    with _quiet_evaluate():
        mlflow.models.evaluate(predictions, ds, model_type="classifier", evaluators="default",
                               evaluator_config={"log_model_explainability": False,
                                                 "label_list": DIGITS})

    stamp = int(time.time() * 1000)
    metrics = {}  # the accuracy is mlflow.models.evaluate's accuracy_score (above)
    if result.ece is not None:
        metrics["ece"] = result.ece
    metrics.update({f"digit_accuracy/{d}": a for d, a in result.per_digit.items()
                    if not np.isnan(a)})  # a digit without images has no accuracy
    store.call(client.log_batch, run_id, metrics=[
        Metric(k, float(v), stamp, 0, dataset_name=ds.name, dataset_digest=ds.digest,
               model_id=model_id) for k, v in metrics.items()])

    # the misclassified digits most confident first: the grid shows the first 36
    order = np.concatenate([wrong, np.setdiff1d(np.arange(result.n), wrong)])
    figures = {  # the confusion matrix is mlflow.models.evaluate's (confusion_matrix.png)
        "misclassified.png": plots.misclassified_grid(X[order], result.y_true[order],
                                                      result.y_pred[order]),
    }
    if result.ece is not None:  # on the probabilities the predictions came from: one pass
        figures["reliability_diagram.png"] = plots.reliability_diagram(result.y_true, proba,
                                                                       classes=classes)
    artifacts.log_figures(client, run_id, figures)
    rows = ["file,true,predicted,probability"] + [
        f"{_csv_field(m['file'])},{m['true']},{m['predicted']},"
        f"{'' if m['probability'] is None else round(m['probability'], 6)}"
        for m in result.mistakes]
    store.call(client.log_text, run_id, "\n".join(rows) + "\n", "mistakes.csv")


def _logged_model_id(client, uri):
    """The id of the logged model ``uri`` (``models:/m-...``) when this store holds it."""
    from .tracking import store

    if not (isinstance(uri, str) and uri.startswith("models:/m-")):
        return None
    try:
        return store.call(client.get_logged_model, uri[len("models:/"):]).model_id
    except Exception:  # noqa: BLE001 - trained against another store, or deleted
        return None


def _csv_field(text):
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


@contextlib.contextmanager
def _quiet_evaluate():
    """mlflow.models.evaluate's chatter, none of it the user's to act on: INFO lines, the
    warning that integer labels "look like" no model type (its best-effort guess knows only
    strings, booleans and floats), and scikit-learn's undefined-precision warnings for a digit
    never predicted (counted as 0)."""
    from sklearn.exceptions import UndefinedMetricWarning

    loggers = [logging.getLogger(n) for n in ("mlflow.models.evaluation",
                                              "mlflow.models.evaluation.evaluators.classifier",
                                              "mlflow.models.evaluation.default_evaluator")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
