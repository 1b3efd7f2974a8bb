"""Thin re-export: the old module path melody_plugin.midi_io, kept so old imports keep working.

The code lives in melody_plugin.io.abc, melody_plugin.io.files, melody_plugin.io.inputs, melody_plugin.io.midi,
melody_plugin.io.musicxml, melody_plugin.io.tfrecord, melody_plugin.runtime.guarded.
"""

from melody_plugin.io.abc import (  # noqa: F401
    _ABC_CHARSET,
    ABC_SECONDS_PER_TUNE,
    MAX_ABC_BOOK_SECONDS,
    MAX_ABC_TUNES,
    AbcTune,
    _abc_tune_with_note_seq,
    _read_abc,
    _read_abc_tune,
    abc_bytes_to_text,
    split_abc_tunebook,
)
from melody_plugin.io.files import READER_ENV, READERS, MusicFile, read_music_file  # noqa: F401
from melody_plugin.io.inputs import (  # noqa: F401
    ABC_EXTENSIONS,
    MIDI_EXTENSIONS,
    MUSIC_EXTENSIONS,
    MUSICXML_EXTENSIONS,
    TFRECORD_EXTENSIONS,
    list_music_files,
)
from melody_plugin.io.midi import (  # noqa: F401
    DEFAULT_QPM,
    MAX_NOTES,
    MAX_QUARTERS,
    MAX_TICK,
    STANDARD_PPQ,
    _check_midi_events,
    _check_midi_structure,
    _end_open_notes,
    _last_ticks,
    _move_ends_of_tracks,
    _music_pb2,
    _pretty_midi,
    _scan_track,
    _tempos_to_first_track,
    _TrackNotes,
    _vlq,
    midi_bytes_to_note_sequence,
    note_sequence_to_midi_bytes,
    note_sequence_to_midi_file,
    note_sequence_to_pretty_midi,
    pretty_midi_to_note_sequence,
)
from melody_plugin.io.musicxml import (  # noqa: F401
    _UNPACK_PIECE,
    MAX_UNCOMPRESSED_BYTES,
    _check_xml_bytes,
    _musicxml_score_bytes,
    _PrologEnd,
    _read_musicxml,
    _unpack_limited,
)
from melody_plugin.io.tfrecord import read_note_sequence_tfrecord, write_note_sequence_tfrecord  # noqa: F401
from melody_plugin.runtime.guarded import (  # noqa: F401
    _CONTROL_CHARS,
    MAX_FILE_BYTES,
    READ_TIMEOUT_S,
    ReadTimeout,
    printable,
    read_guarded_bytes,
    time_limit,
)
