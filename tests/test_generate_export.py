"""Trained weights -> SavedModel: the serving signature plans step counts as the in-process samplers do.

The vocabulary has only 6- and 12-step tokens, so exactly the multiples of 6 can be filled: a request for s steps
fills s - s % 6 and reports s % 6 unfilled (a hand count, checked against sampler.plan too).
"""

import numpy as np
import pytest

from melody_plugin.generate import sampler
from melody_plugin.generate.export import MAX_SERVING_STEPS, export_saved_model
from melody_plugin.generate.generator import MelodyGenerator
from melody_plugin.model import registry
from melody_plugin.music.melody import REST
from melody_plugin.runtime.quiet import import_tensorflow
from melody_plugin.tokens.vocab import NUM_SPECIAL, START, Vocabulary

TOKENS = ((REST, 6), (REST, 12), (60, 6), (60, 12), (62, 12))
DURATIONS = np.array([0] * NUM_SPECIAL + [d for _, d in TOKENS])


@pytest.fixture(scope="module")
def serving():
    """(tf, the loaded serving_default signature) of a random tiny model; the specials get the largest logits."""
    import tempfile

    tf = import_tensorflow()
    vocab = Vocabulary(TOKENS, 12)
    config = registry.with_hparams(registry.get_config("char_lstm"), "rnn_layer_sizes=[8],embedding_size=4")
    rng = np.random.default_rng(5)
    size, units, emb = len(vocab), 8, 4
    bias = rng.normal(0, 0.5, size)
    bias[:NUM_SPECIAL] += 5.0  # a sampler that forgets the mask would emit pad/start/<unk>
    weights = {
        "embedding": rng.normal(0, 1, (size, emb)),
        "lstm_0/kernel": rng.normal(0, 0.8, (emb, 4 * units)),
        "lstm_0/recurrent_kernel": rng.normal(0, 0.8, (units, 4 * units)),
        "lstm_0/bias": rng.normal(0, 0.5, 4 * units),
        "logits/kernel": rng.normal(0, 1.0, (units, size)),
        "logits/bias": bias,
    }
    gen = MelodyGenerator(config, vocab, {k: v.astype(np.float32) for k, v in weights.items()}, source="random")
    with tempfile.TemporaryDirectory() as tmp:
        path = export_saved_model(gen, f"{tmp}/saved")
        loaded = tf.saved_model.load(str(path))
        yield tf, loaded.signatures["serving_default"]


def _call(tf, fn, steps, temperature=1.0, seed=1):
    primer = [[START, NUM_SPECIAL + 3]] * len(steps)  # start, C4/12
    return fn(ids=tf.constant(primer, tf.int32), steps=tf.constant(steps, tf.int32),
              temperature=tf.constant(temperature), top_k=tf.constant(0), top_p=tf.constant(1.0),
              seed=tf.constant(seed, tf.int64))


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_steps_no_token_sequence_fills_are_filled_as_far_as_possible_and_reported(serving, temperature):
    tf, fn = serving
    steps = [15, 15, 15, 48, 5, 0, 17, 4096]
    out = _call(tf, fn, steps, temperature)
    unfilled = out["unfilled_steps"].numpy()
    assert unfilled.tolist() == [s % 6 for s in steps]  # hand count: only multiples of 6 can be filled
    assert unfilled.tolist() == sampler.plan(DURATIONS, steps)[3].tolist()  # as the in-process samplers plan
    for row, s, u in zip(out["ids"].numpy(), steps, unfilled):
        ids = row[row >= 0]
        assert (row[len(ids):] == -1).all()  # -1 only as trailing padding
        assert (ids >= NUM_SPECIAL).all()  # no pad, start or <unk> id
        assert DURATIONS[ids].sum() == s - u  # never overshoots, never stops short of the plan


@pytest.mark.parametrize("steps", [[MAX_SERVING_STEPS + 1], [48, 5000], [-1]])
def test_steps_out_of_range_are_refused_with_a_clear_error(serving, steps):
    tf, fn = serving
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"steps must be in \[0, 4096\] grid steps"):
        _call(tf, fn, steps)
