"""skorch callbacks: the one that owns a fit's MLflow run, and weight snapshots for figures.

skorch's ``MlflowLogger`` logs per-epoch history into a run it is handed (or the active one),
one blocking ``log_metric`` per value; it logs no params, dataset, figures or model, crashes
with no active run, and by default ends the run at train end. ``MlflowRunLogger`` keeps its
key filtering and its habit (collaborators resolved in ``initialize``/``on_train_begin``), and
owns its run from the first epoch to the final status.
"""

from __future__ import annotations

import copy

import numpy as np
from skorch.callbacks import Callback, MlflowLogger
from skorch.callbacks.logging import filter_log_keys

from ..calibration import expected_calibration_error
from ..signals import catch_sigterm, release_sigterm
from . import scopes
from .console import brief, say, warn
from .context import RunContext, resolve_options
from .parents import capture_context, current_parent
from .run import FitRun, describe


class MlflowRunLogger(MlflowLogger):
    """Opens the fit's run at ``on_train_begin``, logs each epoch in one batch, and ends it:
    FINISHED at ``on_train_end`` (summary, figures, model, description), or FAILED or KILLED
    at ``on_train_error`` (the estimator's fit reports an exception there).

    ``context`` is where the run goes (a ``RunContext``; None: decided in this process now);
    ``options`` the estimator's ``tracking_options``.
    """

    def __init__(self, context=None, options=None):
        super().__init__(create_artifact=False, terminate_after_train=False)
        self.context = context
        self.options = options

    def initialize(self):
        # event_lr: the scheduler's record of the same number as our ``lr``
        self.keys_ignored_ = {"batches", "train_batch_count", "valid_batch_count", "event_lr"}
        self._reset()
        return self

    def _reset(self):
        self.run_ = self.valid_data_ = self.last_state_ = self.model_ = None
        self.position_ = {}

    def __getstate__(self):
        # A fitted model that is pickled or logged mid-fit carries no client, run or data.
        state = dict(self.__dict__)
        for key in ("run_", "valid_data_", "last_state_", "model_", "raw_X_", "raw_y_",
                    "previous_sigterm_"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reset()

    # -- begin
    def on_train_begin(self, net, X=None, y=None, X_raw=None, y_raw=None, **kwargs):
        from ..data import data_source

        self._reset()
        options = resolve_options(self.options)
        pipeline, pipe_X = scopes.enclosing_pipeline(net)
        # where the fit stands: told by the search or cross-validation that cloned it
        position = scopes.resolve(getattr(self.context, "position", None) or {},
                                  scopes.fold_root(net))
        self.position_ = position
        in_fold = "fold" in position
        if options["log_model"] == "auto":
            options["log_model"] = not in_fold
        if options["figures"] == "auto":
            options["figures"] = "none" if in_fold else "basic"
        self.options_ = options
        X_raw = pipe_X if pipe_X is not None else (X_raw if X_raw is not None else X)
        self.raw_X_, self.raw_y_ = X_raw, y_raw if y_raw is not None else y
        self.model_ = pipeline if pipeline is not None else net
        source = data_source(X_raw)
        if source is None and self.context is not None and self.context.data_source:
            # a copy of the search's, cross-validation's or ensemble's X (a worker's), or a
            # fold of it: a subset when its rows are fewer than the data the reader returned
            source = dict(self.context.data_source)
            if len(X_raw) != source.get("n", -1):
                source["rows"] = "subset"
        source = source or {"kind": "arrays"}
        self.run_ = FitRun(self._context(net), options)
        self.run_.start(net, X_raw, self.raw_y_, pipeline, position, source)
        self._catch_sigterm()

    def _context(self, net):
        if self.context is None:  # captured now: a store it found unusable is this fit's error
            context = capture_context()
        elif self.context.verdict_holds():
            # the verdict of the search (cross-validation, ensemble) that cloned this fit, found
            # less than a minute ago: trusted by this fit, and by no later fit of this estimator
            context = self.context
            self.context = context.replace(store_error=None, verdict_at=None)
            if getattr(net, "tracking_context_", None) is context:
                net.tracking_context_ = self.context
        else:  # captured at the clone, maybe long ago: the store is checked again
            context = self.context.replace(store_error=None)
        active = current_parent()  # a run opened in this process since the clone wins
        if active is not None and active.parent_run_id != context.parent_run_id:
            return active
        return context

    def _catch_sigterm(self):
        # A plain script killed with SIGTERM (a scheduler's timeout, `kill`) ends with no
        # cleanup: the run would stay RUNNING. During the fit, SIGTERM stops training at the next
        # batch like Ctrl-C; a handler the user (or the CLI) installed is left alone.
        self.previous_sigterm_ = catch_sigterm()

    def _release_sigterm(self):
        release_sigterm(getattr(self, "previous_sigterm_", None))
        self.previous_sigterm_ = None

    # -- epochs
    def on_epoch_end(self, net, dataset_valid=None, **kwargs):
        if self.run_ is None:
            return
        self.valid_data_ = dataset_valid
        logs = net.history[-1]
        values = {}
        for key in filter_log_keys(logs.keys(), self.keys_ignored_):
            value = logs[key]
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
                continue
            # "epoch/": the MLflow UI puts charts in sections by metric prefix, prefixed
            # sections in alphabetical order and unprefixed metrics last, so the curves go
            # under "epoch/" and the one-value results under "summary/" (run.finish): the
            # curves lead, and a test accuracy logged later sits apart.
            values["epoch/" + ("time_s" if key == "dur" else key)] = value
        self.run_.log_metrics(values, step=len(net.history))
        if self.options_["log_model"]:  # the weights after the last finished epoch: what an
            self.last_state_ = {k: v.detach().to("cpu", copy=True)  # interrupted fit keeps
                                for k, v in net.module_.state_dict().items()}

    # -- end
    def on_train_end(self, net, **kwargs):
        if self.run_ is None:
            return
        try:
            self._finish(net, "FINISHED")
        finally:
            self._release_sigterm()

    def on_train_error(self, net, error=None, **kwargs):
        """The fit raised: FAILED, or KILLED for Ctrl-C and SIGTERM (the last finished epoch's
        model is kept), or FINISHED and tagged pruned when Optuna pruned the trial."""
        if self.run_ is None:
            return
        try:
            if type(error).__name__ == "TrialPruned":
                self.options_["log_model"] = False
                self.run_.record.setdefault("tags", {})["optuna.pruned"] = str(error)
                if self.run_.active:
                    # FINISHED, not KILLED: a pruned trial did what it was asked, and the MLflow
                    # UI marks KILLED red like a failure. Its name and a tag say it was pruned.
                    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

                    name = self.run_.record["tags"][MLFLOW_RUN_NAME]
                    for key, value in (("optuna.pruned", str(error) or "pruned"),
                                       (MLFLOW_RUN_NAME, f"pruned · {name}")):
                        self.run_._safe("tagging the pruning", self.run_.client.set_tag,
                                        self.run_.run_id, key, value)
                self._finish(net, "FINISHED", pruned=True)
            elif isinstance(error, KeyboardInterrupt):
                self._finish(net, "KILLED", error=error)
            else:
                self._finish(net, "FAILED", error=error)
        finally:
            self._release_sigterm()

    def _finish(self, net, status, error=None, pruned=False):
        run, options = self.run_, self.options_
        # skorch adds an epoch's row when it begins: an interrupted one has no "dur", and the
        # summary (like the logged model) is of the finished epochs
        history = [row for row in net.history if "dur" in row]
        summary = {"fit_time_s": _elapsed(run), "n_epochs": len(history)}
        last = history[-1] if history else {}
        for key in ("train_loss", "valid_loss", "valid_acc"):
            if key in last:  # weight averaging or recomputed BatchNorm: the final weights' score
                summary[f"final_{key}"] = last.get(f"{key}_final", last[key])
        if "valid_loss" in last:
            summary["best_valid_loss"] = float(np.nanmin([row["valid_loss"] for row in history]))
            summary["best_valid_acc"] = float(np.nanmax([row["valid_acc"] for row in history]))
        model = None
        if options["log_model"] and status != "FAILED":
            model = self.model_ if status == "FINISHED" else self._last_epoch_model(net)
        figures = None
        if options["figures"] != "none" and status == "FINISHED" and not pruned and len(history):
            valid = self._valid_predictions(net, run)  # one predict: the ECE and the figures
            if valid is not None:
                summary["valid_ece"] = valid[2]
            figures = lambda: self._figures(net, valid)  # noqa: E731 - drawn if the run is alive
        description = _description(net, self.position_, summary, status, run, pruned)
        net.last_run_id_ = run.run_id
        try:
            kept = run.finish(status, model, summary, figures, description,
                              example=None if self.raw_X_ is None else np.asarray(self.raw_X_)[:5],
                              error=error, registered_name=options["register_as"])
            net.last_model_uri_ = run.model_uri  # models:/ID, or None when it was not logged
            if status == "KILLED" and run.run_id is not None:
                where = (f"kept in {kept}" if kept else "logged with the run") if model is not None \
                    else "not kept (no epoch had finished)" if options["log_model"] else "not logged"
                say(f"run {run.run_id} ended KILLED after {len(history)} finished epoch(s) "
                    f"({str(error) or 'Ctrl-C'}); the last finished epoch's model was {where}")
        finally:
            self.run_ = None  # the estimator keeps no client or data past its fit
            self.valid_data_ = self.last_state_ = self.model_ = self.raw_X_ = self.raw_y_ = None

    def _last_epoch_model(self, net):
        if self.last_state_ is None:
            return None
        model = copy.deepcopy(self.model_)
        est = model.steps[-1][1] if hasattr(model, "steps") else model
        est.module_.load_state_dict(self.last_state_)
        return model

    def _valid_predictions(self, net, run):
        """(column index of each validation label, validation probabilities, their top-label
        ECE), or None without a validation split. Computed once at the end, for the summary
        and the figures."""
        ds = self.valid_data_
        if ds is None:
            return None
        try:
            column, proba = ds.y.cpu().numpy(), net.predict_proba(ds)
            return column, proba, expected_calibration_error(column, proba)
        except Exception as exc:  # noqa: BLE001 - like a figure that fails: the run goes on
            warn(f"run {run.run_id}: the validation predictions could not be made "
                 f"({brief(exc)}); the run is logged without its validation "
                 "figures and ECE", exc)
            return None

    def _figures(self, net, valid=None):
        from .artifacts import render_figures

        data = {"history": net.history}
        ds = self.valid_data_
        if valid is not None:
            column, proba, _ = valid
            data["y_true"] = net.classes_[column]
            data["y_pred"] = net.classes_[proba.argmax(1)]
            data["proba"] = proba  # columns in the order of net.classes_
            data["X_valid"] = ds.X.cpu().numpy()
            data["labels"] = net.classes_
            if self.options_["figures"] == "all":
                n = min(1000, len(ds.X))
                data["features"] = penultimate_activations(net, ds.X[:n])
        snaps = dict(net.callbacks_).get("weight_snapshots")
        if snaps is not None:
            data["weights"], snaps.snapshots_ = snaps.snapshots_, {}
        return render_figures(data, self.options_["figures"], self.options_["embedding"])


def _elapsed(run):
    import time

    return time.time() - run.started


def _description(net, position, summary, status, run, pruned):
    """A short markdown note for the run page: model, data, result."""
    lines = [f"**{describe(net)}** ({type(net).__name__})"]
    params = position.get("parameters")
    if params:
        lines.append("Search candidate: " + ", ".join(f"`{k}={v}`" for k, v in params.items())
                     + (f", fold {position['fold']}" if "fold" in position else ""))
    data = getattr(run, "dataset_name", None) or "arrays"
    shape = run.record.get("params", {}).get("data.shape", "?")
    lines.append(f"Data: {data}, shape {shape}.")
    result = f"{summary['n_epochs']} epoch(s) in {summary['fit_time_s']:.1f} s, {status}"
    if pruned:
        result += " (pruned by Optuna)"
    if "final_valid_acc" in summary:
        result += (f"; validation accuracy {summary['final_valid_acc']:.4f} "
                   f"(best {summary['best_valid_acc']:.4f})")
        if "valid_ece" in summary:
            result += f", ECE {summary['valid_ece']:.4f}"
    elif "final_train_loss" in summary:
        result += f"; final training loss {summary['final_train_loss']:.4f}"
    lines.append(result + ".")
    return "\n\n".join(lines)


def penultimate_activations(est, X):
    """Inputs of the module's last Linear layer for ``X`` (a float tensor), as a numpy array."""
    import torch

    last = [m for m in est.module_.modules() if isinstance(m, torch.nn.Linear)][-1]
    captured = []
    handle = last.register_forward_hook(lambda mod, inp, out: captured.append(inp[0].detach().cpu()))
    try:
        est.module_.eval()
        with torch.no_grad():
            est.module_(X.to(next(est.module_.parameters()).device))
    finally:
        handle.remove()
    return torch.cat(captured).numpy()


class WeightSnapshots(Callback):
    """Keep a sample of every weight layer after each epoch, for the weight-histogram figure."""

    def __init__(self, max_values=20000):
        self.max_values = max_values

    def initialize(self):
        self.snapshots_ = {}
        return self

    def on_epoch_end(self, net, **kwargs):
        import torch

        epoch = len(net.history)
        for name, p in net.module_.named_parameters():
            if p.dim() < 2:
                continue
            flat = p.detach().reshape(-1)
            if flat.numel() > self.max_values:
                idx = torch.linspace(0, flat.numel() - 1, self.max_values).long().to(flat.device)
                flat = flat[idx]
            self.snapshots_.setdefault(name, []).append((epoch, flat.cpu().numpy().copy()))


__all__ = ["MlflowRunLogger", "RunContext", "WeightSnapshots"]
