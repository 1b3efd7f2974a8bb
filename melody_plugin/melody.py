"""NoteSequence <-> Melody: track choice, polyphony policy, grid, meter, tempo and key.

Step of the flow: `NoteSequence` -> `Melody` (a frozen tuple of (pitch, duration_steps) notes, rests included)
-> `NoteSequence`. Entry points: `melodies_from_note_sequence(ns, ...) -> Extraction`,
`melody_from_note_sequence(ns, ...)` for a primer, `melody_to_note_sequence(m)`, `melody_from_text(...)`.

A piece whose time signature or tempo changes is split at each change (note-seq's splitter), so every melody has
one meter and one tempo and its bar lines are right. Quantization is note-seq's; notes off the grid are snapped
by it and counted here.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re

from melody_plugin.errors import MelodyPluginError
from melody_plugin.quiet import quiet_third_party

REST = -1
POLICIES = ("highest", "lowest", "reject")
DEFAULT_STEPS_PER_QUARTER = 12  # 16ths are 3 steps, 8th triplets 4, 16th triplets 2: all exact
KEY_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


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
        return 60.0 / self.qpm / self.steps_per_quarter

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
    """What `melodies_from_note_sequence` found: the melodies and counters saying what was dropped or changed."""

    melodies: list[Melody]
    stats: collections.Counter
    warnings: list[str]


def _split_rest(start_step: int, duration: int, steps_per_bar: int) -> list[Note]:
    """A rest cut at bar lines, so rests stay few distinct tokens and keep the barring visible."""
    rests, step, end = [], start_step, start_step + duration
    while step < end:
        next_bar = (step // steps_per_bar + 1) * steps_per_bar
        stop = min(end, next_bar)
        rests.append(Note(REST, stop - step))
        step = stop
    return rests


def estimate_key(notes, default=(0, False)) -> tuple[int, bool]:
    """Krumhansl-Schmuckler key estimate from duration-weighted pitch classes: (tonic, minor)."""
    major = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
    minor = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
    hist = [0.0] * 12
    for n in notes:
        if not n.is_rest:
            hist[n.pitch % 12] += n.duration_steps
    if not any(hist):
        return default

    def corr(xs, ys):
        mx, my = sum(xs) / 12, sum(ys) / 12
        num = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
        den = math.sqrt(sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys))
        return num / den if den else 0.0

    best = max(((corr(hist, profile[-t:] + profile[:-t]), t, is_minor)
                for is_minor, profile in ((False, major), (True, minor)) for t in range(12)))
    return best[1], best[2]


def _choose_track(notes, track: int | None, program: int | None, stats, path):
    pitched = [n for n in notes if not n.is_drum]
    if not notes:
        raise MelodyError("no_notes", path=path)
    if not pitched:
        raise MelodyError("drums_only", "only drum notes", path=path)
    if program is not None:
        pitched = [n for n in pitched if n.program == program]
        if not pitched:
            raise MelodyError("track_not_found", f"no notes with program {program}", path=path)
    by_instrument = collections.Counter(n.instrument for n in pitched)
    if track is not None:
        if track not in by_instrument:
            raise MelodyError("track_not_found", f"no notes on instrument {track} "
                              f"(instruments with notes: {sorted(by_instrument)})", path=path)
        chosen = track
    else:
        # Most notes wins; ties go to the lowest instrument index so the choice is stable.
        chosen = min(by_instrument, key=lambda i: (-by_instrument[i], i))
    if len(by_instrument) > 1:
        stats["other_tracks_ignored"] += len(by_instrument) - 1
    return [n for n in pitched if n.instrument == chosen]


def _resolve_polyphony(qnotes, policy: str, stats, path, seconds_per_step: float):
    """Monophonic (start, end, pitch) list: at each onset the highest (or lowest) note; a later onset cuts it.

    This is the skyline algorithm of Uitdenbogerd and Zobel; `reject` raises on the first overlap instead.
    """
    sign = -1 if policy in ("highest", "reject") else 1
    ordered = sorted(qnotes, key=lambda n: (n[0], sign * n[2]))
    out: list[list[int]] = []
    for start, end, pitch in ordered:
        if out and start < out[-1][1]:
            if policy == "reject":
                raise MelodyError("polyphony_rejected",
                                  f"{'notes start together' if start == out[-1][0] else '2 notes overlap'} at "
                                  f"{start * seconds_per_step:.2f} s (policy=reject)", path=path)
            stats["polyphony_resolved"] += 1
            prev = out[-1]
            if start == prev[0]:
                continue  # same onset: the first in `ordered` is already the highest (or lowest)
            prev[1] = start  # skyline: every new onset is heard; it cuts the note still held
        out.append([start, end, pitch])
    return out


def split_on_time_changes(ns, stats=None) -> list:
    """`ns` cut at every time-signature or tempo change (note-seq's splitter); times restart at 0 in each part."""
    quiet_third_party()
    from note_seq import sequences_lib

    if not ns.notes:
        raise MelodyError("no_notes", path=ns.filename)
    if all(n.is_drum for n in ns.notes):
        raise MelodyError("drums_only", "only drum notes", path=ns.filename)
    try:
        segments = sequences_lib.split_note_sequence_on_time_changes(ns, skip_splits_inside_notes=False)
    except Exception as e:
        raise MelodyError("split_failed", f"cannot split at time changes ({type(e).__name__}: {e})",
                          path=ns.filename) from None
    segments = [s for s in segments if any(not n.is_drum for n in s.notes)]
    if stats is not None and len(segments) > 1:
        stats["time_change_splits"] += len(segments) - 1
    for seg in segments:
        seg.filename = ns.filename
    return segments


def quantize(seg, steps_per_quarter: int = DEFAULT_STEPS_PER_QUARTER, stats=None):
    """note-seq's quantization of a one-meter, one-tempo segment; notes moved onto the grid are counted."""
    quiet_third_party()
    from note_seq import sequences_lib

    try:
        quantized = sequences_lib.quantize_note_sequence(seg, steps_per_quarter)
    except Exception as e:  # MultipleTimeSignatureError, NegativeTimeError, BadTimeSignatureError...
        raise MelodyError("quantization_failed", f"cannot quantize ({type(e).__name__}: {e})",
                          path=seg.filename) from None
    if stats is not None:
        qpm = seg.tempos[0].qpm if seg.tempos else 120.0
        steps_per_second = steps_per_quarter * qpm / 60.0
        for n in quantized.notes:
            if (abs(n.start_time * steps_per_second - n.quantized_start_step) > 1e-3
                    or abs(n.end_time * steps_per_second - n.quantized_end_step) > 1e-3):
                stats["notes_snapped_to_grid"] += 1
    return quantized


def melody_from_quantized(qns, policy: str = "highest", track: int | None = None, program: int | None = None,
                          stats=None) -> Melody:
    """The monophonic melody of a quantized one-meter segment: track choice, polyphony policy, rests, key."""
    if policy not in POLICIES:
        raise MelodyError("bad_policy", f"polyphony policy must be one of {POLICIES}, got {policy!r}")
    stats = stats if stats is not None else collections.Counter()
    path = qns.filename or ""
    steps_per_quarter = qns.quantization_info.steps_per_quarter
    if qns.time_signatures:
        ts = qns.time_signatures[0]
        time_signature = (ts.numerator, ts.denominator)
    else:
        time_signature = (4, 4)
    qpm = qns.tempos[0].qpm if qns.tempos else 120.0
    melody = Melody((), steps_per_quarter, time_signature, qpm)  # validates meter and grid first
    notes = _choose_track(list(qns.notes), track, program, stats, path)
    qnotes = [(n.quantized_start_step, n.quantized_end_step, n.pitch) for n in notes]
    mono = _resolve_polyphony(qnotes, policy, stats, path, melody.seconds_per_step)
    spb = melody.steps_per_bar
    events, step = [], 0
    for start, end, pitch in mono:
        if start > step:
            events += _split_rest(step, start - step, spb)
        events.append(Note(pitch, end - start))
        step = end
    if qns.key_signatures:
        key, minor = qns.key_signatures[0].key % 12, qns.key_signatures[0].mode == 1
    else:
        key, minor = estimate_key(events)
        stats["key_estimated"] += 1
    return dataclasses.replace(melody, notes=tuple(events), key=key, minor=minor)


SKIPPABLE_REASONS = ("polyphony_rejected", "bad_time_signature", "bad_tempo", "track_not_found",
                     "quantization_failed")


def melodies_from_note_sequence(ns, steps_per_quarter: int = DEFAULT_STEPS_PER_QUARTER, policy: str = "highest",
                                track: int | None = None, program: int | None = None,
                                min_notes: int = 0) -> Extraction:
    """Extracts one monophonic melody per constant-meter, constant-tempo segment of `ns`.

    Args:
      ns: a NoteSequence (not modified).
      steps_per_quarter: grid resolution; 12 represents 16ths and triplets exactly.
      policy: "highest" (skyline), "lowest", or "reject" (raise on any overlap).
      track: instrument index to use; default: the one with most notes.
      program: MIDI program to use instead of an index.
      min_notes: segments with fewer pitched notes are dropped (counted as `too_short`).

    Returns:
      An Extraction with the melodies and counters (`time_change_splits`, `notes_snapped_to_grid`, ...).

    Raises:
      MelodyError: when no melody at all can be had; its `reason` is a counter name.
    """
    if policy not in POLICIES:
        raise MelodyError("bad_policy", f"polyphony policy must be one of {POLICIES}, got {policy!r}")
    path = ns.filename or ""
    stats, warnings = collections.Counter(), []
    segments = split_on_time_changes(ns, stats)
    if len(segments) > 1:
        warnings.append(f"split into {len(segments)} parts at time-signature/tempo changes")
    melodies, last_error = [], None
    for seg in segments:
        try:
            melody = melody_from_quantized(quantize(seg, steps_per_quarter, stats), policy, track, program, stats)
        except MelodyError as e:
            if e.reason in SKIPPABLE_REASONS:
                last_error = e
                stats[e.reason] += 1
                continue
            raise
        if melody.num_pitched < max(min_notes, 1):
            stats["too_short"] += 1
            continue
        melodies.append(melody)
    if not melodies:
        if last_error:
            raise last_error
        if stats["too_short"]:
            raise MelodyError("too_short", f"fewer than {max(min_notes, 1)} notes", path=path)
        raise MelodyError("no_notes", path=path)
    return Extraction(melodies, stats, warnings)


def melody_from_note_sequence(ns, steps_per_quarter: int = DEFAULT_STEPS_PER_QUARTER, policy: str = "highest",
                              track: int | None = None, program: int | None = None) -> Melody:
    """The melody of a primer: the last constant-meter segment of `ns` (generation continues after it)."""
    return melodies_from_note_sequence(ns, steps_per_quarter, policy, track, program).melodies[-1]


def melody_to_note_sequence(melody: Melody, velocity: int = 90, program: int = 0, start_step: int = 0):
    """A NoteSequence with the melody's notes, tempo, time signature and key signature (nothing is mutated)."""
    quiet_third_party()
    from note_seq.protobuf import music_pb2

    ns = music_pb2.NoteSequence()
    ns.ticks_per_quarter = 220
    ns.tempos.add(time=0.0, qpm=melody.qpm)
    ns.time_signatures.add(time=0.0, numerator=melody.time_signature[0], denominator=melody.time_signature[1])
    ns.key_signatures.add(time=0.0, key=melody.key, mode=1 if melody.minor else 0)
    sps = melody.seconds_per_step
    step = start_step
    for note in melody.notes:
        if not note.is_rest:
            ns.notes.add(pitch=note.pitch, velocity=velocity, program=program, instrument=0,
                         start_time=step * sps, end_time=(step + note.duration_steps) * sps)
        step += note.duration_steps
    ns.total_time = step * sps
    return ns


_TEXT_NOTE = re.compile(r"^(?P<pitch>R|[A-Ga-g][#b]?-?\d+|\d+):(?P<dur>\d+(?:\.\d+)?(?:/\d+)?)$")


def melody_from_text(text: str, steps_per_quarter: int = DEFAULT_STEPS_PER_QUARTER,
                     time_signature=(4, 4), qpm: float = 120.0) -> Melody:
    """Parses an inline melody such as "C4:1 D4:0.5 E4:0.5 R:1" (pitch name, MIDI number or R; quarters).

    Durations may be fractions ("E4:1/3" is an eighth-note triplet).
    """
    import fractions

    import pretty_midi

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
