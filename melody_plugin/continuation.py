"""Thin re-export: the old module path melody_plugin.continuation, kept so old imports keep working.

The code lives in melody_plugin.evaluate.continuation.
"""

from melody_plugin.evaluate.continuation import (  # noqa: F401
    MAX_INTERVAL,
    METRICS,
    ContinuationError,
    _normalised,
    _notes,
    average,
    compare,
    copy_primer,
    duration_histogram,
    first_sounding_bar,
    interval_histogram,
    joined,
    notes_per_bar,
    overlap,
    pitch_class_histogram,
    repeated_share,
    score_tune,
    slice_steps,
    split_primer_reference,
)
