"""The one stop facility of training: Ctrl-C and SIGTERM held while TensorFlow works, acted on at safe points."""

from __future__ import annotations

import contextlib
import functools
import signal
import threading


class _StopSignals:
    """SIGINT and SIGTERM during `train_and_evaluate`: raised as KeyboardInterrupt, and remembered.

    The flag is the safety net: a KeyboardInterrupt raised inside library code can be swallowed there (a Cython
    module loaded by TensorFlow's import writes it off as "unraisable"), so the loop checks the flag as well.

    Inside `deferred()` (TensorFlow at work: building, compiled calls, checkpoints, evaluation) a signal is only
    remembered: Python runs its handler wherever TensorFlow's C++ code calls back into Python, and an exception
    raised there can crash the process (a segmentation fault while a checkpoint was written). The loop then stops
    at its next check, between two compiled calls or two eval batches; the command's watchdog (cli.flags) ends it
    if that takes longer than its grace period.
    """

    def __init__(self):
        self.requested = False
        self._deferring = 0
        self._previous = {}

    def __enter__(self):
        self.requested = False
        self._deferring = 0
        if _main_thread():  # only the main thread may set handlers; elsewhere Ctrl-C is the caller's business
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc_info):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _on_signal(self, signum, frame):
        self.requested = True
        if not self._deferring:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self):
        """Signals only remembered while TensorFlow works; KeyboardInterrupt at the end if one came."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        self.check()

    def check(self) -> None:
        """Raises KeyboardInterrupt if a signal came, even if its KeyboardInterrupt was swallowed."""
        if self.requested:
            raise KeyboardInterrupt


_STOP = _StopSignals()


def _stops_on_signals(fn):
    """Runs `fn` with SIGINT and SIGTERM handled by _STOP (restored afterwards)."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with _STOP:
            return fn(*args, **kwargs)

    return wrapped


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
