"""Melody -> MusicXML 4.0 (partwise, one part): for MuseScore, Finale, Sibelius, music21 and verovio.

Step of the flow: melody -> notation. Entry points: `melody_to_musicxml(melody, title=...) -> str` and
`write_musicxml(melody, path, ...)`. Written here with the standard library's ElementTree rather than through
music21: music21 is an optional extra that takes seconds to import, and a monophonic melody whose bars, ties and
tuplets layout.py has already decided needs only a direct printer (the tests read the output back with music21
and verovio). `divisions` is the melody's steps per quarter, so every duration is a whole number of steps.
`highlight_from_step` colours the notes from that step on and marks the place with the word "continuation"
(the score of a generation); files written for users are plain.
"""

from __future__ import annotations

import statistics
import xml.etree.ElementTree as ET
from fractions import Fraction

from melody_plugin.music.melody import Melody
from melody_plugin.notation.layout import Layout, Written, melody_to_layout
from melody_plugin.runtime import atomic

TYPE_NAMES = {Fraction(8): "breve", Fraction(4): "whole", Fraction(2): "half", Fraction(1): "quarter",
              Fraction(1, 2): "eighth", Fraction(1, 4): "16th", Fraction(1, 8): "32nd", Fraction(1, 16): "64th",
              Fraction(1, 32): "128th"}
ACCIDENTAL_NAMES = {-2: "flat-flat", -1: "flat", 0: "natural", 1: "sharp", 2: "double-sharp"}
CONTINUATION_COLOR = "#DD8452"  # render.py's continuation orange
DOCTYPE = ('<!DOCTYPE score-partwise PUBLIC "-//Recordare//DTD MusicXML 4.0 Partwise//EN" '
           '"http://www.musicxml.org/dtds/partwise.dtd">')
BASS_CLEF_MEDIAN = 55  # a melody whose median pitch is below G3 reads better in the bass clef


def _sub(parent, tag: str, text=None, **attrs):
    element = ET.SubElement(parent, tag, {k.replace("_", "-"): str(v) for k, v in attrs.items()})
    if text is not None:
        element.text = str(text)
    return element


def _tempo(parent, qpm: float, words: bool = False) -> None:
    """A metronome mark, or the same as words ("♩ = 120": an SVG turned to PNG lacks the music font's glyph)."""
    direction = _sub(parent, "direction", placement="above")
    if words:
        _sub(_sub(direction, "direction-type"), "words", f"\u2669 = {qpm:g}")
    else:
        metronome = _sub(_sub(direction, "direction-type"), "metronome")
        _sub(metronome, "beat-unit", "quarter")
        _sub(metronome, "per-minute", f"{qpm:g}")
    _sub(direction, "sound", tempo=f"{qpm:g}")


def _words(parent, text: str) -> None:
    direction = _sub(parent, "direction", placement="above")
    _sub(_sub(direction, "direction-type"), "words", text, color=CONTINUATION_COLOR)


def _attributes(measure, layout: Layout, divisions: int) -> None:
    melody = layout.melody
    attributes = _sub(measure, "attributes")
    _sub(attributes, "divisions", divisions)
    key = _sub(attributes, "key")
    _sub(key, "fifths", layout.fifths)
    _sub(key, "mode", "minor" if melody.minor else "major")
    time = _sub(attributes, "time")
    _sub(time, "beats", melody.time_signature[0])
    _sub(time, "beat-type", melody.time_signature[1])
    pitches = [n.pitch for n in melody.notes if not n.is_rest]
    bass = bool(pitches) and statistics.median(pitches) < BASS_CLEF_MEDIAN
    clef = _sub(attributes, "clef")
    _sub(clef, "sign", "F" if bass else "G")
    _sub(clef, "line", 4 if bass else 2)


def _note(measure, e: Written, color: str | None) -> None:
    """A <note>, its children in the order the schema requires."""
    note = _sub(measure, "note", **({"color": color} if color else {}))
    if e.is_rest:
        _sub(note, "rest")
    else:
        pitch = _sub(note, "pitch")
        _sub(pitch, "step", e.letter)
        if e.alter:
            _sub(pitch, "alter", e.alter)
        _sub(pitch, "octave", e.octave)
    _sub(note, "duration", e.duration_steps)
    if e.tie_stop:
        _sub(note, "tie", type="stop")
    if e.tie_start:
        _sub(note, "tie", type="start")
    _sub(note, "voice", 1)
    _sub(note, "type", TYPE_NAMES[e.value])
    for _ in range(e.dots):
        _sub(note, "dot")
    if e.accidental:
        _sub(note, "accidental", ACCIDENTAL_NAMES[e.alter])
    if e.tuplet:
        modification = _sub(note, "time-modification")
        _sub(modification, "actual-notes", e.tuplet[0])
        _sub(modification, "normal-notes", e.tuplet[1])
    if e.beam:
        _sub(note, "beam", e.beam, number=1)
    notations = []
    if e.tie_stop:
        notations.append(("tied", {"type": "stop"}))
    if e.tie_start:
        notations.append(("tied", {"type": "start"}))
    if e.tuplet_start:
        notations.append(("tuplet", {"type": "start", "bracket": "yes"}))
    if e.tuplet_stop:
        notations.append(("tuplet", {"type": "stop"}))
    if notations:
        element = _sub(note, "notations")
        for tag, attrs in notations:
            ET.SubElement(element, tag, attrs)


def layout_to_musicxml(layout: Layout, title: str = "", highlight_from_step: int | None = None,
                       tempo_words: bool = False) -> str:
    """MusicXML text of a laid-out melody (see `melody_to_musicxml`); `tempo_words` writes tempos as words."""
    melody = layout.melody
    root = ET.Element("score-partwise", version="4.0")
    _sub(_sub(root, "work"), "work-title", title or "Melody")
    encoding = _sub(_sub(root, "identification"), "encoding")
    _sub(encoding, "software", "melody_plugin")
    score_part = _sub(_sub(root, "part-list"), "score-part", id="P1")
    _sub(score_part, "part-name", "Melody")
    part = _sub(root, "part", id="P1")
    marked = False
    for index, m in enumerate(layout.measures):
        attrs = {"number": m.number}
        if m.number == 0:
            attrs["implicit"] = "yes"  # a pickup bar: not counted, shorter than the meter
        measure = _sub(part, "measure", **attrs)
        if index == 0:
            _attributes(measure, layout, melody.steps_per_quarter)
            _tempo(measure, melody.qpm, tempo_words)
        for e in m.events:
            if e.tempo:
                _tempo(measure, e.tempo, tempo_words)
            highlighted = highlight_from_step is not None and e.start_step >= highlight_from_step
            if highlighted and not marked and highlight_from_step > 0:
                _words(measure, "continuation")
                marked = True
            _note(measure, e, CONTINUATION_COLOR if highlighted else None)
        if index == len(layout.measures) - 1:
            barline = _sub(measure, "barline", location="right")
            _sub(barline, "bar-style", "light-heavy")
    ET.indent(root, space=" ")
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{DOCTYPE}\n{body}\n'


def melody_to_musicxml(melody: Melody, title: str = "", highlight_from_step: int | None = None,
                       pickup: bool = True, tempo_words: bool = False) -> str:
    """A MusicXML score of the melody: one part, its meter, key, tempo (and tempo changes), ties and tuplets.

    Args:
      melody: what to write.
      title: the work title (default "Melody").
      highlight_from_step: notes from this grid step on are coloured (a generation's continuation).
      pickup: a first bar that opens with rest starts at its first note (an implicit measure 0).
      tempo_words: tempos as words rather than metronome marks (for engraving to PNG).

    Raises:
      layout.NotationError: a melody whose lengths have no written note values.
    """
    return layout_to_musicxml(melody_to_layout(melody, pickup=pickup), title, highlight_from_step, tempo_words)


def write_musicxml(melody: Melody, path, title: str = "") -> None:
    """Writes `melody_to_musicxml` to `path` atomically (UTF-8, uncompressed; name it .musicxml)."""
    atomic.write_bytes(path, melody_to_musicxml(melody, title).encode("utf-8"))
