"""Interrupts and SIGTERM: how a running fit is asked to stop, for everyone to use.

The estimators check for a pending interrupt at every batch; tracking's parent runs and the CLI
turn SIGTERM into one, so that a killed process ends its MLflow runs KILLED instead of leaving
them RUNNING. Nothing here imports the rest of the package.
"""

from __future__ import annotations

import contextlib
import signal
import threading

# A request to interrupt training, honoured at the next batch boundary. A signal handler that
# raised KeyboardInterrupt itself could land in a garbage-collection finalizer (SQLAlchemy's,
# inside MLflow), where Python prints the exception and ignores it, and training would go on.
_INTERRUPT = threading.Event()
_INTERRUPT_REASON = ["interrupted"]
_FITS_RUNNING = [0]


def request_interrupt(reason="interrupted"):
    """Ask every running fit in this process to stop with ``KeyboardInterrupt`` at its next batch.

    Returns False when no fit is running (the caller should then interrupt by other means).
    """
    if not _FITS_RUNNING[0]:
        return False
    _INTERRUPT_REASON[0] = reason
    _INTERRUPT.set()
    return True


def raise_if_interrupt_requested():
    if _INTERRUPT.is_set():
        _INTERRUPT.clear()
        raise KeyboardInterrupt(_INTERRUPT_REASON[0])


def _terminated(signum, frame):
    # SIGTERM (kill, a scheduler's timeout) would end Python with no cleanup, leaving MLflow runs
    # RUNNING. As an interrupt, a running fit stops at its next batch and its run ends KILLED;
    # with no fit running here (a search waiting on its workers), KeyboardInterrupt is raised now.
    reason = f"terminated by signal {signum}"
    if not request_interrupt(reason):
        raise KeyboardInterrupt(reason)


def catch_sigterm(force=False):
    """Make SIGTERM an interrupt (see ``_terminated``) in the main thread, unless someone else
    (the user, the CLI, an outer fit or search) already handles it; ``force`` replaces any
    handler. Returns the handler to give back to ``release_sigterm``, or None when nothing was
    installed (another thread: Python delivers signals to the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if not force and signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    return signal.signal(signal.SIGTERM, _terminated)


def release_sigterm(previous):
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


class StopTraining(KeyboardInterrupt):
    """A callback's request to end training early.

    skorch's callbacks stop training with a plain ``KeyboardInterrupt``, and its ``partial_fit``
    swallows every one, a user's Ctrl-C included. This subclass tells the two apart, so a real
    interrupt can end the run as KILLED and propagate.
    """


@contextlib.contextmanager
def fit_running():
    """Count a fit as running for its duration (``request_interrupt`` reaches only those)."""
    _FITS_RUNNING[0] += 1
    try:
        yield
    finally:
        _FITS_RUNNING[0] -= 1
