"""Atomic writes, and saving and loading models with a checksum.

Every file this package writes (a saved model, a JSON result, a download, a drawing) goes
through ``atomic_write``: the bytes land in a temporary file beside the target, which is renamed
over it only once complete, so an interrupted write never leaves a truncated file that looks whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path

# A saved model is a plain pickle followed by this trailer and the SHA-256 of the pickle bytes.
# ``pickle.load`` stops at the end of the pickle, so the file still loads with plain pickle;
# ``load_model`` checks the digest and refuses a file whose bytes changed.
_TRAILER = b"\nmnist-estimators-sha256:"


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file beside ``path``; on success it replaces ``path``, on error it is
    removed (``path`` is then untouched). Yields the open file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path, obj):
    """Write ``obj`` as indented JSON to ``path`` atomically; returns the path."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, default=str)
    return Path(path)


def save_model(model, path):
    """Pickle a fitted estimator (or Pipeline) to ``path`` atomically, with a checksum; returns
    the path.

    cloudpickle (what MLflow uses) also takes classes defined in a function or notebook;
    ``pickle.load`` reads the file, and ``load_model`` also verifies its checksum.
    """
    import cloudpickle

    data = cloudpickle.dumps(model)
    with atomic_write(path) as f:
        f.write(data)
        f.write(_TRAILER + hashlib.sha256(data).hexdigest().encode())
    return Path(path)


# What a file that is not a pickle most often is, by its first bytes.
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
          (b"GIF8", "a GIF image"), (b"BM", "a BMP image"), (b"II*\x00", "a TIFF image"),
          (b"MM\x00*", "a TIFF image"), (b"RIFF", "a RIFF file (a WebP image?)"),
          (b"%PDF", "a PDF document"), (b"SQLite format 3\x00", "an SQLite database"),
          (b"\x1f\x8b", "a gzip file (an MNIST IDX .gz file?)"),
          (b"PK\x03\x04", "a zip archive (a torch.save file or a state_dict? load it with "
                           "torch.load)"),
          (b"\x00\x00\x08\x03", "an IDX image file (MNIST's format: see read_idx)"),
          (b"\x00\x00\x08\x01", "an IDX label file (MNIST's format: see read_idx)"))


def _looks_like(raw):
    """What ``raw`` is, when it is plainly not a pickle; None for anything else."""
    if not raw:
        return "an empty file"
    for magic, kind in _MAGIC:
        if raw.startswith(magic):
            return kind
    if raw[:1] == b"\x80":  # a pickle's protocol opcode
        return None
    head = raw[:512]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text.lstrip().startswith(("{", "[")):
        return "a JSON or other text file"
    if all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return "a text file (a CSV?)"
    return None


def load_model(path):
    """Load a model saved by ``save_model``. Only load files you trust: this unpickles.

    Raises ``ValueError`` naming the file when it is not a model, or when its bytes no longer
    match the checksum written with it (a corrupt or altered file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Model file {path} does not exist.")
    raw = path.read_bytes()
    kind = _looks_like(raw)
    if kind is not None:
        raise ValueError(f"{path}: not a saved model: this is {kind}.")
    cut = raw.rfind(_TRAILER)
    if cut >= 0:
        data, digest = raw[:cut], raw[cut + len(_TRAILER):].decode("ascii", "replace").strip()
        if hashlib.sha256(data).hexdigest() != digest:
            raise ValueError(f"{path}: the file is corrupt (its SHA-256 does not match the "
                             "checksum saved with it); re-save or re-train the model.")
    else:
        data = raw  # a plain pickle (saved before checksums, or by pickle.dump)
    try:
        model = pickle.loads(data)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError,
            ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a saved model ({type(exc).__name__}: {exc}).") from exc
    if not hasattr(model, "predict"):
        raise ValueError(f"{path}: holds a {type(model).__name__}, not a model with predict().")
    return model
