"""Token ids <-> TFRecord, and token sequences -> tf.data windows for training.

Step of the flow: `list[int]` -> `tf.train.SequenceExample` (Magenta's `inputs`/`labels` feature lists) -> TFRecord,
and `make_dataset(sequences, ...) -> tf.data.Dataset` of `(inputs, targets)` windows.
Entry points: `sequence_to_example`, `example_to_sequence`, `write_sequences`, `read_sequences`, `make_dataset`.

Every sequence starts with the start token. For training, the sequences of a split are joined into one stream
(the start tokens mark where a melody begins, as nanoGPT joins documents) and cut into windows with tf.data, so
no window needs padding and every token counts in the loss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from melody_plugin import atomic
from melody_plugin.errors import MelodyPluginError
from melody_plugin.quiet import import_tensorflow
from melody_plugin.vocab import START

TRAIN_FILE = "train.tfrecord"
EVAL_FILE = "eval.tfrecord"


class DatasetError(MelodyPluginError):
    """A dataset folder or record that cannot be used."""


def sequence_to_example(ids):
    """[START, t1, ..., tn] -> SequenceExample with inputs [START..t(n-1)] and labels [t1..tn] (int64 per step)."""
    tf = import_tensorflow()

    ids = [int(i) for i in ids]
    if not ids or ids[0] != START:
        ids = [START] + ids

    def feature_list(values):
        return tf.train.FeatureList(feature=[tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))
                                             for v in values])

    return tf.train.SequenceExample(feature_lists=tf.train.FeatureLists(feature_list={
        "inputs": feature_list(ids[:-1]), "labels": feature_list(ids[1:])}))


def example_to_sequence(example) -> np.ndarray:
    """The full id sequence (start token first) of a SequenceExample written by `sequence_to_example`."""
    lists = example.feature_lists.feature_list
    inputs = [f.int64_list.value[0] for f in lists["inputs"].feature]
    labels = [f.int64_list.value[0] for f in lists["labels"].feature]
    if not inputs or inputs[1:] != labels[:-1]:
        raise DatasetError("SequenceExample inputs and labels do not line up")
    return np.array(inputs + labels[-1:], dtype=np.int32)


def write_examples(examples, path) -> int:
    """Writes tf.train.(Sequence)Examples to a TFRecord file, atomically. Returns the count."""
    tf = import_tensorflow()

    count = 0
    with atomic.atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for example in examples:
                writer.write(example.SerializeToString())
                count += 1
    return count


def write_sequences(sequences, path) -> int:
    """Writes id sequences as SequenceExamples to a TFRecord file, atomically. Returns the count."""
    return write_examples((sequence_to_example(ids) for ids in sequences), path)


def read_sequences(path) -> list[np.ndarray]:
    """The id sequences of a TFRecord written by `write_sequences`."""
    tf = import_tensorflow()

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such dataset file")
    sequences = []
    try:
        for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            sequences.append(example_to_sequence(tf.train.SequenceExample.FromString(record)))
    except tf.errors.DataLossError as e:
        raise DatasetError(f"{path}: corrupt TFRecord ({e.message})") from None
    return sequences


def num_windows(num_tokens: int, window_size: int, window_stride: int) -> int:
    span = window_size + 1
    return 0 if num_tokens < span else (num_tokens - span) // window_stride + 1


def make_dataset(sequences, window_size: int, batch_size: int, window_stride: int = 1, shuffle: bool = True,
                 repeat: bool = True, seed: int = 0, drop_remainder: bool = True):
    """A tf.data pipeline of (inputs, targets) int32 batches, each (batch_size, window_size).

    Args:
      sequences: id sequences, each starting with the start token.
      window_size: tokens per window; targets are the inputs shifted by one.
      batch_size: the GLOBAL batch size (a distribution strategy splits it over replicas).
      window_stride: tokens between consecutive window starts.
      shuffle, repeat, seed: training-time behaviour; evaluation uses shuffle=False, repeat=False.

    Raises:
      DatasetError: if there are fewer tokens than one window.
    """
    tf = import_tensorflow()

    stream = np.concatenate([np.asarray(s, dtype=np.int32) for s in sequences]) if sequences else np.zeros(0, np.int32)
    count = num_windows(len(stream), window_size, window_stride)
    if count == 0:
        raise DatasetError(f"{len(stream)} tokens are fewer than one window of {window_size + 1}; "
                           "add data or lower window_size")
    # tf.data cuts the windows: it shuffles window start offsets, batches them, and gathers each batch's windows
    # from the stream in one op. Dataset.window + flat_map did the same one window at a time and took 16 s to
    # fill a shuffle buffer on the folk set; this takes none and holds only the offsets.
    stream_t = tf.constant(stream)
    span = tf.range(window_size + 1, dtype=tf.int64)
    ds = tf.data.Dataset.range(count)
    if shuffle:
        ds = ds.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def cut(starts):
        windows = tf.gather(stream_t, starts[:, None] * window_stride + span[None, :])  # (batch, window + 1)
        return windows[:, :-1], windows[:, 1:]

    ds = ds.map(cut, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
