"""Interrupts and SIGTERM: how a running fit is asked to stop, for everyone to use.

The estimators check for a pending interrupt at every batch; tracking's parent runs and the CLI
turn SIGTERM into one (and the CLI Ctrl-C), so that a killed process ends its MLflow runs KILLED
instead of leaving them RUNNING. Nothing here imports the rest of the package.
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


def _ctrl_c(signum, frame):
    # Ctrl-C as an interrupt request too, for the reason in _terminated: Python's own handler
    # raises wherever the main thread is, a finalizer included, where the interrupt is lost.
    # A second Ctrl-C before a running fit has stopped raises at once (a stuck batch).
    if _INTERRUPT.is_set() or not request_interrupt("Ctrl-C"):
        raise KeyboardInterrupt("Ctrl-C")


def catch_sigint():
    """Make Ctrl-C (SIGINT) an interrupt, as ``catch_sigterm`` does SIGTERM, where Python's own
    handler is in place (not where SIGINT is ignored: a background job, ``nohup``). For a
    program that owns its process: the command line. Returns what ``release_sigint`` takes."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return None
    return signal.signal(signal.SIGINT, _ctrl_c)


def release_sigint(previous):
    if previous is not None:
        signal.signal(signal.SIGINT, previous)


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


_watched = set()  # parent pids this process watches
parent_gone = threading.Event()  # set when a watched parent has died (exit_with_parent)


def exit_with_parent(parent_pid, interval=1.0, grace=30.0):
    """In a worker process started by ``parent_pid`` (a loky worker of an experiment): when
    that process is gone (SIGKILLed, crashed), send this one SIGTERM, so that a fit running
    here ends its run KILLED with its model, then exit after ``grace`` seconds at most (the
    task that sees the interrupt exits at once when ``parent_gone`` is set).

    loky's workers only notice a dead parent when they next read their call queue, so a busy
    worker trained on for minutes after its parent was killed; neither joblib nor loky has an
    option for it. A daemon thread polls ``os.getppid()`` (the parent's death re-parents this
    process), started once per process; it does nothing in the parent itself."""
    import os

    if parent_pid is None or os.getpid() == parent_pid or parent_pid in _watched:
        return
    _watched.add(parent_pid)

    def watch():
        import time

        while os.getppid() == parent_pid:
            time.sleep(interval)
        parent_gone.set()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace)
        os._exit(1)

    threading.Thread(target=watch, name="mnist-estimators-parent-watch", daemon=True).start()
