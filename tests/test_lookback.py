"""Bar lookback inputs: the tokens sounding one and two bars back, in training, scoring, generation and export."""

import dataclasses
import json
from pathlib import Path

import conftest
import numpy as np
import pytest

from melody_plugin.errors import ConfigError
from melody_plugin.model import registry
from melody_plugin.tokens.vocab import (
    LOOKBACK_STEPS,
    METER_FEATURE_SIZE,
    PAD,
    START,
    Vocabulary,
    lookback_features,
    meter_features,
    roll_lookback,
    token_durations,
)

# (steps_per_bar at 12 steps per quarter, token durations with the start token's 0 first, ids, and by hand: the id
# sounding one bar and two bars before where the token after each input begins; PAD (0) before the melody)
CASES = {
    # o = 0, 12, 24, 48, 96, 102, 108, 144; the whole note (id 13) is held across steps 54 and 60
    "4/4": (48, [0, 12, 12, 24, 48, 6, 6, 36], [START, 10, 11, 12, 13, 14, 15, 16],
            [0, 0, 0, 10, 13, 13, 13, 14], [0, 0, 0, 0, 10, 10, 11, 13]),
    # a one-quarter pickup written as a two-quarter rest (id 3); o = 0, 24, 36, 72, 90, 108, 120
    "3/4 pickup": (36, [0, 24, 12, 36, 18, 18, 12], [START, 3, 20, 21, 22, 23, 24],
                   [0, 0, 3, 21, 21, 22, 22], [0, 0, 0, 3, 3, 21, 21]),
    # o = 0, 18, 24, 30, 36, 72, 84; the dotted half (id 34) is held across step 48
    "6/8": (36, [0, 18, 6, 6, 6, 36, 12], [START, 30, 31, 32, 33, 34, 35],
            [0, 0, 0, 0, 30, 34, 34], [0, 0, 0, 0, 0, 30, 30]),
    # o = 0, 36, 48, 72, 120, 180: one bar before 180 is the whole-bar note itself (id 44, from 120)
    "5/4": (60, [0, 36, 12, 24, 48, 60], [START, 40, 41, 42, 43, 44],
            [0, 0, 0, 40, 42, 44], [0, 0, 0, 0, 40, 42]),
    # a pickup of one eighth after a rest of five (id 3); o = 0, 30, 42, 60, 66, 84, 126
    "7/8 pickup": (42, [0, 30, 12, 18, 6, 18, 42], [START, 3, 50, 51, 52, 53, 54],
                   [0, 0, 3, 3, 3, 51, 54], [0, 0, 0, 0, 0, 3, 51]),
    # a zero-length token (<unk> known only by its id) never sounds: o = 0, 48, 48, 96
    "4/4 unk": (48, [0, 48, 0, 48], [START, 10, 2, 11], [0, 10, 10, 11], [0, 0, 0, 10]),
    # 10/4 (120 steps) is fed as a bar of 96 steps, and looked back by that: o = 0, 96, 144, 192
    "10/4 clamped": (120, [0, 96, 48, 48], [START, 10, 11, 12], [0, 10, 10, 11], [0, 0, 0, 10]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_lookback_is_the_token_sounding_one_and_two_bars_back(case):
    steps_per_bar, durations, ids, one_bar, two_bars = CASES[case]
    lookback_1, lookback_2 = lookback_features(durations, ids, steps_per_bar)
    assert lookback_1.tolist() == one_bar
    assert lookback_2.tolist() == two_bars


def roll_through(sequences, durations, bars):
    """Feeds every sequence (rows of equal length) to the roll one step at a time; (lookback_1, lookback_2) rows."""
    rows = len(sequences)
    roll = np.full((rows, LOOKBACK_STEPS), PAD, np.int32)
    bar_steps = np.minimum(np.asarray(bars), METER_FEATURE_SIZE - 1)
    out1, out2 = [], []
    for t in range(len(sequences[0])):
        roll, back_1, back_2 = roll_lookback(roll, np.array([s[t] for s in sequences]),
                                             np.array([d[t] for d in durations]), bar_steps)
        out1.append(back_1)
        out2.append(back_2)
    return np.stack(out1, axis=1), np.stack(out2, axis=1)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_roll_buffer_gives_the_hand_computed_lookback(case):
    steps_per_bar, durations, ids, one_bar, two_bars = CASES[case]
    lookback_1, lookback_2 = roll_through([ids], [durations], [steps_per_bar])
    assert lookback_1[0].tolist() == one_bar
    assert lookback_2[0].tolist() == two_bars


def test_the_roll_buffer_agrees_with_the_vectorised_lookback_on_long_random_melodies():
    rng = np.random.default_rng(3)
    bars = [48, 36, 42, 120]
    sequences = [[START] + rng.integers(3, 30, size=80).tolist() for _ in bars]
    durations = [[0] + rng.choice([3, 6, 12, 18, 24, 48, 96, 200], size=80).tolist() for _ in bars]
    lookback_1, lookback_2 = roll_through(sequences, durations, bars)  # all four rows at once, each its own bar
    for row, (ids, steps, bar) in enumerate(zip(sequences, durations, bars)):
        expected_1, expected_2 = lookback_features(steps, ids, bar)
        assert lookback_1[row].tolist() == expected_1.tolist()
        assert lookback_2[row].tolist() == expected_2.tolist()


def test_config_field_needs_meter_features_and_old_configs_load_without_it():
    # read from the source tree: an editable install of another checkout maps melody_plugin.configs there
    preset = Path(__file__).resolve().parents[1] / "configs" / "folk_lookback.toml"
    lookback = registry.load_config_file(preset.read_text(encoding="utf-8"), str(preset))
    folk = registry.get_config("folk_lstm")
    assert lookback.bar_lookback and lookback.meter_features
    # folk_lstm's inputs and training, at the size, lanes and learning rate that learn most in a CPU budget
    assert (list(lookback.rnn_layer_sizes), lookback.batch_size, lookback.learning_rate, lookback.dropout_rate) == (
        [128, 128], 32, 0.003, 0.2)
    # the rest is folk_lstm's, but for the shape of tunes (tests/test_tune_shape.py)
    differ = ("name", "description", "bar_lookback", "rnn_layer_sizes", "batch_size", "learning_rate",
              "dropout_rate", "lr_decay", "end_token", "countdown", "copy_bars", "key_head", "key_tonic",
              "gate_countdown", "transpose_to_key", "final_pitch")
    assert dataclasses.replace(lookback, **{field: getattr(folk, field) for field in differ}) == folk
    assert not folk.bar_lookback
    with pytest.raises(ConfigError, match="bar_lookback needs meter_features"):
        registry.with_hparams(registry.get_config("char_lstm"), "bar_lookback=true")
    old = registry.get_config("folk_lstm").to_json()
    del old["bar_lookback"]  # a config.json written before the field existed
    assert not registry.ModelConfig.from_json(old).bar_lookback
    assert "bar_lookback" in registry.ARCHITECTURE_FIELDS


def test_windows_carry_the_lookback_ids_alongside_the_ids():
    from melody_plugin.tokens.batches import Batching, MeterInputs, make_dataset

    vocab = Vocabulary(((60, 12), (62, 24), (64, 48)), 12)  # ids 3, 4, 5
    # 4/4: a quarter, a half, a quarter (o = 12, 36, 48), then a whole note (o = 96) and a quarter (o = 108)
    sequence = np.array([START, 3, 4, 3, 5, 3])
    ds = make_dataset([sequence], Batching(5, 1, window_stride=1, shuffle=False, repeat=False),
                      MeterInputs([48], vocab.durations(), lookback=True))
    x, y = next(ds.as_numpy_iterator())
    assert x["ids"][0].tolist() == [START, 3, 4, 3, 5] and y[0].tolist() == [3, 4, 3, 5, 3]
    # one bar before o: -, -, -, step 0 (the first quarter, id 3), step 48 (the whole note, id 5)
    assert x["lookback_1"][0].tolist() == [PAD, PAD, PAD, 3, 5]
    assert x["lookback_2"][0].tolist() == [PAD, PAD, PAD, PAD, 3]  # step 0 from o = 96
    plain = make_dataset([sequence], Batching(5, 1, shuffle=False, repeat=False), MeterInputs([48], vocab.durations()))
    assert sorted(next(plain.as_numpy_iterator())[0]) == ["bar_position", "bar_steps", "ids"]


def test_meter_inputs_ask_for_lookback_when_the_config_does():
    from melody_plugin.train.data import _meter_inputs

    vocab = Vocabulary(((60, 12), (62, 6)), 12)
    on = registry.with_hparams(registry.get_config("char_lstm"), "meter_features=true,bar_lookback=true")
    off = registry.with_hparams(registry.get_config("char_lstm"), "meter_features=true")
    assert _meter_inputs(on, vocab, ([36], [48]), log=lambda *a: None)[0].lookback
    assert not _meter_inputs(off, vocab, ([36], [48]), log=lambda *a: None)[1].lookback


def test_carried_lanes_with_lookback_score_as_the_numpy_roll_does():
    """Lanes of windows (lookback ids computed per melody up front) give the NLL that NumpyLSTM's step-by-step roll
    gives scoring each melody whole: the training data and inference feed the same lookback."""
    from melody_plugin.evaluate.scoring import score_ids
    from melody_plugin.model import numpy_model
    from melody_plugin.runtime.quiet import import_tensorflow
    from melody_plugin.tokens.batches import Batching, MeterInputs, make_dataset
    from melody_plugin.train.step import _build_trainer

    tf = import_tensorflow()
    config = registry.with_hparams(registry.get_config("char_lstm"),
                                   "rnn_layer_sizes=[12],embedding_size=6,batch_size=2,window_size=5,"
                                   "carry_state=true,meter_features=true,bar_lookback=true")
    vocab = Vocabulary(tuple((p, d) for p in (60, 62, 64, 65, 67) for d in (6, 12, 24)), 12)
    rng = np.random.default_rng(7)
    sequences = [np.array([START] + rng.integers(3, len(vocab), size=n).tolist()) for n in (13, 4, 9, 21, 1)]
    bars = [48, 36, 36, 60, 48]
    durations = vocab.durations()
    trainer = _build_trainer(tf, tf.distribute.get_strategy(), config, vocab, mixed_precision=False)
    lanes = trainer.evaluate(make_dataset(sequences, Batching(5, 2, carry_state=True, shuffle=False, repeat=False),
                                          MeterInputs(bars, durations, lookback=True)), max_batches=10_000)
    features = [meter_features(token_durations(s, durations), b) for s, b in zip(sequences, bars)]
    model = numpy_model.NumpyLSTM(numpy_model.keras_to_weights(trainer.model), durations)
    whole = score_ids(model, sequences, vocab, features=features)
    assert lanes["bits_per_token"] == pytest.approx(whole["bits_per_token"], rel=1e-5)


# --- a tiny model with bar lookback, trained once for this module

@pytest.fixture(scope="module")
def lookback_run_dir(tmp_path_factory, tiny_corpus):
    return conftest.train_tiny_run(tmp_path_factory, tiny_corpus, "lookback_run",
                                   ",meter_features=true,bar_lookback=true")


@pytest.fixture(scope="module")
def lookback_generator(lookback_run_dir):
    from melody_plugin.generate.generator import MelodyGenerator

    return MelodyGenerator.from_run_dir(lookback_run_dir)


def test_numpy_step_by_step_and_keras_logits_agree_with_lookback(lookback_generator):
    from melody_plugin.model import numpy_model

    gen = lookback_generator
    assert gen.model.bar_lookback and gen.config.bar_lookback
    # three bars of 3/4 and a bit: the lookback reaches back two bars
    melody = gen.primer_from_text("C4:1 D4:0.5 E4:0.5 R:1 G4:1 E4:2 C4:1 D4:0.5 E4:0.5 R:1 G4:2", time_signature=(3, 4))
    ids = [START] + gen.vocab.encode(melody)
    steps = token_durations(ids, gen.vocab.durations())
    positions, bar_steps = meter_features(steps, melody.steps_per_bar)
    lookback_1, lookback_2 = lookback_features(steps, ids, melody.steps_per_bar)
    assert (lookback_2 != PAD).sum() >= 3  # the sequence does reach two bars back
    batch = {"ids": np.array([ids], np.int32), "bar_position": positions[None], "bar_steps": bar_steps[None],
             "lookback_1": lookback_1[None], "lookback_2": lookback_2[None]}
    keras_logits = np.asarray(numpy_model.weights_to_keras_model(gen.config, gen.weights)(batch, training=False))
    numpy_logits, state = gen.model.run(batch["ids"], positions=positions[None], bar_steps=bar_steps[None])
    np.testing.assert_allclose(numpy_logits, keras_logits, atol=1e-4)
    assert state[-1].shape == (1, LOOKBACK_STEPS) and state[-1][0, -1] == ids[-1]  # the last token sounds last
    # the lookback changes the output: the model does read it
    batch["lookback_1"] = np.full_like(batch["lookback_1"], ids[3])
    moved = np.asarray(numpy_model.weights_to_keras_model(gen.config, gen.weights)(batch, training=False))
    assert not np.allclose(moved, keras_logits, atol=1e-4)


@pytest.mark.parametrize("backend", ["numpy", "tf"])
@pytest.mark.parametrize("meter, primer_text", conftest.BAR_EXACT_PRIMERS)
def test_lookback_model_generates_bar_exact_output(lookback_generator, backend, meter, primer_text):
    conftest.assert_bar_exact_generation(lookback_generator, backend, meter, primer_text)


def test_beam_search_runs_with_the_roll_in_the_state(lookback_generator):
    from melody_plugin.generate.sampler import SamplingOptions

    primer = lookback_generator.primer_from_text("C4:1 D4:1 E4:2", time_signature=(4, 4))
    out = lookback_generator.generate(primer, num_bars=2, num_outputs=2,
                                      sampling=SamplingOptions(seed=1, beam_size=3, branch_factor=2))
    assert all(o.melody.total_steps == 3 * 48 for o in out)


def test_tf_and_numpy_samplers_agree_greedily_with_lookback(lookback_generator):
    conftest.assert_samplers_agree_greedily(lookback_generator, "G4:1 A4:0.5 B4:1 G4:1 A4:0.5 B4:1", (7, 8), num_bars=3)


def test_bundle_and_saved_model_of_a_lookback_model(lookback_generator, tmp_path):
    from melody_plugin.generate.export import export_saved_model
    from melody_plugin.generate.generator import MelodyGenerator
    from melody_plugin.generate.sampler import SamplingOptions
    from melody_plugin.runtime.quiet import import_tensorflow

    gen = lookback_generator
    # the tiny corpus's waltz phrase: in the vocabulary, so the ids last as long as the primer
    primer = gen.primer_from_text("G4:1 F4:0.5 E4:0.5 D4:1 C4:2 R:1 G4:1 F4:0.5 E4:0.5", time_signature=(3, 4))
    assert not gen.vocab.encode_with_report(primer)[1]
    gen.save_bundle(tmp_path / "m.mag")
    loaded = MelodyGenerator.from_bundle(tmp_path / "m.mag")
    assert loaded.model.bar_lookback
    a, b = (g.generate(primer, num_bars=2, sampling=SamplingOptions(seed=5))[0] for g in (gen, loaded))
    assert a.continuation_ids == b.continuation_ids

    tf = import_tensorflow()
    saved = tf.saved_model.load(str(export_saved_model(gen, tmp_path / "saved")))
    ids = [START] + gen.vocab.encode(primer)
    logits = saved.signatures["logits"](ids=tf.constant([ids, ids], tf.int32),
                                        steps_per_bar=tf.constant([36, 24], tf.int32))["logits"].numpy()
    for row, bar in enumerate((36, 24)):  # each row in its own meter (24 steps: 2/4)
        positions, bar_steps = meter_features(token_durations(ids, gen.vocab.durations()), bar)
        expected, _ = gen.model.run(np.array([ids]), positions=positions[None], bar_steps=bar_steps[None])
        np.testing.assert_allclose(logits[row:row + 1], expected, atol=1e-4)
    # serving_default feeds the same: greedily it continues as the numpy sampler does
    steps = (primer.total_steps // 36 + 2) * 36 - primer.total_steps  # what generate(num_bars=2) fills
    out = saved.signatures["serving_default"](
        ids=tf.constant([ids], tf.int32), steps=tf.constant([steps], tf.int32), temperature=tf.constant(0.0),
        top_k=tf.constant(0), top_p=tf.constant(1.0), seed=tf.constant(2, tf.int64),
        steps_per_bar=tf.constant([36], tf.int32))
    served = [int(i) for i in out["ids"].numpy()[0] if i >= 0]
    assert sum(int(gen.vocab.durations()[i]) for i in served) == steps
    local = gen.generate(primer, num_bars=2, sampling=SamplingOptions(temperature=0.0))[0]
    assert served == local.continuation_ids


def test_a_run_dir_without_the_field_still_loads(lookback_run_dir, tiny_run_dir, tiny_generator, tmp_path):
    from conftest import assert_old_run_dir_generates_the_same

    assert_old_run_dir_generates_the_same(tiny_run_dir, tiny_generator, tmp_path, "bar_lookback")
    # and the lookback run dir keeps its field
    assert json.loads((lookback_run_dir / "config.json").read_text())["bar_lookback"] is True


def test_evaluation_scores_a_lookback_model_through_its_roll(lookback_generator, tmp_path):
    from conftest import evaluate_waltz_by_hand

    from melody_plugin.evaluate import scoring as evaluate

    scores, ids, positions, steps = evaluate_waltz_by_hand(lookback_generator, tmp_path)
    expected = evaluate.score_ids(lookback_generator.model, [ids], lookback_generator.vocab,
                                  features=[(positions, np.full(17, 36), steps)])
    assert scores["bits_per_note"] == pytest.approx(expected["bits_per_note"], rel=1e-9)
    if scores["unk_notes"]:  # the roll moves by the true lengths, not by <unk>'s 0 steps
        table = evaluate.score_ids(lookback_generator.model, [ids], lookback_generator.vocab,
                                   features=[(positions, np.full(17, 36))])
        assert table["bits_per_note"] != pytest.approx(expected["bits_per_note"], rel=1e-6)
