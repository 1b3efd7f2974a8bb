"""Thin re-export: the old module path melody_plugin.melody, kept so old imports keep working.

The code lives in melody_plugin.music.extract, melody_plugin.music.key, melody_plugin.music.melody,
melody_plugin.music.timing, melody_plugin.music.tracks.
"""

from melody_plugin.music.extract import (  # noqa: F401
    MIDI_TICKS_PER_QUARTER,
    SKIPPABLE_REASONS,
    _split_rest,
    note_sequence_to_melodies,
    quantized_to_melodies,
    note_sequence_to_melody,
    quantized_to_melody,
    melody_to_note_sequence,
)
from melody_plugin.music.key import estimate_key  # noqa: F401
from melody_plugin.music.melody import (  # noqa: F401
    _TEXT_NOTE,
    DEFAULT_STEPS_PER_QUARTER,
    FLAT_NAMES,
    KEY_NAMES,
    POLICIES,
    REST,
    SHARP_NAMES,
    Extraction,
    Melody,
    MelodyError,
    Note,
    text_to_melody,
    parse_time_signature,
    pitch_name,
)
from melody_plugin.music.timing import (  # noqa: F401
    PRESERVED_CONTROLS,
    TempoMap,
    _meter,
    _round_half_up,
    meter_change_times,
    quantize,
    split_note_sequence,
    split_on_time_changes,
)
from melody_plugin.music.tracks import (  # noqa: F401
    BASS_RANGE_MEDIAN,
    BASS_TRACK_WORDS,
    MELODY_TRACK_WORDS,
    TrackSummary,
    _choose_track,
    _resolve_polyphony,
    choose_melody_track,
    summarize_tracks,
)
