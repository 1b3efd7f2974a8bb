"""The dataset graph with melody_rnn's signature (`get_pipeline`) and Magenta's serial runner."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
from pathlib import Path

from melody_plugin.errors import MelodyPluginError
from melody_plugin.generate.generator import DEFAULT_MODEL_DIR
from melody_plugin.interop.magenta import Pipeline, merge_statistics, statistics_dict
from melody_plugin.interop.units import (
    EVAL,
    TRAINING,
    FilePartition,
    GridError,
    KeyTransposer,
    MelodyEncoder,
    MelodyExtractor,
    Quantizer,
    SequenceExampleMaker,
    TimeChangeSplitter,
)
from melody_plugin.io import tfrecord
from melody_plugin.io.inputs import input_files, is_tfrecord_name
from melody_plugin.model.registry import ModelConfig, get_config
from melody_plugin.runtime import atomic
from melody_plugin.runtime.quiet import import_tensorflow
from melody_plugin.tokens.vocab import Vocabulary


class Chain(Pipeline):
    """Units run one after the other, each output of one fed to the next; statistics of all, for the last call."""

    def __init__(self, pipelines, name="Chain"):
        self.pipelines = list(pipelines)
        for a, b in zip(self.pipelines, self.pipelines[1:]):
            if a.output_type is not b.input_type:
                raise MelodyPluginError(f"pipeline {a.name} outputs {a.output_type}, but {b.name} takes "
                                        f"{b.input_type}")
        super().__init__(self.pipelines[0].input_type, self.pipelines[-1].output_type, name)
        self._last_stats = []

    def transform(self, input_object):
        items, stats = [input_object], []
        for unit in self.pipelines:
            produced = []
            for item in items:
                produced += unit.transform(item)
                stats += [s.copy() for s in unit.get_stats()]
            items = produced
        self._last_stats = merge_statistics(stats)
        return items

    def get_stats(self) -> list:
        return list(self._last_stats)


class PartitionedPipeline(Pipeline):
    """NoteSequence -> {"eval_melodies": [...], "training_melodies": [...]}: a FilePartition, then one chain each."""

    def __init__(self, partition: FilePartition, chains: dict, name="MelodyDatasetPipeline"):
        if set(chains) != set(partition.output_type):
            raise MelodyPluginError(f"chains {sorted(chains)} do not match partitions {sorted(partition.output_type)}")
        self.partition, self.chains = partition, dict(chains)
        self.chain = self.chains[TRAINING]
        super().__init__(partition.input_type, {k: c.output_type for k, c in self.chains.items()}, name)
        self._last_stats = []

    def partition_of(self, ns) -> str:
        return self.partition.partition_of(ns)

    def transform(self, input_object):
        parts = self.partition.transform(input_object)
        stats = [s.copy() for s in self.partition.get_stats()]
        out = {}
        for mode, chain in self.chains.items():
            out[mode] = []
            for item in parts[mode]:
                out[mode] += chain.transform(item)
                stats += [s.copy() for s in chain.get_stats()]
        self._last_stats = merge_statistics(stats)
        return out

    def get_stats(self) -> list:
        return list(self._last_stats)


def melody_pipeline(config: ModelConfig, track=None, program=None, suffix: str = "") -> Chain:
    """The NoteSequence -> Melody half of the graph (it needs no vocabulary)."""
    return Chain([
        TimeChangeSplitter(name=f"TimeChangeSplitter{suffix}"),
        Quantizer(config.steps_per_quarter, name=f"Quantizer{suffix}"),
        MelodyExtractor(config.polyphony_policy, track, program, config.min_notes, name=f"MelodyExtractor{suffix}"),
    ], name=f"MelodyPipeline{suffix}")


def load_vocabulary(vocab=None) -> Vocabulary:
    """A Vocabulary from a Vocabulary, a run dir, a vocab.json path, or None: the shipped model's vocabulary."""
    if isinstance(vocab, Vocabulary):
        return vocab
    path = Path(vocab) if vocab is not None else DEFAULT_MODEL_DIR
    return Vocabulary.load(path / "vocab.json" if path.is_dir() else path)


def get_pipeline(config, eval_ratio: float = 0.0, vocab=None, augment: bool = True,
                 sequence_format: str = "plugin", *, transposition_range=None) -> PartitionedPipeline:
    """The dataset graph of a config, with Magenta's signature: NoteSequence -> {"eval_melodies",
    "training_melodies": [tf.train.SequenceExample]}.

    Both of Magenta's call shapes work: `get_pipeline(config, eval_ratio)` (drums_rnn, improv_rnn and
    melody_rnn_create_dataset's keyword call) and melody_rnn_pipeline's positional
    `get_pipeline(config, transposition_range, eval_ratio)`.

    Args:
      config: a registered config name or a ModelConfig.
      eval_ratio: share of files held out, keyed on the file name (not random, unlike Magenta's).
      vocab: a Vocabulary, a run dir, or a vocab.json path. Default: the shipped model's vocabulary
        (melody_plugin/data/default_model/vocab.json, the folk set's tokens on a grid of 12 per quarter).
      augment: make the config's transposition copies in the training partition (never in eval).
      sequence_format: "plugin" (int64 ids) or "magenta" (float one-hot inputs, int64 labels).
      transposition_range: Magenta's collection of semitone shifts, e.g. range(-5, 7); it must be a run of whole
        numbers that holds 0. It replaces the config's `augment_transpositions` and, as those, makes copies in
        the training partition only (the held-out melodies stay in their own keys).

    Raises:
      GridError: if the vocabulary's grid is not the config's.
      MelodyPluginError: a transposition range that is not a run of shifts holding 0.
    """
    if isinstance(eval_ratio, (list, tuple, range, set, frozenset)):  # melody_rnn's (config, range, ratio)
        transposition_range, eval_ratio = eval_ratio, 0.0
        if isinstance(vocab, (int, float)) and not isinstance(vocab, bool):
            eval_ratio, vocab = float(vocab), None
    config = config if isinstance(config, ModelConfig) else get_config(config)
    if transposition_range is not None:
        shifts = sorted({int(s) for s in transposition_range})
        if not shifts or 0 not in shifts or shifts != list(range(shifts[0], shifts[-1] + 1)):
            raise MelodyPluginError(f"transposition_range must be a run of semitone shifts holding 0, such as "
                                    f"range(-5, 7); got {list(transposition_range)}")
        config = dataclasses.replace(config, augment_transpositions=(shifts[0], shifts[-1]))
    vocab = load_vocabulary(vocab)
    if vocab.steps_per_quarter != config.steps_per_quarter:
        raise GridError(f"the vocabulary is on {vocab.steps_per_quarter} steps per quarter, config {config.name} "
                        f"on {config.steps_per_quarter}")
    if sequence_format not in ("plugin", "magenta"):
        raise MelodyPluginError(f"sequence_format must be plugin or magenta, got {sequence_format!r}")
    one_hot_size = len(vocab) if sequence_format == "magenta" else None
    chains = {}
    for mode, label in ((EVAL, "eval"), (TRAINING, "training")):
        shifts = config.augment_transpositions if (augment and mode == TRAINING) else (0, 0)
        chains[mode] = Chain(melody_pipeline(config, suffix=f"_{label}").pipelines + [
            KeyTransposer(config.transpose_to_key, shifts, name=f"KeyTransposer_{label}"),
            MelodyEncoder(vocab, name=f"MelodyEncoder_{label}"),
            SequenceExampleMaker(one_hot_size, name=f"SequenceExampleMaker_{label}"),
        ], name=f"MelodyDatasetPipeline_{label}")
    return PartitionedPipeline(FilePartition(eval_ratio, name="FilePartition"), chains)


def _note_sequences(source):
    """NoteSequences of a TFRecord path, sharded name or glob (`input_files` rules)."""

    for path in input_files(source):
        if not is_tfrecord_name(path):
            raise MelodyPluginError(f"{path}: not a NoteSequence TFRecord (convert music files with "
                                    "convert_dir_to_note_sequences, or use melody_create_dataset)")
        yield from tfrecord.read_note_sequence_tfrecord(path)


def run_pipeline_serial(pipeline, input_iterator, output_dir, output_file_base=None) -> dict:
    """Magenta's `run_pipeline_serial`: runs `pipeline` on each input and writes one TFRecord per output.

    Args:
      pipeline: a unit or graph of this module, or any Magenta pipeline (a `DAGPipeline` too) whose outputs
        have `SerializeToString`.
      input_iterator: NoteSequences, or a NoteSequence TFRecord path, sharded name or glob.
      output_dir: gets `<name>.tfrecord` per output (`<output_file_base>_<name>.tfrecord`), as Magenta names them.

    Returns:
      The statistics merged over every call (`statistics_dict`), plus `written_<name>` record counts.
    """

    tf = import_tensorflow()
    outputs = pipeline.output_type_as_dict
    for name, type_ in outputs.items():
        if not hasattr(type_, "SerializeToString"):
            raise MelodyPluginError(f"pipeline output {name!r} of type {type_} cannot be written "
                                    "(no SerializeToString)")
    if isinstance(input_iterator, (str, os.PathLike)):
        input_iterator = _note_sequences(input_iterator)
    default_name = next(iter(outputs))
    stats, written = [], collections.Counter()
    with contextlib.ExitStack() as stack:
        writers = {}
        for name in outputs:
            file_name = f"{output_file_base}_{name}.tfrecord" if output_file_base else f"{name}.tfrecord"
            tmp = stack.enter_context(atomic.atomic_path(Path(output_dir) / file_name))
            writers[name] = stack.enter_context(tf.io.TFRecordWriter(str(tmp)))
        for item in input_iterator:
            result = pipeline.transform(item)
            for name, items in (result if isinstance(result, dict) else {default_name: result}).items():
                for output in items:
                    writers[name].write(output.SerializeToString())
                written[name] += len(items)
            stats = merge_statistics(stats + [s.copy() for s in pipeline.get_stats()])
    return {**statistics_dict(stats), **{f"written_{name}": written[name] for name in outputs}}
