"""Token ids -> tf.data batches: windows from a zero state, or lanes of whole melodies with the state carried."""

from __future__ import annotations

import dataclasses
import itertools
from typing import NamedTuple

import numpy as np

from melody_plugin.runtime.quiet import import_tensorflow
from melody_plugin.tokens.records import DatasetError
from melody_plugin.tokens.form import (
    copy_features,
    countdown_features,
    final_pitch_features,
    pitch_class_steps,
    pitch_class_table,
)
from melody_plugin.tokens.vocab import lookback_features, meter_features, token_durations


def num_windows(num_tokens: int, window_size: int, window_stride: int) -> int:
    span = window_size + 1
    return 0 if num_tokens < span else (num_tokens - span) // window_stride + 1


@dataclasses.dataclass(frozen=True)
class Batching:
    """How token sequences become training or evaluation batches.

    `window_size` tokens per row (targets are the inputs shifted by one); `batch_size` is the GLOBAL batch size (a
    distribution strategy splits it over replicas). `carry_state` chooses the layout:
      False: windows cut anywhere in the joined stream of melodies, `window_stride` tokens apart, each trained from
        a zero LSTM state (the tutorial's way);
      True: `batch_size` lanes of whole melodies, one after another; row i of consecutive batches holds consecutive
        windows of lane i, so the model carries its LSTM state from one batch to the next (truncated
        backpropagation through time), resetting it where a melody begins, as evaluation and generation do.
    `shuffle`, `repeat` and `seed` are training-time behaviour (evaluation: shuffle=False, repeat=False);
    `drop_remainder` drops a last short batch of windows.
    """

    window_size: int
    batch_size: int
    window_stride: int = 1
    carry_state: bool = False
    shuffle: bool = True
    repeat: bool = True
    seed: int = 0
    drop_remainder: bool = True


class MeterInputs(NamedTuple):
    """make_dataset's meter-aware inputs: one bar length per sequence, the vocabulary's `durations()`, and which
    features ride along with the ids: the bar lookback, the countdown to the melody's end (`open_share` of the
    melodies get the open countdown: in shuffled lanes drawn anew each pass, else chosen by index), the copy sources
    `copy_bars` bars back, and with the vocabulary's `pitches()` the steps each pitch class has sounded so far (the
    key head's input), and with `final_pitches` (the vocabulary's `pitches()`) the pitch class each melody ends on
    (`form.final_pitch_features`: open where the countdown is). A plain (steps_per_bar, durations) pair means bar
    position and bar length only."""

    steps_per_bar: list
    durations: np.ndarray
    lookback: bool = False
    countdown: bool = False
    copy_bars: tuple = ()
    open_share: float = 0.0
    pitches: np.ndarray | None = None
    final_pitches: np.ndarray | None = None


FEATURE_NAMES = ("bar_position", "bar_steps")


LOOKBACK_NAMES = ("lookback_1", "lookback_2")


COUNTDOWN_NAME = "bars_left"


KEY_NAME = "pitch_classes"  # (time, 12) each, where the other features are (time,)


FINAL_PITCH_NAME = "final_pitch"


def copy_names(bars) -> tuple[str, ...]:
    """The model inputs of the copy sources: "copy_1", "copy_2"... one per distance in bars."""
    return tuple(f"copy_{k}" for k in bars)


def is_open(index: int, share: float) -> bool:
    """Whether melody `index` of a training set is fed the open countdown: an even spread of `share` of them."""
    return int((index + 1) * share) > int(index * share)


def sequence_features(sequence, steps_per_bar: int, meter: MeterInputs, open_ending: bool = False) -> dict:
    """{input name: (time,) int32 ((time, 12) for the key head's)} of one id sequence (the start token first), as
    `make_dataset` feeds them."""
    steps = token_durations(sequence, meter.durations)
    position, bar_steps = meter_features(steps, steps_per_bar)
    out = {"bar_position": position, "bar_steps": bar_steps}
    if meter.lookback:
        out.update(zip(LOOKBACK_NAMES, lookback_features(steps, sequence, steps_per_bar)))
    if meter.countdown:
        out[COUNTDOWN_NAME] = countdown_features(steps, steps_per_bar, open_ending)
    if meter.copy_bars:
        out.update(zip(copy_names(meter.copy_bars), copy_features(steps, sequence, steps_per_bar, meter.copy_bars)))
    if meter.pitches is not None:
        out[KEY_NAME] = pitch_class_steps(steps, sequence, pitch_class_table(meter.pitches))
    if meter.final_pitches is not None:
        out[FINAL_PITCH_NAME] = final_pitch_features(sequence, meter.final_pitches, open_ending)
    return out


def make_dataset(sequences, batching: Batching, meter=None):
    """A tf.data pipeline of training or evaluation batches (see `Batching` for the two layouts).

    Args:
      sequences: id sequences, each starting with the start token.
      batching: window size, batch size and layout.
      meter: `MeterInputs` (or a (steps_per_bar, durations) pair): one bar length per sequence and the
        vocabulary's `durations()`; the inputs are then {"ids", "bar_position", "bar_steps"} and, with
        `lookback`, {"lookback_1", "lookback_2"}, each (batch_size, window_size).

    Returns:
      Windows: batches of (inputs, targets), each (batch_size, window_size) int32. Lanes: batches of
      (inputs, targets, weights, reset): weights (batch_size, window_size) float32 are 0 on padding after a
      melody's last target; reset (batch_size,) float32 is 1 where a row starts a melody (or is all padding).

    Raises:
      DatasetError: if there are fewer tokens than one window.
    """
    meter = None if meter is None else MeterInputs(*meter)
    if batching.carry_state:
        return _lane_dataset(sequences, batching, meter)
    return _window_dataset(sequences, batching, meter)


def _meter_arrays(sequences, meter: MeterInputs | None) -> list[dict] | None:
    """Per sequence its `sequence_features`; None without meter."""
    if meter is None:
        return None
    return [sequence_features(s, spb, meter, is_open(i, meter.open_share))
            for i, (s, spb) in enumerate(zip(sequences, meter.steps_per_bar))]


def _feature_names(meter: MeterInputs | None) -> tuple[str, ...]:
    if meter is None:
        return ()
    return (FEATURE_NAMES + (LOOKBACK_NAMES if meter.lookback else ()) + ((COUNTDOWN_NAME,) if meter.countdown else ())
            + copy_names(meter.copy_bars) + ((KEY_NAME,) if meter.pitches is not None else ())
            + ((FINAL_PITCH_NAME,) if meter.final_pitches is not None else ()))


def _feature_shape(name: str) -> tuple[int, ...]:
    """The shape of one token's value of a feature: () or (12,) for the key head's."""
    return (12,) if name == KEY_NAME else ()


def _with_options(ds):
    tf = import_tensorflow()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _window_dataset(sequences, batching: Batching, meter):
    tf = import_tensorflow()

    window_size, window_stride = batching.window_size, batching.window_stride
    stream = np.concatenate([np.asarray(s, dtype=np.int32) for s in sequences]) if sequences else np.zeros(0, np.int32)
    count = num_windows(len(stream), window_size, window_stride)
    if count == 0:
        raise DatasetError(f"{len(stream)} tokens are fewer than one window of {window_size + 1}; "
                           "add data or lower window_size")
    # tf.data cuts the windows: it shuffles window start offsets, batches them, and gathers each batch's windows
    # from the stream in one op. Dataset.window + flat_map did the same one window at a time and took 16 s to
    # fill a shuffle buffer on the folk set; this takes none and holds only the offsets.
    stream_t = tf.constant(stream)
    features = _meter_arrays(sequences, meter)
    names = _feature_names(meter)
    if features is not None:  # each feature as one stream, aligned with the ids'
        streams = {name: tf.constant(np.concatenate([f[name] for f in features])) for name in names}
    span = tf.range(window_size + 1, dtype=tf.int64)
    ds = tf.data.Dataset.range(count)
    if batching.shuffle:
        ds = ds.shuffle(count, seed=batching.seed, reshuffle_each_iteration=True)
    if batching.repeat:
        ds = ds.repeat()
    ds = ds.batch(batching.batch_size, drop_remainder=batching.drop_remainder)

    def cut(starts):
        index = starts[:, None] * window_stride + span[None, :]
        windows = tf.gather(stream_t, index)  # (batch, window + 1)
        if features is None:
            return windows[:, :-1], windows[:, 1:]
        inputs = {"ids": windows[:, :-1], **{name: tf.gather(streams[name], index[:, :-1]) for name in names}}
        return inputs, windows[:, 1:]

    return _with_options(ds.map(cut, num_parallel_calls=tf.data.AUTOTUNE))


def melody_lanes(sequences, window_size: int, lanes: int, order=None, features=None) -> dict[str, np.ndarray]:
    """Every step of `lane_steps` over the melodies in `order` (default: as listed), stacked.

    Returns:
      {"ids", "targets"} int32, {"weights"} float32 and, with features, each feature of `sequence_features` int32,
      each (steps, lanes, window_size); and "reset" float32 (steps, lanes).
    """
    order = range(len(sequences)) if order is None else order
    steps = list(lane_steps(sequences, window_size, lanes, order, features))
    if not steps:
        raise DatasetError("no melody has a token after its start token")
    return {name: np.stack([step[name] for step in steps]) for name in steps[0]}


def lane_steps(sequences, window_size: int, lanes: int, order, features=None):
    """Whole melodies laid end to end in `lanes` parallel lanes, one window of each lane per step.

    A lane that finishes a melody takes the next one of `order` (an iterable of indices, possibly endless) at the
    next step, so lanes stay full whatever the melodies' lengths. Each melody of n tokens gives n - 1 (input,
    target) pairs, padded to whole windows. Once `order` runs out, finished lanes hold padding until all are done.

    Args:
      features: per sequence {name: array} (`sequence_features`), or None.

    Yields:
      {"ids", "targets"} int32, {"weights"} float32 (0 on padding) and, with features, each of them int32,
      each (lanes, window_size); and "reset" float32
      (lanes,): 1 where a window starts a melody or holds padding only, so the state entering it is zero.
    """
    names = ("ids", "targets", "weights") + _lane_feature_names(features)
    pending = iter(order)
    current: list[list | None] = [None] * lanes  # per lane: [windows of its melody, count, next window]

    def next_melody():
        for index in pending:
            windows = _melody_windows(sequences[index], window_size, None if features is None else features[index])
            if windows is not None:
                return [windows, len(windows["ids"]), 0]
        return None

    while True:
        step = {name: np.zeros((lanes, window_size) + _feature_shape(name),
                               np.float32 if name == "weights" else np.int32) for name in names}
        step["reset"] = np.ones(lanes, np.float32)
        live = False
        for lane in range(lanes):
            if current[lane] is None or current[lane][2] == current[lane][1]:
                current[lane] = next_melody()
            if current[lane] is None:
                continue
            windows, _, i = current[lane]
            for name in names:
                step[name][lane] = windows[name][i]
            step["reset"][lane] = float(i == 0)
            current[lane][2] += 1
            live = True
        if not live:
            return
        yield step


def _lane_feature_names(features) -> tuple[str, ...]:
    return tuple(features[0]) if features else ()


def _melody_windows(sequence, window_size: int, features) -> dict[str, np.ndarray] | None:
    """One melody's (input, target) pairs as (windows, window_size) arrays, padded; None without a pair."""
    seq = np.asarray(sequence, dtype=np.int32)
    pairs = len(seq) - 1
    if pairs < 1:
        return None
    count = -(-pairs // window_size)
    parts = {"ids": seq[:-1], "targets": seq[1:], "weights": np.ones(pairs, np.float32)}
    if features is not None:
        for name, values in features.items():
            parts[name] = np.asarray(values[:-1], np.int32)
    pad = count * window_size - pairs
    return {name: np.pad(values, [(0, pad)] + [(0, 0)] * (values.ndim - 1)).reshape(
        (count, window_size) + values.shape[1:]) for name, values in parts.items()}


def _lane_dataset(sequences, batching: Batching, meter):
    """Batches of consecutive lane windows (see `lane_steps`); a training run reshuffles the melodies each pass."""
    tf = import_tensorflow()

    window_size, lanes = batching.window_size, batching.batch_size
    if not any(len(s) > 1 for s in sequences):  # a melody shorter than a window is padded: any length will do
        raise DatasetError("no melody has a token after its start token")
    count = len(sequences)
    redraw = batching.shuffle and meter is not None and meter.countdown and 0.0 < meter.open_share < 1.0
    if redraw:  # every melody's features both ways: index i as its length is known, count + i with an open end
        features = [sequence_features(s, spb, meter, open_end) for open_end in (False, True)
                    for s, spb in zip(sequences, meter.steps_per_bar)]
        sequences = list(sequences) * 2
    else:
        features = _meter_arrays(sequences, meter)
    names = _feature_names(meter)

    def order():
        for epoch in itertools.count():
            if batching.shuffle:
                rng = np.random.default_rng([batching.seed, epoch])
                indices = rng.permutation(count)
                if redraw:  # each pass, another open_share of the melodies meet the open countdown
                    indices = indices + count * (rng.random(count) < meter.open_share)
                yield from indices.tolist()
            else:
                yield from range(count)
            if not batching.repeat:
                return

    def steps():
        for step in lane_steps(sequences, window_size, lanes, order(), features):
            inputs = step["ids"] if features is None else {"ids": step["ids"], **{n: step[n] for n in names}}
            yield inputs, step["targets"], step["weights"], step["reset"]

    window = tf.TensorSpec((lanes, window_size), tf.int32)
    inputs_spec = window if features is None else {
        "ids": window, **{name: tf.TensorSpec((lanes, window_size) + _feature_shape(name), tf.int32) for name in names}}
    signature = (inputs_spec, window, tf.TensorSpec((lanes, window_size), tf.float32),
                 tf.TensorSpec((lanes,), tf.float32))
    return _with_options(tf.data.Dataset.from_generator(steps, output_signature=signature))
