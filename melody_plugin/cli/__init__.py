"""The melody_* commands, thin shells over the library (see flags.py for what they share).

A command's first moments are its imports (absl, then its own module), before `flags.stop_on_signals` installs the
full Ctrl-C and SIGTERM handling. A signal then would end it with Python's KeyboardInterrupt traceback from deep in
an import, so when this package is imported by one of our console scripts it installs a small handler first: nothing
has been read or written yet, so the command says so in one line and exits 130 at once.
"""

import _signal  # built in and already loaded: no import time, unlike `signal` (an enum built at import)
import os
import sys

COMMANDS = ("melody_create_dataset", "melody_train", "melody_evaluate", "melody_generate", "melody_export")


def _interrupted_while_starting(signum, frame):
    name = os.path.basename(sys.argv[0]).removesuffix(".py")
    os.write(2, f"{name}: interrupted while starting; nothing was written\n".encode())
    os._exit(130)


if os.path.basename(sys.argv[0] if sys.argv else "").removesuffix(".py") in COMMANDS:
    for _sig in (_signal.SIGINT, _signal.SIGTERM):
        try:
            _signal.signal(_sig, _interrupted_while_starting)
        except ValueError:  # not the main thread: the caller's business
            break
