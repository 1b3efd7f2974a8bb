"""The music21 reader: ABC and MusicXML that note-seq refuses, read tune by tune into exact melodies.

Every expected melody is counted by hand from the ABC/MusicXML written here, on the 12-steps-per-quarter grid:
a quarter is 12 steps, an eighth 6, a 16th 3, an eighth-note triplet 4, a quarter-note triplet 8.
"""

import time
import zipfile

import pytest

from melody_plugin.errors import InputFileError
from melody_plugin.io import files as midi_io
from melody_plugin.io import abc as io_abc, music21_abc, music21_score
from melody_plugin.music.extract import note_sequence_to_melodies
from melody_plugin.music.melody import REST

R = REST


@pytest.fixture
def music21():
    """music21 itself, for the tests marked music21 (conftest skips them without the extra)."""
    import music21

    return music21


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def melody_notes(ns):
    """(pitch, duration_steps) of the one melody of a sequence, on the 12-steps-per-quarter grid."""
    extraction = note_sequence_to_melodies(ns, 12)
    assert len(extraction.melodies) == 1
    return [(n.pitch, n.duration_steps) for n in extraction.melodies[0].notes]


def onsets(notes):
    out, step = [], 0
    for _, duration in notes:
        out.append(step)
        step += duration
    return out


TRIPLETS = """X:1
T:Triplets
M:2/4
L:1/8
Q:1/4=120
K:C
(3cde f2|g4|
"""


@pytest.mark.music21
@pytest.mark.parametrize("reader", ["auto", "music21"])
def test_eighth_note_triplets_are_exact(tmp_path, music21, reader):
    music = midi_io.read_music_file(write(tmp_path, "triplets.abc", TRIPLETS), reader=reader)
    notes = melody_notes(music.sequences[0])
    # (3cde: three eighths in the time of two, 4 steps each; f2 a quarter; g4 a half
    assert notes == [(72, 4), (74, 4), (76, 4), (77, 12), (79, 24)]
    assert onsets(notes) == [0, 4, 8, 12, 24]
    ts = music.sequences[0].time_signatures[0]
    assert (ts.numerator, ts.denominator) == (2, 4)
    assert music.warnings == ()  # with the extra, auto reads with music21 first: nothing to report


@pytest.mark.music21
def test_parts_and_variant_endings_are_read_once_in_written_order(tmp_path, music21):
    abc = """X:2
T:Parts
M:3/4
L:1/4
P:AB
K:G
P:A
|:G A B|1 c3:|2 d3|]
P:B
e d c|B3|]
"""
    music = midi_io.read_music_file(write(tmp_path, "parts.abc", abc))
    # repeats and P: orders are not expanded: first ending, then second ending, then part B
    assert melody_notes(music.sequences[0]) == [(67, 12), (69, 12), (71, 12), (72, 36), (74, 36),
                                                (76, 12), (74, 12), (72, 12), (71, 36)]


@pytest.mark.music21
def test_grace_notes_take_no_time(tmp_path, music21):
    abc = "X:3\nT:Graces\nM:4/4\nL:1/8\nK:D\n{g}A2 B2 {ag}c2 d2|\n"
    music = midi_io.read_music_file(write(tmp_path, "graces.abc", abc))
    # K:D makes c a C#; the graces g and ag are dropped
    assert melody_notes(music.sequences[0]) == [(69, 12), (71, 12), (73, 12), (74, 12)]


@pytest.mark.music21
def test_broken_rhythm_across_different_lengths(tmp_path, music21):
    abc = "X:4\nT:Broken\nM:4/4\nL:1/8\nK:C\nA2>B c/ d2 e2|\n"
    music = midi_io.read_music_file(write(tmp_path, "broken.abc", abc))
    # A2>B: A2 (12 steps) dotted to 18, B (6) halved to 3; c/ a 16th (3); d2, e2 quarters: 48 steps, one bar
    notes = melody_notes(music.sequences[0])
    assert notes == [(69, 18), (71, 3), (72, 3), (74, 12), (76, 12)]
    assert onsets(notes) == [0, 18, 21, 24, 36]


@pytest.mark.music21
def test_a_pickup_bar_keeps_the_bar_lines_where_the_score_has_them(tmp_path, music21):
    abc = "X:5\nT:Pickup\nM:3/4\nL:1/4\nK:C\nG|c2 e|g3|\n"
    music = midi_io.read_music_file(write(tmp_path, "pickup.abc", abc), reader="music21")
    # G is the last beat of a 3/4 bar: two quarters of rest come first
    assert melody_notes(music.sequences[0]) == [(R, 24), (67, 12), (72, 24), (76, 12), (79, 36)]


@pytest.mark.music21
def test_ties_merge_and_decorations_keep_the_timing(tmp_path, music21):
    abc = "X:6\nT:Ties\nM:4/4\nL:1/8\nK:C\nc4- c2 Hd2|e>(fe) d>.c B>uA G|\n"
    music = midi_io.read_music_file(write(tmp_path, "ties.abc", abc), reader="music21")
    # c4-c2 is one note of 6 eighths; Hd2 a quarter with a fermata; in bar 2 each > dots the first note (9 steps)
    # and halves the second (3) across a slur, a staccato and a bowing; e and G eighths (6)
    assert melody_notes(music.sequences[0]) == [(72, 36), (74, 12), (76, 9), (77, 3), (76, 6), (74, 9), (72, 3),
                                                (71, 9), (69, 3), (67, 6)]


BOOK = """%abc-2.1
% a tunebook: one tune note-seq reads, one it refuses, one nobody reads
M:2/4
L:1/8

X:1
T:Good one
K:C
CDEF|G4|

X:2
T:Corrupt
K:C
C/0 D E F|G4|

X:3
T:Triplets too
K:G
(3GAB c2|d4|
"""


@pytest.mark.music21
def test_a_tunebook_yields_one_sequence_per_tune_and_skips_only_the_bad_one(tmp_path, music21):
    path = write(tmp_path, "book.abc", BOOK)
    music = midi_io.read_music_file(path)
    assert [ns.filename for ns in music.sequences] == [f"{path}#X:1", f"{path}#X:3"]
    assert [ns.sequence_metadata.title for ns in music.sequences] == ["Good one", "Triplets too"]
    assert [ns.reference_number for ns in music.sequences] == [1, 3]
    assert melody_notes(music.sequences[0]) == [(60, 6), (62, 6), (64, 6), (65, 6), (67, 24)]
    # the header's M:2/4 and L:1/8 hold for every tune
    assert melody_notes(music.sequences[1]) == [(67, 4), (69, 4), (71, 4), (72, 12), (74, 24)]
    skipped = [w for w in music.warnings if "skipped" in w]
    assert len(skipped) == 1 and skipped[0].startswith("ABC tune X:2 'Corrupt' skipped: ")
    assert music.sequences[1].source_info.parser == music.sequences[1].source_info.MUSIC21


def test_a_latin1_tunebook_is_read_with_the_charset_it_declares(tmp_path):
    abc = "%abc-charset iso-8859-1\n\nX:1\nT:Señor Café\nM:2/4\nL:1/8\nK:C\nCDEF|G4|\n"
    path = write(tmp_path, "latin1.abc", abc, encoding="latin-1")
    music = midi_io.read_music_file(path, reader="note_seq")
    assert music.sequences[0].sequence_metadata.title == "Señor Café"
    assert music.warnings == ()
    undeclared = write(tmp_path, "cp1252.abc", abc.split("\n", 2)[2], encoding="cp1252")
    music = midi_io.read_music_file(undeclared, reader="note_seq")
    assert music.sequences[0].sequence_metadata.title == "Señor Café"
    assert any("Windows-1252" in w for w in music.warnings)


def test_without_the_extra_the_refusal_says_the_extra_would_read_it(tmp_path, monkeypatch):
    monkeypatch.setattr(music21_score, "available", lambda: False)
    path = write(tmp_path, "triplets.abc", TRIPLETS)
    with pytest.raises(InputFileError) as refused:
        midi_io.read_music_file(path)
    assert refused.value.reason == ("no readable ABC tune: Tuplets are not supported. (X:1 'Triplets'); "
                                    'the music21 reader may read it: pip install "melody_plugin[music21]"')
    with pytest.raises(InputFileError, match="music21 reader is not installed"):
        midi_io.read_music_file(path, reader="music21")
    book = midi_io.read_music_file(write(tmp_path, "book.abc", BOOK))
    assert len(book.sequences) == 1
    assert "2 tune(s) skipped; the music21 reader may read them" in book.warnings[-1]


def test_the_reader_can_be_chosen_by_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(midi_io.READER_ENV, "note_seq")
    with pytest.raises(InputFileError, match="Tuplets are not supported") as refused:
        midi_io.read_music_file(write(tmp_path, "triplets.abc", TRIPLETS))
    assert "music21" not in str(refused.value)
    with pytest.raises(InputFileError, match="reader must be one of"):
        midi_io.read_music_file(write(tmp_path, "t.abc", TRIPLETS), reader="pretty_midi")


def test_a_tune_music21_runs_out_of_time_on_goes_to_note_seq_in_auto(tmp_path, monkeypatch):
    woke = []

    def slow(text, name):  # the first tune hangs (for longer than any test would wait); the others music21 "fails on"
        if "Good one" in text:
            time.sleep(60)
            woke.append(name)  # reached only if the limit did not stop the hang
        raise InputFileError(name, "stub refuses")

    monkeypatch.setattr(music21_score, "available", lambda: True)
    monkeypatch.setattr(music21_abc, "abc_tune_to_note_sequence", slow)
    music = midi_io.read_music_file(write(tmp_path, "book.abc", BOOK), timeout_s=0.5)
    assert woke == []
    # note-seq reads X:1 after music21's time-out; X:3's triplets it refuses, as music21's stub does
    assert [ns.reference_number for ns in music.sequences] == [1]
    assert melody_notes(music.sequences[0]) == [(60, 6), (62, 6), (64, 6), (65, 6), (67, 24)]
    assert ("note-seq read 1 tune(s) music21 fails on: X:1 (reading took longer than 0.5 s; refused)"
            in music.warnings)
    assert ("ABC tune X:3 'Triplets too' skipped: music21: stub refuses; note-seq: Tuplets are not supported."
            in music.warnings)
    # music21 alone: the tune over the limit is skipped and the rest read (none here: the stub refuses them)
    with pytest.raises(InputFileError) as refused:
        midi_io.read_music_file(write(tmp_path, "book2.abc", BOOK), timeout_s=0.5, reader="music21")
    assert refused.value.reason == ("no readable ABC tune: reading took longer than 0.5 s; refused "
                                    "(X:1 'Good one', and 2 more tunes)")


@pytest.mark.music21
def test_bombs_are_refused_before_music21_sees_them(tmp_path):
    bomb = write(tmp_path, "bomb.musicxml", '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]>'
                 "<score-partwise>&lol;</score-partwise>")
    with pytest.raises(InputFileError, match="entity"):
        midi_io.read_music_file(bomb, reader="music21")


MUSICXML_TUPLETS = """<?xml version="1.0" encoding="UTF-8"?>
<score-partwise version="3.1">
  <part-list><score-part id="P1"><part-name>Flute</part-name></score-part></part-list>
  <part id="P1">
    <measure number="1">
      <attributes><divisions>3</divisions><key><fifths>0</fifths></key>
        <time><beats>3</beats><beat-type>4</beat-type></time></attributes>
      <direction><direction-type><metronome><beat-unit>quarter</beat-unit><per-minute>90</per-minute></metronome>
        </direction-type><sound tempo="90"/></direction>
      {triplet_eighths}
      <note><pitch><step>F</step><octave>4</octave></pitch><duration>3</duration><type>quarter</type></note>
      <note><pitch><step>G</step><octave>4</octave></pitch><duration>3</duration><type>quarter</type></note>
    </measure>
    <measure number="2">
      {triplet_quarters}
      <note><rest/><duration>3</duration><type>quarter</type></note>
    </measure>
  </part>
</score-partwise>
"""


def _tuplet_notes(steps, duration, kind):
    return "\n".join(
        f"<note><pitch><step>{step}</step><octave>{octave}</octave></pitch><duration>{duration}</duration>"
        f"<type>{kind}</type><time-modification><actual-notes>3</actual-notes><normal-notes>2</normal-notes>"
        f"</time-modification></note>" for step, octave in steps)


@pytest.mark.music21
@pytest.mark.parametrize("reader", ["note_seq", "music21"])
def test_musicxml_tuplets_are_exact(tmp_path, music21, reader):
    xml = MUSICXML_TUPLETS.format(triplet_eighths=_tuplet_notes([("C", 4), ("D", 4), ("E", 4)], 1, "eighth"),
                                  triplet_quarters=_tuplet_notes([("B", 4), ("C", 5), ("D", 5)], 2, "quarter"))
    music = midi_io.read_music_file(write(tmp_path, "tuplets.musicxml", xml), reader=reader)
    ns = music.sequences[0]
    notes = melody_notes(ns)
    # eighth triplets 4 steps each, quarters 12, quarter triplets 8 each, a quarter rest 12: two 3/4 bars
    assert notes == [(60, 4), (62, 4), (64, 4), (65, 12), (67, 12), (71, 8), (72, 8), (74, 8), (R, 12)]
    assert onsets(notes) == [0, 4, 8, 12, 24, 36, 44, 52, 60]
    assert ns.tempos[0].qpm == pytest.approx(90)
    assert ns.notes[1].start_time == pytest.approx(1 / 3 * 60 / 90)


def test_a_score_music21_runs_out_of_time_on_is_read_by_note_seq_in_auto(tmp_path, monkeypatch):
    woke = []

    def slow(xml, name):  # a long score on a busy machine (longer than any test would wait)
        time.sleep(60)
        woke.append(name)  # reached only if the limit did not stop it

    monkeypatch.setattr(music21_score, "available", lambda: True)
    monkeypatch.setattr(music21_score, "musicxml_to_note_sequence", slow)
    xml = MUSICXML_TUPLETS.format(triplet_eighths=_tuplet_notes([("C", 4), ("D", 4), ("E", 4)], 1, "eighth"),
                                  triplet_quarters=_tuplet_notes([("B", 4), ("C", 5), ("D", 5)], 2, "quarter"))
    path = write(tmp_path, "tuplets.musicxml", xml)
    music = midi_io.read_music_file(path, timeout_s=1)
    assert woke == []
    assert music.warnings == ("read by note-seq (music21: reading took longer than 1 s; refused)",)
    # as in test_musicxml_tuplets_are_exact: eighth triplets 4 steps, quarters 12, quarter triplets 8, rest 12
    assert melody_notes(music.sequences[0]) == [(60, 4), (62, 4), (64, 4), (65, 12), (67, 12), (71, 8), (72, 8),
                                                (74, 8), (R, 12)]
    with pytest.raises(InputFileError, match="reading took longer than 1 s"):  # music21 alone has no fallback
        midi_io.read_music_file(path, timeout_s=1, reader="music21")


@pytest.mark.music21
def test_a_compressed_mxl_score_is_read_by_music21_from_its_container(tmp_path, music21):
    xml = MUSICXML_TUPLETS.format(triplet_eighths=_tuplet_notes([("C", 4), ("D", 4), ("E", 4)], 1, "eighth"),
                                  triplet_quarters=_tuplet_notes([("B", 4), ("C", 5), ("D", 5)], 2, "quarter"))
    path = tmp_path / "tuplets.mxl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("META-INF/container.xml", '<container><rootfiles><rootfile full-path="score/tune.xml"/>'
                                              "</rootfiles></container>")
        zf.writestr("notes.xml", "<not-the-score/>")
        zf.writestr("score/tune.xml", xml)
    music = midi_io.read_music_file(path, reader="music21")
    assert melody_notes(music.sequences[0])[:3] == [(60, 4), (62, 4), (64, 4)]
    # a Mac-made archive (as music21's own schoenberg/opus19/movement2.mxl) carries a binary AppleDouble companion
    # named like a score; it is neither chosen nor parsed, with or without a container
    for container in (True, False):
        mac = tmp_path / f"mac_{container}.mxl"
        with zipfile.ZipFile(mac, "w", zipfile.ZIP_DEFLATED) as zf:
            if container:
                zf.writestr("META-INF/container.xml", '<container><rootfiles><rootfile full-path="tune.xml"/>'
                                                      "</rootfiles></container>")
            zf.writestr("__MACOSX/._tune.xml", b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \x00\x02")
            zf.writestr("tune.xml", xml)
        music = midi_io.read_music_file(mac, reader="music21")
        assert melody_notes(music.sequences[0])[:3] == [(60, 4), (62, 4), (64, 4)]


@pytest.mark.music21
def test_auto_prefers_music21_for_ties_across_bar_lines_and_pickups(tmp_path, music21):
    tie = "X:1\nT:Tie\nM:4/4\nL:1/8\nK:C\nC2 D2 E2 F2- | F2 G2 A2 B2 | c8 |]\n"
    music = midi_io.read_music_file(write(tmp_path, "tie.abc", tie))
    # F2-|F2 is one quarter+quarter: 24 steps (note-seq makes two 12-step notes)
    assert melody_notes(music.sequences[0]) == [(60, 12), (62, 12), (64, 12), (65, 24), (67, 12), (69, 12),
                                                (71, 12), (72, 48)]
    jig = "X:21\nT:Pickup Jig\nM:6/8\nL:1/8\nK:D\nA | d2A F2A | e3 e2 |]\n"
    music = midi_io.read_music_file(write(tmp_path, "jig.abc", jig))
    # the pickup A is the last eighth of a 6/8 bar (36 steps): 30 steps of rest first; K:D makes F an F#
    assert melody_notes(music.sequences[0]) == [(R, 30), (69, 6), (74, 12), (69, 6), (66, 12), (69, 6),
                                                (76, 18), (76, 12)]
    old = midi_io.read_music_file(write(tmp_path, "tie2.abc", tie), reader="note_seq")
    assert melody_notes(old.sequences[0])[3:5] == [(65, 12), (65, 12)]  # the old default, still a flag away


@pytest.mark.music21
def test_auto_prefers_music21_for_a_named_melody_part_in_musicxml(tmp_path, music21):
    def part(pid, steps):
        notes = "".join(f"<note><pitch><step>{s}</step><octave>{o}</octave></pitch><duration>1</duration>"
                        f"<type>quarter</type></note>" for s, o in steps)
        return (f'<part id="{pid}"><measure number="1"><attributes><divisions>1</divisions>'
                f"<time><beats>2</beats><beat-type>4</beat-type></time></attributes>{notes}</measure></part>")

    xml = ('<?xml version="1.0"?><score-partwise version="3.1"><work><work-title>Two Parts</work-title></work>'
           '<part-list><score-part id="P1"><part-name>Bass</part-name></score-part>'
           '<score-part id="P2"><part-name>Melody</part-name></score-part></part-list>'
           + part("P1", [("C", 3), ("G", 2)]) + part("P2", [("E", 5), ("D", 5)]) + "</score-partwise>")
    ns = midi_io.read_music_file(write(tmp_path, "two.musicxml", xml)).sequences[0]
    assert [i.name for i in ns.instrument_infos] == ["Bass", "Melody"]
    assert ns.sequence_metadata.title == "Two Parts"
    assert [(n.pitch, n.instrument) for n in ns.notes] == [(48, 0), (43, 0), (76, 1), (74, 1)]
    movement = xml.replace("<work><work-title>Two Parts</work-title></work>",
                           "<movement-title>Movement Only</movement-title>")
    ns = midi_io.read_music_file(write(tmp_path, "movement.musicxml", movement)).sequences[0]
    assert ns.sequence_metadata.title == "Movement Only"


@pytest.mark.music21
@pytest.mark.parametrize("change", ["inline", "line"])
def test_meter_and_tempo_changes_inside_a_tune_are_kept(tmp_path, music21, change):
    if change == "inline":
        body = "C2 D2 E2 F2 | [M:3/4] [Q:1/4=60] G2 A2 B2 | c6 | [M:4/4] d2 e2 f2 g2 |]\n"
    else:
        body = "C2 D2 E2 F2 |\nM:3/4\nQ:1/4=60\nG2 A2 B2 | c6 |\nM:4/4\nd2 e2 f2 g2 |]\n"
    abc = "X:8\nT:Meters\nM:4/4\nL:1/8\nQ:1/4=120\nK:C\n" + body
    ns = midi_io.read_music_file(write(tmp_path, "meters.abc", abc)).sequences[0]
    # 4 quarters at 120 qpm = 2 s; then 6 quarters of 3/4 at 60 qpm = 6 s
    assert [(t.time, t.numerator, t.denominator) for t in ns.time_signatures] == [(0, 4, 4), (2, 3, 4), (8, 4, 4)]
    assert [(t.time, t.qpm) for t in ns.tempos] == [(0, 120), (2, 60)]
    extraction = note_sequence_to_melodies(ns, 12)
    assert [m.time_signature for m in extraction.melodies] == [(4, 4), (3, 4), (4, 4)]
    assert [[(n.pitch, n.duration_steps) for n in m.notes] for m in extraction.melodies] == [
        [(60, 12), (62, 12), (64, 12), (65, 12)], [(67, 12), (69, 12), (71, 12), (72, 36)],
        [(74, 12), (76, 12), (77, 12), (79, 12)]]


@pytest.mark.music21
def test_a_tune_without_a_blank_line_before_the_next_x_is_its_own_tune(tmp_path, music21):
    abc = "X:1\nT:One\nM:2/4\nL:1/8\nK:C\nCDEF|\nX:2\nT:Two\nM:2/4\nL:1/8\nK:C\nGABc|\n\nliner notes, not music\n"
    music = midi_io.read_music_file(write(tmp_path, "book.abc", abc))
    assert [ns.sequence_metadata.title for ns in music.sequences] == ["One", "Two"]
    assert melody_notes(music.sequences[0]) == [(60, 6), (62, 6), (64, 6), (65, 6)]
    assert melody_notes(music.sequences[1]) == [(67, 6), (69, 6), (71, 6), (72, 6)]


@pytest.mark.music21
def test_duplicate_and_non_numeric_x_numbers_name_tunes_apart(tmp_path, music21):
    abc = "M:2/4\nL:1/8\n\nX:4\nT:First\nK:C\nCDEF|\n\nX:4\nT:Second\nK:C\nGABc|\n\nX:A7\nT:Lettered\nK:C\nc4|\n"
    path = write(tmp_path, "book.abc", abc)
    music = midi_io.read_music_file(path)
    assert [ns.filename for ns in music.sequences] == [f"{path}#X:4", f"{path}#X:4 (2)", f"{path}#X:A7"]
    assert [ns.reference_number for ns in music.sequences] == [4, 4, 0]
    assert "ABC tune X:4 'Second' repeats an earlier X: number: named book.abc#X:4 (2)" in music.warnings
    assert melody_notes(music.sequences[2]) == [(72, 24)]


def test_a_tunebook_has_a_time_cap_and_errors_carry_no_control_bytes(tmp_path, monkeypatch):
    def slow(text, name):
        time.sleep(0.3)
        raise InputFileError(name, "stub refuses \x1b[31m")

    monkeypatch.setattr(music21_score, "available", lambda: True)
    monkeypatch.setattr(music21_abc, "abc_tune_to_note_sequence", slow)
    monkeypatch.setattr(io_abc, "MAX_ABC_BOOK_SECONDS", 1.0)
    pytest.importorskip("note_seq.abc_parser")  # imported now, not inside the 1 s
    tunes = "".join(f"X:{i}\nT:T\x1b{i}\nK:C\nC/0|\n\n" for i in range(1, 11))
    with pytest.raises(InputFileError) as refused:
        midi_io.read_music_file(write(tmp_path, "junk.abc", tunes), timeout_s=5)
    assert "\x1b" not in str(refused.value)
    # 10 tunes at 0.3 s each: the 1 s cap stops after 4 (2 to 5 on a busy machine)
    reason = refused.value.reason
    assert reason.startswith("no readable ABC tune: time limit of 1 s for the file reached after ")
    tried = int(reason.split("reached after ")[1].split(" ")[0])
    assert 2 <= tried <= 5 and f"{tried} of 10 tunes (0 read); {10 - tried} not tried" in reason
    assert "the first: music21: stub refuses ?[31m; note-seq: " in reason
    assert "(X:1 'T\\x1b1', and 9 more tunes)" in reason  # the title's ESC as the text \x1b


PRIMER_BOOK = """M:2/4
L:1/8

X:1
T:First
K:C
CDEF|

X:2
T:Corrupt
K:C
C/0 D E F|G4|

X:9
T:Ninth
K:C
GABc|
"""


def load_primer(path):
    from types import SimpleNamespace

    from melody_plugin.generate.generator import MelodyGenerator

    stub = SimpleNamespace(vocab=SimpleNamespace(steps_per_quarter=12))  # load_primer needs only the grid
    return MelodyGenerator.load_primer(stub, path)


@pytest.mark.music21
@pytest.mark.parametrize("suffix", ["", "#X:9", "#9"])
def test_a_primer_tune_is_picked_from_a_tunebook_by_its_number(tmp_path, music21, suffix):
    path = write(tmp_path, "book.abc", PRIMER_BOOK)
    melody, warnings = load_primer(f"{path}{suffix}")
    if suffix:
        assert [(n.pitch, n.duration_steps) for n in melody.notes] == [(67, 6), (69, 6), (71, 6), (72, 6)]
        assert warnings == []  # the tune asked for is read alone: nothing about X:2, which is corrupt
    else:
        assert [(n.pitch, n.duration_steps) for n in melody.notes] == [(60, 6), (62, 6), (64, 6), (65, 6)]
        assert (f"{path}: 2 tunes; the primer is tune X:1 'First' (the first readable; pick another with "
                f"{path}#X:N)") in warnings
        assert any("X:2 'Corrupt' skipped" in w for w in warnings)


@pytest.mark.music21
def test_a_missing_or_unreadable_primer_tune_is_a_primer_error_that_says_why(tmp_path, music21):
    from melody_plugin.generate.generator import PrimerError

    path = write(tmp_path, "book.abc", PRIMER_BOOK)
    with pytest.raises(PrimerError) as missing:
        load_primer(f"{path}#X:7")
    assert str(missing.value) == f"{path}: no tune X:7 in the file (its tunes: X:1, X:2, X:9)"
    with pytest.raises(PrimerError) as corrupt:
        load_primer(f"{path}#X:2")
    # C/0: a note of length zero over zero, which neither reader can take
    assert str(corrupt.value).startswith(f"{path}: tune X:2 'Corrupt' is not readable: music21: ")
    assert "; note-seq: ZeroDivisionError" in str(corrupt.value)


@pytest.mark.music21
def test_a_modal_key_keeps_its_tonic_and_mode(tmp_path, music21):
    abc = "X:1\nT:Dorian\nM:2/4\nL:1/8\nK:Ador\nABcd|e4|\n"
    ns = midi_io.read_music_file(write(tmp_path, "dorian.abc", abc)).sequences[0]
    # K:Ador: tonic A (pitch class 9), dorian (note-seq's KeySignature.DORIAN = 4); no sharps or flats
    assert [(k.key, k.mode) for k in ns.key_signatures] == [(9, ns.KeySignature.DORIAN)]
    assert melody_notes(ns) == [(69, 6), (71, 6), (72, 6), (74, 6), (76, 24)]


@pytest.mark.music21
def test_an_inline_note_length_changes_the_length_of_later_notes(tmp_path, music21):
    abc = "X:1\nT:Unit\nM:4/4\nL:1/8\nK:C\nCDEF GABc|[L:1/4] CDEF|c4|\n"
    notes = melody_notes(midi_io.read_music_file(write(tmp_path, "unit.abc", abc)).sequences[0])
    # bar 1: eighths (6 steps); after [L:1/4]: quarters (12), and c4 is a whole note (48)
    assert notes == [(60, 6), (62, 6), (64, 6), (65, 6), (67, 6), (69, 6), (71, 6), (72, 6),
                     (60, 12), (62, 12), (64, 12), (65, 12), (72, 48)]
    assert onsets(notes)[8:] == [48, 60, 72, 84, 96]


@pytest.mark.music21
def test_inline_and_line_key_changes_set_the_accidentals_and_the_key(tmp_path, music21):
    abc = "X:2\nT:Keys\nM:4/4\nL:1/8\nQ:1/4=120\nK:C\nF2 B2 [K:G] F2 B2|[K:Bb] F2 B2 E2 e2|\nK:clef=bass\nB2 F2 z4|\n"
    ns = midi_io.read_music_file(write(tmp_path, "keys.abc", abc)).sequences[0]
    # C: F B; G: F# B; Bb: F Bb Eb eb; a K: naming only a clef keeps B-flat major
    assert melody_notes(ns) == [(65, 12), (71, 12), (66, 12), (71, 12), (65, 12), (70, 12), (63, 12), (75, 12),
                                (70, 12), (65, 12), (R, 24)]
    # quarters at 120 qpm are 0.5 s: G major from the third quarter, B-flat major from the fifth
    assert [(k.time, k.key, k.mode) for k in ns.key_signatures] == [(0, 0, 0), (1.0, 7, 0), (2.0, 10, 0)]


@pytest.mark.music21
def test_a_multi_bar_rest_is_that_many_bars_of_the_meter_in_force(tmp_path, music21):
    abc = "X:3\nT:Rests\nM:3/4\nL:1/8\nK:C\nC2 D2 E2|Z2|F6|[M:2/4] G4|Z|A4|\n"
    ns = midi_io.read_music_file(write(tmp_path, "rests.abc", abc)).sequences[0]
    pitched = []
    for melody in note_sequence_to_melodies(ns, 12).melodies:  # one per meter
        notes = [(n.pitch, n.duration_steps) for n in melody.notes]
        pitched.append([(pitch, onset) for (pitch, _), onset in zip(notes, onsets(notes)) if pitch != R])
    # a 3/4 bar is 36 steps: Z2 is 72 steps, so F starts at 36 + 72; in 2/4 (bars of 24), Z is 24 steps
    assert pitched == [[(60, 0), (62, 12), (64, 24), (65, 108)], [(67, 0), (69, 48)]]
    # a Z among notes (O'Neill's "G4 Z2|" in 3/4) is a typo for z: the bar adds up with it
    typo = "X:4\nT:Typo\nM:3/4\nL:1/8\nK:C\nG4 Z2|A6|\n"
    notes = melody_notes(midi_io.read_music_file(write(tmp_path, "typo.abc", typo)).sequences[0])
    assert notes == [(67, 24), (R, 12), (69, 36)]
    free = "X:5\nT:Free\nM:none\nL:1/8\nK:C\nCDEF|Z|GABc|\n"
    with pytest.raises(InputFileError) as refused:
        midi_io.read_music_file(write(tmp_path, "free.abc", free), reader="music21")
    assert refused.value.reason == ("no readable ABC tune: a multi-bar rest (Z) with no meter or note length in "
                                    "force (X:5 'Free')")


@pytest.mark.music21
def test_an_overlay_voice_is_left_out_and_the_first_voice_read(tmp_path, music21):
    abc = "X:6\nT:Overlay\nM:2/4\nL:1/8\nK:C\nCDEF & cdef|G4 & g2 a2:|\n"
    notes = melody_notes(midi_io.read_music_file(write(tmp_path, "overlay.abc", abc)).sequences[0])
    assert notes == [(60, 6), (62, 6), (64, 6), (65, 6), (67, 24)]


@pytest.mark.music21
def test_an_unclosed_chord_skips_its_tune_with_the_reason(tmp_path, music21):
    abc = ("X:7\nT:Unclosed\nM:4/4\nL:1/8\nK:G\n[GB dedB|G8|]\n\n"
           "X:8\nT:Wrapped\nM:2/4\nL:1/8\nK:D\n[A2f\n2] [F2d2]|\n")
    music = midi_io.read_music_file(write(tmp_path, "chords.abc", abc))
    # not read by note-seq either: it would guess (it reads the notes one after another)
    assert music.warnings == ("ABC tune X:7 'Unclosed' skipped: unclosed chord '[GB dedB': no ']' before the "
                              "next bar line",)
    # a chord wrapped onto the next line is one chord: [A2f2] then [F2d2], the top notes f# and d, quarters
    assert [ns.reference_number for ns in music.sequences] == [8]
    assert melody_notes(music.sequences[0]) == [(78, 12), (74, 12)]
