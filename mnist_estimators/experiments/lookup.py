"""What the experiment runner and its report look up in the MLflow store: the store itself,
checked before any training, an experiment's latest parent run, and the cells done under it."""

from __future__ import annotations

from .. import tracking
from ..tracking import store
from .spec import ExperimentError

TAG = "experiment."  # the prefix of the runner's run tags


def open_checked_store():
    """This process's MLflow store, opened (and checked reachable, for a server) before any
    training: a server that is down is an error that names it and the local fallback."""
    uri, root = tracking.resolve_uri()
    try:
        client = tracking.open_store(uri, root)
        if store.is_remote(uri):
            store.check_reachable(uri)
    except Exception as exc:
        raise ExperimentError(
            f"The MLflow tracking store {uri} cannot be used ({type(exc).__name__}: {exc}). "
            "Start it, or unset MLFLOW_TRACKING_URI to use the local ./mlruns store, or run "
            "with tracking off (MNIST_ESTIMATORS_TRACKING=0: then nothing is resumable)") from exc
    return client


def find_parent(client, exp, protocol):
    """The latest parent run of this experiment and protocol, to resume, or None."""
    found = store.call(client.get_experiment_by_name, exp.name)
    if found is None:
        return None
    runs = store.call(client.search_runs, [found.experiment_id],
                   filter_string=f"tags.`{TAG}parent` = 'true' and "
                                 f"tags.`{TAG}protocol` = '{protocol}'",
                   order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


SUPERSEDED = TAG + "superseded"  # "no" while a run is its cell's latest, else the id of its result


def is_result(status, outcome):
    """Whether a cell's run is its result: FINISHED with outcome "ok", or a fit that diverged
    (the seeds' "overflow": a result, not an error)."""
    return (outcome == "ok" and status == "FINISHED") or outcome == "diverged"


def done_cells(client, parent_run_id):
    """Ids of the cells with a result (``is_result``) under ``parent_run_id``."""
    exp_id = store.call(client.get_run, parent_run_id).info.experiment_id
    done, token = set(), None
    while True:
        page = store.call(client.search_runs, [exp_id],
                       filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
                       max_results=1000, page_token=token)
        for r in page:
            outcome = r.data.tags.get(TAG + "outcome")
            if is_result(r.info.status, outcome):
                done.add(r.data.tags.get(TAG + "cell_id"))
        token = page.token
        if not token:
            return done
