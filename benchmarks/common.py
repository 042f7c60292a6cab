"""What every benchmark here shares: the full-MNIST location and the skip when it is absent."""

import argparse
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "datasets" / "mnist"


def parser(doc, out_name):
    """An argument parser with --data-home and --out (benchmarks/results/OUT_NAME)."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--data-home", default=os.environ.get("MNIST_ESTIMATORS_DATA") or DEFAULT_DATA)
    p.add_argument("--out", default=HERE / "results" / out_name)
    return p


def has_full_mnist(data_home):
    """True when ``data_home`` holds the training images; says so and returns False otherwise."""
    if any(Path(data_home, f"train-images-idx3-ubyte{s}").is_file() for s in ("", ".gz")):
        return True
    print(f"full MNIST not found in {data_home}; skipping (set --data-home)")
    return False
