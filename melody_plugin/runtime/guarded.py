"""Bounded reads of any file: a size limit before reading and a time limit around parsing."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import threading
from pathlib import Path

from melody_plugin.errors import InputFileError

MAX_FILE_BYTES = 16 * 1024 * 1024


READ_TIMEOUT_S = 20.0


class ReadTimeout(InputFileError):
    """Reading a file ran past its time limit (readers that skip a bad tune must not skip this)."""


@contextlib.contextmanager
def time_limit(seconds: float, path):
    """Raises ReadTimeout if the body runs longer than `seconds` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum, frame):
        raise ReadTimeout(path, f"reading took longer than {seconds:g} s; refused")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def read_guarded_bytes(path, max_bytes: int | None = None) -> bytes:
    """Reads a whole regular file, refusing anything else (missing, folder, FIFO, device, link loop, too big)."""
    path = Path(path)
    max_bytes = max_bytes or MAX_FILE_BYTES
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except PermissionError:
        raise InputFileError(path, "permission denied") from None
    except OSError as e:  # ELOOP (symlink loop), ENAMETOOLONG, ...
        raise InputFileError(path, f"cannot access ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputFileError(path, "is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise InputFileError(path, "is not a regular file (FIFO, socket or device); refused")
    if st.st_size == 0:
        raise InputFileError(path, "empty file")
    if st.st_size > max_bytes:
        raise InputFileError(path, f"file is {st.st_size} bytes, over the {max_bytes} byte limit")
    try:
        # O_NONBLOCK: if the file was swapped for a FIFO after the stat, open must not block.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except PermissionError:
        raise InputFileError(path, "permission denied") from None
    except OSError as e:
        raise InputFileError(path, f"cannot open ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise InputFileError(path, "is not a regular file; refused")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputFileError(path, f"file is over the {max_bytes} byte limit")
    return data


_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str, limit: int = 60) -> str:
    """Text from a file made safe for a terminal: control bytes (ESC...) as `?`, cut to `limit` characters."""
    text = _CONTROL_CHARS.sub("?", text)
    return text if len(text) <= limit else text[:limit] + "..."
