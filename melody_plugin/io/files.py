"""Any music file -> `MusicFile` (its NoteSequences and warnings): `read_music_file`, by extension and reader."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from melody_plugin.errors import InputFileError
from melody_plugin.io import music21_score
from melody_plugin.io.abc import _read_abc
from melody_plugin.io.inputs import ABC_EXTENSIONS, MUSICXML_EXTENSIONS
from melody_plugin.io.midi import midi_bytes_to_note_sequence
from melody_plugin.io.musicxml import _read_musicxml
from melody_plugin.runtime.guarded import READ_TIMEOUT_S, printable, read_guarded_bytes, time_limit

READERS = ("auto", "note_seq", "music21")  # who reads ABC and MusicXML; see read_music_file


READER_ENV = "MELODY_PLUGIN_READER"


@dataclasses.dataclass(frozen=True)
class MusicFile:
    """What one file held: its NoteSequences (an ABC tunebook may hold several) and non-fatal warnings."""

    path: str
    sequences: tuple
    warnings: tuple[str, ...] = ()


def read_music_file(path, timeout_s: float | None = None, reader: str | None = None,
                    tune: str | None = None) -> MusicFile:
    """Reads one MIDI, MusicXML or ABC file into NoteSequences, bounded in size, time and memory.

    Args:
      path: the file.
      timeout_s: wall-clock limit for parsing (default READ_TIMEOUT_S); for ABC and MusicXML, for each reader.
      reader: for ABC and MusicXML: "auto" (music21 when the extra is installed, note-seq for what music21
        fails on, a time-out included; note-seq alone without the extra), "note_seq" or "music21". Default:
        $MELODY_PLUGIN_READER, else "auto". music21 comes first because note-seq reads some files wrong without
        refusing them: its ABC reader splits a tie across a bar line into two notes and ignores pickup bars (every
        bar line shifts), and its MusicXML reader drops part names (the melody track cannot be found by name).
      tune: of an ABC tunebook, read only this tune: its X: number ("9"), or its name in reports ("4 (2)" for the
        second tune numbered 4). Its reason is the error when it cannot be read; other tunes are not reported.

    Raises:
      InputFileError: with the file and the reason, for anything that is not readable music.
    """

    path = Path(path)
    timeout_s = timeout_s or READ_TIMEOUT_S
    reader = reader or os.environ.get(READER_ENV) or "auto"
    if reader not in READERS:
        raise InputFileError(path, f"reader must be one of {READERS}, got {reader!r}")
    suffix = path.suffix.lower()
    if tune is not None and suffix not in ABC_EXTENSIONS:
        raise InputFileError(path, f"a tune number (#X:{printable(tune)}) picks a tune of an ABC tunebook; "
                                   "this file is not one")
    if reader == "music21" and suffix in ABC_EXTENSIONS + MUSICXML_EXTENSIONS and not music21_score.available():
        raise InputFileError(path, f"the music21 reader is not installed ({music21_score.INSTALL_HINT})")
    data = read_guarded_bytes(path)
    try:
        if suffix in ABC_EXTENSIONS:  # a tunebook is timed tune by tune
            sequences, warnings = _read_abc(path, data, reader, timeout_s, tune)
            return MusicFile(str(path), tuple(sequences), tuple(warnings))
        if suffix in MUSICXML_EXTENSIONS:  # each reader is timed: in auto, note-seq reads what music21 ran out on
            sequences, warnings = _read_musicxml(path, data, reader, timeout_s)
            return MusicFile(str(path), tuple(sequences), tuple(warnings))
        with time_limit(timeout_s, path):
            ns, warnings = midi_bytes_to_note_sequence(data, path)
            return MusicFile(str(path), (ns,), tuple(warnings))
    except (MemoryError, RecursionError) as e:
        raise InputFileError(path, f"file too complex to read ({type(e).__name__})") from None
