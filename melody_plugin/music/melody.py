"""The monophonic `Melody` (frozen `Note`s on a grid, meter, tempo map, key) and its text form."""

from __future__ import annotations

import collections
import dataclasses
import fractions
import math
import re

import pretty_midi

from melody_plugin.errors import MelodyPluginError
from melody_plugin.music.key import KEY_NAMES, estimate_key

REST = -1


POLICIES = ("highest", "lowest", "reject")


DEFAULT_STEPS_PER_QUARTER = 12  # 16ths are 3 steps, 8th triplets 4, 16th triplets 2: all exact




SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


FLAT_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")


def pitch_name(pitch: int) -> str:
    """Scientific pitch name (60 -> "C4"), or "R" for a rest."""
    if pitch == REST:
        return "R"
    return f"{SHARP_NAMES[pitch % 12]}{pitch // 12 - 1}"


class MelodyError(MelodyPluginError):
    """A NoteSequence that yields no usable melody (no notes, drums only, polyphony under `reject`...)."""

    def __init__(self, reason: str, detail: str = "", path: str = ""):
        self.reason = reason  # a short counter name, e.g. "no_notes"
        self.path = path
        text = detail or reason.replace("_", " ")
        super().__init__(f"{path}: {text}" if path else text)


@dataclasses.dataclass(frozen=True)
class Note:
    """One melody event: a MIDI pitch (or REST) held for `duration_steps` grid steps."""

    pitch: int
    duration_steps: int

    @property
    def is_rest(self) -> bool:
        return self.pitch == REST


@dataclasses.dataclass(frozen=True)
class Melody:
    """A monophonic melody on a grid, starting on a bar line, with its meter, tempo and key."""

    notes: tuple[Note, ...]
    steps_per_quarter: int = DEFAULT_STEPS_PER_QUARTER
    time_signature: tuple[int, int] = (4, 4)
    qpm: float = 120.0
    key: int = 0  # tonic pitch class, C = 0
    minor: bool = False
    # Tempo changes after the start, as (grid step, qpm) in increasing step order; `qpm` is the tempo at step 0.
    tempo_changes: tuple[tuple[int, float], ...] = ()

    def __post_init__(self):
        num, den = self.time_signature
        if num <= 0 or den <= 0 or den & (den - 1):
            raise MelodyError("bad_time_signature", f"time signature must be N/2^k, got {num}/{den}")
        if (self.steps_per_quarter * 4) % den:
            raise MelodyError("bad_time_signature",
                              f"steps_per_quarter={self.steps_per_quarter} cannot represent a 1/{den} beat")
        if self.qpm <= 0 or not math.isfinite(self.qpm):
            raise MelodyError("bad_tempo", f"qpm must be positive, got {self.qpm}")
        for note in self.notes:
            if note.duration_steps <= 0:
                raise MelodyError("bad_note", f"note durations must be positive, got {note}")
        last = 0
        for step, qpm in self.tempo_changes:
            if step <= last or qpm <= 0 or not math.isfinite(qpm):
                raise MelodyError("bad_tempo", f"tempo changes must be (step > 0, qpm > 0) in increasing step order, "
                                  f"got {self.tempo_changes}")
            last = step

    @property
    def steps_per_bar(self) -> int:
        num, den = self.time_signature
        return num * self.steps_per_quarter * 4 // den

    @property
    def total_steps(self) -> int:
        return sum(n.duration_steps for n in self.notes)

    @property
    def num_bars(self) -> float:
        return self.total_steps / self.steps_per_bar

    @property
    def num_pitched(self) -> int:
        return sum(not n.is_rest for n in self.notes)

    @property
    def seconds_per_step(self) -> float:
        """Seconds per grid step at the start (see `seconds_at_step` when the tempo changes)."""
        return 60.0 / self.qpm / self.steps_per_quarter

    @property
    def final_qpm(self) -> float:
        """The tempo in force at the end (a continuation keeps it)."""
        return self.tempo_changes[-1][1] if self.tempo_changes else self.qpm

    def seconds_at_step(self, step: float) -> float:
        """Time of a grid step through the tempo map."""
        seconds, prev_step, qpm = 0.0, 0, self.qpm
        for change_step, change_qpm in self.tempo_changes:
            if change_step >= step:
                break
            seconds += (change_step - prev_step) * 60.0 / qpm / self.steps_per_quarter
            prev_step, qpm = change_step, change_qpm
        return seconds + (step - prev_step) * 60.0 / qpm / self.steps_per_quarter

    def with_tempo(self, qpm: float) -> "Melody":
        """The melody at one constant tempo."""
        return dataclasses.replace(self, qpm=float(qpm), tempo_changes=())

    @property
    def key_name(self) -> str:
        return f"{KEY_NAMES[self.key]} {'minor' if self.minor else 'major'}"

    def transpose(self, semitones: int) -> "Melody":
        """The melody moved by `semitones` (rests stay rests), key included."""
        notes = tuple(n if n.is_rest else Note(n.pitch + semitones, n.duration_steps) for n in self.notes)
        return dataclasses.replace(self, notes=notes, key=(self.key + semitones) % 12)

    def with_notes(self, notes) -> "Melody":
        return dataclasses.replace(self, notes=tuple(notes))


@dataclasses.dataclass
class Extraction:
    """What `note_sequence_to_melodies` found: the melodies and counters saying what was dropped or changed."""

    melodies: list[Melody]
    stats: collections.Counter
    warnings: list[str]


def parse_time_signature(text: str) -> tuple[int, int]:
    """(numerator, denominator) of "6/8". The Melody that uses it checks that the meter is playable.

    Raises:
      MelodyError: text that is not N/D.
    """
    num, _, den = text.partition("/")
    try:
        return int(num), int(den)
    except ValueError:
        raise MelodyError("bad_time_signature", f"time signature must look like 6/8, got {text!r}") from None


_TEXT_NOTE = re.compile(r"^(?P<pitch>R|[A-Ga-g][#b]?-?\d+|\d+):(?P<dur>\d+(?:\.\d+)?(?:/\d+)?)$")


def text_to_melody(text: str, steps_per_quarter: int = DEFAULT_STEPS_PER_QUARTER,
                   time_signature=(4, 4), qpm: float = 120.0) -> Melody:
    """Parses an inline melody such as "C4:1 D4:0.5 E4:0.5 R:1" (pitch name, MIDI number or R; quarters).

    Durations may be fractions ("E4:1/3" is an eighth-note triplet).
    """


    notes = []
    for item in text.split():
        m = _TEXT_NOTE.match(item)
        if not m:
            raise MelodyError("bad_primer_melody", f"cannot read {item!r}: expected PITCH:QUARTERS, e.g. C4:0.5")
        quarters = fractions.Fraction(m["dur"])
        steps = quarters * steps_per_quarter
        if steps.denominator != 1 or steps <= 0:
            raise MelodyError("bad_primer_melody", f"{item!r}: {quarters} quarters is not on a grid of "
                              f"{steps_per_quarter} steps per quarter")
        pitch_text = m["pitch"]
        if pitch_text == "R":
            pitch = REST
        elif pitch_text.isdigit():
            pitch = int(pitch_text)
        else:
            pitch = int(pretty_midi.note_name_to_number(pitch_text[0].upper() + pitch_text[1:]))
        if pitch != REST and not 0 <= pitch <= 127:
            raise MelodyError("bad_primer_melody", f"{item!r}: pitch {pitch} is outside MIDI's 0-127")
        notes.append(Note(pitch, int(steps)))
    if not notes:
        raise MelodyError("bad_primer_melody", "the inline melody is empty")
    key, minor = estimate_key(notes)
    return Melody(tuple(notes), steps_per_quarter, tuple(time_signature), qpm, key, minor)


melody_from_text = text_to_melody  # the name before converters were named a_to_b; kept for one release
