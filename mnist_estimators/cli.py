"""The ``mnist-estimators`` command: demo, train, evaluate, predict.

    mnist-estimators demo [--data-home DIR] [--output-dir models]
    mnist-estimators train --model mlp --param hidden_sizes=(512,256) --param max_epochs=5 -o mlp.pkl
    mnist-estimators evaluate mlp.pkl [--csv test.csv | --data-home DIR | --images drawings/ [--turn 0]]
    mnist-estimators predict mlp.pkl digit1.png digits/ | mnist-estimators predict mlp.pkl --csv x.csv
    mnist-estimators tune --pipeline cnn --trials 50 --timeout 600 --storage sqlite:///study.db --study-name cnn
    mnist-estimators search --pipeline mlp --grid '{"clf__lr": [0.001, 0.01]}'
    mnist-estimators reproduce cnn_best --seeds 0 1 2 [--json results.json]
    mnist-estimators ui [--port 5000]
    mnist-estimators draw --model cnn.pkl [--model models:/mnist-cnn@champion] [--port 8000]
    mnist-estimators experiment list | run NAME [--protocol fast] | report NAME | gradcheck
    mnist-estimators runs reap | mnist-estimators runs upload [models/unlogged]

Every fit is tracked in MLflow ($MLFLOW_TRACKING_URI, else ./mlruns/); `ui` opens that store.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time
import warnings
from pathlib import Path

# Light imports only: ``--help`` and a bad argument are answered before torch, scikit-learn,
# numpy or MLflow is imported; each command imports what it needs.
from .draw import turn_argument
from .persistence import load_model, save_model, write_json
from .pipelines import NAMES as PIPELINES

ESTIMATOR_NAMES = ("softmax", "mlp", "cnn")  # estimators.ESTIMATORS' keys (a test keeps them equal)


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _parse_param(text):
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw  # plain strings: optimizer=adam
    return key.strip(), value


def _load_data(args, subset):
    from .data import load_mnist, read_mnist_csv

    if getattr(args, "csv", None):
        return read_mnist_csv(args.csv), f"CSV {args.csv}"
    X, y, source = load_mnist(subset, data_home=args.data_home, return_source=True)
    return (X, y), f"MNIST {subset} ({source['kind']}: {source['path']}, {source['n']} images)"


def _build(name, params, verbose):
    from .estimators import ESTIMATORS

    est = ESTIMATORS[name](verbose=verbose)
    valid = est.get_params(deep=False)
    unknown = [key for key, _ in params if key not in valid and "__" not in key]
    if unknown:
        raise CLIError(f"--param {unknown[0]!r} is not a parameter of {type(est).__name__}; valid: "
                       + ", ".join(sorted(k for k in valid if k != "module")))
    try:
        est.set_params(**dict(params))
        # what fit checks first, checked before any data is read (fit warns again, once)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est._validate_hyperparams()
    except (ValueError, TypeError) as exc:
        raise CLIError(f"--param for {name}: {exc}") from None
    return est


def cmd_demo(args):
    (X, y), where = _load_data(args, "train")
    (X_test, y_test), test_where = _load_data(args, "test")
    print(f"train: {where}\ntest:  {test_where}", flush=True)
    rows = []
    for name in args.models:
        est = _build(name, [("random_state", args.seed)], verbose=1)
        print(f"\n== {name}: {type(est).__name__}", flush=True)
        start = time.perf_counter()
        est.fit(X, y)
        fit_s = time.perf_counter() - start
        acc = est.score(X_test, y_test)
        path = save_model(est, Path(args.output_dir) / f"{name}.pkl")
        rows.append((name, acc, fit_s, path))
    print("\n| model | test accuracy | fit time (s) | saved to |\n|---|---|---|---|")
    for name, acc, fit_s, path in rows:
        print(f"| {name} | {acc:.4f} | {fit_s:.1f} | {path} |")
    _where_runs_are()
    return 0


def _where_runs_are():
    from . import tracking

    if tracking.is_enabled():
        import mlflow

        print(f"\nruns logged to {mlflow.get_tracking_uri()}; `mnist-estimators ui` opens them")


def cmd_train(args):
    est = _build(args.model, args.param, verbose=0 if args.quiet else 1)  # bad --param first
    (X, y), where = _load_data(args, "train")
    print(f"training {type(est).__name__} on {where}", flush=True)
    start = time.perf_counter()
    est.fit(X, y)
    print(f"fit time: {time.perf_counter() - start:.1f} s")
    path = save_model(est, args.output)
    print(f"saved to {path}")
    _where_runs_are()
    return 0


def cmd_evaluate(args):
    """Accuracy on MNIST test or a CSV; with ``--images DIR``, the full report of
    ``evaluation.evaluate_images`` (confusion, worst mistakes) and an MLflow evaluation run."""
    if args.images is None:
        if args.turn:
            raise CLIError("--turn reads image files turned; it goes with --images (MNIST's and "
                           "a CSV's rows are frames already)")
        model = load_model(args.model)
        (X, y), where = _load_data(args, "test")
        acc = model.score(X, y)
        print(f"accuracy {acc:.4f} on {len(y)} images ({where})")
        return 0
    from .evaluation import evaluate_images

    if args.csv or args.data_home:
        raise CLIError("--images evaluates on a folder of labelled images; it does not go with "
                       "--csv or --data-home")
    result = evaluate_images(args.model, args.images, top=args.top, on_error=args.on_error,
                             turn=args.turn)
    print(result.report())
    if result.run_id:
        import mlflow

        print(f"\nevaluation run {result.run_id} in {mlflow.get_tracking_uri()}")
    return 0


def cmd_predict(args):
    """Digit and probability for each image (files and folders, in any mix) or CSV row.

    Like ``cat``, an input that fails (missing, unreadable, blank) is reported on stderr, naming
    it, and the others are still predicted; the exit status is then 2.
    """
    import numpy as np

    from . import hooks
    from .data import MNISTFormatError, image_files, preprocess_image, read_mnist_csv

    if not args.csv and not args.inputs:
        raise CLIError("predict needs image files, folders of images, or --csv FILE")
    hooks.defer_plugins()  # nothing fits here: tracking is not imported with the model
    model = load_model(args.model)
    if args.turn and not hasattr(model, "predict_proba"):  # said before the images are read
        raise CLIError(f"--turn {args.turn:g} keeps a digit's most confident reading, but "
                       f"{type(model).__name__} has no predict_proba; use --turn 0")
    rows, names, paths, failed = [], [], [], 0  # paths: the image file of each row, or None

    def report(exc):
        nonlocal failed
        failed += 1
        print(f"mnist-estimators predict: error: {exc}", file=sys.stderr)

    if args.csv:
        try:
            X, _ = read_mnist_csv(args.csv)
            rows += list(X)
            names += [f"{args.csv}:{i + 1}" for i in range(len(X))]
            paths += [None] * len(X)
        except (MNISTFormatError, OSError) as exc:
            report(exc)
    for given in args.inputs:
        try:
            files = image_files(given)
        except OSError as exc:
            report(exc)
            continue
        for path in files:
            try:
                rows.append(preprocess_image(path))
                names.append(str(path))
                paths.append(path)
            except (MNISTFormatError, OSError) as exc:
                report(exc)
    if rows:
        X = np.stack(rows)
        if hasattr(model, "predict_proba"):
            proba = np.array(model.predict_proba(X))
            from . import reading

            turn = reading.default_turn(model, args.turn)
            files = [i for i, p in enumerate(paths) if p is not None]
            if turn and files:  # image files only: a CSV row is a frame already
                proba[files] = reading.predict_proba(
                    model, [paths[i] for i in files], turn=turn, frames=X[files])
            labels, probs = np.asarray(model.classes_)[proba.argmax(axis=1)], proba.max(axis=1)
        else:
            labels, probs = model.predict(X), [None] * len(X)
        _print_predictions(names, labels, probs, args.format)
    return 2 if failed else 0


def _print_predictions(names, labels, probs, fmt):
    records = [{"file": name, "digit": label.item() if hasattr(label, "item") else label,
                "probability": None if p is None else round(float(p), 4)}
               for name, label, p in zip(names, labels, probs)]
    if fmt == "json":
        import json

        print(json.dumps(records, indent=2))
    elif fmt == "csv":
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=["file", "digit", "probability"],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    else:
        width = max(len(r["file"]) for r in records)
        for r in records:
            p = "-" if r["probability"] is None else f"{r['probability']:.3f}"
            print(f"{r['file']:<{width}}  {r['digit']}  {p}")


def _pipeline(name, params):
    from .pipelines import get

    module = get(name)
    try:
        return module, module.build_pipeline(**dict(params))
    except ValueError as exc:
        raise CLIError(f"--param for pipeline {name}: {exc}") from None


def cmd_tune(args):
    import optuna

    from .search import tune

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one progress line per trial is ours
    module, pipe = _pipeline(args.pipeline, args.param)
    if module.SPACE is None:
        raise CLIError(f"pipeline {args.pipeline} has no search space to tune (an ensemble of "
                       f"tuned members); `search --pipeline {args.pipeline}` runs its grid")
    (X, y), where = _load_data(args, "train")
    print(f"tuning pipeline {args.pipeline} on {where}: {args.trials} trials"
          + (f", timeout {args.timeout} s" if args.timeout else ""), flush=True)

    def progress(study, trial):
        value = "-" if trial.value is None else f"{trial.value:.4f}"
        try:
            best = f"{study.best_value:.4f} (trial {study.best_trial.number})"
        except ValueError:
            best = "-"
        print(f"trial {trial.number:3d} {trial.state.name:8s} value {value}  best {best}  "
              f"{trial.params}", flush=True)

    result = tune(pipe, module.SPACE, X, y, n_trials=args.trials, timeout=args.timeout,
                  cv=args.cv, pruner=None if args.pruner == "none" else args.pruner,
                  storage=args.storage, study_name=args.study_name, n_jobs=args.n_jobs,
                  seed=args.seed, register_as=args.register_as, callbacks=[progress])
    print(f"\nbest value {result.best_value:.4f} with {result.best_params}")
    if result.run_id:
        import mlflow

        print(f"study run {result.run_id} in {mlflow.get_tracking_uri()}")
    if args.storage:
        print(f"study '{result.study.study_name}' in {args.storage} "
              f"(optuna-dashboard {args.storage})")
    return 0


def cmd_search(args):
    import json

    from sklearn.model_selection import GridSearchCV

    from . import tracking

    (X, y), where = _load_data(args, "train")
    module, pipe = _pipeline(args.pipeline, args.param)
    try:
        grid = json.loads(args.grid) if args.grid else module.GRID
    except json.JSONDecodeError as exc:
        raise CLIError(f"--grid must be JSON, e.g. '{{\"clf__lr\": [0.001, 0.01]}}': {exc}") from None
    print(f"grid search over pipeline {args.pipeline} on {where}: {grid}", flush=True)
    tracking.autolog()
    try:
        search = GridSearchCV(pipe, grid, cv=args.cv, n_jobs=args.n_jobs, verbose=1)
        try:
            search.fit(X, y)
        except ValueError as exc:
            raise CLIError(f"grid search failed: {exc}") from None
    finally:
        tracking.autolog(False)
    print(f"\nbest cv score {search.best_score_:.4f} with {search.best_params_}")
    _where_runs_are()
    return 0


def _test_scores(pipe, X_test, y_test):
    """``(metrics, figures)`` of a fitted pipeline on the test set, from one pass over it:
    ``test_accuracy`` and ``test_ece`` (top-label, 15 bins), and the test reliability diagram.
    A pipeline without ``predict_proba`` (hard voting) has no confidence to calibrate: its
    accuracy alone."""
    import numpy as np

    from . import plots
    from .calibration import expected_calibration_error

    if not hasattr(pipe, "predict_proba"):
        return {"test_accuracy": float(pipe.score(X_test, y_test))}, {}
    # the accuracy is the argmax of the probabilities the ECE is measured on, as pipe.score
    # would predict it
    proba = pipe.predict_proba(X_test)
    classes = np.asarray(pipe.classes_)
    right = classes[proba.argmax(axis=1)] == np.asarray(y_test)
    metrics = {"test_accuracy": float(right.mean()),
               "test_ece": expected_calibration_error(y_test, proba, classes=classes)}
    return metrics, {"test_reliability_diagram.png":
                     plots.reliability_diagram(y_test, proba, classes=classes)}


def _ece_text(ece):
    return "n/a (no probabilities)" if ece is None else f"{ece:.4f}"


def _earlier_runs(path, setup, seeds):
    """``reproduce --append``: the runs already in the JSON file ``path`` whose seed is not run
    again now, after checking that they are of the same pipeline, parameters and data.

    A long reproduction (five CNNs per seed) can so be split over sessions or machines, one
    seed at a time, into one result. A missing file is the first part: no earlier runs.
    """
    import json

    if path is None:
        raise CLIError("--append adds seeds to the results in --json FILE: give --json")
    path = Path(path)
    if not path.exists():
        return []
    try:
        earlier = json.loads(path.read_text())
        runs = earlier["runs"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CLIError(f"--append: {path} is not a reproduce result ({exc!r})") from None
    now = json.loads(json.dumps(setup, default=str))  # as write_json stored it: tuples as lists
    for key, value in now.items():
        if earlier.get(key) == value:
            continue
        if key == "params" and isinstance(earlier.get(key), dict):
            differ = sorted(k for k in {*value, *earlier[key]}
                            if value.get(k, "unset") != earlier[key].get(k, "unset"))
            detail = "; ".join(f"{k}: {earlier[key].get(k, 'unset')!r} there, "
                               f"{value.get(k, 'unset')!r} now" for k in differ)
        else:
            detail = f"{earlier.get(key)!r} there, {value!r} now"
        what = {"pipeline": "another pipeline", "params": "other parameters",
                "train": "other training data", "test": "other test data"}[key]
        raise CLIError(f"--append: {path} holds results of {what} ({detail}); "
                       f"write to another --json file")
    # rows written before each recorded its machine were all on the file's one machine
    return [{**r, "machine": r.get("machine", earlier.get("machine", "unrecorded"))}
            for r in runs if r["seed"] not in seeds]


def cmd_reproduce(args):
    """Fit a ready pipeline once per seed on MNIST train, score each on MNIST test.

    The test set is only scored, never used to choose anything. The fits are children of one
    MLflow parent run that gets the mean and std of the test accuracy and of the test ECE
    (top-label, 15 bins: ``calibration.expected_calibration_error``); each fit's run gets its
    own two and the reliability diagram of the test set.
    """
    import platform

    import numpy as np

    from . import tracking

    (X, y), where = _load_data(args, "train")
    (X_test, y_test), test_where = _load_data(args, "test")
    module, _ = _pipeline(args.pipeline, args.param)  # checks the name and params up front
    setup = {"pipeline": args.pipeline, "params": dict(module.DEFAULTS, **dict(args.param)),
             "train": where, "test": test_where}
    # before any fit: a mismatch found after hours of fitting would waste them
    earlier = _earlier_runs(args.json, setup, args.seeds) if args.append else []
    print(f"pipeline {args.pipeline}, seeds {args.seeds}\ntrain: {where}\ntest:  {test_where}",
          flush=True)
    if earlier:
        print(f"adding to {len(earlier)} earlier seed(s) in {args.json}: "
              f"{[r['seed'] for r in earlier]}", flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
    rows = []
    # autologging: an ensemble's fit is one run (a child of this one), its members' fits under it
    with tracking.autologging(), tracking.parent_run(f"reproduce {args.pipeline}",
                                                     tags={"pipeline": args.pipeline}) as parent:
        for seed in args.seeds:
            pipe = module.build_pipeline(**{**dict(args.param), "clf__random_state": seed})
            pipe.set_params(clf__verbose=0 if args.quiet else 1)
            start = time.perf_counter()
            pipe.fit(X, y)
            fit_s = time.perf_counter() - start
            scores, figures = _test_scores(pipe, X_test, y_test)
            acc, ece = scores["test_accuracy"], scores.get("test_ece")  # ece: None, hard voting
            run_id = getattr(pipe[-1], "last_run_id_", None)
            if run_id:
                tracking.log_results(run_id, scores, figures=figures)
            path = save_model(pipe, Path(args.output_dir) / f"{args.pipeline}-seed{seed}.pkl")
            nets = [pipe[-1]] if hasattr(pipe[-1], "history_") else [  # an ensemble's members
                m[-1] if hasattr(m, "steps") else m for m in pipe[-1].estimators_]
            epochs = [len(n.history_) if hasattr(n, "history_") else None for n in nets]
            rows.append({"seed": seed, "test_accuracy": acc, "test_ece": ece, "fit_s": fit_s,
                         "epochs": epochs[0] if nets[0] is pipe[-1] else epochs,
                         "model": str(path), "machine": machine})
            print(f"seed {seed}: test accuracy {acc:.4f}, ECE {_ece_text(ece)}, "
                  f"fit {fit_s:.1f} s, saved to {path}", flush=True)
        eces = [r["test_ece"] for r in rows]
        has_ece = None not in eces
        if parent is not None:
            parent.log_cv({"test_accuracy": [r["test_accuracy"] for r in rows],
                           **({"test_ece": eces} if has_ece else {}),
                           "fit_s": [r["fit_s"] for r in rows]})
    rows = sorted(earlier + rows, key=lambda r: r["seed"])
    accs = np.array([r["test_accuracy"] for r in rows])
    eces = [r["test_ece"] for r in rows]
    has_ece = None not in eces
    machines = dict.fromkeys(r.get("machine", "unrecorded") for r in rows)
    summary = {**setup,
               "test_accuracy_mean": float(accs.mean()), "test_accuracy_std": float(accs.std()),
               "test_ece_mean": float(np.mean(eces)) if has_ece else None,
               "test_ece_std": float(np.std(eces)) if has_ece else None,
               "fit_s_mean": float(np.mean([r["fit_s"] for r in rows])), "runs": rows,
               "machine": "; ".join(machines)}
    ece_text = (f"{summary['test_ece_mean']:.4f} +- {summary['test_ece_std']:.4f}" if has_ece
                else _ece_text(None))
    print(f"\n{args.pipeline}: test accuracy {accs.mean():.4f} +- {accs.std():.4f} over "
          f"{len(rows)} seed(s), ECE {ece_text}, mean fit time {summary['fit_s_mean']:.0f} s")
    if args.json:
        write_json(args.json, summary)
        print(f"wrote {args.json}")
    _where_runs_are()
    return 0


def cmd_ui(args):
    from .tracking import TrackingError, open_store, resolve_uri
    from .tracking import store as tracking_store

    uri, artifacts = resolve_uri()
    try:
        # creates or migrates it safely, reaps runs of dead processes
        client = open_store(uri, artifacts)
        exp_id = tracking_store.experiment_id(
            client, tracking_store.default_experiment_name(), artifacts)
    except TrackingError as exc:
        raise CLIError(str(exc)) from None
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
           "--host", args.host, "--port", str(args.port)]
    if artifacts:
        cmd += ["--default-artifact-root", artifacts]
    # MLflow 3's UI opens on its GenAI pages; it has no server setting for that. The runs
    # table in its model-training view is a URL: the experiment's runs tab with
    # workflowType=machine_learning (the UI reads it before its localStorage default).
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    print(f"MLflow UI for {uri}: http://{host}:{args.port}/#/experiments/{exp_id}/runs"
          "?workflowType=machine_learning  (Ctrl-C stops it)", flush=True)
    # The UI replaces this process, so Ctrl-C and kill reach the server itself (a child would
    # outlive a killed parent).
    os.execv(sys.executable, cmd)


def cmd_runs(args):
    from .tracking import TrackingError, open_store, reap, resolve_uri, upload

    uri, artifacts = resolve_uri()
    try:
        if args.action == "reap":
            from .tracking.store import reaped_at_open

            client = open_store(uri, artifacts)  # the first open reaps already
            reaped = reaped_at_open.get(uri, []) + reap(client)
            print(f"{len(reaped)} run(s) of dead processes marked KILLED in {uri}")
            return 0
        if not Path(args.folder).is_dir():
            raise CLIError(f"{args.folder} is not a folder of models kept by a failed tracking")
        uploaded, failed = upload(args.folder, tracking_uri=args.tracking_uri, quiet=True)
    except TrackingError as exc:
        raise CLIError(str(exc)) from None
    for run_id in uploaded:
        print(f"uploaded run {run_id}")
    for path, reason in failed.items():
        print(f"not uploaded: {path}: {reason}", file=sys.stderr)
    print(f"{len(uploaded)} uploaded, {len(failed)} left in {args.folder}")
    return 1 if failed else 0


def cmd_experiment(args):
    from .experiments import runner, spec

    if args.action == "list":
        for name, path in spec.available().items():
            exp = spec.load(path)
            print(f"{name:34} seed {exp.source:5} {'/'.join(sorted(exp.protocols)):22} {exp.title}")
        return 0
    if args.action == "gradcheck":  # seed 002's table: backprop against central differences
        from .experiments import gradcheck

        table = gradcheck.gradient_check(eps=args.eps, sample=args.sample,
                                         data_home=args.data_home)
        print(gradcheck.markdown(table, args.eps))
        return 0 if table["within_eps2"].all() else 1
    if not args.name:
        raise CLIError(f"experiment {args.action} needs NAME (or a .toml file, or all); "
                       "`mnist-estimators experiment list` shows them")
    if args.name == "all":  # every packaged experiment, one after the other
        for name in spec.available():
            one = argparse.Namespace(**{**vars(args), "name": name, "output": args.output and
                                        str(Path(args.output) / f"{name}-{args.protocol}")})
            cmd_experiment(one)
        return 0
    if args.action == "run":
        result = runner.run(args.name, protocol=args.protocol, n_seeds=args.seeds,
                            n_jobs=args.n_jobs, backend=args.backend, scheduler=args.scheduler,
                            force=args.force, data_home=args.data_home,
                            progress=not args.quiet)
        print(f"{len(result.ran)} cell(s) run, {result.skipped} already done "
              f"(parent run {result.parent_run_id})", file=sys.stderr)
        report = result.report
    else:
        from .experiments import report as rep

        report = rep.rebuild(args.name, args.protocol)
    if report is None:
        print("tracking is off: no report (it is built from the MLflow store)", file=sys.stderr)
        return 0
    if args.output:
        from .experiments import report as rep

        rep.write(report, args.output)
        print(f"report written to {args.output}", file=sys.stderr)
    print(report.markdown)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="mnist-estimators", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def data_args(p, csv_help=None):
        p.add_argument("--data-home", help="folder of the four MNIST IDX files "
                       "(default: $MNIST_ESTIMATORS_DATA, the cache, a download, then the sample)")
        if csv_help:
            p.add_argument("--csv", help=csv_help)

    p = sub.add_parser("demo", help="train the three estimators and compare them")
    data_args(p)
    p.add_argument("--output-dir", default="models", help="where the models are saved (default: models)")
    p.add_argument("--models", nargs="+", choices=ESTIMATOR_NAMES, default=list(ESTIMATOR_NAMES))
    p.add_argument("--seed", type=int, default=0, help="random_state of every model (default: 0)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train one estimator")
    p.add_argument("--model", choices=ESTIMATOR_NAMES, required=True)
    p.add_argument("--param", type=_parse_param, action="append", default=[], metavar="KEY=VALUE",
                   help="estimator parameter, repeatable (e.g. max_epochs=5, optimizer=sgd)")
    p.add_argument("-o", "--output", required=True, help="path of the saved model (.pkl)")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-epoch table")
    data_args(p, "train on a CSV (label, then 784 pixels) instead of MNIST")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="accuracy of a saved model on MNIST test, a CSV, or a "
                       "folder of labelled images (with confusion and worst mistakes)")
    p.add_argument("model")
    data_args(p, "evaluate on a CSV (label, then 784 pixels)")
    p.add_argument("--images", metavar="DIR", help="a folder of labelled images: subfolders "
                   "0/ to 9/, or the digit in each file name (7_foo.png, foo-7.png, label7.png); "
                   "prints the confusion table and the worst mistakes, and logs an MLflow run")
    p.add_argument("--top", type=int, default=10, help="with --images: how many of the most "
                   "confident mistakes to list (default: 10)")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="with --images: stop at a blank, unreadable or unlabelled file (raise, "
                   "the default), or leave it out with a warning (skip)")
    turn_argument(p)  # with --images: read as `predict` reads
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("tune", help="Optuna study over a ready pipeline "
                                    "(see mnist_estimators/pipelines/)")
    p.add_argument("--pipeline", choices=list(PIPELINES), required=True)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--timeout", type=float, default=None, help="seconds")
    p.add_argument("--storage", help="sqlite:///study.db, postgresql://..., or journal:PATH "
                   "(default: in memory)")
    p.add_argument("--study-name", help="name of the study; with --storage it resumes")
    p.add_argument("--n-jobs", type=int, default=1, help="parallel trials (threads)")
    p.add_argument("--cv", type=int, default=None, help="k-fold CV score instead of the "
                   "validation split (no pruning then)")
    p.add_argument("--pruner", choices=["median", "hyperband", "none"], default="median")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--register-as", help="register the refit best model under this name")
    p.add_argument("--param", type=_parse_param, action="append", default=[], metavar="KEY=VALUE",
                   help="pipeline parameter, e.g. clf__max_epochs=3")
    data_args(p)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("search", help="GridSearchCV over a ready pipeline, tracked as parent + children")
    p.add_argument("--pipeline", choices=list(PIPELINES), required=True)
    p.add_argument("--grid", help="JSON dict of step__param -> list (default: the pipeline's GRID)")
    p.add_argument("--cv", type=int, default=3)
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--param", type=_parse_param, action="append", default=[], metavar="KEY=VALUE")
    data_args(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("reproduce", help="fit a ready pipeline per seed, test accuracy mean +- std")
    p.add_argument("pipeline", choices=list(PIPELINES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--param", type=_parse_param, action="append", default=[], metavar="KEY=VALUE",
                   help="pipeline parameter, e.g. clf__max_epochs=3")
    p.add_argument("--output-dir", default="models", help="where the models are saved (default: models)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--append", action="store_true",
                   help="add these seeds to the results already in --json (same pipeline, "
                        "params and data; a seed run again replaces its earlier result), to "
                        "split a long reproduction over sessions or machines")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-epoch table")
    data_args(p)
    p.set_defaults(func=cmd_reproduce)

    from . import draw

    draw.add_parser(sub)

    p = sub.add_parser("ui", help="start the MLflow UI on the run store and print its URL")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("runs", help="housekeeping of the MLflow store: reap runs of dead "
                       "processes, upload models kept locally while tracking failed")
    p.add_argument("action", choices=["reap", "upload"])
    p.add_argument("folder", nargs="?", default="models/unlogged",
                   help="with upload: the fallback folder (default: models/unlogged)")
    p.add_argument("--tracking-uri", help="with upload: log there instead of each model's own store")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("experiment", help="the seeds' studies "
                       "(mnist_estimators/pipelines/experiments): list, "
                       "run (resumable, parallel, on Dask), report from the store")
    p.add_argument("action", choices=["list", "run", "report", "gradcheck"],
                   help="gradcheck: seed 002's check of backprop against central differences")
    p.add_argument("name", nargs="?", help="an experiment's name, a .toml file of your own, or "
                   "all (every packaged experiment, in turn)")
    p.add_argument("--protocol", choices=["quick", "fast", "faithful"], default="fast")
    p.add_argument("--seeds", type=int, default=None, help="seeds per value (default: the "
                   "experiment's, 5)")
    p.add_argument("--n-jobs", type=int, default=1, help="cells at once on this machine (loky)")
    p.add_argument("--backend", choices=["loky", "dask"], default="loky")
    p.add_argument("--scheduler", help="with --backend dask: the scheduler address "
                   "(tcp://host:8786); default: a local cluster")
    p.add_argument("--force", action="store_true", help="rerun the cells already done")
    p.add_argument("--output", help="also write report.md and its figures to this folder "
                   "(with all: a folder per experiment in it)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--eps", type=float, default=1e-2, help="gradcheck: the step (default 1e-2)")
    p.add_argument("--sample", type=int, default=0, help="gradcheck: the training image")
    data_args(p)
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("predict", help="digit and probability for images (files and folders "
                       "in any mix, PNG/JPEG...) or the rows of a CSV")
    p.add_argument("model")
    p.add_argument("inputs", nargs="*", help="image files and folders of images (a folder: "
                   "the image files in it and its subfolders, sorted by path)")
    p.add_argument("--csv", help="CSV of images (label column first; it is ignored)")
    p.add_argument("--format", choices=["text", "csv", "json"], default="text",
                   help="text: 'file  digit  probability' lines (default); csv: a header and a "
                   "row per image; json: a list of {file, digit, probability}")
    turn_argument(p)
    p.set_defaults(func=cmd_predict)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    from .signals import catch_sigint, catch_sigterm, release_sigint, release_sigterm

    previous = catch_sigterm(force=True)  # a run of a killed command ends KILLED, not RUNNING
    previous_int = catch_sigint()  # Ctrl-C: the fit stops at its next batch
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            # Libraries' deprecation notices (SQLAlchemy inside MLflow) are not the user's to act on.
            warnings.simplefilter("ignore", DeprecationWarning)
            # one line per warning ("warning: Full MNIST not found ..."), not a source excerpt
            warnings.showwarning = lambda message, category, *rest, **kw: print(
                f"mnist-estimators: {category.__name__}: {message}", file=sys.stderr)
            return args.func(args)
    except (CLIError, ValueError, FileNotFoundError, OSError) as exc:  # MNISTFormatError too
        print(f"mnist-estimators {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # The run of an interrupted fit says itself how it ended (KILLED, and where its model is).
        print(f"mnist-estimators {args.command}: interrupted ({str(exc) or 'Ctrl-C'})",
              file=sys.stderr)
        return 130
    finally:
        release_sigint(previous_int)
        release_sigterm(previous)


if __name__ == "__main__":
    sys.exit(main())
