"""Files <-> NoteSequence: the one guarded reader every command uses, and the MIDI writer.

Step of the flow: MIDI / MusicXML / ABC / NoteSequence TFRecord -> `NoteSequence` (and back to MIDI).
Entry points: `read_music_file(path) -> MusicFile`, `list_music_files(input)`,
`read_note_sequence_tfrecord(path)`, `note_sequence_to_midi_file(ns, path)`.

Reading is bounded before the libraries see a byte: regular files only (never blocks on a FIFO), a size limit,
a structural check of MIDI chunks, and limits on ticks, tempo and note counts that would otherwise make
pretty_midi allocate gigabytes or divide by zero. Parsing runs under a wall-clock limit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import io
import os
import re
import signal
import stat
import struct
import threading
import zipfile
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


@dataclasses.dataclass(frozen=True)
class MusicFile:
    """What one file held: its NoteSequences (an ABC tunebook may hold several) and non-fatal warnings."""

    path: str
    sequences: tuple
    warnings: tuple[str, ...] = ()


def _music_pb2():
    quiet_third_party()
    from note_seq.protobuf import music_pb2

    return music_pb2


@contextlib.contextmanager
def time_limit(seconds: float, path):
    """Raises InputFileError if the body runs longer than `seconds` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum, frame):
        raise InputFileError(path, f"reading took longer than {seconds:g} s; refused")

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


def _check_midi_events(path, data: bytes) -> tuple[list[str], bytes, float]:
    """Parses with mido (memory bounded by the file size) and checks tempo, ticks and notes before pretty_midi.

    Returns warnings, the bytes to convert (notes never released are ended at the end of their track: the
    libraries would silently drop them otherwise) and the file's end (its last end-of-track) in quarter notes.
    """
    import mido

    warnings = []
    try:
        mid = mido.MidiFile(file=io.BytesIO(data), clip=True)
    except Exception as e:  # mido raises OSError, EOFError, ValueError, KeyError... on junk
        raise InputFileError(path, f"corrupt MIDI data ({type(e).__name__}: {e})") from None
    tpq = mid.ticks_per_beat
    num_notes = zero_length = unreleased = end_tick = 0
    for track in mid.tracks:
        tick, sounding = 0, {}
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo" and msg.tempo <= 0:
                raise InputFileError(path, f"tempo event of {msg.tempo} microseconds per quarter; refused")
            if msg.type == "note_on" and msg.velocity > 0:
                num_notes += 1
                sounding.setdefault((msg.channel, msg.note), []).append(tick)
            elif msg.type in ("note_off", "note_on"):
                starts = sounding.get((msg.channel, msg.note))
                if starts:
                    if starts.pop(0) == tick:
                        zero_length += 1
        end_tick = max(end_tick, tick)  # the end-of-track event (or the last event) of the longest track
        if tick > MAX_TICK or tick / tpq > MAX_QUARTERS:
            raise InputFileError(
                path, f"events at tick {tick} ({tick / tpq:.0f} quarter notes) exceed the length limit; refused")
        open_notes = [(channel, note) for (channel, note), starts in sounding.items() for _ in starts]
        if open_notes:
            unreleased += len(open_notes)
            end = len(track) - 1 if track and track[-1].type == "end_of_track" else len(track)
            delta = track[end].time if end < len(track) else 0
            offs = [mido.Message("note_off", channel=c, note=n, velocity=0, time=0) for c, n in open_notes]
            offs[0].time = delta
            if end < len(track):
                track[end] = track[end].copy(time=0)
            track[end:end] = offs
    if num_notes > MAX_NOTES:
        raise InputFileError(path, f"{num_notes} notes exceed the limit of {MAX_NOTES}")
    if zero_length:
        warnings.append(f"{zero_length} zero-length notes dropped")
    if unreleased:
        warnings.append(f"{unreleased} notes never released; ended at the end of their track")
        buffer = io.BytesIO()
        try:
            mid.save(file=buffer)
        except Exception as e:
            raise InputFileError(path, f"corrupt MIDI data ({type(e).__name__}: {e})") from None
        data = buffer.getvalue()
    return warnings, data, end_tick / tpq


def midi_bytes_to_note_sequence(data: bytes, path="<bytes>"):
    """Checks MIDI bytes and converts them with note-seq. Returns (NoteSequence, warnings)."""
    warnings, data = _check_midi_structure(path, data)
    event_warnings, data, end_quarters = _check_midi_events(path, data)
    warnings += event_warnings
    quiet_third_party()
    from note_seq import midi_io as ns_midi_io

    try:
        ns = ns_midi_io.midi_to_note_sequence(data)
    except Exception as e:  # note-seq's MIDIConversionError, or pretty_midi's own errors
        raise InputFileError(path, f"corrupt MIDI data ({type(e).__name__}: {e})") from None
    ns.filename = str(path)
    # note-seq ends a sequence with its last note; the file lasts to its end-of-track (a final rest is music)
    from melody_plugin.melody import TempoMap

    ns.total_time = max(ns.total_time, TempoMap(ns.tempos).seconds_at(end_quarters))
    return ns, warnings


# --- MusicXML and ABC

def _check_xml_bytes(path, xml: bytes) -> None:
    head = xml[:65536]
    if b"<!ENTITY" in head:
        raise InputFileError(path, "XML entity declarations are not accepted (possible entity bomb)")


def _read_musicxml(path, data: bytes):
    quiet_third_party()
    from note_seq import musicxml_reader

    if data[:2] == b"PK":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                total = sum(info.file_size for info in zf.infolist())
                if total > MAX_UNCOMPRESSED_BYTES:
                    raise InputFileError(path, f"archive unpacks to {total} bytes, over the limit (zip bomb?)")
                for info in zf.infolist():
                    if info.filename.lower().endswith((".xml", ".musicxml")):
                        _check_xml_bytes(path, zf.read(info))
        except zipfile.BadZipFile as e:
            raise InputFileError(path, f"corrupt .mxl archive ({e})") from None
    else:
        _check_xml_bytes(path, data)
    try:
        ns = musicxml_reader.musicxml_file_to_sequence_proto(str(path))
    except InputFileError:
        raise
    except Exception as e:
        raise InputFileError(path, f"unreadable MusicXML ({type(e).__name__}: {e})") from None
    return [ns]


def _read_abc(path, data: bytes):
    quiet_third_party()
    from note_seq import abc_parser

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    try:
        tunes, exceptions = abc_parser.parse_abc_tunebook(text)
    except Exception as e:
        raise InputFileError(path, f"undecodable ABC ({type(e).__name__}: {e})") from None
    if not tunes:
        why = f": {exceptions[0]}" if exceptions else ""
        raise InputFileError(path, f"no readable ABC tune{why}")
    sequences = []
    for index in sorted(tunes):
        ns = tunes[index]
        ns.filename = f"{path}#{index}"
        sequences.append(ns)
    return sequences, [f"ABC tune skipped: {e}" for e in exceptions]


def read_music_file(path, timeout_s: float | None = None) -> MusicFile:
    """Reads one MIDI, MusicXML or ABC file into NoteSequences, bounded in size, time and memory.

    Raises:
      InputFileError: with the file and the reason, for anything that is not readable music.
    """
    path = Path(path)
    timeout_s = timeout_s or READ_TIMEOUT_S
    data = read_guarded_bytes(path)
    suffix = path.suffix.lower()
    with time_limit(timeout_s, path):
        try:
            if suffix in MUSICXML_EXTENSIONS:
                return MusicFile(str(path), tuple(_read_musicxml(path, data)))
            if suffix in ABC_EXTENSIONS:
                sequences, warnings = _read_abc(path, data)
                return MusicFile(str(path), tuple(sequences), tuple(warnings))
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
            files = []
            for root, _, names in os.walk(path, followlinks=False):
                files += [Path(root) / n for n in names if Path(n).suffix.lower() in MUSIC_EXTENSIONS]
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
    primer continues there).
    """
    quiet_third_party()
    from note_seq import midi_io as ns_midi_io

    import mido

    if not ns.ticks_per_quarter or ns.ticks_per_quarter % 12:
        ns = type(ns).FromString(ns.SerializeToString())
        ns.ticks_per_quarter = 480
    pm = ns_midi_io.note_sequence_to_pretty_midi(ns)
    buffer = io.BytesIO()
    pm.write(buffer)
    mid = mido.MidiFile(file=io.BytesIO(buffer.getvalue()))
    end_tick = pm.time_to_tick(max(ns.total_time, 0.0))
    for track in mid.tracks:
        if not track or track[-1].type != "end_of_track":
            continue
        last_tick = sum(msg.time for msg in track[:-1])  # pretty_midi puts end-of-track one tick after this
        track[-1] = track[-1].copy(time=max(end_tick - last_tick, 0))
    buffer = io.BytesIO()
    mid.save(file=buffer)
    return buffer.getvalue()


def note_sequence_to_midi_file(ns, path) -> None:
    """Writes a NoteSequence to a MIDI file atomically (never a half-written file)."""
    from melody_plugin import atomic

    atomic.write_bytes(path, note_sequence_to_midi_bytes(ns))
