"""Every example of the README and of the documentation is run as written (team rule).

The ```python blocks and the ``mnist-estimators ...`` command lines are read from README.md and
the documentation's pages (``docs/**/*.md``) when the tests run, never copied here, and run
unchanged:

- the python blocks of one section (a page's ``## `` heading; before the first one, the page's
  ``# `` title) run in order, in one fresh namespace, with ``exec``, in a temporary working
  directory, so that MLflow tracking goes to ``./mlruns`` there (the default:
  ``MLFLOW_TRACKING_URI`` is unset); every python section of every page runs;
- the command lines of the sections in ``BASH_SECTIONS`` run as subprocesses, in one temporary
  directory: README first, then the documentation's pages in the order of their tables of
  contents, each page's in page order. Every other ```bash block is listed in
  ``NOT_RUN_BLOCKS`` with the reason, so that nothing documented goes untested silently.

A page that includes part of the README (``docs/getting-started.md`` includes its set-up and
tour with MyST's ``{include}`` directive) holds no code block of its own for it: the included
examples are read, and run, from README.md only, once.

Speed comes from the data, not from editing the examples: ``$MNIST_ESTIMATORS_DATA``, which
``load_mnist`` reads first and at call time, points at a folder of 600 training and 200 test
images taken from the real MNIST files (``../shared/datasets/mnist``; these tests skip when it
is absent). The set-up commands are checked by ``test_readme.py``, the documentation's build
by ``test_docs.py``.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import FULL_MNIST, write_idx
from mnist_estimators import load_mnist

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
# What Sphinx generates under docs/ (gitignored): not pages anyone wrote.
GENERATED = ("_build", "auto_examples", "api/generated", "api/backreferences")
N_TRAIN, N_TEST = 600, 200
CODE_LANGS = {"python", "bash", "text", ""}  # "": a plain block (a layout, a cluster recipe)
# MyST directives that would hide code from the tests below, which look for ```python/```bash.
CODE_DIRECTIVES = {"{code-block}", "{code}", "{code-cell}", "{sourcecode}"}


# --------------------------------------------------------------------------- reading the pages


@dataclass(frozen=True)
class Block:
    file: str      # the page, from the repository root: "README.md", "docs/user-guide/tracking.md"
    lang: str      # the fence's info string, first word: "python", "bash", "", or "{directive}"
    section: str   # the "## " heading it is under (sub-headings do not start a new section),
                   # or the page's "# " title before its first "## "
    line: int      # the page's line number of the block's first line of code
    code: str
    args: str = ""  # what follows the info string's first word (a directive's argument)

    @property
    def key(self):
        return (self.file, self.section)


def _generated(path):
    rel = path.relative_to(DOCS).as_posix()
    return any(rel == g or rel.startswith(g + "/") for g in GENERATED)


def _toctree_entries(page):
    """The pages a page's ```{toctree} blocks list, in order (targets without ".md", relative
    to the page, or to docs/ with a leading "/"; "Title <target>" entries too)."""
    entries = []
    for block in read_blocks(page):
        if block.lang != "{toctree}":
            continue
        for line in block.code.splitlines():
            line = line.strip()
            if not line or line.startswith(":"):
                continue
            target = re.fullmatch(r".*<(.+)>", line)
            target = target.group(1) if target else line
            base = DOCS if target.startswith("/") else page.parent
            entries.append((base / (target.lstrip("/") + ".md")).resolve())
    return entries


def doc_pages():
    """The documentation's markdown pages, in the order of their tables of contents:
    docs/index.md's toctree depth first, then any page no toctree reaches, by name."""
    pages = sorted(p.resolve() for p in DOCS.rglob("*.md") if not _generated(p))
    order = []

    def visit(page):
        if page in order or page not in pages:
            return
        order.append(page)
        for entry in _toctree_entries(page):
            visit(entry)

    visit((DOCS / "index.md").resolve())
    for page in pages:
        visit(page)
    return order


def pages():
    """README.md first, then the documentation's pages in their tables of contents' order."""
    return [README] + doc_pages()


def read_blocks(path):
    """The fenced blocks of one markdown page, in order. A MyST directive (```{toctree},
    ```{include}, ````{note}...) is a block too, and the fences inside it are read as well."""
    rel = path.resolve().relative_to(ROOT).as_posix()
    blocks, section, stack = [], None, []  # stack: the open fences, outermost first
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        top = stack[-1] if stack else None
        if top is not None:
            marker, lang, args, first, lines = top
            closing = re.match(rf"^\s*({re.escape(marker[0])}{{{len(marker)},}})\s*$", line)
            if closing:
                stack.pop()
                blocks.append(Block(rel, lang, section, first, "\n".join(lines) + "\n", args))
                continue
            lines.append(line)
            if not lang.startswith("{"):
                continue  # inside a code block: nothing else is markup
        opening = re.match(r"^(`{3,}|~{3,})\s*(\S*)\s*(.*)$", line)
        if opening:
            stack.append((opening.group(1), opening.group(2), opening.group(3).strip(),
                          number + 1, []))
        elif top is None and line.startswith("# ") and section is None:
            section = line[2:].strip()  # the page's title
        elif top is None and line.startswith("## "):
            section = line[3:].strip()
    assert not stack, f"{rel}: the code block opened at line {stack[-1][3] - 1} is not closed"
    return blocks


def all_blocks():
    return [block for page in pages() for block in read_blocks(page)]


def python_sections():
    """(page, section) -> its python blocks, README first, then the pages in toctree order."""
    sections = {}
    for block in all_blocks():
        if block.lang == "python":
            sections.setdefault(block.key, []).append(block)
    return sections


def section_id(key):
    return f"{key[0]}::{key[1]}"


def test_every_code_block_is_python_bash_or_plain_text():
    # A ```py or ```sh block, or a {code-block} directive, would escape the tests below, which
    # look for python and bash.
    langs = {}
    for block in all_blocks():
        if not block.lang.startswith("{") or block.lang in CODE_DIRECTIVES:
            langs.setdefault(block.lang, f"{block.file}:{block.line - 1}")
    assert set(langs) <= CODE_LANGS, {lang: where for lang, where in langs.items()
                                      if lang not in CODE_LANGS}
    assert any(key[0] == "README.md" for key in python_sections()), (
        "README.md has no ```python block any more")
    assert len(doc_pages()) > 1, "no documentation pages found under docs/"


def test_an_included_readme_range_is_run_once():
    """A page that includes a range of another page (```{include}) renders that range's
    examples, but holds no code block for them: they are read, and run, from the included page
    only. Its markers must be in the included page, once each, and no example is read twice."""
    includes = [b for b in all_blocks() if b.lang == "{include}"]
    assert any(b.file == "docs/getting-started.md" and b.args == "../README.md"
               for b in includes), "docs/getting-started.md no longer includes the README"
    for block in includes:
        source = (ROOT / block.file).parent / block.args
        text = source.read_text(encoding="utf-8")
        options = dict(re.findall(r"^:([\w-]+):\s*(.*)$", block.code, re.M))
        for option in ("start-after", "end-before"):
            if option in options:
                assert text.count(options[option]) == 1, (
                    f"{block.file}:{block.line - 1}: {options[option]!r} is in {block.args} "
                    f"{text.count(options[option])} times, not once")
        if source.resolve() == README and "start-after" in options:
            # the README's examples that the page shows are run, from README.md
            first = text[:text.index(options["start-after"])].count("\n") + 1
            last = (text[:text.index(options["end-before"])].count("\n") + 1
                    if "end-before" in options else text.count("\n") + 1)
            shown = [b for b in read_blocks(README)
                     if b.lang == "python" and first < b.line < last]
            run = [b for blocks in python_sections().values() for b in blocks]
            assert all(b in run for b in shown)
            if block.file == "docs/getting-started.md":
                assert python_sections()[("README.md", "Five-minute tour")] == [
                    b for b in shown if b.section == "Five-minute tour"], (
                    "the getting-started page no longer includes the whole tour")
    seen = {}
    for block in all_blocks():
        if block.lang in ("python", "bash"):
            where = f"{block.file}:{block.line}"
            assert block.code not in seen, f"{where} repeats the example at {seen[block.code]}"
            seen[block.code] = where


# --------------------------------------------------------------------------- the small data


@pytest.fixture(scope="module")
def small_mnist(tmp_path_factory):
    """A folder of the four IDX files holding 600 train / 200 test images of the real MNIST."""
    if not (FULL_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"full MNIST not found at {FULL_MNIST}: the README examples load it")
    folder = tmp_path_factory.mktemp("small_mnist")
    rng = np.random.default_rng(0)
    for subset, prefix, n in (("train", "train", N_TRAIN), ("test", "t10k", N_TEST)):
        X, y = load_mnist(subset, data_home=FULL_MNIST, as_images=True)
        keep = np.sort(rng.choice(len(X), size=n, replace=False))
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", X[keep])
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", y[keep])
    return folder


@pytest.fixture
def readme_env(small_mnist, tmp_path, monkeypatch):
    """What a user has who follows the README: data in $MNIST_ESTIMATORS_DATA (here the small
    folder), no MLFLOW_TRACKING_URI (so runs go to ./mlruns), tracking on (the `tracking` mark),
    and a working directory of their own."""
    import mlflow

    monkeypatch.setenv("MNIST_ESTIMATORS_DATA", str(small_mnist))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(None)  # no URI left over from another test in this process
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --------------------------------------------------------------------------- MLflow store checks


def store_runs(cwd):
    """Every run in ``cwd/mlruns`` (the README's default store), all experiments."""
    import mlflow

    db = cwd / "mlruns" / "mlflow.db"
    assert db.is_file(), f"no MLflow store at {db}: the examples were not tracked"
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(experiments, max_results=10000)


def assert_runs_complete(runs):
    """Every run FINISHED: none left RUNNING, none FAILED or KILLED (a pruned trial is a
    result: FINISHED, tagged optuna.pruned)."""
    assert runs
    for run in runs:
        status = run.info.status
        assert status == "FINISHED", (run.info.run_name, status)  # pruned trials too


def children(runs, parent):
    return [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


def named(runs, name):
    found = [r for r in runs if r.info.run_name == name]
    assert len(found) == 1, (name, sorted(r.info.run_name for r in runs))
    return found[0]


# --------------------------------------------------------------------------- python blocks

TRACKING = ("docs/user-guide/tracking.md", "What a run holds")
# Names a section uses but that the pages define only in an earlier section. The tracking
# page's "What a run holds" fits on `X, y`, which the README's "Five-minute tour" defines
# (`X, y = load_mnist("train")`; the page says so); a reader runs it after the tour, so it gets
# the tour's line, here on the small data. No other section needs a prelude.
PRELUDES = {
    TRACKING: (
        "from mnist_estimators import load_mnist\n"
        "X, y = load_mnist('train')\n"),
}


def assigned_names(code):
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def check_tour(ns, cwd):
    X, X_test, clf, grid = ns["X"], ns["X_test"], ns["clf"], ns["grid"]
    # load_mnist read $MNIST_ESTIMATORS_DATA, at call time
    assert X.shape == (N_TRAIN, 784) and X.dtype == np.uint8 and X_test.shape == (N_TEST, 784)
    assert len(clf.history_) == clf.max_epochs == 10
    assert clf.score(X_test, ns["y_test"]) > 0.6
    n_candidates = len(grid.cv_results_["params"])
    assert n_candidates == 12 and grid.n_splits_ == 3 and set(grid.best_params_) == {
        "optimizer", "activation", "hidden_sizes"}
    client, runs = store_runs(cwd)
    assert_runs_complete(runs)
    # one run per fit: clf, every candidate x fold and the refit, cross_validate's 3 folds
    fits = [r.data.tags.get("estimator_class") for r in runs]
    assert fits.count("MLPClassifier") == 1 + n_candidates * grid.n_splits_ + 1, fits
    assert fits.count("SoftmaxRegressionClassifier") == 3, fits


def check_tracking(ns, cwd):
    import mlflow

    clf, X = ns["clf"], ns["X"]
    client, runs = store_runs(cwd)
    assert_runs_complete(runs)
    run = client.get_run(clf.last_run_id_)
    assert run.info.status == "FINISHED" and run.data.tags["model_uri"] == clf.last_model_uri_
    assert {"epoch/valid_acc", "summary/fit_time_s", "summary/n_epochs"} <= set(run.data.metrics)
    # the logged model gives the estimator's own predictions
    np.testing.assert_array_equal(ns["model"].predict(X[:50]), clf.predict(X[:50]))
    # the search: a parent with one child per candidate x fold, plus the refit
    search = named(runs, "GridSearchCV · mlp · 2 candidates × 3 folds")
    assert len(children(runs, search)) == 2 * 3 + 1
    assert "best_cv_score" in search.data.metrics
    # the cross-validation: a parent with its 3 folds and their mean
    cv = named(runs, "cv")
    assert len(children(runs, cv)) == 3 and "test_score_mean" in cv.data.metrics
    # the registered model and its alias
    version = client.get_model_version_by_alias("mnist-mlp", "champion")
    assert version.run_id == clf.last_run_id_
    champion = mlflow.pyfunc.load_model("models:/mnist-mlp@champion")
    np.testing.assert_array_equal(champion.predict(X[:50]), clf.predict(X[:50]))


def check_ensembles(ns, cwd):
    X = ns["X"]
    assert X.shape == (N_TRAIN, 784)
    client, runs = store_runs(cwd)
    assert_runs_complete(runs)
    # the ensemble: a parent with a child per member, and the whole ensemble as its model
    vote = named(runs, "VotingClassifier · mlp + softmax (soft)")
    assert vote.info.run_id == ns["vote"].last_run_id_
    assert vote.data.params.get("ensemble.voting") == "soft"
    assert sorted(r.info.run_name for r in children(runs, vote)) == ["mlp-256-128", "softmax"]
    np.testing.assert_array_equal(ns["ensemble"].predict(X[:50]), ns["vote"].predict(X[:50]))


def check_study(ns, cwd):
    import optuna

    result, X = ns["result"], ns["X"]
    assert X.shape == (N_TRAIN, 784)
    assert 0 < result.best_value <= 1 and result.best_params
    assert result.best_estimator.predict(X[:10]).shape == (10,)
    study = optuna.load_study(study_name="mlp", storage="sqlite:///studies.db")
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 30, states
    client, runs = store_runs(cwd)
    assert_runs_complete(runs)
    parent = named(runs, "mlp")
    trials = [r for r in runs if "optuna.trial" in r.data.tags]
    assert len(trials) == 30 and all(r in children(runs, parent) for r in trials)
    pruned = [r for r in trials if "optuna.pruned" in r.data.tags]
    assert len(pruned) == states.count("PRUNED")
    assert parent.data.metrics["best_value"] == pytest.approx(result.best_value)


# (page, section) -> what its examples must have done (beyond raising nothing)
CHECKS = {
    ("README.md", "Five-minute tour"): check_tour,
    TRACKING: check_tracking,
    ("docs/user-guide/ensembles.md", "Ensembles"): check_ensembles,
    ("docs/user-guide/searches.md", "Hyperparameter studies (Optuna)"): check_study,
}


def test_every_check_and_prelude_names_a_python_section():
    # a check keyed by a section that moved or was renamed would silently check nothing
    sections = python_sections()
    for key in list(CHECKS) + list(PRELUDES):
        assert key in sections, f"no ```python block under {section_id(key)!r}: update the key"


# `tracking`: the examples are tracked, as a user's are (tests without the mark run with it off).
@pytest.mark.parametrize("section", list(python_sections()), ids=section_id)
@pytest.mark.tracking
@pytest.mark.full_mnist
@pytest.mark.slow
def test_python_examples_run_as_written(section, readme_env):
    from mnist_estimators import tracking

    blocks = python_sections()[section]
    ns = {"__name__": "__main__"}
    prelude = PRELUDES.get(section)
    if prelude is not None:
        # a prelude only supplies what the section itself leaves undefined
        defined = set().union(*(assigned_names(b.code) for b in blocks)) - {"load_mnist"}
        overlap = assigned_names(prelude) & defined
        assert not overlap, f"{section_id(section)!r} now defines {overlap}: drop its prelude"
        exec(compile(prelude, f"<prelude of {section_id(section)}>", "exec"), ns)
    try:
        for block in blocks:
            # compiled at its line numbers in its page: a traceback points into that page
            code = compile("\n" * (block.line - 1) + block.code, str(ROOT / block.file), "exec")
            exec(code, ns)
    finally:
        tracking.autolog(False)  # the tracking sections turn it on for this whole process
    CHECKS.get(section, lambda ns, cwd: None)(ns, readme_env)
    if (readme_env / "mlruns" / "mlflow.db").is_file():
        assert_runs_complete(store_runs(readme_env)[1])


# --------------------------------------------------------------------------- command lines

# (page, section) whose ```bash blocks' command lines run, in page order: README first, then the
# documentation's pages in their tables of contents' order (so `train ... -o mlp.pkl` runs
# before `predict mlp.pkl ...` on the same page).
BASH_SECTIONS = (
    ("docs/getting-started.md", "Look at the runs"),
    ("docs/user-guide/tracking.md", "Serving a model"),
    ("docs/user-guide/searches.md", "Hyperparameter studies (Optuna)"),
    ("docs/user-guide/experiments.md", "The seed experiments"),
    ("docs/user-guide/command-line.md", "Command line"),
)
# (page, section) whose ```bash blocks are not run here, and why. Every ```bash block is in one
# of the two (test_every_bash_block_is_run_or_says_why); every ```python block is run.
NOT_RUN_BLOCKS = {
    ("README.md", "Set-up: two commands"):
        "the set-up commands: test_readme.py checks them, and .ci/run runs the second",
    ("README.md", "Documentation"):
        "builds this documentation and serves it until stopped: test_docs.py runs the build",
}
# Command lines that are not run, and why. The set-up commands are test_readme.py's.
NOT_RUN = {
    ("mnist-estimators", "ui"): "starts the MLflow UI server, which runs until stopped",
    ("mlflow", "models", "serve"): "starts a REST server, which runs until stopped",
    ("pip", "install"): "installs optuna-dashboard from the network and starts its server",
}
PLACEHOLDER = re.compile(r"\b(RUN_ID|MODEL_ID)\b")  # the reader substitutes their own id


def test_every_bash_block_is_run_or_says_why():
    bash = [b for b in all_blocks() if b.lang == "bash"]
    for block in bash:
        where = f"{block.file}:{block.line - 1} ({block.section!r})"
        assert (block.key in BASH_SECTIONS) != (block.key in NOT_RUN_BLOCKS), (
            f"{where}: a ```bash block must be in BASH_SECTIONS (run) or in NOT_RUN_BLOCKS "
            "(with the reason), not in neither or both")
    for key in list(BASH_SECTIONS) + list(NOT_RUN_BLOCKS):
        assert any(b.key == key for b in bash), f"no ```bash block under {section_id(key)!r}"


def readme_commands():
    """(page:line, argv) of each command line to run, README first, then the documentation's
    pages in toctree order, each in page order; and the skipped ones."""
    run, skipped = [], []
    blocks = [b for b in all_blocks() if b.lang == "bash"]
    for key in BASH_SECTIONS:
        assert any(b.key == key for b in blocks), f"no bash block under {section_id(key)!r}"
    for block in blocks:
        if block.key not in BASH_SECTIONS:
            continue
        for offset, line in enumerate(block.code.splitlines()):
            argv = shlex.split(line, comments=True)  # "# ..." comments dropped
            if not argv:
                continue
            where = f"{block.file}:{block.line + offset}"
            reason = next((why for prefix, why in NOT_RUN.items()
                           if tuple(argv[:len(prefix)]) == prefix), None)
            if reason is None and PLACEHOLDER.search(line):
                reason = "holds a placeholder id"
            if reason is not None:
                skipped.append((where, line, reason))
                continue
            assert argv[0] == "mnist-estimators", f"{where}: no rule for running {line!r}"
            assert not {"&&", "||", "|", ";", ">", "<"} & set(argv), (
                f"{where}: a shell construct in {line!r}; these lines run without a shell")
            run.append((where, argv))
    return run, skipped


def write_digit_pngs(folder, X):
    """The user's `my_digits/` folder: real MNIST test digits drawn as a user's own would be,
    dark ink on white, 112x112 PNGs (predict inverts, crops and rescales them)."""
    from PIL import Image

    folder.mkdir()
    for i, image in enumerate(X):
        Image.fromarray(255 - image.reshape(28, 28)).resize((112, 112), Image.BILINEAR).save(
            folder / f"digit_{i}.png")
    return sorted(folder.glob("*.png"))


def check_command(argv, out, cwd, pngs):
    """What each subcommand must have made or printed (exit status 0 is checked before)."""
    command = argv[1]
    if command == "demo":
        for name in ("softmax", "mlp", "cnn"):
            assert (cwd / "models" / f"{name}.pkl").is_file()
            assert re.search(rf"^\| {name} \| 0\.\d{{4}} \|", out, re.M), out[-2000:]
    elif command == "train":
        output = argv[argv.index("-o") + 1]
        assert (cwd / output).is_file() and f"saved to {output}" in out
    elif command == "evaluate":
        n = len(list((cwd / argv[argv.index("--images") + 1]).glob("*/*.png"))) \
            if "--images" in argv else N_TEST
        accuracy = re.search(rf"^accuracy (\d\.\d{{4}}) on {n} images", out, re.M)
        assert accuracy and 0 <= float(accuracy.group(1)) <= 1, out
    elif command == "predict":
        fmt = argv[argv.index("--format") + 1] if "--format" in argv else "text"
        inputs = [a for i, a in enumerate(argv[3:], 3) if not a.startswith("--")
                  and argv[i - 1] not in ("--format", "--turn")]
        expected = [p.name for a in inputs for p in (
            sorted((cwd / a).glob("*.png")) if (cwd / a).is_dir() else [cwd / a])]
        assert expected and set(expected) <= {p.name for p in pngs}, (inputs, expected)
        if fmt == "csv":
            import csv
            import io

            rows = [(r["file"], r["digit"], r["probability"])
                    for r in csv.DictReader(io.StringIO(out))]
        else:
            rows = [tuple(line.split()) for line in out.splitlines()]
        assert [Path(r[0]).name for r in rows] == expected, out  # one row per image, in order
        for _, label, probability in rows:
            assert label in "0123456789" and len(label) == 1 and 0 < float(probability) <= 1
    elif command == "experiment" and argv[2] == "gradcheck":
        assert "every difference is within eps² = 0.0001" in out, out
    elif command == "reproduce":
        seeds = argv[argv.index("--seeds") + 1:]
        for seed in seeds:
            assert (cwd / "models" / f"{argv[2]}-seed{seed}.pkl").is_file()
        assert re.search(rf"test accuracy 0\.\d+ \+- 0\.\d+ over {len(seeds)} seed\(s\)", out), out
    elif command == "tune":
        import optuna

        storage, name = argv[argv.index("--storage") + 1], argv[argv.index("--study-name") + 1]
        study = optuna.load_study(study_name=name, storage=storage)
        states = [t.state.name for t in study.trials]
        assert states.count("COMPLETE") + states.count("PRUNED") == int(
            argv[argv.index("--trials") + 1]), states
        assert "best value 0." in out
    elif command == "experiment" and argv[2] == "list":
        assert re.search(r"^seed004-init +seed 004 ", out, re.M), out
    elif command == "experiment":  # run, report: the markdown report on stdout
        assert re.search(r"^\| ReLU \| 5 \| 0\.\d{4} ± 0\.\d{4} \|", out, re.M), out
        if "--output" in argv:
            folder = cwd / argv[argv.index("--output") + 1]
            assert (folder / "report.md").read_text().strip() == out.strip()
    elif command == "search":
        assert re.search(r"best cv score 0\.\d{4} with \{", out), out


@pytest.mark.timeout(900)
@pytest.mark.tracking
@pytest.mark.full_mnist
@pytest.mark.slow
def test_command_lines_run_as_written(readme_env):
    commands, skipped = readme_commands()
    assert commands
    env = dict(os.environ)  # MNIST_ESTIMATORS_DATA set, MLFLOW_TRACKING_URI unset: readme_env
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    assert shutil.which("mnist-estimators", path=env["PATH"]), "the console script is not installed"
    # `predict mlp.pkl my_digits/` reads the user's own images: made here, before the commands.
    X_test, y_test = load_mnist("test")
    pngs = write_digit_pngs(readme_env / "my_digits", X_test[:6])
    seven = write_digit_pngs(readme_env / "sevens", X_test[y_test == 7][:1])[0]  # `seven.png`
    pngs.append(seven.rename(readme_env / "seven.png"))
    # `evaluate mlp.pkl --images drawings/`: the drawing page's labelled folder, drawn here
    from mnist_estimators import strokes

    strokes.make_set(readme_env / "drawings", per_digit=3)
    for where, argv in commands:
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=readme_env, env=env, capture_output=True, text=True,
                              timeout=600)
        print(f"{where}: {shlex.join(argv[:3])} ... {time.perf_counter() - start:.1f} s")
        assert proc.returncode == 0, (
            f"{where}: {shlex.join(argv)} exited {proc.returncode}\n--- stdout\n"
            f"{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")
        check_command(argv, proc.stdout, readme_env, pngs)
    for where, line, reason in skipped:
        print(f"{where}: not run, {reason}: {line}")
    ran = {argv[1] for _, argv in commands}
    assert {"demo", "train", "evaluate", "predict", "reproduce", "tune", "search",
            "experiment"} <= ran, ran
    assert {line.split()[0] for _, line, _ in skipped} <= {"mnist-estimators", "mlflow", "pip"}
    _, runs = store_runs(readme_env)
    assert_runs_complete(runs)
