"""Our port of note-seq (the meter split, the MIDI reader) against note-seq itself, on random inputs.

Every expected value comes from note-seq's own functions; where we differ on purpose (docs/note-seq-differences.md),
the test applies that one difference to note-seq's answer, step by step, and says so.
"""


import collections
import io

import numpy as np
import pytest

from melody_plugin.io import midi as midi_io
from melody_plugin.music.melody import MelodyError
from melody_plugin.music.timing import split_note_sequence, split_on_time_changes

METERS = [(4, 4), (3, 4), (6, 8), (2, 2), (5, 8)]


def random_sequence(rng):
    """A NoteSequence with what the split has to handle: notes in any order (drums, two instruments, notes across
    every cut), meter changes before, at and after `total_time` (coincident, repeated, duplicated), tempo and key
    changes, chord symbols, beats, pedals and other controls, pitch bends; `total_time` at the last note's end
    (note-seq's reader) or later (ours: the end-of-track)."""
    from note_seq.protobuf import music_pb2

    ns = music_pb2.NoteSequence(filename="random.mid", ticks_per_quarter=480)
    grid = 0.25  # most times on a grid, so events fall exactly on notes' ends and on each other
    for _ in range(rng.integers(1, 12)):
        start = rng.integers(0, 32) * grid if rng.random() < 0.8 else rng.uniform(0, 8)
        end = start + (rng.integers(1, 8) * grid if rng.random() < 0.8 else rng.uniform(0.01, 2))
        ns.notes.add(pitch=int(rng.integers(40, 90)), velocity=80, start_time=start, end_time=end,
                     instrument=int(rng.integers(0, 2)), program=int(rng.integers(0, 3)),
                     is_drum=bool(rng.random() < 0.15))
    last_end = max(n.end_time for n in ns.notes)
    ns.total_time = last_end if rng.random() < 0.5 else last_end + rng.integers(1, 8) * grid

    def some_time():
        kind = rng.integers(0, 6)
        if kind == 0:
            return ns.total_time  # on the end
        if kind == 1:
            return ns.total_time + rng.integers(1, 8) * grid  # after it
        if kind == 2:
            return float(rng.choice([n.end_time for n in ns.notes]))  # on a note's end (or a cut's)
        return rng.integers(0, 36) * grid

    meter = METERS[rng.integers(len(METERS))]
    if rng.random() < 0.8:  # else the first comes later (after 4/4, MIDI's default)
        ns.time_signatures.add(time=0.0, numerator=meter[0], denominator=meter[1])
    times = []
    for _ in range(rng.integers(0, 6)):
        time = float(rng.choice(times)) if times and rng.random() < 0.3 else some_time()  # coincident
        times.append(time)
        if rng.random() < 0.7:
            meter = METERS[rng.integers(len(METERS))]  # else the meter in force, repeated
        ns.time_signatures.add(time=time, numerator=meter[0], denominator=meter[1])
    ns.tempos.add(time=0.0, qpm=float(rng.choice([60, 96, 120, 137.5])))
    for _ in range(rng.integers(0, 4)):
        ns.tempos.add(time=some_time(), qpm=float(rng.choice([60, 96, 120, 137.5])))
    for _ in range(rng.integers(0, 3)):
        ns.key_signatures.add(time=some_time(), key=int(rng.integers(0, 12)), mode=int(rng.integers(0, 2)))
    text = music_pb2.NoteSequence.TextAnnotation
    for _ in range(rng.integers(0, 3)):
        ns.text_annotations.add(time=some_time(), text=str(rng.choice(["C", "G7", "Am"])),
                                annotation_type=text.CHORD_SYMBOL)
        ns.text_annotations.add(time=some_time(), annotation_type=text.BEAT)
    for _ in range(rng.integers(0, 5)):
        ns.control_changes.add(time=some_time(), control_number=int(rng.choice([7, 10, 64, 66, 67])),
                               control_value=int(rng.integers(0, 128)), instrument=int(rng.integers(0, 2)))
        ns.pitch_bends.add(time=some_time(), bend=int(rng.integers(-8192, 8192)), instrument=int(rng.integers(0, 2)))
    order = rng.permutation(len(ns.notes))  # not in time order
    notes = [type(ns.notes[0])() for _ in order]
    for new, old in zip(notes, order):
        new.CopyFrom(ns.notes[int(old)])
    del ns.notes[:]
    ns.notes.extend(notes)
    return ns


def note_seqs_meter_split(ns):
    """note-seq's split_note_sequence_on_time_changes cut at meter changes only, with our deliberate differences
    applied to its parts one by one (docs/note-seq-differences.md)."""
    from note_seq import sequences_lib

    # tempo changes do not split: note-seq's cuts with the tempo events left out, then its split of the whole
    meters_only = type(ns)()
    meters_only.CopyFrom(ns)
    del meters_only.tempos[:]
    cuts = [p.subsequence_info.start_time_offset
            for p in sequences_lib.split_note_sequence_on_time_changes(meters_only)][1:]
    parts = sequences_lib.split_note_sequence(ns, cuts)
    # the last part lasts to the sequence's end (the end-of-track), with a tempo change on it
    last, start = parts[-1], parts[-1].subsequence_info.start_time_offset
    last.total_time = ns.total_time - start
    last.subsequence_info.end_time_offset = 0.0
    for tempo in sorted(ns.tempos, key=lambda t: t.time):
        if tempo.time == ns.total_time:
            last.tempos.add(time=tempo.time - start, qpm=tempo.qpm)
    # parts without a pitched note are left out (no melody in them)
    parts = [p for p in parts if any(not n.is_drum for n in p.notes)]
    # a part whose time signatures all say one meter keeps the first, at its start
    for part in parts:
        meters = {(ts.numerator, ts.denominator) for ts in part.time_signatures}
        if len(part.time_signatures) > 1 and len(meters) == 1:
            first = sorted(part.time_signatures, key=lambda ts: ts.time)[0]
            first.time = 0.0
            del part.time_signatures[1:]
            part.time_signatures[0].CopyFrom(first)
    return parts


def test_split_on_time_changes_equals_note_seqs_on_random_sequences():
    rng = np.random.default_rng(20240611)
    splits = at_or_after_end = 0
    for case in range(300):
        ns = random_sequence(rng)
        before = ns.SerializeToString()
        if all(n.is_drum for n in ns.notes):
            with pytest.raises(MelodyError, match="only drum notes"):
                split_on_time_changes(ns)
            continue
        expected = note_seqs_meter_split(ns)
        assert split_on_time_changes(ns) == expected, f"case {case}:\n{ns}"
        assert ns.SerializeToString() == before
        splits += len(expected) > 1
        at_or_after_end += any(ts.time >= ns.total_time for ts in ns.time_signatures)
    assert splits > 50 and at_or_after_end > 50  # the cases reach what they are meant to


def test_split_note_sequence_equals_note_seqs_on_random_cuts():
    from note_seq import sequences_lib

    rng = np.random.default_rng(7)
    refused = 0
    for case in range(300):
        ns = random_sequence(rng)
        pool = [0.0, ns.total_time, ns.total_time + 0.5, -0.25] + [n.end_time for n in ns.notes]
        cuts = [float(rng.choice(pool)) if rng.random() < 0.5 else rng.integers(0, 36) * 0.25
                for _ in range(rng.integers(0, 5))]
        try:
            expected = sequences_lib.split_note_sequence(ns, list(cuts), skip_splits_inside_notes=False)
        except ValueError:  # a cut before 0 or past the end
            refused += 1
            with pytest.raises(ValueError):
                split_note_sequence(ns, cuts)
            continue
        assert split_note_sequence(ns, cuts) == expected, f"case {case}: cuts {cuts}\n{ns}"
    assert 30 < refused < 270


# --- the MIDI reader: notes never released are ended at the end of their track; nothing else changes

def midi_bytes(tracks, ticks_per_quarter, fmt):
    """A MIDI file written with mido from per-track lists of (tick, message) and each track's end tick."""
    import mido

    mid = mido.MidiFile(type=fmt, ticks_per_beat=ticks_per_quarter)
    for events, end_tick in tracks:
        track, tick = mido.MidiTrack(), 0
        for at, msg in sorted(events, key=lambda e: e[0]) + [(end_tick, mido.MetaMessage("end_of_track"))]:
            track.append(msg.copy(time=at - tick))
            tick = at
        mid.tracks.append(track)
    buffer = io.BytesIO()
    mid.save(file=buffer)
    return buffer.getvalue()


def random_midi_tracks(rng):
    """Tracks of notes as sloppy writers leave them: pitches struck again before their note-off, note-offs that
    never come or come twice, notes of no length, note-ons of velocity 0, program changes, controls and bends
    before any note; a conductor track with the tempo map first (format 1), or everything in one (format 0)."""
    import mido

    tpq = int(rng.choice([96, 220, 480, 1000]))
    step = tpq // 4
    conductor = [(0, mido.MetaMessage("set_tempo", tempo=int(rng.choice([400000, 500000, 750000]))))]
    if rng.random() < 0.5:
        conductor.append((int(rng.integers(1, 16)) * step, mido.MetaMessage("set_tempo", tempo=600000)))
    tracks = [(conductor, 16 * step)]
    for _ in range(rng.integers(1, 5)):
        channels = [int(c) for c in rng.choice([0, 1, 2, 9], size=rng.integers(1, 3), replace=False)]
        events = []
        if rng.random() < 0.5:
            events.append((0, mido.Message("program_change", channel=channels[0], program=int(rng.integers(0, 80)))))
        if rng.random() < 0.3:
            events.append((0, mido.Message("control_change", channel=channels[-1], control=64, value=127)))
            events.append((step, mido.Message("pitchwheel", channel=channels[-1], pitch=1000)))
        for _ in range(rng.integers(0, 10)):
            channel, pitch = int(rng.choice(channels)), int(rng.integers(60, 64))  # few pitches: struck again
            start = int(rng.integers(0, 16)) * step
            events.append((start, mido.Message("note_on", channel=channel, note=pitch, velocity=80)))
            kind = rng.random()
            offs = [] if kind < 0.15 else [0] if kind < 0.25 else [int(rng.integers(1, 8)) * step]
            if rng.random() < 0.15:
                offs.append(int(rng.integers(1, 12)) * step)  # released twice
            for length in offs:
                off = (mido.Message("note_off", channel=channel, note=pitch) if rng.random() < 0.5
                       else mido.Message("note_on", channel=channel, note=pitch, velocity=0))
                events.append((start + length, off))
        if rng.random() < 0.2:
            events.append((int(rng.integers(4, 16)) * step,
                           mido.Message("program_change", channel=channels[0], program=int(rng.integers(0, 80)))))
        end = max([tick for tick, _ in events], default=0) + int(rng.integers(0, 4)) * step
        tracks.append((events, end))
    if rng.random() < 0.25:  # format 0
        return [([e for events, _ in tracks for e in events], max(end for _, end in tracks))], tpq, 0
    return tracks, tpq, 1


def with_every_note_ended(tracks):
    """The tracks with a note-off for every channel and pitch they play right before their end-of-track (one
    ends every open note of a pitch, in pretty_midi)."""
    import mido

    out = []
    for events, end in tracks:
        keys = sorted({(m.channel, m.note) for _, m in events if m.type in ("note_on", "note_off")})
        out.append((events + [(end, mido.Message("note_off", channel=c, note=n)) for c, n in keys], end))
    return out


def test_midi_reader_equals_note_seqs_on_random_files_with_unreleased_notes():
    from note_seq import midi_io as ns_midi_io

    def fields(note):
        return (note.instrument, note.program, note.is_drum, note.pitch, note.velocity, note.start_time,
                note.end_time)

    rng = np.random.default_rng(11)
    with_unreleased = 0
    for case in range(200):
        tracks, tpq, fmt = random_midi_tracks(rng)
        data = midi_bytes(tracks, tpq, fmt)
        theirs = ns_midi_io.midi_to_note_sequence(data)
        theirs_ended = ns_midi_io.midi_to_note_sequence(midi_bytes(with_every_note_ended(tracks), tpq, fmt))
        unreleased = len(theirs_ended.notes) - len(theirs.notes)  # the notes note-seq drops for want of a note-off
        ours, warnings = midi_io.midi_bytes_to_note_sequence(data, "random.mid")
        said = [w for w in warnings if "never released" in w]
        assert said == ([f"{unreleased} notes never released; ended at the end of their track"] if unreleased
                        else []), f"case {case}"
        # the same notes as note-seq's once every note is ended ...
        assert sorted(fields(n)[1:] for n in ours.notes) == sorted(fields(n)[1:] for n in theirs_ended.notes)
        # ... and note-seq's own notes, in its order, under its instrument numbers; the ended ones come after
        left = collections.Counter(fields(n) for n in theirs.notes)
        kept = []
        for note in ours.notes:
            if left[fields(note)]:
                left[fields(note)] -= 1
                kept.append(fields(note))
        assert kept == [fields(n) for n in theirs.notes], f"case {case}"
        with_unreleased += unreleased > 0
    assert with_unreleased > 40
