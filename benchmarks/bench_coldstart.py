"""The first call of a fresh process: a script's first fit, the command line, a one-image predict.

    python benchmarks/bench_coldstart.py [--data-home DIR] [--repeats 5] [--epochs 4]
        [--sections fit cli overlap]

Every measurement is a new Python process, started the way a user starts one, and timed from
the parent (interpreter start, imports, data, fit, exit):

- ``fit``: a script that imports the package, loads the 60,000 MNIST training images and fits
  ``MLPClassifier(max_epochs=4)`` (256-128, Adam 1e-3, batch 128, no validation split, no
  schedule, seed 0), in four variants, run in turn within each repeat (the order rotates from
  one repeat to the next, so that a drift of the shared machine falls on all of them):

  - ``untracked``: ``tracking=False``;
  - ``tracked, existing store``: tracked into a ``./mlruns`` store a previous process made;
  - ``tracked, new store``: tracked, in a folder with no store yet (MLflow creates it);
  - ``tracked, mlflow server``: tracked to an ``mlflow server`` already running on 127.0.0.1
    (SQLite behind it, artifacts served by it; ``MLFLOW_TRACKING_URI=http://...``), as with
    ``mnist-estimators ui`` open: the script imports MLflow's client, not its SQL store;
  - ``hand loop``: the peer, a plain PyTorch loop on the same module class, data, batch size
    and optimizer (``import torch`` and the package's ``load_mnist`` and ``modules`` only).

  Each child reports the time of its ``fit`` call (the loop, for the peer) and the parent the
  whole process. Reported: medians and the spread (min-max) of ``--repeats``, tracking's extra
  time on the first fit (tracked minus untracked, per repeat), and each variant's whole process
  against the hand loop's.
- ``cli``: ``mnist-estimators --help``, ``train --help``, ``import torch, sklearn, skorch`` (the
  stack's import floor), and ``mnist-estimators predict model.pkl one.png`` for a saved MLP,
  medians of ``--repeats``.
- ``overlap`` (not run by default): can MLflow's import hide behind a first fit on this machine?
  The untracked first fit alone, beside a second process importing MLflow and its SQL store,
  and beside a thread of its own importing them, each with torch's OpenMP threads waiting the
  default way (spinning) and with ``OMP_WAIT_POLICY=PASSIVE`` (sleeping). Each child reports its
  fit, the cores it used during the fit, and how long the import took.

Writes benchmarks/results/coldstart.json and prints the tables.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # benchmarks/common.py, next to this script

SETTINGS = dict(optimizer="adam", lr=1e-3, batch_size=128, validation_fraction=None,
                lr_schedule=None, random_state=0)

# argv: data home, epochs, tracked 0/1
OURS = r"""
import json, sys, time
from mnist_estimators import MLPClassifier, load_mnist
X, y = load_mnist("train", data_home=sys.argv[1])
start = time.perf_counter()
MLPClassifier(max_epochs=int(sys.argv[2]), tracking=sys.argv[3] == "1", verbose=0,
              **%(settings)r).fit(X, y)
print(json.dumps({"fit_s": time.perf_counter() - start}))
"""

HAND = r"""
import json, sys, time
import torch
from torch import nn
from mnist_estimators.data import load_mnist
from mnist_estimators.modules import MLP
X, y = load_mnist("train", data_home=sys.argv[1])
start = time.perf_counter()
torch.manual_seed(0)
model = MLP(n_features=784, n_classes=10, hidden_sizes=(256, 128), activation="relu",
            dropout=0.1, batch_norm=False)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()
Xt, yt = torch.from_numpy(X).float().div_(255.0), torch.from_numpy(y).long()
for _ in range(int(sys.argv[2])):
    model.train()
    perm = torch.randperm(len(Xt))
    Xs, ys = Xt[perm], yt[perm]
    for i in range(0, len(Xt), 128):
        opt.zero_grad()
        loss = loss_fn(model(Xs[i:i + 128]), ys[i:i + 128])
        loss.backward()
        opt.step()
print(json.dumps({"fit_s": time.perf_counter() - start}))
"""

# argv: data home, epochs, beside: none | process | thread
OVERLAP = r"""
import json, resource, subprocess, sys, threading, time
from mnist_estimators import MLPClassifier, load_mnist
X, y = load_mnist("train", data_home=sys.argv[1])
IMPORT = "import mlflow, mlflow.store.tracking.sqlalchemy_store"
took = {}
def imports():
    start = time.perf_counter()
    exec(IMPORT)
    took["import_s"] = time.perf_counter() - start
start = time.perf_counter()
if sys.argv[3] == "process":
    side = subprocess.Popen([sys.executable, "-c", IMPORT])
elif sys.argv[3] == "thread":
    side = threading.Thread(target=imports)
    side.start()
before = resource.getrusage(resource.RUSAGE_SELF)
MLPClassifier(max_epochs=int(sys.argv[2]), tracking=False, verbose=0, **%(settings)r).fit(X, y)
fit_s = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
if sys.argv[3] == "process":
    side.wait()
    took["import_s"] = time.perf_counter() - start
elif sys.argv[3] == "thread":
    side.join()
print(json.dumps({"fit_s": fit_s, "cores": cpu / fit_s, **took}))
"""
OVERLAP_MODES = ("alone", "process", "thread")

VARIANTS = ("untracked", "tracked, existing store", "tracked, new store",
            "tracked, mlflow server", "hand loop")
TRACKED = VARIANTS[1:4]


def clean_env():
    # The children get the package's defaults: no store or switch inherited from this shell.
    return {k: v for k, v in os.environ.items()
            if k not in ("MLFLOW_TRACKING_URI", "MNIST_ESTIMATORS_TRACKING")}


def timed(cmd, cwd, env=None):
    """(whole-process seconds, the child's last stdout line parsed as JSON or None)."""
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env or clean_env(), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed:\n{done.stderr[-3000:]}")
    lines = done.stdout.strip().splitlines()
    try:
        return wall, json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return wall, None


def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "values": values}


def mlflow_server(work):
    """An ``mlflow server`` on 127.0.0.1 (SQLite, served artifacts): (process, URI)."""
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = Path(work) / "server"
    root.mkdir()
    # mlflow runs helpers (uvicorn) by name: the interpreter's bin folder goes first on PATH
    env = {**clean_env(), "PATH": os.path.dirname(sys.executable) + os.pathsep
           + os.environ.get("PATH", "")}
    log = open(root / "log.txt", "w")  # a file: an unread pipe fills and blocks the server
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
                             "--port", str(port), "--backend-store-uri",
                             f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination",
                             str(root / "artifacts"), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {(root / 'log.txt').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2):
                return proc, uri
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise TimeoutError(f"mlflow server at {uri} did not answer in 120 s")


def first_fit(variant, data_home, epochs, work, server=None):
    ours = [sys.executable, "-c", OURS % {"settings": SETTINGS}, data_home, str(epochs)]
    if variant == "hand loop":
        return timed([sys.executable, "-c", HAND, data_home, str(epochs)], work)
    if variant == "untracked":
        return timed(ours + ["0"], work)
    if variant == "tracked, mlflow server":
        return timed(ours + ["1"], work, {**clean_env(), "MLFLOW_TRACKING_URI": server})
    folder = Path(work) / "store"
    if variant == "tracked, new store":
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(exist_ok=True)
    return timed(ours + ["1"], folder)


def section_fit(args):
    out = {v: {"process_s": [], "fit_s": []} for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="coldstart-") as work:
        server, uri = mlflow_server(work)
        try:
            # an existing store for the first "existing" variant, the server's first run, and
            # the OS's file cache warm
            first_fit("tracked, new store", args.data_home, 1, work)
            first_fit("tracked, mlflow server", args.data_home, 1, work, uri)
            for r in range(args.repeats):
                order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
                # "existing" takes the store the previous tracked process left ("new" leaves one)
                for variant in order:
                    wall, got = first_fit(variant, args.data_home, args.epochs, work, uri)
                    out[variant]["process_s"].append(wall)
                    out[variant]["fit_s"].append(got["fit_s"])
                    print(f"  repeat {r + 1}, {variant}: process {wall:.2f} s, "
                          f"fit {got['fit_s']:.2f} s", flush=True)
        finally:
            server.terminate()
            server.wait(30)
    result = {v: {k: spread(vals) for k, vals in d.items()} for v, d in out.items()}
    base = out["untracked"]["fit_s"]
    for variant in TRACKED:
        extra = [t - u for t, u in zip(out[variant]["fit_s"], base)]
        result[variant]["extra_fit_s"] = spread(extra)
    hand = out["hand loop"]["process_s"]
    for variant in VARIANTS[:-1]:
        ratios = [o / h for o, h in zip(out[variant]["process_s"], hand)]
        result[variant]["process_vs_hand"] = spread(ratios)
    print(f"\nfirst fit of a fresh process: MLP {args.epochs} epochs on 60,000 images, "
          f"median (min-max) of {args.repeats}")
    print("| variant | whole process (s) | fit call (s) | tracking's extra on the fit (s) "
          "| process / hand loop |\n|---|---|---|---|---|")
    for variant in VARIANTS:
        r = result[variant]
        fmt = lambda s, f="{:.2f}": (f.format(s["median"]) + " (" + f.format(s["min"])  # noqa
                                     + "-" + f.format(s["max"]) + ")")
        extra = fmt(r["extra_fit_s"], "{:+.2f}") if "extra_fit_s" in r else ""
        ratio = fmt(r["process_vs_hand"], "{:.2f}x") if "process_vs_hand" in r else ""
        print(f"| {variant} | {fmt(r['process_s'])} | {fmt(r['fit_s'])} | {extra} | {ratio} |")
    return result


def section_cli(args):
    from PIL import Image

    from mnist_estimators import MLPClassifier, load_mnist
    from mnist_estimators.persistence import save_model

    exe = shutil.which("mnist-estimators")
    if exe is None:
        raise SystemExit("mnist-estimators is not on PATH: pip install -e . first")
    result = {}
    with tempfile.TemporaryDirectory(prefix="coldstart-cli-") as work:
        X, y = load_mnist("train", data_home=args.data_home)
        model = save_model(MLPClassifier(max_epochs=1, tracking=False, random_state=0).fit(
            X[:5000], y[:5000]), Path(work) / "mlp.pkl")
        png = Path(work) / "one.png"
        Image.fromarray(X[0].reshape(28, 28)).save(png)
        commands = {
            "mnist-estimators --help": [exe, "--help"],
            "mnist-estimators train --help": [exe, "train", "--help"],
            "import floor: python -c 'import torch, sklearn, skorch'":
                [sys.executable, "-c", "import torch, sklearn, skorch"],
            "mnist-estimators predict mlp.pkl one.png": [exe, "predict", str(model), str(png)],
        }
        for name in commands:
            result[name] = []
        for _ in range(args.repeats):
            for name, cmd in commands.items():
                result[name].append(timed(cmd, work)[0])
    result = {k: spread(v) for k, v in result.items()}
    floor = result["import floor: python -c 'import torch, sklearn, skorch'"]["median"]
    print(f"\nthe command line, a fresh process each, median (min-max) of {args.repeats}")
    print("| command | seconds | over the import floor |\n|---|---|---|")
    for name, r in result.items():
        print(f"| `{name}` | {r['median']:.2f} ({r['min']:.2f}-{r['max']:.2f}) "
              f"| {r['median'] - floor:+.2f} |")
    return result


def section_overlap(args):
    out = {}
    with tempfile.TemporaryDirectory(prefix="coldstart-overlap-") as work:
        for r in range(args.repeats):
            for policy in ("default (spin)", "PASSIVE"):
                env = clean_env()
                if policy == "PASSIVE":
                    env["OMP_WAIT_POLICY"] = "PASSIVE"
                else:
                    env.pop("OMP_WAIT_POLICY", None)
                for mode in OVERLAP_MODES[r % 3:] + OVERLAP_MODES[:r % 3]:
                    cmd = [sys.executable, "-c", OVERLAP % {"settings": SETTINGS},
                           args.data_home, str(args.epochs), mode.replace("alone", "none")]
                    got = timed(cmd, work, env)[1]
                    row = out.setdefault(f"{policy}, {mode}", {"fit_s": [], "cores": [],
                                                               "import_s": []})
                    for key in row:
                        if key in got:
                            row[key].append(got[key])
                    print(f"  repeat {r + 1}, {policy}, {mode}: {got}", flush=True)
    result = {name: {k: spread(v) for k, v in row.items() if v} for name, row in out.items()}
    print(f"\nMLflow's import beside an untracked first fit (MLP {args.epochs} epochs), median "
          f"(min-max) of {args.repeats}")
    print("| OpenMP wait | MLflow imported | fit (s) | over the fit alone | cores the fit used "
          "| import done after (s) |\n|---|---|---|---|---|---|")
    for name, r in result.items():
        policy, mode = name.split(", ")
        alone = result[f"{policy}, alone"]["fit_s"]["median"]
        f = r["fit_s"]
        imp = r.get("import_s")
        print(f"| {policy} | {mode} | {f['median']:.2f} ({f['min']:.2f}-{f['max']:.2f}) "
              f"| {f['median'] - alone:+.2f} | {r['cores']['median']:.2f} "
              f"| {'' if imp is None else format(imp['median'], '.2f')} |")
    return result


def main(argv=None):
    parser = common.parser(__doc__, "coldstart.json")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--sections", nargs="+", choices=["fit", "cli", "overlap"],
                        default=["fit", "cli"])
    args = parser.parse_args(argv)
    if not common.has_full_mnist(args.data_home):
        raise SystemExit("full MNIST is needed: --data-home DIR (or $MNIST_ESTIMATORS_DATA)")
    args.data_home = str(Path(args.data_home).resolve())
    results = {"machine": common.machine(), "repeats": args.repeats, "epochs": args.epochs}
    if "fit" in args.sections:
        results["fit"] = section_fit(args)
    if "cli" in args.sections:
        results["cli"] = section_cli(args)
    if "overlap" in args.sections:
        results["overlap"] = section_overlap(args)
    common.write_json(args.out, results)


if __name__ == "__main__":
    main()
