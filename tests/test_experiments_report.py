"""The experiment report, rebuilt from a real sqlite MLflow store filled the way the runner
fills it (a parent run per experiment and protocol, a child run per cell); nothing is trained."""

import json
import math

import mlflow
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from mlflow.entities import Metric
from scipy import stats

from mnist_estimators.experiments import report
from mnist_estimators.experiments.spec import Experiment

pytestmark = pytest.mark.tracking

SPEC = {
    "name": "t-report-init", "source": "004", "title": "Init, tiny", "estimator": "mlp",
    "description": "Three initializations; zero never trains.",
    "seeds": 3, "baseline": "Xavier", "base": {},
    "axes": [{"param": "init", "values": ["zero", "he_uniform", "xavier_uniform"],
              "labels": ["zero", "He", "Xavier"]}],
    "seed_reported": {"zero": "overflow", "He": "0.966 ± 0.0008", "Xavier": "0.967"},
    "claims": [
        {"text": "He and Xavier are within noise", "kind": "similar", "a": "He", "b": "Xavier"},
        {"text": "Zero initialization does not train", "kind": "worst", "a": "zero"},
        {"text": "Xavier beats He", "kind": "better", "a": "Xavier", "b": "He"},
        {"text": "He is the best", "kind": "best", "a": "He"},
        {"text": "Accuracy rises along the axis", "kind": "increasing"},
    ],
    "protocols": {"fast": {"params": {"max_epochs": 3}, "train_size": 1000}},
}
TEST = {"He": [0.950, 0.953, 0.951], "Xavier": [0.966, 0.969, 0.967]}
TRAIN = {"He": [0.99, 0.98, 0.97], "Xavier": [0.995, 0.99, 0.985]}
T0 = 1_700_000_000_000


@pytest.fixture(scope="module")
def exp():
    return Experiment.from_dict(SPEC)


def _child(client, exp_id, parent_id, cell, start, status="FINISHED", outcome="ok", test=None,
           train=None, curve=(), cell_id=None):
    tags = {"mlflow.parentRunId": parent_id, "experiment.value": cell.value,
            "experiment.seed": str(cell.seed), "experiment.outcome": outcome}
    if cell_id is not False:
        tags["experiment.cell_id"] = cell_id or cell.id
    run = client.create_run(exp_id, start_time=start, tags=tags, run_name=cell.name)
    rid = run.info.run_id
    metrics = [Metric("epoch/valid_acc", v, start + i, i + 1) for i, v in enumerate(curve)]
    metrics += [Metric("epoch/train_loss", 1.0 / (i + 1), start + i, i + 1)
                for i in range(len(curve))]
    one = {"summary/n_epochs": len(curve), "summary/fit_time_s": 2.0 + cell.seed,
           "summary/best_valid_acc": max(curve, default=math.nan)}
    if test is not None:
        one.update({"test_accuracy": test, "train_accuracy": train})
    metrics += [Metric(k, v, start + 100, len(curve)) for k, v in one.items()]
    client.log_batch(rid, metrics=metrics)
    client.set_terminated(rid, status, end_time=start + 1000)
    return rid


@pytest.fixture(scope="module")
def store(tmp_path_factory, exp):
    """A store with one parent (fast protocol) and its 9 cells: zero diverged on every seed;
    Xavier seed 1 was interrupted (KILLED, with a bogus accuracy) then run again; He seed 0
    finished and was later re-run and killed; plus runs that are not cells of this parent."""
    tmp = tmp_path_factory.mktemp("report")
    client = mlflow.MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    exp_id = client.create_experiment("experiments", artifact_location=(tmp / "art").as_uri())
    parent = client.create_run(exp_id, start_time=T0, run_name="t-report-init · fast", tags={
        "experiment.name": exp.name, "experiment.protocol": "fast", "experiment.source": "004"})
    pid = parent.info.run_id
    other = client.create_run(exp_id, start_time=T0).info.run_id
    ids, curves = {}, {}
    t = T0 + 10_000
    for cell in exp.cells("fast"):
        t += 10_000
        if cell.value == "zero":
            curve = [0.11, 0.098]
            ids[cell.value, cell.seed] = _child(client, exp_id, pid, cell, t, outcome="diverged",
                                                curve=curve)
        else:
            acc = TEST[cell.value][cell.seed]
            curve = [acc - 0.05, acc - 0.02] + ([] if (cell.value, cell.seed) == ("Xavier", 2)
                                               else [acc - 0.01])
            if (cell.value, cell.seed) == ("Xavier", 1):
                _child(client, exp_id, pid, cell, t, status="KILLED", outcome="failed",
                       test=0.5, train=0.5, curve=[0.3])
                t += 10_000
            ids[cell.value, cell.seed] = _child(client, exp_id, pid, cell, t, test=acc,
                                                train=TRAIN[cell.value][cell.seed], curve=curve)
            if (cell.value, cell.seed) == ("He", 0):
                _child(client, exp_id, pid, cell, T0 + 10**9, status="KILLED", test=0.1,
                       train=0.1, curve=[0.05])
        curves[cell.value, cell.seed] = curve
    cell = exp.cells("fast")[0]
    _child(client, exp_id, pid, cell, t + 1, test=0.2, train=0.2, cell_id=False)  # not a cell
    _child(client, exp_id, other, cell, t + 2, test=0.3, train=0.3, curve=[0.3])  # other parent
    client.set_terminated(pid)
    return dict(client=client, parent=pid, ids=ids, curves=curves, exp_id=exp_id)


@pytest.fixture(scope="module")
def built(store, exp):
    return report.build(store["client"], store["parent"], exp, "fast")


def test_collect_keeps_the_latest_finished_run_of_each_cell(store):
    rows, curves = report.collect(store["client"], store["parent"])
    assert list(rows.columns[:11]) == ["value", "seed", "cell_id", "run_id", "status", "outcome",
                                       "test_accuracy", "train_accuracy", "best_valid_acc",
                                       "n_epochs", "fit_time_s"]
    assert len(rows) == 9 and rows["cell_id"].is_unique
    by_cell = rows.set_index(["value", "seed"])
    for key, run_id in store["ids"].items():
        assert by_cell.loc[key, "run_id"] == run_id
    assert (rows["status"] == "FINISHED").all()
    assert by_cell.loc[("Xavier", 1), "test_accuracy"] == pytest.approx(0.969)
    assert by_cell.loc[("Xavier", 1), "attempts"] == 2
    assert by_cell.loc[("He", 0), "test_accuracy"] == pytest.approx(0.950)  # not the later kill
    assert np.isnan(by_cell.loc[("zero", 0), "test_accuracy"])
    assert (rows.loc[rows["value"] == "zero", "outcome"] == "diverged").all()
    assert by_cell.loc[("Xavier", 2), "n_epochs"] == 2
    assert by_cell.loc[("He", 1), "fit_time_s"] == 3.0
    assert sorted(curves) == ["He", "Xavier", "zero"]
    for value in curves:
        assert len(curves[value]) == 3
        for seed, curve in enumerate(curves[value]):
            np.testing.assert_allclose(curve, store["curves"][value, seed])


def test_summarize_matches_numpy_and_scipy(built, exp):
    s = built.summary.set_index("value")
    assert list(built.summary["value"]) == exp.labels() == ["zero", "He", "Xavier"]
    assert s.loc["zero", "n"] == 0 and s.loc["zero", "n_diverged"] == 3
    assert np.isnan(s.loc["zero", "test_mean"])
    for value, acc in TEST.items():
        assert s.loc[value, "n"] == 3 and s.loc[value, "n_diverged"] == 0
        assert s.loc[value, "test_mean"] == pytest.approx(np.mean(acc))
        assert s.loc[value, "test_std"] == pytest.approx(np.std(acc, ddof=1))
        assert s.loc[value, "train_mean"] == pytest.approx(np.mean(TRAIN[value]))
        assert s.loc[value, "fit_time_mean"] == pytest.approx(3.0)
    assert s.loc["Xavier", "epochs_mean"] == pytest.approx(8 / 3)
    welch = stats.ttest_ind(TEST["He"], TEST["Xavier"], equal_var=False)
    ci = welch.confidence_interval(0.95)
    assert s.loc["He", "delta"] == pytest.approx(np.mean(TEST["He"]) - np.mean(TEST["Xavier"]))
    assert (s.loc["He", "ci_low"], s.loc["He", "ci_high"]) == pytest.approx((ci.low, ci.high))
    assert s.loc["He", "p_value"] == pytest.approx(welch.pvalue)
    assert dict(s["verdict"]) == {"zero": "diverged", "He": "worse", "Xavier": "baseline"}
    assert s.loc["He", "seed_reported"] == "0.966 ± 0.0008"


def test_claims_from_the_store(built):
    held = {c["text"]: c["held"] for c in built.claims}
    assert held == {"He and Xavier are within noise": False,
                    "Zero initialization does not train": True,
                    "Xavier beats He": True,
                    "He is the best": False,
                    "Accuracy rises along the axis": True}
    evidence = {c["kind"]: c["evidence"] for c in built.claims}
    assert "zero all diverged" in evidence["worst"]
    assert "He 0.9513 → Xavier 0.9673" == evidence["increasing"]
    assert evidence["better"].startswith("Xavier − He = +0.0160 [")


def _rows(data):
    """Rows as collect gives them, from value -> list of test accuracies (None: diverged)."""
    out = []
    for value, accs in data.items():
        for seed, acc in enumerate(accs):
            ok = acc is not None
            out.append({"value": value, "seed": seed, "cell_id": f"{value}{seed}",
                        "run_id": f"r{value}{seed}", "status": "FINISHED",
                        "outcome": "ok" if ok else "diverged",
                        "test_accuracy": acc if ok else np.nan,
                        "train_accuracy": acc + 0.01 if ok else np.nan,
                        "best_valid_acc": np.nan, "n_epochs": 3.0, "fit_time_s": 1.0})
    return pd.DataFrame(out)


def _grid_exp(claims=(), baseline="lr=0.01"):
    return Experiment.from_dict({
        "name": "grid", "estimator": "mlp", "base": {}, "baseline": baseline,
        "axes": [{"param": "lr", "values": [0.1, 0.01, 0.001, 0.0001, 1e-5]}],
        "claims": list(claims), "protocols": {"quick": {}}})


def test_verdicts_and_claims_from_hand_made_rows():
    claims = [{"text": "s", "kind": "similar", "a": "lr=0.001", "b": "lr=0.01"},
              {"text": "b", "kind": "better", "a": "lr=0.1", "b": "lr=0.01"},
              {"text": "b-na", "kind": "better", "a": "lr=0.0001", "b": "lr=0.01"},
              {"text": "best", "kind": "best", "a": "lr=0.1"},
              {"text": "worst-na", "kind": "worst", "a": "lr=1e-05"},
              {"text": "dec", "kind": "decreasing"},
              {"text": "inc-part", "kind": "increasing", "a": "lr=0.001", "b": "lr=0.01"}]
    exp = _grid_exp(claims)
    rows = _rows({"lr=0.1": [0.97, 0.975, 0.972], "lr=0.01": [0.95, 0.952, 0.951],
                  "lr=0.001": [0.949, 0.953, 0.950, None], "lr=0.0001": [0.9]})
    summary = report.summarize(exp, rows)
    s = summary.set_index("value")
    assert list(summary["value"]) == exp.labels()
    assert dict(s["verdict"]) == {"lr=0.1": "better", "lr=0.01": "baseline",
                                  "lr=0.001": "within noise", "lr=0.0001": "n/a", "lr=1e-05": "n/a"}
    assert s.loc["lr=0.001", "n"] == 3 and s.loc["lr=0.001", "n_diverged"] == 1
    ci = stats.ttest_ind([0.97, 0.975, 0.972], [0.95, 0.952, 0.951],
                         equal_var=False).confidence_interval()
    assert (s.loc["lr=0.1", "ci_low"], s.loc["lr=0.1", "ci_high"]) == pytest.approx(tuple(ci))
    assert np.isnan(s.loc["lr=0.0001", "test_std"]) and np.isnan(s.loc["lr=0.0001", "delta"])
    held = {c["text"]: c["held"] for c in report.check_claims(exp, summary)}
    # lr=0.0001 has one seed: pairwise claims cannot tell, the trend still counts it.
    assert held == {"s": True, "b": True, "b-na": None, "best": True, "worst-na": None,
                    "dec": True, "inc-part": True}


def test_welch_from_statistics_is_scipy_and_handles_no_spread():
    a, b = [0.91, 0.95, 0.93, 0.96], [0.90, 0.915, 0.92]
    got = report.welch((np.mean(a), np.std(a, ddof=1), 4), (np.mean(b), np.std(b, ddof=1), 3))
    res = stats.ttest_ind(a, b, equal_var=False)
    assert got == pytest.approx((np.mean(a) - np.mean(b), *res.confidence_interval(), res.pvalue))
    assert report.welch((0.9, 0.0, 3), (0.8, 0.0, 3)) == pytest.approx((0.1, 0.1, 0.1, 0.0))
    assert report.welch((0.9, 0.01, 1), (0.8, 0.01, 3)) is None


def test_parse_reported():
    assert report.parse_reported("0.966 ± 0.0008") == (0.966, 0.0008)
    assert report.parse_reported("0.967") == (0.967, None)
    assert report.parse_reported("96.6%") == pytest.approx((0.966, None))
    assert report.parse_reported("overflow") is None
    assert report.parse_reported("") is None


def test_markdown_has_the_table_and_the_claims(built):
    md = built.markdown
    assert md.startswith("# Init, tiny\n")
    assert "Three initializations; zero never trains." in md
    assert "Protocol: fast (max_epochs=3, train_size=1000)" in md
    assert ("| value | n | test accuracy (mean ± std) | Δ vs baseline [95% CI] | verdict "
            "| epochs | seed reported |") in md
    assert "| zero | 0 (+3 diverged) | all diverged | — | diverged | — | overflow |" in md
    assert "| Xavier | 3 | 0.9673 ± 0.0015 | — | baseline | 2.7 | 0.967 |" in md
    assert "| He | 3 | 0.9513 ± 0.0015 | -0.0160 [" in md and "| worse | 3.0 | 0.966 ± 0.0008 |" in md
    assert "## Seed claims" in md
    assert "- ✗ He and Xavier are within noise (similar): He − Xavier = -0.0160" in md
    assert "- ✓ Zero initialization does not train (worst):" in md
    assert "the **fast** protocol" in md


def test_figures(built, exp):
    assert set(built.figures) == {"accuracy.png", "curves.png"}
    assert all(isinstance(f, Figure) for f in built.figures.values())
    ax = built.figures["accuracy.png"].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == exp.labels()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "baseline (Xavier)" in legend and "seed 004 reported" in legend
    lines = built.figures["curves.png"].axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["zero (n=3)", "He (n=3)", "Xavier (n=3)"]
    # Xavier seed 2 stopped after two epochs: epoch 3 is the mean of the other two seeds
    xavier = lines[2].get_ydata()
    assert xavier[2] == pytest.approx(np.mean([TEST["Xavier"][0], TEST["Xavier"][1]]) - 0.01)


def test_two_axes_draw_one_line_per_first_axis_value():
    exp = Experiment.from_dict({
        "name": "two", "estimator": "mlp", "base": {}, "baseline": "lr=0.1 · batch_size=32",
        "axes": [{"param": "lr", "values": [0.1, 0.01]},
                 {"param": "batch_size", "values": [32, 128]}],
        "protocols": {"quick": {}}})
    assert exp.labels()[1] == "lr=0.1 · batch_size=128"
    rows = _rows({"lr=0.1 · batch_size=32": [0.9, 0.91], "lr=0.1 · batch_size=128": [0.80, 0.81],
                  "lr=0.01 · batch_size=32": [None, None], "lr=0.01 · batch_size=128": [0.8]})
    summary = report.summarize(exp, rows)
    assert list(summary["verdict"]) == ["baseline", "worse", "diverged", "n/a"]
    ax = report.accuracy_figure(exp, summary).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["batch_size=32", "batch_size=128"]
    assert {"lr=0.1", "lr=0.01"} <= {t.get_text() for t in ax.get_legend().get_texts()}
    md = report.markdown(exp, "quick", summary, report.check_claims(exp, summary))
    assert "| lr=0.01 · batch_size=128 | 1 | 0.8000 | — | n/a | 3.0 |  |" in md
    assert "The experiment records no claims." in md


def test_a_parent_without_children_gives_an_empty_report(store, exp):
    client = store["client"]
    pid = client.create_run(store["exp_id"], tags={"experiment.name": exp.name,
                                                   "experiment.protocol": "fast"}).info.run_id
    empty = report.build(client, pid, exp)
    assert empty.rows.empty and empty.curves == {}
    assert list(empty.summary["n"]) == [0, 0, 0]
    assert [c["held"] for c in empty.claims] == [None] * 5
    assert "| He | 0 | — | — | n/a | — | 0.966 ± 0.0008 |" in empty.markdown


def test_log_puts_the_report_on_the_parent_and_rebuilding_replaces_it(store, built, exp):
    client, pid = store["client"], store["parent"]
    report.log(client, pid, built)
    report.log(client, pid, report.build(client, pid, exp))  # the protocol from the tag
    top = {a.path for a in client.list_artifacts(pid)}
    assert {"results.json", "report.md", "figures"} <= top
    assert {a.path for a in client.list_artifacts(pid, "figures")} == {
        "figures/accuracy.png", "figures/curves.png"}
    mlflow.set_tracking_uri(client.tracking_uri)  # load_table searches the global store
    table = client.load_table(store["exp_id"], "results.json", run_ids=[pid])
    assert list(table["value"]) == ["zero", "He", "Xavier"]  # replaced, not appended
    assert table.set_index("value").loc["He", "verdict"] == "worse"
    run = client.get_run(pid)
    assert run.data.tags["mlflow.note.content"] == built.markdown
    # the results as the parent's own metrics, for the runs table and the compare view
    m = run.data.metrics
    assert m["test_mean/He"] == pytest.approx(np.mean(TEST["He"]))
    assert m["test_mean/Xavier"] == pytest.approx(np.mean(TEST["Xavier"]))
    assert "test_mean/zero" not in m  # every seed diverged: no mean
    assert m["report/n_missing_cells"] == 0
    assert m["report/claims_held"] + m["report/claims_failed"] \
        + m["report/claims_not_judged"] == len(built.claims)
    assert json.loads(run.data.tags["mlflow.loggedArtifacts"]) == [
        {"path": "results.json", "type": "table"}]
    local = client.download_artifacts(pid, "report.md")
    with open(local, encoding="utf-8") as f:
        assert f.read() == built.markdown


def test_a_note_too_long_for_a_tag_is_cut_at_a_line():
    text = "".join(f"line {i}\n" for i in range(2000))
    note = report._note(text, limit=100)
    assert len(note) <= 100 and note.endswith("`report.md`)\n") and "\nline 3\n" in note
    assert report._note("short\n") == "short\n"


def test_build_refuses_another_experiments_run(store):
    other = _grid_exp()
    with pytest.raises(ValueError, match="t-report-init"):
        report.build(store["client"], store["parent"], other, "quick")


def test_write_to_a_folder(built, tmp_path):
    paths = report.write(built, tmp_path / "out")
    names = sorted(p.relative_to(tmp_path / "out").as_posix() for p in paths)
    assert names == ["figures/accuracy.png", "figures/curves.png", "report.md", "results.json"]
    assert (tmp_path / "out/report.md").read_text(encoding="utf-8") == built.markdown
    assert (tmp_path / "out/figures/curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((tmp_path / "out/results.json").read_text())
    assert [r["value"] for r in data["summary"]] == ["zero", "He", "Xavier"]
    assert data["summary"][0]["test_mean"] is None
    assert [c["held"] for c in data["claims"]] == [False, True, True, False, True]
    assert not list((tmp_path / "out").glob(".*.part"))


def test_cells_of_an_earlier_version_of_the_file_are_left_out(store, exp):
    # The fast protocol's budget changed after some cells ran: those runs stay under the same
    # parent with other cell ids, and are not this experiment's results any more.
    client = store["client"]
    old = Experiment.from_dict({**SPEC, "protocols": {"fast": {"params": {"max_epochs": 1},
                                                               "train_size": 1000}}})
    pid = client.create_run(store["exp_id"], start_time=T0, tags={
        "experiment.name": exp.name, "experiment.protocol": "fast"}).info.run_id
    now, before = exp.cells("fast")[3], old.cells("fast")[3]
    assert now.value == before.value == "He" and now.id != before.id
    _child(client, store["exp_id"], pid, now, T0 + 1, test=0.95, train=0.99, curve=[0.9, 0.95])
    _child(client, store["exp_id"], pid, before, T0 + 2, test=0.5, train=0.5, curve=[0.5])
    built = report.build(client, pid, exp, "fast")
    assert list(built.rows["cell_id"]) == [now.id] and built.rows.attrs["stale"] == 1
    assert "1 cell(s) run under an earlier version of this experiment's file" in built.markdown
    assert "| He | 1 | 0.9500 |" in built.markdown
    # collect alone keeps everything
    assert len(report.collect(client, pid)[0]) == 2


def test_earlier_runs_of_a_cell_name_the_run_that_replaced_them(store):
    client, pid = store["client"], store["parent"]
    assert report.mark_superseded(client, pid) == 2
    children = client.search_runs([store["exp_id"]], f"tags.mlflow.parentRunId = '{pid}'")
    marked = {r.info.run_id: r.data.tags["experiment.superseded"] for r in children
              if "experiment.superseded" in r.data.tags}
    ids = store["ids"]
    # Xavier seed 1's KILLED first attempt, and He seed 0's KILLED rerun after its result
    assert sorted(marked.values()) == sorted([ids["Xavier", 1], ids["He", 0]])
    assert not set(marked) & set(ids.values())  # a result is never marked
    assert report.mark_superseded(client, pid) == 0  # already marked


def test_an_unfinished_store_counts_missing_cells_and_judges_no_claim_that_reads_them(store):
    exp = Experiment.from_dict({**SPEC, "claims": SPEC["claims"] + [
        {"text": "He beats zero", "kind": "better", "a": "He", "b": "zero"}]})
    client = store["client"]
    pid = client.create_run(store["exp_id"], tags={"experiment.name": exp.name,
                                                   "experiment.protocol": "fast"}).info.run_id
    t = T0 + 2 * 10**9
    for cell in exp.cells("fast"):
        t += 10_000
        if cell.value == "zero":
            _child(client, store["exp_id"], pid, cell, t, outcome="diverged", curve=[0.1])
        elif (cell.value, cell.seed) == ("Xavier", 2):  # interrupted, and not run again yet
            _child(client, store["exp_id"], pid, cell, t, status="KILLED", outcome="",
                   curve=[0.5])
        else:
            _child(client, store["exp_id"], pid, cell, t, test=TEST[cell.value][cell.seed],
                   train=TRAIN[cell.value][cell.seed], curve=[0.9])
    rep = report.build(client, pid, exp)
    assert [c.name for c in rep.missing] == ["Xavier · seed 2"]
    assert "**1 of 9 cells have no result yet**" in rep.markdown
    assert "experiment run t-report-init --protocol fast" in rep.markdown
    held = {c["text"]: c["held"] for c in rep.claims}
    assert held.pop("He beats zero") is True  # reads only values with all their results
    assert set(held.values()) == {None}
    assert rep.claims[0]["evidence"] == "not judged yet: 1 cell(s) of Xavier have no result"
    assert report.mark_superseded(client, pid) == 0  # Xavier seed 2 has no result to name
