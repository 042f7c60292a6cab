"""How tracking talks to the user: one line per real event, tracebacks only at debug level."""

from __future__ import annotations

import logging
import sys
import warnings

logger = logging.getLogger("mnist_estimators.tracking")


class TrackingWarning(RuntimeWarning):
    """Tracking fell back: a run could not be logged, and the model was kept elsewhere."""


def warn(message, exc=None):
    """A fallback the user must know about, as one warning; the traceback goes to the debug log."""
    if exc is not None:
        logger.debug("%s", message, exc_info=exc)
    warnings.warn(message, TrackingWarning, stacklevel=3)


def say(message):
    """A one-line notice on stderr (housekeeping the user should see, not a problem)."""
    logger.info(message)
    print(f"mnist-estimators: {message}", file=sys.stderr, flush=True)
