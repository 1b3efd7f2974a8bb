"""HTTP requests -> the studio's answers: the page, its assets, models, primer uploads, generations, downloads.

Entry point: `create_app(Studio(...)) -> Starlette` (an ASGI app; cli/melody_studio.py serves it with uvicorn).
Routes: `GET /` (the page), `/static/...` (its CSS and JavaScript, shipped in the package), `GET /api/models`,
`POST /api/primer?name=FILE&model=ID` (the file is the body), `POST /api/generate` (JSON), `GET
/api/download/JOB/FILE`. Generation runs in worker processes (jobs.py) called from a thread, never on the event
loop. Every refusal is JSON `{"error": one line}` with a 4xx status, shown on the page; an unexpected error is
logged to the terminal and the page gets one line without a traceback. POSTs must carry the `X-Melody-Studio`
header, which another site's page cannot send without the server's consent, and the Host header must name this
machine: a web page elsewhere cannot drive the studio.
"""

from __future__ import annotations

import dataclasses
import math
import re
import secrets
import shutil
import sys
import traceback
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from melody_plugin.errors import MelodyPluginError
from melody_plugin.studio import uploads
from melody_plugin.studio.jobs import WorkerPool
from melody_plugin.studio.models import ModelEntry

STATIC_DIR = Path(__file__).parent / "static"
REQUEST_HEADER = "x-melody-studio"
MAX_JSON_BYTES = 64 * 1024
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]", "::1"]
# what the page may ask for, checked before a worker starts: (low, high) inclusive
LIMITS = {"num_bars": (1, 64), "num_outputs": (1, 8), "temperature": (0.0, 5.0), "top_p": (0.01, 1.0),
          "repetition": (-100.0, 100.0), "seed": (0, 2**31 - 1), "qpm": (4.0, 1000.0)}
DOWNLOAD_NAME = re.compile(r"^melody_\d{3}\.(mid|abc|musicxml)$")
MEDIA_TYPES = {"mid": "audio/midi", "abc": "text/vnd.abc; charset=utf-8",
               "musicxml": "application/vnd.recordare.musicxml+xml"}


class RequestError(MelodyPluginError):
    """A request the page should not have sent: a bad number, an unknown model or primer."""


@dataclasses.dataclass
class Studio:
    """What the server holds: the model menu, its temporary folder and the worker pool."""

    models: list[ModelEntry]
    work_dir: Path  # uploads/ and jobs/ live here; the CLI removes it on exit
    pool: WorkerPool
    max_upload_bytes: int = 16 * 1024 * 1024
    allowed_hosts: list[str] = dataclasses.field(default_factory=lambda: list(LOOPBACK_HOSTS))
    primers: dict = dataclasses.field(default_factory=dict)  # id -> (path, the user's name for it)
    jobs: set = dataclasses.field(default_factory=set)

    def model(self, model_id) -> ModelEntry:
        found = [m for m in self.models if m.id == str(model_id)]
        if not found:
            raise RequestError(f"no model {str(model_id)[:20]!r}; reload the page")
        return found[0]


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _number(body: dict, name: str, default, kind=float):
    """body[name] as `kind` within LIMITS[name], or the default when absent or blank."""
    value = body.get(name)
    if value is None or value == "":
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise RequestError(f"{name.replace('_', ' ')} must be a number, got {str(value)[:20]!r}") from None
    low, high = LIMITS[name]
    if not (low <= number <= high) or (kind is float and not math.isfinite(number)):
        raise RequestError(f"{name.replace('_', ' ')} must be in [{low:g}, {high:g}], got {value}")
    return number


def _text(body: dict, name: str, limit: int = 2000) -> str:
    value = body.get(name) or ""
    if not isinstance(value, str) or len(value) > limit:
        raise RequestError(f"{name.replace('_', ' ')} must be text of at most {limit} characters")
    return value.strip()


def generate_request(studio: Studio, body: dict) -> dict:
    """The worker request for a page's JSON body (every value checked; paths come from the server only)."""
    if not isinstance(body, dict):
        raise RequestError("the request must be a JSON object")
    model = studio.model(body.get("model", "0"))
    request = {"action": "generate", "model_path": model.path, "model_name": model.name,
               "num_bars": _number(body, "num_bars", 4, int), "num_outputs": _number(body, "num_outputs", 2, int),
               "temperature": _number(body, "temperature", 1.0), "top_p": _number(body, "top_p", 1.0),
               "repetition": _number(body, "repetition", 0.0), "qpm": _number(body, "qpm", None),
               "seed": _number(body, "seed", secrets.randbelow(2**31), int),
               "time_signature": _text(body, "time_signature", 10) or "4/4", "scale": _text(body, "scale", 60),
               "pitch_range": _text(body, "pitch_range", 20), "primer_text": _text(body, "primer_text")}
    primer_id = body.get("primer_id")
    if primer_id:
        if primer_id not in studio.primers:
            raise RequestError("the dropped primer file is gone (the studio restarted?); drop it again")
        path, name = studio.primers[primer_id]
        request.update(primer_path=str(path), primer_name=name)
    return request


def _check_origin(request) -> None:
    if request.headers.get(REQUEST_HEADER) != "1":
        raise HTTPException(403, "requests must come from the studio's page")


def create_app(studio: Studio) -> Starlette:
    """The studio as an ASGI app (serve it on a loopback address; see cli/melody_studio.py)."""
    uploads_dir, jobs_dir = studio.work_dir / "uploads", studio.work_dir / "jobs"

    async def index(request):
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    async def models(request):
        return JSONResponse({"models": [m.to_json() for m in studio.models],
                             "limits": {k: list(v) for k, v in LIMITS.items()},
                             "max_upload_bytes": studio.max_upload_bytes})

    async def primer(request):
        _check_origin(request)
        name = uploads.safe_name(request.query_params.get("name", ""))
        try:
            model = studio.model(request.query_params.get("model", "0"))
            uploads.check_suffix(name)
            uploads.check_declared_size(name, request.headers.get("content-length"), studio.max_upload_bytes)
        except MelodyPluginError as e:  # answered from the headers: the body is never read
            return _error(str(e), 413 if "limit" in str(e) else 400)
        try:
            path = await uploads.save_stream(request.stream(), uploads_dir, name, studio.max_upload_bytes)
        except uploads.UploadError as e:
            return _error(str(e), 413 if "limit" in str(e) else 400)
        answer = await run_in_threadpool(studio.pool.run, {
            "action": "primer", "model_path": model.path, "primer_path": str(path), "primer_name": name})
        if "error" in answer:
            shutil.rmtree(path.parent, ignore_errors=True)  # a refused file is not kept
            return _error(answer["error"])
        primer_id = secrets.token_hex(8)
        studio.primers[primer_id] = (path, name)
        return JSONResponse({"primer_id": primer_id, "name": name, **answer})

    async def generate(request):
        _check_origin(request)
        length = request.headers.get("content-length") or "0"
        if not length.isdigit() or int(length) > MAX_JSON_BYTES:
            return _error("the request is too big", 413)
        try:
            worker_request = generate_request(studio, await request.json())
        except ValueError:
            return _error("the request is not JSON")
        except MelodyPluginError as e:
            return _error(str(e))
        job = secrets.token_hex(8)
        worker_request["job_dir"] = str(jobs_dir / job)
        answer = await run_in_threadpool(studio.pool.run, worker_request)
        if "error" in answer:
            return _error(answer["error"])
        studio.jobs.add(job)
        for out in answer["outputs"]:
            out["downloads"] = {kind: f"/api/download/{job}/{name}" for kind, name in out["files"].items()}
        return JSONResponse({"job": job, "seed": worker_request["seed"], **answer})

    async def download(request):
        job, name = request.path_params["job"], request.path_params["name"]
        if job not in studio.jobs or not DOWNLOAD_NAME.match(name) or not (jobs_dir / job / name).is_file():
            return _error("no such file (the studio keeps files until it stops)", 404)
        kind = name.rsplit(".", 1)[1]
        # the name the page's link gives it: files of several generations do not clash in a downloads folder
        filename = name.replace("melody_", f"melody_{job[:6]}_")
        return FileResponse(jobs_dir / job / name, media_type=MEDIA_TYPES[kind], filename=filename)

    async def http_error(request, exc):
        return _error(exc.detail if isinstance(exc.detail, str) else "bad request", exc.status_code)

    async def server_error(request, exc):
        traceback.print_exception(exc, file=sys.stderr)
        return _error("internal error in the studio (its terminal shows the details)", 500)

    routes = [Route("/", index), Route("/api/models", models), Route("/api/primer", primer, methods=["POST"]),
              Route("/api/generate", generate, methods=["POST"]),
              Route("/api/download/{job}/{name}", download),
              Mount("/static", StaticFiles(directory=STATIC_DIR), name="static")]
    return Starlette(routes=routes, middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=studio.allowed_hosts)],
                     exception_handlers={HTTPException: http_error, Exception: server_error})
