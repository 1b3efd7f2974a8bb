"""Magenta's face of the plugin: pipeline units, the dataset graph, and the sequence generator.

Step of the flow: NoteSequence -> (split, quantize) -> Melody -> token ids -> `tf.train.SequenceExample`, as units
that go into Magenta's `dag_pipeline.DAGPipeline` next to Magenta's own; and a run dir or bundle ->
`MelodySequenceGenerator`, Magenta's `BaseSequenceGenerator` contract. With Magenta importable, `Pipeline` *is*
`magenta.pipelines.pipeline.Pipeline`, statistics are Magenta's `statistics.Counter`s (fresh each call, so they
merge) and the generator is a `BaseSequenceGenerator`; without it, look-alikes with the same interface stand in.
Only this module looks for Magenta; nothing below it imports this module.
Entry points: the units, `get_pipeline(config, eval_ratio)`, `run_pipeline_serial`, `MelodySequenceGenerator`,
`get_generator_map()`, `melody_from_note_seq_melody`.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import importlib.util
import re
import inspect
import json
import math
import os
import secrets
import warnings
from fractions import Fraction
from pathlib import Path

from melody_plugin import corpus, melody as melody_lib
from melody_plugin.errors import MelodyPluginError
from melody_plugin.generator import DEFAULT_MODEL_DIR, MelodyGenerator, ModelLoadError
from melody_plugin.melody import REST, Melody, Note
from melody_plugin.quiet import import_tensorflow, quiet_third_party
from melody_plugin.registry import ModelConfig, get_config, list_configs
from melody_plugin.vocab import Vocabulary

MAGENTA_IMPORT_ERROR = ""
_magenta_pipeline = _magenta_statistics = _magenta_sequence_generator = None


def _magenta_installed() -> bool:
    try:
        return importlib.util.find_spec("magenta") is not None
    except (ImportError, ValueError):  # e.g. sys.modules["magenta"] = None, to hide it
        return False


if _magenta_installed():
    try:  # Magenta's own base classes, so the units pass its isinstance and type checks
        import_tensorflow()  # first, so its start-up lines are filtered
        with warnings.catch_warnings():  # Magenta's imports pull in TensorFlow Probability's distutils warnings
            warnings.simplefilter("ignore", DeprecationWarning)
            from magenta.models.shared import sequence_generator as _magenta_sequence_generator
            from magenta.pipelines import pipeline as _magenta_pipeline, statistics as _magenta_statistics
    except Exception as e:  # a half-installed Magenta must not break the plugin
        MAGENTA_IMPORT_ERROR = f"{type(e).__name__}: {e}"
        _magenta_pipeline = _magenta_statistics = _magenta_sequence_generator = None
MAGENTA = _magenta_pipeline is not None

TRAINING, EVAL = "training_melodies", "eval_melodies"  # Magenta's melody_rnn dataset names

class GridError(MelodyPluginError):
    """A melody on a grid the vocabulary cannot take (not a whole multiple of the melody's)."""


# --- Magenta's pipeline interface, and look-alikes for when Magenta is absent


class _Counter:
    """Magenta's `statistics.Counter`: a named count that merges with others of its name."""

    def __init__(self, name: str, start_value: int = 0):
        self.name, self.count = name, start_value

    def increment(self, inc: int = 1) -> None:
        self.count += inc

    def merge_from(self, other) -> None:
        if not isinstance(other, _Counter) or other.name != self.name:
            raise MelodyPluginError(f"cannot merge {other!r} into counter {self.name!r}")
        self.count += other.count

    def copy(self):
        return copy.copy(self)

    def __str__(self):
        return f"{self.name}: {self.count}"


def _merge_statistics(stats_list) -> list:
    """Magenta's `statistics.merge_statistics`: one statistic per name (the first of each is merged into)."""
    by_name = {}
    for stat in stats_list:
        if stat.name in by_name:
            by_name[stat.name].merge_from(stat)
        else:
            by_name[stat.name] = stat
    return list(by_name.values())


class _PipelineKey:
    """`pipeline[key]`: one output of a pipeline whose output type is a dict."""

    def __init__(self, unit, key):
        if not isinstance(unit.output_type, dict) or key not in unit.output_type:
            raise KeyError(f"{unit.name} has no output {key!r} (output type {unit.output_type})")
        self.unit, self.key, self.output_type = unit, key, unit.output_type[key]


class _Pipeline:
    """Magenta's `pipeline.Pipeline` interface: typed `transform`, and `get_stats()` of the last call."""

    def __init__(self, input_type, output_type, name=None):
        for label, sig in (("input_type", input_type), ("output_type", output_type)):
            classes = sig.values() if isinstance(sig, dict) else [sig]
            if not all(inspect.isclass(c) for c in classes):
                raise MelodyPluginError(f"{label} {sig} must be a class or a dict of classes")
        self._name = name or type(self).__name__
        self._input_type, self._output_type = input_type, output_type
        self._stats = []

    def __getitem__(self, key):
        return _PipelineKey(self, key)

    input_type = property(lambda self: self._input_type)
    output_type = property(lambda self: self._output_type)
    name = property(lambda self: self._name)

    @property
    def output_type_as_dict(self) -> dict:
        return self._output_type if isinstance(self._output_type, dict) else {"dataset": self._output_type}

    def transform(self, input_object):
        raise NotImplementedError

    def _set_stats(self, stats) -> None:
        copies = []
        for stat in stats:
            stat = stat.copy()
            stat.name = f"{self._name}_{stat.name}"
            copies.append(stat)
        self._stats = copies

    def get_stats(self) -> list:
        return list(self._stats)


if MAGENTA:
    Pipeline = _magenta_pipeline.Pipeline
    Counter = _magenta_statistics.Counter
    merge_statistics = _magenta_statistics.merge_statistics
else:
    Pipeline, Counter, merge_statistics = _Pipeline, _Counter, _merge_statistics


def statistics_dict(stats) -> dict:
    """Statistics as plain values: a counter's count; a histogram's non-empty buckets."""
    out = {}
    for stat in sorted(stats, key=lambda s: s.name):
        if hasattr(stat, "count"):
            out[stat.name] = stat.count
        elif hasattr(stat, "counters"):
            out[stat.name] = {str(k): v for k, v in stat.counters.items() if v}
    return out


def _note_sequence_type():
    quiet_third_party()
    from note_seq.protobuf import music_pb2

    return music_pb2.NoteSequence


def _note_seq_melody_type():
    quiet_third_party()
    from note_seq import melodies_lib

    return melodies_lib.Melody


# --- Magenta's note_seq.Melody -> the plugin's Melody


def _rests(start_step: int, steps: int, steps_per_bar: int) -> list[Note]:
    """A rest cut at bar lines (as training melodies have them)."""
    out, step, end = [], start_step, start_step + steps
    while step < end:
        stop = min(end, (step // steps_per_bar + 1) * steps_per_bar)
        out.append(Note(REST, stop - step))
        step = stop
    return out


def melody_from_note_seq_melody(melody, steps_per_quarter: int | None = None, qpm: float = 120.0) -> Melody:
    """A note-seq `Melody` (what Magenta's `MelodyExtractor` outputs) as the plugin's `Melody`.

    A pitch event starts a note, NOTE_OFF starts a rest, NO_EVENT holds either; rests are cut at bar lines. The
    meter is the bar's length (a 6/8 bar reads as 3/4: the same bar and grid). The key is estimated.

    Args:
      steps_per_quarter: the grid wanted; a whole multiple of the melody's (default: the melody's own).
      qpm: the tempo (a note-seq Melody has none).

    Raises:
      GridError: when the melody's grid does not fit `steps_per_quarter`.
    """
    quiet_third_party()
    from note_seq.constants import MELODY_NO_EVENT, MELODY_NOTE_OFF

    source_spq, source_spb = melody.steps_per_quarter, melody.steps_per_bar
    target = steps_per_quarter or source_spq
    if target % source_spq:
        raise GridError(f"a note-seq Melody on {source_spq} steps per quarter does not fit a grid of {target}; "
                        f"quantize with steps_per_quarter={target} (e.g. Magenta's Quantizer)")
    scale = target // source_spq
    quarters_per_bar = Fraction(source_spb, source_spq)
    meter = (quarters_per_bar.numerator, 4 * quarters_per_bar.denominator)
    try:
        shell = Melody((), target, meter, qpm)
    except melody_lib.MelodyError as e:
        raise GridError(f"a note-seq Melody of {source_spb} steps per bar at {source_spq} per quarter: {e}") from None
    spb = shell.steps_per_bar
    notes, step = [], (melody.start_step % source_spb) * scale  # keep the bar phase
    if step:
        notes += _rests(0, step, spb)
    pitch, length = REST, 0

    def flush():
        nonlocal step
        if length:
            notes.extend(_rests(step, length, spb) if pitch == REST else [Note(pitch, length)])
            step += length

    for event in melody:
        if event == MELODY_NO_EVENT:
            length += scale
            continue
        flush()
        pitch, length = (REST if event == MELODY_NOTE_OFF else int(event)), scale
    flush()
    key, minor = melody_lib.estimate_key(notes)
    return dataclasses.replace(shell, notes=tuple(notes), key=key, minor=minor)


def _on_grid(item, steps_per_quarter: int, stats) -> Melody:
    """The plugin Melody of `item` (a Melody or a note-seq Melody) on `steps_per_quarter`, or GridError."""
    if not isinstance(item, Melody):
        stats["note_seq_melodies_converted"] += 1
        return melody_from_note_seq_melody(item, steps_per_quarter)
    if item.steps_per_quarter == steps_per_quarter:
        return item
    if steps_per_quarter % item.steps_per_quarter:
        raise GridError(f"a melody on {item.steps_per_quarter} steps per quarter does not fit the vocabulary's grid "
                        f"of {steps_per_quarter}; quantize with steps_per_quarter={steps_per_quarter}")
    k = steps_per_quarter // item.steps_per_quarter
    stats["melodies_regridded"] += 1
    return dataclasses.replace(item, steps_per_quarter=steps_per_quarter,
                               notes=tuple(Note(n.pitch, n.duration_steps * k) for n in item.notes),
                               tempo_changes=tuple((s * k, q) for s, q in item.tempo_changes))


def _melody_input_type(input_type):
    if input_type is None or input_type is Melody:
        return Melody
    if input_type is _note_seq_melody_type():
        return input_type
    raise MelodyPluginError(f"input_type must be melody_plugin's Melody or note_seq.Melody, got {input_type}")


# --- the units


class _Unit(Pipeline):
    """A plugin unit: counters are gathered in a `collections.Counter` during one call, then set as statistics."""

    def _set_counts(self, counts) -> None:
        self._set_stats([Counter(name, n) for name, n in sorted(counts.items()) if n])


class TimeChangeSplitter(_Unit):
    """NoteSequence -> NoteSequences, one per time signature (tempo changes stay inside: the grid counts beats)."""

    def __init__(self, name=None):
        ns = _note_sequence_type()
        super().__init__(ns, ns, name)

    def transform(self, input_object):
        counts = collections.Counter()
        try:
            out = melody_lib.split_on_time_changes(input_object, counts)
        except melody_lib.MelodyError as e:
            counts[e.reason] += 1
            out = []
        self._set_counts(counts)
        return out


class Quantizer(_Unit):
    """NoteSequence -> quantized NoteSequence on the beat grid (through its tempo map); snapped notes counted."""

    def __init__(self, steps_per_quarter: int, name=None):
        ns = _note_sequence_type()
        super().__init__(ns, ns, name)
        self.steps_per_quarter = steps_per_quarter

    def transform(self, input_object):
        counts = collections.Counter()
        try:
            out = [melody_lib.quantize(input_object, self.steps_per_quarter, counts)]
        except melody_lib.MelodyError as e:
            counts[e.reason] += 1
            out = []
        self._set_counts(counts)
        return out


class MelodyExtractor(_Unit):
    """Quantized NoteSequence (this module's Quantizer or Magenta's) -> Melody: track, polyphony policy, rests, key.

    `track="all"` gives one melody per pitched track, as Magenta's extractor does.
    """

    def __init__(self, policy="highest", track=None, program=None, min_notes=0, name=None):
        super().__init__(_note_sequence_type(), Melody, name)
        self.policy, self.track, self.program, self.min_notes = policy, track, program, min_notes

    def transform(self, input_object):
        counts = collections.Counter()
        try:
            found = melody_lib.melodies_from_quantized(input_object, self.policy, self.track, self.program, counts)
        except melody_lib.MelodyError as e:
            if e.reason == "not_quantized":  # a wiring mistake, not bad data: say so (Magenta raises too)
                raise
            counts[e.reason] += 1
            found = []
        out = [m for m in found if m.num_pitched >= max(self.min_notes, 1)]
        counts["too_short"] += len(found) - len(out)
        counts["melodies"] += len(out)
        self._set_counts(counts)
        return out


class KeyTransposer(_Unit):
    """Melody -> Melody moved to C major / A minor (when `to_key`) and its transposition copies.

    `input_type=note_seq.Melody` puts it after Magenta's `MelodyExtractor` (melodies are converted).
    """

    def __init__(self, to_key: bool = False, transpositions: tuple[int, int] = (0, 0), input_type=None, name=None):
        super().__init__(_melody_input_type(input_type), Melody, name)
        self.to_key, self.transpositions = to_key, tuple(transpositions)

    def transform(self, input_object):
        counts = collections.Counter()
        m = input_object
        if not isinstance(m, Melody):
            m = melody_from_note_seq_melody(m)
            counts["note_seq_melodies_converted"] += 1
        out = corpus.transposed_copies(m, self.to_key, self.transpositions)
        counts["transposed_copies"] += len(out) - 1
        self._set_counts(counts)
        return out


class MelodyEncoder(_Unit):
    """Melody -> token ids (start token first); notes outside the vocabulary are mapped and counted.

    `input_type=note_seq.Melody` puts it after Magenta's `MelodyExtractor`. A melody on a coarser grid that
    divides the vocabulary's is moved onto it (counted); any other grid raises GridError.
    """

    def __init__(self, vocab: Vocabulary, input_type=None, name=None):
        super().__init__(_melody_input_type(input_type), list, name)
        self.vocab = vocab

    def transform(self, input_object):
        counts = collections.Counter()
        m = _on_grid(input_object, self.vocab.steps_per_quarter, counts)
        ids = corpus.encode_melody(m, self.vocab, counts)
        self._set_counts(counts)
        return [ids]


class SequenceExampleMaker(_Unit):
    """Token ids -> tf.train.SequenceExample (`one_hot_size=len(vocab)`: Magenta's float one-hot inputs)."""

    def __init__(self, one_hot_size: int | None = None, name=None):
        tf = import_tensorflow()
        super().__init__(list, tf.train.SequenceExample, name)
        self.one_hot_size = one_hot_size

    def transform(self, input_object):
        from melody_plugin.dataset import sequence_to_example

        self._set_counts({"examples": 1})
        return [sequence_to_example(input_object, self.one_hot_size)]


class FilePartition(_Unit):
    """NoteSequence -> {"eval_melodies": [...], "training_melodies": [...]}, keyed on the file name.

    The deterministic stand-in for Magenta's `RandomPartition`: a file always lands in the same split, the same
    one as `melody_create_dataset` and `melody_train` give it (corpus.split_key).
    """

    def __init__(self, eval_ratio: float, name=None):
        if not 0 <= eval_ratio < 1:
            raise MelodyPluginError(f"eval_ratio must be in [0, 1), got {eval_ratio}")
        ns = _note_sequence_type()
        super().__init__(ns, {EVAL: ns, TRAINING: ns}, name)
        self.eval_ratio = eval_ratio

    def partition_of(self, ns) -> str:
        return EVAL if corpus.is_eval(corpus.split_key(ns), self.eval_ratio) else TRAINING

    def transform(self, input_object):
        name = self.partition_of(input_object)
        self._set_counts({f"{name}_count": 1})
        return {EVAL: [input_object] if name == EVAL else [], TRAINING: [input_object] if name == TRAINING else []}


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
    """NoteSequences of a TFRecord path, sharded name or glob (`corpus.input_files` rules)."""
    from melody_plugin import midi_io

    for path in corpus.input_files(source):
        if not corpus.is_tfrecord_name(path):
            raise MelodyPluginError(f"{path}: not a NoteSequence TFRecord (convert music files with "
                                    "convert_dir_to_note_sequences, or use melody_create_dataset)")
        yield from midi_io.read_note_sequence_tfrecord(path)


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
    from melody_plugin import atomic

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


# --- Magenta's sequence generator contract

_GeneratorBase = _magenta_sequence_generator.BaseSequenceGenerator if MAGENTA else object
_ErrorBases = ((MelodyPluginError, _magenta_sequence_generator.SequenceGeneratorError) if MAGENTA
               else (MelodyPluginError,))


class SequenceGeneratorError(*_ErrorBases):
    """A generate request the model cannot serve (Magenta's `SequenceGeneratorError` too, when installed)."""


def _run_dir_of(checkpoint) -> Path:
    """The run dir of a checkpoint argument: the run dir itself, a folder in it (Magenta passes run_dir/train),
    or a checkpoint file in its checkpoints/ folder."""
    path = Path(checkpoint).expanduser()
    for candidate in (path, path.parent, path.parent.parent):
        if (candidate / "config.json").is_file():
            return candidate
    raise ModelLoadError(f"{checkpoint}: not a melody_plugin run dir nor inside one (no config.json)")


def _bundle_proto(bundle):
    """A GeneratorBundle from a proto or a .mag path."""
    quiet_third_party()
    from note_seq.protobuf import generator_pb2

    if isinstance(bundle, generator_pb2.GeneratorBundle):
        return bundle
    from melody_plugin.midi_io import read_guarded_bytes

    try:
        return generator_pb2.GeneratorBundle.FromString(read_guarded_bytes(bundle, max_bytes=1 << 30))
    except MelodyPluginError:
        raise
    except Exception as e:
        raise ModelLoadError(f"{bundle}: not a generator bundle ({type(e).__name__})") from None


def _bundle_meta(bundle) -> dict:
    try:
        meta = json.loads(bundle.metagraph_file.decode())
        if meta.get("format") != "melody_plugin/1":
            raise ValueError("not a melody_plugin bundle")
        return meta
    except Exception as e:
        raise ModelLoadError(f"bundle {bundle.generator_details.id!r}: not a melody_plugin generator bundle "
                             f"({type(e).__name__}: {e})") from None


def _generator_from_bundle(bundle) -> MelodyGenerator:
    from melody_plugin import numpy_model

    meta = _bundle_meta(bundle)
    source = f"bundle {bundle.generator_details.id}"
    try:
        weights, wmeta = numpy_model.weights_from_bytes(bundle.checkpoint_file[0])
        config, vocab = ModelConfig.from_json(meta["config"]), Vocabulary.from_json(meta["vocab"], source)
    except MelodyPluginError:
        raise
    except Exception as e:
        raise ModelLoadError(f"{source}: unreadable weights or vocabulary ({type(e).__name__}: {e})") from None
    return MelodyGenerator(config, vocab, weights, source, wmeta.get("step"))


def _generate_args(args) -> dict:
    """GeneratorOptions.args understood here, with their types; others are ignored, as Magenta does."""
    kinds = {"temperature": float, "beam_size": int, "branch_factor": int, "steps_per_iteration": int,
             "top_k": int, "top_p": float, "repetition": float, "repetition_bars": int, "seed": int,
             "snap_to_bar": bool}
    out = {}
    for name, kind in kinds.items():
        if name not in args:
            continue
        value = args[name]
        field = value.WhichOneof("kind")
        if field is None:
            continue
        raw = getattr(value, field)
        if kind is bool and isinstance(raw, (str, bytes)):
            raw = (raw.decode() if isinstance(raw, bytes) else raw).lower() in ("1", "true", "yes")
        try:
            out[name] = kind(raw.decode() if isinstance(raw, bytes) else raw)
            if kind is int and out[name] != float(raw):
                raise ValueError("not a whole number")
        except (TypeError, ValueError):
            raise SequenceGeneratorError(f"args[{name!r}] must be {'a whole number' if kind is int else 'a number'}"
                                         f", got {raw!r}") from None
    return out


def _cut(notes, steps: int) -> list[Note]:
    """The first `steps` steps of `notes` (the last note shortened)."""
    out, step = [], 0
    for n in notes:
        if step >= steps:
            break
        out.append(Note(n.pitch, min(n.duration_steps, steps - step)))
        step += out[-1].duration_steps
    return out


class MelodySequenceGenerator(_GeneratorBase):
    """Magenta's `BaseSequenceGenerator` contract over a `MelodyGenerator` (and one, when Magenta is installed).

    `generate(input_sequence, generator_options)` continues the melody of `input_sequence` (or of its one input
    section) from the grid step of the generate section's `start_time` (a rest fills the gap) to its
    `end_time` quantized down; the output's `total_time` is `end_time`. `snap_to_bar` (constructor, or
    `args["snap_to_bar"]`) ends it on the last bar line at or before `end_time` instead. Default: not snapped.
    `args` read: temperature, beam_size, branch_factor, steps_per_iteration (Magenta's), top_k, top_p,
    repetition, repetition_bars, seed (default: a fresh one per call), snap_to_bar.
    """

    def __init__(self, model: MelodyGenerator | None = None, details=None, checkpoint=None, bundle=None,
                 snap_to_bar: bool = False):
        """Args:
          model: a loaded MelodyGenerator; or leave None and give exactly one of:
          checkpoint: a run dir or a folder in it (Magenta's run_dir/train): its best checkpoint (lowest eval
            bits/note), else its latest, is loaded by `initialize()`; or one checkpoint, by its prefix
            (checkpoints/ckpt-20) or one of its files (ckpt-20.index): that one.
          bundle: a GeneratorBundle proto (what Magenta's `read_bundle_file` returns) or a .mag path.
          details: a GeneratorDetails; default: the model's config name and description.
        """
        if model is None and checkpoint is None and bundle is None:
            raise SequenceGeneratorError("Either checkpoint or bundle must be set")
        if checkpoint is not None and bundle is not None:
            raise SequenceGeneratorError("Checkpoint and bundle cannot both be set")
        quiet_third_party()
        from note_seq.protobuf import generator_pb2

        from melody_plugin.rundir import RunDir

        self._model, self._owns_model = model, model is None
        self._checkpoint_file = "best"  # the run's best checkpoint, else its latest
        if checkpoint is not None:
            path = Path(checkpoint).expanduser()
            prefix = re.fullmatch(r"(ckpt-\d+)\.(index|data-\d+-of-\d+)", path.name)
            if prefix and path.is_file():  # one of a checkpoint's files names the checkpoint
                path = path.with_name(prefix.group(1))
            if Path(f"{path}.index").is_file():  # a checkpoint named by its prefix, as tf.train lists them
                self._checkpoint_file = str(path)
            elif not path.is_dir() and (re.fullmatch(r"ckpt-\d+", path.name) or not path.parent.is_dir()):
                # (a folder that is not there, such as Magenta's run_dir/train, still names its run dir)
                raise SequenceGeneratorError(f"Checkpoint path does not exist: {checkpoint}")
            try:
                checkpoint = _run_dir_of(path)
            except ModelLoadError as e:
                raise SequenceGeneratorError(str(e)) from None
        self._checkpoint = checkpoint
        try:  # Magenta's callers catch SequenceGeneratorError: an unreadable bundle or run dir is one too
            self._bundle = _bundle_proto(bundle) if bundle is not None else None
            if model is not None:
                self.config = model.config
            elif self._checkpoint is not None:
                self.config = RunDir(self._checkpoint).load_config()
            else:
                self.config = ModelConfig.from_json(_bundle_meta(self._bundle)["config"])
        except ModelLoadError as e:
            raise SequenceGeneratorError(str(e)) from None
        self._details = details or generator_pb2.GeneratorDetails(
            id=self.config.name, description=self.config.description or self.config.name)
        if self._bundle is not None and self._bundle.generator_details.id != self._details.id:
            raise SequenceGeneratorError(f"Generator id in bundle ({self._bundle.generator_details.id}) does not "
                                         f"match this generator's id ({self._details.id})")
        self.snap_to_bar = snap_to_bar
        self._initialized = model is not None

    @property
    def details(self):
        return self._details

    @property
    def bundle_details(self):
        """The bundle's BundleDetails, or None when loaded from a checkpoint (as Magenta's)."""
        return self._bundle.bundle_details if self._bundle is not None else None

    @property
    def steps_per_quarter(self) -> int:
        return self._model.vocab.steps_per_quarter if self._model else self.config.steps_per_quarter

    @property
    def model(self) -> MelodyGenerator:
        self.initialize()
        return self._model

    def initialize(self) -> None:
        """Loads the weights (numpy; no TensorFlow session). A no-op when already loaded."""
        if self._initialized:
            return
        try:
            if self._checkpoint is not None:
                self._model = MelodyGenerator.from_run_dir(self._checkpoint, self._checkpoint_file)
            else:
                self._model = _generator_from_bundle(self._bundle)
        except ModelLoadError as e:  # Magenta's callers catch SequenceGeneratorError
            raise SequenceGeneratorError(str(e)) from None
        self._initialized = True

    def close(self) -> None:
        """Drops weights loaded from a checkpoint or bundle (a model passed in is kept)."""
        if self._initialized and self._owns_model:
            self._model, self._initialized = None, False

    def __enter__(self):
        self.initialize()
        return self

    def __exit__(self, *args):
        self.close()

    def create_bundle_file(self, bundle_file, bundle_description=None) -> None:
        if not bundle_file:
            raise SequenceGeneratorError("Bundle file location not specified.")
        self.initialize()
        self._model.save_bundle(bundle_file, bundle_description or "")

    def generate(self, input_sequence, generator_options):
        """Magenta's `generate`: initializes, then continues `input_sequence` over the one generate section.

        Raises:
          SequenceGeneratorError: for more than one input section, not exactly one generate section, a section
            that ends before it starts or holds no grid step, a start before the primer's last note ends, an
            input section overlapping the generate section, or a meter change after the primer's first note (a
            primer whose notes all begin after the last change is read from the change, in its meter).
        """
        self.initialize()
        return self._generate(input_sequence, generator_options)

    def _generate(self, input_sequence, generator_options):
        quiet_third_party()
        from note_seq import sequences_lib
        from note_seq.protobuf import music_pb2

        options = generator_options
        if len(options.input_sections) > 1:
            raise SequenceGeneratorError(f"This model supports at most one input_sections message, but got "
                                         f"{len(options.input_sections)}")
        if len(options.generate_sections) != 1:
            raise SequenceGeneratorError(f"This model supports only 1 generate_sections message, but got "
                                         f"{len(options.generate_sections)}")
        section = options.generate_sections[0]
        start_time, end_time = section.start_time, section.end_time
        if not end_time > start_time:
            raise SequenceGeneratorError(f"generate section ends at {end_time} s, not after its start "
                                         f"({start_time} s)")
        primer_ns = music_pb2.NoteSequence()
        if input_sequence is not None:
            primer_ns.CopyFrom(input_sequence)
        if options.input_sections:
            inp = options.input_sections[0]
            if inp.end_time > start_time + 1e-9 and inp.start_time < end_time:
                raise SequenceGeneratorError(f"input section {inp.start_time}-{inp.end_time} s overlaps the generate "
                                             f"section {start_time}-{end_time} s; this model can only extend sequences")
            primer_ns = sequences_lib.trim_note_sequence(primer_ns, inp.start_time, inp.end_time)
        last_end = max((n.end_time for n in primer_ns.notes), default=0.0)
        if last_end > start_time:
            raise SequenceGeneratorError(
                "Got GenerateSection request for section that is before the end of the NoteSequence. This model "
                f"can only extend sequences. Requested start time: {start_time}, Final note end time: {last_end}")
        # the primer is what comes before start_time; later tempo and meter events belong to the generated part
        for events in (primer_ns.tempos, primer_ns.time_signatures, primer_ns.key_signatures):
            kept = [e for e in events if e.time < start_time or e.time == 0]
            del events[:]
            events.extend(kept)
        primer_ns.total_time = min(primer_ns.total_time, start_time)
        # a primer whose notes all begin after its last meter change is read from the change, in that meter
        changes, offset = melody_lib.meter_change_times(primer_ns), 0.0
        if changes:
            first_note = min((n.start_time for n in primer_ns.notes), default=start_time)
            if first_note < changes[-1] - 1e-9:
                raise SequenceGeneratorError(
                    f"the time signature changes at {changes[-1]:.3f} s, after the primer's first note "
                    f"({first_note:.3f} s); give an input section that starts at or after the change")
            offset, whole = changes[-1], primer_ns
            whole.total_time = start_time  # the primer lasts to the generate section (a rest where nothing sounds)
            primer_ns = sequences_lib.extract_subsequence(whole, offset, start_time)
            primer_ns.ClearField("subsequence_info")
            start_time, end_time = start_time - offset, end_time - offset

        args = _generate_args(options.args)
        snap = args.get("snap_to_bar", self.snap_to_bar)
        spq = self.steps_per_quarter
        tempo_map = melody_lib.TempoMap(primer_ns.tempos)
        start_step = math.ceil(tempo_map.quarters_at(start_time) * spq - 1e-6)  # no new note before start_time
        end_step = math.floor(tempo_map.quarters_at(end_time) * spq + 1e-6)
        primer = self._primer(primer_ns, start_step, tempo_map)
        if snap:
            end_step -= end_step % primer.steps_per_bar
        if end_step <= start_step:
            raise SequenceGeneratorError(f"generate section {start_time}-{end_time} s holds no grid step"
                                         f"{' up to a bar line' if snap else ''} after its start (step {start_step} "
                                         f"of {spq} per quarter)")
        from melody_plugin.sampler import SamplingError, SamplingOptions

        try:  # Magenta's callers catch SequenceGeneratorError: bad args are one
            sampling = SamplingOptions(
                temperature=args.get("temperature", 1.0), beam_size=args.get("beam_size", 1),
                branch_factor=args.get("branch_factor", 1), steps_per_iteration=args.get("steps_per_iteration", 1),
                top_k=args.get("top_k", 0), top_p=args.get("top_p", 1.0), repetition=args.get("repetition", 0.0),
                repetition_bars=args.get("repetition_bars", 2), seed=args.get("seed", secrets.randbelow(2**31)))
            generation = self._model.generate(primer, end_step=end_step, sampling=sampling)[0]
        except SamplingError as e:
            raise SequenceGeneratorError(f"generator args: {e}") from None
        ns = generation.note_sequence
        end = ns.total_time if snap else end_time
        for note in ns.notes:  # float steps must not poke past the end
            note.end_time = min(note.end_time, end)
        ns.total_time = end
        if offset:  # back to the input's clock, with its tempo and meter events before the change
            ns = sequences_lib.shift_sequence_times(ns, offset)
            start, ns.total_time = start_time + offset, end + offset if snap else section.end_time
            for note in ns.notes:  # adding the offset back must not move a new note before start_time
                if abs(note.start_time - start) < 1e-6:
                    note.start_time = max(note.start_time, section.start_time)
                note.end_time = min(note.end_time, ns.total_time)
            for name in ("tempos", "time_signatures", "key_signatures"):
                earlier = [e for e in getattr(whole, name) if e.time < offset]
                getattr(ns, name).extend(earlier)
                getattr(ns, name).sort(key=lambda e: e.time)
        return ns

    def _primer(self, primer_ns, start_step: int, tempo_map) -> Melody:
        """The primer's melody on the model's grid, lasting exactly to `start_step` (a rest fills the gap)."""
        spq = self.steps_per_quarter
        try:
            melody = self._model.primer_from_note_sequence(primer_ns, "highest")
        except melody_lib.MelodyError as e:
            if e.reason not in ("no_notes", "drums_only"):
                raise
            ts = sorted(primer_ns.time_signatures, key=lambda t: t.time)
            meter = (ts[0].numerator, ts[0].denominator) if ts else (4, 4)
            melody = Melody((), spq, meter)
        notes = list(melody.notes)
        if melody.total_steps > start_step:
            notes = _cut(notes, start_step)
        elif melody.total_steps < start_step:
            notes += _rests(melody.total_steps, start_step - melody.total_steps, melody.steps_per_bar)
        # the tempo map up to start_step, rests included (the melody keeps only the changes up to its end)
        tempos = tempo_map.tempo_steps(spq)
        qpm, changes = tempos[0][1], []
        for step, change_qpm in tempos[1:]:
            if 0 < step < start_step and change_qpm != (changes[-1][1] if changes else qpm):
                changes.append((step, change_qpm))
        return dataclasses.replace(melody, notes=tuple(notes), qpm=qpm, tempo_changes=tuple(changes))


def get_generator_map() -> dict:
    """{config name: factory} for every registered config, like Magenta's melody_rnn `get_generator_map()`.

    A factory takes `checkpoint=` (a run dir, or a folder or checkpoint in it) or `bundle=` (a GeneratorBundle
    proto or a .mag path), and optionally `snap_to_bar=True`, and returns a `MelodySequenceGenerator`; the model
    there must have been trained with that config.
    """
    quiet_third_party()
    from note_seq.protobuf import generator_pb2

    def factory_for(name):
        config = get_config(name)

        def create_sequence_generator(checkpoint=None, bundle=None, snap_to_bar=False):
            details = generator_pb2.GeneratorDetails(id=name, description=config.description or name)
            generator = MelodySequenceGenerator(None, details, checkpoint, bundle, snap_to_bar)
            if generator.config.name != name:
                raise SequenceGeneratorError(f"{checkpoint or 'bundle'}: trained with config "
                                             f"{generator.config.name!r}, not {name!r}")
            return generator

        create_sequence_generator.config = config
        return create_sequence_generator

    return {name: factory_for(name) for name in list_configs()}
