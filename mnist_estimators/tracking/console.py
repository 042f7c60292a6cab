"""How tracking talks to the user: one line per real event, tracebacks only at debug level."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

logger = logging.getLogger("mnist_estimators.tracking")


class TrackingWarning(RuntimeWarning):
    """Tracking fell back: a run could not be logged, and the model was kept elsewhere."""


def _package_dirs():
    # The warning points at the user's line, past this package and the libraries that call
    # into it on the user's behalf (skorch's fit loop, scikit-learn's searches, joblib).
    import joblib
    import sklearn
    import skorch

    return (str(Path(__file__).parents[1]),) + tuple(
        str(Path(m.__file__).parent) for m in (skorch, sklearn, joblib))


def warn(message, exc=None):
    """A fallback the user must know about, as one warning; the traceback goes to the debug log.

    On Python 3.12+ the warning names the user's line (``skip_file_prefixes``); before 3.12
    there is no way to say "the first caller outside these packages" without reading the call
    stack, which this package does not do, so it names the line here that warned.
    """
    if exc is not None:
        logger.debug("%s", message, exc_info=exc)
    if sys.version_info >= (3, 12):
        warnings.warn(message, TrackingWarning, skip_file_prefixes=_package_dirs())
    else:
        warnings.warn(message, TrackingWarning, stacklevel=2)


def say(message):
    """A one-line notice on stderr (housekeeping the user should see, not a problem)."""
    logger.info(message)
    print(f"mnist-estimators: {message}", file=sys.stderr, flush=True)


def brief(exc, limit=300):
    """``Type: the first line of its message``, at most ``limit`` characters: SQLAlchemy's
    errors go on with the SQL statement and a link, on more lines, and a warning is one line."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
