"""Browser uploads -> files in the studio's temporary folder, size-limited before a byte is read.

Entry points: `safe_name(name)`, `check_declared_size(name, content_length, limit)` and `await save_stream(chunks,
folder, name, limit) -> Path`. The body is the file itself (no multipart parsing): a declared length over the
limit is refused from the headers alone, and a body that runs past it is cut off at the limit. A name is only ever
a name: `../../etc/passwd` becomes `passwd`, saved inside the upload's own folder, and only music suffixes pass.
"""

from __future__ import annotations

import re
import secrets
import shutil
from pathlib import Path

from melody_plugin.errors import MelodyPluginError

PRIMER_SUFFIXES = (".mid", ".midi", ".kar", ".smf", ".abc", ".xml", ".musicxml", ".mxl")
MAX_NAME_CHARS = 80


class UploadError(MelodyPluginError):
    """An upload refused: empty, too big, or not a music file by its name."""


def safe_name(name: str) -> str:
    """The last part of a browser-given name, with only letters, digits, '.', '-' and '_' ("x.mid")."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip(".")[-MAX_NAME_CHARS:]
    return base or "upload"


def check_suffix(name: str) -> None:
    if not name.lower().endswith(PRIMER_SUFFIXES):
        raise UploadError(f"{name}: not a MIDI, ABC or MusicXML file (give it one of the suffixes "
                          f"{', '.join(PRIMER_SUFFIXES)})")


def check_declared_size(name: str, content_length: str | None, limit: int) -> None:
    """Refuses from the Content-Length header alone: nothing is read of a body that says it is too big."""
    if content_length is None:
        return
    try:
        size = int(content_length)
    except ValueError:
        raise UploadError(f"{name}: bad Content-Length {content_length[:20]!r}") from None
    if size == 0:
        raise UploadError(f"{name}: empty file")
    if size > limit:
        raise UploadError(f"{name}: {size} bytes is over the {limit} byte limit for a primer")


async def save_stream(chunks, folder: Path, name: str, limit: int) -> Path:
    """Writes the body chunks to FOLDER/<random>/<name>, stopping as soon as they pass `limit` bytes.

    Raises:
      UploadError: an empty body, or more than `limit` bytes (the partial file is removed).
    """
    target_dir = folder / secrets.token_hex(8)
    target_dir.mkdir(parents=True)
    path = target_dir / name
    size = 0
    try:
        with open(path, "wb") as f:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    break
                f.write(chunk)
    except Exception as e:  # the browser went away mid-upload (starlette's ClientDisconnect): nothing is kept
        shutil.rmtree(target_dir, ignore_errors=True)
        raise UploadError(f"{name}: the upload stopped part-way ({type(e).__name__})") from None
    if size > limit:
        shutil.rmtree(target_dir, ignore_errors=True)
        raise UploadError(f"{name}: over the {limit} byte limit for a primer")
    if size == 0:
        shutil.rmtree(target_dir, ignore_errors=True)
        raise UploadError(f"{name}: empty file")
    return path
