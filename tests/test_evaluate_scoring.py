"""Whole melodies -> scores: every figure of `melody_evaluate` against a hand count and a separate numpy computation.

The model is a tiny LSTM with random weights; the expected figures are computed here from its per-step softmax,
one token at a time, with the ids and pitches written out by hand from the input file.
"""

import math

import numpy as np
import pytest
from conftest import write_midi

from melody_plugin.evaluate import scoring as evaluate
from melody_plugin.generate.generator import MelodyGenerator
from melody_plugin.model import registry
from melody_plugin.music.melody import REST
from melody_plugin.tokens.vocab import NUM_SPECIAL, START, UNK, Vocabulary

TOKENS = ((REST, 12), (60, 12), (62, 12), (64, 12), (64, 24), (65, 12))


def _token_id(pitch, steps):
    return TOKENS.index((pitch, steps)) + NUM_SPECIAL if (pitch, steps) in TOKENS else UNK


@pytest.fixture(scope="module")
def generator():
    vocab = Vocabulary(TOKENS, 12)
    config = registry.with_hparams(registry.get_config("char_lstm"),
                                   "rnn_layer_sizes=[8],embedding_size=4,min_notes=1,min_token_count=1")
    rng = np.random.default_rng(12)
    size, units, emb = len(vocab), 8, 4
    weights = {
        "embedding": rng.normal(0, 1, (size, emb)).astype(np.float32),
        "lstm_0/kernel": rng.normal(0, 0.8, (emb, 4 * units)).astype(np.float32),
        "lstm_0/recurrent_kernel": rng.normal(0, 0.8, (units, 4 * units)).astype(np.float32),
        "lstm_0/bias": rng.normal(0, 0.5, 4 * units).astype(np.float32),
        "logits/kernel": rng.normal(0, 1.5, (units, size)).astype(np.float32),
        "logits/bias": rng.normal(0, 0.5, size).astype(np.float32),
    }
    return MelodyGenerator(config, vocab, weights, source="random")


def _expected(gen, melody):
    """The figures by hand: melody is [(pitch or None, quarters)]; one token per note, 12 steps per quarter."""
    ids = [START] + [_token_id(REST if p is None else p, round(q * 12)) for p, q in melody]
    true_pitches = [REST if p is None else p for p, _ in melody]
    state = gen.model.initial_state(1)
    nll = pitch_nll = 0.0
    correct = 0
    for t, target in enumerate(ids[1:]):
        logits, state = gen.model.step(np.array([ids[t]]), state)
        z = logits[0].astype(np.float64)
        probs = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        nll -= math.log(probs[target])
        correct += int(np.argmax(probs) == target)
        pitch = true_pitches[t]
        if pitch != REST:
            same_pitch = [i for i, (p, _) in enumerate(TOKENS) if p == pitch]
            p_pitch = sum(probs[i + NUM_SPECIAL] for i in same_pitch) if same_pitch else probs[UNK]
            pitch_nll -= math.log(p_pitch)
    notes = sum(p is not None for p, _ in melody)
    tokens = len(melody)
    return {
        "bits_per_note": nll / math.log(2) / notes,
        "bits_per_token": nll / math.log(2) / tokens,
        "perplexity": math.exp(nll / tokens),
        "accuracy": correct / tokens,
        "pitch_bits_per_note": pitch_nll / math.log(2) / notes,
        "notes": notes,
        "unk_notes": sum(p is not None and _token_id(p, round(q * 12)) == UNK for p, q in melody),
        "tokens": tokens,
        "oov_tokens": sum(_token_id(REST if p is None else p, round(q * 12)) == UNK for p, q in melody),
    }


def _notes(melody):
    """(pitch, start, end) in quarters from [(pitch or None, quarters)]."""
    out, t = [], 0.0
    for pitch, quarters in melody:
        if pitch is not None:
            out.append((pitch, t, t + quarters))
        t += quarters
    return out


def _score(gen, tmp_path, melody):
    folder = tmp_path / "input"
    folder.mkdir()
    write_midi(folder / "tune.mid", _notes(melody), key=0)
    return evaluate.evaluate_input(gen, folder)


# 3 bars of 4/4: pitch 100 is no pitch of the vocabulary; 64 for 3 quarters and 60 for 2 are known pitches with
# new durations; one quarter rest
MIXED = [(60, 1), (62, 1), (100, 1), (64, 1), (64, 3), (None, 1), (65, 1), (62, 1), (60, 2)]


def test_every_figure_matches_an_independent_computation(generator, tmp_path):
    scores = _score(generator, tmp_path, MIXED)
    expected = _expected(generator, MIXED)
    assert (expected["notes"], expected["unk_notes"], expected["tokens"], expected["oov_tokens"]) == (8, 3, 9, 3)
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value, rel=1e-5), name
    assert scores["files"] == 1 and scores["skipped"] == 0 and scores["melodies"] == 1


def test_without_rests_bits_per_note_equals_bits_per_token(generator, tmp_path):
    melody = [(60, 1), (62, 1), (64, 1), (65, 1), (100, 1), (64, 1), (62, 1), (60, 1)]  # 2 bars, no rest
    scores = _score(generator, tmp_path, melody)
    assert scores["notes"] == scores["tokens"] == 8 and scores["unk_notes"] == 1
    assert scores["bits_per_note"] == pytest.approx(scores["bits_per_token"], rel=1e-9)
    assert scores["pitch_bits_per_note"] == pytest.approx(_expected(generator, melody)["pitch_bits_per_note"],
                                                          rel=1e-5)


def test_ids_alone_count_an_unk_target_as_a_note_of_an_unknown_pitch(generator):
    ids = [START, _token_id(60, 12), UNK, _token_id(REST, 12)]
    scores = evaluate.score_ids(generator.model, [ids], generator.vocab)
    expected = _expected(generator, [(60, 1), (100, 1), (None, 1)])  # an unknown pitch scores through <unk>
    assert (scores["notes"], scores["unk_notes"], scores["tokens"]) == (2, 1, 3)
    assert scores["pitch_bits_per_note"] == pytest.approx(expected["pitch_bits_per_note"], rel=1e-5)
