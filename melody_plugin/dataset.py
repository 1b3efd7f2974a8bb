"""Thin re-export: the old module path melody_plugin.dataset, kept so old imports keep working.

The code lives in melody_plugin.tokens.batches, melody_plugin.tokens.records.
"""

from melody_plugin.tokens.batches import (  # noqa: F401
    FEATURE_NAMES,
    LOOKBACK_NAMES,
    Batching,
    MeterInputs,
    _feature_names,
    _lane_dataset,
    _lane_feature_names,
    _melody_windows,
    _meter_arrays,
    _window_dataset,
    _with_options,
    lane_steps,
    make_dataset,
    melody_lanes,
    num_windows,
)
from melody_plugin.tokens.records import (  # noqa: F401
    EVAL_FILE,
    TRAIN_FILE,
    DatasetError,
    _input_id,
    example_steps_per_bar,
    example_to_ids,
    read_ids,
    ids_to_example,
    write_examples,
    write_ids,
)
