"""A music21 score (MusicXML, or an ABC tune) -> NoteSequence: parts, tempos, meters, keys, exact tuplets."""

from __future__ import annotations

import bisect
import contextlib
import importlib
import importlib.util
import io
import warnings
import xml.etree.ElementTree as ET
from fractions import Fraction

from melody_plugin.errors import InputFileError
from melody_plugin.io import protos

INSTALL_HINT = 'pip install "melody_plugin[music21]"'


MAX_NOTES = 200_000  # as io/midi.py's MAX_NOTES


MAX_QUARTERS = 200_000  # as io/midi.py's MAX_QUARTERS


DEFAULT_QPM = 120.0  # note-seq's, when a tune has no Q: field


STANDARD_PPQ = 220  # note-seq's ticks_per_quarter for score-based sequences


DEFAULT_VELOCITY = 64


_MODES = {"major": 0, "ionian": 0, "minor": 1, "aeolian": 1, "mixolydian": 3, "dorian": 4, "phrygian": 5,
          "lydian": 6, "locrian": 7}


def available() -> bool:
    """Whether music21 is installed (without importing it: that takes most of a second)."""
    return importlib.util.find_spec("music21") is not None


def _music21():
    """music21 itself, or InputFileError saying how to install it: the music21 edge."""
    if not available():
        raise InputFileError("music21", f"the music21 reader is not installed ({INSTALL_HINT})")
    import music21

    return music21


def music21_module(name: str):
    """music21.<name> (stream, abcFormat, musicxml.xmlToM21...): loaded through `_music21`, the one music21 edge."""
    _music21()
    return importlib.import_module(f"music21.{name}")


@contextlib.contextmanager
def _quiet():
    """music21 writes its warnings ("assuming C") to stderr; a skipped tune is reported by the caller instead."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def musicxml_to_note_sequence(xml: bytes, name: str):
    """MusicXML bytes (already checked for entity and zip bombs by io/musicxml.py) as a NoteSequence, read by music21.

    Raises:
      InputFileError: naming `name`, when the XML is not a readable partwise score or holds no notes.
    """
    if xml.count(b"<note") > MAX_NOTES:
        raise InputFileError(name, f"more than {MAX_NOTES} notes; refused")
    _music21()
    xmlToM21 = music21_module("musicxml.xmlToM21")

    try:
        root = ET.fromstring(xml)  # expat honours the encoding the XML declares
    except ET.ParseError as e:
        raise InputFileError(name, f"unreadable MusicXML ({e})") from None
    if root.tag != "score-partwise":
        raise InputFileError(name, f"music21 reads only partwise MusicXML (the root is <{root.tag}>)")
    try:
        importer = xmlToM21.MusicXMLImporter()
        with _quiet():
            importer.xmlRootToScore(root, importer.stream)
        return score_to_note_sequence(importer.stream, name, "musicxml")
    except InputFileError:
        raise
    except Exception as e:
        raise InputFileError(name, f"music21 cannot read it ({type(e).__name__}: {e})") from None


class _TempoMap:
    """Quarter notes -> seconds through (quarter, qpm) marks, exactly (Fractions until the end)."""

    def __init__(self, marks):
        self.marks = sorted(marks) or [(Fraction(0), Fraction(DEFAULT_QPM))]
        if self.marks[0][0] > 0:
            self.marks.insert(0, (Fraction(0), self.marks[0][1]))
        self.quarters = [q for q, _ in self.marks]
        self.starts = [Fraction(0)]
        for (q0, qpm), (q1, _) in zip(self.marks, self.marks[1:]):
            self.starts.append(self.starts[-1] + (q1 - q0) * 60 / qpm)

    def seconds(self, quarters) -> float:
        quarters = Fraction(quarters)
        i = max(bisect.bisect_right(self.quarters, quarters) - 1, 0)
        q, qpm = self.marks[i]
        return float(self.starts[i] + (quarters - q) * 60 / qpm)


def _pickup_quarters(part) -> Fraction:
    """How much of the first bar a pickup leaves out, so bar lines fall where the score puts them."""
    stream = music21_module("stream")

    first = part.getElementsByClass(stream.Measure).first()
    return Fraction(first.paddingLeft) if first is not None and first.paddingLeft else Fraction(0)


def score_to_note_sequence(score, name: str, source: str = "musicxml", meters=None, changes=None, pickup=None,
                           start_key=None):
    """A music21 score as a NoteSequence (see the module docstring for what is kept).

    Args:
      score: a music21 `Score` (or a single `Part`/`Stream`).
      name: the sequence's filename, also used in error messages.
      source: "abc" or "musicxml", recorded in `source_info`.
      meters: when given, only time signatures with these (numerator, denominator) are kept.
      changes: from `_abc_for_music21`: the meter, tempo and key changes its marker chord symbols stand for.
      pickup: quarters of rest before the first note, when not the first measure's padding (music21's pickup).
      start_key: (tonic pitch class, mode) at the start; with it, music21's key signatures are not used (the
        keys are this one and the changes').

    Raises:
      InputFileError: when the score holds no pitched note, or more notes or quarters than the limits.
    """
    chord, key, meter, note, stream = (music21_module(n) for n in ("chord", "key", "meter", "note", "stream"))


    music_pb2 = protos.music_pb2()
    parts = list(score.parts) if isinstance(score, stream.Score) and score.parts else [score]
    shift = _pickup_quarters(parts[0]) if pickup is None else Fraction(pickup)

    def at(q) -> Fraction:  # a score offset -> quarters from the start of the first full-length bar
        return Fraction(q) + shift if q else Fraction(0)

    ns = music_pb2.NoteSequence()
    ns.filename = name
    ns.ticks_per_quarter = STANDARD_PPQ
    ns.source_info.source_type = music_pb2.NoteSequence.SourceInfo.SCORE_BASED
    ns.source_info.parser = music_pb2.NoteSequence.SourceInfo.MUSIC21
    ns.source_info.encoding_type = (music_pb2.NoteSequence.SourceInfo.ABC if source == "abc"
                                    else music_pb2.NoteSequence.SourceInfo.MUSIC_XML)
    if score.metadata is not None:
        # <work-title>, else <movement-title> (many exporters write only the latter)
        title = score.metadata.title or score.metadata.movementName
        if title:
            ns.sequence_metadata.title = str(title)
        if score.metadata.composer:
            ns.sequence_metadata.composers.append(str(score.metadata.composer))

    # (quarters, (numerator, denominator)), (quarters, qpm), (quarters, (tonic pitch class, mode))
    meter_changes, tempo_changes, key_changes = [], [], []
    if changes:
        harmony = music21_module("harmony")

        symbols = sorted(at(cs.getOffsetInHierarchy(parts[0]))
                         for cs in parts[0].recurse().getElementsByClass(harmony.ChordSymbol))
        if len(parts) > 1 and len(symbols) != len(changes):
            symbols = []  # markers spread over several voices: which is which is unknown, so none is used
        for q, group in zip(symbols, changes):  # a marker after the last note is lost: nothing follows it
            for kind, value in group:
                {"M": meter_changes, "Q": tempo_changes, "K": key_changes}[kind].append((q, value))

    marks = []
    for start, _, mark in score.metronomeMarkBoundaries():
        qpm = mark.getQuarterBPM()
        if qpm and qpm > 0:
            marks.append((at(start), Fraction(qpm)))
    marks = [m for m in marks if m[0] not in {q for q, _ in tempo_changes}]
    marks += [(q, Fraction(qpm)) for q, qpm in tempo_changes]
    tempo_map = _TempoMap(marks)
    for q, qpm in tempo_map.marks:
        ns.tempos.add(time=tempo_map.seconds(q), qpm=float(qpm))

    signatures = [(at(ts.getOffsetInHierarchy(parts[0])), (ts.numerator, ts.denominator))
                  for ts in parts[0].recurse().getElementsByClass(meter.TimeSignature)]
    if meter_changes:
        # music21 never saw these changes: its later signatures come from re-barring under the wrong meter
        signatures = [s for s in signatures if s[0] == 0][:1] + meter_changes
    last = None
    for q, value in sorted(signatures, key=lambda s: s[0]):
        if (meters is not None and value not in meters) or value == last:
            continue
        ns.time_signatures.add(time=tempo_map.seconds(q), numerator=value[0], denominator=value[1])
        last = value
    keys = [(Fraction(0), start_key)] if start_key is not None else []
    for ks in parts[0].recurse().getElementsByClass(key.KeySignature) if start_key is None else ():
        k = ks if isinstance(ks, key.Key) else ks.asKey("major")
        keys.append((at(ks.getOffsetInHierarchy(parts[0])), (k.tonic.pitchClass, _MODES.get(k.mode, 0))))
    keys = dict(sorted(keys + key_changes, key=lambda k: k[0]))  # a change at the start replaces the start key
    last = None
    for q, value in keys.items():
        if value != last:
            ns.key_signatures.add(time=tempo_map.seconds(q), key=value[0], mode=value[1])
            last = value

    end = Fraction(0)
    for index, part in enumerate(parts):
        instrument = part.getInstrument(returnDefault=False) if hasattr(part, "getInstrument") else None
        program = instrument.midiProgram if instrument is not None and instrument.midiProgram is not None else 0
        is_drum = instrument is not None and instrument.midiChannel == 9
        ns.instrument_infos.add(instrument=index, name=str(getattr(part, "partName", "") or ""))
        events, tied = [], {}  # [start, end, pitch, velocity, is_drum], quarters; pitch -> event a tie carries on
        for element in part.flatten().notes:  # ties merged here: music21's stripTies deep-copies the score
            duration = Fraction(element.quarterLength)
            if duration <= 0 or element.duration.isGrace:
                continue  # grace notes take no time: note-seq's readers drop them too
            start = Fraction(element.offset) + shift
            end = max(end, start + duration)
            velocity = element.volume.velocity or DEFAULT_VELOCITY
            for n in element.notes if isinstance(element, chord.ChordBase) else (element,):
                # unpitched percussion keeps its staff position as a drum note: the melody step reports
                # "drums only" rather than "no notes"
                drum = isinstance(n, note.Unpitched)
                pitch, tie = (n.displayPitch() if drum else n.pitch).midi, n.tie or element.tie
                if not 0 <= pitch <= 127:
                    continue
                held = tied.pop(pitch, None)
                if held is not None and tie is not None and tie.type in ("stop", "continue") \
                        and events[held][1] == start:
                    events[held][1] = start + duration
                else:
                    events.append([start, start + duration, pitch, velocity, drum or is_drum])
                    held = len(events) - 1
                if tie is not None and tie.type in ("start", "continue"):
                    tied[pitch] = held
        if len(ns.notes) + len(events) > MAX_NOTES:
            raise InputFileError(name, f"more than {MAX_NOTES} notes; refused")
        for start, stop, pitch, velocity, drum in events:
            written = (stop - start) / 4  # of a whole note, as note-seq's score readers record it
            ns.notes.add(pitch=pitch, velocity=int(velocity), start_time=tempo_map.seconds(start),
                         end_time=tempo_map.seconds(stop), numerator=written.numerator,
                         denominator=written.denominator, instrument=index, program=program, is_drum=drum,
                         part=index)
    if end > MAX_QUARTERS:
        raise InputFileError(name, f"{float(end):.0f} quarter notes exceed the length limit; refused")
    if not ns.notes:
        raise InputFileError(name, "no notes")
    # a final rest is music: the sequence lasts to the score's end
    ns.total_time = tempo_map.seconds(max(end, Fraction(score.highestTime) + shift))
    return ns
