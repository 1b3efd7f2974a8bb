"""Thin re-export: the old module path melody_plugin.vocab, kept so old imports keep working.

The code lives in melody_plugin.tokens.vocab.
"""

from melody_plugin.tokens.vocab import (  # noqa: F401
    FORMAT_VERSION,
    LOOKBACK_STEPS,
    METER_FEATURE_SIZE,
    NUM_SPECIAL,
    PAD,
    SPECIAL_TOKENS,
    START,
    UNK,
    OovChange,
    Vocabulary,
    VocabularyError,
    _fewest_tokens,
    key_shift,
    lookback_features,
    meter_features,
    roll_lookback,
    token_durations,
)
