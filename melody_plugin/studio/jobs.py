"""Studio requests -> worker processes, a few at a time, each stopped when it runs past its time limit.

Entry point: `WorkerPool(max_workers, timeout_s).run(request) -> dict` (blocking: the server calls it off the
event loop, in a thread). Each request runs `python -m melody_plugin.studio.worker` in a process of its own, so
two browsers generating at once each get their own answer, and a generation that takes too long is ended by
killing its process (a numpy loop in a thread could not be stopped). `close()` kills what still runs at exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

WORKER_MODULE = "melody_plugin.studio.worker"


class WorkerPool:
    """At most `max_workers` worker processes at once; a request waits for a free one within its time limit."""

    def __init__(self, max_workers: int = 2, timeout_s: float = 60.0, log=None, cwd=None):
        self.timeout_s = timeout_s
        self.cwd = cwd  # `python -m` puts its folder first on sys.path: the studio's own, not the user's
        self._slots = threading.BoundedSemaphore(max_workers)
        self._running: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._log = log or (lambda text: print(text, file=sys.stderr, flush=True))

    def run(self, request: dict) -> dict:
        """The worker's answer to `request`, or {"error": ...} when it timed out, crashed or the pool closed."""
        started = time.monotonic()
        if not self._slots.acquire(timeout=self.timeout_s):
            return {"error": f"the studio is busy: no generator was free within {self.timeout_s:g} s; try again"}
        try:
            return self._run(request, self.timeout_s - (time.monotonic() - started))
        finally:
            self._slots.release()

    def _run(self, request: dict, timeout_s: float) -> dict:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        with self._lock:
            if self._closed:
                return {"error": "the studio is shutting down"}
            # its own session: a Ctrl-C in the studio's terminal reaches the studio alone, which kills the workers
            # it runs (else each printed a KeyboardInterrupt traceback and the page said it crashed)
            proc = subprocess.Popen([sys.executable, "-m", WORKER_MODULE], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                    cwd=self.cwd, start_new_session=True)
            self._running.add(proc)
        try:
            stdout, stderr = proc.communicate(json.dumps(request), timeout=max(timeout_s, 0.001))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return {"error": f"stopped after {self.timeout_s:g} s: the generation took too long (ask for fewer "
                             "bars or outputs, or start the studio with a longer --generation_timeout_s)"}
        finally:
            with self._lock:
                self._running.discard(proc)
        if stderr.strip():
            self._log(stderr.rstrip())
        try:
            answer = json.loads(stdout) if proc.returncode == 0 else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            return {"error": f"the generator stopped unexpectedly (exit status {proc.returncode}); the studio's "
                             "terminal shows the details"}
        return answer

    def close(self) -> None:
        """Kills every worker still running; later requests are refused."""
        with self._lock:
            self._closed = True
            running = list(self._running)
        for proc in running:
            proc.kill()
