"""Time in a NoteSequence: the tempo map, meter splits (note-seq's rules) and quantizing onto the grid."""

from __future__ import annotations


from melody_plugin.io.tempo_map import TempoMap, round_half_up
from melody_plugin.io import protos
from melody_plugin.music.melody import DEFAULT_STEPS_PER_QUARTER, MelodyError


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


def pickup_bar_as_rest(ns, stats=None):
    """`ns` with a pickup written as a short first bar of its own (1/4 before 3/4, as some notation programs export
    one) read as a pickup, or `ns` itself (never changed: a copy is returned).

    A pickup bar: the part before the first meter change is at most one bar of its meter, shorter than a bar of the
    meter after it, and its meter never comes back (a piece of changing meters keeps its bars). Everything moves
    later by what it lacks of a full bar (a rest before the pickup), so the pickup ends on the new meter's first
    bar line, and the short bar's meter goes. Counted as `pickup_bars`.
    """
    changes = meter_change_times(ns)
    if not changes or ns.quantization_info.steps_per_quarter > 0:
        return ns
    first = changes[0]
    signatures = sorted(ns.time_signatures, key=lambda ts: ts.time)
    before = [ts for ts in signatures if ts.time < first]
    after = next(ts for ts in signatures if ts.time == first and (not before or _meter(ts) != _meter(before[-1])))
    tempos = [t for t in sorted(ns.tempos, key=lambda t: t.time) if t.time <= first]
    qpm = tempos[-1].qpm if tempos else 120.0
    bar = after.numerator * 4.0 / after.denominator * 60.0 / qpm
    own = _meter(before[-1]) if before else (4, 4)  # MIDI's default before any time signature
    own_bar = own[0] * 4.0 / own[1] * 60.0 / qpm
    comes_back = any(_meter(ts) == own for ts in signatures if ts.time > first)
    if (not any(n.start_time < first and not n.is_drum for n in ns.notes) or first >= bar - 1e-6
            or first > own_bar + 1e-6 or comes_back):
        return ns
    delta = bar - first
    out = type(ns)()
    out.CopyFrom(ns)
    for event in (*out.control_changes, *out.pitch_bends, *out.text_annotations):
        event.time += delta
    for note in out.notes:
        note.start_time += delta
        note.end_time += delta
    for event in (*out.tempos, *out.key_signatures):  # what is in force from the start stays there
        if event.time > 0:
            event.time += delta
    kept = [ts for ts in out.time_signatures if ts.time >= first]
    del out.time_signatures[:]
    for ts in kept:
        out.time_signatures.add().CopyFrom(ts)
        out.time_signatures[-1].time = 0.0 if ts.time == first else ts.time + delta
    out.total_time = max(ns.total_time, max((n.end_time for n in ns.notes), default=0.0)) + delta
    if stats is not None:
        stats["pickup_bars"] += 1
    return out


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


def snapped_notes(qns, notes) -> int:
    """How many of `notes` (of the quantized sequence `qns`, their seconds kept) were moved onto the grid."""
    tempo_map, grid = TempoMap(qns.tempos), qns.quantization_info.steps_per_quarter
    return sum(abs(tempo_map.quarters_at(n.start_time) * grid - n.quantized_start_step) > 1e-3
               or abs(tempo_map.quarters_at(n.end_time) * grid - n.quantized_end_step) > 1e-3 for n in notes)


def quantize(seg, steps_per_quarter: int = DEFAULT_STEPS_PER_QUARTER, stats=None):
    """A copy of a one-meter sequence with every note on the beat grid, through the tempo map.

    Tempo changes are allowed (a bar is counted in beats); `total_quantized_steps` is the sequence's end
    (`total_time`, e.g. a MIDI file's end-of-track) on the grid. Notes moved onto the grid are counted (all of
    them; melody extraction counts the melody's own, `snapped_notes`).
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
        n.quantized_start_step = round_half_up(tempo_map.quarters_at(n.start_time) * steps_per_quarter)
        n.quantized_end_step = max(round_half_up(tempo_map.quarters_at(n.end_time) * steps_per_quarter),
                                   n.quantized_start_step + 1)
        last_end = max(last_end, n.quantized_end_step)
    if stats is not None:
        stats["notes_snapped_to_grid"] += snapped_notes(qns, qns.notes)
    total = round_half_up(tempo_map.quarters_at(seg.total_time) * steps_per_quarter)
    qns.total_quantized_steps = max(total, last_end)
    return qns
