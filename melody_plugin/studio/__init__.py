"""melody_studio: a local web page for the whole loop (choose a model, drop a primer, generate, see, hear, keep).

app.py answers HTTP (Starlette), server.py runs it (uvicorn, loopback only unless asked), jobs.py and worker.py
generate in processes of their own, models.py lists the models, uploads.py takes files in, static/ is the page.
Needs the `[studio]` extra; nothing here is imported by the other commands.
"""

from __future__ import annotations

import importlib.util

INSTALL_HINT = 'pip install "melody_plugin[studio]"'
REQUIRED_MODULES = ("starlette", "uvicorn", "verovio")


def missing_modules() -> list[str]:
    """The modules of the `[studio]` extra that cannot be imported here."""
    return [m for m in REQUIRED_MODULES if importlib.util.find_spec(m) is None]
