"""Studio settings -> a running local web server: its temporary folder, the bound socket and uvicorn.

Like app.py (Starlette), this module is the server: it imports uvicorn at the top, and only melody_studio's `main`
imports it, after checking that the `[studio]` extra is installed.

Entry points: `check_host(host, expose_to_network)`, `with studio_session(...) as studio:` (the model menu, the
worker pool and a temporary folder that is removed on exit, whatever ends the server) and
`StudioServer(studio, host, port)` with `.url`, `.serve()` (blocking, for the CLI) or `.start()`/`.stop()` (a
background thread, for tests). The socket is bound before uvicorn starts, so port 0 picks a free port and the
URL printed is the one that answers.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import uvicorn

from melody_plugin.errors import MelodyPluginError
from melody_plugin.studio.app import LOOPBACK_HOSTS, Studio, create_app
from melody_plugin.studio.jobs import WorkerPool
from melody_plugin.studio.models import find_models


class StudioError(MelodyPluginError):
    """A studio that cannot start: a host it may not expose, a port in use."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, expose_to_network: bool) -> None:
    """Refuses an address other machines can reach unless `expose_to_network` says so.

    Raises:
      StudioError: naming what would be exposed.
    """
    if not is_loopback(host) and not expose_to_network:
        raise StudioError(f"--host={host} is not a loopback address: anyone who can reach it could upload files and "
                          "run generation on this machine; add --expose_to_network to allow that")


@contextlib.contextmanager
def studio_session(run_dirs=(), models_dirs=(), timeout_s: float = 60.0, workers: int = 2,
                   max_upload_bytes: int = 16 * 1024 * 1024, any_host: bool = False, host: str | None = None):
    """A Studio with its temporary folder (uploads, generated files), removed with the workers on exit."""
    models = find_models(run_dirs, models_dirs)
    work_dir = Path(tempfile.mkdtemp(prefix="melody_studio_"))
    pool = WorkerPool(workers, timeout_s, cwd=work_dir)
    try:
        hosts = ["*"] if any_host else list(LOOPBACK_HOSTS) + ([host] if host and host not in LOOPBACK_HOSTS else [])
        yield Studio(models, work_dir, pool, max_upload_bytes, hosts)
    finally:
        pool.close()
        shutil.rmtree(work_dir, ignore_errors=True)


class StudioServer:
    """uvicorn serving `create_app(studio)` on a socket bound at construction."""

    def __init__(self, studio: Studio, host: str = "127.0.0.1", port: int = 8765):
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host.strip("[]"), port))
        except OSError as e:
            self.sock.close()
            raise StudioError(f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port") from None
        self.sock.listen(128)  # connections wait in the backlog from now on: the URL printed answers at once
        self.host, self.port = host, self.sock.getsockname()[1]
        config = uvicorn.Config(create_app(studio), log_level="warning", access_log=False,
                                timeout_graceful_shutdown=3)
        self.server = uvicorn.Server(config)
        self._thread = None

    @property
    def url(self) -> str:
        host = f"[{self.host.strip('[]')}]" if ":" in self.host.strip("[]") else self.host
        return f"http://{host}:{self.port}/"

    def serve(self) -> None:
        """Serves until Ctrl-C or SIGTERM (uvicorn's own handling), then closes the socket."""
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.sock.close()

    def start(self, timeout_s: float = 30.0) -> "StudioServer":
        """Serves from a background thread; returns once the server accepts connections."""
        self._thread = threading.Thread(target=self.serve, name="melody-studio", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise StudioError(f"the studio did not start within {timeout_s:g} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
