"""Melody -> ABC tune text (abcjs, abcm2ps, The Session and music21 read it).

Step of the flow: melody -> notation. Entry points: `melody_to_abc(melody, title=..., reference_number=1) -> str`
and `write_abc(melody, path, ...)`. The header is `X: T: M: L:1/8 Q:1/4=.. K:` (the key from the melody, `Gm`
for G minor); bars are `|`, four to a line, ending `|]`; ties `-` (across bar lines too, the accidental written
again in the new bar), tuplets `(3` or `(p:q:r`, rests `z`, beamed notes written together, inline `[Q:...]` where the
tempo changes. The bars, ties and tuplets come from layout.py.
"""

from __future__ import annotations

import re
from fractions import Fraction

from melody_plugin.music.melody import Melody
from melody_plugin.notation.layout import Layout, Written, melody_to_layout
from melody_plugin.runtime import atomic

UNIT_QUARTERS = Fraction(1, 2)  # L:1/8
BARS_PER_LINE = 4
ACCIDENTALS = {-2: "__", -1: "_", 0: "=", 1: "^", 2: "^^"}
KEY_LETTER_NAMES = {0: "C", 1: "Db", 2: "D", 3: "Eb", 4: "E", 5: "F", 6: "F#", 7: "G", 8: "Ab", 9: "A", 10: "Bb",
                    11: "B"}
MINOR_KEY_NAMES = {0: "C", 1: "C#", 2: "D", 3: "D#", 4: "E", 5: "F", 6: "F#", 7: "G", 8: "G#", 9: "A", 10: "Bb",
                   11: "B"}


def abc_key(melody: Melody) -> str:
    """The K: value: "D", "Bb", "F#m" (minor keys spelled as their key signature spells the tonic)."""
    if melody.minor:
        return MINOR_KEY_NAMES[melody.key % 12] + "m"
    return KEY_LETTER_NAMES[melody.key % 12]


def abc_tempo(qpm: float) -> str:
    """The Q: value: "1/4=120"; a tempo that is no whole number of quarters per minute uses a shorter beat."""
    for beat in (4, 8, 16, 32):
        per_minute = qpm * beat / 4
        if abs(per_minute - round(per_minute)) < 1e-6:
            return f"1/{beat}={round(per_minute)}"
    return f"1/4={round(qpm)}"


def _length(quarters: Fraction) -> str:
    """A length in units of L:1/8: "" for one, "2", "/" for a half, "3/2"."""
    units = quarters / UNIT_QUARTERS
    if units == 1:
        return ""
    if units.denominator == 1:
        return str(units.numerator)
    if units.numerator == 1:
        return "/" if units.denominator == 2 else f"/{units.denominator}"
    return f"{units.numerator}/{units.denominator}"


def _pitch(e: Written) -> str:
    """ABC pitch: C = C4 (middle C), c = C5, c' = C6, C, = C3; the accidental when the layout writes one."""
    prefix = ACCIDENTALS[e.alter] if e.accidental else ""
    if e.octave >= 5:
        return prefix + e.letter.lower() + "'" * (e.octave - 5)
    return prefix + e.letter + "," * (4 - e.octave)


def _event(e: Written) -> str:
    text = f"[Q:{abc_tempo(e.tempo)}]" if e.tempo else ""
    if e.tuplet_start:
        actual, normal = e.tuplet
        # "(3" is the triplet every ABC reader knows; others say all three numbers (their defaults vary by meter)
        short = (actual, normal, e.tuplet_count) == (3, 2, 3)
        text += "(3" if short else f"({actual}:{normal}:{e.tuplet_count}"
    text += ("z" if e.is_rest else _pitch(e)) + _length(e.written_quarters)
    return text + ("-" if e.tie_start else "")


def _bar(events) -> str:
    """One bar's notes: beamed notes run together, a space elsewhere (abcm2ps beams what is written together)."""
    out = ""
    for k, e in enumerate(events):
        joined = k > 0 and e.beam in ("continue", "end")
        out += ("" if joined or k == 0 else " ") + _event(e)
    return out


def layout_to_abc(layout: Layout, title: str = "", reference_number: int = 1) -> str:
    """ABC text of a laid-out melody (see `melody_to_abc`)."""
    melody = layout.melody
    num, den = melody.time_signature
    title = re.sub(r"[\r\n%]+", " ", title).strip() or "Melody"  # one line; % would start a comment
    lines = [f"X:{reference_number}", f"T:{title}", f"M:{num}/{den}", "L:1/8", f"Q:{abc_tempo(melody.qpm)}",
             f"K:{abc_key(melody)}"]
    bars = [_bar(m.events) for m in layout.measures]
    for start in range(0, len(bars), BARS_PER_LINE):
        chunk = bars[start:start + BARS_PER_LINE]
        last = start + BARS_PER_LINE >= len(bars)
        lines.append(" | ".join(chunk) + (" |]" if last else " |"))
    return "\n".join(lines) + "\n"


def melody_to_abc(melody: Melody, title: str = "", reference_number: int = 1, pickup: bool = True) -> str:
    """An ABC tune of the melody, one voice, in its meter, key and tempo.

    Args:
      melody: what to write (a generated melody ends on a bar line; any other ends with a short bar).
      title: the T: line (default "Melody").
      reference_number: the X: number.
      pickup: a first bar that opens with rest starts at its first note (ABC's pickup bar).

    Raises:
      layout.NotationError: a melody whose lengths have no written note values.
    """
    return layout_to_abc(melody_to_layout(melody, pickup=pickup), title, reference_number)


def write_abc(melody: Melody, path, title: str = "", reference_number: int = 1) -> None:
    """Writes `melody_to_abc` to `path` atomically (UTF-8)."""
    atomic.write_bytes(path, melody_to_abc(melody, title, reference_number).encode("utf-8"))
