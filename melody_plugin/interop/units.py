"""Magenta pipeline units: split, quantize, extract, transpose, encode and partition NoteSequences."""

from __future__ import annotations

import collections
import dataclasses
from fractions import Fraction

from melody_plugin.errors import MelodyPluginError
from melody_plugin.interop.magenta import Counter, Pipeline, _note_seq_melody_type, _note_sequence_type
from melody_plugin.music.extract import quantized_to_melodies
from melody_plugin.music.key import estimate_key
from melody_plugin.music.melody import REST, Melody, MelodyError, Note
from melody_plugin.music.timing import quantize, split_on_time_changes
from melody_plugin.runtime.quiet import import_note_seq, import_tensorflow, quiet_third_party
from melody_plugin.tokens.corpus import encode_melody, is_eval, split_key, transposed_copies
from melody_plugin.tokens.records import ids_to_example
from melody_plugin.tokens.vocab import Vocabulary

TRAINING, EVAL = "training_melodies", "eval_melodies"  # Magenta's melody_rnn dataset names


class GridError(MelodyPluginError):
    """A melody on a grid the vocabulary cannot take (not a whole multiple of the melody's)."""


def _rests(start_step: int, steps: int, steps_per_bar: int) -> list[Note]:
    """A rest cut at bar lines (as training melodies have them)."""
    out, step, end = [], start_step, start_step + steps
    while step < end:
        stop = min(end, (step // steps_per_bar + 1) * steps_per_bar)
        out.append(Note(REST, stop - step))
        step = stop
    return out


def note_seq_melody_to_melody(melody, steps_per_quarter: int | None = None, qpm: float = 120.0) -> Melody:
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
    constants = import_note_seq("constants")
    MELODY_NO_EVENT, MELODY_NOTE_OFF = constants.MELODY_NO_EVENT, constants.MELODY_NOTE_OFF

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
    except MelodyError as e:
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
    key, minor = estimate_key(notes)
    return dataclasses.replace(shell, notes=tuple(notes), key=key, minor=minor)


def _on_grid(item, steps_per_quarter: int, stats) -> Melody:
    """The plugin Melody of `item` (a Melody or a note-seq Melody) on `steps_per_quarter`, or GridError."""
    if not isinstance(item, Melody):
        stats["note_seq_melodies_converted"] += 1
        return note_seq_melody_to_melody(item, steps_per_quarter)
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
            out = split_on_time_changes(input_object, counts)
        except MelodyError as e:
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
            out = [quantize(input_object, self.steps_per_quarter, counts)]
        except MelodyError as e:
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
            found = quantized_to_melodies(input_object, self.policy, self.track, self.program, counts)
        except MelodyError as e:
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
            m = note_seq_melody_to_melody(m)
            counts["note_seq_melodies_converted"] += 1
        out = transposed_copies(m, self.to_key, self.transpositions)
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
        ids = encode_melody(m, self.vocab, counts)
        self._set_counts(counts)
        return [ids]


class SequenceExampleMaker(_Unit):
    """Token ids -> tf.train.SequenceExample (`one_hot_size=len(vocab)`: Magenta's float one-hot inputs)."""

    def __init__(self, one_hot_size: int | None = None, name=None):
        tf = import_tensorflow()
        super().__init__(list, tf.train.SequenceExample, name)
        self.one_hot_size = one_hot_size

    def transform(self, input_object):
        self._set_counts({"examples": 1})
        return [ids_to_example(input_object, self.one_hot_size)]


class FilePartition(_Unit):
    """NoteSequence -> {"eval_melodies": [...], "training_melodies": [...]}, keyed on the file name.

    The deterministic stand-in for Magenta's `RandomPartition`: a file always lands in the same split, the same
    one as `melody_create_dataset` and `melody_train` give it (split_key).
    """

    def __init__(self, eval_ratio: float, name=None):
        if not 0 <= eval_ratio < 1:
            raise MelodyPluginError(f"eval_ratio must be in [0, 1), got {eval_ratio}")
        ns = _note_sequence_type()
        super().__init__(ns, {EVAL: ns, TRAINING: ns}, name)
        self.eval_ratio = eval_ratio

    def partition_of(self, ns) -> str:
        return EVAL if is_eval(split_key(ns), self.eval_ratio) else TRAINING

    def transform(self, input_object):
        name = self.partition_of(input_object)
        self._set_counts({f"{name}_count": 1})
        return {EVAL: [input_object] if name == EVAL else [], TRAINING: [input_object] if name == TRAINING else []}


melody_from_note_seq_melody = note_seq_melody_to_melody  # the name before converters were named a_to_b; kept
