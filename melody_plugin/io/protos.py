"""note-seq's protobuf modules (`music_pb2`, `generator_pb2`) without importing the note-seq package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from melody_plugin.runtime.quiet import quiet_third_party

_loaded: dict[str, object] = {}


def _load(name: str):
    """note_seq.protobuf.<name>: the real module when note-seq is imported, else loaded by path, once."""
    real = sys.modules.get(f"note_seq.protobuf.{name}")
    if real is not None:
        return real
    if name in _loaded:
        return _loaded[name]

    quiet_third_party()
    spec = importlib.util.find_spec("note_seq")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("note_seq is not installed (pip install note-seq)", name="note_seq")
    path = Path(next(iter(spec.submodule_search_locations))) / "protobuf" / f"{name}.py"
    if not path.is_file():  # an unusual install (zipped, compiled only): the ordinary, slower import
        module = importlib.import_module(f"note_seq.protobuf.{name}")
    else:
        # a private name: `note_seq.protobuf.<name>` in sys.modules would make `import note_seq` half-done
        module_spec = importlib.util.spec_from_file_location(f"melody_plugin._note_seq_{name}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    _loaded[name] = module
    return module


def music_pb2():
    """note-seq's `music_pb2` module (`NoteSequence`), without importing the note-seq package."""
    return _load("music_pb2")


def generator_pb2():
    """note-seq's `generator_pb2` module (`GeneratorBundle`, `GeneratorOptions`), without the note-seq package."""
    return _load("generator_pb2")
