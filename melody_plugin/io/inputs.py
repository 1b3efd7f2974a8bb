"""The one rule for what an input path names: files, folders (recursive), globs and TFRecords."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

from melody_plugin.errors import InputFileError

MIDI_EXTENSIONS = (".mid", ".midi", ".kar", ".smf")


MUSICXML_EXTENSIONS = (".xml", ".musicxml", ".mxl")


ABC_EXTENSIONS = (".abc",)


TFRECORD_EXTENSIONS = (".tfrecord", ".tfrecords")


MUSIC_EXTENSIONS = MIDI_EXTENSIONS + MUSICXML_EXTENSIONS + ABC_EXTENSIONS


def list_music_files(input_path) -> list[Path]:
    """The music files named by a file, a folder (searched recursively) or a glob, sorted.

    Raises:
      InputFileError: if nothing matches.
    """
    text = os.path.expanduser(str(input_path))  # --input=~/tunes: the shell leaves `~` after `=` alone
    if any(ch in text for ch in "*?["):
        files = [Path(p) for p in glob.glob(text, recursive=True)]
        files = [p for p in files if p.suffix.lower() in MUSIC_EXTENSIONS + TFRECORD_EXTENSIONS]
    else:
        path = Path(text)
        if path.is_dir():
            files, records = [], 0
            for root, _, names in os.walk(path, followlinks=False):
                files += [Path(root) / n for n in names if Path(n).suffix.lower() in MUSIC_EXTENSIONS]
                records += sum(".tfrecord" in n.lower() for n in names)
            if not files and records:  # a folder is searched for music files only; records are named
                raise InputFileError(path, f"no MIDI, MusicXML or ABC files found, but {records} TFRecord file(s): "
                                           f"pass them by name or a glob, e.g. --input='{path}/*.tfrecord*'")
        elif path.exists() or path.is_symlink():
            files = [path]
        else:
            raise InputFileError(path, "no such file or folder")
    if not files:
        raise InputFileError(input_path, "no MIDI, MusicXML or ABC files found")
    return sorted(files)


# name.tfrecord, name.tfrecords, and the sharded forms name-00000-of-00004.tfrecord and name.tfrecord-00000-of-00004
_TFRECORD_NAME = re.compile(r"(\.tfrecords?(-\d+-of-\d+)?|-\d+-of-\d+\.tfrecords?)$", re.IGNORECASE)


def is_tfrecord_name(path) -> bool:
    """True for a TFRecord file name, sharded names included."""
    return bool(_TFRECORD_NAME.search(Path(path).name))


def input_files(input_path) -> list[Path]:
    """The music and TFRecord files named by a file, a folder (searched recursively) or a glob, sorted.

    Raises:
      InputFileError: if nothing matches.
    """
    text = os.path.expanduser(str(input_path))  # --input=~/tunes: the shell leaves `~` after `=` alone
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True)
                       if Path(p).suffix.lower() in MUSIC_EXTENSIONS or is_tfrecord_name(p))
        if not files:
            raise InputFileError(input_path, "no MIDI, MusicXML, ABC or TFRecord files match")
        return files
    if is_tfrecord_name(text) and Path(text).is_file():
        return [Path(text)]
    return list_music_files(input_path)


def default_input() -> Path:
    """The example corpus shipped inside the package (about 100 folk tunes)."""
    return Path(__file__).parents[1] / "data" / "corpus"
