"""NoteSequence <-> melodies: split, quantize, choose the track, resolve polyphony; and back to a NoteSequence."""

from __future__ import annotations

import collections
import dataclasses

from melody_plugin.io.protos import music_pb2
from melody_plugin.music.key import estimate_key
from melody_plugin.music.melody import DEFAULT_STEPS_PER_QUARTER, POLICIES, REST, Extraction, Melody, MelodyError, Note
from melody_plugin.io.tempo_map import TempoMap
from melody_plugin.music.timing import _meter, pickup_bar_as_rest, quantize, snapped_notes, split_on_time_changes
from melody_plugin.music.tracks import _choose_track, _resolve_polyphony


def _split_rest(start_step: int, duration: int, steps_per_bar: int) -> list[Note]:
    """A rest cut at bar lines, so rests stay few distinct tokens and keep the barring visible."""
    rests, step, end = [], start_step, start_step + duration
    while step < end:
        next_bar = (step // steps_per_bar + 1) * steps_per_bar
        stop = min(end, next_bar)
        rests.append(Note(REST, stop - step))
        step = stop
    return rests


def quantized_to_melodies(qns, policy: str = "highest", track: int | str | None = None,
                          program: int | None = None, stats=None, report=None) -> list[Melody]:
    """The melodies of a quantized one-meter segment: one (the melody track), or one per track for track="all"."""
    if track != "all":
        return [quantized_to_melody(qns, policy, track, program, stats, report)]
    instruments = sorted({n.instrument for n in qns.notes if not n.is_drum
                          and (program is None or n.program == program)})
    return [quantized_to_melody(qns, policy, i, None, stats) for i in instruments]


def quantized_to_melody(qns, policy: str = "highest", track: int | None = None, program: int | None = None,
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
    stats["notes_snapped_to_grid"] += snapped_notes(qns, notes)  # the melody's own, not other tracks'
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


def note_sequence_to_melodies(ns, steps_per_quarter: int = DEFAULT_STEPS_PER_QUARTER, policy: str = "highest",
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
    segments = split_on_time_changes(pickup_bar_as_rest(ns, stats), stats)
    if stats["pickup_bars"]:
        num, den = _meter(segments[0].time_signatures[0]) if segments[0].time_signatures else (4, 4)
        warnings.append(f"its short first bar read as a pickup to {num}/{den} (a rest before it fills the bar)")
    if len(segments) > 1:
        warnings.append(f"split into {len(segments)} parts where the time signature changes")
    melodies, last_error = [], None
    for seg in segments:
        try:
            found = quantized_to_melodies(quantize(seg, steps_per_quarter), policy, track, program, stats,
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


def note_sequence_to_melody(ns, steps_per_quarter: int = DEFAULT_STEPS_PER_QUARTER, policy: str = "highest",
                            track: int | None = None, program: int | None = None) -> Melody:
    """The melody of a primer: the last constant-meter segment of `ns` (generation continues after it)."""
    return note_sequence_to_melodies(ns, steps_per_quarter, policy, track, program).melodies[-1]


MIDI_TICKS_PER_QUARTER = 480  # divisible by 12: every grid step (16ths, triplets) is a whole number of ticks


def melody_to_note_sequence(melody: Melody, velocity: int = 90, program: int = 0):
    """A NoteSequence with the melody's notes, tempo map, time signature and key signature (nothing is mutated).

    Times follow the tempo map; `total_time` is the melody's end (its final bar line for generated melodies).
    """
    ns = music_pb2().NoteSequence()
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


# The names before converters were named a_to_b; kept as aliases for one release.
melodies_from_note_sequence = note_sequence_to_melodies
melody_from_note_sequence = note_sequence_to_melody
