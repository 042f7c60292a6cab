"""How tracking talks to the user: one line per real event, tracebacks only at debug level."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import sklearn
import skorch

logger = logging.getLogger("mnist_estimators.tracking")


class TrackingWarning(RuntimeWarning):
    """Tracking fell back: a run could not be logged, and the model was kept elsewhere."""


_LIBRARIES = tuple(str(Path(m.__file__).parent) for m in (skorch, sklearn))
_PACKAGE = str(Path(__file__).parents[1])


def _user_stacklevel():
    """The stack level of the first caller outside this package, skorch and scikit-learn: the
    warning points at the user's ``fit``, not at our internals."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith((_PACKAGE,) + _LIBRARIES):
        frame, level = frame.f_back, level + 1
    return level


def warn(message, exc=None):
    """A fallback the user must know about, as one warning; the traceback goes to the debug log."""
    if exc is not None:
        logger.debug("%s", message, exc_info=exc)
    warnings.warn(message, TrackingWarning, stacklevel=_user_stacklevel())


def say(message):
    """A one-line notice on stderr (housekeeping the user should see, not a problem)."""
    logger.info(message)
    print(f"mnist-estimators: {message}", file=sys.stderr, flush=True)
