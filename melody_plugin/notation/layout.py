"""Melody -> measures of written notes (bars, ties, tuplets, beams, spelled pitches): what ABC and MusicXML share.

Step of the flow: melody -> notation. Entry point: `melody_to_layout(melody, primer_steps=0, pickup=True) ->
Layout`, whose measures hold `Written` events that abc_out.py and musicxml_out.py print in their own syntax.

The rules, in order: a melody that opens with less than a bar of rest before its first note starts with a pickup
bar (the rest is left out; readers put it back as a leading rest). Notes are cut at bar lines and at tempo changes
and tied. Each beat (a quarter in x/4, a dotted quarter in 6/8, 9/8, 12/8, an eighth in 5/8, 7/8) whose note
boundaries all fall on halves, quarters, eighths... of a quarter is written plainly; any other beat becomes one
tuplet (3 in the time of 2, 6 in the time of 4...) whose unit is the largest that holds every boundary, and two
such quarter beats that make one quarter-note triplet are merged. Lengths that are no single (dotted) note value
are split into tied values, largest first. Pitches are spelled in the melody's key (raised sevenths in minor);
an accidental is written when the key or an earlier note of the bar would say otherwise.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

from melody_plugin.errors import MelodyPluginError
from melody_plugin.music.melody import REST, Melody

LETTERS = "CDEFGAB"
LETTER_PITCH_CLASS = (0, 2, 4, 5, 7, 9, 11)
SHARP_ORDER = "FCGDAEB"  # the order sharps enter a key signature; flats enter in reverse
MAJOR_KEY_FIFTHS = {0: 0, 7: 1, 2: 2, 9: 3, 4: 4, 11: 5, 6: 6, 1: -5, 8: -4, 3: -3, 10: -2, 5: -1}
# written values in quarters: plain and dotted, a 128th up to a breve
NOTE_VALUES = sorted({Fraction(2) ** e * f for e in range(-5, 4) for f in (1, Fraction(3, 2))
                      if Fraction(2) ** e * f <= 8}, reverse=True)


class NotationError(MelodyPluginError):
    """A melody that cannot be written as notation (a meter or grid with no written note values)."""


@dataclasses.dataclass(frozen=True)
class Written:
    """One written note or rest: its sound (pitch, steps) and how it is drawn (value, dots, tuplet, ties, beam)."""

    pitch: int  # REST for a rest
    start_step: int  # from the melody's start
    duration_steps: int
    value: Fraction  # the written value in quarters, without its dot: 1/2 is an eighth
    dots: int = 0
    tuplet: tuple[int, int] | None = None  # (actual, normal): 3 in the time of 2
    tuplet_start: bool = False
    tuplet_stop: bool = False
    tuplet_count: int = 0  # notes and rests under the tuplet (ABC's r in (p:q:r), on its first event)
    tie_start: bool = False
    tie_stop: bool = False
    beam: str = ""  # "begin", "continue", "end" or ""
    letter: str = ""  # the spelled pitch: letter, alteration in semitones, octave (C4 = MIDI 60)
    alter: int = 0
    octave: int = 0
    accidental: bool = False  # the alteration is written (the key or the bar so far does not give it)
    primer: bool = False
    tempo: float | None = None  # a tempo change that starts here

    @property
    def is_rest(self) -> bool:
        return self.pitch == REST

    @property
    def written_quarters(self) -> Fraction:
        """The written length, dots included (a tuplet's notes are written longer than they sound)."""
        return self.value * (2 - Fraction(1, 2 ** self.dots))


@dataclasses.dataclass(frozen=True)
class Measure:
    number: int  # 0 for a pickup bar
    start_step: int
    events: tuple[Written, ...]

    @property
    def duration_steps(self) -> int:
        return sum(e.duration_steps for e in self.events)


@dataclasses.dataclass(frozen=True)
class Layout:
    """A melody as written: its measures, key signature (fifths: -2 = two flats) and the melody it came from."""

    melody: Melody
    measures: tuple[Measure, ...]
    fifths: int
    pickup_steps: int  # the pickup bar's length (0: none)


def key_fifths(key: int, minor: bool) -> int:
    """Sharps (> 0) or flats (< 0) of the key signature: G major 1, D minor -1, F# major 6."""
    return MAJOR_KEY_FIFTHS[(key + 3) % 12 if minor else key % 12]


def key_alterations(fifths: int) -> dict[str, int]:
    """The alteration the key signature gives each letter."""
    alters = dict.fromkeys(LETTERS, 0)
    for letter in SHARP_ORDER[:fifths] if fifths > 0 else SHARP_ORDER[::-1][:-fifths]:
        alters[letter] = 1 if fifths > 0 else -1
    return alters


def spell(pitch: int, key: int, minor: bool) -> tuple[str, int, int]:
    """(letter, alteration, octave) of a MIDI pitch in a key: diatonic notes as the key spells them, the raised
    seventh of a minor key on the seventh's letter, other notes sharp in sharp keys and flat in flat ones."""
    fifths = key_fifths(key, minor)
    alters = key_alterations(fifths)
    pitch_class = pitch % 12
    candidates = [(letter, alter) for letter, base in zip(LETTERS, LETTER_PITCH_CLASS)
                  for alter in (-1, 0, 1, -2, 2) if (base + alter) % 12 == pitch_class]
    diatonic = [c for c in candidates if alters[c[0]] == c[1]]
    if diatonic:
        letter, alter = diatonic[0]
    else:
        if minor and pitch_class == (key - 1) % 12:  # the leading tone: G# in A minor, C# in D minor
            tonic_letter = next(c[0] for c in _candidates(key % 12) if alters[c[0]] == c[1])
            wanted = LETTERS[(LETTERS.index(tonic_letter) - 1) % 7]
            letter, alter = next(c for c in candidates if c[0] == wanted)
        else:
            flat_side = fifths < 0 or (fifths == 0 and pitch_class in (3, 10))  # Eb and Bb in C
            single = [c for c in candidates if abs(c[1]) <= 1]  # a natural first: C natural in D major
            single.sort(key=lambda c: (c[1] != 0, c[1] > 0 if flat_side else c[1] < 0))
            letter, alter = single[0]
    natural = pitch - alter
    return letter, alter, natural // 12 - 1


def _candidates(pitch_class: int):
    return [(letter, alter) for letter, base in zip(LETTERS, LETTER_PITCH_CLASS)
            for alter in (-1, 0, 1) if (base + alter) % 12 == pitch_class]


def beat_quarters(time_signature: tuple[int, int]) -> Fraction:
    """One beat in quarters: a quarter in x/4, a dotted quarter in compound x/8 (6/8, 9/8, 12/8), else 4/den."""
    num, den = time_signature
    unit = Fraction(4, den)
    return unit * 3 if den >= 8 and num % 3 == 0 and num > 3 else unit


def _is_power_of_two(x: Fraction) -> bool:
    return x.numerator & (x.numerator - 1) == 0 and x.denominator & (x.denominator - 1) == 0


def _fraction_gcd(values) -> Fraction:
    result = Fraction(0)
    for v in values:
        den = math.lcm(result.denominator, v.denominator)
        result = Fraction(math.gcd(int(result * den), int(v * den)), den)
    return result


def split_value(length: Fraction) -> list[Fraction]:
    """A written length as (dotted) note values, largest first: 5/4 quarters is a quarter tied to a 16th."""
    parts, left = [], length
    while left > 0:
        value = next((v for v in NOTE_VALUES if v <= left), None)
        if value is None:
            raise NotationError(f"a length of {length} quarters has no written note values")
        parts.append(value)
        left -= value
    return parts


def _tuplet(offsets: list[Fraction], length: Fraction) -> tuple[int, int] | None:
    """None when the boundaries (quarters from a span's start) sit on halves, quarters... of a quarter, else
    (actual, normal) for a span whose length is a power of two: its unit is the largest that holds them all."""
    if all(_is_power_of_two(Fraction(1, o.denominator)) for o in offsets):
        return None
    actual = int(length / _fraction_gcd(offsets + [length]))
    return actual, 2 ** (actual.bit_length() - 1)


def _spans(bar_quarters: Fraction, beat: Fraction, boundaries: list[Fraction]):
    """[(start, end, tuplet or None)] of one bar in quarters from its full-bar start: plain beats and tuplets."""
    def offsets(start, end):
        return [b - start for b in boundaries if start < b < end]

    beats, start = [], Fraction(0)
    while start < bar_quarters:
        end = min(start + beat, bar_quarters)
        beats.append((start, end, _tuplet(offsets(start, end), end - start)))
        start = end
    spans, i = [], 0
    while i < len(beats):
        start, end, tuplet = beats[i]
        if tuplet is None:
            spans.append(beats[i])
        elif not _is_power_of_two(end - start):  # a compound beat: each of its thirds is analysed on its own
            third = (end - start) / 3
            spans += [(s, s + third, _tuplet(offsets(s, s + third), third)) for s in (start, start + third,
                                                                                      start + 2 * third)]
        elif (i + 1 < len(beats) and beats[i + 1][2] is not None and i % 2 == 0
              and _tuplet(offsets(start, beats[i + 1][1]), beats[i + 1][1] - start) == (3, 2)):
            spans.append((start, beats[i + 1][1], (3, 2)))  # a quarter-note triplet over two beats
            i += 1
        else:
            spans.append(beats[i])
        i += 1
    return spans


def _merge_plain(spans):
    """Runs of plain spans joined into one: a note is cut only where a tuplet begins or ends."""
    merged = []
    for start, end, tuplet in spans:
        if merged and tuplet is None and merged[-1][2] is None:
            merged[-1] = (merged[-1][0], end, None)
        else:
            merged.append((start, end, tuplet))
    return merged


def _beams(events: list[Written], regions: list[tuple[int, int]]) -> list[Written]:
    """Beams over each run of two or more flagged notes (eighths and shorter) that lies within one region."""
    out = list(events)
    group: list[int] = []

    def close():
        if len(group) >= 2:
            for k, index in enumerate(group):
                beam = "begin" if k == 0 else "end" if k == len(group) - 1 else "continue"
                out[index] = dataclasses.replace(out[index], beam=beam)
        group.clear()

    current = None
    for index, e in enumerate(events):
        region = next((r for r in regions if r[0] <= e.start_step and e.start_step + e.duration_steps <= r[1]),
                      None)
        if e.is_rest or e.value >= 1 or region is None or region != current:
            close()
        current = region
        if not e.is_rest and e.value < 1 and region is not None:
            group.append(index)
    close()
    return out


def _accidentals(events: list[Written], alters: dict[str, int]) -> list[Written]:
    """Marks which notes of one bar write their accidental: where the key, or an earlier note of the bar (of
    the same letter, in any octave: readers differ on the octave rule), would give another alteration."""
    by_note: dict[tuple[str, int], int] = {}
    by_letter: dict[str, int] = {}
    out = []
    for e in events:
        if e.is_rest:
            out.append(e)
            continue
        implied = {by_note.get((e.letter, e.octave), alters[e.letter]), by_letter.get(e.letter, alters[e.letter])}
        out.append(dataclasses.replace(e, accidental=implied != {e.alter}))
        by_note[(e.letter, e.octave)] = by_letter[e.letter] = e.alter
    return out


def melody_to_layout(melody: Melody, primer_steps: int = 0, pickup: bool = True) -> Layout:
    """The melody as measures of written notes (see the module docstring for the rules).

    Args:
      melody: any melody; its first bar starts at step 0.
      primer_steps: events before this step are marked `primer` (drawn apart from the continuation).
      pickup: a first bar that opens with rest and holds a note starts the music at the note (an anacrusis).

    Raises:
      NotationError: a grid or meter whose lengths have no written note values.
    """
    spq, spb = melody.steps_per_quarter, melody.steps_per_bar
    bar_quarters, beat = Fraction(spb, spq), beat_quarters(melody.time_signature)
    # --- notes as (pitch, start, end) in steps; a leading rest under a bar before the first note is a pickup
    notes, step = [], 0
    for note in melody.notes:
        notes.append((note.pitch, step, step + note.duration_steps))
        step += note.duration_steps
    total = step
    lead = 0
    first_note = next((n for n in notes if n[0] != REST), None)
    if pickup and first_note is not None and 0 < first_note[1] < spb:
        lead = first_note[1]
        notes = [n for n in notes if n[1] >= lead]
    tempo_at = dict(melody.tempo_changes)
    cuts = sorted(set(range(spb, total, spb)) | {s for s in tempo_at if lead < s < total} | {primer_steps} - {0})
    pieces = []  # (pitch, start, end, tied from before, tied on)
    for pitch, start, end in notes:
        inner = [c for c in cuts if start < c < end]
        edges = [start, *inner, end]
        for k in range(len(edges) - 1):
            pieces.append((pitch, edges[k], edges[k + 1], k > 0 and pitch != REST, k < len(edges) - 2
                           and pitch != REST))
    # --- bars -> spans -> written values
    fifths = key_fifths(melody.key, melody.minor)
    alters = key_alterations(fifths)
    measures = []
    bar_starts = sorted({(p[1] // spb) * spb for p in pieces})
    for bar_start in bar_starts:
        bar = [p for p in pieces if bar_start <= p[1] < bar_start + spb]
        boundaries = sorted({Fraction(p[1] - bar_start, spq) for p in bar} | {Fraction(p[2] - bar_start, spq)
                                                                              for p in bar})
        spans = _spans(bar_quarters, beat, boundaries)
        regions = [(bar_start + int(s * spq), bar_start + int(e * spq)) for s, e, _ in spans]  # beams stay inside
        events = []
        for s_start, s_end, tuplet in _merge_plain(spans):
            a, b = bar_start + int(s_start * spq), bar_start + int(s_end * spq)
            inside = [p for p in bar if p[1] < b and p[2] > a]
            span_events = []
            for pitch, start, end, tie_in, tie_on in inside:
                lo, hi = max(start, a), min(end, b)
                span_events += _written(pitch, lo, hi, spq, tuplet, tie_in or lo > start, tie_on or hi < end)
            if tuplet and span_events:
                span_events[0] = dataclasses.replace(span_events[0], tuplet_start=True,
                                                     tuplet_count=len(span_events))
                span_events[-1] = dataclasses.replace(span_events[-1], tuplet_stop=True)
            events += span_events
        events = [dataclasses.replace(e, primer=e.start_step < primer_steps, tempo=tempo_at.get(e.start_step))
                  for e in events]
        events = [_spelled(e, melody) for e in events]
        events = _accidentals(_beams(events, regions), alters)
        measures.append(Measure(len(measures) + (0 if lead else 1), events[0].start_step, tuple(events)))
    return Layout(melody, tuple(measures), fifths, (spb - lead) if lead else 0)


def _written(pitch, start, end, spq, tuplet, tie_in, tie_on) -> list[Written]:
    """One piece of a note inside a span as tied written values (in a tuplet, each unit is written longer)."""
    scale = Fraction(tuplet[0], tuplet[1]) if tuplet else Fraction(1)
    written = Fraction(end - start, spq) * scale
    values = split_value(written)
    out, step = [], start
    for k, value in enumerate(values):
        steps = int(value / scale * spq)
        dots = 0 if _is_power_of_two(value) else 1
        base = value if not dots else value * Fraction(2, 3)
        out.append(Written(pitch, step, steps, base, dots, tuplet, tie_start=(k < len(values) - 1 or tie_on)
                           and pitch != REST, tie_stop=(k > 0 or tie_in) and pitch != REST))
        step += steps
    if step != end:
        raise NotationError(f"a note of {end - start} steps at step {start} cannot be written on a grid of {spq} "
                            "steps per quarter")
    return out


def _spelled(e: Written, melody: Melody) -> Written:
    if e.is_rest:
        return e
    letter, alter, octave = spell(e.pitch, melody.key, melody.minor)
    return dataclasses.replace(e, letter=letter, alter=alter, octave=octave)
