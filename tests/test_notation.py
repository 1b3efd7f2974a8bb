"""Notation out: ABC and MusicXML read back to the same melody, and open in music21 and verovio like the MIDI."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from fractions import Fraction

import pytest
from conftest import run_cli

from melody_plugin.generate import outputs
from melody_plugin.io import files as midi_io
from melody_plugin.music.extract import note_sequence_to_melodies
from melody_plugin.music.melody import Melody, text_to_melody
from melody_plugin.notation import abc_out, layout, musicxml_out

# name: (meter, (tonic, minor), text primer, tempo changes); each ends on a bar line
CASES = {
    "4_4_tied_across_bars": ((4, 4), (0, False), "C4:1 E4:4 G4:0.75 A4:0.25 B4:1.5 C5:0.5 D5:4", ()),
    "3_4_pickup": ((3, 4), (10, False), "R:2 Bb4:1 C5:1 D5:1 Eb5:1 F5:3 D5:2 R:1", ()),
    "6_8_triplets": ((6, 8), (2, False), "D4:1.5 E4:1/6 F#4:1/6 G4:1/6 A4:0.5 B4:0.5 C5:0.5 C#5:2 B4:1 A4:2.5", ()),
    "5_4": ((5, 4), (9, True), "A4:1.5 C5:0.5 E5:3 D5:2 B4:1 G#4:1 A4:1", ()),
    "flats_f_minor": ((4, 4), (5, True), "F4:1 Ab4:0.5 Bb4:0.5 C5:1 Db5:1 E4:2 F4:2", ()),
    "sharps_e_major": ((4, 4), (4, False), "E4:1 F#4:1 G#4:0.5 A4:0.5 B4:1 C#5:1 D#5:1 G5:1 F#5:1 E5:4", ()),
    "4_4_two_note_triplet_and_sextuplet": ((4, 4), (0, False), "C5:1/3 D5:2/3 E5:1/6 F5:1/6 G5:1/6 A5:1/2 B5:2 C6:4",
                                           ()),
    "quarter_triplets_and_tempo_change": ((2, 4), (7, False), "G4:2/3 A4:2/3 B4:2/3 D5:2 C5:1 B4:1", ((24, 90.0),)),
}


def case_melody(name: str) -> Melody:
    meter, (key, minor), text, tempos = CASES[name]
    notes = text_to_melody(text, time_signature=meter).notes
    return Melody(notes, 12, meter, 96.0, key, minor, tempos)


def read_back(path) -> Melody:
    """The file through our own reader (music21 first when installed, as every command reads)."""
    music = midi_io.read_music_file(path)
    return note_sequence_to_melodies(music.sequences[0]).melodies[-1]


# --- round trips through our readers


@pytest.mark.music21
@pytest.mark.parametrize("fmt", ["abc", "musicxml"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_written_file_reads_back_to_the_same_melody(tmp_path, name, fmt):
    melody = case_melody(name)
    path = tmp_path / f"{name}.{fmt}"
    (abc_out.write_abc if fmt == "abc" else musicxml_out.write_musicxml)(melody, path, name)
    back = read_back(path)
    assert back.notes == melody.notes
    assert back.time_signature == melody.time_signature
    assert (back.key, back.minor) == (melody.key, melody.minor)
    assert back.qpm == melody.qpm
    assert back.tempo_changes == melody.tempo_changes


# --- the text itself, counted by hand


def abc_bars(text: str) -> list[str]:
    body = "\n".join(line for line in text.splitlines() if not re.match(r"^[A-Za-z]:", line))
    return [b.strip() for b in re.split(r"\|\]?", body) if b.strip()]


def test_abc_header_and_bars_of_a_pickup_tune():
    text = abc_out.melody_to_abc(case_melody("3_4_pickup"), title="Pickup")
    assert text.splitlines()[:6] == ["X:1", "T:Pickup", "M:3/4", "L:1/8", "Q:1/4=96", "K:Bb"]
    bars = abc_bars(text)
    assert bars[0] == "B2"  # the pickup: one quarter, the two beats of rest left out
    assert len(bars) == 4 and text.rstrip().endswith("|]")
    assert "(3" not in text and "_" not in text  # Bb and Eb come from the key signature


def test_abc_ties_a_note_across_the_bar_line():
    bars = abc_bars(abc_out.melody_to_abc(case_melody("4_4_tied_across_bars")))
    assert bars[0].endswith("E6-")  # E4 from beat 2: three quarters, tied on
    assert bars[1].startswith("E2")  # and one more quarter
    assert len(bars) == 3


def test_abc_triplets_in_6_8_and_quarter_triplets_in_2_4():
    sixteenths = abc_out.melody_to_abc(case_melody("6_8_triplets"))
    assert "(3E/F/G/" in sixteenths  # three sixteenths in the time of two (F# from K:D)
    quarters = abc_out.melody_to_abc(case_melody("quarter_triplets_and_tempo_change"))
    assert "(3G2 A2 B2" in quarters  # three quarters in the time of two (not beamed)
    assert "[Q:1/4=90]" in quarters
    others = abc_out.melody_to_abc(case_melody("4_4_two_note_triplet_and_sextuplet"))
    assert "(3:2:2c d2" in others  # a triplet eighth then a triplet quarter: two notes under the 3
    assert "(6:4:4e/f/g/a3/2" in others  # sixteenth sextuplet: three of them, then a dotted one


def test_abc_writes_accidentals_outside_the_key_and_again_after_a_bar_line():
    text = abc_out.melody_to_abc(case_melody("sharps_e_major"))
    assert "K:E" in text and "=g" in text  # G natural in E major
    minor = abc_out.melody_to_abc(case_melody("5_4"))
    assert "K:Am" in minor and "^G" in minor  # the raised seventh


def test_musicxml_holds_the_measures_ties_tuplets_and_key_counted_by_hand():
    root = ET.fromstring(musicxml_out.melody_to_musicxml(case_melody("6_8_triplets")).split("\n", 2)[2])
    measures = root.findall("./part/measure")
    assert len(measures) == 3
    assert root.find(".//key/fifths").text == "2"
    assert (root.find(".//time/beats").text, root.find(".//time/beat-type").text) == ("6", "8")
    tuplet_notes = root.findall(".//note[time-modification]")
    assert len(tuplet_notes) == 3 and {n.find("duration").text for n in tuplet_notes} == {"2"}
    assert len(root.findall(".//note/tie[@type='start']")) == 2  # B4 over bar 2-3, A4 as half + eighth
    pickup = ET.fromstring(musicxml_out.melody_to_musicxml(case_melody("3_4_pickup")).split("\n", 2)[2])
    first = pickup.find("./part/measure")
    assert first.get("implicit") == "yes" and first.get("number") == "0"
    assert pickup.find(".//key/fifths").text == "-2"


@pytest.mark.parametrize("pitch, key, minor, expected", [
    (61, 2, True, ("C", 1, 4)),  # the leading tone of D minor is C#
    (63, 10, False, ("E", -1, 4)),  # Eb in Bb major
    (75, 4, False, ("D", 1, 5)),  # D# in E major
    (60, 2, False, ("C", 0, 4)),  # C natural in D major, not B#
    (70, 0, False, ("B", -1, 4)),  # Bb in C major
    (59, 5, True, ("B", 0, 3)),  # B natural in F minor (4 flats)
])
def test_pitches_are_spelled_in_the_key(pitch, key, minor, expected):
    assert layout.spell(pitch, key, minor) == expected


def test_lengths_split_into_written_values():
    assert layout.split_value(Fraction(5, 4)) == [1, Fraction(1, 4)]
    assert layout.split_value(Fraction(3, 2)) == [Fraction(3, 2)]  # a dotted quarter
    assert layout.split_value(Fraction(5, 2)) == [2, Fraction(1, 2)]


# --- melody_generate --format / --render=score, against the MIDI it writes


def midi_facts(path):
    """(notes as (pitch, onset quarters, length quarters), (num, den), bars), read with mido alone."""
    import mido

    mid = mido.MidiFile(path)
    notes, meter, end = [], None, 0
    for track in mid.tracks:
        tick, sounding = 0, {}
        for msg in track:
            tick += msg.time
            if msg.type == "time_signature" and meter is None:
                meter = (msg.numerator, msg.denominator)
            if msg.type == "note_on" and msg.velocity > 0:
                sounding[msg.note] = tick
            elif msg.type in ("note_on", "note_off") and msg.note in sounding:
                start, ppq = sounding.pop(msg.note), mid.ticks_per_beat
                notes.append((msg.note, Fraction(start, ppq), Fraction(tick - start, ppq)))
        end = max(end, tick)
    bar_quarters = Fraction(4 * meter[0], meter[1])
    return sorted(notes, key=lambda n: n[1]), meter, Fraction(end, mid.ticks_per_beat) / bar_quarters


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Two outputs of the shipped model in 3/4 with every format and the score."""
    out = tmp_path_factory.mktemp("notation_out")
    proc = run_cli("melody_generate", "--primer_melody=D4:1 F#4:0.5 A4:0.5 D5:1 C#5:1 A4:2", "--time_signature=3/4",
                   "--num_bars=4", "--num_outputs=2", "--seed=7", "--format=mid,abc,musicxml", f"--output_dir={out}",
                   *(["--render=score"] if _has("verovio") else []))
    assert proc.returncode == 0, proc.stderr
    return out


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_format_writes_each_file_asked_for(generated):
    for n in (1, 2):
        for suffix in (".mid", ".abc", ".musicxml", ".json"):
            assert (generated / f"melody_{n:03d}{suffix}").is_file()


@pytest.mark.notation
def test_the_summary_names_every_file_written_beside_each_output(tmp_path):
    pytest.importorskip("verovio", reason="pip install -e '.[notation]'")
    proc = run_cli("melody_generate", "--primer_melody=C4:1 E4:1", "--num_bars=2", "--format=mid,abc",
                   "--render=score,png", f"--output_dir={tmp_path}", "--seed=1")
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.strip().startswith("each with "))
    named = set(line.strip().removeprefix("each with ").removesuffix(" beside it").split(", "))
    written = {p.name.removeprefix("melody_001") for p in tmp_path.iterdir()} - {".mid"}
    assert named == written and {".score.svg", ".png", ".abc", ".json"} <= written


def test_format_abc_alone_writes_no_midi(tmp_path):
    proc = run_cli("melody_generate", "--primer_melody=C4:1 E4:1", "--num_bars=2", "--format=abc",
                   f"--output_dir={tmp_path}", "--seed=1")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".abc", ".json"]
    assert "melody_001.abc" in proc.stdout


def test_unknown_format_is_one_line(tmp_path):
    proc = run_cli("melody_generate", "--format=mid,pdf", f"--output_dir={tmp_path}")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("melody_generate: error: --format: unknown format(s) pdf; choose from mid, abc, "
                                   "musicxml")


@pytest.mark.music21
@pytest.mark.parametrize("suffix", [".abc", ".musicxml"])
def test_music21_reads_the_same_notes_bars_and_meter_as_the_midi(generated, suffix):
    import music21

    for n in (1, 2):
        notes, meter, bars = midi_facts(generated / f"melody_{n:03d}.mid")
        score = music21.converter.parse(str(generated / f"melody_{n:03d}{suffix}"), forceSource=True)
        part = score.parts[0]
        read = [(p.pitch.midi, Fraction(p.offset), Fraction(p.quarterLength))
                for p in part.stripTies().flatten().notes]
        assert read == notes
        signature = part.recurse().getElementsByClass("TimeSignature")[0]
        assert (signature.numerator, signature.denominator) == meter
        assert len(part.getElementsByClass("Measure")) == bars


@pytest.mark.notation
@pytest.mark.parametrize("suffix", [".abc", ".musicxml"])
def test_verovio_engraves_the_same_notes_bars_and_meter_as_the_midi(generated, suffix):
    import mido
    import verovio

    for n in (1, 2):
        notes, meter, bars = midi_facts(generated / f"melody_{n:03d}.mid")
        toolkit = verovio.toolkit()
        assert toolkit.loadFile(str(generated / f"melody_{n:03d}{suffix}"))
        svg = toolkit.renderToSVG(1)
        assert svg.count('class="measure"') == bars
        assert re.findall(r'<meterSig[^>]*count="(\d+)" unit="(\d+)"', toolkit.getMEI()) == [tuple(map(str, meter))]
        played = mido.MidiFile(file=io.BytesIO(base64.b64decode(toolkit.renderToMIDI())))
        onsets, tick = [], 0
        for msg in mido.merge_tracks(played.tracks):
            tick += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                onsets.append((msg.note, Fraction(tick, played.ticks_per_beat)))
        assert onsets == [(pitch, start) for pitch, start, _ in notes]


@pytest.mark.notation
def test_render_score_draws_the_bars_and_colours_the_continuation(generated):
    svg = (generated / "melody_001.score.svg").read_text()
    _, _, bars = midi_facts(generated / "melody_001.mid")
    assert svg.count('class="measure"') == bars
    assert "continuation" in svg and musicxml_out.CONTINUATION_COLOR in svg
    # notes drawn minus tie continuations are the MIDI's notes
    notes, _, _ = midi_facts(generated / "melody_001.mid")
    assert svg.count('class="note"') - svg.count('class="tie"') == len(notes)


def test_render_score_without_verovio_names_the_install_command(monkeypatch):
    from melody_plugin.notation import score

    monkeypatch.setattr(score, "available", lambda: False)
    with pytest.raises(score.ScoreError, match=r'pip install "melody_plugin\[notation\]"'):
        outputs.parse_render("png,score")


def test_plain_melody_generate_imports_no_notation_or_server_code(tmp_path):
    """Start-up does not grow: without --format/--render=score, nothing of notation/, verovio or the studio loads."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "melody_plugin.cli.melody_generate",
                           "--num_bars=1", f"--output_dir={tmp_path}", "--seed=1"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "melody_plugin.generate.outputs" in imported  # the log is the one we think it is
    for module in ("melody_plugin.notation", "verovio", "music21", "melody_plugin.studio", "starlette", "uvicorn"):
        assert module not in imported
