"""MelodyGenerator with the session's tiny model: exact bar counts per meter, primer intact, seeds, constraints."""

import dataclasses

import conftest
import pytest
from conftest import PHRASES, make_sequence, pattern_notes

from melody_plugin.generate.generator import MelodyGenerator, PrimerError
from melody_plugin.generate.sampler import Constraints, SamplingOptions
from melody_plugin.generator import MelodySequenceGenerator, get_generator_map
from melody_plugin.io import midi as midi_io
from melody_plugin.music.extract import note_sequence_to_melody


def primer_sequence(meter, quarters_extra=0.0):
    """Two bars of the meter's phrase, plus an unfinished bar of `quarters_extra` quarters."""
    notes = pattern_notes(PHRASES[meter])
    if quarters_extra:
        end = notes[-1][2] if notes else 0.0
        bar = meter[0] * 4 / meter[1]
        start = max(end, 2 * bar)
        notes.append((64, start, start + quarters_extra))
    return make_sequence(notes, time_signature=meter, key=0)


def assert_monophonic_and_bounded(ns, end_time):
    ends = sorted((n.start_time, n.end_time) for n in ns.notes)
    for (_, e1), (s2, _) in zip(ends, ends[1:]):
        assert e1 <= s2 + 1e-9
    assert max(e for _, e in ends) <= end_time + 1e-9


TPQ = 480
PHRASE_7_8 = [(60, 1), (62, 0.5), (64, 1), (65, 1), (67, 1.5), (64, 1), (None, 1)]  # 7 quarters = 2 bars of 7/8


def bar_ticks(meter):
    return TPQ * 4 * meter[0] // meter[1]


def write_primer_file(path, meter, extra_quarters=0.0, tempos=((0, 120),)):
    """Two bars of the meter's phrase (ending in its rest, if any) written with mido, end-of-track on the bar
    line, plus an unfinished bar of `extra_quarters` of E4. Returns (path, primer length in ticks)."""
    phrase = PHRASES.get(meter, PHRASE_7_8)
    notes, tick = [], 0
    for pitch, quarters in phrase:
        if pitch is not None:
            notes.append((pitch, tick, tick + round(quarters * TPQ)))
        tick += round(quarters * TPQ)
    assert tick == 2 * bar_ticks(meter)  # by hand: every phrase is two bars
    if extra_quarters:
        notes.append((64, tick, tick + round(extra_quarters * TPQ)))
        tick += round(extra_quarters * TPQ)
    conftest.write_mido_file(path, notes, tempos, [(0, *meter)], TPQ, end_tick=tick)
    return path, tick


def output_ticks(out, path):
    midi_io.note_sequence_to_midi_file(out.note_sequence, path)
    return conftest.midi_ticks(path)


@pytest.mark.parametrize("meter", [(4, 4), (3, 4), (6, 8), (7, 8)])
@pytest.mark.parametrize("extra", [0.0, 1.0])
def test_output_is_primer_bars_plus_n_bars_exactly(tiny_generator, tmp_path, meter, extra):
    path, primer_ticks = write_primer_file(tmp_path / "primer.mid", meter, extra)
    primer = tiny_generator.primer_from_file(path)
    _, primer_notes, _, _ = conftest.midi_ticks(path)
    outputs = tiny_generator.generate(primer, num_bars=3, num_outputs=3, sampling=SamplingOptions(seed=4))
    for i, out in enumerate(outputs):
        tpq, notes, meta, ends = output_ticks(out, tmp_path / f"out{i}.mid")
        scale = tpq // TPQ if tpq >= TPQ else None
        assert scale and tpq % TPQ == 0
        # two complete primer bars (an unfinished third counts as the first new bar), then 3 bars: 5 bars
        assert set(ends) == {5 * bar_ticks(meter) * scale}
        assert out.total_bars == 5
        assert [m.numerator for _, m in meta["time_signature"]] == [meter[0]]
        assert [(p, on, off) for p, on, off in notes[:len(primer_notes)]] == [
            (p, on * scale, off * scale) for p, on, off in primer_notes]  # primer intact
        assert all(on >= primer_ticks * scale for _, on, _ in notes[len(primer_notes):])  # nothing inside it
        assert all(off <= nxt for (_, _, off), (_, nxt, _) in zip(notes, notes[1:]))  # monophonic


@pytest.mark.parametrize("meter", [(4, 4), (3, 4), (6, 8), (7, 8)])
def test_output_fed_back_as_primer_continues_at_its_final_bar_line(tiny_generator, tmp_path, meter):
    bar = bar_ticks(meter)
    # a ritardando inside the primer: the tempo changes on beat 2 of bar 1 and at bar 2
    path, _ = write_primer_file(tmp_path / "primer.mid", meter, 1.0, tempos=((0, 120), (TPQ, 96), (bar, 72)))
    first = tiny_generator.generate(tiny_generator.primer_from_file(path), num_bars=2,
                                    sampling=SamplingOptions(seed=1))[0]
    tpq1, notes1, meta1, ends1 = output_ticks(first, tmp_path / "first.mid")
    k = tpq1 // TPQ
    assert set(ends1) == {4 * bar * k}  # 2 complete bars + 2
    second = tiny_generator.generate(tiny_generator.primer_from_file(tmp_path / "first.mid"), num_bars=2,
                                     sampling=SamplingOptions(seed=2))[0]
    tpq2, notes2, meta2, ends2 = output_ticks(second, tmp_path / "second.mid")
    assert tpq2 == tpq1 and set(ends2) == {6 * bar * k}
    assert [n for n in notes2 if n[1] < 4 * bar * k] == notes1  # continues exactly at the final bar line
    tempo1 = [(t, m.tempo) for t, m in meta1["set_tempo"]]
    assert tempo1 == [(0, 500000), (TPQ * k, 625000), (bar * k, 833333)]  # the primer's tempo map, written
    assert [(t, m.tempo) for t, m in meta2["set_tempo"]] == tempo1  # and kept; the continuation takes the last


def test_generation_continues_exactly_where_a_full_bar_primer_ends(tiny_generator):
    primer = primer_sequence((4, 4))
    pm = note_sequence_to_melody(primer)
    assert pm.total_steps % pm.steps_per_bar == 0  # the primer fills its last bar to the end
    out = tiny_generator.generate(primer, num_bars=2, sampling=SamplingOptions(seed=1))[0]
    first_new = out.melody.notes[len(pm.notes)]
    assert out.continuation_ids and tiny_generator.vocab.decode(out.continuation_ids[:1]).notes[0] == first_new
    assert out.melody.total_steps == pm.total_steps + 2 * pm.steps_per_bar


def test_continuation_only_keeps_bar_lines(tiny_generator, tmp_path):
    path, _ = write_primer_file(tmp_path / "primer.mid", (3, 4), 1.0)  # 2 bars of 3/4 and one quarter more
    out = tiny_generator.generate(tiny_generator.primer_from_file(path), num_bars=2, sampling=SamplingOptions(seed=2),
                                  continuation_only=True)[0]
    tpq, notes, _, ends = output_ticks(out, tmp_path / "cont.mid")
    assert set(ends) == {2 * 3 * tpq}  # the unfinished bar and one more: 2 bars of 3 quarters
    assert notes and notes[0][1] >= tpq  # the first quarter (the primer's part of the bar) is silent
    assert out.melody.notes[0].is_rest and out.melody.notes[0].duration_steps == 12


def test_same_seed_gives_same_midi_bytes(tiny_generator):
    primer = primer_sequence((6, 8))
    a = tiny_generator.generate(primer, num_bars=4, num_outputs=2, sampling=SamplingOptions(seed=11))
    b = tiny_generator.generate(primer, num_bars=4, num_outputs=2, sampling=SamplingOptions(seed=11))
    c = tiny_generator.generate(primer, num_bars=4, num_outputs=2, sampling=SamplingOptions(temperature=1.5, seed=12))
    bytes_a = [midi_io.note_sequence_to_midi_bytes(o.note_sequence) for o in a]
    assert bytes_a == [midi_io.note_sequence_to_midi_bytes(o.note_sequence) for o in b]
    assert [o.continuation_ids for o in a] != [o.continuation_ids for o in c]


def test_scale_constraint_yields_only_in_scale_pitches(tiny_generator):
    primer = primer_sequence((4, 4))
    outputs = tiny_generator.generate(primer, num_bars=8, num_outputs=4,
                                      sampling=SamplingOptions(temperature=2.0, seed=3),
                                      constraints=Constraints.parse(scale="C:major_pentatonic"))
    for out in outputs:
        new = out.melody.notes[len(note_sequence_to_melody(primer).notes):]
        assert all(n.is_rest or n.pitch % 12 in {0, 2, 4, 7, 9} for n in new)


def test_pitch_range_constraint(tiny_generator):
    outputs = tiny_generator.generate(None, num_bars=8, num_outputs=4,
                                      sampling=SamplingOptions(temperature=2.0, seed=3),
                                      constraints=Constraints.parse(pitch_range="60:64"))
    for out in outputs:
        assert all(n.is_rest or 60 <= n.pitch <= 64 for n in out.melody.notes)


def test_no_primer_starts_from_start_token_in_the_requested_meter(tiny_generator):
    out = tiny_generator.generate(tiny_generator.empty_primer((3, 4), qpm=90), num_bars=4)[0]
    assert out.melody.time_signature == (3, 4) and out.melody.qpm == 90
    assert out.melody.total_steps == 4 * out.melody.steps_per_bar


def test_the_tiny_model_continues_its_learned_phrase(tiny_generator):
    # trained on the 4/4 phrase repeated; greedy decoding after one phrase should repeat it
    primer = primer_sequence((4, 4))
    out = tiny_generator.generate(primer, num_bars=2, sampling=SamplingOptions(temperature=0.0))[0]
    pm = note_sequence_to_melody(primer)
    assert out.melody.notes[len(pm.notes):] == pm.notes[:len(out.melody.notes) - len(pm.notes)]


def test_out_of_vocabulary_primer_notes_are_mapped_and_reported(tiny_generator):
    primer = make_sequence(pattern_notes([(60, 1), (62, 1), (64, 1), (65, 1), (67 + 24, 2), (None, 1), (64, 1)]))
    out = tiny_generator.generate(primer, num_bars=1)[0]
    assert any(c.how == "octave shift" for c in out.oov_changes)
    assert out.melody.notes[4].pitch == 91  # the output keeps the primer as written


def test_bad_primers_raise_primer_error(tiny_generator, tmp_path):
    missing = tmp_path / "missing.mid"
    with pytest.raises(PrimerError, match="missing.mid: no such file"):
        tiny_generator.primer_from_file(missing)
    drums = tmp_path / "drums.mid"
    midi_io.note_sequence_to_midi_file(make_sequence([(36, 0, 1)], is_drum=True, instrument=9), drums)
    with pytest.raises(PrimerError, match="drums.mid: only drum notes"):
        tiny_generator.primer_from_file(drums)
    with pytest.raises(PrimerError, match="primer melody: cannot read 'C4'"):
        tiny_generator.primer_from_text("C4")


def test_inline_primer_is_on_the_model_grid_in_the_given_meter(tiny_generator):
    primer = tiny_generator.primer_from_text("D4:0.5 E4:0.5 R:1", (3, 4), qpm=90)
    spq = tiny_generator.vocab.steps_per_quarter
    assert [(n.pitch, n.duration_steps) for n in primer.notes][:2] == [(62, spq // 2), (64, spq // 2)]
    assert primer.time_signature == (3, 4) and primer.qpm == 90 and primer.steps_per_quarter == spq


def test_bundle_round_trip_gives_identical_output(tiny_generator, tmp_path):
    bundle = tmp_path / "tiny.mag"
    tiny_generator.save_bundle(bundle, "a test bundle")
    loaded = MelodyGenerator.from_bundle(bundle)
    assert loaded.config == tiny_generator.config and loaded.vocab == tiny_generator.vocab
    primer = primer_sequence((3, 4))
    a = tiny_generator.generate(primer, num_bars=4, num_outputs=2, sampling=SamplingOptions(seed=5))
    b = loaded.generate(primer, num_bars=4, num_outputs=2, sampling=SamplingOptions(seed=5))
    assert [o.continuation_ids for o in a] == [o.continuation_ids for o in b]
    from note_seq.protobuf import generator_pb2

    proto = generator_pb2.GeneratorBundle.FromString(bundle.read_bytes())
    assert proto.generator_details.id == "char_lstm"
    assert proto.bundle_details.description == "a test bundle"


def test_bad_bundle_is_a_clear_error(tmp_path):
    from melody_plugin.generate.generator import ModelLoadError

    junk = tmp_path / "junk.mag"
    junk.write_bytes(b"\x00\x01 not a bundle")
    with pytest.raises(ModelLoadError, match="junk.mag: not a melody_plugin generator bundle"):
        MelodyGenerator.from_bundle(junk)


def test_magenta_generator_options_section_of_4_bars_yields_4_bars(tiny_generator):
    from note_seq.protobuf import generator_pb2

    primer = primer_sequence((4, 4))  # 2 bars at 120 qpm = 4 s
    options = generator_pb2.GeneratorOptions()
    options.args["temperature"].float_value = 0.8
    options.args["beam_size"].int_value = 2
    options.args["branch_factor"].int_value = 2
    options.args["steps_per_iteration"].int_value = 2
    options.generate_sections.add(start_time=4.0, end_time=12.0)  # 8 s = 4 bars of 4/4 at 120
    ns = MelodySequenceGenerator(tiny_generator).generate(primer, options)
    assert ns.total_time == pytest.approx(12.0)
    m = note_sequence_to_melody(ns)
    assert m.total_steps <= 6 * m.steps_per_bar  # primer 2 bars + section 4 bars
    assert max(n.end_time for n in ns.notes) <= 12.0 + 1e-9
    assert MelodySequenceGenerator(tiny_generator).details.id == "char_lstm"


def test_generator_map_has_every_config_and_loads_run_dirs(tiny_run_dir):
    from melody_plugin.model.registry import list_configs

    generators = get_generator_map()
    assert set(list_configs()) <= set(generators)
    gen = generators["char_lstm"](checkpoint=tiny_run_dir)
    assert isinstance(gen, MelodySequenceGenerator)
    from melody_plugin.interop.sequence_generator import SequenceGeneratorError

    with pytest.raises(SequenceGeneratorError, match="not 'folk_lstm'"):
        generators["folk_lstm"](checkpoint=tiny_run_dir)
    with pytest.raises(SequenceGeneratorError, match="Checkpoint path does not exist"):
        generators["char_lstm"](checkpoint=tiny_run_dir / "checkpoints" / "ckpt-99999")


def test_generator_map_loads_the_checkpoint_it_is_given(tiny_run_dir):
    import re

    # the checkpoints the run kept, named by their prefixes as tf.train lists them
    steps = sorted(int(m.group(1)) for p in (tiny_run_dir / "checkpoints").glob("ckpt-*.index")
                   if (m := re.fullmatch(r"ckpt-(\d+)\.index", p.name)))
    assert steps
    prefix = tiny_run_dir / "checkpoints" / f"ckpt-{steps[0]}"
    gen = get_generator_map()["char_lstm"](checkpoint=prefix)
    with gen:
        assert gen.model.step == steps[0]
    # one of the checkpoint's files names it too (a file picker hands over ckpt-N.index), not the run's best
    for file in [prefix.with_name(prefix.name + ".index")] + sorted(prefix.parent.glob(prefix.name + ".data-*")):
        named = get_generator_map()["char_lstm"](checkpoint=file)
        assert named._checkpoint_file == str(prefix)
        with named:
            assert named.model.step == steps[0]


def test_a_file_that_is_no_bundle_is_magentas_error(tmp_path):
    from melody_plugin.interop.sequence_generator import SequenceGeneratorError

    (tmp_path / "notes.txt").write_text("not a bundle")
    with pytest.raises(SequenceGeneratorError, match="not a generator bundle"):
        get_generator_map()["char_lstm"](bundle=tmp_path / "notes.txt")


def test_numpy_inference_matches_keras_logits(tiny_generator):
    import numpy as np

    from melody_plugin.model.numpy_model import weights_to_keras_model

    model = weights_to_keras_model(tiny_generator.config, tiny_generator.weights)
    ids = np.array([[1, 5, 6, 7, 8, 5, 6, 7, 8, 9, 10, 5]])
    keras_logits = np.asarray(model(ids, training=False))
    numpy_logits, _ = tiny_generator.model.run(ids)
    np.testing.assert_allclose(keras_logits, numpy_logits, atol=1e-4)


def test_embedded_default_model_loads_and_generates(tmp_path):
    gen = MelodyGenerator.default()
    from melody_plugin.generate.generator import EXAMPLE_PRIMER

    # the example primer's length, from its ticks: 6/8, ends at its end-of-track (capped at the bar line)
    tpq, notes, meta, ends = conftest.midi_ticks(EXAMPLE_PRIMER)
    (_, ts), = meta["time_signature"]
    bar = tpq * 4 * ts.numerator // ts.denominator
    last_off = max(off for _, _, off in notes)
    length = max(last_off, min(max(ends), -(-last_off // bar) * bar))
    expected_bars = length // bar + 4
    out = gen.generate(gen.primer_from_file(EXAMPLE_PRIMER), num_bars=4)[0]
    _, _, _, out_ends = output_ticks(out, tmp_path / "out.mid")
    assert (ts.numerator, ts.denominator) == (6, 8) and out.melody.time_signature == (6, 8)
    assert set(out_ends) == {expected_bars * 3 * conftest.midi_ticks(tmp_path / "out.mid")[0]}
    assert out.total_bars == expected_bars
    assert dataclasses.asdict(gen.config)["name"] == "folk_lookback" and gen.config.bar_lookback  # our best config


@pytest.mark.parametrize("meter", [(4, 4), (3, 4), (6, 8)])
def test_compiled_tf_sampler_fills_bars_exactly_and_agrees_with_numpy(tiny_generator, meter):
    primer = primer_sequence(meter, 1.0)
    pm = note_sequence_to_melody(primer)
    complete = pm.total_steps // pm.steps_per_bar
    outs = tiny_generator.generate(primer, num_bars=3, num_outputs=4, sampling=SamplingOptions(seed=8, backend="tf"))
    again = tiny_generator.generate(primer, num_bars=3, num_outputs=4, sampling=SamplingOptions(seed=8, backend="tf"))
    assert [o.continuation_ids for o in outs] == [o.continuation_ids for o in again]
    for out in outs:
        assert out.melody.total_steps == (complete + 3) * pm.steps_per_bar
        assert len(out.log_likelihoods) == len(out.continuation_ids)
    greedy_tf = tiny_generator.generate(primer, num_bars=3, sampling=SamplingOptions(temperature=0.0, backend="tf"))
    greedy_np = tiny_generator.generate(primer, num_bars=3, sampling=SamplingOptions(temperature=0.0, backend="numpy"))
    assert greedy_tf[0].continuation_ids == greedy_np[0].continuation_ids
    np_ll, tf_ll = greedy_np[0].log_likelihoods, greedy_tf[0].log_likelihoods
    assert tf_ll == pytest.approx(np_ll, abs=1e-3)


def test_compiled_tf_sampler_respects_constraints(tiny_generator):
    sampling = SamplingOptions(temperature=2.0, top_k=5, top_p=0.9, seed=1, backend="tf")
    constraints = Constraints.parse(scale="C:major_pentatonic", pitch_range=(60, 72))
    outs = tiny_generator.generate(None, num_bars=4, num_outputs=4, sampling=sampling, constraints=constraints)
    for out in outs:
        assert all(n.is_rest or (n.pitch % 12 in {0, 2, 4, 7, 9} and 60 <= n.pitch <= 72) for n in out.melody.notes)
    from melody_plugin.generate.sampler import SamplingError

    with pytest.raises(SamplingError, match="beam search runs in the numpy sampler"):
        tiny_generator.generate(None, num_bars=1, sampling=SamplingOptions(beam_size=2, backend="tf"))


@pytest.mark.parametrize("meter, text", [((4, 4), "D4:1 E4:0.5 F#4:0.5 G4:1 A4:1 B4:0.5 A4:0.5 F#4:1 D4:2"),
                                         ((6, 8), "D5:0.5 B4:0.5 A4:0.5 G4:1.5 E4:1 F#4:0.5 G4:1.5")])
def test_a_strong_repetition_prior_repeats_the_primers_two_bars(meter, text):
    # the shipped model is key-normalised: the primer (D major) is looked back at as the model sees it, and the
    # copy must come back in D, every note and rest where the primer had it, two bars later
    gen = MelodyGenerator.default()
    primer = gen.primer_from_text(text, time_signature=meter)
    assert primer.total_steps == 2 * primer.steps_per_bar  # two whole bars, by the hand count above
    sampling = SamplingOptions(repetition=40.0, seed=5)
    for out in gen.generate(primer, num_bars=4, num_outputs=3, sampling=sampling, continuation_only=True):
        assert out.melody.notes == primer.notes * 2
    free = gen.generate(primer, num_bars=4, num_outputs=3, sampling=SamplingOptions(seed=5), continuation_only=True)
    assert any(out.melody.notes != primer.notes * 2 for out in free)


def test_the_repetition_prior_is_numpy_only(tiny_generator):
    from melody_plugin.generate.sampler import SamplingError

    with pytest.raises(SamplingError, match="repetition prior runs in the numpy sampler"):
        tiny_generator.generate(None, num_bars=1, sampling=SamplingOptions(repetition=1.0, backend="tf"))


def test_outputs_named_after_a_primer_with_dots_keep_their_numbers_and_never_overwrite(tiny_generator, tmp_path):
    """A prefix with a dot, "p44_2.5bars_cont": three outputs are three files, p44_2.5bars_cont_001.mid to _003
    (with their sidecars), and a second write starts at _004, leaving the first three as they were."""
    from melody_plugin.generate.outputs import write_generations

    gens = tiny_generator.generate(None, num_bars=1, num_outputs=3)
    first = write_generations(gens, tmp_path, prefix="p44_2.5bars_cont")
    assert [p.name for p in first] == [f"p44_2.5bars_cont_00{i}.mid" for i in (1, 2, 3)]
    written = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(written) == {f"p44_2.5bars_cont_00{i}{s}" for i in (1, 2, 3) for s in (".mid", ".json")}
    again = write_generations(gens, tmp_path, prefix="p44_2.5bars_cont")
    assert [p.name for p in again] == [f"p44_2.5bars_cont_00{i}.mid" for i in (4, 5, 6)]
    assert all((tmp_path / name).read_bytes() == data for name, data in written.items())
