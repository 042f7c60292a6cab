"""The experiment report, rebuilt from a real sqlite MLflow store filled the way the runner
fills it (a parent run per experiment and protocol, a child run per cell); nothing is trained."""

import json
import math
import re

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


def test_claims_on_values_that_did_not_train_are_not_assessable():
    # The quick protocol trains a few steps on tiny data: values sit near chance (0.1), and a
    # "similar" claim on them held, a "best" one failed, on numbers that say nothing.
    assert report.UNTRAINED_ACCURACY == pytest.approx(0.2)
    claims = [{"text": "s-chance", "kind": "similar", "a": "lr=0.001", "b": "lr=0.0001"},
              {"text": "b-one-chance", "kind": "better", "a": "lr=0.1", "b": "lr=0.001"},
              {"text": "s-trained", "kind": "similar", "a": "lr=0.1", "b": "lr=0.01"},
              {"text": "best", "kind": "best", "a": "lr=0.1"},
              {"text": "dec", "kind": "decreasing"},
              {"text": "dec-part", "kind": "decreasing", "a": "lr=0.1", "b": "lr=0.01"},
              {"text": "worst-chance", "kind": "worst", "a": "lr=0.001"},
              {"text": "worst-trained", "kind": "worst", "a": "lr=0.01"}]
    exp = _grid_exp(claims)
    rows = _rows({"lr=0.1": [0.95, 0.951, 0.952], "lr=0.01": [0.949, 0.95, 0.951],
                  "lr=0.001": [0.11, 0.115, 0.12], "lr=0.0001": [0.10, 0.09, 0.11],
                  "lr=1e-05": [None, None]})
    checked = {c["text"]: c for c in report.check_claims(exp, report.summarize(exp, rows))}
    held = {text: c["held"] for text, c in checked.items()}
    assessable = {text for text, c in checked.items() if c["assessable"]}
    assert held == {"s-chance": None, "b-one-chance": None, "s-trained": True, "best": None,
                    "dec": None, "dec-part": True, "worst-chance": True, "worst-trained": False}
    assert assessable == {"s-trained", "dec-part", "worst-chance", "worst-trained"}
    assert checked["s-chance"]["evidence"] == (
        "not assessable: lr=0.001 and lr=0.0001 scored at chance (0.1150, 0.1000), so the "
        "comparison says nothing")
    assert checked["b-one-chance"]["evidence"] == (
        "not assessable: lr=0.001 scored at chance (0.1150), so the comparison says nothing")
    assert checked["best"]["evidence"].endswith("(0.1150, 0.1000), so the ranking says nothing")
    assert checked["dec"]["evidence"].endswith("so the trend says nothing")
    # "worst" is about a value that does not train: at chance it is at the floor, and the
    # other value at chance (lower by noise) ties with it; a trained value is not the worst.
    assert checked["worst-chance"]["evidence"] == (
        "lr=0.001 scored at chance (0.1150), the floor; lr=0.0001 too (0.1000); the lowest "
        "value that trained: lr=0.01 0.9500")
    assert checked["worst-trained"]["evidence"].startswith("lr=0.01 0.9500; the lowest")

    # Nothing trained: not even "worst" can rank; every seed diverged is a result, judged as
    # before (the seeds' "overflow"), and so is a value above the threshold.
    rows = _rows({"lr=0.1": [0.11, 0.12], "lr=0.01": [0.1, 0.1], "lr=0.001": [0.21, 0.22],
                  "lr=0.0001": [None, None]})
    exp = _grid_exp([{"text": "w", "kind": "worst", "a": "lr=0.1"},
                     {"text": "w-div", "kind": "worst", "a": "lr=0.0001"},
                     {"text": "b-div", "kind": "better", "a": "lr=0.001", "b": "lr=0.0001"},
                     {"text": "b-div-chance", "kind": "better", "a": "lr=0.01", "b": "lr=0.0001"}])
    checked = {c["text"]: c for c in report.check_claims(exp, report.summarize(exp, rows))}
    assert {t: (c["held"], c["assessable"]) for t, c in checked.items()} == {
        "w": (True, True), "w-div": (True, True), "b-div": (True, True),
        "b-div-chance": (None, False)}
    assert checked["w-div"]["evidence"].startswith("every seed of lr=0.0001 diverged, the floor")
    rows = _rows({"lr=0.1": [0.11, 0.12], "lr=0.01": [0.1, 0.1], "lr=0.0001": [None, None]})
    (claim,) = report.check_claims(exp := _grid_exp([{"text": "w", "kind": "worst",
                                                      "a": "lr=0.1"}]),
                                   report.summarize(exp, rows))
    assert (claim["held"], claim["assessable"]) == (None, False)
    assert claim["evidence"] == ("not assessable: lr=0.1 and lr=0.01 scored at chance (0.1150, "
                                 "0.1000), so the ranking says nothing")


def test_the_report_and_its_metrics_tell_not_assessable_from_not_judged():
    # The quick protocol's zero and He at chance; one Xavier cell has no result yet.
    exp = Experiment.from_dict({**SPEC, "claims": SPEC["claims"] + [
        {"text": "He beats zero", "kind": "better", "a": "He", "b": "zero"}]})
    rows = _rows({"zero": [0.1135, 0.1135, 0.1135], "He": [0.11, 0.10, 0.12],
                  "Xavier": [0.96, 0.965]})
    summary = report.summarize(exp, rows)
    claims = report.check_claims(exp, summary, waiting={"Xavier": 1})
    assert [(c["held"], c["assessable"]) for c in claims] == [(None, True)] * 5 + [(None, False)]
    md = report.markdown(exp, "quick", summary, claims, missing=1, total=9)
    assert "- ? He and Xavier are within noise (similar): not judged yet: 1 cell(s) of Xavier" in md
    assert ("- ? He beats zero (better): not assessable: He and zero scored at chance (0.1100, "
            "0.1135), so the comparison says nothing\n") in md
    assert ("A value whose mean test accuracy is at most 0.20 (chance, 0.10 with ten classes, "
            "plus 0.10) did not train under this protocol") in md
    got = report.Report(rows=rows, summary=summary, claims=claims, markdown=md, missing=[None])
    metrics = {m.key: m.value for m in report._result_metrics(got)}
    assert {k: v for k, v in metrics.items() if k.startswith("report/")} == {
        "report/n_missing_cells": 1, "report/claims_held": 0, "report/claims_failed": 0,
        "report/claims_not_judged": 5, "report/claims_not_assessable": 1}
    # Once Xavier is complete, "zero does not train" is judged: zero is at the floor.
    claims = {c["text"]: c for c in report.check_claims(exp, summary)}
    assert claims["Zero initialization does not train"]["held"] is True
    assert claims["He and Xavier are within noise"]["assessable"] is False
    trained = report.check_claims(exp, report.summarize(exp, _rows(TEST)))
    assert all(c["assessable"] for c in trained)
    assert "did not train under this protocol" not in report.markdown(
        exp, "fast", report.summarize(exp, _rows(TEST)), trained)


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


def _drawn_inside(fig, texts):
    fig.canvas.draw()  # the layout is made at draw time, as when the PNG is saved
    renderer, box = fig.canvas.get_renderer(), fig.bbox
    for text in texts:
        bb = text.get_window_extent(renderer)
        assert box.x0 <= bb.x0 and bb.x1 <= box.x1 and box.y0 <= bb.y0 and bb.y1 <= box.y1, (
            f"{text.get_text()!r} is drawn at {bb.extents}, outside the figure {box.extents}")


def _text_of(fig, words):
    """The text artist of ``fig`` that reads ``words`` once its line breaks are undone."""
    from matplotlib.text import Text

    (text,) = [t for t in fig.findobj(Text) if " ".join(t.get_text().split()) == words]
    return text


def test_long_titles_and_labels_are_drawn_inside_the_figures():
    # seed 002's title, cut at both edges of accuracy.png and curves.png ("igmoid, tanh and ReLU,
    # MLP 128..."), with long labels: slanted ticks and the curves' legend, outside the axes
    title = "Sigmoid, tanh and ReLU, MLP 128 with momentum, a title as long as they come (seed 002)"
    labels = ["ReLU, default init · no dropout", "ReLU, Glorot · dropout 0.2", "ELU, Glorot"]
    exp = Experiment.from_dict({**SPEC, "title": title, "baseline": labels[0], "claims": [],
                                "seed_reported": {},
                                "axes": [{"param": "init", "values": ["a", "b", "c"],
                                          "labels": labels}]})
    summary = report.summarize(exp, _rows({v: [0.9, 0.91] for v in labels}))
    fig = report.accuracy_figure(exp, summary)
    (ax,) = fig.axes
    heading = _text_of(fig, title)
    assert "\n" in heading.get_text()  # wrapped at words, none lost
    _drawn_inside(fig, [heading, ax.xaxis.label, ax.yaxis.label, *ax.get_xticklabels(),
                        *ax.get_legend().get_texts()])
    fig = report.curves_figure(exp, {v: [[0.5, 0.7, 0.8]] for v in labels})
    (ax,) = fig.axes
    _drawn_inside(fig, [_text_of(fig, f"{title}: validation accuracy"), ax.xaxis.label,
                        ax.yaxis.label, *ax.get_legend().get_texts()])
    # a short title stays on one line
    short = Experiment.from_dict({**SPEC, "title": "Init"})
    assert "\n" not in _text_of(report.accuracy_figure(short, summary), "Init").get_text()


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
    assert m["report/claims_held"] + m["report/claims_failed"] + m["report/claims_not_judged"] \
        + m["report/claims_not_assessable"] == len(built.claims)
    assert m["report/claims_not_assessable"] == 0
    assert json.loads(run.data.tags["mlflow.loggedArtifacts"]) == [
        {"path": "results.json", "type": "table"}]
    local = client.download_artifacts(pid, "report.md")
    with open(local, encoding="utf-8") as f:
        assert f.read() == built.markdown


_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def _row_cells(line):
    assert line.startswith("|") and line.endswith("|") and not line.endswith("\\|"), line
    return [cell.strip() for cell in _UNESCAPED_PIPE.split(line[1:-1])]


def gfm_tables(md):
    """Every table of ``md`` as (header, rows), checked against what GitHub-flavoured Markdown
    and MLflow's description view (showdown, github flavour) need to render it: a blank line
    before and after, a ``|---|`` row right below the header with as many columns, every row
    with as many cells (a pipe inside a cell escaped, or it starts another)."""
    lines, tables, i = md.split("\n"), [], 0
    while i < len(lines):
        if not lines[i].startswith("|"):
            assert not re.fullmatch(r"[|:\- ]*-{3,}[|:\- ]*", lines[i].strip()) \
                or "|" not in lines[i], f"a |---| row with no table header: {lines[i]!r}"
            i += 1
            continue
        j = i
        while j < len(lines) and lines[j].startswith("|"):
            j += 1
        where = f"the table at line {i + 1}: {lines[i]!r}"
        assert i == 0 or lines[i - 1] == "", f"no blank line before {where}"
        assert j == len(lines) or lines[j] == "", f"no blank line after {where}"
        assert j - i >= 2, f"{where} has no |---| row"
        header, delimiter, *rows = [_row_cells(line) for line in lines[i:j]]
        assert all(re.fullmatch(r":?-{3,}:?", c) for c in delimiter), f"{where}: {lines[i + 1]}"
        assert len(delimiter) == len(header), f"{where}: {len(delimiter)} columns in |---|"
        for row in rows:
            assert len(row) == len(header), f"{where}: a row of {len(row)} cells: {row}"
        tables.append((header, rows))
        i = j
    return tables


def _awkward_report():
    """A report whose labels, seed figures and claims hold pipes, brackets and line breaks,
    with each value's seed-0 figures: the main table and the figures' tables."""
    labels = ["zero | none", "He [uniform", "Xavier]"]
    exp = Experiment.from_dict({
        **SPEC, "baseline": "Xavier]", "cell_figures": ["embedding", "weight_histograms"],
        "axes": [{"param": "init", "values": ["zero", "he_uniform", "xavier_uniform"],
                  "labels": labels}],
        "seed_reported": {"zero | none": "over|flow", "He [uniform": "0.966 ±\n0.0008"},
        "claims": [{"text": "He | Xavier", "kind": "similar", "a": labels[1], "b": labels[2]}]})
    summary = report.summarize(exp, _rows({"zero | none": [0.1, 0.11], "He [uniform": [0.9, 0.91],
                                            "Xavier]": [0.92, 0.93]}))
    md = report.markdown(exp, "fast", summary, report.check_claims(exp, summary), missing=2,
                         total=9)
    images = {f"cells/{report._slug(v)}/{name}.png": b"" for v in labels[:2]
              for name in exp.cell_figures}
    return exp, md + "\n" + "\n".join(report._images_markdown(exp, images))


def test_every_table_of_a_report_is_valid_gfm(built):
    (header, rows), = gfm_tables(built.markdown)
    assert header == ["value", "n", "test accuracy (mean ± std)", "Δ vs baseline [95% CI]",
                      "verdict", "epochs", "seed reported"]
    assert [r[0] for r in rows] == ["zero", "He", "Xavier"]
    exp, md = _awkward_report()
    tables = gfm_tables(md)
    assert [len(h) for h, _ in tables] == [7, 2, 2]
    (header, rows), *figures = tables
    assert [r[0] for r in rows] == ["zero \\| none", "He [uniform", "Xavier]"]
    assert rows[0][-1] == "over\\|flow" and rows[1][-1] == "0.966 ± 0.0008"
    assert figures[0] == (["zero \\| none", "He [uniform"],
                          [["![embedding: zero \\| none](figures/cells/zero_none/embedding.png)",
                            "![embedding: He \\[uniform](figures/cells/He_uniform/embedding.png)"]])
    # the description MLflow shows, cut to fit a tag at every length: never a broken table
    for limit in range(300, len(md), 7):
        gfm_tables(report._note(md, limit=limit))


def test_a_gfm_parser_reads_the_tables_as_written():
    markdown_it = pytest.importorskip("markdown_it")  # the docs' extra brings it
    _, md = _awkward_report()
    tokens = markdown_it.MarkdownIt("commonmark").enable("table").parse(md)
    parsed, table = [], None
    for token in tokens:
        if token.type == "table_open":
            table = []
            parsed.append(table)
        elif token.type == "tr_open":
            table.append([])
        elif token.type == "inline" and table is not None and table and token.map is not None \
                and token.level > 0:
            table[-1].append(token.content)
        elif token.type == "table_close":
            table = None
    expected = [[h] + r for h, r in gfm_tables(md)]
    assert len(parsed) == len(expected) == 3
    for got, want in zip(parsed, expected):
        assert got == [[c.replace("\\|", "|") for c in row] for row in want]


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
