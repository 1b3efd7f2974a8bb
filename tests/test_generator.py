"""MelodyGenerator with the session's tiny model: exact bar counts per meter, primer intact, seeds, constraints."""

import dataclasses

import pytest

from conftest import PHRASES, make_sequence, pattern_notes
from melody_plugin import midi_io
from melody_plugin.generator import MelodyGenerator, MelodySequenceGenerator, PrimerError, get_generator_map
from melody_plugin.melody import melody_from_note_sequence


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


@pytest.mark.parametrize("meter", [(4, 4), (3, 4), (6, 8)])
@pytest.mark.parametrize("extra", [0.0, 1.0])
def test_output_is_primer_bars_plus_n_bars_exactly(tiny_generator, meter, extra):
    primer = primer_sequence(meter, extra)
    primer_melody = melody_from_note_sequence(primer)
    complete_bars = primer_melody.total_steps // primer_melody.steps_per_bar
    outputs = tiny_generator.generate(primer, num_bars=3, num_outputs=3, seed=4)
    for out in outputs:
        m = out.melody
        assert m.time_signature == meter
        assert m.total_steps == (complete_bars + 3) * m.steps_per_bar
        assert out.total_bars == complete_bars + 3
        seconds_per_bar = m.steps_per_bar * m.seconds_per_step
        assert out.note_sequence.total_time == pytest.approx((complete_bars + 3) * seconds_per_bar)
        assert_monophonic_and_bounded(out.note_sequence, out.note_sequence.total_time)
        assert m.notes[:len(primer_melody.notes)] == primer_melody.notes  # primer intact, first note included
        assert out.primer_steps == primer_melody.total_steps


def test_generation_continues_exactly_where_a_full_bar_primer_ends(tiny_generator):
    primer = primer_sequence((4, 4))
    pm = melody_from_note_sequence(primer)
    assert pm.total_steps % pm.steps_per_bar == 0  # the primer fills its last bar to the end
    out = tiny_generator.generate(primer, num_bars=2, seed=1)[0]
    first_new = out.melody.notes[len(pm.notes)]
    assert out.continuation_ids and tiny_generator.vocab.decode(out.continuation_ids[:1]).notes[0] == first_new
    assert out.melody.total_steps == pm.total_steps + 2 * pm.steps_per_bar


def test_continuation_only_keeps_bar_lines(tiny_generator):
    primer = primer_sequence((3, 4), 1.0)
    pm = melody_from_note_sequence(primer)
    out = tiny_generator.generate(primer, num_bars=2, seed=2, continuation_only=True)[0]
    lead = pm.total_steps % pm.steps_per_bar
    assert out.melody.total_steps == 2 * pm.steps_per_bar
    assert out.melody.notes[0].is_rest and out.melody.notes[0].duration_steps == lead


def test_same_seed_gives_same_midi_bytes(tiny_generator):
    primer = primer_sequence((6, 8))
    a = tiny_generator.generate(primer, num_bars=4, num_outputs=2, seed=11)
    b = tiny_generator.generate(primer, num_bars=4, num_outputs=2, seed=11)
    c = tiny_generator.generate(primer, num_bars=4, num_outputs=2, seed=12, temperature=1.5)
    bytes_a = [midi_io.note_sequence_to_midi_bytes(o.note_sequence) for o in a]
    assert bytes_a == [midi_io.note_sequence_to_midi_bytes(o.note_sequence) for o in b]
    assert [o.continuation_ids for o in a] != [o.continuation_ids for o in c]


def test_scale_constraint_yields_only_in_scale_pitches(tiny_generator):
    primer = primer_sequence((4, 4))
    outputs = tiny_generator.generate(primer, num_bars=8, num_outputs=4, seed=3, temperature=2.0,
                                      scale="C:major_pentatonic")
    for out in outputs:
        new = out.melody.notes[len(melody_from_note_sequence(primer).notes):]
        assert all(n.is_rest or n.pitch % 12 in {0, 2, 4, 7, 9} for n in new)


def test_pitch_range_constraint(tiny_generator):
    outputs = tiny_generator.generate(None, num_bars=8, num_outputs=4, seed=3, temperature=2.0, pitch_range="60:64")
    for out in outputs:
        assert all(n.is_rest or 60 <= n.pitch <= 64 for n in out.melody.notes)


def test_no_primer_starts_from_start_token_in_the_requested_meter(tiny_generator):
    out = tiny_generator.generate(None, num_bars=4, seed=0, time_signature=(3, 4), qpm=90)[0]
    assert out.melody.time_signature == (3, 4) and out.melody.qpm == 90
    assert out.melody.total_steps == 4 * out.melody.steps_per_bar


def test_the_tiny_model_continues_its_learned_phrase(tiny_generator):
    # trained on the 4/4 phrase repeated; greedy decoding after one phrase should repeat it
    primer = primer_sequence((4, 4))
    out = tiny_generator.generate(primer, num_bars=2, temperature=0.0, seed=0)[0]
    pm = melody_from_note_sequence(primer)
    assert out.melody.notes[len(pm.notes):] == pm.notes[:len(out.melody.notes) - len(pm.notes)]


def test_out_of_vocabulary_primer_notes_are_mapped_and_reported(tiny_generator):
    primer = make_sequence(pattern_notes([(60, 1), (62, 1), (64, 1), (65, 1), (67 + 24, 2), (None, 1), (64, 1)]))
    out = tiny_generator.generate(primer, num_bars=1, seed=0)[0]
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


def test_bundle_round_trip_gives_identical_output(tiny_generator, tmp_path):
    bundle = tmp_path / "tiny.mag"
    tiny_generator.save_bundle(bundle, "a test bundle")
    loaded = MelodyGenerator.from_bundle(bundle)
    assert loaded.config == tiny_generator.config and loaded.vocab == tiny_generator.vocab
    primer = primer_sequence((3, 4))
    a = tiny_generator.generate(primer, num_bars=4, num_outputs=2, seed=5)
    b = loaded.generate(primer, num_bars=4, num_outputs=2, seed=5)
    assert [o.continuation_ids for o in a] == [o.continuation_ids for o in b]
    from note_seq.protobuf import generator_pb2

    proto = generator_pb2.GeneratorBundle.FromString(bundle.read_bytes())
    assert proto.generator_details.id == "char_lstm"
    assert proto.bundle_details.description == "a test bundle"


def test_bad_bundle_is_a_clear_error(tmp_path):
    from melody_plugin.generator import ModelLoadError

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
    m = melody_from_note_sequence(ns)
    assert m.total_steps <= 6 * m.steps_per_bar  # primer 2 bars + section 4 bars
    assert max(n.end_time for n in ns.notes) <= 12.0 + 1e-9
    assert MelodySequenceGenerator(tiny_generator).details.id == "char_lstm"


def test_generator_map_has_every_config_and_loads_run_dirs(tiny_run_dir):
    from melody_plugin.registry import list_configs

    generators = get_generator_map()
    assert set(list_configs()) <= set(generators)
    gen = generators["char_lstm"](checkpoint=tiny_run_dir)
    assert isinstance(gen, MelodySequenceGenerator)
    from melody_plugin.generator import ModelLoadError

    with pytest.raises(ModelLoadError, match="not 'folk_lstm'"):
        generators["folk_lstm"](checkpoint=tiny_run_dir)


def test_numpy_inference_matches_keras_logits(tiny_generator):
    import numpy as np

    from melody_plugin.export import keras_model_from_generator

    model = keras_model_from_generator(tiny_generator)
    ids = np.array([[1, 5, 6, 7, 8, 5, 6, 7, 8, 9, 10, 5]])
    keras_logits = np.asarray(model(ids, training=False))
    numpy_logits, _ = tiny_generator.model.run(ids)
    np.testing.assert_allclose(keras_logits, numpy_logits, atol=1e-4)


def test_embedded_default_model_loads_and_generates():
    gen = MelodyGenerator.default()
    from melody_plugin.generator import EXAMPLE_PRIMER

    out = gen.generate(gen.primer_from_file(EXAMPLE_PRIMER),
                       num_bars=4, seed=0)[0]
    assert out.melody.time_signature == (6, 8)
    assert out.melody.total_steps % out.melody.steps_per_bar == 0
    assert dataclasses.asdict(gen.config)["name"] == "char_lstm"


@pytest.mark.parametrize("meter", [(4, 4), (3, 4), (6, 8)])
def test_compiled_tf_sampler_fills_bars_exactly_and_agrees_with_numpy(tiny_generator, meter):
    primer = primer_sequence(meter, 1.0)
    pm = melody_from_note_sequence(primer)
    complete = pm.total_steps // pm.steps_per_bar
    outs = tiny_generator.generate(primer, num_bars=3, num_outputs=4, seed=8, sampler_backend="tf")
    again = tiny_generator.generate(primer, num_bars=3, num_outputs=4, seed=8, sampler_backend="tf")
    assert [o.continuation_ids for o in outs] == [o.continuation_ids for o in again]
    for out in outs:
        assert out.melody.total_steps == (complete + 3) * pm.steps_per_bar
        assert len(out.log_likelihoods) == len(out.continuation_ids)
    greedy_tf = tiny_generator.generate(primer, num_bars=3, seed=0, temperature=0.0, sampler_backend="tf")
    greedy_np = tiny_generator.generate(primer, num_bars=3, seed=0, temperature=0.0, sampler_backend="numpy")
    assert greedy_tf[0].continuation_ids == greedy_np[0].continuation_ids
    np_ll, tf_ll = greedy_np[0].log_likelihoods, greedy_tf[0].log_likelihoods
    assert tf_ll == pytest.approx(np_ll, abs=1e-3)


def test_compiled_tf_sampler_respects_constraints(tiny_generator):
    outs = tiny_generator.generate(None, num_bars=4, num_outputs=4, seed=1, temperature=2.0, top_k=5, top_p=0.9,
                                   scale="C:major_pentatonic", pitch_range=(60, 72), sampler_backend="tf")
    for out in outs:
        assert all(n.is_rest or (n.pitch % 12 in {0, 2, 4, 7, 9} and 60 <= n.pitch <= 72) for n in out.melody.notes)
    from melody_plugin.sampler import SamplingError

    with pytest.raises(SamplingError, match="beam search runs in the numpy sampler"):
        tiny_generator.generate(None, num_bars=1, beam_size=2, sampler_backend="tf")
