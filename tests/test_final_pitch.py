"""The final-pitch input (ModelConfig.final_pitch): a tune's last pitch class, told in training and drawn first in
generation from the model's own posterior given the primer; the model then writes the tune and its last note.

Expected values come from the inputs (melodies written here, counted by hand), from a formula written out here, or
from the Keras model (an implementation apart from the numpy one the generator uses)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import conftest
from melody_plugin.model import registry
from melody_plugin.errors import ConfigError
from melody_plugin.music.melody import REST, Melody, Note
from melody_plugin.tokens.form import FINAL_NONE, FINAL_OPEN, final_pitch_class, final_pitch_features
from melody_plugin.tokens.vocab import START, Vocabulary

C_SET, D_SET = (60, 64, 67, 72), (62, 65, 69, 74)  # C E G C' and D F A D': the tunes of each kind keep to theirs


def test_final_pitch_class_is_the_last_sounding_note_counted_here():
    vocab = Vocabulary.build([Melody((Note(62, 12), Note(67, 24), Note(REST, 12)), 12, (4, 4), 120.0)],
                             end_token=True)
    pitches = vocab.pitches()
    d, g, rest = (vocab.token_to_id(t) for t in ((62, 12), (67, 24), (REST, 12)))
    # G (pitch class 7) is the last sounding note: the trailing rest and the end token do not count
    assert final_pitch_class([START, d, g, rest, vocab.end_id], pitches) == 7
    assert final_pitch_class([START, g, d], pitches) == 2
    assert final_pitch_class([START, rest, rest], pitches) == FINAL_NONE == 12
    assert final_pitch_class([START], pitches) == FINAL_NONE
    # every input of the melody brings it, or the open value where the end is not told
    np.testing.assert_array_equal(final_pitch_features([START, d, g, rest], pitches), [7, 7, 7, 7])
    np.testing.assert_array_equal(final_pitch_features([START, d, g, rest], pitches, open_ending=True),
                                  [FINAL_OPEN] * 4)


def test_final_counts_are_counted_here_by_mode_and_old_vocabularies_read_without():
    import dataclasses

    from melody_plugin.tokens.form import final_counts

    melodies = [Melody((Note(60, 12), Note(64, 12), Note(67, 12), Note(67, 12)), 12, (4, 4), 120.0),  # C E G: on G
                Melody((Note(60, 24), Note(64, 12), Note(55, 12), Note(REST, 24)), 12, (4, 4), 120.0),  # on G3
                Melody((Note(64, 12), Note(67, 12), Note(72, 36)), 12, (4, 4), 120.0),  # E G C: on C
                Melody((Note(69, 36), Note(64, 12), Note(72, 12), Note(68, 12), Note(69, 48)), 12, (4, 4), 120.0),
                Melody((Note(REST, 48),), 12, (4, 4), 120.0)]  # none
    vocab = Vocabulary.build(melodies, end_token=True)
    assert vocab.final_counts == () and "final_counts" not in vocab.to_json()
    sequences = [[START] + vocab.with_end(vocab.encode(m)) for m in melodies]
    # counted here: the first three are C major tunes (C E G), two ending on G and one on C; the fourth dwells on A
    # with its leading note G# (A minor) and ends on A; the last has no pitched note (major, "none")
    expected = [0] * 26
    expected[7], expected[0], expected[12], expected[13 + 9] = 2, 1, 1, 1
    assert list(final_counts(sequences, vocab.pitches(), vocab.durations())) == expected
    counted = dataclasses.replace(vocab, final_counts=tuple(expected))
    assert Vocabulary.from_json(counted.to_json()).final_counts == tuple(expected)


def test_prior_is_the_training_tunes_share_with_half_a_tune_more_for_each_pitch_class():
    from melody_plugin.generate.endings import final_prior

    major = [6, 0, 3, 0, 0, 0, 0, 2, 0, 1, 0, 0, 0]
    minor = [1, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0]
    both = [a + b for a, b in zip(major, minor)]
    for counts, mode in ((both, None), (major, False), (minor, True)):
        prior = np.exp(final_prior(major + minor, mode))
        total = sum(counts) + 12 * 0.5  # written out here: (count + 0.5) / (all counts + 12 halves); "none" 0
        np.testing.assert_allclose(prior[:12], [(c + 0.5) / total for c in counts[:12]])
        assert prior[12] == 0.0
    np.testing.assert_allclose(np.exp(final_prior(())), [1 / 12] * 12 + [0.0])  # a vocabulary without counts


def test_config_checks_and_old_configs_load_without_it():
    base = registry.get_config("char_lstm")
    with pytest.raises(ConfigError, match="final_pitch needs countdown"):
        registry.with_hparams(base, "meter_features=true,end_token=true,final_pitch=true")
    old = registry.get_config("folk_lookback").to_json()
    del old["final_pitch"]  # a config.json written before the field existed
    assert not registry.ModelConfig.from_json(old).final_pitch
    assert "final_pitch" in registry.ARCHITECTURE_FIELDS


# --- a tiny model trained once for this module

def two_key_corpus(folder, tunes: int = 48, seed: int = 0):
    """4/4 tunes of 4 bars of quarter notes played twice: half keep to C E G and end on C held a half note, half
    keep to D F A and end on D. Which pitch class a tune ends on shows in its first bar already."""
    return conftest.bar_tunes(folder, tunes, seed, [C_SET, D_SET])


HPARAMS = (",meter_features=true,end_token=true,countdown=true,carry_state=true,window_size=16,batch_size=8,"
           "open_countdown_share=0.25,final_pitch=true,copy_bars=[1,2,4],gate_countdown=6")


@pytest.fixture(scope="module")
def final_generator(tmp_path_factory):
    from melody_plugin.generate.generator import MelodyGenerator

    corpus = two_key_corpus(tmp_path_factory.mktemp("two_keys") / "tunes")
    return MelodyGenerator.from_run_dir(conftest.train_tiny_run(tmp_path_factory, corpus, "final_run", HPARAMS))


def primer_in(pitches, seed: int) -> Melody:
    rng = np.random.default_rng(seed)
    return Melody(tuple(Note(int(p), 12) for p in rng.choice(pitches, 8)), 12, (4, 4), 120.0)


def sequence_and_features(gen, melody: Melody, end_step: int):
    """[START] + ids of `melody`, and the generator's features for them (the countdown to `end_step`), built here
    from the durations: positions in the bar, the bar length, each id's steps, the bars left."""
    from melody_plugin.tokens.form import bars_left

    ids = [START] + gen.vocab.encode(melody)
    steps = np.array([0] + [n.duration_steps for n in melody.notes])
    ends = np.cumsum(steps)
    return ids, (ends % 48, np.full(len(ids), 48), steps, bars_left(end_step - ends, 48))


def test_the_posterior_is_prior_times_the_keras_models_likelihood_of_the_primer(final_generator):
    from melody_plugin.generate.endings import final_posterior, final_prior
    from melody_plugin.model.numpy_model import weights_to_keras_model
    from melody_plugin.tokens.form import copy_features

    gen = final_generator
    counts = np.reshape(gen.vocab.final_counts, (2, 13)).sum(axis=0)  # major and minor tunes together
    assert list(counts) == [24, 0, 24] + [0] * 10  # 24 tunes end on C, 24 on D
    primer = primer_in(D_SET, seed=5)
    ids, features = sequence_and_features(gen, primer, end_step=4 * 48)
    prior = final_prior(gen.vocab.final_counts)
    posterior, states = final_posterior(gen.model, ids, features, prior)
    # the same from the Keras model: for each class f, log p(f) + sum_t log softmax(logits)[t, ids[t + 1]]
    keras_model = weights_to_keras_model(gen.config, gen.weights)
    scores = []
    for f in range(13):
        batch = {"ids": np.array([ids]), "bar_position": features[0][None], "bar_steps": features[1][None],
                 "bars_left": features[3][None], "final_pitch": np.full((1, len(ids)), f),
                 **{f"copy_{k}": row[None] for k, row in zip(gen.config.copy_bars, copy_features(
                     features[2], ids, 48, gen.config.copy_bars))}}
        logits = np.asarray(keras_model(batch, training=False), np.float64)[0]
        logp = logits - np.log(np.exp(logits - logits.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True)) \
            - logits.max(axis=1, keepdims=True)
        scores.append(prior[f] + sum(logp[t, ids[t + 1]] for t in range(len(ids) - 1)))
    scores = np.array(scores)
    finite = np.isfinite(scores)
    expected = scores[finite] - np.log(np.exp(scores[finite] - scores[finite].max()).sum()) - scores[finite].max()
    np.testing.assert_allclose(posterior[finite], expected, atol=1e-3)
    assert math.exp(posterior[2]) > 0.9  # a primer on D F A: the tune ends on D
    assert states[-1][:, 0].tolist() == list(range(13))  # a state row per class, each told its class


@pytest.mark.parametrize("pitches, tonic", [(C_SET, 0), (D_SET, 2)])
def test_a_tiny_model_ends_its_tunes_where_the_primer_leads(final_generator, pitches, tonic, tmp_path):
    import json

    from melody_plugin.generate.outputs import write_generations
    from melody_plugin.generate.sampler import SamplingOptions

    gen = final_generator
    outs = gen.generate(primer_in(pitches, seed=11), num_bars=2, num_outputs=8,
                        sampling=SamplingOptions(seed=3, ending="tune"))
    last = [next(n.pitch for n in reversed(g.melody.notes) if not n.is_rest) % 12 for g in outs]
    assert all(g.melody.total_steps == 4 * 48 for g in outs)  # bar-exact
    assert sum(p == tonic for p in last) >= 7, last
    # each output says which final it was told, and the sidecar JSON too
    assert sum(g.final_pitch_class == p for g, p in zip(outs, last)) >= 7, [g.final_pitch_class for g in outs]
    write_generations(outs[:1], tmp_path)
    assert json.loads((tmp_path / "melody_001.json").read_text())["final_pitch_class"] == outs[0].final_pitch_class
    # open continuations are not told: they start from the open value
    open_ = gen.generate(primer_in(pitches, seed=11), num_bars=2, sampling=SamplingOptions(seed=3, ending="open"))
    assert open_[0].ending == "open" and open_[0].melody.total_steps == 4 * 48
    assert open_[0].final_pitch_class is None


def test_the_shipped_model_tells_the_final_in_the_primers_key():
    """The shipped model works in C major / A minor: a primer in G major (its notes, counted here: G B D, ending on
    G) is moved down a fifth for it, and the final it was told is reported moved back, as it sounds."""
    from melody_plugin.generate.generator import DEFAULT_MODEL_DIR, MelodyGenerator
    from melody_plugin.generate.sampler import SamplingOptions

    gen = MelodyGenerator.from_run_dir(DEFAULT_MODEL_DIR)
    primer = gen.primer_from_text("G4:1 B4:0.5 D5:0.5 G5:1 D5:1 B4:1 A4:0.5 G4:0.5 A4:1 B4:1 G4:2 D4:2")
    outs = gen.generate(primer, num_bars=4, num_outputs=8, sampling=SamplingOptions(seed=1, ending="tune"))
    finals = [g.final_pitch_class for g in outs]
    last = [next(n.pitch for n in reversed(g.melody.notes) if not n.is_rest) % 12 for g in outs]
    assert finals.count(7) >= 6, finals  # G
    assert sum(f == p for f, p in zip(finals, last)) >= 6, (finals, last)


def test_tunes_from_nothing_end_on_each_class_about_as_often_as_the_training_tunes(final_generator):
    from melody_plugin.generate.sampler import SamplingOptions

    gen = final_generator
    outs = gen.generate(None, num_bars=8, num_outputs=40, sampling=SamplingOptions(seed=1))
    assert all(g.ending == "tune" for g in outs)
    last = [next(n.pitch for n in reversed(g.melody.notes) if not n.is_rest) % 12 for g in outs]
    ends_c, ends_d = last.count(0), last.count(2)
    assert ends_c + ends_d >= 36 and ends_c >= 8 and ends_d >= 8, last  # half and half in training
    # the same seed draws the same tunes
    again = gen.generate(None, num_bars=8, num_outputs=40, sampling=SamplingOptions(seed=1))
    assert [g.melody for g in again] == [g.melody for g in outs]


def test_numpy_and_keras_agree_told_and_open(final_generator):
    from melody_plugin.model.numpy_model import weights_to_keras_model
    from melody_plugin.tokens.batches import MeterInputs, sequence_features

    gen = final_generator
    melody = primer_in(C_SET, seed=2)
    ids = [START] + gen.vocab.with_end(gen.vocab.encode(melody))
    meter = MeterInputs([48], gen.vocab.durations(), countdown=True, copy_bars=gen.config.copy_bars,
                        final_pitches=gen.vocab.pitches())
    keras_model = weights_to_keras_model(gen.config, gen.weights)
    for open_ending in (False, True):
        features = sequence_features(np.array(ids), 48, meter, open_ending)
        assert set(features["final_pitch"]) == {FINAL_OPEN if open_ending else melody.notes[-1].pitch % 12}
        batch = {"ids": np.array([ids]), **{k: v[None] for k, v in features.items()}}
        state = gen.model.initial_state(1)
        state[-1][:] = features["final_pitch"][0]
        numpy_logits, _ = gen.model.run(batch["ids"], state, batch["bar_position"], batch["bar_steps"],
                                        bars_left=batch["bars_left"])
        np.testing.assert_allclose(numpy_logits, np.asarray(keras_model(batch, training=False)), atol=1e-4)


def test_the_compiled_loop_and_the_saved_model_end_tunes_where_the_primer_leads(final_generator, tmp_path):
    import tensorflow as tf

    from melody_plugin.generate.export import export_saved_model
    from melody_plugin.generate.sampler import SamplingOptions

    gen = final_generator
    primer = primer_in(D_SET, seed=11)
    outs = gen.generate(primer, num_bars=2, num_outputs=8, sampling=SamplingOptions(seed=3, ending="tune",
                                                                                      backend="tf"))
    last = [next(n.pitch for n in reversed(g.melody.notes) if not n.is_rest) % 12 for g in outs]
    assert sum(p == 2 for p in last) >= 7, last
    export_saved_model(gen, tmp_path / "sm")
    serve = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    ids = [START] + gen.vocab.encode(primer)
    for tune in (True, False):
        out = serve(ids=tf.constant([ids] * 8, tf.int32), steps=tf.constant([96] * 8), temperature=tf.constant(1.0),
                    top_k=tf.constant(0), top_p=tf.constant(1.0), seed=tf.constant(3, tf.int64),
                    steps_per_bar=tf.constant([48] * 8), tune_ending=tf.constant(tune))
        rows = out["ids"].numpy()
        durations, pitches = gen.vocab.durations(), gen.vocab.pitches()
        assert all(durations[[i for i in row if i >= 0]].sum() == 96 for row in rows)  # bar-exact
        if tune:
            last = [pitches[[i for i in row if i >= 0 and pitches[i] >= 0][-1]] % 12 for row in rows]
            assert sum(p == 2 for p in last) >= 7, last
