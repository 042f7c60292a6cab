"""Latency of the draw page's predictions: ``POST /api/predict`` of a 280x280 PNG drawing over
one keep-alive connection, as the page sends them while a user draws.

    python benchmarks/bench_draw.py [--data-home DIR] [--requests 500] [--train 5000]

Softmax, MLP and CNN (``max_epochs=1`` on the first 5,000 training images, tracking off) are
saved and served together by ``mnist-estimators draw`` in a subprocess on 127.0.0.1. This
process (``http.client``) sends ``--requests`` requests per model (``?models=NAME``) and as many
for all three at once (the page's side-by-side view), after 20 warm-up requests each. A
request's time runs from sending it to the answer's last byte: PNG decoding, preprocessing,
the reading (``reading.predict_proba``: upright, and turned where a model is below 0.9
confidence, as the page reads by default), JSON and HTTP. Beside it, ``compute``: decoding,
preprocessing and the reading in this process, without HTTP; "unsure" says whether the model
read the drawing turned too. Both run torch on one thread, as ``draw`` does
(the machine line's thread count is the fits'). Target: p95 < 50 ms (the page debounces
drawing at 150 ms). Writes benchmarks/results/draw.json and prints a table.
"""

import http.client
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # benchmarks/common.py, next to this script

import numpy as np
import torch
from PIL import Image, ImageDraw

from mnist_estimators import CNNClassifier, MLPClassifier, SoftmaxRegressionClassifier, load_mnist
from mnist_estimators import reading
from mnist_estimators.data import preprocess_image
from mnist_estimators.persistence import save_model

MODELS = {"softmax": SoftmaxRegressionClassifier, "mlp": MLPClassifier, "cnn": CNNClassifier}
WARMUP = 20
# `mnist-estimators draw ARGS`, as a user runs it
COMMAND = [sys.executable, "-m", "mnist_estimators.cli"]


def canvas_png():
    """A "4" as the page's canvas exports it: 280x280 RGBA, white, anti-aliased black strokes of
    width 20 (drawn at 4x and box-averaged down, as a browser's anti-aliasing does)."""
    big = Image.new("RGBA", (1120, 1120), "white")
    pen = ImageDraw.Draw(big)
    for line in ([(520, 140), (260, 680), (800, 680)], [(680, 380), (640, 1000)]):
        pen.line(line, fill="black", width=80, joint="curve")
    buffer = io.BytesIO()
    big.resize((280, 280), Image.Resampling.BOX).save(buffer, "PNG")
    return buffer.getvalue()


def serve(paths, folder):
    cmd = [*COMMAND, "draw", "--port", "0", "--labelled-dir", str(folder)]
    proc = subprocess.Popen(cmd + sum((["--model", str(p)] for p in paths), []),
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "MNIST_ESTIMATORS_TRACKING": "0"})
    first = proc.stdout.readline()  # "draw page: http://127.0.0.1:PORT/ ..." once it listens
    if not first.startswith("draw page: http://"):
        proc.kill()
        raise RuntimeError(f"the draw server did not start: {first}")
    return proc, first.split()[2].removeprefix("http://").rstrip("/")


def latencies(address, models, png, n):
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)  # kept open (HTTP/1.1)
    headers = {"Content-Type": "image/png"}
    times = []
    for i in range(WARMUP + n):
        start = time.perf_counter()
        conn.request("POST", f"/api/predict?models={models}", body=png, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{models}: HTTP {resp.status}: {body[:300]!r}")
        if i >= WARMUP:
            times.append(time.perf_counter() - start)
    conn.close()
    return np.array(times) * 1000.0, body


def compute_ms(model, png, n=200, confidence=reading.CONFIDENCE):
    """The page's work for one drawing, without HTTP: decode, frame, and read as ``predict``
    reads (``reading.predict_proba``: turned too where the model is unsure; with
    ``confidence=1.0`` every drawing is read turned, the most a reading costs)."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        image = Image.open(io.BytesIO(png))
        reading.predict_proba(model, [image], frames=preprocess_image(image)[None],
                              confidence=confidence)
        times.append(time.perf_counter() - start)
    return np.array(times[10:]) * 1000.0


def main(argv=None):
    parser = common.parser(__doc__, "draw.json")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--train", type=int, default=5000, help="training images per model")
    args = parser.parse_args(argv)
    if not common.has_full_mnist(args.data_home):
        return 0
    X, y = load_mnist("train", data_home=args.data_home)
    folder = Path(tempfile.mkdtemp(prefix="bench-draw-"))
    fitted = {}
    for name, cls in MODELS.items():
        start = time.perf_counter()
        fitted[name] = cls(max_epochs=1, tracking=False, random_state=0).fit(X[:args.train], y[:args.train])
        save_model(fitted[name], folder / f"{name}.pkl")
        print(f"{name}: fitted on {args.train} images in {time.perf_counter() - start:.1f} s", flush=True)
    png = canvas_png()
    proc, address = serve([folder / f"{name}.pkl" for name in MODELS], folder / "labelled")
    results = {}
    try:
        for models in [*MODELS, ",".join(MODELS)]:
            ms, body = latencies(address, models, png, args.requests)
            results[models] = {"p50_ms": float(np.percentile(ms, 50)),
                               "p95_ms": float(np.percentile(ms, 95)),
                               "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()),
                               "max_ms": float(ms.max()), "requests": len(ms),
                               "answer_bytes": len(body)}
            print(f"{models}: p50 {results[models]['p50_ms']:.1f} ms, "
                  f"p95 {results[models]['p95_ms']:.1f} ms", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    meta = {"machine": common.machine(), "requests": args.requests, "warmup": WARMUP,
            "train_images": args.train, "png_bytes": len(png), "target_p95_ms": 50,
            "server_torch_threads": 1}
    torch.set_num_threads(1)  # as the server runs
    for name, model in fitted.items():  # after the server stopped: the two do not share the CPUs
        ms = compute_ms(model, png)
        upright = model.predict_proba(preprocess_image(Image.open(io.BytesIO(png)))[None])
        results[name].update(compute_p50_ms=float(np.median(ms)),
                             compute_p95_ms=float(np.percentile(ms, 95)),
                             compute_turned_p50_ms=float(np.median(compute_ms(model, png,
                                                                              confidence=1.0))),
                             unsure=bool(upright.max() < reading.CONFIDENCE))
    print(f"\n{meta['machine']}; {args.requests} requests per row over one keep-alive "
          f"connection, a {len(png):,}-byte 280x280 PNG")
    print("| models | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | compute p50 (ms) | unsure: "
          "read turned too | compute p50, read turned (ms) | p95 < 50 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for models, r in results.items():
        compute = f"{r['compute_p50_ms']:.1f}" if "compute_p50_ms" in r else "-"
        unsure = ("yes" if r["unsure"] else "no") if "unsure" in r else "-"
        turned = f"{r['compute_turned_p50_ms']:.1f}" if "unsure" in r else "-"
        print(f"| {models} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | "
              f"{r['max_ms']:.1f} | {compute} | {unsure} | {turned} | "
              f"{'yes' if r['p95_ms'] < 50 else 'NO'} |")
    common.write_json(args.out, {"meta": meta, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
