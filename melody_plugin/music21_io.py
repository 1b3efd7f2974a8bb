"""Thin re-export: the old module path melody_plugin.music21_io, kept so old imports keep working.

The code lives in melody_plugin.io.music21_abc, melody_plugin.io.music21_score.
"""

from melody_plugin.io.music21_abc import (  # noqa: F401
    _ABC_BODY_TOKEN,
    _ABC_KEY,
    _ABC_METER,
    _ABC_OPAQUE,
    _CHANGE_MARKER,
    _UNCLOSED_CHORD,
    MAX_REST_BARS,
    AbcSyntaxError,
    _abc_field_change,
    _abc_for_music21,
    _abc_unit,
    _AbcRewrite,
    _blank_text,
    _first_bar_pickup,
    _first_voice,
    _Malformed,
    _Refused,
    _rewrite_for_music21,
    abc_meters,
    abc_tune_to_note_sequence,
)
from melody_plugin.io.music21_score import (  # noqa: F401
    _MODES,
    DEFAULT_QPM,
    DEFAULT_VELOCITY,
    INSTALL_HINT,
    MAX_NOTES,
    MAX_QUARTERS,
    STANDARD_PPQ,
    _music21,
    _pickup_quarters,
    _quiet,
    _TempoMap,
    available,
    musicxml_to_note_sequence,
    score_to_note_sequence,
)
