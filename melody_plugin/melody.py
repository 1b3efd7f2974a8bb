"""NoteSequence <-> Melody: track choice, polyphony policy, grid, meter, tempo and key.

Step of the flow: `NoteSequence` -> `Melody` (a frozen tuple of (pitch, duration_steps) notes, rests included)
-> `NoteSequence`. Entry points: `melodies_from_note_sequence(ns, ...) -> Extraction`,
`melody_from_note_sequence(ns, ...)` for a primer, `melody_to_note_sequence(m)`, `melody_from_text(...)`.

A piece whose time signature changes is split where the meter changes (at the first bar line of the new meter),
so every melody has one meter and its bar lines are right. Tempo never moves bar lines: notes are quantized on the
beat grid through the tempo map (a bar is counted in beats, not seconds), and a melody keeps its tempo changes as
`tempo_changes`. Notes off the grid are snapped and counted. A melody lasts to the end of its sequence (a MIDI
file's end-of-track, on the grid), capped at the first bar line after its last note, so trailing rests are kept.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import math
import re

from melody_plugin import protos
from melody_plugin.errors import MelodyPluginError

REST = -1
POLICIES = ("highest", "lowest", "reject")
DEFAULT_STEPS_PER_QUARTER = 12  # 16ths are 3 steps, 8th triplets 4, 16th triplets 2: all exact
KEY_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")  # how keys are named
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


MELODY_TRACK_WORDS = ("melody", "melodie", "soprano", "sopran", "vocal", "voice", "vox", "lead", "tune", "solo",
                      "canto", "singer", "sing")
BASS_TRACK_WORDS = ("bass", "basso", "bajo")
BASS_RANGE_MEDIAN = 55  # a track whose median pitch is below G3 is taken for a bass line


@dataclasses.dataclass(frozen=True)
class TrackSummary:
    """One pitched instrument of a NoteSequence, as the track choice sees it."""

    instrument: int
    name: str
    program: int
    num_notes: int
    median_pitch: float
    overlap_fraction: float  # onsets that start while another note of the track still sounds

    def describe(self) -> str:
        name = f' "{self.name}"' if self.name else ""
        return f"{self.instrument}{name} ({self.num_notes} notes, program {self.program})"


def summarize_tracks(notes, names: dict[int, str] | None = None) -> list[TrackSummary]:
    """A `TrackSummary` per pitched instrument, in instrument order."""
    names = names or {}
    by_instrument = collections.defaultdict(list)
    for n in notes:
        if not n.is_drum:
            by_instrument[n.instrument].append(n)
    out = []
    for instrument in sorted(by_instrument):
        group = sorted(by_instrument[instrument], key=lambda n: (n.start_time, n.end_time))
        overlaps, latest_end = 0, -math.inf
        for n in group:
            if n.start_time < latest_end - 1e-6:
                overlaps += 1
            latest_end = max(latest_end, n.end_time)
        pitches = sorted(n.pitch for n in group)
        median = (pitches[(len(pitches) - 1) // 2] + pitches[len(pitches) // 2]) / 2
        out.append(TrackSummary(instrument, names.get(instrument, ""), group[0].program, len(group), median,
                                overlaps / len(group)))
    return out


def choose_melody_track(tracks: list[TrackSummary]) -> tuple[TrackSummary, str]:
    """The track most likely to carry the melody, and why. The score, in order:

    1. a track named like a melody (soprano, melody, vocal, voice, lead, tune, solo...) wins; among several, the
       higher one;
    2. otherwise bass-range tracks (median pitch below G3, or named bass) are set aside, and so are polyphonic ones
       (more than 10% of onsets inside another note), unless that leaves nothing;
    3. the highest-sounding of the rest (median pitch); ties go to more notes, then the lower instrument index.
    """
    def word_in(name, words):
        return any(w in re.split(r"[^a-z]+", name.lower()) or name.lower().startswith(w) for w in words)

    def highest(candidates):
        return max(candidates, key=lambda t: (t.median_pitch, t.num_notes, -t.instrument))

    if len(tracks) == 1:
        return tracks[0], "the only pitched track"
    named = [t for t in tracks if word_in(t.name, MELODY_TRACK_WORDS)]
    if named:
        return highest(named), "named like a melody track"
    pool = [t for t in tracks if t.median_pitch >= BASS_RANGE_MEDIAN and not word_in(t.name, BASS_TRACK_WORDS)]
    pool = pool or tracks
    mono = [t for t in pool if t.overlap_fraction <= 0.1]
    if mono:
        return highest(mono), "the highest monophonic line"
    return highest(pool), "the highest line"


def _choose_track(ns, notes, track, program, stats, path, report):
    pitched = [n for n in notes if not n.is_drum]
    if not notes:
        raise MelodyError("no_notes", path=path)
    if not pitched:
        raise MelodyError("drums_only", "only drum notes", path=path)
    if program is not None:
        pitched = [n for n in pitched if n.program == program]
        if not pitched:
            raise MelodyError("track_not_found", f"no notes with program {program}", path=path)
    names = {info.instrument: info.name for info in getattr(ns, "instrument_infos", ())}
    tracks = summarize_tracks(pitched, names)
    if track is not None:
        chosen = [t for t in tracks if t.instrument == track]
        if not chosen:
            raise MelodyError("track_not_found", f"no notes on instrument {track} (instruments with notes: "
                              f"{[t.instrument for t in tracks]})", path=path)
        chosen, why = chosen[0], "asked for with --track"
    elif program is not None and len(tracks) == 1:
        chosen, why = tracks[0], "asked for with --program"
    else:
        chosen, why = choose_melody_track(tracks)
    if len(tracks) > 1:
        stats["other_tracks_ignored"] += len(tracks) - 1
    if report is not None and len(tracks) > 1:
        others = [t.describe() for t in tracks if t is not chosen]
        text = f"melody from track {chosen.describe()}: {why}"
        if others:
            text += f"; other tracks: {', '.join(others)}; pick one with --track=N"
        if text not in report:
            report.append(text)
    return [n for n in pitched if n.instrument == chosen.instrument]


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




class TempoMap:
    """Seconds <-> quarter notes through a NoteSequence's tempo events (120 qpm before the first, as in MIDI)."""

    def __init__(self, tempos=()):
        events: dict[float, float] = {}
        for t in sorted(tempos, key=lambda t: t.time):
            if t.qpm > 0 and math.isfinite(t.qpm):
                events[max(t.time, 0.0)] = t.qpm  # several at one time: the last wins
        if 0.0 not in events:
            events[0.0] = 120.0
        self.times = sorted(events)
        self.qpms = [events[t] for t in self.times]
        self.quarters = [0.0]
        for i in range(1, len(self.times)):
            self.quarters.append(self.quarters[-1] + (self.times[i] - self.times[i - 1]) * self.qpms[i - 1] / 60.0)

    def quarters_at(self, seconds: float) -> float:
        i = max(bisect.bisect_right(self.times, seconds) - 1, 0)
        return self.quarters[i] + (seconds - self.times[i]) * self.qpms[i] / 60.0

    def seconds_at(self, quarters: float) -> float:
        i = max(bisect.bisect_right(self.quarters, quarters) - 1, 0)
        return self.times[i] + (quarters - self.quarters[i]) * 60.0 / self.qpms[i]

    def tempo_steps(self, steps_per_quarter: int) -> list[tuple[int, float]]:
        """(grid step, qpm) of each tempo event, nearest step; several on one step: the last wins."""
        by_step: dict[int, float] = {}
        for q, qpm in zip(self.quarters, self.qpms):
            by_step[_round_half_up(q * steps_per_quarter)] = qpm
        return sorted(by_step.items())


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def _meter(ts) -> tuple[int, int]:
    return (ts.numerator, ts.denominator)


def meter_change_times(ns) -> list[float]:
    """Times (seconds) where the meter changes, by note-seq's rule (`split_note_sequence_on_time_changes`, tempo
    events left out): before the first time-signature event the meter is MIDI's default 4/4, an event repeating
    the meter in force is no change, and of several at one time the first that differs is the change.
    """
    current, changes = (4, 4), []
    for ts in sorted(ns.time_signatures, key=lambda ts: ts.time):
        if _meter(ts) != current and ts.time > (changes[-1] if changes else 0.0):
            changes.append(ts.time)
        current = _meter(ts)
    return changes


PRESERVED_CONTROLS = (64, 66, 67)  # sustain, sostenuto, una corda: their state carries into each part


def split_note_sequence(ns, split_times) -> list:
    """`ns` cut at `split_times` (seconds), each part shifted to start at 0: note-seq's
    `sequences_lib.split_note_sequence(ns, split_times, skip_splits_inside_notes=False)`, without importing
    the note-seq package.

    Notes crossing a cut are shortened to it. The time signature, key, tempo and chord symbol in force at a
    cut (and the pedals' state) are repeated at the start of the next part; beats are kept, other text
    annotations, control changes and pitch bends are dropped. `subsequence_info` records each part's offsets.

    Raises:
      ValueError: a cut before 0, or at or past the sequence's end.
      MelodyError: a quantized sequence (`split_failed`; note-seq raises QuantizationStatusError): the parts'
        quantized steps would be stale.
    """
    text_type = type(ns).TextAnnotation
    times = [0.0] + sorted(split_times)
    if ns.total_time > times[-1]:
        times.append(ns.total_time)
    if len(times) < 2:
        return []
    info = ns.quantization_info
    if info.steps_per_quarter > 0 or info.steps_per_second > 0:
        grid = (f"{info.steps_per_quarter} steps per quarter" if info.steps_per_quarter > 0
                else f"{info.steps_per_second} steps per second")
        raise MelodyError("split_failed", f"cannot split a quantized NoteSequence ({grid}): melodies are taken from "
                          "unquantized sequences; split before quantizing", path=ns.filename)
    if any(a > b for a, b in zip(times, times[1:])):
        raise ValueError("Split times must be sorted.")  # a negative time
    if any(t >= ns.total_time for t in times[:-1]):
        raise ValueError("Cannot extract subsequence past end of sequence.")
    last = len(times) - 1  # number of parts
    empty = type(ns)()
    empty.CopyFrom(ns)
    empty.total_time = 0.0
    for field in ("notes", "time_signatures", "key_signatures", "tempos", "text_annotations", "control_changes",
                  "pitch_bends"):
        del getattr(empty, field)[:]
    parts = []
    for _ in range(last):
        part = type(ns)()
        part.CopyFrom(empty)
        parts.append(part)

    index = -1
    for note in sorted(ns.notes, key=lambda n: n.start_time):
        if note.start_time < times[0]:
            continue
        while index < last and note.start_time >= times[index + 1]:
            index += 1
        if index == last:
            break
        part = parts[index]
        part.notes.extend([note])
        part.notes[-1].start_time -= times[index]
        part.notes[-1].end_time = min(note.end_time, times[index + 1]) - times[index]
        part.total_time = max(part.total_time, part.notes[-1].end_time)

    def add_at_start(container, event):
        container.extend([event])
        container[-1].time = 0.0

    # stateful events: the one in force at a cut starts the next part
    chords = [a for a in ns.text_annotations if a.annotation_type == text_type.CHORD_SYMBOL]
    for events, field in ((ns.time_signatures, "time_signatures"), (ns.key_signatures, "key_signatures"),
                          (ns.tempos, "tempos"), (chords, "text_annotations")):
        previous, index = None, -1
        for event in sorted(events, key=lambda e: e.time):
            if event.time <= times[0]:
                previous = event
                continue
            while index < last and event.time > times[index + 1]:
                index += 1
                if index == last:
                    break
                if previous is not None:
                    add_at_start(getattr(parts[index], field), previous)
            if index == last:
                break
            if event.time < times[index + 1]:  # inside the part, not on its end boundary
                getattr(parts[index], field).extend([event])
                getattr(parts[index], field)[-1].time -= times[index]
            previous = event
        while index < last - 1:
            index += 1
            if previous is not None:
                add_at_start(getattr(parts[index], field), previous)

    # beats stay where they are
    index = -1
    for event in sorted((a for a in ns.text_annotations if a.annotation_type == text_type.BEAT),
                        key=lambda e: e.time):
        if event.time < times[0]:
            continue
        while index < last and event.time >= times[index + 1]:
            index += 1
        if index == last:
            break
        parts[index].text_annotations.extend([event])
        parts[index].text_annotations[-1].time -= times[index]

    # pedals, per instrument: their state at a cut starts the next part
    previous, index = {}, -1
    for event in sorted((cc for cc in ns.control_changes if cc.control_number in PRESERVED_CONTROLS),
                        key=lambda e: e.time):
        if event.time <= times[0]:
            previous[(event.instrument, event.control_number)] = event
            continue
        while index < last and event.time > times[index + 1]:
            index += 1
            if index == last:
                break
            for held in previous.values():
                add_at_start(parts[index].control_changes, held)
        if index == last:
            break
        if event.time < times[index + 1]:
            parts[index].control_changes.extend([event])
            parts[index].control_changes[-1].time -= times[index]
        previous[(event.instrument, event.control_number)] = event
    while index < last - 1:
        index += 1
        for held in previous.values():
            add_at_start(parts[index].control_changes, held)

    for part, start in zip(parts, times[:-1]):
        part.subsequence_info.start_time_offset = start
        part.subsequence_info.end_time_offset = ns.total_time - start - part.total_time
    return parts


def split_on_time_changes(ns, stats=None) -> list:
    """`ns` cut where the meter changes (never at tempo changes), by note-seq's rules: meter changes at or after
    the sequence's end are ignored, and every part, an unsplit sequence's one included, is made by
    `split_note_sequence` (times from 0, notes sorted, bends and non-pedal controls dropped, `subsequence_info`).

    Each part starts on the first bar line of its meter, so its bar lines are counted from its start. Unlike
    note-seq's (docs/note-seq-differences.md): the last part lasts to the sequence's end (a MIDI file's
    end-of-track: a final rest is music), a sequence whose `total_time` falls short of its notes ends with its last
    note, and parts without pitched notes are left out.

    Raises:
      MelodyError: no notes, drums only, or a quantized sequence (`split_failed`).
    """
    if not ns.notes:
        raise MelodyError("no_notes", path=ns.filename)
    if all(n.is_drum for n in ns.notes):
        raise MelodyError("drums_only", "only drum notes", path=ns.filename)
    end = max(ns.total_time, max(n.end_time for n in ns.notes))
    whole = ns
    if end > ns.total_time:  # a hand-built sequence without total_time: note-seq would drop the notes past it
        whole = type(ns)()
        whole.CopyFrom(ns)
        whole.total_time = end
    segments = split_note_sequence(whole, [t for t in meter_change_times(ns) if t < end])
    if segments:  # note-seq ends the last part with its last note and drops the events on its end
        final = segments[-1]
        start = final.subsequence_info.start_time_offset
        final.total_time = end - start
        final.subsequence_info.end_time_offset = 0.0
        for tempo in sorted(ns.tempos, key=lambda t: t.time):  # one on the final bar line: a continuation's tempo
            if end <= tempo.time <= end + 1e-6:
                final.tempos.add(time=tempo.time - start, qpm=tempo.qpm)
    segments = [s for s in segments if any(not n.is_drum for n in s.notes)]
    if stats is not None and len(segments) > 1:
        stats["time_change_splits"] += len(segments) - 1
    for seg in segments:
        # the meter in force at the cut is the segment's, from its start
        if len(seg.time_signatures) > 1:
            last = sorted(seg.time_signatures, key=lambda ts: ts.time)
            meters = {_meter(ts) for ts in last}
            if len(meters) == 1:
                keep = last[0]
                del seg.time_signatures[:]
                seg.time_signatures.add().CopyFrom(keep)
                seg.time_signatures[0].time = 0.0
    return segments


def quantize(seg, steps_per_quarter: int = DEFAULT_STEPS_PER_QUARTER, stats=None):
    """A copy of a one-meter sequence with every note on the beat grid, through the tempo map.

    Tempo changes are allowed (a bar is counted in beats); `total_quantized_steps` is the sequence's end
    (`total_time`, e.g. a MIDI file's end-of-track) on the grid. Notes moved onto the grid are counted.
    """
    music_pb2 = protos.music_pb2()
    path = seg.filename
    meters = {_meter(ts) for ts in seg.time_signatures}
    if len(meters) > 1:
        raise MelodyError("quantization_failed", f"the time signature changes ({sorted(meters)}); split the "
                          "sequence at meter changes first", path=path)
    if any(n.start_time < 0 or n.end_time < 0 for n in seg.notes):
        raise MelodyError("quantization_failed", "notes at negative times", path=path)
    tempo_map = TempoMap(seg.tempos)
    qns = music_pb2.NoteSequence()
    qns.CopyFrom(seg)
    qns.quantization_info.steps_per_quarter = steps_per_quarter
    last_end = 0
    for n in qns.notes:
        start = tempo_map.quarters_at(n.start_time) * steps_per_quarter
        end = tempo_map.quarters_at(n.end_time) * steps_per_quarter
        n.quantized_start_step = _round_half_up(start)
        n.quantized_end_step = max(_round_half_up(end), n.quantized_start_step + 1)
        if stats is not None and (abs(start - n.quantized_start_step) > 1e-3
                                  or abs(end - n.quantized_end_step) > 1e-3):
            stats["notes_snapped_to_grid"] += 1
        last_end = max(last_end, n.quantized_end_step)
    total = _round_half_up(tempo_map.quarters_at(seg.total_time) * steps_per_quarter)
    qns.total_quantized_steps = max(total, last_end)
    return qns


def melodies_from_quantized(qns, policy: str = "highest", track: int | str | None = None,
                            program: int | None = None, stats=None, report=None) -> list[Melody]:
    """The melodies of a quantized one-meter segment: one (the melody track), or one per track for track="all"."""
    if track != "all":
        return [melody_from_quantized(qns, policy, track, program, stats, report)]
    instruments = sorted({n.instrument for n in qns.notes if not n.is_drum
                          and (program is None or n.program == program)})
    return [melody_from_quantized(qns, policy, i, None, stats) for i in instruments]


def melody_from_quantized(qns, policy: str = "highest", track: int | None = None, program: int | None = None,
                          stats=None, report: list[str] | None = None) -> Melody:
    """The monophonic melody of a quantized one-meter segment: track choice, polyphony policy, rests, key, tempo.

    The melody lasts to the segment's end (`total_quantized_steps`), capped at the first bar line after its last
    note: trailing rests up to there are kept, a file padded with empty bars is not.
    `report`, when given, receives a line saying which track was taken and how to pick another.
    """
    if policy not in POLICIES:
        raise MelodyError("bad_policy", f"polyphony policy must be one of {POLICIES}, got {policy!r}")
    stats = stats if stats is not None else collections.Counter()
    path = qns.filename or ""
    steps_per_quarter = qns.quantization_info.steps_per_quarter
    if steps_per_quarter <= 0:
        raise MelodyError("not_quantized", "the NoteSequence is not quantized: put a Quantizer before the "
                          "melody extractor", path=path)
    if qns.time_signatures:
        time_signature = _meter(sorted(qns.time_signatures, key=lambda ts: ts.time)[0])
    else:
        time_signature = (4, 4)
    tempos = TempoMap(qns.tempos).tempo_steps(steps_per_quarter)
    melody = Melody((), steps_per_quarter, time_signature, tempos[0][1])  # validates meter and grid first
    notes = _choose_track(qns, list(qns.notes), track, program, stats, path, report)
    qnotes = [(n.quantized_start_step, n.quantized_end_step, n.pitch) for n in notes]
    mono = _resolve_polyphony(qnotes, policy, stats, path, melody.seconds_per_step)
    spb = melody.steps_per_bar
    events, step = [], 0
    for start, end, pitch in mono:
        if start > step:
            events += _split_rest(step, start - step, spb)
        events.append(Note(pitch, end - start))
        step = end
    bar_after_last_note = -(-step // spb) * spb
    end = max(step, min(qns.total_quantized_steps, bar_after_last_note))
    if report is not None and qns.total_quantized_steps >= bar_after_last_note + spb:
        silent_bars = (qns.total_quantized_steps - bar_after_last_note) / spb
        report.append(f"{silent_bars:g} silent bars after the last note ignored: the melody ends on the bar line "
                      "after its last note")
    if end > step:
        events += _split_rest(step, end - step, spb)
    changes, qpm = [], tempos[0][1]
    for change_step, change_qpm in tempos[1:]:  # one on the final bar line is the tempo a continuation takes
        if change_step <= end and change_qpm != qpm:
            changes.append((change_step, change_qpm))
            qpm = change_qpm
    if qns.key_signatures:
        first_key = sorted(qns.key_signatures, key=lambda k: k.time)[0]
        # note-seq's modes: minor 1, dorian 4, phrygian 5, locrian 7 have a minor third; the tonic stays the key
        key, minor = first_key.key % 12, first_key.mode in (1, 4, 5, 7)
    else:
        key, minor = estimate_key(events)
        stats["key_estimated"] += 1
    return dataclasses.replace(melody, notes=tuple(events), key=key, minor=minor, tempo_changes=tuple(changes))


SKIPPABLE_REASONS = ("polyphony_rejected", "bad_time_signature", "bad_tempo", "track_not_found",
                     "quantization_failed")


def melodies_from_note_sequence(ns, steps_per_quarter: int = DEFAULT_STEPS_PER_QUARTER, policy: str = "highest",
                                track: int | str | None = None, program: int | None = None,
                                min_notes: int = 0) -> Extraction:
    """Extracts one monophonic melody per constant-meter segment of `ns` (tempo changes are kept inside).

    Args:
      ns: a NoteSequence (not modified).
      steps_per_quarter: grid resolution; 12 represents 16ths and triplets exactly.
      policy: "highest" (skyline), "lowest", or "reject" (raise on any overlap).
      track: instrument index to use, or "all" for one melody per pitched track (Magenta's behaviour);
        default: the melody track chosen by `choose_melody_track`.
      program: MIDI program to use instead of an index.
      min_notes: segments with fewer pitched notes are dropped (counted as `too_short`).

    Returns:
      An Extraction with the melodies, counters (`time_change_splits`, `notes_snapped_to_grid`, ...) and
      warnings, the first of which says which track was taken.

    Raises:
      MelodyError: when no melody at all can be had; its `reason` is a counter name.
    """
    if policy not in POLICIES:
        raise MelodyError("bad_policy", f"polyphony policy must be one of {POLICIES}, got {policy!r}")
    path = ns.filename or ""
    stats, warnings = collections.Counter(), []
    segments = split_on_time_changes(ns, stats)
    if len(segments) > 1:
        warnings.append(f"split into {len(segments)} parts where the time signature changes")
    melodies, last_error = [], None
    for seg in segments:
        try:
            found = melodies_from_quantized(quantize(seg, steps_per_quarter, stats), policy, track, program, stats,
                                            warnings)
        except MelodyError as e:
            if e.reason in SKIPPABLE_REASONS:
                last_error = e
                stats[e.reason] += 1
                continue
            raise
        for melody in found:
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


MIDI_TICKS_PER_QUARTER = 480  # divisible by 12: every grid step (16ths, triplets) is a whole number of ticks


def melody_to_note_sequence(melody: Melody, velocity: int = 90, program: int = 0):
    """A NoteSequence with the melody's notes, tempo map, time signature and key signature (nothing is mutated).

    Times follow the tempo map; `total_time` is the melody's end (its final bar line for generated melodies).
    """
    ns = protos.music_pb2().NoteSequence()
    ns.ticks_per_quarter = MIDI_TICKS_PER_QUARTER
    ns.tempos.add(time=0.0, qpm=melody.qpm)
    for step, qpm in melody.tempo_changes:
        ns.tempos.add(time=melody.seconds_at_step(step), qpm=qpm)
    ns.time_signatures.add(time=0.0, numerator=melody.time_signature[0], denominator=melody.time_signature[1])
    ns.key_signatures.add(time=0.0, key=melody.key, mode=1 if melody.minor else 0)
    step = 0
    for note in melody.notes:
        if not note.is_rest:
            ns.notes.add(pitch=note.pitch, velocity=velocity, program=program, instrument=0,
                         start_time=melody.seconds_at_step(step),
                         end_time=melody.seconds_at_step(step + note.duration_steps))
        step += note.duration_steps
    ns.total_time = melody.seconds_at_step(step)
    return ns


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
