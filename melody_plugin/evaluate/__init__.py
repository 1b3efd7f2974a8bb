"""Scoring: bits per note of whole melodies, and continuations against what real tunes do."""

# the names of the old module melody_plugin.evaluate, where users import them from
from melody_plugin.evaluate.scoring import (  # noqa: F401
    _OUTPUT_INDEX,
    UNKNOWN_PITCH,
    EvaluationError,
    _files_by_name,
    _melody_of_file,
    _reason,
    evaluate_continuations,
    evaluate_input,
    pair_by_name,
    score_ids,
)
