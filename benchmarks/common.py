"""What every benchmark here shares: the full-MNIST location and the skip when it is absent."""

import argparse
import os
import platform
import sys
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


def machine():
    """One line naming the hardware and software a figure was measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"{cpu}, {os.cpu_count()} CPUs{gpu}, Python {sys.version.split()[0]}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads)")


def write_json(path, obj):
    """Write ``obj`` as JSON to ``path`` atomically, so no half-written result remains."""
    from mnist_estimators.persistence import write_json as write

    write(path, obj)
    print(f"\nwrote {path}")