"""Run dirs -> the studio's model menu: the shipped model, the run dirs named, and those found under folders.

Entry point: `find_models(run_dirs=(), search_dirs=()) -> list[ModelEntry]`. A run dir is a folder holding
`config.json` and `vocab.json`; folders are searched a few levels deep. The page names a model by its `id` (its
place in the list), never by a path: requests cannot point the server at other folders.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from melody_plugin.errors import MelodyPluginError
from melody_plugin.generate.generator import DEFAULT_MODEL_DIR

SEARCH_DEPTH = 4  # RUNS/name/run_dir is depth 2; deeper trees are rarely run dirs
MAX_MODELS = 200


class ModelListError(MelodyPluginError):
    """A --run_dir or --models_dir that is not what the flag says."""


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    id: str
    name: str  # what the menu shows
    path: str | None  # None: the model shipped with the package
    detail: str  # the config's name and description

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "detail": self.detail}


def is_run_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "vocab.json").is_file()


def _detail(path: Path) -> str:
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "config.json unreadable"
    if not isinstance(config, dict):
        return "config.json unreadable"
    return " - ".join(str(config[k]) for k in ("name", "description") if config.get(k))


def _search(folder: Path) -> list[Path]:
    """Run dirs under `folder`, in name order, not descending into a run dir or hidden folders."""
    found = []
    for root, dirs, _ in os.walk(folder):
        depth = len(Path(root).relative_to(folder).parts)
        if is_run_dir(Path(root)):
            found.append(Path(root))
            dirs.clear()
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < SEARCH_DEPTH else []
    return sorted(found)


def find_models(run_dirs=(), search_dirs=()) -> list[ModelEntry]:
    """The shipped model first, then each run dir given, then those found under `search_dirs` (no repeats).

    Raises:
      ModelListError: a run dir given that is not one, or a search folder that does not exist.
    """
    entries = [ModelEntry("0", "the shipped folk model", None, _detail(DEFAULT_MODEL_DIR))]
    paths = []
    for run_dir in run_dirs:
        path = Path(run_dir).expanduser()
        if not is_run_dir(path):
            raise ModelListError(f"{run_dir}: not a run directory (no config.json and vocab.json)")
        paths.append(path)
    for folder in search_dirs:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise ModelListError(f"{folder}: no such folder to search for run directories")
        paths += _search(folder)
    seen = set()
    for path in paths:
        key = path.resolve()
        if key in seen or len(entries) >= MAX_MODELS:
            continue
        seen.add(key)
        entries.append(ModelEntry(str(len(entries)), str(path), str(path), _detail(path)))
    return entries
