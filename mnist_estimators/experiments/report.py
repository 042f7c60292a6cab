"""An experiment's report, rebuilt from the MLflow store alone: one row per cell (value x seed),
a summary per value with its difference from the baseline, the seed's claims checked against
our numbers, two figures and a Markdown page.

``build(client, parent_run_id, exp, protocol)`` reads the runner's parent run and its children;
``log(client, parent_run_id, report)`` puts the report back on the parent run, and
``write(report, folder)`` writes it to a folder. Nothing here trains or needs the runner: a
report can be rebuilt at any time, for instance after more seeds were added.
"""

from __future__ import annotations

import math
import re
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..persistence import atomic_write, write_json
from .lookup import SUPERSEDED, is_result

ROW_COLUMNS = ["value", "seed", "cell_id", "run_id", "status", "outcome", "test_accuracy",
               "train_accuracy", "best_valid_acc", "n_epochs", "fit_time_s", "attempts"]
SUMMARY_COLUMNS = ["value", "n", "n_diverged", "n_failed", "test_mean", "test_std", "train_mean",
                   "epochs_mean", "fit_time_mean", "seed_reported", "delta", "ci_low", "ci_high",
                   "p_value", "verdict"]
CONFIDENCE = 0.95
_METRICS = {"test_accuracy": "test_accuracy", "train_accuracy": "train_accuracy",
            "best_valid_acc": "summary/best_valid_acc", "n_epochs": "summary/n_epochs",
            "fit_time_s": "summary/fit_time_s"}
_CURVE_METRIC = "epoch/valid_acc"
_MARKS = {True: "✓", False: "✗", None: "?"}  # None: not judged (yet), or not assessable
# A value whose mean test accuracy is at most UNTRAINED_ACCURACY did not train under the
# protocol, and a claim that compares it says nothing (the quick protocol leaves most values
# there). Chance is 1/10 with MNIST's ten digits; the margin covers a net stuck on one class,
# which scores that class's share (0.09-0.11 on MNIST's test set, up to ~0.15 on the 300 test
# images of the quick protocol), or telling a couple of classes apart (~0.2). The lowest mean
# among the values that trained in the fast protocol's results is 0.36 (batch 128, plain SGD).
CHANCE_ACCURACY = 1 / 10
UNTRAINED_MARGIN = 0.1
UNTRAINED_ACCURACY = CHANCE_ACCURACY + UNTRAINED_MARGIN


@dataclass
class Report:
    rows: pd.DataFrame
    summary: pd.DataFrame
    claims: list
    markdown: str
    figures: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)  # "cells/SLUG/NAME.png" -> PNG bytes
    missing: list = field(default_factory=list)  # the cells (spec.Cell) with no result yet


# --------------------------------------------------------------------------- reading the store


def _children(client, parent):
    from mlflow.entities import ViewType

    runs, token = [], None
    while True:
        page = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
                                  run_view_type=ViewType.ACTIVE_ONLY, max_results=1000,
                                  page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _pick(runs):
    """A cell interrupted and run again has several runs; the latest FINISHED one is its result,
    a later KILLED or RUNNING attempt does not undo it."""
    by_time = sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))
    finished = [r for r in by_time if r.info.status == "FINISHED"]
    return (finished or by_time)[-1]


def _cells_runs(client, parent):
    """cell id -> the runs of that cell under ``parent`` (a ``Run``); runs without a cell id
    are not the runner's cells (e.g. nested by a fit)."""
    cells = {}
    for run in _children(client, parent):
        cell_id = run.data.tags.get("experiment.cell_id")
        if cell_id:
            cells.setdefault(cell_id, []).append(run)
    return cells


def mark_superseded(client, parent_run_id):
    """Tag each earlier run of a cell that has a result (``_pick``) ``experiment.superseded``
    = the result's run id: a KILLED attempt before a rerun, or a result a ``--force`` rerun
    replaced. The runner tags every cell's run "no" when it starts, so that the MLflow UI's
    filter ``tags.`experiment.superseded` = 'no'`` shows each cell's latest run only (MLflow
    3.10 cannot filter on a missing tag). Returns the number of runs tagged."""
    from ..tracking import store

    tagged = 0
    for runs in _cells_runs(client, store.call(client.get_run, parent_run_id)).values():
        result = _pick(runs)
        if not is_result(result.info.status, result.data.tags.get("experiment.outcome")):
            continue  # no result yet: nothing is superseded
        for run in runs:
            if run is not result and run.data.tags.get(SUPERSEDED) != result.info.run_id:
                store.call(client.set_tag, run.info.run_id, SUPERSEDED, result.info.run_id)
                tagged += 1
    return tagged


def _history(client, run_id, key=_CURVE_METRIC):
    """The metric by epoch as an array: index i is epoch i + 1 (steps are 1-based epochs);
    an epoch logged twice (a retried batch) keeps its last value, a missing one is NaN."""
    points = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    if not points:
        return np.array([])
    steps = {m.step: m.value for m in points}
    first = min(1, min(steps))
    out = np.full(max(steps) - first + 1, np.nan)
    for step, value in steps.items():
        out[step - first] = value
    return out


def collect(client, parent_run_id, cell_ids=None):
    """(rows, curves) of one parent run: one row per cell (its chosen run), and value -> the
    per-seed arrays of validation accuracy by epoch (seeds in order).

    ``cell_ids(n_seeds)``: the ids of the cells to keep (the experiment as its file now defines
    it) for seeds 0..n_seeds-1; the number of cells left out, runs of an earlier version of the
    file, is ``rows.attrs["stale"]``."""
    cells = _cells_runs(client, client.get_run(parent_run_id))
    stale = 0
    if cell_ids is not None:
        seeds = [int(s) for runs in cells.values()
                 if (s := runs[0].data.tags.get("experiment.seed", "")).isdigit()]
        keep = cell_ids(max(seeds, default=0) + 1)
        stale = len(set(cells) - keep)
        cells = {k: v for k, v in cells.items() if k in keep}
    records, histories = [], []
    for cell_id, runs in cells.items():
        run = _pick(runs)
        tags, metrics = run.data.tags, run.data.metrics
        seed = tags.get("experiment.seed", "")
        record = {"value": tags.get("experiment.value", ""),
                  "seed": int(seed) if seed.lstrip("-").isdigit() else -1,
                  "cell_id": cell_id, "run_id": run.info.run_id, "status": run.info.status,
                  "outcome": tags.get("experiment.outcome", ""), "attempts": len(runs)}
        for column, key in _METRICS.items():
            record[column] = float(metrics.get(key, np.nan))
        records.append(record)
        histories.append(_history(client, run.info.run_id))
    rows = pd.DataFrame(records, columns=ROW_COLUMNS).astype(
        {"seed": int, "attempts": int, **{column: float for column in _METRICS}})
    order = rows.sort_values(["value", "seed"]).index
    rows = rows.loc[order].reset_index(drop=True)
    curves = {}
    for i in order:
        if len(histories[i]):
            curves.setdefault(records[i]["value"], []).append(histories[i])
    rows.attrs["stale"] = stale
    return rows, curves


# --------------------------------------------------------------------------- statistics


def welch(a, b, confidence=CONFIDENCE):
    """Welch's t comparison of a - b from summary statistics, each ``(mean, std, n)`` (std with
    ddof=1): (difference, CI low, CI high, p-value), or None when either side has n < 2.

    The same numbers as ``scipy.stats.ttest_ind(a, b, equal_var=False)`` and its
    ``confidence_interval``; computed from the statistics so that claims can be checked from the
    summary table alone. Where both sides have zero spread scipy gives NaN; here the difference
    is then exact: a zero-width interval, p = 1 if it is 0, else 0.
    """
    from scipy import stats

    (ma, sa, na), (mb, sb, nb) = a, b
    if na < 2 or nb < 2 or not (np.isfinite(ma) and np.isfinite(mb)):
        return None
    delta = ma - mb
    va, vb = sa ** 2 / na, sb ** 2 / nb
    se = math.sqrt(va + vb)
    if se == 0:
        return delta, delta, delta, 1.0 if delta == 0 else 0.0
    df = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
    half = stats.t.ppf(0.5 + confidence / 2, df) * se
    p = 2 * stats.t.sf(abs(delta) / se, df)
    return delta, delta - half, delta + half, float(p)


def _stats(summary, label):
    row = summary.loc[summary["value"] == label]
    if row.empty:
        return None
    row = row.iloc[0]
    return float(row["test_mean"]), float(row["test_std"]), int(row["n"])


def _verdict(comparison):
    _, low, high, _ = comparison
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "within noise"


def summarize(exp, rows):
    """One row per value (``exp.labels()`` order, then any value the store has and the spec
    no longer does): successful seeds, test accuracy mean and std, and the difference from the
    baseline with its confidence interval, p-value and verdict.

    Only seeds whose outcome is "ok" count in the means (and in the mean epochs and fit time);
    diverged and failed seeds are counted apart. A value whose every seed diverged has verdict
    "diverged" rather than "n/a": that is the result, not missing data.
    """
    labels = list(exp.labels())
    labels += sorted(set(rows["value"]) - set(labels))
    records = []
    for label in labels:
        cell = rows[rows["value"] == label]
        ok = cell[(cell["outcome"] == "ok") & np.isfinite(cell["test_accuracy"].astype(float))]
        n = len(ok)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the mean of no seeds is NaN
            records.append({
                "value": label, "n": n,
                "n_diverged": int((cell["outcome"] == "diverged").sum()),
                "n_failed": int((cell["outcome"] == "failed").sum()),
                "test_mean": float(ok["test_accuracy"].mean()) if n else np.nan,
                "test_std": float(ok["test_accuracy"].std(ddof=1)) if n > 1 else np.nan,
                "train_mean": float(np.nanmean(ok["train_accuracy"])) if n else np.nan,
                "epochs_mean": float(np.nanmean(ok["n_epochs"])) if n else np.nan,
                "fit_time_mean": float(np.nanmean(ok["fit_time_s"])) if n else np.nan,
                "seed_reported": str(exp.seed_reported.get(label, "")),
            })
    summary = pd.DataFrame(records)
    base = _stats(summary, exp.baseline) if exp.baseline else None
    for record in records:
        delta = dict(delta=np.nan, ci_low=np.nan, ci_high=np.nan, p_value=np.nan, verdict="")
        if exp.baseline and record["value"] == exp.baseline:
            delta["verdict"] = "baseline"
        elif record["n"] == 0 and record["n_diverged"] > 0:
            delta["verdict"] = "diverged"
        elif base is not None:
            comparison = welch(_stats(summary, record["value"]), base)
            if comparison is None:
                delta["verdict"] = "n/a"
            else:
                delta.update(zip(("delta", "ci_low", "ci_high", "p_value"), comparison))
                delta["verdict"] = _verdict(comparison)
        record.update(delta)
    return pd.DataFrame(records, columns=SUMMARY_COLUMNS)


# --------------------------------------------------------------------------- claims


def _fmt(x, digits=4):
    return "—" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _p(p):
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _compare_text(a, b, comparison, sa, sb):
    d, low, high, p = comparison
    return (f"{a} − {b} = {d:+.4f} [{low:+.4f}, {high:+.4f}] ({CONFIDENCE:.0%} CI, {_p(p)}, "
            f"n = {sa[2]} vs {sb[2]})")


def _all_diverged(summary, label):
    row = summary.loc[summary["value"] == label]
    return not row.empty and int(row["n"].iloc[0]) == 0 and int(row["n_diverged"].iloc[0]) > 0


def _pairwise(kind, a, b, summary):
    da, db = _all_diverged(summary, a), _all_diverged(summary, b)
    if da and db:
        return kind == "similar", f"every seed of both {a} and {b} diverged"
    if da or db:
        # A value that never trained is unlike one that did, and worse than it.
        gone, other = (a, b) if da else (b, a)
        so = _stats(summary, other)
        if so is None or so[2] == 0:
            return None, f"every seed of {gone} diverged; {other} has no successful seed"
        mean = f"{other} {so[0]:.4f} (n = {so[2]})"
        return (False if kind == "similar" else db), f"every seed of {gone} diverged; {mean}"
    sa, sb = _stats(summary, a), _stats(summary, b)
    comparison = welch(sa, sb) if sa and sb else None
    if comparison is None:
        return None, (f"too few successful seeds to compare (n = {sa[2] if sa else 0} vs "
                      f"{sb[2] if sb else 0}; at least 2 each)")
    _, low, high, _ = comparison
    held = bool(low <= 0 <= high) if kind == "similar" else bool(low > 0)
    return held, _compare_text(a, b, comparison, sa, sb)


def _extreme(kind, a, summary):
    # Every seed diverged ranks below any accuracy; values with no result at all are left out.
    ranked = {r["value"]: (r["test_mean"] if r["n"] else -math.inf)
              for r in summary.to_dict("records") if r["n"] or r["n_diverged"]}
    if a not in ranked:
        return None, f"{a} has no successful seed"
    if len(ranked) < 2:
        return None, "fewer than two values have results"
    mean = ranked.pop(a)
    pick = max if kind == "best" else min
    rival = pick(ranked, key=ranked.get)
    held = mean >= ranked[rival] if kind == "best" else mean <= ranked[rival]
    held = bool(held) and not (kind == "best" and mean == -math.inf)

    def show(v, m):
        return f"{v} all diverged" if m == -math.inf else f"{v} {m:.4f}"

    word = "highest" if kind == "best" else "lowest"
    text = f"{show(a, mean)}; the {word} of the others: {show(rival, ranked[rival])}"
    sa, sr = _stats(summary, a), _stats(summary, rival)
    comparison = welch(sa, sr)
    if comparison is not None:
        text += "; " + _compare_text(a, rival, comparison, sa, sr)
    return held, text


def _monotone(kind, claim, labels, summary):
    if "a" in claim and "b" in claim:
        # "from a to b": the trend over that stretch of the axis, walked from a towards b
        i, j = labels.index(claim["a"]), labels.index(claim["b"])
        labels = labels[i:j + 1] if i <= j else labels[j:i + 1][::-1]
    means = [(v, s[0]) for v in labels if (s := _stats(summary, v)) and s[2] >= 1]
    if len(means) < 2:
        return None, "fewer than two values have successful seeds"
    sign = 1 if kind == "increasing" else -1
    held = all(sign * (m2 - m1) > 0 for (_, m1), (_, m2) in zip(means, means[1:]))
    return held, " → ".join(f"{v} {m:.4f}" for v, m in means)


def _claim_values(claim, labels):
    """The values whose results a claim reads."""
    kind, a, b = claim.get("kind"), claim.get("a"), claim.get("b")
    if kind in ("similar", "better"):
        return [a, b]
    if kind in ("increasing", "decreasing") and a in labels and b in labels:
        i, j = sorted((labels.index(a), labels.index(b)))
        return labels[i:j + 1]
    return labels  # best, worst, a trend over the whole axis


def _names(values):
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " and " + values[-1]


def _at_chance(summary, values):
    """[(value, mean)] of ``values`` whose successful seeds scored at chance on average; a value
    whose every seed diverged is not among them (divergence is a result of its own)."""
    records = {r["value"]: r for r in summary.to_dict("records")}
    return [(v, float(records[v]["test_mean"])) for v in values
            if v in records and records[v]["n"] and records[v]["test_mean"] <= UNTRAINED_ACCURACY]


def _untrained(kind, claim, labels, summary):
    """(held, evidence) of a claim that reads a value scoring at chance, else None.

    Such a claim is not assessable: under this protocol that value did not train, and what it
    is compared with says nothing about the seed's claim (``assessable`` False, ``held``
    None). The exception is ``worst``, whose point is a value that does not train (seed 004's
    "Zero initialization does not train"): chance is the floor, so a claimed value at chance (or
    whose every seed diverged) is the worst as soon as one other value trained, however the
    others at chance tie with it; and a claimed value that trained is not the worst when another
    stayed at chance, a real difference. Values whose every seed diverged are not at chance:
    divergence (the seeds' "overflow") is itself the result some claims are about, and
    ``_pairwise`` and ``_extreme`` judge it as before."""
    a = claim.get("a")
    if kind in ("best", "worst"):  # a ranking reads every value with a result
        read = [r["value"] for r in summary.to_dict("records") if r["n"] or r["n_diverged"]]
    else:
        read = _claim_values(claim, labels)
    chance = _at_chance(summary, read)
    if not chance:
        return None
    if kind == "worst":
        mean = dict(chance).get(a)
        if mean is None and not _all_diverged(summary, a):
            return None  # a trained: a value at chance is below it, a real difference
        trained = [(v, s[0]) for v in read if v != a and (s := _stats(summary, v))
                   and s[2] and s[0] > UNTRAINED_ACCURACY]
        if trained:
            low, low_mean = min(trained, key=lambda t: t[1])
            text = (f"{a} scored at chance ({mean:.4f})" if mean is not None
                    else f"every seed of {a} diverged") + ", the floor"
            also = [(v, m) for v, m in chance if v != a]
            if also:
                text += (f"; {_names([v for v, _ in also])} too "
                         f"({', '.join(f'{m:.4f}' for _, m in also)})")
            return True, f"{text}; the lowest value that trained: {low} {low_mean:.4f}"
    what = {"similar": "comparison", "better": "comparison",
            "best": "ranking", "worst": "ranking"}.get(kind, "trend")
    return None, (f"not assessable: {_names([v for v, _ in chance])} scored at chance "
                  f"({', '.join(f'{m:.4f}' for _, m in chance)}), so the {what} says nothing")


def check_claims(exp, summary, waiting=None):
    """Each of the seed's claims against the summary: a dict with its ``text``, ``kind``,
    ``held`` (True, False, or None where the data cannot tell), the ``evidence``, and
    ``assessable`` (False where a value it reads did not train: ``_untrained``).

    ``waiting``: value -> the number of its cells with no result yet (an unfinished store). A
    claim that reads such a value is not judged: a verdict on some of the seeds, or on a
    ranking without one of its values, could turn over once they finish."""
    labels = list(exp.labels())
    waiting = {v: n for v, n in (waiting or {}).items() if n}
    out = []
    for claim in exp.claims:
        kind, a, b = claim.get("kind"), claim.get("a"), claim.get("b")
        known = kind in ("similar", "better", "best", "worst", "increasing", "decreasing")
        short = [v for v in _claim_values(claim, labels) if v in waiting]
        untrained = None
        if kind in ("similar", "better") and (a is None or b is None):
            held, evidence = None, f"a `{kind}` claim needs both `a` and `b`"
        elif kind in ("best", "worst") and a is None:
            held, evidence = None, f"a `{kind}` claim needs `a`"
        elif known and short:
            held, evidence = None, "not judged yet: " + ", ".join(
                f"{waiting[v]} cell(s) of {v}" for v in short) + " have no result"
        elif known and (untrained := _untrained(kind, claim, labels, summary)):
            held, evidence = untrained
        elif kind in ("similar", "better"):
            held, evidence = _pairwise(kind, a, b, summary)
        elif kind in ("best", "worst"):
            held, evidence = _extreme(kind, a, summary)
        elif kind in ("increasing", "decreasing"):
            held, evidence = _monotone(kind, claim, labels, summary)
        else:
            held, evidence = None, f"unknown kind {kind!r}"
        out.append({"text": claim.get("text", f"{kind} {a or ''} {b or ''}".strip()),
                    "kind": kind, "held": held, "evidence": evidence,
                    "assessable": not (untrained and untrained[0] is None)})
    return out


# --------------------------------------------------------------------------- figures


def _figure(*size):
    # Constrained layout makes room for what is around the axes (slanted tick labels, a legend
    # outside on the right, the wrapped title): fixed margins cut long ones off the PNG.
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _title(fig, text, fontsize=12):
    """``text`` as the figure's title, wrapped at words to fit its width (an experiment's title
    runs to 90 characters; one line of it was cut off at both edges)."""
    title = fig.suptitle(text, fontsize=fontsize)
    renderer = fig.canvas.get_renderer()
    room = 0.96 * fig.bbox.width
    width = len(text)
    while width > 10 and title.get_window_extent(renderer).width > room:
        width -= 2
        title.set_text(textwrap.fill(text, width, break_long_words=False))
    return title


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def parse_reported(text):
    """(value, error) from a reported figure like ``"0.966 ± 0.0008"`` or ``"96.6%"`` (as a
    fraction), error None when absent; None when it is not a number (``"overflow"``)."""
    m = re.fullmatch(rf"\s*({_NUMBER})\s*(%?)\s*(?:(?:±|\+/-|\+-)\s*({_NUMBER})\s*%?)?\s*",
                     str(text))
    if not m:
        return None
    scale = 0.01 if m.group(2) or str(text).rstrip().endswith("%") else 1.0
    err = float(m.group(3)) * scale if m.group(3) else None
    return float(m.group(1)) * scale, err


def _series(exp, summary):
    """[(name, [(x, record), ...]), ...]: one series, or with two axes one per value of the
    first axis against the second; values the spec no longer has come last, on their own."""
    records = {r["value"]: r for r in summary.to_dict("records")}
    if len(exp.axes) == 2:
        ticks = list(exp.axes[1].labels)
        series = [(first, [(j, records[f"{first} · {second}"])
                           for j, second in enumerate(ticks) if f"{first} · {second}" in records])
                  for first in exp.axes[0].labels]
    else:
        ticks = list(exp.labels())
        series = [(None, [(j, records[v]) for j, v in enumerate(ticks) if v in records])]
    extra = [v for v in records if v not in set(exp.labels())]
    if extra:
        series.append(("not in the spec", [(len(ticks) + j, records[v])
                                           for j, v in enumerate(extra)]))
        ticks += extra
    return ticks, series


def accuracy_figure(exp, summary):
    """Test accuracy (mean, std error bars) per value in order; the seed's reported figures as
    hollow diamonds beside ours; the baseline ringed, with its mean as a dashed line."""
    ticks, series = _series(exp, summary)
    fig = _figure(max(5.0, 0.9 * len(ticks) + 2.5), 4)
    ax = fig.subplots()
    width = 0.3 / len(series)
    reported_label = f"seed {exp.source} reported"
    for g, (name, points) in enumerate(series):
        if not points:
            continue
        xs = np.array([x for x, _ in points], float) + (g - (len(series) - 1) / 2) * width
        means = np.array([r["test_mean"] for _, r in points], float)
        stds = np.nan_to_num(np.array([r["test_std"] for _, r in points], float))
        bars = ax.errorbar(xs, means, yerr=stds, fmt="o-" if name else "o", capsize=4,
                           label=name or "ours (mean ± std)")
        color = bars.lines[0].get_color()
        for x, (_, r) in zip(xs, points):
            if r["n"] == 0 and r["n_diverged"]:
                ax.annotate("all diverged", xy=(x, 0.03), xycoords=("data", "axes fraction"),
                            ha="center", va="bottom", rotation=90, fontsize=8, color=color)
            if r["value"] == exp.baseline and np.isfinite(r["test_mean"]):
                ax.plot([x], [r["test_mean"]], "o", ms=14, mfc="none", mec="black")
                ax.axhline(r["test_mean"], ls="--", lw=0.8, color="gray",
                           label=f"baseline ({exp.baseline})")
            parsed = parse_reported(r["seed_reported"])
            if parsed:
                ax.errorbar([x + 0.12], [parsed[0]],
                            yerr=None if parsed[1] is None else [parsed[1]], fmt="D",
                            mfc="none", color="C3", capsize=3, label=reported_label)
                reported_label = None
    slanted = len(ticks) > 4 or max(map(len, ticks), default=0) > 12
    ax.set_xticks(range(len(ticks)), ticks, rotation=20 if slanted else 0,
                  ha="right" if slanted else "center")
    ax.set_xlim(-0.6, len(ticks) - 0.4)
    ax.set(xlabel=exp.axes[-1].param or "value", ylabel="test accuracy")
    _title(fig, exp.title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return fig


def curves_figure(exp, curves):
    """Validation accuracy per epoch, the mean over seeds of each value (a band from the lowest
    to the highest seed), one line per value, overlaid."""
    fig = _figure(7, 4)
    ax = fig.subplots()
    order = [v for v in exp.labels() if v in curves] + sorted(set(curves) - set(exp.labels()))
    for value in order:
        seeds = [np.asarray(c, dtype=float) for c in curves[value] if len(c)]
        if not seeds:
            continue
        # Seeds may stop at different epochs (early stopping, divergence): pad with NaN and
        # average what each epoch has.
        grid = np.full((len(seeds), max(map(len, seeds))), np.nan)
        for i, c in enumerate(seeds):
            grid[i, :len(c)] = c
        epochs = np.arange(1, grid.shape[1] + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, low, high = np.nanmean(grid, 0), np.nanmin(grid, 0), np.nanmax(grid, 0)
        line, = ax.plot(epochs, mean, "o-" if len(epochs) < 20 else "-", ms=3,
                        label=f"{value} (n={len(seeds)})")
        if len(seeds) > 1:
            ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.15, lw=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="validation accuracy")
    _title(fig, f"{exp.title}: validation accuracy")
    if order:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


# --------------------------------------------------------------------------- Markdown


def _cell(text):
    """One table cell: on one line, its pipes escaped (an unescaped one starts a new cell)."""
    return re.sub(r"\s*[\r\n]+\s*", " ", str(text)).replace("|", "\\|")


def _table(lines, header, rows):
    """Append a table to ``lines`` as GitHub-flavoured Markdown, which MLflow's description
    view (showdown, github flavour) renders: a blank line before and after (showdown takes the
    lines up to the next blank one as rows), the header, a ``|---|`` row of as many columns,
    and rows of exactly as many cells, each escaped (``_cell``)."""
    if lines and lines[-1] != "":
        lines.append("")
    lines.append("| " + " | ".join(_cell(h) for h in header) + " |")
    lines.append("|" + "---|" * len(header))
    for row in rows:
        row = list(row)
        if len(row) != len(header):
            raise ValueError(f"a table row has {len(row)} cells, its header {len(header)}: {row}")
        lines.append("| " + " | ".join(_cell(x) for x in row) + " |")
    lines.append("")
    return lines


def protocol_text(exp, protocol):
    """``fast (max_epochs=5, train_size=10000)``: the protocol and what it changes."""
    spec = exp.protocols.get(protocol, {})
    parts = [f"{k}={v}" for k, v in spec.get("params", {}).items()]
    parts += [f"{k}={spec[k]}" for k in ("train_size", "test_size") if k in spec]
    text = f"{protocol} ({', '.join(parts)})" if parts else f"{protocol} (the base parameters)"
    return f"{text}: {spec['note']}" if spec.get("note") else text


def _n_text(r):
    text = str(r["n"])
    if r["n_diverged"]:
        text += f" (+{r['n_diverged']} diverged)"
    if r["n_failed"]:
        text += f" (+{r['n_failed']} failed)"
    return text


def _accuracy_text(r):
    if r["n"] == 0:
        return "all diverged" if r["n_diverged"] else "—"
    if r["n"] == 1:
        return _fmt(r["test_mean"])
    return f"{_fmt(r['test_mean'])} ± {_fmt(r['test_std'])}"


def _delta_text(r):
    if not np.isfinite(r["delta"]):
        return "—"
    return f"{r['delta']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}], {_p(r['p_value'])}"


def markdown(exp, protocol, summary, claims, stale=0, missing=0, total=0):
    """The report as Markdown: title, description, protocol, the table per value, the claims.
    ``missing`` of the ``total`` cells have no result yet."""
    lines = [f"# {exp.title}", ""]
    source = "our own study" if exp.source == "ours" else f"reproduces seed {exp.source}"
    lines += [f"Experiment `{exp.name}` ({source}); estimator `{exp.estimator}`"
              + (f", preprocessing `{exp.preprocessing}`" if exp.preprocessing != "none" else "")
              + (f", baseline **{exp.baseline}**." if exp.baseline else "."), ""]
    if exp.description:
        lines += [exp.description, ""]
    lines += [f"Protocol: {protocol_text(exp, protocol)}", ""]
    if missing:
        lines += [f"**{missing} of {total} cells have no result yet** (not run, interrupted or "
                  f"failed): `mnist-estimators experiment run {exp.name} --protocol {protocol}` "
                  "runs only those. The claims that read them are not judged.", ""]
    _table(lines, ["value", "n", "test accuracy (mean ± std)",
                   f"Δ vs baseline [{CONFIDENCE:.0%} CI]", "verdict", "epochs", "seed reported"],
           [(r["value"], _n_text(r), _accuracy_text(r), _delta_text(r), r["verdict"],
             _fmt(r["epochs_mean"], 1), r["seed_reported"]) for r in summary.to_dict("records")])
    lines += [f"n counts seeds that trained; Δ is Welch's t {CONFIDENCE:.0%} confidence "
              "interval for the difference of means; \"within noise\" when it contains 0; "
              "epochs: the mean number trained (fewer than the budget when a rule stopped "
              "the fit).", ""]
    if stale:
        lines += [f"{stale} cell(s) run under an earlier version of this experiment's file "
                  "(other parameters) are under the same parent run and left out here.", ""]
    lines += ["## Seed claims", ""]
    if not claims:
        lines += ["The experiment records no claims.", ""]
    for c in claims:
        lines.append(f"- {_MARKS[c['held']]} {c['text']} ({c['kind']}): {c['evidence']}")
    if claims:
        lines.append("")
    if any(not c.get("assessable", True) for c in claims):
        lines += [f"A value whose mean test accuracy is at most {UNTRAINED_ACCURACY:.2f} (chance, "
                  f"{CHANCE_ACCURACY:.2f} with ten classes, plus {UNTRAINED_MARGIN:.2f}) did not "
                  "train under this protocol: the claims that compare it are not assessable "
                  "here; a longer protocol can judge them.", ""]
    caveat = "" if protocol == "faithful" else (
        "; it is not the seed's own budget, so compare the ordering and differences with the "
        "seed's figures rather than the absolute numbers")
    lines.append(f"These numbers come from the **{protocol}** protocol{caveat}.")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- cells' own figures


def _slug(label):
    import re

    return re.sub(r"[^\w.-]+", "_", label).strip("_") or "value"


def cell_images(client, exp, rows):
    """The figures ``exp.cell_figures`` names, from the seed-0 run of each value (the runner
    asks that run for them): "cells/SLUG/NAME.png" -> PNG bytes, values in grid order. A value
    whose seed-0 run did not finish, or has no such figure, is left out."""
    import os

    out = {}
    if not exp.cell_figures or rows.empty:
        return out
    # MLflow draws a progress bar per download; it has no argument for it, only this variable
    quiet, os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = \
        os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"), "false"
    try:
        _download_cell_images(client, exp, rows, out)
    finally:
        if quiet is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = quiet
    return out


def _download_cell_images(client, exp, rows, out):
    import tempfile

    from mlflow.exceptions import MlflowException

    for label in exp.labels():
        pick = rows[(rows["value"] == label) & (rows["seed"] == 0) & (rows["status"] == "FINISHED")]
        if pick.empty:
            continue
        run_id = pick["run_id"].iloc[0]
        for name in exp.cell_figures:
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    path = client.download_artifacts(run_id, f"figures/{name}.png", tmp)
                except (MlflowException, OSError):
                    continue
                out[f"cells/{_slug(label)}/{name}.png"] = Path(path).read_bytes()


def _alt(text):
    """An image's alt text: a bracket in it would end it early."""
    return re.sub(r"([][])", r"\\\1", str(text))


def _images_markdown(exp, images):
    if not images:
        return []
    lines = ["## Seed 0 of each value", "",
             f"{', '.join(n.replace('_', ' ') for n in exp.cell_figures)}"
             + (f" (embedding: {dict(tsne='t-SNE', pca='PCA')[exp.embedding]} of the penultimate layer)"
                if "embedding" in exp.cell_figures else "")
             + ", from each value's seed-0 run; the same figures are on that run.", ""]
    for name in exp.cell_figures:
        row = [(label, f"cells/{_slug(label)}/{name}.png") for label in exp.labels()]
        row = [(label, path) for label, path in row if path in images]
        if row:
            _table(lines, [label for label, _ in row],
                   [[f"![{name}: {_alt(label)}](figures/{path})" for label, path in row]])
    return lines


# --------------------------------------------------------------------------- build, log, write


def build(client, parent_run_id, exp, protocol=None):
    """The report of the parent run ``parent_run_id`` (experiment ``exp``; ``protocol`` defaults
    to the parent's ``experiment.protocol`` tag)."""
    tags = client.get_run(parent_run_id).data.tags
    name = tags.get("experiment.name")
    if name is not None and name != exp.name:
        raise ValueError(f"run {parent_run_id} is experiment {name!r}, not {exp.name!r}")
    protocol = protocol or tags.get("experiment.protocol")
    if protocol is None:
        raise ValueError(f"run {parent_run_id} has no experiment.protocol tag; pass protocol=")
    # A file edited since some cells ran (a protocol's params, a value) leaves those runs under
    # the same parent with other cell ids: they are not this experiment's results any more.
    expected = {}

    def cell_ids(n_seeds):
        expected.update((c.id, c) for c in exp.cells(protocol, n_seeds=max(n_seeds, exp.seeds)))
        return set(expected)

    rows, curves = collect(client, parent_run_id, cell_ids=cell_ids)
    done = {r["cell_id"] for r in rows.to_dict("records") if is_result(r["status"], r["outcome"])}
    missing = [c for c in expected.values() if c.id not in done]
    summary = summarize(exp, rows)
    waiting = {}
    for cell in missing:
        waiting[cell.value] = waiting.get(cell.value, 0) + 1
    claims = check_claims(exp, summary, waiting)
    figures = {"accuracy.png": accuracy_figure(exp, summary),
               "curves.png": curves_figure(exp, curves)}
    images = cell_images(client, exp, rows)
    text = markdown(exp, protocol, summary, claims, stale=rows.attrs.get("stale", 0),
                    missing=len(missing), total=len(expected))
    if images:
        text += "\n" + "\n".join(_images_markdown(exp, images))
    return Report(rows=rows, summary=summary, claims=claims, markdown=text, figures=figures,
                  curves=curves, images=images, missing=missing)


def _save_figure(fig, f):
    fig.savefig(f, format="png", dpi=100)


def log(client, parent_run_id, report):
    """Put the report on the parent run: ``results.json`` (the summary, an MLflow table),
    ``report.md``, ``figures/*.png``, and the Markdown as the run's description."""
    import tempfile

    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

    from ..tracking import store

    existing = {a.path for a in store.call(client.list_artifacts, parent_run_id)}
    if "results.json" in existing:
        # log_table appends to an existing table; a rebuilt report replaces it instead, in the
        # format log_table writes (its loggedArtifacts tag is already on the run).
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "results.json"
            report.summary.to_json(path, orient="split", index=False, date_format="iso")
            store.call(client.log_artifact, parent_run_id, str(path))
    else:
        store.call(client.log_table, parent_run_id, data=report.summary,
                   artifact_file="results.json")
    store.call(client.log_text, parent_run_id, report.markdown, "report.md")
    for name, fig in report.figures.items():
        store.call(client.log_figure, parent_run_id, fig, f"figures/{name}",
                   save_kwargs={"dpi": 100})
    if report.images:
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in report.images.items():
                (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / name).write_bytes(data)
            store.call(client.log_artifacts, parent_run_id, str(Path(tmp) / "cells"), "figures/cells")
    store.call(client.set_tag, parent_run_id, MLFLOW_RUN_NOTE, _note(report.markdown))
    store.call(client.log_batch, parent_run_id, metrics=_result_metrics(report))


def _result_metrics(report):
    """The parent's own metrics, so that the runs table and the compare view show the results:
    ``test_mean/VALUE`` per value with a successful seed, and under ``report/`` the cells
    still missing and the claims held, failed, not judged (missing cells, too few seeds) and
    not assessable (a value they read did not train): the four add up to the claims."""
    import time

    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    values = {f"test_mean/{_slug(r['value'])}": r["test_mean"]
              for r in report.summary.to_dict("records") if np.isfinite(r["test_mean"])}
    held = [c["held"] for c in report.claims]
    not_assessable = sum(not c.get("assessable", True) for c in report.claims)
    values.update({"report/n_missing_cells": len(report.missing),
                   "report/claims_held": held.count(True),
                   "report/claims_failed": held.count(False),
                   "report/claims_not_judged": held.count(None) - not_assessable,
                   "report/claims_not_assessable": not_assessable})
    return [Metric(k, float(v), stamp, 0) for k, v in values.items()]


def _note(text, limit=None):
    """MLflow refuses a tag value over 8,000 characters; a longer report is cut at a line and
    points to the full ``report.md``. A table cut after its header, before its ``|---|`` row,
    loses the header too: alone, it would show as a line of pipes."""
    from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

    limit = limit or MAX_TAG_VAL_LENGTH
    if len(text) <= limit:
        return text
    tail = "\n\n… (cut here; the full report is the run's artifact `report.md`)\n"
    head = text[:limit - len(tail)]
    lines = head[:head.rfind("\n") + 1 or len(head)].rstrip("\n").split("\n")
    if len(lines) > 1 and lines[-1].startswith("|") and not lines[-2].startswith("|"):
        lines.pop()
    return "\n".join(lines).rstrip("\n") + tail


def write(report, folder):
    """Write ``report.md``, ``results.json`` (summary and claims) and ``figures/*.png`` to
    ``folder`` (the layout ``log`` gives the parent run), each file atomically. Returns the
    paths written."""
    folder = Path(folder)
    paths = []
    with atomic_write(folder / "report.md", "w") as f:
        f.write(report.markdown)
    paths.append(folder / "report.md")
    summary = report.summary.astype(object).where(report.summary.notna(), None)
    paths.append(write_json(folder / "results.json",
                            {"summary": summary.to_dict("records"), "claims": report.claims,
                             "missing_cells": [c.name for c in report.missing]}))
    for name, fig in report.figures.items():
        with atomic_write(folder / "figures" / name) as f:
            _save_figure(fig, f)
        paths.append(folder / "figures" / name)
    for name, data in report.images.items():
        with atomic_write(folder / "figures" / name) as f:
            f.write(data)
        paths.append(folder / "figures" / name)
    return paths


def rebuild(experiment, protocol="fast"):
    """The report of ``experiment`` (a name, a ``.toml`` path or an ``Experiment``) under
    ``protocol``, rebuilt from the MLflow store alone and logged again on its parent run."""
    from .. import tracking
    from .lookup import find_parent, open_checked_store
    from .spec import Experiment, ExperimentError, load

    exp = experiment if isinstance(experiment, Experiment) else load(experiment)
    exp.protocol(protocol)
    if not tracking.is_enabled():
        return None
    client = open_checked_store()
    parent = find_parent(client, exp, protocol)
    if parent is None:
        raise ExperimentError(f"No run of experiment {exp.name!r} under protocol {protocol!r} in "
                              f"{tracking.resolve_uri()[0]}; run it first: mnist-estimators "
                              f"experiment run {exp.name} --protocol {protocol}")
    mark_superseded(client, parent)
    report = build(client, parent, exp, protocol)
    log(client, parent, report)
    return report
