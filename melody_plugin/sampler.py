"""Thin re-export: the old module path melody_plugin.sampler, kept so old imports keep working.

The code lives in melody_plugin.generate.sampler.
"""

from melody_plugin.generate.sampler import (  # noqa: F401
    _PC,
    BACKENDS,
    MODES,
    NEG_INF,
    Constraints,
    DecodeStart,
    History,
    SampleResult,
    SamplingError,
    SamplingOptions,
    TokenTable,
    _choose,
    _pitch_class,
    _RepetitionPrior,
    constraint_mask,
    fillable_steps,
    parse_pitch_range,
    plan,
    sample,
    scale_pitch_classes,
)
