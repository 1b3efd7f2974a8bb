"""Melody -> form figures: keys, endings and repeats against values counted by hand from the notes, and the key
finder against a separate numpy computation.

Melodies are on the default grid of 12 steps per quarter: a quarter is 12 steps, a half 24, an eighth 6; a bar of
4/4 is 48 steps, of 3/4 36, of 6/8 36.
"""

import json

import numpy as np
import pytest
from conftest import run_cli, write_quarters_file

from melody_plugin.errors import InputFileError
from melody_plugin.evaluate import form
from melody_plugin.music.melody import REST, Melody, Note

C4, D4, E4, F4, G4, A4, B4 = 60, 62, 64, 65, 67, 69, 71
C5, D5, E5, F5, G5 = 72, 74, 76, 77, 79

MAJOR = [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]
MINOR = [6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17]


def _melody(notes, time_signature=(4, 4), key=0, minor=False):
    return Melody(tuple(Note(p, d) for p, d in notes), 12, time_signature, 120.0, key, minor)


# the C major scale up in quarters, then G E and a half-note C: ends on the tonic, on a note of two beats
C_MAJOR_TUNE = _melody([(C4, 12), (D4, 12), (E4, 12), (F4, 12), (G4, 12), (A4, 12), (B4, 12), (C5, 12),
                        (G4, 12), (E4, 12), (C4, 24)])
# A natural minor, weighted on A (36 steps), C (24) and E; ends on an eighth-note E: not the tonic, not a beat long
A_MINOR_TUNE = _melody([(A4, 12), (C5, 12), (E5, 12), (A4, 12), (C5, 12), (A4, 12), (B4, 12), (D5, 6), (E5, 6)])


def _numpy_key(melody):
    """Krumhansl-Schmuckler written out separately: np.corrcoef of the weighted pitch classes with each profile."""
    weights = np.zeros(12)
    for n in melody.notes:
        if n.pitch != REST:
            weights[n.pitch % 12] += n.duration_steps
    best = None
    for tonic in range(12):
        for minor, profile in ((False, MAJOR), (True, MINOR)):
            rotated = [profile[(pc - tonic) % 12] for pc in range(12)]  # the tonic's pitch class gets profile[0]
            r = np.corrcoef(weights, rotated)[0, 1]
            if best is None or r > best[2] + 1e-9:
                best = (tonic, minor, r)
    return best


def test_c_major_scale_tune_is_in_c_major_and_ends_on_its_tonic():
    key = form.find_key(C_MAJOR_TUNE)
    assert (key.tonic, key.minor, key.name) == (0, False, "C major")
    assert form.last_note(C_MAJOR_TUNE) == Note(C4, 24)
    assert form.ends_on_tonic(C_MAJOR_TUNE) is True
    assert form.long_ending(C_MAJOR_TUNE) is True


def test_a_minor_tune_ending_on_e_is_in_a_minor_and_not_on_the_tonic():
    key = form.find_key(A_MINOR_TUNE)
    assert (key.tonic, key.minor, key.name) == (9, True, "A minor")
    assert form.ends_on_tonic(A_MINOR_TUNE) is False
    assert form.long_ending(A_MINOR_TUNE) is False  # an eighth in 4/4


def test_key_finder_matches_a_separate_numpy_computation():
    rng = np.random.default_rng(7)
    melodies = [C_MAJOR_TUNE, A_MINOR_TUNE, PICKUP_TUNE, _tune(AABB)]
    for _ in range(30):
        size = int(rng.integers(1, 20))
        pitches = rng.integers(48, 84, size)
        pitches[rng.random(size) < 0.2] = REST
        melodies.append(_melody([(int(p), int(d)) for p, d in zip(pitches, rng.integers(1, 49, size))]))
    for melody in melodies:
        if all(n.is_rest for n in melody.notes):
            continue
        tonic, minor, r = _numpy_key(melody)
        key = form.find_key(melody)
        assert (key.tonic, key.minor) == (tonic, minor)
        assert key.correlation == pytest.approx(r)


def test_key_ignores_the_key_signature_and_rests():
    as_if_a_minor = _melody([(REST, 48)] + [(n.pitch, n.duration_steps) for n in C_MAJOR_TUNE.notes],
                            key=9, minor=True)
    assert form.find_key(as_if_a_minor) == form.find_key(C_MAJOR_TUNE)


def test_no_sounding_note_has_no_key_and_no_ending():
    silent = _melody([(REST, 48)])
    assert form.find_key(silent) is None and form.last_note(silent) is None
    assert form.ends_on_tonic(silent) is None and form.long_ending(silent) is None
    figures = form.form_figures(silent)
    assert (figures["tonic_ending"], figures["long_ending"], figures["bars"]) == (None, None, 1.0)


def test_all_twelve_pitch_classes_alike_fit_no_key_and_c_major_wins_the_tie():
    chromatic = _melody([(p, 12) for p in range(60, 72)])
    assert form.find_key(chromatic) == form.Key(0, False, 0.0)


@pytest.mark.parametrize("time_signature, steps", [
    ((4, 4), 12), ((3, 4), 12), ((2, 4), 12), ((2, 2), 24), ((3, 2), 24),
    ((6, 8), 18), ((9, 8), 18), ((12, 8), 18), ((3, 8), 6), ((5, 8), 6), ((7, 8), 6),
])
def test_beat_is_the_denominator_or_three_of_them_in_compound_meters(time_signature, steps):
    assert form.beat_steps(_melody([(C4, 6)], time_signature)) == steps


def test_6_8_tune_ending_on_a_dotted_quarter_is_long_and_on_an_eighth_is_not():
    start = [(D4, 18), (E4, 6), (F4 + 1, 6), (G4, 6), (A4, 18)]  # D major: D, E F# G, A
    assert form.long_ending(_melody(start + [(D4, 18)], (6, 8))) is True
    # the trailing rest is skipped: the last sounding note is the eighth
    assert form.long_ending(_melody(start + [(D4, 6), (REST, 12)], (6, 8))) is False
    assert form.long_ending(_melody(start + [(D4, 12), (REST, 6)], (6, 8))) is False  # a quarter: 2/3 of a beat


# A 3/4 tune with a two-beat rest before a pickup G: |R R G|C E G|F- D|C E G|F- G|C--|
PICKUP_TUNE = _melody([(REST, 24), (G4, 12), (C5, 12), (E5, 12), (G5, 12), (F5, 24), (D5, 12),
                       (C5, 12), (E5, 12), (G5, 12), (F5, 24), (G4, 12), (C5, 36)], (3, 4))


def test_3_4_tune_with_a_pickup():
    # 2 bars back: bars 2-5 hold F D | C E G | F G | C (8 notes); C E G replay bar 1 and F replays bar 2's F
    # (same half note); D has the pickup G 2 bars back, the closing G has D, the dotted-half C a quarter C: 4 of 8.
    # 4 bars back: F G C of bars 4-5 against bars 0-1: F has the rest, G the pickup G (1 of 3).
    figures = form.form_figures(PICKUP_TUNE)
    assert figures == {"tonic_ending": 1, "long_ending": 1, "repeat_2": 0.5, "repeat_4": pytest.approx(1 / 3),
                       "repeat_8": None, "bars": 6.0}
    assert form.find_key(PICKUP_TUNE).name == "C major"


# Bars of four quarters unless noted: a = C D E F, b = G F E D, c = E C (halves), d = A G F E, e = F E D C,
# f = F E G (G a half: its first two notes are e's), g = C (a whole note).
BARS = {
    "a": [(C4, 12), (D4, 12), (E4, 12), (F4, 12)],
    "b": [(G4, 12), (F4, 12), (E4, 12), (D4, 12)],
    "c": [(E4, 24), (C4, 24)],
    "d": [(A4, 12), (G4, 12), (F4, 12), (E4, 12)],
    "e": [(F4, 12), (E4, 12), (D4, 12), (C4, 12)],
    "f": [(F4, 12), (E4, 12), (G4, 24)],
    "g": [(C4, 48)],
}
# 16 bars, A A B B': phrase A = a b a c twice, phrase B = d e d f, then d e a g
AABB = "abac" "abac" "dedf" "deag"


def _tune(letters):
    return _melody([note for letter in letters for note in BARS[letter]])


def test_repeat_shares_of_an_aabb_tune_counted_by_hand():
    # 2 bars back, bars 2-15 (48 notes): bars 2, 4, 6 (a after a), 10 and 12 (d after d) replay all 4 notes,
    # bar 11 (f after e) and bar 13 (e after f) 2 each, nothing else: 24 of 48.
    # 4 bars back, bars 4-15 (42 notes): 4-7 (a b a c after a b a c: 14 notes), 12 and 13 (d e after d e): 22.
    # 8 bars back, bars 8-15 (28 notes): only bar 14 (a after bar 6's a): 4.
    tune = _tune(AABB)
    assert tune.total_steps == 16 * 48
    assert form.repeat_shares(tune) == pytest.approx({2: 24 / 48, 4: 22 / 42, 8: 4 / 28})
    figures = form.form_figures(tune)
    assert (figures["repeat_2"], figures["repeat_4"], figures["repeat_8"]) == pytest.approx((1 / 2, 11 / 21, 1 / 7))
    assert figures["bars"] == 16.0
    assert (figures["tonic_ending"], figures["long_ending"]) == (1, 1)  # C major (checked below), a whole-note C
    assert form.find_key(tune).name == "C major"


def test_repeat_shares_from_a_start_step_and_on_a_short_tune():
    # from bar 12: d after d (4 of 4), e after f (2 of 4), a after d (0 of 4), g after e (0 of 1): 6 of 13
    assert form.repeat_shares(_tune(AABB), (2,), start_step=12 * 48) == pytest.approx({2: 6 / 13})
    # four bars: nothing begins 4 or 8 bars in
    assert form.repeat_shares(_tune("abab")) == {2: 1.0, 4: None, 8: None}
    with pytest.raises(form.FormError, match="bars back must be >= 1, got 0"):
        form.repeat_shares(_tune("ab"), (0,))


def test_primer_figures_of_a_continuation():
    primer = _melody(BARS["a"] + [(G4, 24), (E4, 24)])  # C D E F | G E (halves)
    continuation = _melody(BARS["a"] + [(C4, 48)])
    figures = form.form_figures(continuation, primer)
    # pitch classes: C 2/5, D E F 1/5 each against C D F 1/6, E 2/6, G 1/6: 1/6 + 1/6 + 1/5 + 1/6
    assert figures["primer_pitch_class_overlap"] == pytest.approx(0.7)
    # intervals: +2 +2 +1 -5 against +2 +2 +1 +2 -3: min(1/2, 3/5) + min(1/4, 1/5)
    assert figures["primer_interval_overlap"] == pytest.approx(0.7)
    # lengths: quarters 4/5, a whole 1/5 against quarters 4/6, halves 2/6
    assert figures["primer_duration_overlap"] == pytest.approx(2 / 3)
    # C D E F replay the primer's first bar, the whole C is not the half G: 4 of 5
    assert figures["primer_repeat_2"] == pytest.approx(0.8)
    assert figures["repeat_2"] is None and figures["bars"] == 2.0  # the continuation alone is 2 bars
    other_grid = Melody(primer.notes, 24, (4, 4), 120.0)
    with pytest.raises(form.FormError, match="24 steps per quarter"):
        form.form_figures(continuation, other_grid)


def test_average_figures_skips_undefined_values():
    averaged = form.average_figures([{"x": 1, "y": None, "z": None}, {"x": 0, "y": 0.5, "z": None}])
    assert averaged == {"x": 0.5, "y": 0.5, "z": None, "count": 2, "defined": {"x": 2, "y": 1, "z": 0}}


# --- folders of MIDI files written with mido



def _write(path, notes, bars):
    """4/4 at 120 qpm from (pitch or None, quarters), written by mido; the file ends after `bars` bars."""
    write_quarters_file(path, notes, bars)


# C major, 2 bars, ends on a half-note C; A minor, 2 bars, ends on an eighth-note E
TUNE_C = [(C4, 1), (D4, 1), (E4, 1), (F4, 1), (G4, 1), (E4, 1), (C4, 2)]
TUNE_A = [(A4, 1), (C5, 1), (E5, 1), (A4, 1), (C5, 1), (A4, 1), (B4, 1), (D5, 0.5), (E5, 0.5)]


@pytest.fixture
def form_folders(tmp_path):
    generated, references = tmp_path / "generated", tmp_path / "references"
    _write(generated / "tune_c.mid", TUNE_C, 2)
    _write(generated / "tune_a.mid", TUNE_A, 2)
    _write(generated / "sub" / "tune_cc.mid", TUNE_C + TUNE_C, 4)  # 2 bars played twice
    (generated / "broken.mid").write_text("not a MIDI file")
    _write(references / "tune_c.mid", TUNE_C, 2)
    return generated, references


# By hand. tune_c: tonic ending, long ending, 2 bars, no repeat figure (2 bars only). tune_a: neither ending
# (E in A minor, an eighth), 2 bars. tune_cc: both endings, 4 bars, every note of bars 2-3 replays bars 0-1
# (repeat_2 = 1); nothing begins 4 or 8 bars in.
GENERATED = {"tonic_ending": 2 / 3, "long_ending": 2 / 3, "repeat_2": 1.0, "repeat_4": None, "repeat_8": None,
             "bars": 8 / 3, "count": 3}
DEFINED = {"tonic_ending": 3, "long_ending": 3, "repeat_2": 1, "repeat_4": 0, "repeat_8": 0, "bars": 3}


def test_evaluate_form_averages_a_folder_and_counts_what_it_skipped(form_folders):
    generated, references = form_folders
    result = form.evaluate_form(generated, references)
    ours = result["generated"]
    for name, value in GENERATED.items():
        assert ours[name] == pytest.approx(value), name
    assert ours["defined"] == DEFINED
    assert (ours["files"], ours["skipped"]) == (3, 1)
    assert [f["file"] for f in ours["skipped_files"]] == [str(generated / "broken.mid")]
    assert "MIDI" in ours["skipped_files"][0]["reason"]
    theirs = result["references"]
    assert (theirs["tonic_ending"], theirs["long_ending"], theirs["bars"], theirs["repeat_2"]) == (1, 1, 2, None)
    assert (theirs["files"], theirs["skipped"], theirs["skipped_files"]) == (1, 0, [])
    assert set(form.evaluate_form(generated)) == {"generated"}


def test_evaluate_form_with_nothing_readable_or_no_folder(tmp_path, form_folders):
    generated, _ = form_folders
    only_broken = tmp_path / "only_broken"
    only_broken.mkdir()
    (only_broken / "broken.mid").write_text("not a MIDI file")
    with pytest.raises(form.FormError, match=r"no melody could be read \(1 files, all skipped: broken.mid: "):
        form.evaluate_form(only_broken)
    with pytest.raises(InputFileError, match="not a folder"):
        form.evaluate_form(generated / "tune_c.mid")
    with pytest.raises(form.FormError, match="polyphony policy"):
        form.evaluate_form(generated, policy="loudest")


def test_melody_evaluate_form(form_folders):
    generated, references = form_folders
    proc = run_cli("melody_evaluate", f"--form={generated}", f"--references={references}", check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result) == {"generated", "references"}
    for name, value in GENERATED.items():
        assert result["generated"][name] == (None if value is None else round(value, 4)), name
    assert result["generated"]["skipped"] == 1 and result["references"]["files"] == 1
    alone = run_cli("melody_evaluate", f"--form={generated}", check=True)
    assert set(json.loads(alone.stdout.strip().splitlines()[-1])) == {"generated"}
    bad = run_cli("melody_evaluate", f"--form={generated}", f"--input={references}")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("melody_evaluate: error: --form measures files on their own")
