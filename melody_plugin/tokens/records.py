"""Token ids <-> TFRecords of SequenceExamples (the plugin's int64 ids or Magenta's one-hot), read and written."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from melody_plugin.errors import MelodyPluginError
from melody_plugin.runtime.atomic import atomic_path
from melody_plugin.runtime.quiet import import_tensorflow
from melody_plugin.tokens.vocab import START

TRAIN_FILE = "train.tfrecord"


EVAL_FILE = "eval.tfrecord"


class DatasetError(MelodyPluginError):
    """A dataset folder or record that cannot be used."""


def ids_to_example(ids, one_hot_size: int | None = None, steps_per_bar: int | None = None):
    """[START, t1, ..., tn] -> SequenceExample with inputs [START..t(n-1)] and labels [t1..tn].

    Args:
      one_hot_size: None for the plugin's format (one int64 per input step); the vocabulary size for Magenta's
        (each input step a float one-hot vector of that size, as Magenta's encoders write).
      steps_per_bar: the melody's bar length, written as the context feature `steps_per_bar` when given.
    """
    tf = import_tensorflow()

    ids = [int(i) for i in ids]
    if not ids or ids[0] != START:
        ids = [START] + ids
    if one_hot_size is not None and not all(0 <= i < one_hot_size for i in ids):
        raise DatasetError(f"ids must be in [0, {one_hot_size}) for one-hot inputs, got {max(ids)}")

    def int_feature(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    def one_hot_feature(value):
        vector = [0.0] * one_hot_size
        vector[value] = 1.0
        return tf.train.Feature(float_list=tf.train.FloatList(value=vector))

    input_feature = int_feature if one_hot_size is None else one_hot_feature
    example = tf.train.SequenceExample(feature_lists=tf.train.FeatureLists(feature_list={
        "inputs": tf.train.FeatureList(feature=[input_feature(v) for v in ids[:-1]]),
        "labels": tf.train.FeatureList(feature=[int_feature(v) for v in ids[1:]])}))
    if steps_per_bar is not None:  # records without it stay byte for byte what they were
        example.context.feature["steps_per_bar"].int64_list.value.append(int(steps_per_bar))
    return example


def _input_id(feature, step: int) -> int:
    """The id of one input step: an int64, or the hot index of a float one-hot vector (Magenta's format)."""
    kind = feature.WhichOneof("kind")
    if kind == "int64_list" and len(feature.int64_list.value) == 1:
        return int(feature.int64_list.value[0])
    if kind == "float_list":
        values = np.asarray(feature.float_list.value)
        hot = np.flatnonzero(values)
        if len(hot) == 1 and values[hot[0]] == 1.0:
            return int(hot[0])
        raise DatasetError(f"input step {step} is not a one-hot vector ({len(hot)} non-zero of {len(values)})")
    raise DatasetError(f"input step {step} holds {kind or 'nothing'}; expected one int64 id or a one-hot float "
                       "vector")


def example_to_ids(example) -> np.ndarray:
    """The full id sequence (start token first) of a SequenceExample in either format (see `ids_to_example`).

    Raises:
      DatasetError: if the feature lists are missing, empty, or their inputs and labels do not line up.
    """
    lists = example.feature_lists.feature_list
    if "inputs" not in lists or "labels" not in lists:
        raise DatasetError(f"SequenceExample needs 'inputs' and 'labels' feature lists, got {sorted(lists)}")
    inputs = [_input_id(f, i) for i, f in enumerate(lists["inputs"].feature)]
    labels = []
    for i, f in enumerate(lists["labels"].feature):
        if f.WhichOneof("kind") != "int64_list" or len(f.int64_list.value) != 1:
            raise DatasetError(f"label step {i} is not one int64 id")
        labels.append(int(f.int64_list.value[0]))
    if not inputs or len(inputs) != len(labels) or inputs[1:] != labels[:-1]:
        raise DatasetError("SequenceExample inputs and labels do not line up")
    return np.array(inputs + labels[-1:], dtype=np.int32)


def write_examples(examples, path) -> int:
    """Writes tf.train.(Sequence)Examples to a TFRecord file, atomically. Returns the count."""
    tf = import_tensorflow()

    count = 0
    with atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for example in examples:
                writer.write(example.SerializeToString())
                count += 1
    return count


def write_ids(sequences, path, one_hot_size: int | None = None, steps_per_bar=None) -> int:
    """Writes id sequences as SequenceExamples to a TFRecord file, atomically. Returns the count.

    `one_hot_size=len(vocab)` writes Magenta's format (see `ids_to_example`); `steps_per_bar`, one per
    sequence, is written as each record's context feature.
    """
    bars = [None] * len(sequences) if steps_per_bar is None else list(steps_per_bar)
    return write_examples((ids_to_example(ids, one_hot_size, spb) for ids, spb in zip(sequences, bars)), path)


def example_steps_per_bar(example) -> int | None:
    """The `steps_per_bar` context feature of a SequenceExample, or None (records written before it existed)."""
    feature = example.context.feature.get("steps_per_bar")
    if feature is None or len(feature.int64_list.value) != 1:
        return None
    return int(feature.int64_list.value[0])


def read_ids(path, with_steps_per_bar: bool = False):
    """The id sequences of a TFRecord written by `write_ids`, in either format.

    With `with_steps_per_bar`, returns (sequences, steps_per_bar) with one bar length (or None) per sequence.

    Raises:
      DatasetError: naming the file and the record, for a missing, corrupt or malformed file.
    """
    tf = import_tensorflow()

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such dataset file")
    sequences, bars = [], []
    try:
        for i, record in enumerate(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()):
            try:
                example = tf.train.SequenceExample.FromString(record)
                sequences.append(example_to_ids(example))
                bars.append(example_steps_per_bar(example))
            except DatasetError as e:
                raise DatasetError(f"{path}: record {i}: {e}") from None
            except Exception as e:  # not a SequenceExample at all
                raise DatasetError(f"{path}: record {i} is not a SequenceExample ({type(e).__name__})") from None
    except tf.errors.DataLossError as e:
        raise DatasetError(f"{path}: corrupt TFRecord ({e.message})") from None
    return (sequences, bars) if with_steps_per_bar else sequences


def is_dataset_dir(path) -> bool:
    """A folder written by `melody_create_dataset` (vocab.json and train.tfrecord)."""
    p = Path(path)
    return p.is_dir() and (p / "vocab.json").is_file() and (p / TRAIN_FILE).is_file()


def read_split(folder, with_train: bool = True) -> tuple[list, list, list, list]:
    """(train ids, their steps_per_bar, eval ids, theirs) of a folder's train and eval files: a dataset folder or a
    run dir's data/. The eval file may be missing (no eval split): its lists are then empty; `with_train=False`
    leaves the train lists empty without reading them (the eval job)."""
    folder = Path(folder)
    train, train_bars = read_ids(folder / TRAIN_FILE, with_steps_per_bar=True) if with_train else ([], [])
    eval_, eval_bars = (read_ids(folder / EVAL_FILE, with_steps_per_bar=True) if (folder / EVAL_FILE).is_file()
                        else ([], []))
    return train, train_bars, eval_, eval_bars
