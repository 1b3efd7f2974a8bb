"""Comparing melodies: pitch-class, interval and duration histogram overlaps, bar cuts, the copy baseline."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

from melody_plugin.errors import MelodyPluginError
from melody_plugin.music.melody import REST, Melody, Note

MAX_INTERVAL = 12  # intervals wider than an octave share the +-12 bins: a leap is a leap




class ContinuationError(MelodyPluginError):
    """Melodies that cannot be cut or compared: too short, on different grids, a primer off its bar lines."""


def _notes(melody) -> tuple[Note, ...]:
    """The notes of a Melody, or the notes given as an iterable of `Note`."""
    return melody.notes if isinstance(melody, Melody) else tuple(melody)


def _normalised(counts: Counter) -> dict:
    total = sum(counts.values())
    return {k: v / total for k, v in sorted(counts.items())} if total else {}


def pitch_class_histogram(melody) -> dict[int, float]:
    """Share of the sounding notes on each pitch class (C = 0 ... B = 11); rests are left out."""
    return _normalised(Counter(n.pitch % 12 for n in _notes(melody) if not n.is_rest))


def interval_histogram(melody) -> dict[int, float]:
    """Share of each melodic interval (semitones, -12..12, wider ones clipped) between consecutive sounding notes.

    Rests are skipped: C, rest, E counts one interval of +4. A repeated note is an interval of 0.
    """
    pitches = [n.pitch for n in _notes(melody) if not n.is_rest]
    return _normalised(Counter(max(-MAX_INTERVAL, min(MAX_INTERVAL, b - a)) for a, b in zip(pitches, pitches[1:])))


def duration_histogram(melody) -> dict[int, float]:
    """Share of the sounding notes of each length in grid steps (the tokens' durations); rests are left out.

    Rests are left out because their lengths mostly say where bar lines cut silence, not how the tune moves.
    """
    return _normalised(Counter(n.duration_steps for n in _notes(melody) if not n.is_rest))


def overlap(a: dict, b: dict) -> float:
    """Overlapping area of two normalised histograms: sum over bins of the smaller share, in [0, 1].

    Two empty histograms (nothing to compare, e.g. no intervals in one-note melodies) overlap fully (1.0); an empty
    one and a non-empty one not at all (0.0): a silent continuation of a tune that plays scores 0.
    """
    if not a and not b:
        return 1.0
    return min(1.0, sum(min(share, b.get(k, 0.0)) for k, share in a.items()))  # min(1, .): float rounding


def notes_per_bar(melody: Melody) -> float:
    """Sounding notes (onsets) per bar of the melody's own meter; 0.0 for an empty melody."""
    bars = melody.total_steps / melody.steps_per_bar
    return melody.num_pitched / bars if bars else 0.0


def compare(continuation: Melody, reference: Melody) -> dict[str, float]:
    """One continuation against one reference.

    Returns:
      pitch_class_overlap, interval_overlap, duration_overlap (each 0..1, higher is closer), notes_per_bar of the
      continuation and reference_notes_per_bar, and notes_per_bar_error = |their difference|.

    Raises:
      ContinuationError: the two are on different grids (durations in steps would not compare).
    """
    if continuation.steps_per_quarter != reference.steps_per_quarter:
        raise ContinuationError(f"continuation has {continuation.steps_per_quarter} steps per quarter, the "
                                f"reference {reference.steps_per_quarter}")
    density, reference_density = notes_per_bar(continuation), notes_per_bar(reference)
    return {
        "pitch_class_overlap": overlap(pitch_class_histogram(continuation), pitch_class_histogram(reference)),
        "interval_overlap": overlap(interval_histogram(continuation), interval_histogram(reference)),
        "duration_overlap": overlap(duration_histogram(continuation), duration_histogram(reference)),
        "notes_per_bar": density,
        "reference_notes_per_bar": reference_density,
        "notes_per_bar_error": abs(density - reference_density),
    }


def average(scores) -> dict[str, float]:
    """The mean of each figure over a list of `compare`/`score_tune` dicts (an empty list gives {})."""
    scores = list(scores)
    if not scores:
        return {}
    return {k: math.fsum(s[k] for s in scores) / len(scores) for k in scores[0]}


def score_tune(continuations, reference: Melody) -> dict[str, float]:
    """Several continuations of one tune's primer against its reference: the mean of their `compare`s.

    Averaging per tune first keeps a tune with more continuations from weighing more in a benchmark's mean.
    """
    continuations = list(continuations)
    if not continuations:
        raise ContinuationError("no continuation to score")
    return average(compare(c, reference) for c in continuations)


def repeated_share(melody: Melody, start_step: int, bars_back: int) -> float:
    """Share of the notes beginning at grid step `start_step` or later that repeat a note `bars_back` bars earlier.

    A note repeats when a note of the same pitch and the same length began exactly `bars_back` bars (of the
    melody's meter) before it. Rests count neither way. With the primer as the start of `melody` and
    `start_step` its end, this says how much a continuation replays rather than varies: 1.0 for the copy
    baseline at `bars_back` = its primer's length, and for a tune's own next bars how much real tunes repeat.
    0.0 when no note begins at `start_step` or later.
    """
    if bars_back < 1:
        raise ContinuationError(f"bars_back must be >= 1, got {bars_back}")
    onsets, step = {}, 0
    for n in melody.notes:
        if not n.is_rest:
            onsets[step] = n
        step += n.duration_steps
    later = [(t, n) for t, n in onsets.items() if t >= start_step]
    if not later:
        return 0.0
    back = bars_back * melody.steps_per_bar
    return sum(onsets.get(t - back) == n for t, n in later) / len(later)


def joined(primer: Melody, continuation: Melody) -> Melody:
    """The primer followed by its continuation, as one melody (the primer's meter, tempo and tempo changes)."""
    return primer.with_notes(primer.notes + continuation.notes)


def slice_steps(melody: Melody, start_step: int, end_step: int) -> Melody:
    """The part of `melody` from grid step `start_step` to `end_step`, as a melody starting at step 0.

    A note sounding across `end_step` is cut there. A note begun before `start_step` and still sounding becomes a
    rest for the part after `start_step`: it is no new onset. The tempo is the one in force at `start_step`.
    """
    if not 0 <= start_step <= end_step:
        raise ContinuationError(f"bad step range {start_step}..{end_step}")
    notes, step = [], 0
    for n in melody.notes:
        begin, end = max(step, start_step), min(step + n.duration_steps, end_step)
        if begin < end:
            pitch = n.pitch if step >= start_step else REST
            notes.append(Note(pitch, end - begin))
        step += n.duration_steps
        if step >= end_step:
            break
    qpm = melody.qpm
    changes = []
    for change_step, change_qpm in melody.tempo_changes:
        if change_step <= start_step:
            qpm = change_qpm
        elif change_step < end_step:
            changes.append((change_step - start_step, change_qpm))
    return dataclasses.replace(melody, notes=tuple(notes), qpm=qpm, tempo_changes=tuple(changes))


def first_sounding_bar(melody: Melody) -> int:
    """Index of the bar holding the first note onset (0 when the melody starts with a note or a short pickup rest)."""
    step = 0
    for n in melody.notes:
        if not n.is_rest:
            return step // melody.steps_per_bar
        step += n.duration_steps
    return 0


def split_primer_reference(melody: Melody, primer_bars: int, reference_bars: int) -> tuple[Melody, Melody]:
    """(the first `primer_bars` bars, the next `reference_bars` bars) of a tune, cut at its own bar lines.

    Bars are counted as the generator counts them: from the melody's step 0, which is a bar line in any meter
    (a pickup that the file bars correctly is a leading rest, so the pickup bar is bar 1), except that whole
    bars of silence before the first note are dropped. The primer ends exactly on a bar line, so a
    continuation of `reference_bars` bars (`MelodyGenerator.generate(primer, num_bars=reference_bars)`) lines up
    with the reference bar for bar. A note held across the cut is cut: its head ends the primer, its tail is
    a rest at the start of the reference.

    Raises:
      ContinuationError: the tune is shorter than `primer_bars + reference_bars` bars (after leading silence).
    """
    if primer_bars < 1 or reference_bars < 1:
        raise ContinuationError(f"primer and reference need >= 1 bar each, got {primer_bars} and {reference_bars}")
    spb = melody.steps_per_bar
    start = first_sounding_bar(melody) * spb
    cut, end = start + primer_bars * spb, start + (primer_bars + reference_bars) * spb
    if melody.total_steps < end:
        raise ContinuationError(f"too short: {(melody.total_steps - start) / spb:g} bars, needs "
                                f"{primer_bars + reference_bars}")
    return slice_steps(melody, start, cut), slice_steps(melody, cut, end)


def copy_primer(primer: Melody, num_bars: int) -> Melody:
    """The copy baseline: the primer's bars played again and again until `num_bars` bars are filled, bar-exact.

    Bar i of the output is bar i mod P of a P-bar primer; a note held across the cut is cut at the last bar line.
    The output plays at the primer's final tempo, as a generated continuation does.

    Raises:
      ContinuationError: the primer does not end on a bar line, or is empty.
    """
    spb = primer.steps_per_bar
    if primer.total_steps == 0 or primer.total_steps % spb:
        raise ContinuationError(f"the primer must be whole bars, got {primer.total_steps / spb:g} bars")
    if num_bars < 1:
        raise ContinuationError(f"num_bars must be >= 1, got {num_bars}")
    primer_bars = primer.total_steps // spb
    repeated = primer.with_tempo(primer.final_qpm).with_notes(primer.notes * -(-num_bars // primer_bars))
    return slice_steps(repeated, 0, num_bars * spb)
