"""The guarded reader: every hostile file is refused with the file and the reason, bounded by size and event limits."""

import io
import os
import random
import struct
import threading
import zipfile

import conftest
import pytest
from conftest import make_sequence, pattern_notes, write_midi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from melody_plugin.errors import InputFileError
from melody_plugin.io import midi as io_midi
from melody_plugin.io import musicxml as io_musicxml
from melody_plugin.io.files import read_music_file
from melody_plugin.io.inputs import list_music_files
from melody_plugin.io.midi import (
    note_sequence_to_midi_bytes,
    note_sequence_to_midi_file,
    note_sequence_to_pretty_midi,
    pretty_midi_to_note_sequence,
)
from melody_plugin.io.musicxml import MAX_UNCOMPRESSED_BYTES
from melody_plugin.io.tfrecord import read_note_sequence_tfrecord, write_note_sequence_tfrecord
from melody_plugin.runtime import guarded


def smf(tracks, division=480, fmt=0, ntracks=None):
    """Raw Standard MIDI File bytes from a list of raw track-event byte strings."""
    header = b"MThd" + struct.pack(">IHHH", 6, fmt, len(tracks) if ntracks is None else ntracks, division)
    return header + b"".join(b"MTrk" + struct.pack(">I", len(t)) + t for t in tracks)


def vlq(n):
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


END = b"\x00\xff\x2f\x00"
NOTE = b"\x00\x90\x3c\x40" + vlq(480) + b"\x80\x3c\x00"


def good_midi_bytes():
    return smf([NOTE + END])


def refused(path, match):
    with pytest.raises(InputFileError, match=match) as e:
        read_music_file(path)
    assert str(path) in str(e.value)
    return e.value


def test_reads_a_real_midi_file(tmp_path):
    path = write_midi(tmp_path / "ok.MIDI", pattern_notes([(60, 1), (62, 1)]))
    music = read_music_file(path)
    assert [n.pitch for n in music.sequences[0].notes] == [60, 62]
    assert music.warnings == ()


@pytest.mark.parametrize("name,data,match", [
    ("empty.mid", b"", "empty file"),
    ("random.mid", bytes(random.Random(0).randrange(256) for _ in range(500)), "not a MIDI file"),
    ("text.mid", b"This is not music at all, just a text file renamed.\n" * 4, "it is text"),
    ("truncated.mid", good_midi_bytes()[:-3], "truncated"),
    ("zero_ppq.mid", smf([NOTE + END], division=0), "0 ticks per quarter"),
    ("smpte.mid", smf([NOTE + END], division=0xE728), "SMPTE"),
    ("tempo0.mid", smf([b"\x00\xff\x51\x03\x00\x00\x00" + NOTE + END]), "tempo event of 0"),
    ("far.mid", smf([vlq(2_000_000_000) + b"\x90\x3c\x40" + vlq(10) + b"\x80\x3c\x00" + END]), "exceed the length"),
    ("notracks.mid", b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480), "no MTrk"),
    ("badformat.mid", smf([NOTE + END], fmt=7), "unknown MIDI format"),
    ("garbage_events.mid", smf([b"\x00\xf7\xff\xff\xff\xff\x7f" + END]), "corrupt MIDI data|truncated"),
])
def test_hostile_midi_is_refused_with_a_reason(tmp_path, name, data, match):
    path = tmp_path / name
    path.write_bytes(data)
    refused(path, match)  # the guards refuse it before any parser walks the claimed events


def test_huge_note_count_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(io_midi, "MAX_NOTES", 1000)
    events = (b"\x00\x90\x3c\x40" + b"\x01\x80\x3c\x00") * 1001
    path = tmp_path / "many.mid"
    path.write_bytes(smf([events + END]))
    refused(path, "1001 notes exceed")


def test_missing_directory_fifo_and_symlink_loop(tmp_path):
    refused(tmp_path / "missing.mid", "no such file")
    refused(tmp_path, "is a directory")
    fifo = tmp_path / "pipe.mid"
    os.mkfifo(fifo)
    reader = threading.Thread(target=refused, args=(fifo, "not a regular file"), daemon=True)
    reader.start()
    reader.join(timeout=60)  # a runaway guard, not a speed target: a blocking open waits for a writer forever
    assert not reader.is_alive(), "reading a FIFO blocked waiting for a writer"
    loop = tmp_path / "loop.mid"
    os.symlink(loop, loop)
    refused(loop, "cannot access")


def test_device_file_is_refused():
    refused("/dev/zero", "not a regular file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_is_refused(tmp_path):
    path = write_midi(tmp_path / "locked.mid", pattern_notes([(60, 1)]))
    path.chmod(0)
    refused(path, "permission denied")


def test_oversized_file_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(guarded, "MAX_FILE_BYTES", 100)
    path = tmp_path / "big.mid"
    path.write_bytes(good_midi_bytes() + b"\x00" * 200)
    refused(path, "over the 100 byte limit")


def test_silent_misreads_become_warnings(tmp_path):
    # header says 3 tracks, one note is never released, one note has zero length
    track = (b"\x00\x90\x3c\x40" + vlq(480) + b"\x80\x3c\x00" + b"\x00\x90\x3e\x40" + b"\x00\x80\x3e\x00"
             + b"\x00\x90\x40\x40" + vlq(480) + b"\xff\x2f\x00")
    path = tmp_path / "sloppy.mid"
    path.write_bytes(smf([track], ntracks=3))
    warnings = " ".join(read_music_file(path).warnings)
    assert "header says 3 tracks but the file has 1" in warnings
    assert "1 notes never released; ended at the end of their track" in warnings
    assert "1 zero-length notes" in warnings


def test_musicxml_entity_bomb_and_zip_bomb_are_refused(tmp_path):
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
                    '<score-partwise>&lol2;</score-partwise>')
    refused(bomb, "entity")
    mxl = tmp_path / "bomb.mxl"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("score.xml", b"\x00" * (MAX_UNCOMPRESSED_BYTES + 1))
    mxl.write_bytes(buffer.getvalue())
    refused(mxl, "zip bomb")
    broken = tmp_path / "broken.musicxml"
    broken.write_text("<score-partwise><part")
    refused(broken, "unreadable MusicXML")


def lying_zip(member, payload, declared):
    """An archive of one deflated member whose local and central headers declare `declared` bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, payload)
    data = bytearray(buffer.getvalue())
    struct.pack_into("<I", data, data.index(b"PK\x03\x04") + 22, declared)  # uncompressed size, local header
    struct.pack_into("<I", data, data.index(b"PK\x01\x02") + 24, declared)  # and in the central directory
    return bytes(data)


def test_a_zip_bomb_whose_headers_lie_is_refused_while_unpacking_in_bounded_memory(tmp_path, monkeypatch):
    import tracemalloc

    monkeypatch.setattr(io_musicxml, "MAX_UNCOMPRESSED_BYTES", 1 << 20)  # 1 MiB, for a 16 MiB payload
    monkeypatch.setattr(guarded, "MAX_FILE_BYTES", 1 << 20)  # the file's read buffer is this size: keep it small
    mxl = tmp_path / "liar.mxl"
    mxl.write_bytes(lying_zip("score.xml", b"<score-partwise>" + b" " * (16 << 20), declared=1000))
    tracemalloc.start()
    try:
        with pytest.raises(InputFileError) as bomb:
            read_music_file(mxl)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert bomb.value.reason == (f"archive unpacks to more than {1 << 20} bytes, over the limit "
                                 "(zip bomb? score.xml declares 1000)")
    assert peak < 4 << 20  # the 1 MiB kept and a piece being unpacked, never the 16 MiB
    # under the limit, a member holding more than it declares is corrupt, as zipfile's CRC check said before
    small = tmp_path / "small_liar.mxl"
    small.write_bytes(lying_zip("score.xml", b"<score-partwise>" + b" " * 4984, declared=1000))
    assert refused(small, "corrupt").reason == "corrupt .mxl archive (score.xml declares 1000 bytes and holds 5000)"


BILLION_LAUGHS = ('<!DOCTYPE lolz [<!ENTITY lol0 "lol">'
                  + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 7)) + "]>")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_an_entity_bomb_behind_a_long_comment_is_refused(tmp_path, encoding):
    # 70 KB of comment first: the DOCTYPE starts past the first 64 KiB
    xml = (f'<?xml version="1.0" encoding="{encoding.upper()}"?>\n<!--{"x" * 70_000}-->\n{BILLION_LAUGHS}'
           "<score-partwise>&lol6;</score-partwise>")
    bomb = tmp_path / "bomb.musicxml"
    bomb.write_bytes(xml.encode(encoding))
    assert refused(bomb, "entity").reason == "XML entity declarations are not accepted (possible entity bomb)"
    mxl = tmp_path / "bomb.mxl"
    with zipfile.ZipFile(mxl, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("score.xml", xml.encode(encoding))
    assert refused(mxl, "entity").reason == "XML entity declarations are not accepted (possible entity bomb)"


def test_abc_tunes_are_read_and_garbage_is_refused(tmp_path):
    abc = tmp_path / "tunes.abc"
    abc.write_text("X:1\nT:Test\nM:6/8\nL:1/8\nK:G\nGAB c2d|e2d B2A|\n\nX:2\nT:Two\nM:4/4\nL:1/8\nK:D\nDEFG ABcd|\n")
    music = read_music_file(abc)
    assert len(music.sequences) == 2
    assert music.sequences[0].time_signatures[0].numerator == 6
    junk = tmp_path / "junk.abc"
    junk.write_bytes(b"\xff\xfe\x00garbage \x01\x02 without any header")
    refused(junk, "ABC")


def test_list_music_files_recurses_and_matches_extensions_in_any_case(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/one.MID", "a/b/two.midi", "three.mid", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    names = sorted(p.name for p in list_music_files(tmp_path))
    assert names == ["one.MID", "three.mid", "two.midi"]
    assert [p.name for p in list_music_files(f"{tmp_path}/a/**/*.midi")] == ["two.midi"]
    with pytest.raises(InputFileError, match="no such file"):
        list_music_files(tmp_path / "nope")


def test_note_sequence_tfrecord_round_trip(tmp_path):
    sequences = [make_sequence(pattern_notes([(60 + i, 1)] * 4), filename=f"s{i}.mid") for i in range(3)]
    path = tmp_path / "notesequences.tfrecord"
    write_note_sequence_tfrecord(sequences, path)
    back = list(read_note_sequence_tfrecord(path))
    assert [ns.filename for ns in back] == ["s0.mid", "s1.mid", "s2.mid"]
    assert back[1].notes[0].pitch == 61


SEED_MIDI = smf([b"\x00\xff\x51\x03\x07\xa1\x20" + b"\x00\xff\x58\x04\x03\x02\x18\x08" + NOTE * 8 + END])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_mutated_midi_returns_music_or_our_error(tmp_path, data):
    raw = bytearray(SEED_MIDI)
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[pos:pos + data.draw(st.integers(1, 16))]
        else:
            raw[pos:pos] = bytes(data.draw(st.lists(st.integers(0, 255), max_size=8)))
    path = tmp_path / "fuzz.mid"
    path.write_bytes(bytes(raw))
    try:
        music = read_music_file(path)
        assert music.sequences
    except InputFileError as e:
        assert str(path) in str(e)


MUSICXML = """<?xml version="1.0" encoding="UTF-8"?>
<score-partwise version="3.1"><part-list><score-part id="P1"><part-name>M</part-name></score-part></part-list>
<part id="P1"><measure number="1"><attributes><divisions>2</divisions><key><fifths>1</fifths></key>
<time><beats>3</beats><beat-type>4</beat-type></time></attributes>
<note><pitch><step>G</step><octave>4</octave></pitch><duration>2</duration><type>quarter</type></note>
<note><pitch><step>A</step><octave>4</octave></pitch><duration>1</duration><type>eighth</type></note>
<note><pitch><step>B</step><octave>4</octave></pitch><duration>1</duration><type>eighth</type></note>
<note><pitch><step>D</step><octave>5</octave></pitch><duration>2</duration><type>quarter</type></note>
</measure></part></score-partwise>"""


def test_unreleased_note_is_kept_until_the_end_of_its_track(tmp_path):
    path = tmp_path / "held.mid"
    path.write_bytes(smf([b"\x00\x90\x3c\x40" + vlq(480) + b"\x90\x3e\x40" + vlq(960) + b"\xff\x2f\x00"]))
    music = read_music_file(path)
    notes = [(n.pitch, n.start_time, n.end_time) for n in music.sequences[0].notes]
    assert notes == [(60, 0.0, pytest.approx(1.5)), (62, 0.5, pytest.approx(1.5))]
    assert "2 notes never released" in " ".join(music.warnings)


def note_fields(notes):
    return [(n.instrument, n.program, n.is_drum, n.pitch, n.velocity, n.start_time, n.end_time) for n in notes]


def test_a_never_released_note_keeps_the_other_tracks_numbers(tmp_path):
    # track 1's only note is never released (note-seq drops it and numbers track 2 as instrument 0); track 3 plays
    import mido
    from note_seq import midi_io as ns_midi_io

    from melody_plugin.music.extract import note_sequence_to_melody

    def notes(channel, pitches, program):
        events = [(0, mido.Message("program_change", channel=channel, program=program))]
        for i, pitch in enumerate(pitches):
            events += [(i * 480, mido.Message("note_on", channel=channel, note=pitch, velocity=80)),
                       (i * 480 + 480, mido.Message("note_off", channel=channel, note=pitch, velocity=0))]
        return events

    eot = mido.MetaMessage("end_of_track")
    data = mido_midi_bytes([[(0, mido.MetaMessage("set_tempo", tempo=500000)), (0, eot)],
                            [(0, mido.Message("note_on", channel=0, note=48, velocity=80)), (1920, eot)],
                            notes(1, [72, 74, 76, 77], 73) + [(1920, eot)],
                            notes(2, [60, 62, 64, 65], 0) + [(1920, eot)]])
    theirs = ns_midi_io.midi_to_note_sequence(data)
    assert sorted({n.instrument for n in theirs.notes}) == [0, 1]
    path = tmp_path / "held_track.mid"
    path.write_bytes(data)
    music = read_music_file(path)
    assert "1 notes never released" in " ".join(music.warnings)
    ours = music.sequences[0]
    assert note_fields(ours.notes[:-1]) == note_fields(theirs.notes)  # every track keeps note-seq's number
    assert note_fields(ours.notes[-1:]) == [(2, 0, False, 48, 80, 0.0, 2.0)]  # the held note: numbered after them
    for track in (0, 1):
        expected = [n.pitch for n in theirs.notes if n.instrument == track]
        assert [n.pitch for n in note_sequence_to_melody(ours, track=track).notes] == expected


@pytest.mark.parametrize("offs", [[480], [480, 720]], ids=["released_once", "released_twice"])
def test_a_note_off_that_ends_a_restruck_pitch_is_no_unreleased_note(tmp_path, offs):
    # 60 struck at 0 and 240: pretty_midi's first note-off ends both (note-seq's two notes end at 480)
    import mido
    from note_seq import midi_io as ns_midi_io

    events = [(0, mido.Message("note_on", note=60, velocity=80)), (240, mido.Message("note_on", note=60, velocity=90))]
    events += [(tick, mido.Message("note_off", note=60, velocity=0)) for tick in offs]
    events += [(960, mido.Message("note_on", note=62, velocity=80)), (1440, mido.Message("note_off", note=62)),
               (1920, mido.MetaMessage("end_of_track"))]
    data = mido_midi_bytes([events], fmt=0)
    theirs = ns_midi_io.midi_to_note_sequence(data)
    assert [(n.pitch, n.start_time, n.end_time) for n in theirs.notes] == [(60, 0.0, 0.5), (60, 0.25, 0.5),
                                                                           (62, 1.0, 1.5)]
    path = tmp_path / "restruck.mid"
    path.write_bytes(data)
    music = read_music_file(path)
    assert music.warnings == ()
    assert note_fields(music.sequences[0].notes) == note_fields(theirs.notes)


def test_musicxml_is_read_with_its_meter_and_key(tmp_path):
    from melody_plugin.music.extract import note_sequence_to_melody

    path = tmp_path / "tune.musicxml"
    path.write_text(MUSICXML)
    m = note_sequence_to_melody(read_music_file(path).sequences[0])
    assert m.time_signature == (3, 4) and m.key == 7
    assert [(n.pitch, n.duration_steps) for n in m.notes] == [(67, 12), (69, 6), (71, 6), (74, 12)]


def test_midi_of_a_melody_ending_in_a_rest_lasts_to_its_bar_line(tmp_path):
    import mido

    from melody_plugin.music.extract import melody_to_note_sequence
    from melody_plugin.music.melody import REST, Melody, Note

    m = Melody((Note(60, 12), Note(62, 12), Note(REST, 24)))  # one 4/4 bar, the last half silent
    path = tmp_path / "rest.mid"
    note_sequence_to_midi_file(melody_to_note_sequence(m), path)
    assert mido.MidiFile(path).length == pytest.approx(2.0, abs=0.01)
    assert read_music_file(path).sequences[0].notes[-1].end_time == pytest.approx(1.0)


# --- the writer, checked with mido


def test_written_midi_has_grid_ticks_tempo_map_and_end_of_track_on_the_final_bar_line(tmp_path):
    from melody_plugin.music.extract import melody_to_note_sequence
    from melody_plugin.music.melody import REST, Melody, Note

    # 2 bars of 3/4: triplet eighths, then a quarter rest at the end; a tempo change at bar 2
    notes = (Note(60, 4), Note(62, 4), Note(64, 4), Note(65, 12), Note(67, 12),
             Note(69, 12), Note(67, 12), Note(REST, 12))
    melody = Melody(notes, 12, (3, 4), 100.0, tempo_changes=((36, 60.0),))
    path = tmp_path / "out.mid"
    note_sequence_to_midi_file(melody_to_note_sequence(melody), path)
    tpq, written, meta, ends = conftest.midi_ticks(path)
    assert tpq % 12 == 0
    tick = tpq // 12  # ticks per grid step
    onsets = [0, 4, 8, 12, 24, 36, 48]
    assert [(p, on, off) for p, on, off in written] == [
        (n.pitch, s * tick, (s + n.duration_steps) * tick) for n, s in zip(notes, onsets)]
    assert [(t, round(mido_tempo_to_qpm(m.tempo), 3)) for t, m in meta["set_tempo"]] == [(0, 100.0), (36 * tick, 60.0)]
    assert set(ends) == {72 * tick}  # 2 bars of 3/4 = 6 quarters, exactly: not one tick more


def mido_tempo_to_qpm(tempo):
    return 60_000_000 / tempo


def test_writer_end_of_track_is_read_back_as_the_same_length(tmp_path):
    # a file that ends in a rest, written by our writer, read by our reader: same length, same rest
    from melody_plugin.music.extract import melody_to_note_sequence, note_sequence_to_melodies
    from melody_plugin.music.melody import text_to_melody

    melody = text_to_melody("C4:1 D4:1 E4:1 R:1 C4:1 D4:1 E4:1 R:1")
    path = tmp_path / "rests.mid"
    note_sequence_to_midi_file(melody_to_note_sequence(melody), path)
    back = note_sequence_to_melodies(read_music_file(path).sequences[0]).melodies[0]
    assert [(n.pitch, n.duration_steps) for n in back.notes] == [(60, 12), (62, 12), (64, 12), (-1, 12)] * 2


def test_tempo_events_in_a_later_track_are_read(tmp_path):
    # format 1, tempo map written in the note track (as some sequencers do): 70 qpm from quarter 2
    import mido

    from melody_plugin.music.extract import note_sequence_to_melodies

    mid = mido.MidiFile(ticks_per_beat=480)
    first = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0),
                            mido.MetaMessage("end_of_track", time=0)])
    notes = mido.MidiTrack()
    for i in range(8):
        if i == 2:
            notes.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(70), time=0))
        notes.append(mido.Message("note_on", note=60 + i, velocity=80, time=0))
        notes.append(mido.Message("note_off", note=60 + i, velocity=0, time=480))
    notes.append(mido.MetaMessage("end_of_track", time=0))
    mid.tracks += [first, notes]
    mid.save(tmp_path / "t1.mid")
    m = note_sequence_to_melodies(read_music_file(tmp_path / "t1.mid").sequences[0]).melodies[0]
    assert [n.duration_steps for n in m.notes] == [12] * 8
    assert [(step, round(qpm, 3)) for step, qpm in m.tempo_changes] == [(24, 70.0)]


# --- our MIDI <-> NoteSequence conversion against note-seq's (the generation path must not import note-seq)

def mido_midi_bytes(tracks, ticks_per_quarter=480, fmt=1) -> bytes:
    """A MIDI file written with mido from per-track lists of (tick, message), each track ended at its own tick."""
    import mido

    mid = mido.MidiFile(type=fmt, ticks_per_beat=ticks_per_quarter)
    for events in tracks:
        track, tick = mido.MidiTrack(), 0
        *body, (end_tick, end) = sorted(events, key=lambda e: e[0])  # stable: equal ticks keep their order
        for at, msg in body + [(end_tick, end)]:
            track.append(msg.copy(time=at - tick))
            tick = at
        mid.tracks.append(track)
    buffer = io.BytesIO()
    mid.save(file=buffer)
    return buffer.getvalue()


def conversion_cases():
    """MIDI files as other tools write them: tempo maps, several tracks, odd resolutions, meter and key changes,
    drums, pitch bends, pedals, and an end-of-track well after the last note."""
    import mido

    def meta(kind, **kw):
        return mido.MetaMessage(kind, **kw)

    def on(ch, pitch, vel=80):
        return mido.Message("note_on", channel=ch, note=pitch, velocity=vel)

    def off(ch, pitch):
        return mido.Message("note_off", channel=ch, note=pitch, velocity=0)

    def tempo(qpm):
        return meta("set_tempo", tempo=mido.bpm2tempo(qpm))

    eot = meta("end_of_track")
    # 96 ticks per quarter: 4/4 -> 3/4 at bar 2, C major -> E minor, three tempos, two programs, a long final rest
    t96 = 96
    conductor = [(0, meta("track_name", name="conductor")), (0, meta("time_signature", numerator=4, denominator=4)),
                 (0, meta("key_signature", key="C")), (0, tempo(120)), (2 * t96, tempo(90)),
                 (4 * t96, meta("time_signature", numerator=3, denominator=4)),
                 (4 * t96, meta("key_signature", key="Em")),
                 (7 * t96, tempo(140.5)), (20 * t96, eot)]
    lead = [(0, meta("track_name", name="flute")), (0, mido.Message("program_change", channel=0, program=73))]
    for i, pitch in enumerate((72, 74, 76, 77, 79, 81, 83)):
        lead += [(i * t96 + 1, on(0, pitch, 60 + i)), ((i + 1) * t96 - 5, off(0, pitch))]
    bass = [(0, mido.Message("program_change", channel=1, program=33))]
    bass += [(0, on(1, 36)), (3 * t96, off(1, 36)), (3 * t96, on(1, 43)), (7 * t96 + 17, off(1, 43))]
    yield "tpq96_tempo_map_meter_and_key_changes", mido_midi_bytes(
        [conductor, lead + [(9 * t96, eot)], bass + [(12 * t96, eot)]], t96)

    # 1000 ticks per quarter: 6/8 -> 7/8, Bb major -> G minor, drums on channel 10, pitch bend and sustain pedal
    t = 1000
    conductor = [(0, meta("time_signature", numerator=6, denominator=8)), (0, meta("key_signature", key="Bb")),
                 (0, tempo(96)), (3 * t, meta("time_signature", numerator=7, denominator=8)),
                 (3 * t, meta("key_signature", key="Gm")), (3 * t, tempo(72)), (11 * t, eot)]
    melody = [(0, mido.Message("program_change", channel=2, program=0))]
    for i, pitch in enumerate((67, 70, 74, 72, 70, 69, 67, 66)):
        melody += [(i * 750, on(2, pitch)), (i * 750 + 700, off(2, pitch))]
    melody += [(500, mido.Message("pitchwheel", channel=2, pitch=2048)),
               (1500, mido.Message("pitchwheel", channel=2, pitch=-300)),
               (0, mido.Message("control_change", channel=2, control=64, value=127)),
               (2000, mido.Message("control_change", channel=2, control=64, value=0)),
               (2100, mido.Message("control_change", channel=2, control=7, value=100))]
    drums = [(0, meta("track_name", name="kit"))]
    for i in range(12):
        drums += [(i * 500, on(9, 36 if i % 2 == 0 else 38, 100)), (i * 500 + 100, on(9, 42, 50)),
                  (i * 500 + 120, off(9, 36 if i % 2 == 0 else 38)), (i * 500 + 130, off(9, 42))]
    yield "tpq1000_compound_meter_drums_bends_pedal", mido_midi_bytes(
        [conductor, melody + [(6 * t + 333, eot)], drums + [(6 * t, eot)]], t)

    # format 0, 220 ticks: every channel in one track, note_on velocity 0 as note-off, a repeated pitch
    t = 220
    events = [(0, tempo(100)), (0, meta("time_signature", numerator=2, denominator=2)),
              (0, meta("key_signature", key="F#m")), (0, mido.Message("program_change", channel=3, program=40))]
    for i in range(6):
        events += [(i * t, on(3, 64 + (i % 2))), ((i + 1) * t, on(3, 64 + (i % 2), 0))]
        events += [(i * t + t // 2, on(5, 50)), (i * t + t // 2 + 30, on(5, 50, 0))]
    events.append((9 * t + 7, eot))
    yield "format0_tpq220_several_channels", mido_midi_bytes([events], t, fmt=0)

    # no tempo and no meter at all (pretty_midi's defaults), odd 384 resolution
    events = [(0, on(0, 60)), (384, off(0, 60)), (400, on(0, 62)), (900, off(0, 62)), (5000, eot)]
    yield "tpq384_no_tempo_no_meter", mido_midi_bytes([events], 384, fmt=0)


CONVERSION_CASES = list(conversion_cases())


@pytest.mark.parametrize("name,data", CONVERSION_CASES, ids=[c[0] for c in CONVERSION_CASES])
def test_our_midi_reader_equals_note_seqs_on_every_field(name, data, tmp_path):
    import pretty_midi
    from note_seq import midi_io as ns_midi_io

    theirs = ns_midi_io.midi_to_note_sequence(data)
    assert len(theirs.notes) > 0 and len(theirs.tempos) > 0  # the case is not empty
    ours = pretty_midi_to_note_sequence(pretty_midi.PrettyMIDI(io.BytesIO(data)))
    assert ours == theirs  # every field: notes, tempos, meters, keys, instruments, bends, pedals, source info

    # the guarded reader: note-seq's sequence, named, lasting to the file's end-of-track (a final rest is music)
    path = tmp_path / f"{name}.mid"
    path.write_bytes(data)
    music = read_music_file(path)
    assert music.warnings == ()
    read = music.sequences[0]
    assert read.filename == str(path)
    assert read.total_time > theirs.total_time  # every case ends in a rest
    read.filename, read.total_time = theirs.filename, theirs.total_time
    assert read == theirs


def midi_bytes_as_before(ns) -> bytes:
    """What note_sequence_to_midi_bytes wrote through note-seq: its PrettyMIDI, written, parsed again with mido to
    move every end-of-track to total_time."""
    import mido
    from note_seq import midi_io as ns_midi_io

    if ns.ticks_per_quarter % 12:
        ns = type(ns).FromString(ns.SerializeToString())
        ns.ticks_per_quarter = 480
    pm = ns_midi_io.note_sequence_to_pretty_midi(ns)
    buffer = io.BytesIO()
    pm.write(buffer)
    mid = mido.MidiFile(file=io.BytesIO(buffer.getvalue()))
    end_tick = pm.time_to_tick(max(ns.total_time, 0.0))
    for track in mid.tracks:
        last_tick = sum(msg.time for msg in track[:-1])
        track[-1] = track[-1].copy(time=max(end_tick - last_tick, 0))
    buffer = io.BytesIO()
    mid.save(file=buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("name,data", CONVERSION_CASES, ids=[c[0] for c in CONVERSION_CASES])
def test_our_midi_writer_writes_note_seqs_bytes(name, data):
    import pretty_midi
    from note_seq import midi_io as ns_midi_io

    ns = ns_midi_io.midi_to_note_sequence(data)

    def written(pm):
        buffer = io.BytesIO()
        pm.write(buffer)
        return buffer.getvalue()

    assert written(note_sequence_to_pretty_midi(ns)) == written(ns_midi_io.note_sequence_to_pretty_midi(ns))
    assert note_sequence_to_midi_bytes(ns) == midi_bytes_as_before(ns)
    shorter = type(ns).FromString(ns.SerializeToString())
    shorter.total_time = 0.5  # before the last note ends: end-of-track stays right after the last event
    assert note_sequence_to_midi_bytes(shorter) == midi_bytes_as_before(shorter)
    # the file we write (at 480 ticks unless the sequence's resolution holds the 12-step grid, end-of-track at
    # total_time) reads back to what note-seq's PrettyMIDI of the sequence reads back to
    if ns.ticks_per_quarter % 12:
        ns.ticks_per_quarter = 480
    before = pretty_midi.PrettyMIDI(io.BytesIO(written(ns_midi_io.note_sequence_to_pretty_midi(ns))))
    after = pretty_midi.PrettyMIDI(io.BytesIO(note_sequence_to_midi_bytes(ns)))
    assert after.resolution == ns.ticks_per_quarter
    assert [(i.program, i.is_drum, [(n.pitch, n.velocity, round(n.start, 6), round(n.end, 6)) for n in i.notes])
            for i in after.instruments] == [
        (i.program, i.is_drum, [(n.pitch, n.velocity, round(n.start, 6), round(n.end, 6)) for n in i.notes])
        for i in before.instruments]
    for got, want in zip(after.get_tempo_changes(), before.get_tempo_changes()):
        assert got.round(6).tolist() == want.round(6).tolist()
    assert [(t.numerator, t.denominator, round(t.time, 6)) for t in after.time_signature_changes] == [
        (t.numerator, t.denominator, round(t.time, 6)) for t in before.time_signature_changes]
    assert [(k.key_number, round(k.time, 6)) for k in after.key_signature_changes] == [
        (k.key_number, round(k.time, 6)) for k in before.key_signature_changes]


def test_a_note_shorter_than_a_tick_is_written_one_tick_long(tmp_path):
    # 1000 ticks per quarter (not a multiple of 12: written at 480): a 1-tick note, 0.5 ms, between two quarters
    import mido
    from note_seq import midi_io as ns_midi_io

    def note(at, pitch, length):
        return [(at, mido.Message("note_on", note=pitch, velocity=80)),
                (at + length, mido.Message("note_off", note=pitch, velocity=0))]

    data = mido_midi_bytes([note(0, 60, 1000) + note(1500, 62, 1) + note(2000, 64, 1000)
                            + [(3000, mido.MetaMessage("end_of_track"))]], 1000, fmt=0)
    ns = ns_midi_io.midi_to_note_sequence(data)
    assert [n.pitch for n in ns.notes] == [60, 62, 64]  # note-seq reads it ...
    path = tmp_path / "note_seq.mid"
    ns_midi_io.note_sequence_to_midi_file(ns, str(path))
    assert conftest.midi_ticks(path)[1] == [(60, 0, 1000), (62, 1500, 1501), (64, 2000, 3000)]  # ... and writes it
    path = tmp_path / "ours.mid"
    note_sequence_to_midi_file(ns, path)
    tpq, notes, _, _ = conftest.midi_ticks(path)
    assert (tpq, notes) == (480, [(60, 0, 480), (62, 720, 721), (64, 960, 1440)])  # 1500 * 480 / 1000 = 720
    assert [n.pitch for n in read_music_file(path).sequences[0].notes] == [60, 62, 64]

    shorter = type(ns).FromString(ns.SerializeToString())  # at the sequence's own resolution, and of no length
    shorter.ticks_per_quarter = 960
    shorter.notes[1].end_time = shorter.notes[1].start_time
    path.write_bytes(note_sequence_to_midi_bytes(shorter))
    assert conftest.midi_ticks(path)[1] == [(60, 0, 960), (62, 1440, 1441), (64, 1920, 2880)]


def test_a_lengthened_note_never_cuts_the_same_pitch_struck_right_after_it(tmp_path):
    # 1000 tpq: a 1-tick C4 at 1000, the same pitch again from 1001 to 2000 (both land on tick 480 at 480 tpq)
    import mido

    data = mido_midi_bytes([[(1000, mido.Message("note_on", note=60, velocity=90)),
                             (1001, mido.Message("note_off", note=60, velocity=0)),
                             (1001, mido.Message("note_on", note=60, velocity=91)),
                             (2000, mido.Message("note_off", note=60, velocity=0)),
                             (2000, mido.MetaMessage("end_of_track"))]], 1000, fmt=0)
    (tmp_path / "in.mid").write_bytes(data)
    path = tmp_path / "out.mid"
    note_sequence_to_midi_file(read_music_file(tmp_path / "in.mid").sequences[0], path)
    # by hand: 1000 -> 480, the short note one tick long; the next starts where it ends and keeps its own end (960)
    assert conftest.midi_ticks(path)[1] == [(60, 480, 481), (60, 481, 960)]


def test_writing_to_a_symlink_writes_its_target_as_note_seq_does(tmp_path):
    # a link to a file, a link to a file not there yet, a loop of links: note-seq's open() against our atomic write
    from note_seq import midi_io as ns_midi_io

    ns = make_sequence(pattern_notes([(60, 1), (62, 1)]))
    writers = {"note_seq": lambda path: ns_midi_io.note_sequence_to_midi_file(ns, str(path)),
               "ours": lambda path: note_sequence_to_midi_file(ns, path)}
    seen = {}
    for who, write in writers.items():
        real, links = tmp_path / who / "real", tmp_path / who / "links"
        real.mkdir(parents=True)
        links.mkdir()
        (real / "old.mid").write_bytes(b"old")
        (links / "old.mid").symlink_to("../real/old.mid")
        (links / "new.mid").symlink_to("../real/new.mid")
        (links / "a.mid").symlink_to("b.mid")
        (links / "b.mid").symlink_to("a.mid")
        write(links / "old.mid")
        write(links / "new.mid")
        with pytest.raises(OSError, match="symbolic links"):
            write(links / "a.mid")
        seen[who] = ({name: os.readlink(links / name) for name in sorted(os.listdir(links))},
                     {name: (real / name).read_bytes() != b"old" for name in sorted(os.listdir(real))})
    assert seen["ours"] == seen["note_seq"]
    assert seen["ours"] == ({"a.mid": "b.mid", "b.mid": "a.mid", "new.mid": "../real/new.mid",
                             "old.mid": "../real/old.mid"}, {"new.mid": True, "old.mid": True})
    assert (tmp_path / "ours" / "real" / "old.mid").read_bytes() == note_sequence_to_midi_bytes(ns)


def test_melody_sequences_are_written_as_before():
    import pretty_midi
    from note_seq import midi_io as ns_midi_io

    from melody_plugin.music.extract import melody_to_note_sequence
    from melody_plugin.music.melody import Melody, Note

    melody = Melody((Note(67, 6), Note(-1, 6), Note(69, 4), Note(71, 8), Note(72, 12)), 12, (3, 4), 100.0, 7, False,
                    tempo_changes=((12, 80.0), (24, 133.0)))
    for ns in (melody_to_note_sequence(melody), make_sequence(pattern_notes([(60, 1), (None, 0.5), (64, 1.5)], 3),
                                                              time_signature=(6, 8), key=2, program=5)):
        a, b = io.BytesIO(), io.BytesIO()
        note_sequence_to_pretty_midi(ns).write(a)
        ns_midi_io.note_sequence_to_pretty_midi(ns).write(b)
        assert a.getvalue() == b.getvalue()
        assert note_sequence_to_midi_bytes(ns) == midi_bytes_as_before(ns)
        assert pretty_midi.PrettyMIDI(io.BytesIO(a.getvalue())).instruments[0].notes


def test_a_folder_of_tfrecords_only_says_how_to_name_them(tmp_path):
    for i in range(2):
        (tmp_path / f"notesequences-0000{i}-of-00002.tfrecord").write_bytes(b"")
    with pytest.raises(InputFileError, match=r"but 2 TFRecord file\(s\): pass them by name or a glob"):
        list_music_files(tmp_path)
