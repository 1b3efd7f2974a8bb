"""Files <-> NoteSequence: the one guarded reader every command uses, and the MIDI writer.

Step of the flow: MIDI / MusicXML / ABC / NoteSequence TFRecord -> `NoteSequence` (and back to MIDI).
Entry points: `read_music_file(path) -> MusicFile`, `list_music_files(input)`,
`read_note_sequence_tfrecord(path)`, `note_sequence_to_midi_file(ns, path)`.

Reading is bounded before the libraries see a byte: regular files only (never blocks on a FIFO), a size limit,
a structural check of MIDI chunks, and limits on ticks, tempo and note counts that would otherwise make
pretty_midi allocate gigabytes or divide by zero. Parsing runs under a wall-clock limit.
ABC tunebooks are read tune by tune. ABC and MusicXML go to `music21_io` first when the music21 extra is
installed (note-seq reads what music21 fails on), else to note-seq (`reader=`, `$MELODY_PLUGIN_READER`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import glob
import io
import os
import re
import signal
import stat
import struct
import threading
import time
import zipfile
import zlib
from pathlib import Path

from melody_plugin.errors import InputFileError
from melody_plugin.quiet import import_tensorflow, quiet_third_party

MIDI_EXTENSIONS = (".mid", ".midi", ".kar", ".smf")
MUSICXML_EXTENSIONS = (".xml", ".musicxml", ".mxl")
ABC_EXTENSIONS = (".abc",)
TFRECORD_EXTENSIONS = (".tfrecord", ".tfrecords")
MUSIC_EXTENSIONS = MIDI_EXTENSIONS + MUSICXML_EXTENSIONS + ABC_EXTENSIONS

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_UNCOMPRESSED_BYTES = 64 * 1024 * 1024  # for .mxl archives
MAX_NOTES = 200_000
MAX_QUARTERS = 200_000  # about 28 hours at 120 qpm
MAX_TICK = 100_000_000
READ_TIMEOUT_S = 20.0
ABC_SECONDS_PER_TUNE = 1.0  # a tunebook's time limit grows with its tunes
MAX_ABC_TUNES = 5_000
MAX_ABC_BOOK_SECONDS = 120.0  # the whole tunebook, however many tunes: a junk file must not run for an hour
READERS = ("auto", "note_seq", "music21")  # who reads ABC and MusicXML; see read_music_file
READER_ENV = "MELODY_PLUGIN_READER"


@dataclasses.dataclass(frozen=True)
class MusicFile:
    """What one file held: its NoteSequences (an ABC tunebook may hold several) and non-fatal warnings."""

    path: str
    sequences: tuple
    warnings: tuple[str, ...] = ()


def _music_pb2():
    from melody_plugin.protos import music_pb2

    return music_pb2()


class ReadTimeout(InputFileError):
    """Reading a file ran past its time limit (readers that skip a bad tune must not skip this)."""


@contextlib.contextmanager
def time_limit(seconds: float, path):
    """Raises ReadTimeout if the body runs longer than `seconds` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum, frame):
        raise ReadTimeout(path, f"reading took longer than {seconds:g} s; refused")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def read_guarded_bytes(path, max_bytes: int | None = None) -> bytes:
    """Reads a whole regular file, refusing anything else (missing, folder, FIFO, device, link loop, too big)."""
    path = Path(path)
    max_bytes = max_bytes or MAX_FILE_BYTES
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except PermissionError:
        raise InputFileError(path, "permission denied") from None
    except OSError as e:  # ELOOP (symlink loop), ENAMETOOLONG, ...
        raise InputFileError(path, f"cannot access ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputFileError(path, "is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise InputFileError(path, "is not a regular file (FIFO, socket or device); refused")
    if st.st_size == 0:
        raise InputFileError(path, "empty file")
    if st.st_size > max_bytes:
        raise InputFileError(path, f"file is {st.st_size} bytes, over the {max_bytes} byte limit")
    try:
        # O_NONBLOCK: if the file was swapped for a FIFO after the stat, open must not block.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except PermissionError:
        raise InputFileError(path, "permission denied") from None
    except OSError as e:
        raise InputFileError(path, f"cannot open ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise InputFileError(path, "is not a regular file; refused")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputFileError(path, f"file is over the {max_bytes} byte limit")
    return data


# --- MIDI

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
    import mido

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
    import mido

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
    import mido

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
    import pretty_midi

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
    music_pb2 = _music_pb2()
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
    from melody_plugin.melody import TempoMap

    ns.total_time = max(ns.total_time, TempoMap(ns.tempos).seconds_at(end_quarters))
    return ns, warnings


# --- MusicXML and ABC

class _PrologEnd(Exception):
    """The root element began: no entity can be declared after it."""


def _check_xml_bytes(path, xml: bytes) -> None:
    """Refuses XML that declares entities (a "billion laughs" bomb expands them at parse time).

    Entities can only be declared in the DOCTYPE, which comes before the root element: expat reads the prolog,
    however long (a comment of any size may come first), in the encoding the XML declares, and stops at the root.
    """
    from xml.parsers import expat

    def declared(*args):
        raise InputFileError(path, "XML entity declarations are not accepted (possible entity bomb)")

    def root(*args):
        raise _PrologEnd

    parser = expat.ParserCreate()
    parser.EntityDeclHandler = declared
    parser.UnparsedEntityDeclHandler = declared
    parser.StartElementHandler = root
    try:
        for start in range(0, len(xml), 65536):  # fed in pieces: a score stops at its root, early
            parser.Parse(xml[start:start + 65536], False)
        parser.Parse(b"", True)
    except _PrologEnd:
        pass
    except expat.ExpatError as e:  # both readers parse with expat too and would fail the same way
        raise InputFileError(path, f"unreadable MusicXML ({expat.ErrorString(e.code)}: line {e.lineno}, "
                                   f"column {e.offset})") from None


_UNPACK_PIECE = 65536


def _unpack_limited(path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> bytes:
    """One member of an archive, decompressed in pieces and refused as soon as it passes `budget` bytes.

    The sizes in a zip's headers are the archive's word, not the data's: zipfile trusts the declared size only
    after decompressing in one piece (a 1 GiB payload declared as 1000 bytes took 2 GB of memory before its CRC
    failed). Here the member is opened as if it declared a little more than the budget, and the actual bytes are
    counted as they come.
    """
    probe = copy.copy(info)
    # zipfile stops (and checks the CRC) at the declared size: past the budget by more than a read can bring
    probe.file_size = budget + 2 * _UNPACK_PIECE
    chunks, size = [], 0
    with zf.open(probe) as member:
        while chunk := member.read(_UNPACK_PIECE):
            size += len(chunk)
            if size > budget:
                raise InputFileError(path, f"archive unpacks to more than {MAX_UNCOMPRESSED_BYTES} bytes, over "
                                           f"the limit (zip bomb? {info.filename} declares {info.file_size})")
            chunks.append(chunk)
    if size != info.file_size:
        raise InputFileError(path, f"corrupt .mxl archive ({info.filename} declares {info.file_size} bytes and "
                                   f"holds {size})")
    return b"".join(chunks)


def _musicxml_score_bytes(path, data: bytes) -> bytes:
    """The score's XML (unpacked from an .mxl archive), refused if it declares entities or unpacks too big."""
    if data[:2] != b"PK":
        _check_xml_bytes(path, data)
        return data
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            total = sum(info.file_size for info in zf.infolist())
            if total > MAX_UNCOMPRESSED_BYTES:
                raise InputFileError(path, f"archive unpacks to {total} bytes, over the limit (zip bomb?)")
            scores, left = {}, MAX_UNCOMPRESSED_BYTES
            for info in zf.infolist():
                if info.filename.lower().endswith((".xml", ".musicxml")):
                    scores[info.filename] = _unpack_limited(path, zf, info, left)
                    left -= len(scores[info.filename])
    except (zipfile.BadZipFile, NotImplementedError, EOFError, zlib.error, RuntimeError) as e:
        # also an unknown compression method, data cut short, an encrypted member (RuntimeError)
        raise InputFileError(path, f"corrupt .mxl archive ({type(e).__name__}: {e})") from None
    # META-INF/container.xml names the score; without it, the first XML file outside META-INF is the score (not
    # macOS's AppleDouble companions, __MACOSX/._name.xml, which are binary). Only the score is parsed, and checked.
    root = re.search(rb'full-path="([^"]+)"', scores.get("META-INF/container.xml", b""))
    names = [n for n in scores if not n.startswith(("META-INF/", "__MACOSX/")) and not Path(n).name.startswith("._")]
    name = root.group(1).decode("utf-8", "replace") if root else (names[0] if names else "")
    if name not in scores:
        raise InputFileError(path, "the .mxl archive holds no MusicXML score")
    _check_xml_bytes(path, scores[name])
    return scores[name]


def _read_musicxml(path, data: bytes, reader: str = "auto", timeout_s: float = READ_TIMEOUT_S):
    """music21 first when installed (see `read_music_file`), note-seq for what it fails on or alone.

    Each reader gets `timeout_s`: in `auto`, a score music21 runs out of time on (a long one on a busy machine)
    still goes to note-seq, which reads most scores faster.
    """
    from melody_plugin import music21_io

    use_music21 = reader == "music21" or (reader == "auto" and music21_io.available())
    refusal = ""
    with time_limit(timeout_s, path):
        xml = _musicxml_score_bytes(path, data)
        if use_music21:
            try:
                return [music21_io.musicxml_to_note_sequence(xml, str(path))], []
            except InputFileError as e:  # a time-out included
                if reader == "music21":
                    raise InputFileError(path, e.reason) from None
                refusal = e.reason
    quiet_third_party()
    from note_seq import musicxml_reader

    try:
        with time_limit(timeout_s, path):
            ns = musicxml_reader.musicxml_file_to_sequence_proto(str(path))
    except InputFileError as e:
        if not refusal:
            raise
        raise InputFileError(path, f"music21: {refusal}; note-seq: {e.reason}") from None
    except Exception as e:
        reason = f"unreadable MusicXML ({type(e).__name__}: {e})"
        if refusal:
            raise InputFileError(path, f"music21: {refusal}; note-seq: {reason}") from None
        if reader == "auto":
            reason += f"; the music21 reader may read it: {music21_io.INSTALL_HINT}"
        raise InputFileError(path, reason) from None
    return [ns], [f"read by note-seq (music21: {refusal})"] if refusal else []


_ABC_CHARSET = re.compile(rb"^(?:%%?|I:)[ \t]*abc-charset[ \t]+([A-Za-z0-9_.:-]+)", re.M)


def abc_bytes_to_text(path, data: bytes) -> tuple[str, list[str]]:
    """Decodes an ABC file: the charset it declares (`%abc-charset`, `I:abc-charset`), else UTF-8, else
    Windows-1252 (a superset of Latin-1). Returns the text and what was noticed."""
    declared = _ABC_CHARSET.search(data)
    if declared:
        name = declared.group(1).decode("ascii")
        try:
            return data.decode(name), []
        except LookupError:
            warning = f"unknown abc-charset {name!r} ignored"
        except UnicodeDecodeError as e:
            return data.decode(name, "replace"), [f"bytes not valid in its abc-charset {name} replaced ({e.reason})"]
    else:
        warning = ""
    warnings = [warning] if warning else []
    try:
        return data.decode("utf-8-sig"), warnings
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), warnings + ["not UTF-8 and no abc-charset: read as Windows-1252/Latin-1"]
    except UnicodeDecodeError:
        return data.decode("latin-1"), warnings + ["not UTF-8 and no abc-charset: read as Latin-1"]


@dataclasses.dataclass(frozen=True)
class AbcTune:
    """One tune of a tunebook: its `X:` number (None without one), first `T:` title and lines, header first."""

    number: str | None
    title: str
    lines: tuple[str, ...]

    @property
    def label(self) -> str:
        """`X:3 'Title'`, as reports name a tune."""
        number = f"X:{self.number}" if self.number is not None else "the tune"
        return f"{number} {self.title!r}" if self.title else number


def split_abc_tunebook(text: str) -> list[AbcTune]:
    """Splits a tunebook into tunes: a tune runs from its `X:` line to the next `X:` line (not to the next empty
    line, as the standard has it: a missing blank line would otherwise swallow the next tune); trailing free
    text after a tune's blank line is dropped. The file header (the first block, when it has no `X:`) is put
    before every tune. A file without any `X:` line is one tune."""
    lines = [line.rstrip() for line in text.splitlines()]
    if not any(line.startswith("X:") for line in lines):
        body = tuple(line for line in lines if line.strip())
        title = next((line[2:].strip() for line in body if line.startswith("T:")), "")
        return [AbcTune(None, title, body)] if body else []
    header, start = [], 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    while start < len(lines) and lines[start].strip() and not lines[start].startswith("X:"):
        if re.match(r"[A-Za-z]:|%", lines[start]):  # fields, directives and comments; not free text
            header.append(lines[start])
        start += 1
    blocks, current = [], None
    for line in lines[start:]:
        if line.startswith("X:"):
            current = [line]
            blocks.append(current)
        elif current is not None:
            current.append(line)
    tunes = []
    for block in blocks:
        # a blank line ends the tune; after it, only a field or music right before the next X: would be
        # part of it, which the standard does not allow: free text (liner notes) is left out
        end = next((i for i, line in enumerate(block) if not line.strip()), len(block))
        body = block[:end]
        title = next((x[2:].strip() for x in body if x.startswith("T:")), "")
        tunes.append(AbcTune(body[0][2:].strip(), title, tuple(header + body)))
    return tunes


def _abc_tune_with_note_seq(tune: AbcTune):
    from note_seq import abc_parser

    tunes, exceptions = abc_parser.parse_abc_tunebook("\n".join(tune.lines))
    if exceptions:
        raise exceptions[0]
    if len(tunes) != 1:
        raise ValueError("no tune")
    return next(iter(tunes.values()))


def _read_abc_tune(tune: AbcTune, name: str, reader: str, use_music21: bool, seconds):
    """(NoteSequence or None, who read it: "music21"/"note_seq"/"", music21's refusal or why neither read it).

    With music21 installed, `auto` tries it first and note-seq for what music21 fails on, a time-out included
    (see `read_music_file` for why). Each reader gets `seconds()` (the time it may still take) when it starts.
    """
    from melody_plugin import music21_io

    if tune.number is not None and not tune.number.isdigit():  # both readers int() the X: field; the label
        tune = dataclasses.replace(tune, lines=tuple(  # (X:A7) stays in the name and reports
            "X:0" if line.startswith("X:") else line for line in tune.lines))
    refusals = []
    order = ["music21"] if reader == "music21" else ["note_seq"] if not use_music21 else ["music21", "note_seq"]
    for who in order:
        if who == "note_seq":  # imported before the clock starts: the first import takes a second or two
            from note_seq import abc_parser  # noqa: F401
        left = seconds()
        if left <= 0:
            refusals.append("not read: the file's time was used up")
            break
        try:
            with time_limit(left, name):
                if who == "music21":
                    return music21_io.abc_tune_to_note_sequence("\n".join(tune.lines), name), who, ""
                return _abc_tune_with_note_seq(tune), who, refusals[0] if refusals else ""
        except music21_io.AbcSyntaxError as e:  # an unclosed chord...: note-seq would guess where music21 refuses
            return None, "", e.reason
        except InputFileError as e:  # a time-out included
            refusals.append(e.reason)
        except Exception as e:  # note-seq's ABCParseError says what it refuses; anything else needs its type
            refusals.append(str(e) if type(e).__module__ == "note_seq.abc_parser" else f"{type(e).__name__}: {e}")
    if len(refusals) > 1:
        refusals = [f"music21: {refusals[0]}; note-seq: {refusals[1]}"]
    return None, "", refusals[0]


_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str, limit: int = 60) -> str:
    """Text from a file made safe for a terminal: control bytes (ESC...) as `?`, cut to `limit` characters."""
    text = _CONTROL_CHARS.sub("?", text)
    return text if len(text) <= limit else text[:limit] + "..."


def _read_abc(path, data: bytes, reader: str = "auto", timeout_s: float = READ_TIMEOUT_S, tune: str | None = None):
    """An ABC tunebook, tune by tune: each tune is read by music21 when it is installed (note-seq for what
    music21 fails on), else by note-seq; a tune neither reads is skipped with its number and reason.

    Each reader of a tune gets `timeout_s`; the whole file `timeout_s` plus ABC_SECONDS_PER_TUNE per tune (music21
    takes about 0.2 s a tune, and a tunebook holds hundreds), at most MAX_ABC_BOOK_SECONDS: the tunes left then
    are reported as not read. `tune` (an X: number, or its name such as "4 (2)") reads that tune alone.
    """
    from melody_plugin import music21_io

    quiet_third_party()
    text, warnings = abc_bytes_to_text(path, data)
    tunes = split_abc_tunebook(text)
    if not tunes:
        raise InputFileError(path, "no ABC tune in the file")
    if len(tunes) > MAX_ABC_TUNES:
        raise InputFileError(path, f"{len(tunes)} tunes, over the limit of {MAX_ABC_TUNES}; split the tunebook")
    use_music21 = reader != "note_seq" and music21_io.available()
    named, seen = [], {}
    for abc_tune in tunes:
        name = f"{path}#X:{printable(abc_tune.number)}" if abc_tune.number is not None else str(path)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:  # two tunes with one X: number must still be told apart in reports and sidecars
            if tune is None:
                warnings.append(f"ABC tune {printable(abc_tune.label)} repeats an earlier X: number: named "
                                f"{Path(name).name} ({seen[name]})")
            name = f"{name} ({seen[name]})"
        named.append((abc_tune, name))
    if tune is not None:  # one tune asked for: the others are neither read nor reported
        chosen = [(t, n) for t, n in named if n == f"{path}#X:{tune}"]
        if not chosen:
            numbers = ", ".join(n[len(str(path)) + 1:] or "one without X:" for _, n in named[:20])
            numbers += ", ..." if len(named) > 20 else ""
            raise InputFileError(path, f"no tune X:{printable(tune)} in the file (its tunes: {numbers})")
        named = chosen
    budget_s = min(timeout_s + ABC_SECONDS_PER_TUNE * len(named), MAX_ABC_BOOK_SECONDS)
    deadline = time.monotonic() + budget_s
    sequences, skipped, fallbacks, timed_out = [], [], [], 0
    for abc_tune, name in named:
        if deadline - time.monotonic() <= 0:
            timed_out += 1
            skipped.append((abc_tune, f"not read: the file's {budget_s:g} s were used up"))
            continue
        ns, read_by, refusal = _read_abc_tune(abc_tune, name, reader, use_music21,
                                              lambda: min(timeout_s, deadline - time.monotonic()))
        if ns is None:
            skipped.append((abc_tune, refusal))
            continue
        if read_by == "note_seq" and use_music21:
            fallbacks.append((abc_tune, refusal))
        ns.filename = name
        if abc_tune.number is not None and abc_tune.number.isdigit():
            ns.reference_number = int(abc_tune.number)
        if abc_tune.title and not ns.sequence_metadata.title:
            ns.sequence_metadata.title = abc_tune.title
        sequences.append(ns)
    hint = (f"the music21 reader may read {'them' if len(skipped) > 1 else 'it'}: {music21_io.INSTALL_HINT}"
            if skipped and reader == "auto" and not use_music21 else "")
    if timed_out:
        warnings.append(f"time limit of {budget_s:g} s for the file reached after {len(named) - timed_out} of "
                        f"{len(named)} tunes ({len(sequences)} read); {timed_out} not tried (split the tunebook "
                        "to read them all)")
    if not sequences:
        # the tune's name in parentheses: reports count alike reasons together without them
        first, reason = skipped[0]
        if tune is not None:
            raise InputFileError(path, f"tune {printable(first.label)} is not readable: {printable(reason, 200)}"
                                 + (f"; {hint}" if hint else ""))
        if timed_out:
            reason = f"{warnings[-1]}; the first: {reason}"
        which = printable(first.label) + (f", and {len(skipped) - 1} more tunes" if len(skipped) > 1 else "")
        raise InputFileError(path, f"no readable ABC tune: {printable(reason, 200)} ({which})"
                             + (f"; {hint}" if hint else ""))
    if fallbacks:  # each with music21's reason, shortened: the whole of it is one --music_reader=music21 away
        labels = "; ".join(f"X:{printable(t.number or '', 20)} ({printable(why, 80)})" for t, why in fallbacks[:10])
        warnings.append(f"note-seq read {len(fallbacks)} tune(s) music21 fails on: {labels}"
                        + ("; ..." if len(fallbacks) > 10 else ""))
    warnings += [f"ABC tune {printable(t.label)} skipped: {printable(reason, 200)}" for t, reason in skipped[:50]]
    if len(skipped) > 50:
        warnings.append(f"... and {len(skipped) - 50} more tunes skipped")
    if hint:
        warnings.append(f"{len(skipped)} tune(s) skipped; {hint}")
    return sequences, warnings


def read_music_file(path, timeout_s: float | None = None, reader: str | None = None,
                    tune: str | None = None) -> MusicFile:
    """Reads one MIDI, MusicXML or ABC file into NoteSequences, bounded in size, time and memory.

    Args:
      path: the file.
      timeout_s: wall-clock limit for parsing (default READ_TIMEOUT_S); for ABC and MusicXML, for each reader.
      reader: for ABC and MusicXML: "auto" (music21 when the extra is installed, note-seq for what music21
        fails on, a time-out included; note-seq alone without the extra), "note_seq" or "music21". Default:
        $MELODY_PLUGIN_READER, else "auto". music21 comes first because note-seq reads some files wrong without
        refusing them: its ABC reader splits a tie across a bar line into two notes and ignores pickup bars (every
        bar line shifts), and its MusicXML reader drops part names (the melody track cannot be found by name).
      tune: of an ABC tunebook, read only this tune: its X: number ("9"), or its name in reports ("4 (2)" for the
        second tune numbered 4). Its reason is the error when it cannot be read; other tunes are not reported.

    Raises:
      InputFileError: with the file and the reason, for anything that is not readable music.
    """
    from melody_plugin import music21_io

    path = Path(path)
    timeout_s = timeout_s or READ_TIMEOUT_S
    reader = reader or os.environ.get(READER_ENV) or "auto"
    if reader not in READERS:
        raise InputFileError(path, f"reader must be one of {READERS}, got {reader!r}")
    suffix = path.suffix.lower()
    if tune is not None and suffix not in ABC_EXTENSIONS:
        raise InputFileError(path, f"a tune number (#X:{printable(tune)}) picks a tune of an ABC tunebook; "
                                   "this file is not one")
    if reader == "music21" and suffix in ABC_EXTENSIONS + MUSICXML_EXTENSIONS and not music21_io.available():
        raise InputFileError(path, f"the music21 reader is not installed ({music21_io.INSTALL_HINT})")
    data = read_guarded_bytes(path)
    try:
        if suffix in ABC_EXTENSIONS:  # a tunebook is timed tune by tune
            sequences, warnings = _read_abc(path, data, reader, timeout_s, tune)
            return MusicFile(str(path), tuple(sequences), tuple(warnings))
        if suffix in MUSICXML_EXTENSIONS:  # each reader is timed: in auto, note-seq reads what music21 ran out on
            sequences, warnings = _read_musicxml(path, data, reader, timeout_s)
            return MusicFile(str(path), tuple(sequences), tuple(warnings))
        with time_limit(timeout_s, path):
            ns, warnings = midi_bytes_to_note_sequence(data, path)
            return MusicFile(str(path), (ns,), tuple(warnings))
    except (MemoryError, RecursionError) as e:
        raise InputFileError(path, f"file too complex to read ({type(e).__name__})") from None


def is_tfrecord(path) -> bool:
    return Path(path).suffix.lower() in TFRECORD_EXTENSIONS


def list_music_files(input_path) -> list[Path]:
    """The music files named by a file, a folder (searched recursively) or a glob, sorted.

    Raises:
      InputFileError: if nothing matches.
    """
    text = str(input_path)
    if any(ch in text for ch in "*?["):
        files = [Path(p) for p in glob.glob(text, recursive=True)]
        files = [p for p in files if p.suffix.lower() in MUSIC_EXTENSIONS + TFRECORD_EXTENSIONS]
    else:
        path = Path(text)
        if path.is_dir():
            files, records = [], 0
            for root, _, names in os.walk(path, followlinks=False):
                files += [Path(root) / n for n in names if Path(n).suffix.lower() in MUSIC_EXTENSIONS]
                records += sum(".tfrecord" in n.lower() for n in names)
            if not files and records:  # a folder is searched for music files only; records are named
                raise InputFileError(path, f"no MIDI, MusicXML or ABC files found, but {records} TFRecord file(s): "
                                           f"pass them by name or a glob, e.g. --input='{path}/*.tfrecord*'")
        elif path.exists() or path.is_symlink():
            files = [path]
        else:
            raise InputFileError(path, "no such file or folder")
    if not files:
        raise InputFileError(input_path, "no MIDI, MusicXML or ABC files found")
    return sorted(files)


def read_note_sequence_tfrecord(path):
    """Yields the NoteSequences of a TFRecord file as written by Magenta's convert_dir_to_note_sequences."""
    music_pb2 = _music_pb2()
    tf = import_tensorflow()

    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        try:
            yield music_pb2.NoteSequence.FromString(record)
        except Exception as e:
            raise InputFileError(path, f"record is not a NoteSequence ({type(e).__name__})") from None


def write_note_sequence_tfrecord(sequences, path) -> None:
    """Writes NoteSequences as a TFRecord (Magenta's format), atomically."""
    tf = import_tensorflow()

    from melody_plugin import atomic

    with atomic.atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for ns in sequences:
                writer.write(ns.SerializeToString())


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
    for instrument in pm.instruments:  # on one tick, pretty_midi writes the note-off first: the note never ends
        for note in instrument.notes:
            start_tick = pm.time_to_tick(note.start)
            if pm.time_to_tick(note.end) <= start_tick:
                note.end = pm.tick_to_time(start_tick + 1)
    buffer = io.BytesIO()
    pm.write(buffer)
    end_tick = pm.time_to_tick(max(ns.total_time, 0.0))
    return _move_ends_of_tracks(buffer.getvalue(), _last_ticks(pm), end_tick)


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
    from melody_plugin import atomic

    atomic.write_bytes(path, note_sequence_to_midi_bytes(ns))
