"""NoteSequence <-> Melody: meters, grid, triplets, policies, tracks, splits, and MIDI round trips."""

import conftest
import pytest
from conftest import make_sequence, pattern_notes

from melody_plugin.io.files import read_music_file
from melody_plugin.io.midi import note_sequence_to_midi_file
from melody_plugin.music.extract import melody_to_note_sequence, note_sequence_to_melodies, note_sequence_to_melody
from melody_plugin.music.melody import REST, Melody, MelodyError, Note, text_to_melody
from melody_plugin.tokens.vocab import Vocabulary

METERS = [(4, 4), (3, 4), (6, 8), (2, 4), (9, 8), (5, 4), (7, 8)]


def bar_quarters(meter):
    return meter[0] * 4 / meter[1]


def meter_tune(meter, bars=4):
    """A tune that fills `bars` bars of `meter` with 8ths, a dotted quarter and a rest in each bar."""
    q = bar_quarters(meter)
    bar = [(60 + i % 5, 0.5) for i in range(int((q - 1.5) / 0.5) - 1)] + [(67, 1.0), (None, 0.5), (72, 0.5)]
    assert abs(sum(d for _, d in bar) - q) < 1e-9
    return pattern_notes(bar, repeats=bars)


@pytest.mark.parametrize("meter", METERS)
def test_midi_tokens_midi_round_trip_keeps_notes_and_bars(tmp_path, meter):
    notes = meter_tune(meter)
    path = tmp_path / "tune.mid"
    note_sequence_to_midi_file(make_sequence(notes, time_signature=meter), path)
    m = note_sequence_to_melody(read_music_file(path).sequences[0])
    assert m.time_signature == meter
    assert m.num_bars == 4
    vocab = Vocabulary.build([m])
    back = vocab.decode(vocab.encode(m), m.time_signature, m.qpm, m.key, m.minor)
    assert back == m
    out = tmp_path / "out.mid"
    note_sequence_to_midi_file(melody_to_note_sequence(back), out)
    ns = read_music_file(out).sequences[0]
    assert [(ts.numerator, ts.denominator) for ts in ns.time_signatures] == [meter]
    assert [round(t.qpm) for t in ns.tempos] == [120]
    assert [n.pitch for n in ns.notes] == [p for p, _, _ in notes]
    got = [t for n in ns.notes for t in (n.start_time, n.end_time)]
    assert got == pytest.approx([t * 0.5 for _, s, e in notes for t in (s, e)], abs=1e-6)  # 120 qpm
    assert note_sequence_to_melody(ns) == m


def test_triplet_melody_survives_exactly(tmp_path):
    third = 1 / 3
    pattern = [(60, third), (62, third), (64, third), (65, 1), (67, third), (65, third), (64, third),
               (62, 1), (60, 2 * third), (62, third)]
    notes = pattern_notes(pattern, repeats=2)
    path = tmp_path / "triplets.mid"
    note_sequence_to_midi_file(make_sequence(notes), path)
    # the written file, read with mido: every onset and release on a whole tick, exactly at k/3 quarters
    tpq, written, _, _ = conftest.midi_ticks(path)
    assert [(p, on, off) for p, on, off in written] == [(p, round(s * tpq), round(e * tpq)) for p, s, e in notes]
    assert all(abs(s * tpq - round(s * tpq)) < 1e-9 for _, s, _ in notes[:1]) and tpq % 3 == 0
    ex = note_sequence_to_melodies(read_music_file(path).sequences[0])
    m = ex.melodies[0]
    assert ex.stats["notes_snapped_to_grid"] == 0
    assert [n.duration_steps for n in m.notes[:4]] == [4, 4, 4, 12]
    ns = melody_to_note_sequence(m)
    got = [t for n in ns.notes for t in (n.start_time, n.end_time)]
    assert got == pytest.approx([t * 0.5 for _, s, e in notes for t in (s, e)], abs=1e-6)


def test_off_grid_notes_are_snapped_and_counted():
    ns = make_sequence([(60, 0.0, 1.0), (62, 1.03, 2.0), (64, 2.0, 3.0)])
    ex = note_sequence_to_melodies(ns)
    assert ex.stats["notes_snapped_to_grid"] == 1
    assert [n.pitch for n in ex.melodies[0].notes] == [60, 62, 64]


def test_only_the_melodys_own_snapped_notes_are_counted():
    # track 0, named Flute: exact quarters (the melody); track 1, a bass: 3 notes a little late, never the melody
    ns = make_sequence([(72, i, i + 1) for i in range(8)], instrument=0)
    late = make_sequence([(40, i + 0.03, i + 1) for i in range(0, 6, 2)], instrument=1)
    ns.notes.extend(late.notes)
    ns.instrument_infos.add(instrument=0, name="Flute")
    ns.instrument_infos.add(instrument=1, name="Bass")
    ex = note_sequence_to_melodies(ns)
    assert [n.pitch for n in ex.melodies[0].notes] == [72] * 8
    assert ex.stats["notes_snapped_to_grid"] == 0 and not any("snapped" in w for w in ex.warnings)
    bass = note_sequence_to_melodies(ns, track=1)  # asked for: its 3 late notes are counted
    assert bass.stats["notes_snapped_to_grid"] == 3


def test_rests_are_kept_and_split_at_bar_lines():
    ns = make_sequence([(60, 1.0, 2.0), (62, 6.0, 7.0)])  # leading rest of 1 quarter, then a rest over a bar line
    m = note_sequence_to_melody(ns)
    assert m.notes == (Note(REST, 12), Note(60, 12), Note(REST, 24), Note(REST, 24), Note(62, 12))


@pytest.mark.parametrize("policy,expected", [("highest", [72, 64]), ("lowest", [60, 64])])
def test_polyphony_policies(policy, expected):
    ns = make_sequence([(60, 0, 1), (72, 0, 1), (64, 1, 2)])
    m = note_sequence_to_melody(ns, policy=policy)
    assert [n.pitch for n in m.notes] == expected


def test_skyline_cuts_held_note_at_next_onset():
    ns = make_sequence([(72, 0, 4), (60, 1, 2), (62, 2, 3)])
    m = note_sequence_to_melody(ns)
    # the piece lasts 4 quarters (the held 72), so the cut melody ends with a one-quarter rest
    assert [(n.pitch, n.duration_steps) for n in m.notes] == [(72, 12), (60, 12), (62, 12), (-1, 12)]


def test_reject_policy_names_the_time():
    ns = make_sequence([(60, 0, 2), (64, 1, 2)], filename="chords.mid")
    with pytest.raises(MelodyError, match=r"chords.mid: 2 notes overlap at 0.50 s \(policy=reject\)"):
        note_sequence_to_melody(ns, policy="reject")


def test_drums_are_skipped_and_drums_only_is_refused():
    ns = make_sequence([(36, 0, 1), (38, 1, 2)], is_drum=True, filename="drums.mid")
    with pytest.raises(MelodyError) as e:
        note_sequence_to_melody(ns)
    assert e.value.reason == "drums_only"
    mixed = make_sequence([(60, 0, 1), (62, 1, 2)])
    mixed.notes.add(pitch=36, start_time=0, end_time=0.5, is_drum=True, instrument=9, velocity=90)
    mixed.notes.add(pitch=38, start_time=0.1, end_time=0.5, is_drum=True, instrument=9, velocity=90)
    mixed.notes.add(pitch=40, start_time=0.2, end_time=0.5, is_drum=True, instrument=9, velocity=90)
    assert [n.pitch for n in note_sequence_to_melody(mixed).notes] == [60, 62]


def test_track_with_most_notes_is_chosen_and_can_be_selected():
    ns = make_sequence([(60, 0, 1), (62, 1, 2), (64, 2, 3)], instrument=0, program=0)
    for p, s, e in [(48, 0, 3)]:
        ns.notes.add(pitch=p, start_time=s * 0.5, end_time=e * 0.5, instrument=1, program=33, velocity=80)
    assert [n.pitch for n in note_sequence_to_melody(ns).notes] == [60, 62, 64]
    assert [n.pitch for n in note_sequence_to_melody(ns, track=1).notes] == [48]
    assert [n.pitch for n in note_sequence_to_melody(ns, program=33).notes] == [48]
    with pytest.raises(MelodyError, match="instrument 5"):
        note_sequence_to_melody(ns, track=5)


def test_time_signature_change_splits_the_piece():
    ns = make_sequence(pattern_notes([(60, 1)], repeats=8))  # 2 bars of 4/4 ...
    ns.time_signatures.add(time=4.0, numerator=3, denominator=4)  # ... then 3/4 from 8 quarters
    for i in range(6):
        ns.notes.add(pitch=67, start_time=4.0 + i * 0.5, end_time=4.5 + i * 0.5, velocity=80)
    ns.total_time = 7.0
    ex = note_sequence_to_melodies(ns)
    assert ex.stats["time_change_splits"] == 1
    assert [m.time_signature for m in ex.melodies] == [(4, 4), (3, 4)]
    assert [m.num_bars for m in ex.melodies] == [2, 2]


def test_tempo_change_is_kept_inside_one_melody_not_a_split():
    ns = make_sequence(pattern_notes([(60, 1)], repeats=4))  # 4 quarters at 120 qpm = 2 s
    ns.tempos.add(time=2.0, qpm=90)
    ns.notes.add(pitch=64, start_time=2.0, end_time=2.0 + 60 / 90, velocity=80)  # one quarter at 90 qpm
    ns.total_time = 2.0 + 60 / 90
    ex = note_sequence_to_melodies(ns)
    assert len(ex.melodies) == 1 and ex.stats["time_change_splits"] == 0
    m = ex.melodies[0]
    assert [(n.pitch, n.duration_steps) for n in m.notes] == [(60, 12)] * 4 + [(64, 12)]
    assert m.qpm == 120 and m.tempo_changes == ((48, 90),)


def ticks(quarters, tpq=480):
    return round(quarters * tpq)


def test_ritardando_primer_keeps_every_note_and_its_tempo_map(tmp_path):
    # 4 bars of 4/4 quarters; a set_tempo before each of the last 4 notes (the reproduction)
    notes = [(60 + i % 5, ticks(i), ticks(i + 1)) for i in range(16)]
    tempos = [(0, 120), (ticks(12), 100), (ticks(13), 90), (ticks(14), 80), (ticks(15), 70)]
    path = conftest.write_mido_file(tmp_path / "rit.mid", notes, tempos)
    ex = note_sequence_to_melodies(read_music_file(path).sequences[0])
    assert len(ex.melodies) == 1
    m = ex.melodies[0]
    assert [(n.pitch, n.duration_steps) for n in m.notes] == [(p, 12) for p, _, _ in notes]
    assert m.total_steps == 4 * 48  # 4 bars, from the ticks: 16 quarters
    assert m.qpm == 120 and [(s, round(q)) for s, q in m.tempo_changes] == [(144, 100), (156, 90), (168, 80),
                                                                            (180, 70)]


def test_a_tempo_change_on_the_final_bar_line_is_the_continuations_tempo(tmp_path):
    # 2 bars of 4/4 quarters at 120, then 60 qpm set exactly at the end-of-track (tick 3840): what comes next is at 60
    notes = [(60 + i % 5, ticks(i), ticks(i + 1)) for i in range(8)]
    path = conftest.write_mido_file(tmp_path / "slow_end.mid", notes, [(0, 120), (ticks(8), 60)], end_tick=ticks(8))
    m = note_sequence_to_melodies(read_music_file(path).sequences[0]).melodies[0]
    assert m.total_steps == 2 * 48 and m.tempo_changes == ((96, 60.0),) and m.final_qpm == 60.0


def test_tempo_change_on_beat_3_does_not_move_bar_lines(tmp_path):
    # 3 bars of 4/4 eighths with a tempo change at beat 3 of bar 2 (quarter 6)
    notes = [(62 + i % 3, ticks(i / 2), ticks(i / 2 + 0.5)) for i in range(24)]
    path = conftest.write_mido_file(tmp_path / "change.mid", notes, [(0, 120), (ticks(6), 75)])
    ex = note_sequence_to_melodies(read_music_file(path).sequences[0])
    assert len(ex.melodies) == 1
    m = ex.melodies[0]
    onsets = [sum(n.duration_steps for n in m.notes[:i]) for i in range(len(m.notes))]
    assert onsets == [i * 6 for i in range(24)]  # eighth notes on the 12-steps-per-quarter grid, from 0
    assert m.num_bars == 3 and m.tempo_changes == ((72, 75.0),)


@pytest.mark.parametrize("first,second", [((4, 4), (3, 4)), ((6, 8), (2, 4))])
def test_meter_change_splits_exactly_at_the_new_meters_first_bar(tmp_path, first, second):
    bar1, bar2 = ticks(bar_quarters(first)), ticks(bar_quarters(second))
    change = 2 * bar1
    notes = [(60, i * 240, i * 240 + 240) for i in range(change // 240)]
    notes += [(67, change + i * 240, change + i * 240 + 240) for i in range(3 * bar2 // 240)]
    path = conftest.write_mido_file(tmp_path / "meters.mid", notes, [(0, 100), (bar1, 80)],
                                    [(0, *first), (change, *second)])
    ex = note_sequence_to_melodies(read_music_file(path).sequences[0])
    assert [m.time_signature for m in ex.melodies] == [first, second]
    assert [m.num_bars for m in ex.melodies] == [2, 3]
    assert {n.pitch for n in ex.melodies[1].notes} == {67}  # the split is at the change, not a tempo change
    assert ex.melodies[1].qpm == 80  # the tempo in force where the new meter starts


@pytest.mark.parametrize("pickup_quarters,meter", [(1, (3, 4)), (0.5, (6, 8)), (1.5, (4, 4)), (2, (3, 4)),
                                                    (3, (4, 4))])
def test_a_pickup_written_as_a_short_bar_of_its_own_is_read_as_a_pickup(tmp_path, pickup_quarters, meter):
    """1/4 (or 1/8, 3/8) before 3/4 (6/8, 4/4), as notation programs export a pickup: the pickup's notes come after a
    rest that fills its bar, and the tune's bar lines are the new meter's; no split, nothing dropped."""
    short = {1: (1, 4), 0.5: (1, 8), 1.5: (3, 8), 2: (2, 4), 3: (3, 4)}[pickup_quarters]
    change = ticks(pickup_quarters)
    notes = [(71, 0, change)]  # the pickup, one note
    notes += [(64 + 3 * (i % 3), change + ticks(i / 2), change + ticks(i / 2 + 0.5))
              for i in range(int(2 * bar_quarters(meter) * 2))]  # 2 bars of eighths
    path = conftest.write_mido_file(tmp_path / "pickup.mid", notes, [(0, 100)], [(0, *short), (change, *meter)])
    ex = note_sequence_to_melodies(read_music_file(path).sequences[0])
    assert len(ex.melodies) == 1 and ex.stats["time_change_splits"] == 0 and ex.stats["pickup_bars"] == 1
    m = ex.melodies[0]
    bar = round(12 * bar_quarters(meter))
    rest = bar - round(12 * pickup_quarters)  # counted here: what the pickup lacks of a full bar
    assert m.time_signature == meter and m.qpm == 100
    assert m.notes[0].is_rest and m.notes[0].duration_steps == rest
    assert [(n.pitch, n.duration_steps) for n in m.notes[1:]] == [
        (pitch, round(12 * (end - start) / 480)) for pitch, start, end in notes]
    assert m.total_steps == 3 * bar  # the pickup's bar and the 2 bars after it
    assert any("short first bar read as a pickup" in w for w in ex.warnings)


def test_a_first_bar_whose_meter_comes_back_is_a_meter_change_not_a_pickup(tmp_path):
    # 3/4, then 4/4, then 3/4 again: a piece of changing meters, split where each change is
    notes = ([(60, i * 480, i * 480 + 480) for i in range(3)] + [(67, 1440 + i * 480, 1920 + i * 480) for i in range(4)]
             + [(64, 3360 + i * 480, 3840 + i * 480) for i in range(3)])
    path = conftest.write_mido_file(tmp_path / "changing.mid", notes, [(0, 120)],
                                    [(0, 3, 4), (1440, 4, 4), (3360, 3, 4)])
    ex = note_sequence_to_melodies(read_music_file(path).sequences[0])
    assert ex.stats["pickup_bars"] == 0 and ex.stats["time_change_splits"] == 2
    assert [(m.time_signature, [n.pitch for n in m.notes]) for m in ex.melodies] == [
        ((3, 4), [60] * 3), ((4, 4), [67] * 4), ((3, 4), [64] * 3)]


def test_a_first_part_longer_than_one_bar_of_its_meter_is_a_meter_change(tmp_path):
    # two bars of 1/4 (2 quarters, shorter than a 3/4 bar) before 3/4: not one short bar, so not a pickup
    notes = [(60, i * 480, i * 480 + 480) for i in range(2)] + [(67, 960 + i * 480, 1440 + i * 480) for i in range(6)]
    path = conftest.write_mido_file(tmp_path / "two_bars.mid", notes, [(0, 120)], [(0, 1, 4), (960, 3, 4)])
    ex = note_sequence_to_melodies(read_music_file(path).sequences[0])
    assert ex.stats["pickup_bars"] == 0
    assert [(m.time_signature, [n.pitch for n in m.notes]) for m in ex.melodies] == [((1, 4), [60] * 2),
                                                                                      ((3, 4), [67] * 6)]


def test_repeated_time_signature_is_not_a_split(tmp_path):
    notes = [(60, i * 480, i * 480 + 480) for i in range(16)]
    path = conftest.write_mido_file(tmp_path / "same.mid", notes, [(0, 120)], [(0, 4, 4), (1920, 4, 4), (3840, 4, 4)])
    ex = note_sequence_to_melodies(read_music_file(path).sequences[0])
    assert len(ex.melodies) == 1 and ex.melodies[0].num_bars == 4


@pytest.mark.parametrize("tpq,end_extra,expected_rest_steps", [
    (480, 480, [12]),         # a quarter rest before the end-of-track: kept
    (480, 480 * 9, [12]),     # padded with two empty bars: capped at the bar line after the last note
    (220, 220 + 1, [12]),     # end-of-track one tick after the bar line (an old writer): on the grid
    (96, 0, []),              # ends with its last note
])
def test_trailing_rest_lasts_to_end_of_track(tmp_path, tpq, end_extra, expected_rest_steps):
    # C D E R C D E R in 4/4: the last quarter of bar 2 is a rest
    pattern = [(60, 0), (62, 1), (64, 2), (60, 4), (62, 5), (64, 6)]
    notes = [(p, q * tpq, (q + 1) * tpq) for p, q in pattern]
    path = conftest.write_mido_file(tmp_path / "rest.mid", notes, [(0, 120)], ticks_per_quarter=tpq,
                                    end_tick=7 * tpq + end_extra)
    m = note_sequence_to_melodies(read_music_file(path).sequences[0]).melodies[0]
    assert [n.duration_steps for n in m.notes if n.is_rest] == [12] + expected_rest_steps  # the rest at quarter 3
    assert m.total_steps == 7 * 12 + sum(expected_rest_steps)


def test_melody_track_is_chosen_by_name_and_range_and_reported(tmp_path):
    # a chorale: the tenor has the most notes; the soprano carries the tune
    parts = {0: ("Soprano", 72, 8), 1: ("Alto", 67, 10), 2: ("Tenor", 60, 12), 3: ("Bass", 48, 9)}
    notes = [(track, base + i % 3, i * 480 * 8 // count, (i + 1) * 480 * 8 // count)
             for track, (_, base, count) in parts.items() for i in range(count)]
    path = conftest.write_mido_file(tmp_path / "chorale.mid", notes, [(0, 100)],
                                    track_names=[name for name, _, _ in parts.values()])
    ex = note_sequence_to_melodies(read_music_file(path).sequences[0])
    assert {n.pitch for n in ex.melodies[0].notes if not n.is_rest} == {72, 73, 74}
    assert "Soprano" in ex.warnings[0] and "--track=N" in ex.warnings[0] and "Tenor" in ex.warnings[0]
    every = note_sequence_to_melodies(read_music_file(path).sequences[0], track="all")
    assert sorted(min(n.pitch for n in m.notes if not n.is_rest) for m in every.melodies) == [48, 60, 67, 72]


def test_unnamed_tracks_prefer_the_high_monophonic_line_over_bass_and_chords(tmp_path):
    tune = [(0, 74 + i % 2, i * 480, i * 480 + 480) for i in range(8)]                      # 8 notes, high
    bass = [(1, 40 + i % 4, i * 240, i * 240 + 240) for i in range(16)]                     # 16 notes, low
    chords = [(2, p, i * 960, i * 960 + 960) for i in range(4) for p in (60, 64, 67, 79)]   # 16 notes, chords
    path = conftest.write_mido_file(tmp_path / "pop.mid", tune + bass + chords, [(0, 120)])
    ex = note_sequence_to_melodies(read_music_file(path).sequences[0])
    assert {n.pitch for n in ex.melodies[0].notes if not n.is_rest} == {74, 75}


def test_key_signature_is_kept_or_estimated():
    assert note_sequence_to_melody(make_sequence([(62, 0, 1)], key=2)).key == 2
    d_major = pattern_notes([(62, 1), (64, 1), (66, 1), (67, 1), (69, 1), (71, 1), (73, 1), (74, 2), (69, 1)], 2)
    m = note_sequence_to_melody(make_sequence(d_major))
    assert (m.key, m.minor) == (2, False)


def test_melody_from_text():
    m = text_to_melody("C4:1 D4:0.5 E4:0.5 R:1 F#4:1/3 G4:2/3", time_signature=(4, 4))
    assert m.notes == (Note(60, 12), Note(62, 6), Note(64, 6), Note(REST, 12), Note(66, 4), Note(67, 8))
    with pytest.raises(MelodyError, match="not on a grid"):
        text_to_melody("C4:0.1")
    with pytest.raises(MelodyError, match="cannot read"):
        text_to_melody("hello")


def test_melody_validates_meter_and_durations():
    with pytest.raises(MelodyError, match="time signature"):
        Melody((), time_signature=(3, 5))
    with pytest.raises(MelodyError, match="positive"):
        Melody((Note(60, 0),))


def test_conversions_do_not_mutate_input():
    ns = make_sequence([(60, 0, 1), (72, 0, 1)])
    before = ns.SerializeToString()
    note_sequence_to_melodies(ns)
    assert ns.SerializeToString() == before


def test_track_flag_takes_an_index_or_all():
    from melody_plugin.cli import flags as cli_flags

    parser = cli_flags.TrackParser()
    assert parser.parse("all") == "all" and parser.parse("2") == 2
    with pytest.raises(ValueError, match="instrument index or 'all'"):
        parser.parse("soprano")
    assert cli_flags.check_limits({"track": -1}) == "--track must be >= 0 or all, got -1"


def test_silent_bars_after_the_last_note_are_ignored_and_reported(tmp_path):
    # one bar of quarters, then three silent bars before the end-of-track
    notes = [(60 + i, i * 480, (i + 1) * 480) for i in range(4)]
    path = conftest.write_mido_file(tmp_path / "padded.mid", notes, [(0, 120)], end_tick=4 * 1920)
    ex = note_sequence_to_melodies(read_music_file(path).sequences[0])
    assert ex.melodies[0].total_steps == 48
    assert any("3 silent bars after the last note ignored" in w for w in ex.warnings)


@pytest.mark.parametrize("mode,minor", [(0, False), (1, True), (3, False), (4, True), (5, True), (6, False), (7, True)])
def test_modal_key_signatures_keep_their_tonic_and_third(mode, minor):
    ns = make_sequence(pattern_notes([(69, 1)], repeats=8))
    ns.key_signatures.add(time=0.0, key=9, mode=mode)  # A major, minor, mixolydian, dorian, phrygian, lydian, locrian
    m = note_sequence_to_melody(ns)
    assert (m.key, m.minor) == (9, minor)


def rich_sequence():
    """Everything split_note_sequence handles: notes across the cuts, meter/key/tempo changes (some on a cut),
    chord symbols, beats, pedals and other controls, pitch bends, a rest at the end."""
    ns = make_sequence([(60, 0, 1.5), (62, 1.5, 4.25), (64, 4.25, 4.5), (65, 6, 9), (67, 9, 10), (48, 0, 12)],
                       time_signature=(4, 4), qpm=100, key=0)
    ns.notes[-1].instrument, ns.notes[-1].program = 1, 33
    ns.time_signatures.add(time=2.4, numerator=3, denominator=4)
    ns.time_signatures.add(time=5.4, numerator=6, denominator=8)
    ns.key_signatures.add(time=3.0, key=7, mode=1)
    ns.tempos.add(time=2.4, qpm=90)
    ns.tempos.add(time=4.0, qpm=75)
    text = type(ns).TextAnnotation
    for time, chord in ((0.0, "C"), (1.9, "G7"), (2.4, "Am"), (6.0, "F")):
        ns.text_annotations.add(time=time, text=chord, annotation_type=text.CHORD_SYMBOL)
    for time in (0.0, 0.6, 2.4, 3.0, 6.6):
        ns.text_annotations.add(time=time, annotation_type=text.BEAT)
    ns.text_annotations.add(time=1.0, text="lyric", annotation_type=text.UNKNOWN)
    ns.control_changes.add(time=0.5, control_number=64, control_value=127, instrument=0)
    ns.control_changes.add(time=1.0, control_number=64, control_value=0, instrument=1)
    ns.control_changes.add(time=3.5, control_number=67, control_value=90, instrument=0)
    ns.control_changes.add(time=2.0, control_number=7, control_value=100)
    ns.pitch_bends.add(time=1.2, bend=300)
    ns.total_time = 8.5
    return ns


@pytest.mark.parametrize("cuts", [[2.4, 5.4], [2.4], [1.0, 2.4, 5.4, 8.0], [0.6, 0.6, 3.0], [9.0]])
def test_split_note_sequence_equals_note_seqs(cuts):
    from note_seq import sequences_lib

    from melody_plugin.music.timing import split_note_sequence

    ns = rich_sequence()
    before = ns.SerializeToString()
    ours = split_note_sequence(ns, cuts)
    theirs = sequences_lib.split_note_sequence(ns, cuts, skip_splits_inside_notes=False)
    assert len(ours) == len(theirs) == len([c for c in cuts if c < ns.total_time]) + 1
    assert ours == theirs  # every field of every part
    assert ns.SerializeToString() == before  # the input is not touched


def test_split_note_sequence_refuses_what_note_seq_refuses():
    from note_seq import sequences_lib

    from melody_plugin.music.timing import split_note_sequence

    ns = rich_sequence()
    for cuts in ([8.5, 9.0], [-1.0]):
        with pytest.raises(ValueError):
            sequences_lib.split_note_sequence(ns, cuts, skip_splits_inside_notes=False)
        with pytest.raises(ValueError):
            split_note_sequence(ns, cuts)


# --- the meter split against note-seq's split_note_sequence_on_time_changes (tempo events left out of both)

def test_meter_changes_at_or_after_the_sequences_end_are_ignored_as_note_seq_does(tmp_path):
    from note_seq import midi_io as ns_midi_io
    from note_seq import sequences_lib

    from melody_plugin.music.timing import split_on_time_changes

    ns = make_sequence([(60, 0, 2)])  # one note, 0-1 s, then 3/4 at 2 s and 4/4 at 3 s
    ns.time_signatures.add(time=2.0, numerator=3, denominator=4)
    ns.time_signatures.add(time=3.0, numerator=4, denominator=4)
    theirs = sequences_lib.split_note_sequence_on_time_changes(ns)
    assert len(theirs) == 1
    assert split_on_time_changes(ns) == theirs
    assert [m.time_signature for m in note_sequence_to_melodies(ns).melodies] == [(4, 4)]

    # the same from a file: note-seq's reader ends the sequence with its last note, ours at the end-of-track (3 s)
    path = conftest.write_mido_file(tmp_path / "late_meters.mid", [(60, 0, 480)], [(0, 120)],
                                    [(0, 4, 4), (1920, 3, 4), (2880, 4, 4)], end_tick=2880)
    read_by_note_seq = ns_midi_io.midi_file_to_note_sequence(str(path))
    theirs = sequences_lib.split_note_sequence_on_time_changes(read_by_note_seq)
    assert len(theirs) == 1
    assert split_on_time_changes(read_by_note_seq) == theirs
    ours = note_sequence_to_melodies(read_music_file(path).sequences[0])
    assert [m.time_signature for m in ours.melodies] == [(4, 4)]  # the 3/4 stretch holds no note


def test_an_unsplit_sequence_is_one_part_made_as_note_seqs(tmp_path):
    from note_seq import sequences_lib

    from melody_plugin.music.timing import split_on_time_changes

    ns = make_sequence([(64, 2, 3), (60, 0, 1), (62, 1, 2)], qpm=100, key=2)  # notes out of order
    ns.pitch_bends.add(time=0.5, bend=512)
    ns.control_changes.add(time=0.2, control_number=7, control_value=90)  # volume
    ns.control_changes.add(time=0.3, control_number=64, control_value=127)  # sustain pedal
    ns.text_annotations.add(time=0.4, text="lyric")
    before = ns.SerializeToString()
    theirs = sequences_lib.split_note_sequence_on_time_changes(ns)
    assert len(theirs) == 1 and [n.pitch for n in theirs[0].notes] == [60, 62, 64]  # sorted, bends dropped ...
    assert split_on_time_changes(ns) == theirs  # ... every field alike, subsequence_info included
    assert ns.SerializeToString() == before


def test_a_quantized_sequence_is_refused_by_the_split_as_note_seq_refuses_it():
    from note_seq import sequences_lib

    from melody_plugin.music.timing import split_note_sequence

    ns = sequences_lib.quantize_note_sequence(make_sequence(pattern_notes([(60, 1)], repeats=4)), 4)
    with pytest.raises(sequences_lib.QuantizationStatusError):
        sequences_lib.split_note_sequence_on_time_changes(ns)
    with pytest.raises(MelodyError, match=r"^test.mid: cannot split a quantized NoteSequence \(4 steps per "
                                          r"quarter\)") as e:
        note_sequence_to_melodies(ns)
    assert e.value.reason == "split_failed"
    with pytest.raises(sequences_lib.QuantizationStatusError):
        sequences_lib.split_note_sequence(ns, [1.0])
    with pytest.raises(MelodyError, match="quantized"):
        split_note_sequence(ns, [1.0])


def test_coincident_meter_events_split_where_note_seq_splits():
    # 4/4, then 3/4 and 4/4 at one time: note-seq splits there (the first differs); both parts are in 4/4
    from note_seq import sequences_lib

    from melody_plugin.music.timing import split_on_time_changes

    ns = make_sequence(pattern_notes([(60, 1)], repeats=8))
    ns.time_signatures.add(time=2.0, numerator=3, denominator=4)
    ns.time_signatures.add(time=2.0, numerator=4, denominator=4)
    theirs = sequences_lib.split_note_sequence_on_time_changes(ns)
    assert [p.subsequence_info.start_time_offset for p in theirs] == [0.0, 2.0]
    assert split_on_time_changes(ns) == theirs
    assert [m.time_signature for m in note_sequence_to_melodies(ns).melodies] == [(4, 4), (4, 4)]


def test_the_last_part_lasts_to_the_end_of_track_after_a_split_too(tmp_path):
    # 2 bars of 4/4, then 3/4 whose last bar ends in a quarter rest before the end-of-track
    notes = [(60, i * 480, i * 480 + 480) for i in range(8)] + [(67, 3840 + i * 480, 4320 + i * 480) for i in range(5)]
    path = conftest.write_mido_file(tmp_path / "rest_after_split.mid", notes, [(0, 120)], [(0, 4, 4), (3840, 3, 4)],
                                    end_tick=3840 + 6 * 480)
    ex = note_sequence_to_melodies(read_music_file(path).sequences[0])
    assert [m.time_signature for m in ex.melodies] == [(4, 4), (3, 4)]
    assert [(n.pitch, n.duration_steps) for n in ex.melodies[1].notes] == [(67, 12)] * 5 + [(REST, 12)]


def test_a_sequence_without_total_time_ends_with_its_last_note():
    # note-seq's split returns nothing for total_time 0 (a hand-built sequence); ours takes the notes' end
    from note_seq import sequences_lib

    from melody_plugin.music.timing import split_on_time_changes

    ns = make_sequence(pattern_notes([(60, 1), (62, 0.5), (None, 0.5)], repeats=3))
    theirs = sequences_lib.split_note_sequence_on_time_changes(ns)
    ns.total_time = 0.0
    assert sequences_lib.split_note_sequence_on_time_changes(ns) == []
    assert split_on_time_changes(ns) == theirs


def test_a_meter_set_after_a_silent_count_in_starts_the_melody_on_its_bar_line():
    # a silent 4/4 bar (MIDI's default meter), then 3/4 at 2.0 s: note-seq cuts there, the notes fall on 3/4 beats
    from note_seq import sequences_lib

    from melody_plugin.music.timing import split_on_time_changes

    ns = make_sequence([(p, 4 + i, 5 + i) for i, p in enumerate([60, 62, 64, 65, 67, 69])])
    del ns.time_signatures[:]
    ns.time_signatures.add(time=2.0, numerator=3, denominator=4)
    theirs = sequences_lib.split_note_sequence_on_time_changes(ns)
    assert [(p.subsequence_info.start_time_offset, len(p.notes)) for p in theirs] == [(0.0, 0), (2.0, 6)]
    assert split_on_time_changes(ns) == theirs[1:]  # the empty count-in holds no melody
    m = note_sequence_to_melody(ns)
    assert m.time_signature == (3, 4) and [(n.pitch, n.duration_steps) for n in m.notes] == [
        (60, 12), (62, 12), (64, 12), (65, 12), (67, 12), (69, 12)]  # two 3/4 bars from the first note
