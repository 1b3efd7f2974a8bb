"""Scoring: bits per note of whole melodies, and continuations against what real tunes do."""

# where `melody_plugin.evaluate.<name>` found them before the evaluate step became a folder
from melody_plugin.evaluate.scoring import (  # noqa: F401
    UNKNOWN_PITCH,
    EvaluationError,
    evaluate_continuations,
    evaluate_input,
    pair_by_name,
    score_ids,
)

score_sequences = score_ids  # the name before token-id lists stopped being called sequences; kept one release
