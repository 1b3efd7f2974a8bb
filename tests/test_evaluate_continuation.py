"""Melody vs melody: every histogram, overlap and bar cut against values written out by hand from the notes.

Melodies are on the default grid of 12 steps per quarter: a quarter is 12 steps, a half 24, an eighth 6.
"""

import json

import numpy as np
import pytest
from conftest import run_cli, write_mido_file, write_quarters_file

from melody_plugin.evaluate import continuation
from melody_plugin.evaluate import scoring as evaluate
from melody_plugin.generate.generator import MelodyGenerator
from melody_plugin.generate.sampler import SamplingOptions
from melody_plugin.model import registry
from melody_plugin.music.melody import REST, Melody, Note
from melody_plugin.tokens.vocab import Vocabulary

C4, D4, E4, F4, G4, A4, B4, C6 = 60, 62, 64, 65, 67, 69, 71, 84


def _melody(notes, time_signature=(4, 4), qpm=120.0, tempo_changes=()):
    return Melody(tuple(Note(p, d) for p, d in notes), 12, time_signature, qpm, tempo_changes=tempo_changes)


def _pairs(melody):
    return [(n.pitch, n.duration_steps) for n in melody.notes]


# C D E F in quarters, and C C G (quarter, quarter, half): one bar of 4/4 each
CDEF = _melody([(C4, 12), (D4, 12), (E4, 12), (F4, 12)])
CCG = _melody([(C4, 12), (C4, 12), (G4, 24)])


def test_histograms_of_c_d_e_f_and_c_c_g():
    assert continuation.pitch_class_histogram(CDEF) == {0: 0.25, 2: 0.25, 4: 0.25, 5: 0.25}
    assert continuation.pitch_class_histogram(CCG) == pytest.approx({0: 2 / 3, 7: 1 / 3})
    assert continuation.interval_histogram(CDEF) == pytest.approx({1: 1 / 3, 2: 2 / 3})  # +2 +2 +1
    assert continuation.interval_histogram(CCG) == {0: 0.5, 7: 0.5}
    assert continuation.duration_histogram(CDEF) == {12: 1.0}
    assert continuation.duration_histogram(CCG) == pytest.approx({12: 2 / 3, 24: 1 / 3})


def test_compare_c_d_e_f_with_c_c_g():
    scores = continuation.compare(CCG, CDEF)
    assert scores == pytest.approx({
        "pitch_class_overlap": 0.25,  # only C in common: min(2/3, 1/4)
        "interval_overlap": 0.0,  # {0, +7} against {+1, +2}
        "duration_overlap": 2 / 3,  # quarters: min(2/3, 1)
        "notes_per_bar": 3.0,
        "reference_notes_per_bar": 4.0,
        "notes_per_bar_error": 1.0,
    })
    assert continuation.compare(CDEF, CDEF)["pitch_class_overlap"] == 1.0


def test_rests_are_skipped_and_wide_intervals_clipped():
    # C4, rest, E4, C6, C4: intervals +4 (over the rest), +20 -> +12, -24 -> -12; rests in no histogram
    melody = _melody([(C4, 6), (REST, 6), (E4, 12), (C6, 12), (C4, 12)])
    assert continuation.interval_histogram(melody) == pytest.approx({-12: 1 / 3, 4: 1 / 3, 12: 1 / 3})
    assert continuation.pitch_class_histogram(melody) == pytest.approx({0: 3 / 4, 4: 1 / 4})
    assert continuation.duration_histogram(melody) == pytest.approx({6: 1 / 4, 12: 3 / 4})
    assert continuation.notes_per_bar(melody) == 4.0  # 48 steps = 1 bar, 4 onsets


def test_histograms_take_plain_note_lists():
    notes = [Note(D4, 12), Note(REST, 12), Note(D4 + 12, 24)]  # an octave leap over a rest
    assert continuation.interval_histogram(notes) == {12: 1.0}
    assert continuation.pitch_class_histogram(notes) == {2: 1.0}


def test_overlap_of_empty_histograms():
    assert continuation.overlap({}, {}) == 1.0  # nothing against nothing
    assert continuation.overlap({}, {0: 1.0}) == 0.0
    assert continuation.overlap({0: 1.0}, {}) == 0.0
    silence = _melody([(REST, 48)])
    assert continuation.compare(silence, CDEF)["pitch_class_overlap"] == 0.0
    assert continuation.notes_per_bar(silence) == 0.0


def test_score_tune_averages_its_continuations():
    scores = continuation.score_tune([CCG, CDEF], CDEF)
    assert scores["pitch_class_overlap"] == pytest.approx((0.25 + 1) / 2)
    assert scores["interval_overlap"] == pytest.approx(0.5)
    assert scores["duration_overlap"] == pytest.approx((2 / 3 + 1) / 2)
    assert scores["notes_per_bar"] == pytest.approx(3.5)
    assert scores["notes_per_bar_error"] == pytest.approx(0.5)


def test_compare_refuses_different_grids():
    other = Melody((Note(C4, 4),), 4)
    with pytest.raises(continuation.ContinuationError, match="steps per quarter"):
        continuation.compare(other, CDEF)


# --- bar cuts, one meter each

def test_split_in_4_4_cuts_a_held_note_at_the_bar_line():
    # bar 1: C half, D from beat 3 held 3 beats (into bar 2); bar 2: E from beat 2, 3 beats; then F
    melody = _melody([(C4, 24), (D4, 36), (E4, 36), (F4, 12)])
    primer, reference = continuation.split_primer_reference(melody, 1, 1)
    assert _pairs(primer) == [(C4, 24), (D4, 24)]
    assert _pairs(reference) == [(REST, 12), (E4, 36)]  # D's tail is no new onset


def test_split_in_3_4():
    # bars of 36 steps: C dotted half | D quarter, E half | G dotted half | A dotted half
    melody = _melody([(C4, 36), (D4, 12), (E4, 24), (G4, 36), (A4, 36)], time_signature=(3, 4))
    primer, reference = continuation.split_primer_reference(melody, 2, 1)
    assert _pairs(primer) == [(C4, 36), (D4, 12), (E4, 24)]
    assert _pairs(reference) == [(G4, 36)]
    assert primer.time_signature == reference.time_signature == (3, 4)


def test_split_in_6_8_keeps_a_pickup_bar_and_drops_a_silent_bar():
    # a silent bar, then a pickup bar (5 eighths of rest, one eighth D), then two bars of 6/8 (36 steps each)
    pickup_and_tune = [(REST, 30), (D4, 6), (E4, 18), (F4, 18), (G4, 36), (A4, 12), (B4, 24)]
    for leading in ([], [(REST, 36)]):
        melody = _melody(leading + pickup_and_tune, time_signature=(6, 8))
        primer, reference = continuation.split_primer_reference(melody, 1, 2)
        assert _pairs(primer) == [(REST, 30), (D4, 6)]
        assert _pairs(reference) == [(E4, 18), (F4, 18), (G4, 36)]
    # the silent bar given as one long rest: the part in the pickup bar is kept
    melody = _melody([(REST, 66)] + pickup_and_tune[1:], time_signature=(6, 8))
    assert _pairs(continuation.split_primer_reference(melody, 1, 2)[0]) == [(REST, 30), (D4, 6)]


def test_split_in_5_4_and_a_tune_too_short():
    # bars of 60 steps: five quarters | D half, E dotted half
    melody = _melody([(C4, 12)] * 5 + [(D4, 24), (E4, 36)], time_signature=(5, 4))
    primer, reference = continuation.split_primer_reference(melody, 1, 1)
    assert _pairs(primer) == [(C4, 12)] * 5
    assert _pairs(reference) == [(D4, 24), (E4, 36)]
    with pytest.raises(continuation.ContinuationError, match="too short: 2 bars, needs 3"):
        continuation.split_primer_reference(melody, 1, 2)


def test_slice_keeps_the_tempo_in_force():
    melody = _melody([(C4, 48)] * 3, qpm=120.0, tempo_changes=((48, 90.0), (100, 80.0)))
    assert continuation.slice_steps(melody, 0, 48).qpm == 120.0
    assert continuation.slice_steps(melody, 0, 48).tempo_changes == ()
    later = continuation.slice_steps(melody, 48, 144)
    assert (later.qpm, later.tempo_changes) == (90.0, ((52, 80.0),))


# --- the copy baseline

def test_copy_primer_repeats_the_bars_in_3_4():
    primer = _melody([(C4, 36), (D4, 12), (E4, 24)], time_signature=(3, 4))  # 2 bars
    copied = continuation.copy_primer(primer, 5)  # bars 1 2 1 2 1
    assert _pairs(copied) == [(C4, 36), (D4, 12), (E4, 24), (C4, 36), (D4, 12), (E4, 24), (C4, 36)]
    assert copied.total_steps == 5 * 36 and copied.time_signature == (3, 4)
    assert _pairs(continuation.copy_primer(primer, 1)) == [(C4, 36)]


def test_copy_primer_cuts_a_held_note_at_the_last_bar_line():
    # 2 bars of 4/4; D is held across the bar line (steps 36..84)
    primer = _melody([(C4, 36), (D4, 48), (E4, 12)], qpm=100.0, tempo_changes=((48, 80.0),))
    copied = continuation.copy_primer(primer, 3)
    assert _pairs(copied) == [(C4, 36), (D4, 48), (E4, 12), (C4, 36), (D4, 12)]
    assert copied.total_steps == 3 * 48
    assert (copied.qpm, copied.tempo_changes) == (80.0, ())  # the primer's final tempo, as a continuation


def test_repeated_share_counts_notes_begun_the_same_two_bars_earlier_in_3_4():
    # bars of 3/4 (36 steps): | C D E | F-- | C D G | F rest | ; the continuation starts at bar 3 (step 72)
    tune = _melody([(C4, 12), (D4, 12), (E4, 12), (F4, 36), (C4, 12), (D4, 12), (G4, 12), (F4, 12), (REST, 24)],
                   time_signature=(3, 4))
    # after step 72: C (72), D (84), G (96), F (108). Two bars back (72 steps): C at 0 yes, D at 12 yes, E at 24 is
    # not G, F at 36 is held 36 steps, not 12: 2 of 4
    assert continuation.repeated_share(tune, 72, 2) == 0.5
    # one bar back (36 steps): F-- at 36 is not C at 72; steps 48, 60 begin no note; C at 72 is not F: 0 of 4
    assert continuation.repeated_share(tune, 72, 1) == 0.0
    assert continuation.repeated_share(tune, 144, 2) == 0.0  # no note begins there
    with pytest.raises(continuation.ContinuationError, match="bars_back"):
        continuation.repeated_share(tune, 72, 0)


def test_the_copy_baseline_repeats_every_note_of_a_primer_that_ends_in_a_rest():
    primer = _melody([(C4, 36), (D4, 12), (REST, 24), (E4, 24)])  # 2 bars of 4/4; the rest counts neither way
    copy = continuation.copy_primer(primer, 4)
    full = continuation.joined(primer, copy)
    assert full.total_steps == 6 * 48 and _pairs(full)[:4] == _pairs(primer)
    assert continuation.repeated_share(full, primer.total_steps, 2) == 1.0
    # one bar back: bar 2 (rest, E) differs from bar 1 (C held, D) wherever a note begins: 0 of the 6 later notes
    assert continuation.repeated_share(full, primer.total_steps, 1) == 0.0


def test_copy_primer_needs_whole_bars():
    with pytest.raises(continuation.ContinuationError, match="whole bars"):
        continuation.copy_primer(_melody([(C4, 36)]), 2)


def test_a_cut_primer_is_continued_bar_for_bar_with_its_reference():
    """What scripts/benchmark_continuation.py relies on: the primer ends on a bar line, so a continuation of M
    bars has no leading rest and as many steps as the M-bar reference (random weights: any model will do)."""
    vocab = Vocabulary(((REST, 12), (C4, 12), (D4, 12), (E4, 24), (G4, 36)), 12)
    config = registry.with_hparams(registry.get_config("char_lstm"), "rnn_layer_sizes=[8],embedding_size=4")
    rng = np.random.default_rng(3)
    weights = {
        "embedding": rng.normal(0, 1, (len(vocab), 4)).astype(np.float32),
        "lstm_0/kernel": rng.normal(0, 0.8, (4, 32)).astype(np.float32),
        "lstm_0/recurrent_kernel": rng.normal(0, 0.8, (8, 32)).astype(np.float32),
        "lstm_0/bias": rng.normal(0, 0.5, 32).astype(np.float32),
        "logits/kernel": rng.normal(0, 1.5, (8, len(vocab))).astype(np.float32),
        "logits/bias": rng.normal(0, 0.5, len(vocab)).astype(np.float32),
    }
    generator = MelodyGenerator(config, vocab, weights, source="random")
    tune = _melody([(C4, 36), (D4, 12), (E4, 24), (G4, 36), (C4, 12), (D4, 24)] * 2, time_signature=(3, 4))
    primer, reference = continuation.split_primer_reference(tune, 2, 3)
    outputs = generator.generate(primer, num_bars=3, num_outputs=2, sampling=SamplingOptions(seed=5),
                                 continuation_only=True)
    for g in outputs:
        assert g.primer_steps == 0 and g.melody.total_steps == reference.total_steps == 3 * 36
        assert 0.0 <= continuation.compare(g.melody, reference)["interval_overlap"] <= 1.0


def test_a_model_told_to_repeat_two_bars_back_scores_exactly_as_the_copy_baseline():
    """Any model (random weights) under a repetition prior strong enough to copy the bars two back plays the
    copy baseline's notes, so its figures are the baseline's (up to the rounding of averaging 3 outputs)."""
    vocab = Vocabulary(((REST, 12), (C4, 12), (D4, 12), (E4, 24), (G4, 36)), 12)
    config = registry.with_hparams(registry.get_config("char_lstm"), "rnn_layer_sizes=[8],embedding_size=4")
    rng = np.random.default_rng(4)
    shapes = {"embedding": (len(vocab), 4), "lstm_0/kernel": (4, 32), "lstm_0/recurrent_kernel": (8, 32),
              "lstm_0/bias": (32,), "logits/kernel": (8, len(vocab)), "logits/bias": (len(vocab),)}
    generator = MelodyGenerator(config, vocab, {k: rng.normal(0, 1, v).astype(np.float32) for k, v in shapes.items()},
                                source="random")
    # five bars of 3/4, every note a vocabulary token: C D C | E - rest | G-- | D E- | C C C
    tune = _melody([(C4, 12), (D4, 12), (C4, 12), (E4, 24), (REST, 12), (G4, 36), (D4, 12), (E4, 24)]
                   + [(C4, 12)] * 3, time_signature=(3, 4))
    primer, reference = continuation.split_primer_reference(tune, 2, 3)
    copy = continuation.copy_primer(primer, 3)
    copied = continuation.score_tune([copy], reference)
    prior = SamplingOptions(seed=2, repetition=60.0, repetition_bars=2)
    repeated = generator.generate(primer, num_bars=3, num_outputs=3, sampling=prior, continuation_only=True)
    assert all(g.melody.notes == copy.notes for g in repeated)
    assert continuation.score_tune([g.melody for g in repeated], reference) == pytest.approx(copied, rel=1e-12)
    free = generator.generate(primer, num_bars=3, num_outputs=3, sampling=SamplingOptions(seed=2),
                              continuation_only=True)
    assert continuation.score_tune([g.melody for g in free], reference) != copied


# --- melody_evaluate --generated --references, on MIDI files written with mido

Q = 480  # ticks per quarter


def _write(path, notes):
    """One bar of 4/4 at 120 qpm from (pitch or None, quarters), written by mido; the file ends on the bar line."""
    write_quarters_file(path, notes)


@pytest.fixture
def folders(tmp_path):
    gen, refs = tmp_path / "generated", tmp_path / "references"
    _write(refs / "tune_a.mid", [(C4, 1), (D4, 1), (E4, 1), (F4, 1)])
    _write(refs / "tune_b.mid", [(G4, 2), (A4, 2)])
    _write(refs / "tune_c.mid", [(C4, 4)])  # nothing generated for it
    _write(gen / "tune_a_cont_001.mid", [(C4, 1), (C4, 1), (G4, 2)])
    _write(gen / "tune_a_cont_002.mid", [(C4, 1), (D4, 1), (E4, 1), (F4, 1)])  # the reference itself
    _write(gen / "tune_b.mid", [(G4, 1), (None, 1), (B4, 2)])
    _write(gen / "stray.mid", [(C4, 4)])  # no reference of this name
    (gen / "tune_b_cont_001.mid").write_text("not a MIDI file")
    return gen, refs


# By hand. tune_a: against C D E F, C C G scores pitch classes 1/4, intervals 0, durations 2/3, 3 notes/bar, and
# C D E F scores 1, 1, 1, 4 notes/bar: means 0.625, 0.5, 5/6, 3.5 (reference 4, error 0.5).
# tune_b: G, rest, B against G A (halves): pitch classes {7, 11} vs {7, 9}: 1/2; intervals {+4} vs {+2}: 0;
# durations {12, 24} vs {24}: 1/2; 2 notes/bar against 2 (error 0).
EXPECTED = {
    "pitch_class_overlap": (0.625 + 0.5) / 2,
    "interval_overlap": (0.5 + 0.0) / 2,
    "duration_overlap": (5 / 6 + 0.5) / 2,
    "notes_per_bar": (3.5 + 2) / 2,
    "reference_notes_per_bar": (4 + 2) / 2,
    "notes_per_bar_error": (0.5 + 0) / 2,
}


def test_evaluate_continuations_pairs_by_name_and_counts_what_is_missing(folders):
    gen, refs = folders
    scores = evaluate.evaluate_continuations(gen, refs)
    for name, value in EXPECTED.items():
        assert scores[name] == pytest.approx(value), name
    assert (scores["tunes"], scores["pairs"]) == (2, 3)
    assert (scores["unpaired_generated"], scores["unpaired_references"], scores["skipped"]) == (1, 1, 1)
    assert {(f["file"], f["reason"]) for f in scores["unpaired_files"]} == {
        (str(gen / "stray.mid"), "no reference of this name"),
        (str(refs / "tune_c.mid"), "no generated file of this name")}
    assert [f["file"] for f in scores["skipped_files"]] == [str(gen / "tune_b_cont_001.mid")]
    assert "MIDI" in scores["skipped_files"][0]["reason"]


def test_evaluate_continuations_says_how_files_pair_when_none_do(tmp_path):
    gen, refs = tmp_path / "outputs", tmp_path / "refs"
    _write(refs / "reel.mid", [(C4, 4)])
    _write(gen / "primer_cont_001.mid", [(C4, 4)])  # named after another primer: pairs with nothing
    with pytest.raises(evaluate.EvaluationError, match=r"0 paired, 0 skipped: files pair by name: NAME_cont_NNN"):
        evaluate.evaluate_continuations(gen, refs)


def test_evaluate_continuations_skips_the_primer_bars(folders, tmp_path):
    gen, refs = folders
    two_bars = tmp_path / "with_primer"
    two_bars.mkdir()
    # bar 1 is the primer (four Bs), bar 2 the continuation C C G
    write_mido_file(two_bars / "tune_a.mid",
                    [(B4, 0, Q), (B4, Q, 2 * Q), (B4, 2 * Q, 3 * Q), (B4, 3 * Q, 4 * Q),
                     (C4, 4 * Q, 5 * Q), (C4, 5 * Q, 6 * Q), (G4, 6 * Q, 8 * Q)], tempos=((0, 120),), end_tick=8 * Q)
    scores = evaluate.evaluate_continuations(two_bars, refs, skip_bars=1)
    assert scores["pitch_class_overlap"] == pytest.approx(0.25) and scores["notes_per_bar"] == 3.0
    # the form of the continuation C C G (after the primer B B B B): it ends on a half note G; the key of C C G,
    # by hand, is C major (C and G weigh most), so not on the tonic; nothing in common with the primer's Bs
    shape = scores["form"]
    assert shape["long_ending"] == 1 and shape["tonic_ending"] == 0 and shape["count"] == 1
    assert shape["primer_pitch_class_overlap"] == 0.0 and shape["primer_repeat_2"] is None
    with pytest.raises(evaluate.EvaluationError, match="no generated melody could be scored") as error:
        evaluate.evaluate_continuations(two_bars, refs, skip_bars=2)  # nothing left after 2 bars
    assert "1 skipped: tune_a.mid: 2 bars, nothing left after skipping 2" in str(error.value)


def test_pairing_prefers_the_exact_name():
    refs = {"reel_1": "r1", "reel": "r"}
    pairs, unpaired = evaluate.pair_by_name({"reel_1": 0, "reel_2": 0, "reel_cont_003": 0, "jig_cont_001": 0}, refs)
    assert pairs == {"reel_1": ["reel_1"], "reel": ["reel_2", "reel_cont_003"]}
    assert unpaired == ["jig_cont_001"]


def test_melody_evaluate_generated_references(folders):
    gen, refs = folders
    proc = run_cli("melody_evaluate", f"--generated={gen}", f"--references={refs}", check=True)
    scores = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, value in EXPECTED.items():
        assert scores[name] == pytest.approx(value, abs=1e-4), name
    assert (scores["unpaired_generated"], scores["unpaired_references"], scores["skipped"]) == (1, 1, 1)
    bad = run_cli("melody_evaluate", f"--generated={gen}")
    assert bad.returncode == 2 and "--generated and --references go together" in bad.stderr
    nothing = run_cli("melody_evaluate", f"--generated={refs / 'tune_c.mid'}", f"--references={refs}")
    assert nothing.returncode == 2 and nothing.stderr.strip().endswith(f"{refs / 'tune_c.mid'}: not a folder")


def test_benchmark_script_runs_on_the_shipped_corpus(tmp_path):
    """A smoke run of scripts/benchmark_continuation.py: the shipped model, the copy baseline and the real tunes on
    2 held-out tunes of the example corpus: the three tables, JSON figures, and the MIDI files the form figures are
    read back from."""
    import subprocess
    import sys

    from conftest import ROOT

    from melody_plugin.io.inputs import default_input

    out = tmp_path / "cont.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark_continuation.py"),
                           f"--input={default_input()}", "--max_tunes=2", "--num_outputs=2", "--tune_bars=8",
                           "--top_p=1,0.7",
                           f"--output_json={out}", f"--output_dir={tmp_path / 'midi'}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| copy the primer (baseline) |" in proc.stdout and "| shipped model (folk_lookback" in proc.stdout
    assert "| real continuations (target) |" in proc.stdout and "| held-out tunes (target) |" in proc.stdout
    report = json.loads(out.read_text())
    shipped = next(k for k in report["results"] if k.startswith("shipped model") and "top-p" not in k)
    nucleus = shipped[:-1] + ", top-p 0.7)"  # the same model again at --top_p=0.7, a row of its own
    assert len(report["tunes"]) == 2 and set(report["results"]) == {
        "real continuations (target)", "copy the primer (baseline)", shipped, nucleus}
    assert report["whole_tunes"][nucleus]["count"] == 4
    for figures in report["results"].values():
        assert all(0.0 <= figures[k] <= 1.0 for k in ("pitch_class_overlap", "interval_overlap", "duration_overlap",
                                                      "primer_pitch_class_overlap", "primer_repeat_2"))
    assert report["results"]["copy the primer (baseline)"]["primer_repeat_2"] == 1.0  # it plays the 2 bars again
    assert report["results"]["real continuations (target)"]["pitch_class_overlap"] == 1.0
    assert report["results"][shipped]["continuation_bits_per_note"] > 0
    # tables 2 and 3 come from files: 2 tunes x 2 outputs each, whole tunes of 8 bars
    tunes = report["whole_tunes"][shipped]
    assert tunes["count"] == 4 and tunes["bars"] == 8.0
    assert len(list((tmp_path / "midi").rglob("*.mid"))) == 2 + 2 * (4 + 4)  # the real tunes; two settings
    assert report["whole_tunes"]["held-out tunes (target)"]["count"] == 2


def test_benchmark_script_refuses_bad_arguments_before_reading_the_tunes(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    for args, message in ((["--primer_bars=0"], "--primer_bars must be >= 1, got 0"),
                          (["--eval_ratio=2"], "--eval_ratio must be between 0 and 1"),
                          (["--top_p=1,0"], "--top_p values must be in (0, 1], got 0.0"),
                          (["--top_p=x"], "--top_p must be numbers separated by commas, got 'x'"),
                          ([f"--output_json={tmp_path}"], "is a folder; name the JSON file to write"),
                          (["--run_dir=a=x", "--run_dir=a=y"], "the name 'a' is given twice")):
        # --input names no file: the check must come first, or the message would be about the input
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark_continuation.py"),
                               f"--input={tmp_path / 'none'}", *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr.strip().splitlines()[-1], (args, proc.stderr)
