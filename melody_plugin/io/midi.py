"""MIDI bytes <-> NoteSequence: the guarded reader's checks, pretty_midi conversion and the 480-tpq writer."""

from __future__ import annotations

import dataclasses
import io
import re
import struct

import mido
import pretty_midi

from melody_plugin.errors import InputFileError
from melody_plugin.io import protos
from melody_plugin.io.tempo_map import TempoMap
from melody_plugin.runtime import atomic
from melody_plugin.runtime.quiet import quiet_third_party

MAX_NOTES = 200_000


MAX_QUARTERS = 200_000  # about 28 hours at 120 qpm


MAX_TICK = 100_000_000


def _check_midi_structure(path, data: bytes) -> tuple[list[str], bytes]:
    """Walks the chunk headers; refuses truncated or header-less files, warns on header/chunk disagreement.

    Returns the warnings and the bytes to parse: when the header's track count disagrees with the chunks, the
    count is corrected (parsers would otherwise fail or drop tracks) and the user is told.
    """
    warnings = []
    if data[:4] != b"MThd":
        if data[:4] == b"RIFF":
            raise InputFileError(path, "RIFF-wrapped MIDI (.rmi) is not supported")
        sample = data[:256]
        if sample and all(32 <= b < 127 or b in (9, 10, 13) for b in sample):
            raise InputFileError(path, "not a MIDI file (it is text)")
        raise InputFileError(path, "not a MIDI file (no MThd header)")
    if len(data) < 14:
        raise InputFileError(path, "truncated MIDI header")
    header_len, fmt, ntracks, division = struct.unpack(">IHHH", data[4:14])
    if header_len < 6:
        raise InputFileError(path, f"bad MIDI header length {header_len}")
    if fmt > 2:
        raise InputFileError(path, f"unknown MIDI format {fmt}")
    if division & 0x8000:
        raise InputFileError(path, "SMPTE time division is not supported (only ticks per quarter)")
    if division == 0:
        raise InputFileError(path, "0 ticks per quarter note; refused")
    pos, tracks = 8 + header_len, 0
    while pos + 8 <= len(data):
        chunk_id, length = data[pos:pos + 4], struct.unpack(">I", data[pos + 4:pos + 8])[0]
        if chunk_id == b"MTrk":
            tracks += 1
        elif not re.fullmatch(rb"[\x20-\x7e]{4}", chunk_id):
            warnings.append(f"{len(data) - pos} bytes of trailing garbage after the last chunk ignored")
            break
        if pos + 8 + length > len(data):
            raise InputFileError(
                path, f"truncated: chunk {chunk_id.decode('latin-1')!r} #{tracks} claims {length} bytes, "
                f"only {len(data) - pos - 8} left")
        pos += 8 + length
    if tracks == 0:
        raise InputFileError(path, "no MTrk chunk (no tracks)")
    if tracks != ntracks:
        warnings.append(f"header says {ntracks} tracks but the file has {tracks}")
        data = data[:10] + struct.pack(">H", tracks) + data[12:]
    return warnings, data


def _check_midi_events(path, data: bytes) -> tuple[list[str], bytes, float, list[int] | None]:
    """Parses with mido (memory bounded by the file size) and checks tempo, ticks and notes before pretty_midi.

    Returns warnings, the bytes to convert (notes never released are ended at the end of their track: the
    libraries would silently drop them otherwise), the file's end (its last end-of-track) in quarter notes, and
    the order to put pretty_midi's instruments in (None: as they come; see `_end_open_notes`).
    """

    warnings = []
    try:
        mid = mido.MidiFile(file=io.BytesIO(data), clip=True)
    except Exception as e:  # mido raises OSError, EOFError, ValueError, KeyError... on junk
        raise InputFileError(path, f"corrupt MIDI data ({type(e).__name__}: {e})") from None
    tpq = mid.ticks_per_beat
    scans = [_scan_track(path, track) for track in mid.tracks]
    end_tick = max(scan.end_tick for scan in scans)  # the end-of-track (or the last event) of the longest track
    if end_tick > MAX_TICK or end_tick / tpq > MAX_QUARTERS:
        raise InputFileError(
            path, f"events at tick {end_tick} ({end_tick / tpq:.0f} quarter notes) exceed the length limit; refused")
    num_notes = sum(scan.num_notes for scan in scans)
    if num_notes > MAX_NOTES:
        raise InputFileError(path, f"{num_notes} notes exceed the limit of {MAX_NOTES}")
    zero_length = sum(scan.zero_length for scan in scans)
    if zero_length:
        warnings.append(f"{zero_length} zero-length notes dropped")
    unreleased, instrument_order = _end_open_notes(mid, scans)
    moved_tempos = _tempos_to_first_track(mid) if mid.type == 1 else 0
    if unreleased:
        warnings.append(f"{unreleased} notes never released; ended at the end of their track")
    if unreleased or moved_tempos:
        buffer = io.BytesIO()
        try:
            mid.save(file=buffer)
        except Exception as e:
            raise InputFileError(path, f"corrupt MIDI data ({type(e).__name__}: {e})") from None
        data = buffer.getvalue()
    return warnings, data, end_tick / tpq, instrument_order


@dataclasses.dataclass
class _TrackNotes:
    """One track's notes as pretty_midi reads them (see `_scan_track`)."""

    num_notes: int = 0
    zero_length: int = 0
    end_tick: int = 0
    instruments: list = dataclasses.field(default_factory=list)  # (program, channel), as pretty_midi makes them
    open_notes: dict = dataclasses.field(default_factory=dict)  # (channel, pitch) -> start ticks never ended
    programs: list = dataclasses.field(default_factory=lambda: [0] * 16)  # each channel's program at the end


def _scan_track(path, track) -> _TrackNotes:
    """Reads a track's notes as pretty_midi does: a note-off ends every open note of its channel and pitch (but
    one struck on its own tick, when it ends others), and pretty_midi makes an instrument for a (program,
    channel) at its first ended note. Refuses a tempo of 0."""
    scan, tick = _TrackNotes(), 0
    for msg in track:
        tick += msg.time
        if msg.type == "set_tempo" and msg.tempo <= 0:
            raise InputFileError(path, f"tempo event of {msg.tempo} microseconds per quarter; refused")
        if msg.type == "program_change":
            scan.programs[msg.channel] = msg.program
        elif msg.type == "note_on" and msg.velocity > 0:
            scan.num_notes += 1
            scan.open_notes.setdefault((msg.channel, msg.note), []).append(tick)
        elif msg.type in ("note_off", "note_on") and (msg.channel, msg.note) in scan.open_notes:
            starts = scan.open_notes.pop((msg.channel, msg.note))
            struck_now = starts.count(tick)
            if struck_now == len(starts):
                scan.zero_length += struck_now
                continue
            if struck_now:
                scan.open_notes[(msg.channel, msg.note)] = [tick] * struck_now
            if (scan.programs[msg.channel], msg.channel) not in scan.instruments:
                scan.instruments.append((scan.programs[msg.channel], msg.channel))
    scan.end_tick = tick
    for key, starts in list(scan.open_notes.items()):  # struck on the last tick: nothing left to hold
        scan.zero_length += starts.count(tick)
        scan.open_notes[key] = [start for start in starts if start != tick]
        if not scan.open_notes[key]:
            del scan.open_notes[key]
    return scan


def _end_open_notes(mid, scans: list[_TrackNotes]) -> tuple[int, list[int] | None]:
    """Ends every note left open at the end of its track, in `mid`. Returns how many, and the order to put
    pretty_midi's instruments in: one that only these notes make goes after all the others, so every other track
    keeps the number note-seq gives it (the number `--track` takes). None when the order stays."""

    made, late, ended = [], [], 0
    for index, (track, scan) in enumerate(zip(mid.tracks, scans)):
        made += [(program, channel, index) for program, channel in scan.instruments]
        if not scan.open_notes:
            continue
        keys = sorted(scan.open_notes)
        ended += sum(len(scan.open_notes[key]) for key in keys)
        for channel, _ in keys:  # pretty_midi makes an instrument at the note-off that ends a note
            instrument = (scan.programs[channel], channel, index)
            if instrument not in made:
                late.append(len(made))
                made.append(instrument)
        end = len(track) - 1 if track and track[-1].type == "end_of_track" else len(track)
        delta = track[end].time if end < len(track) else 0
        offs = [mido.Message("note_off", channel=channel, note=pitch, velocity=0, time=0) for channel, pitch in keys]
        offs[0].time = delta
        if end < len(track):
            track[end] = track[end].copy(time=0)
        track[end:end] = offs
    if not late:
        return ended, None
    return ended, [i for i in range(len(made)) if i not in late] + late


def _tempos_to_first_track(mid) -> int:
    """Moves set_tempo events of later tracks into the first (pretty_midi reads tempo there only; other tools
    write it anywhere). Returns how many moved."""

    moved = []
    for track in mid.tracks[1:]:
        tick, kept, carry = 0, [], 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                moved.append((tick, msg))
                carry += msg.time  # the next event keeps its absolute tick
                continue
            kept.append(msg.copy(time=msg.time + carry))
            carry = 0
        track[:] = kept
    if not moved:
        return 0
    events, tick = [], 0
    for msg in mid.tracks[0]:
        tick += msg.time
        events.append((tick, msg))
    end = events.pop() if events and events[-1][1].type == "end_of_track" else None
    events = sorted(events + moved, key=lambda e: e[0])  # stable: at one tick, the first track's events first
    if end is not None:
        events.append((max(end[0], events[-1][0] if events else 0), end[1]))
    first, tick = mido.MidiTrack(), 0
    for at, msg in events:
        first.append(msg.copy(time=at - tick))
        tick = at
    mid.tracks[0] = first
    return len(moved)


def _pretty_midi():
    """pretty_midi, with note-seq's raised tick limit (our own limits are checked before it parses)."""
    quiet_third_party()

    # note-seq sets this on import; without it pretty_midi refuses files past 1e7 ticks, below our MAX_TICK
    pretty_midi.pretty_midi.MAX_TICK = max(pretty_midi.pretty_midi.MAX_TICK, 1e10)
    return pretty_midi


# note-seq's defaults for a sequence that has none (note_seq.constants)
STANDARD_PPQ = 220


DEFAULT_QPM = 120.0


def pretty_midi_to_note_sequence(midi):
    """A NoteSequence of a parsed PrettyMIDI: note-seq's `midi_to_note_sequence`, field for field, without
    importing the note-seq package (it pulls in bokeh and pandas: a second of start-up).

    Notes are in instrument order; `total_time` is the last note's end.

    Raises:
      ValueError: a time signature denominator too large for the proto, or a key signature of an unknown mode.
    """
    music_pb2 = protos.music_pb2()
    ns = music_pb2.NoteSequence()
    ns.ticks_per_quarter = midi.resolution
    ns.source_info.parser = music_pb2.NoteSequence.SourceInfo.PRETTY_MIDI
    ns.source_info.encoding_type = music_pb2.NoteSequence.SourceInfo.MIDI
    for ts in midi.time_signature_changes:
        try:
            ns.time_signatures.add(time=ts.time, numerator=ts.numerator, denominator=ts.denominator)
        except ValueError:
            raise ValueError(f"invalid time signature denominator {ts.denominator}") from None
    for ks in midi.key_signature_changes:
        mode = ks.key_number // 12  # pretty_midi numbers minor keys 12-23
        if mode not in (0, 1):
            raise ValueError(f"invalid key signature mode {mode}")
        ns.key_signatures.add(time=ks.time, key=ks.key_number % 12, mode=mode)
    for time_s, qpm in zip(*midi.get_tempo_changes()):
        ns.tempos.add(time=time_s, qpm=qpm)
    notes, bends, controls = [], [], []
    for index, inst in enumerate(midi.instruments):
        if inst.name:
            ns.instrument_infos.add(name=inst.name, instrument=index)
        who = {"program": inst.program, "instrument": index, "is_drum": inst.is_drum}
        for note in inst.notes:
            if not ns.total_time or note.end > ns.total_time:
                ns.total_time = note.end
            notes.append((who, note))
        bends += [(who, bend) for bend in inst.pitch_bends]
        controls += [(who, cc) for cc in inst.control_changes]
    for who, note in notes:
        ns.notes.add(start_time=note.start, end_time=note.end, pitch=note.pitch, velocity=note.velocity, **who)
    for who, bend in bends:
        ns.pitch_bends.add(time=bend.time, bend=bend.pitch, **who)
    for who, cc in controls:
        ns.control_changes.add(time=cc.time, control_number=cc.number, control_value=cc.value, **who)
    return ns


def note_sequence_to_pretty_midi(ns):
    """A PrettyMIDI of a NoteSequence: note-seq's `note_sequence_to_pretty_midi`, without the note-seq package.

    Instrument 0 holds the time and key signatures; one instrument per (instrument, program, is_drum) of the
    notes, pitch bends and control changes, in that order. The tempo map is rebuilt from `ns.tempos`.
    """
    pretty_midi = _pretty_midi()
    initial = next((t for t in ns.tempos if t.time == 0), None)  # the list is not guaranteed to be in order
    pm = pretty_midi.PrettyMIDI(resolution=ns.ticks_per_quarter or STANDARD_PPQ,
                                initial_tempo=initial.qpm if initial else DEFAULT_QPM)
    instrument = pretty_midi.Instrument(0)
    pm.instruments.append(instrument)
    for ts in ns.time_signatures:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(ts.numerator, ts.denominator, ts.time))
    for ks in ns.key_signatures:
        key_number = ks.key + (12 if ks.mode == ks.MINOR else 0)
        pm.key_signature_changes.append(pretty_midi.KeySignature(key_number, ks.time))
    for tempo in ns.tempos:
        if tempo == initial:  # already in the constructor
            continue
        # pretty_midi cannot add a tempo change; note-seq extends its private tick scales the same way
        tick = pm.time_to_tick(tempo.time)
        pm._tick_scales.append((tick, 60.0 / (pm.resolution * tempo.qpm)))
        pm._update_tick_to_time(0)
    names = {info.instrument: info.name for info in ns.instrument_infos}
    events = {}
    for note in ns.notes:
        events.setdefault((note.instrument, note.program, note.is_drum), ([], [], []))[0].append(
            pretty_midi.Note(note.velocity, note.pitch, note.start_time, note.end_time))
    for bend in ns.pitch_bends:
        events.setdefault((bend.instrument, bend.program, bend.is_drum), ([], [], []))[1].append(
            pretty_midi.PitchBend(bend.bend, bend.time))
    for cc in ns.control_changes:
        events.setdefault((cc.instrument, cc.program, cc.is_drum), ([], [], []))[2].append(
            pretty_midi.ControlChange(cc.control_number, cc.control_value, cc.time))
    for (index, program, is_drum), (notes, bends, controls) in sorted(events.items()):
        if index > 0:
            name = "Drums" if is_drum else pretty_midi.program_to_instrument_name(program)
            instrument = pretty_midi.Instrument(program, is_drum, name)
            pm.instruments.append(instrument)
        else:  # instrument 0 is the one made above (several keys with index 0 all land on it, as in note-seq)
            instrument.is_drum = is_drum
        instrument.program = program
        if index in names:
            instrument.name = names[index]
        instrument.notes, instrument.pitch_bends, instrument.control_changes = notes, bends, controls
    return pm


def midi_bytes_to_note_sequence(data: bytes, path="<bytes>"):
    """Checks MIDI bytes and converts them as note-seq does (through pretty_midi). Returns (NoteSequence,
    warnings)."""
    warnings, data = _check_midi_structure(path, data)
    event_warnings, data, end_quarters, instrument_order = _check_midi_events(path, data)
    warnings += event_warnings
    pretty_midi = _pretty_midi()
    try:
        midi = pretty_midi.PrettyMIDI(io.BytesIO(data))
        if instrument_order and len(instrument_order) == len(midi.instruments):
            midi.instruments = [midi.instruments[i] for i in instrument_order]
        ns = pretty_midi_to_note_sequence(midi)
    except Exception as e:  # pretty_midi's own errors, or a signature the proto cannot hold
        raise InputFileError(path, f"corrupt MIDI data ({type(e).__name__}: {e})") from None
    ns.filename = str(path)
    # note-seq ends a sequence with its last note; the file lasts to its end-of-track (a final rest is music)

    ns.total_time = max(ns.total_time, TempoMap(ns.tempos).seconds_at(end_quarters))
    return ns, warnings


def note_sequence_to_midi_bytes(ns) -> bytes:
    """A NoteSequence as Standard MIDI File bytes, with its tempo map, time and key signature events.

    Written at 480 ticks per quarter (unless the sequence's own resolution holds the 12-step grid), so 16ths and
    triplets fall on whole ticks; every track's end-of-track event is exactly at `total_time` (a melody ending in
    a rest lasts to its final bar line, so players and DAWs loop it at the right length, and reading it back as a
    primer continues there). A note shorter than a tick lasts one tick: it would vanish otherwise.
    """
    if not ns.ticks_per_quarter or ns.ticks_per_quarter % 12:
        ns = type(ns).FromString(ns.SerializeToString())
        ns.ticks_per_quarter = 480
    pm = note_sequence_to_pretty_midi(ns)
    for instrument in pm.instruments:
        _at_least_one_tick(pm, instrument.notes)
    buffer = io.BytesIO()
    pm.write(buffer)
    end_tick = pm.time_to_tick(max(ns.total_time, 0.0))
    return _move_ends_of_tracks(buffer.getvalue(), _last_ticks(pm), end_tick)


def _at_least_one_tick(pm, notes) -> None:
    """Every note lasts at least one tick (on one tick, pretty_midi writes the note-off first: the note would never
    end). A note of the same pitch that a lengthened note now overlaps starts one tick later, where it ends."""
    by_pitch = {}
    for note in notes:
        by_pitch.setdefault(note.pitch, []).append(note)
    for same_pitch in by_pitch.values():
        lengthened_to = None  # where the last lengthened note now ends
        for note in sorted(same_pitch, key=lambda n: n.start):
            start_tick, end_tick = pm.time_to_tick(note.start), pm.time_to_tick(note.end)
            if lengthened_to is not None and start_tick < lengthened_to:
                start_tick = lengthened_to
                note.start = pm.tick_to_time(start_tick)
            lengthened_to = None
            if end_tick <= start_tick:
                lengthened_to = start_tick + 1
                note.end = pm.tick_to_time(lengthened_to)


def _last_ticks(pm) -> list[int]:
    """The tick of the last event before end-of-track in each track `pm.write` writes (its events are sorted by
    tick): the tempo/meter/key track first, then one per instrument (its program change is at tick 0)."""
    timing = [tick for tick, _ in pm._tick_scales]
    timing += [pm.time_to_tick(e.time) for e in pm.time_signature_changes + pm.key_signature_changes]
    ticks = [max(timing, default=0)]
    for inst in pm.instruments:
        times = [t for note in inst.notes for t in (note.start, note.end)]
        times += [e.time for e in inst.pitch_bends + inst.control_changes]
        ticks.append(max([pm.time_to_tick(t) for t in times], default=0))
    return ticks


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def _move_ends_of_tracks(data: bytes, last_ticks: list[int], end_tick: int) -> bytes:
    """pretty_midi's file with each track's end-of-track (written one tick after its last event) moved to
    `end_tick`, or kept right after the last event when that is later. Patched in the bytes: parsing the file
    again with mido to do this took longer than writing it."""
    eot = b"\x01\xff\x2f\x00"  # delta 1, end-of-track
    out, pos = [data[:14]], 14
    for last_tick in last_ticks:
        length = struct.unpack(">I", data[pos + 4:pos + 8])[0]
        body = data[pos + 8:pos + 8 + length]
        if data[pos:pos + 4] != b"MTrk" or not body.endswith(eot):
            raise AssertionError("pretty_midi wrote a track layout this writer does not know")
        body = body[:-len(eot)] + _vlq(max(end_tick - last_tick, 0)) + eot[1:]
        out += [b"MTrk", struct.pack(">I", len(body)), body]
        pos += 8 + length
    if pos != len(data):
        raise AssertionError("pretty_midi wrote more tracks than it has instruments")
    return b"".join(out)


def note_sequence_to_midi_file(ns, path) -> None:
    """Writes a NoteSequence to a MIDI file atomically (never a half-written file)."""

    atomic.write_bytes(path, note_sequence_to_midi_bytes(ns))
