"""Meter-aware inputs: the bar position and bar length fed with each token, in training, scoring and generation."""

import conftest
import numpy as np
import pytest

from melody_plugin.model import registry
from melody_plugin.music.melody import REST, Melody, Note
from melody_plugin.tokens.vocab import METER_FEATURE_SIZE, START, UNK, Vocabulary, meter_features, token_durations

# (meter, steps_per_bar at 12 steps per quarter, token durations with the start token's 0 first, expected
# positions written out by hand: where the token after each input begins, counted within its bar)
CASES = {
    "4/4": (48, [0, 12, 12, 24, 6, 6, 36], [0, 12, 24, 0, 6, 12, 0]),
    # a pickup of one quarter written as a leading rest of two quarters; the last bar is unfinished
    "3/4 pickup": (36, [0, 24, 12, 36, 18, 9], [0, 24, 0, 0, 18, 27]),
    "6/8 unfinished": (36, [0, 18, 6, 6, 6, 36, 12], [0, 18, 24, 30, 0, 0, 12]),
    "5/4": (60, [0, 36, 12, 24, 48], [0, 36, 48, 12, 0]),
    "7/8 pickup": (42, [0, 12, 12, 18, 6, 30], [0, 12, 24, 0, 6, 36]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_positions_are_where_the_next_token_begins_in_its_bar(case):
    steps_per_bar, durations, expected = CASES[case]
    positions, bar_steps = meter_features(durations, steps_per_bar)
    assert positions.tolist() == expected
    assert bar_steps.tolist() == [steps_per_bar] * len(durations)


def test_long_bars_are_clamped_to_the_embedding_table():
    positions, bar_steps = meter_features([0, 60, 40, 20], 120)  # 10/4 at 12 steps per quarter
    assert positions.tolist() == [0, 60, METER_FEATURE_SIZE - 1, 0]
    assert bar_steps.tolist() == [METER_FEATURE_SIZE - 1] * 4


def test_token_durations_of_an_encoded_6_8_melody_with_a_pickup():
    # 6/8 at 12 steps per quarter: 36 steps a bar; a two-eighth pickup is a rest of 4 eighths (24 steps)
    notes = (Note(REST, 24), Note(67, 6), Note(69, 6), Note(71, 18), Note(72, 6), Note(74, 12), Note(76, 36))
    melody = Melody(notes, 12, (6, 8), 120.0)
    vocab = Vocabulary.build([melody])
    ids = [START] + vocab.encode(melody) + [UNK]
    durations = token_durations(ids, vocab.durations())
    assert durations.tolist() == [0, 24, 6, 6, 18, 6, 12, 36, 0]  # <unk>: 0 when only its id is known
    positions, _ = meter_features(durations, melody.steps_per_bar)
    assert positions.tolist() == [0, 24, 30, 0, 18, 24, 0, 0, 0]


def test_folk_lstm_has_meter_features_and_char_lstm_keeps_the_tutorial_inputs():
    assert registry.get_config("folk_lstm").meter_features
    assert not registry.get_config("char_lstm").meter_features
    old = registry.get_config("char_lstm").to_json()
    del old["meter_features"]  # a config.json written before the field existed
    assert not registry.ModelConfig.from_json(old).meter_features


# --- a tiny model with meter features, trained once for this module

@pytest.fixture(scope="module")
def meter_run_dir(tmp_path_factory, tiny_corpus):
    return conftest.train_tiny_run(tmp_path_factory, tiny_corpus, "meter_run", ",meter_features=true")


@pytest.fixture(scope="module")
def meter_generator(meter_run_dir):
    from melody_plugin.generate.generator import MelodyGenerator

    return MelodyGenerator.from_run_dir(meter_run_dir)


def test_training_data_carries_each_melodys_bar_length(meter_run_dir):
    from melody_plugin.tokens import records as dataset

    _, bars = dataset.read_ids(meter_run_dir / "data" / dataset.TRAIN_FILE, with_steps_per_bar=True)
    # the tiny corpus: 4/4, 3/4, 6/8 and 7/8 tunes at 12 steps per quarter
    assert set(bars) <= {48, 36, 42} and 48 in bars and 36 in bars


def test_numpy_and_keras_logits_agree_with_meter_features(meter_generator):
    from melody_plugin.model import numpy_model

    gen = meter_generator
    assert gen.model.meter_features
    melody = gen.primer_from_text("C4:1 D4:0.5 E4:0.5 R:1 G4:1 E4:2", time_signature=(3, 4))
    ids = [START] + gen.vocab.encode(melody)
    positions, bar_steps = meter_features(token_durations(ids, gen.vocab.durations()), melody.steps_per_bar)
    batch = {"ids": np.array([ids], np.int32), "bar_position": positions[None], "bar_steps": bar_steps[None]}
    keras_logits = np.asarray(numpy_model.weights_to_keras_model(gen.config, gen.weights)(batch, training=False))
    numpy_logits, _ = gen.model.run(batch["ids"], positions=batch["bar_position"], bar_steps=batch["bar_steps"])
    np.testing.assert_allclose(numpy_logits, keras_logits, atol=1e-4)
    # the features change the output: the model does read them
    moved, _ = gen.model.run(batch["ids"], positions=(batch["bar_position"] + 3) % 36, bar_steps=batch["bar_steps"])
    assert not np.allclose(moved, numpy_logits, atol=1e-4)


def test_sampler_feeds_each_rows_bar_position_to_the_model():
    from melody_plugin.generate import sampler
    from melody_plugin.tokens.vocab import NUM_SPECIAL

    # tokens of 12 and 6 steps; the stub always prefers the 12-step token, then (when it cannot fit) the 6-step one
    durations = np.array([0] * NUM_SPECIAL + [12, 6])
    seen = []

    def next_logits(ids, state, positions):
        seen.append(positions.tolist())
        return np.tile(np.array([0.0] * NUM_SPECIAL + [5.0, 0.0]), (len(ids), 1)), state

    # a 3/4 bar (36 steps) whose primer ends 6 steps in; 30 steps to fill: 12 + 12 + 6
    start = sampler.DecodeStart([np.zeros((2, 1))], np.array([5, 5]), np.array([30, 30]),
                                bar_positions=np.array([6, 6]), steps_per_bar=36)
    result = sampler.sample(next_logits, start, sampler.TokenTable(durations),
                            sampler.SamplingOptions(temperature=0.0))
    assert result.ids == [[3, 3, 4]] * 2
    assert seen == [[6, 6], [18, 18], [30, 30]]  # 6, 6 + 12, 6 + 24: by hand


@pytest.mark.parametrize("backend", ["numpy", "tf"])
@pytest.mark.parametrize("meter, primer_text", conftest.BAR_EXACT_PRIMERS)
def test_meter_model_generates_bar_exact_output(meter_generator, backend, meter, primer_text):
    conftest.assert_bar_exact_generation(meter_generator, backend, meter, primer_text)


def test_tf_and_numpy_samplers_agree_greedily_with_meter_features(meter_generator):
    conftest.assert_samplers_agree_greedily(meter_generator, "G4:1 A4:0.5 B4:1", (7, 8), num_bars=2)


def test_bundle_and_saved_model_of_a_meter_model(meter_generator, tmp_path):
    from melody_plugin.generate.export import export_saved_model
    from melody_plugin.generate.generator import MelodyGenerator
    from melody_plugin.generate.sampler import SamplingOptions
    from melody_plugin.runtime.quiet import import_tensorflow

    gen = meter_generator
    primer = gen.primer_from_text("C4:1 D4:0.5 E4:0.5", time_signature=(3, 4))
    gen.save_bundle(tmp_path / "m.mag")
    loaded = MelodyGenerator.from_bundle(tmp_path / "m.mag")
    assert loaded.model.meter_features
    a, b = (g.generate(primer, num_bars=2, sampling=SamplingOptions(seed=5))[0] for g in (gen, loaded))
    assert a.continuation_ids == b.continuation_ids

    tf = import_tensorflow()
    saved = tf.saved_model.load(str(export_saved_model(gen, tmp_path / "saved")))
    ids = [START] + gen.vocab.encode(primer)
    bar = tf.constant([36], tf.int32)
    logits = saved.signatures["logits"](ids=tf.constant([ids], tf.int32), steps_per_bar=bar)["logits"].numpy()
    positions, bar_steps = meter_features(token_durations(ids, gen.vocab.durations()), 36)
    expected, _ = gen.model.run(np.array([ids]), positions=positions[None], bar_steps=bar_steps[None])
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    out = saved.signatures["serving_default"](
        ids=tf.constant([ids] * 2, tf.int32), steps=tf.constant([36 + 12, 12], tf.int32),
        temperature=tf.constant(1.0), top_k=tf.constant(0), top_p=tf.constant(1.0), seed=tf.constant(2, tf.int64),
        steps_per_bar=tf.constant([36, 36], tf.int32))
    for row, steps in zip(out["ids"].numpy(), (48, 12)):
        assert sum(int(gen.vocab.durations()[i]) for i in row if i >= 0) == steps


def test_an_old_style_run_dir_still_loads_and_generates_the_same(tiny_run_dir, tiny_generator, tmp_path):
    from conftest import assert_old_run_dir_generates_the_same

    assert_old_run_dir_generates_the_same(tiny_run_dir, tiny_generator, tmp_path, "meter_features")


def test_evaluation_feeds_the_melodys_own_bar_positions(meter_generator, tmp_path):
    from conftest import evaluate_waltz_by_hand

    from melody_plugin.evaluate import scoring as evaluate

    scores, ids, positions, _ = evaluate_waltz_by_hand(meter_generator, tmp_path)
    expected = evaluate.score_ids(meter_generator.model, [ids], meter_generator.vocab,
                                  features=[(positions, np.full(17, 36))])
    assert scores["bits_per_note"] == pytest.approx(expected["bits_per_note"], rel=1e-9)
    shifted = evaluate.score_ids(meter_generator.model, [ids], meter_generator.vocab,
                                 features=[((positions + 6) % 36, np.full(17, 36))])
    assert shifted["bits_per_note"] != pytest.approx(expected["bits_per_note"], rel=1e-6)


def test_a_dataset_without_bar_lengths_is_taken_as_4_4_and_says_so():
    from melody_plugin.train import data as train

    vocab = Vocabulary(((60, 12), (62, 6)), 12)
    config = registry.with_hparams(registry.get_config("char_lstm"), "meter_features=true")
    said = []
    train_meter, eval_meter = train._meter_inputs(config, vocab, ([None, 36], [None]), log=said.append)
    assert train_meter[0] == [48, 36] and eval_meter[0] == [48]
    assert train_meter[1].tolist() == [0, 0, 0, 12, 6]
    assert len(said) == 1 and "2 melodies carry no steps_per_bar" in said[0] and "4/4" in said[0]
    off = registry.get_config("char_lstm")
    assert train._meter_inputs(off, vocab, ([None], []), log=said.append) == (None, None)
