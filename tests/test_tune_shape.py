"""Tunes with a shape: the end token, the countdown to the end, the copy sources and the copy gate, in training,
scoring, generation (both samplers, beam search), bundles, the SavedModel and old run dirs."""

import json
import math

import conftest
import numpy as np
import pytest

from melody_plugin.errors import ConfigError
from melody_plugin.model import registry
from melody_plugin.music.melody import Melody, Note
from melody_plugin.tokens.form import (
    COPY_STEPS,
    FINAL_STEPS,
    ONSET_RING_WIDTH,
    OPEN_COUNTDOWN,
    copy_features,
    countdown_features,
    ending_rows,
    ending_table,
    key_bonus,
    onset_ring,
    pitch_class_steps,
    pitch_class_table,
    ring_candidates,
    ring_onsets,
    ring_to_roll,
)
from melody_plugin.tokens.vocab import PAD, START, Vocabulary

# (steps_per_bar at 12 steps per quarter, token durations with the start token's 0 first, ids, and by hand: the
# countdown where the token after each input begins (the steps left within the last bar, else 96 + the bars left
# less one: 97 = 2 bars, 98 = 3...), and the id that began exactly one bar (and two bars) before there, PAD where
# none did)
CASES = {
    # o = 0, 12, 24, 48, 96, 102, 108, 144 (the end); steps left 144, 132, 120 (3 bars), 96 (2), 48, 42, 36, 0
    "4/4": (48, [0, 12, 12, 24, 48, 6, 6, 36], [START, 10, 11, 12, 13, 14, 15, 16],
            [98, 98, 98, 97, 48, 42, 36, 0], [0, 0, 0, 10, 13, 0, 0, 14], [0, 0, 0, 0, 10, 0, 11, 13]),
    # a one-quarter pickup written as a two-quarter rest (id 3); the tune stops mid-bar, at step 120 (its last
    # note's end): o = 0, 24, 36, 72, 90, 108, 120; steps left 120 (4 bars), 96, 84 (3), 48 (2), 30, 12, 0
    "3/4 pickup": (36, [0, 24, 12, 36, 18, 18, 12], [START, 3, 20, 21, 22, 23, 24],
                   [99, 98, 98, 97, 30, 12, 0], [0, 0, 3, 21, 0, 22, 0], [0, 0, 0, 3, 0, 21, 0]),
    # o = 0, 18, 24, 30, 36, 72, 84; steps left 84 (3 bars), 66, 60, 54, 48 (2), 12, 0; the dotted half (34)
    # holds step 48
    "6/8": (36, [0, 18, 6, 6, 6, 36, 12], [START, 30, 31, 32, 33, 34, 35],
            [98, 97, 97, 97, 97, 12, 0], [0, 0, 0, 0, 30, 34, 0], [0, 0, 0, 0, 0, 30, 0]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_countdown_and_copy_sources_counted_by_hand(case):
    bar, durations, ids, left, one_back, two_back = CASES[case]
    assert countdown_features(durations, bar).tolist() == left
    assert countdown_features(durations, bar, open_ending=True).tolist() == [OPEN_COUNTDOWN] * len(ids)
    copies = copy_features(durations, ids, bar, (1, 2))
    assert copies[0].tolist() == one_back
    assert copies[1].tolist() == two_back


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_onset_ring_step_by_step_gives_the_hand_counted_copy_sources(case):
    bar, durations, ids, _, one_back, two_back = CASES[case]
    ring = onset_ring(1)
    got = []
    for token, steps in zip(ids, durations):
        ring = ring_onsets(ring, np.array([token]), np.array([steps]))
        got.append(ring_candidates(ring, [bar], (1, 2))[0].tolist())
    assert [g[0] for g in got] == one_back
    assert [g[1] for g in got] == two_back


def test_onset_ring_agrees_with_the_vectorised_copy_sources_on_long_random_melodies():
    """Over 300 tokens (far more steps than the ring holds) in three bar lengths, the ring's sources match
    copy_features at every step, and its roll (the TF sampler's form) holds the id begun at each of the last
    COPY_STEPS steps, onsets counted here with a running sum."""
    rng = np.random.default_rng(4)
    for bar in (36, 48, 96):
        durations = np.concatenate([[0], rng.choice([0, 3, 6, 12, 18, 24, 48], 300)])
        ids = np.concatenate([[START], rng.integers(3, 60, 300)])
        expected = copy_features(durations, ids, bar, (1, 2, 4, 8))
        ring, onsets, now = onset_ring(1), {}, 0
        for t, (token, steps) in enumerate(zip(ids, durations)):
            ring = ring_onsets(ring, np.array([token]), np.array([steps]))
            assert ring_candidates(ring, [bar], (1, 2, 4, 8))[0].tolist() == expected[:, t].tolist()
            if steps:
                onsets[now] = token
            now += steps
        roll = [onsets.get(step, PAD) for step in range(now - COPY_STEPS, now)]
        assert ring_to_roll(ring)[0].tolist() == roll


def test_the_key_heads_pitch_class_steps_counted_by_hand():
    # ids: the start token, C4 (12 steps), a rest (12), G4 (24), C5 (6), <unk> (6): their pitch classes by hand
    pitches = np.array([-2, -2, -2, -1, 60, 67, 72])  # pad, start, unk, rest, C4, G4, C5
    ids = [START, 4, 3, 5, 6, 2]
    durations = [0, 12, 12, 24, 6, 6]
    table = pitch_class_table(pitches)
    assert table.sum(axis=1).tolist() == [0, 0, 0, 0, 1, 1, 1]
    held = pitch_class_steps(durations, ids, table)
    c, g = 0, 7
    expected = [{}, {c: 12}, {c: 12}, {c: 12, g: 24}, {c: 18, g: 24}, {c: 18, g: 24}]
    assert held.tolist() == [[row.get(k, 0) for k in range(12)] for row in expected]


def test_the_key_bonus_is_the_formula_and_its_fits_are_the_key_finders_correlations():
    """form.key_bonus and keras_model.key_bonus against the sum written out here: for each pitch class c,
    sum_k w_k share_((c + k) mod 12) with the profile's first 12 weights, plus its last two times the Pearson
    correlations (np.corrcoef) of the histogram with the Krumhansl-Kessler major and minor profiles rotated to c;
    with the major weight alone, the best c is the tonic find_key picks among major keys."""
    from melody_plugin.model.keras_model import key_bonus as keras_key_bonus
    from melody_plugin.music.key import MAJOR_PROFILE, MINOR_PROFILE, find_key
    from melody_plugin.runtime.quiet import import_keras

    rng = np.random.default_rng(5)
    steps = rng.integers(0, 50, size=(6, 12)).astype(np.int32)
    steps[0] = 0  # nothing sounded yet: no bonus
    profile = rng.normal(size=(6, 14)).astype(np.float32)
    expected = np.zeros((6, 12))
    for row in range(6):
        total = max(steps[row].sum(), 1)
        for c in range(12):
            expected[row, c] = sum(profile[row, k] * steps[row, (c + k) % 12] / total for k in range(12))
            if row:
                for weight, table in zip(profile[row, 12:], (MAJOR_PROFILE, MINOR_PROFILE)):
                    expected[row, c] += weight * np.corrcoef(steps[row], np.roll(table, c))[0, 1]
    np.testing.assert_allclose(key_bonus(profile, steps), expected, rtol=1e-4, atol=1e-5)
    keras_bonus = np.asarray(keras_key_bonus(import_keras().ops, profile, steps))
    np.testing.assert_allclose(keras_bonus, expected, rtol=1e-4, atol=1e-5)
    major_only = np.zeros(14, np.float32)
    major_only[12] = 1.0
    for row in range(1, 6):
        notes = [Note(60 + pc, int(n)) for pc, n in enumerate(steps[row]) if n]
        found = find_key(notes)
        if not found.minor:
            assert int(np.argmax(key_bonus(major_only, steps[row]))) == found.tonic


def test_the_copy_mixture_is_the_formula():
    """keras_model.mix_copies against the mixture written out here: p = g0 softmax(l) + sum_k g_k [y = c_k], the
    gate a softmax over the LSTM and the sources that have a token."""
    from melody_plugin.model.keras_model import mix_copies
    from melody_plugin.runtime.quiet import import_keras

    ops = import_keras().ops
    rng = np.random.default_rng(0)
    vocab, sources = 7, 3
    logits = rng.normal(size=(4, vocab)).astype(np.float32)
    gate_logits = rng.normal(size=(4, sources + 1)).astype(np.float32)
    candidates = np.array([[3, 5, 3], [PAD, 4, PAD], [PAD, PAD, PAD], [6, 6, 6]], np.int32)
    got = np.exp(np.asarray(mix_copies(ops, logits, gate_logits, candidates, vocab)))
    for row in range(4):
        weights = [math.exp(gate_logits[row, 0])] + [math.exp(gate_logits[row, k + 1]) if candidates[row, k] else 0.0
                                                     for k in range(sources)]
        total = sum(weights)
        softmax = [math.exp(v) / sum(math.exp(u) for u in logits[row]) for v in logits[row]]
        expected = [weights[0] / total * softmax[y] + sum(weights[k + 1] / total for k in range(sources)
                                                           if candidates[row, k] == y and y != PAD)
                    for y in range(vocab)]
        np.testing.assert_allclose(got[row], expected, rtol=1e-5, atol=1e-7)
        assert got[row].sum() == pytest.approx(1.0, abs=1e-5)


def test_training_scores_the_mixture_at_its_targets_only():
    """keras_model.copy_mixture_targets (what training and its evaluation use) against the mixture written out here:
    -log p(y) and the argmax (the lowest id among ties) for every target, and its gradients against those through
    the whole (..., V) mixture (`mix_copies` then a cross-entropy)."""
    from melody_plugin.model.keras_model import copy_mixture_targets, mix_copies
    from melody_plugin.runtime.quiet import import_keras, import_tensorflow

    ops, tf = import_keras().ops, import_tensorflow()
    rng = np.random.default_rng(1)
    vocab, sources = 7, 3
    candidates = np.array([[3, 5, 3], [PAD, 4, PAD], [PAD, PAD, PAD], [6, 6, 6], [2, 2, 5]], np.int32)
    rows = len(candidates)
    logits = rng.normal(size=(rows, vocab)).astype(np.float32)
    gate_logits = rng.normal(size=(rows, sources + 1)).astype(np.float32)
    gate_logits[4] = [-8.0, 3.0, 3.0, 0.0]  # the copies outweigh the LSTM: the argmax is a source
    for y in range(1, vocab):
        targets = np.full(rows, y, np.int32)
        nll, predictions = copy_mixture_targets(ops, logits, gate_logits, candidates, targets)
        for row in range(rows):
            weights = [math.exp(gate_logits[row, 0])] + [math.exp(gate_logits[row, k + 1]) if candidates[row, k]
                                                         else 0.0 for k in range(sources)]
            softmax = [math.exp(v) / sum(math.exp(u) for u in logits[row]) for v in logits[row]]
            mixture = [(weights[0] * softmax[v] + sum(weights[k + 1] for k in range(sources)
                                                      if candidates[row, k] == v and v != PAD)) / sum(weights)
                       for v in range(vocab)]
            assert float(nll[row]) == pytest.approx(-math.log(mixture[y]), rel=1e-5)
            assert int(predictions[row]) == mixture.index(max(mixture))
    assert int(copy_mixture_targets(ops, logits, gate_logits, candidates, targets)[1][4]) == 2

    targets = np.array([3, 4, 1, 6, 5], np.int32)
    variables = [tf.constant(logits), tf.constant(gate_logits)]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(variables)
        sparse = tf.reduce_sum(copy_mixture_targets(ops, *variables, candidates, targets)[0])
        full = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
            targets, mix_copies(ops, *variables, candidates, vocab)))
    for a, b in zip(tape.gradient(sparse, variables), tape.gradient(full, variables)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_ending_weight_counts_the_last_bars_targets_that_many_times():
    """The training loss of the 4/4 case (CASES) with ending_weight=3 against the one written out here: each target's
    -log softmax of the model's logits (numpy), the 4 targets from the last bar on (countdown <= 48 by hand: the
    inputs at steps 96, 102, 108 and 144) counted 3 times, over the batch's tokens; the reported sums count each
    target once."""
    from melody_plugin.runtime.quiet import import_tensorflow
    from melody_plugin.tokens.batches import Batching, MeterInputs, make_dataset
    from melody_plugin.train.step import _build_trainer

    tf = import_tensorflow()
    bar, durations, ids, countdown = CASES["4/4"][:4]
    # ids 3..9 are fillers; ids 10..16 last what the case says; the end token is id 17
    vocab = Vocabulary(tuple((50 + i, 12) for i in range(7)) + tuple((60 + i, d) for i, d in enumerate(durations[1:])),
                       12, end_token=True)
    sequence = ids + [vocab.end_id]
    hparams = ("rnn_layer_sizes=[8],embedding_size=4,dropout_rate=0.0,batch_size=1,window_size=8,carry_state=true,"
               "meter_features=true,end_token=true,countdown=true")
    base = registry.get_config("char_lstm")
    configs = {w: registry.with_hparams(base, f"{hparams},ending_weight={w}") for w in (1, 3)}
    trainers = {w: _build_trainer(tf, tf.distribute.get_strategy(), config, vocab, mixed_precision=False)
                for w, config in configs.items()}
    trainers[3].model.set_weights(trainers[1].model.get_weights())
    meter = MeterInputs([bar], vocab.durations(), countdown=True)
    batch = next(iter(make_dataset([np.array(sequence)], Batching(8, 1, carry_state=True, shuffle=False, repeat=False),
                                   meter)))
    assert batch[0]["bars_left"].numpy()[0].tolist() == countdown  # the hand count: the setup is the case's
    logits = trainers[1].model(batch[0], training=False).numpy()[0].astype(np.float64)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    nll = -log_softmax[np.arange(8), sequence[1:]]
    last_bar = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    for weight, trainer in trainers.items():
        loss, sums = trainer._loss(batch, training=False)
        assert float(loss) == pytest.approx(float((nll * (1 + (weight - 1) * last_bar)).sum() / 8), rel=1e-5)
        assert float(sums["nll"]) == pytest.approx(float(nll.sum()), rel=1e-5)
    with pytest.raises(ConfigError, match="ending_weight needs countdown"):
        registry.with_hparams(base, "ending_weight=2")
    for bad in ("0.5", "inf", "nan"):
        with pytest.raises(ConfigError, match="ending_weight must be a finite number >= 1"):
            registry.with_hparams(base, f"{hparams},ending_weight={bad}")


@pytest.mark.parametrize("cap, expected", [(3, [0, 1, 2, 3, 3, 3]), (6, [0, 1, 2, 5, 6, 6])])
def test_the_copy_gates_countdown_tells_apart_the_bars_left_up_to_its_cap(cap, expected):
    """Countdown values at the end, 5 steps into the last bar, then 2, 5 and 9 bars left (FINAL_STEPS + bars - 1,
    counted by hand from form's layout), then open: the gate's one-hot is at min(bars left, cap), the open countdown
    with the furthest; numpy and Keras alike, after the 2 source and 1 pair columns."""
    from melody_plugin.model.keras_model import copy_gate_features
    from melody_plugin.model.numpy_model import gate_features
    from melody_plugin.runtime.quiet import import_keras

    values = np.array([0, 5, FINAL_STEPS + 1, FINAL_STEPS + 4, FINAL_STEPS + 8, OPEN_COUNTDOWN])
    candidates = np.full((6, 2), PAD, np.int32)
    for features in (gate_features(candidates, values, cap),
                     np.asarray(copy_gate_features(import_keras().ops, candidates, values, cap))):
        assert features.shape == (6, 3 + cap + 1)
        assert features[:, 3:].argmax(axis=1).tolist() == expected and features[:, 3:].sum(axis=1).tolist() == [1] * 6


def test_phrase_endings_cut_the_training_melodies_at_n_and_2n_bars_counted_by_hand():
    """phrase_endings=8 in 4/4 (48 steps a bar): 20 bars of quarters are cut after 32 and 64 quarters; a half note
    across bar 8's end (31 quarters, then the half from step 372 to 396) leaves only the cut at bar 16 (63 tokens:
    31 + 1 + 31); a 16-bar melody is cut at bar 8 alone (its own end is no extra ending); `<unk>` (no length) and
    3/4 (36 steps a bar: bar 8 ends after 24 quarters) as counted here. Each cut ends with the end token."""
    from melody_plugin.train.data import with_phrase_endings

    from melody_plugin.music.melody import REST

    vocab = Vocabulary(((60, 12), (62, 24), (REST, 12)), 12, end_token=True)
    quarter, half, end = vocab.token_to_id((60, 12)), vocab.token_to_id((62, 24)), vocab.end_id
    rest = vocab.token_to_id((REST, 12))
    unk = vocab.token_to_id((99, 12))
    melodies = [[START] + [quarter] * 80 + [end],
                [START] + [quarter] * 31 + [half] + [quarter] * 47 + [end],
                [START] + [quarter] * 64 + [end],
                [START] + [quarter] * 40 + [unk] + [quarter] * 40 + [end],
                [START] + [quarter] * 60 + [end],
                [START] + [quarter] * 31 + [rest] + [quarter] * 48 + [end]]
    config = registry.with_hparams(registry.get_config("folk_lookback"), "phrase_endings=8")
    logged = []
    seqs, bars = with_phrase_endings(config, vocab, [np.array(m) for m in melodies], [48, 48, 48, 48, 36, 48],
                                     logged.append)
    crops = [s.tolist() for s in seqs[6:]]
    assert crops == [[START] + [quarter] * 32 + [end], [START] + [quarter] * 64 + [end],
                     [START] + [quarter] * 31 + [half] + [quarter] * 31 + [end],
                     [START] + [quarter] * 32 + [end],
                     [START] + [quarter] * 24 + [end], [START] + [quarter] * 48 + [end],
                     [START] + [quarter] * 31 + [rest] + [quarter] * 32 + [end]]  # bar 8 ends on a rest: no cut
    assert bars == [48, 48, 48, 48, 36, 48] + [48, 48, 48, 48, 36, 36, 48]
    assert [s.tolist() for s in seqs[:6]] == melodies and logged == [
        "phrase_endings=8: 7 phrase endings train with the 6 training melodies"]
    off = registry.get_config("folk_lookback")
    assert with_phrase_endings(off, vocab, melodies, [48] * 5) == (melodies, [48] * 5)
    with pytest.raises(ConfigError, match=r"gate_countdown is the copy gate's view of the countdown: it needs "
                                          r"copy_bars and countdown \(got copy_bars=\[\], countdown=false\)"):
        registry.with_hparams(registry.get_config("char_lstm"), "gate_countdown=17")
    with pytest.raises(ConfigError, match="phrase_endings needs countdown"):
        registry.with_hparams(registry.get_config("char_lstm"), "phrase_endings=8")


def test_end_token_vocabulary_round_trips_and_old_files_have_none(tmp_path):
    melody = Melody((Note(60, 12), Note(-1, 12), Note(62, 24)), 12, (4, 4), 120.0)
    vocab = Vocabulary.build([melody], end_token=True)
    assert len(vocab) == 3 + 3 + 1 and vocab.end_id == 6
    assert vocab.durations()[vocab.end_id] == 0 and vocab.pitches()[vocab.end_id] == -2
    ids = vocab.with_end(vocab.encode(melody))
    assert ids[-1] == vocab.end_id and vocab.decode(ids + [3]).notes == melody.notes  # decoding stops at the end
    vocab.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json") == vocab
    old = json.loads((tmp_path / "v.json").read_text())
    del old["end_token"]  # a vocabulary written before end tokens
    plain = Vocabulary.from_json(old)
    assert plain.end_id is None and len(plain) == 6 and plain.with_end([4]) == [4]


def test_key_tonic_marks_the_tonic_of_the_best_fitting_key_counted_here():
    """With a KEY_TONIC_PROFILE_SIZE profile, form.key_bonus and keras_model.key_bonus give (..., 2, 12): the bonus
    of any token, with the 15th weight where c major, the 16th where c minor, is the best of the 24 keys, then the
    ending token's extra bonus, the 17th and 18th weights there. The best key is the best np.corrcoef of the
    histogram with the rotated Krumhansl-Kessler profiles, found here. No tonic before a pitch sounds or for a flat
    histogram."""
    from melody_plugin.model.keras_model import key_bonus as keras_key_bonus
    from melody_plugin.music.key import MAJOR_PROFILE, MINOR_PROFILE
    from melody_plugin.runtime.quiet import import_keras

    rng = np.random.default_rng(11)
    steps = (rng.integers(0, 40, size=(40, 12)) * (rng.random((40, 12)) < 0.6)).astype(np.int32)
    steps[0] = 0  # nothing sounded yet
    steps[1] = 7  # flat: every key fits equally (not at all)
    steps[2] = 0
    steps[2, 4] = 5  # one pitch class
    profile = np.zeros((40, 18), np.float32)
    profile[:, 14:] = 1.0, 10.0, 100.0, 1000.0
    expected = np.zeros((40, 2, 12))
    for row in range(2, 40):
        fits = {(c, minor): np.corrcoef(steps[row], np.roll(table, c))[0, 1]
                for c in range(12) for minor, table in ((0, MAJOR_PROFILE), (1, MINOR_PROFILE))}
        c, minor = max(fits, key=fits.get)
        expected[row, :, c] = (10.0, 1000.0) if minor else (1.0, 100.0)
    np.testing.assert_allclose(key_bonus(profile, steps), expected, atol=1e-6)
    np.testing.assert_allclose(np.asarray(keras_key_bonus(import_keras().ops, profile, steps)), expected, atol=1e-6)
    assert {int(v) for v in expected[2:, 0].max(axis=1)} == {1, 10}  # both modes were tried


def test_the_ending_table_marks_the_tokens_that_fill_the_steps_left():
    """Row r of form.ending_table marks the ids lasting exactly r steps (r >= 1); a countdown value reads row r in
    the last bar (r steps left) and row 0, no id, before it or when open (form.ending_rows)."""
    durations = [0, 0, 3, 6, 12, 3, 0]  # PAD, START, three notes, a rest of 3, the end token
    table = ending_table(durations)
    assert table.shape == (FINAL_STEPS + 1, 7)
    assert np.flatnonzero(table[3]).tolist() == [2, 5]
    assert np.flatnonzero(table[12]).tolist() == [4]
    assert not table[0].any() and not table[5].any()
    assert ending_rows([0, 5, FINAL_STEPS, FINAL_STEPS + 1, OPEN_COUNTDOWN]).tolist() == [0, 5, FINAL_STEPS, 0, 0]


def test_config_checks_and_old_configs_load_without_the_fields():
    base = registry.get_config("char_lstm")
    with pytest.raises(ConfigError, match="countdown needs meter_features and end_token"):
        registry.with_hparams(base, "countdown=true,meter_features=true")
    with pytest.raises(ConfigError, match="key_tonic needs key_head and countdown .* got key_head=true, "
                                          "countdown=false: turn them on, or key_tonic off"):
        registry.with_hparams(base, "meter_features=true,key_head=true,key_tonic=true")
    with pytest.raises(ConfigError, match="copy_bars needs meter_features"):
        registry.with_hparams(base, "copy_bars=[1,2]")
    with pytest.raises(ConfigError, match="copy_bars must be distinct bar counts in 1..8"):
        registry.with_hparams(base, "meter_features=true,copy_bars=[1,9]")
    shaped = registry.get_config("folk_lookback")
    assert shaped.end_token and shaped.countdown and shaped.copy_bars == (1, 2, 4, 8)
    old = {k: v for k, v in shaped.to_json().items() if k not in ("end_token", "countdown", "copy_bars",
                                                                  "open_countdown_share", "key_head", "key_tonic",
                                                                  "ending_weight",
                                                                  "phrase_endings", "gate_countdown", "final_pitch")}
    loaded = registry.ModelConfig.from_json(old)  # a config.json written before the fields existed
    assert not loaded.end_token and not loaded.countdown and loaded.copy_bars == ()
    assert not loaded.key_head and not loaded.key_tonic and loaded.ending_weight == 1.0
    assert loaded.phrase_endings == 0 and loaded.gate_countdown == 3 and not loaded.final_pitch


def test_training_lanes_draw_the_open_countdown_anew_each_pass():
    """In shuffled training lanes every melody meets the open countdown in about open_share of the passes (and its
    own countdown in the rest), not the same melodies every pass; evaluation lanes keep the choice by index."""
    from melody_plugin.tokens.batches import Batching, MeterInputs, is_open, make_dataset

    melodies = 8
    durations = np.full(64, 12)  # every id a quarter note at 12 steps a quarter; START's length is not read
    durations[START] = 0
    sequences = [[START] + [10 + i] * 4 for i in range(melodies)]  # melody i is told by its id, 10 + i
    meter = MeterInputs([48] * melodies, durations, countdown=True, open_share=0.25)
    seen = {i: [] for i in range(melodies)}  # per melody, whether each of its passes fed the open countdown
    batches = make_dataset(sequences, Batching(8, 2, carry_state=True, seed=3), meter)
    for inputs, _, weights, reset in batches.take(4 * 40).as_numpy_iterator():
        for row in np.flatnonzero((reset == 1) & (weights[:, 0] > 0)):
            seen[int(inputs["ids"][row, 1]) - 10].append(int(inputs["bars_left"][row, 0]) == OPEN_COUNTDOWN)
    passes = [len(v) for v in seen.values()]
    assert min(passes) >= 30  # 40 passes of 8 melodies in 2 lanes, less the last one's tail
    assert all(any(v) and not all(v) for v in seen.values())  # each melody both ways
    share = sum(map(sum, seen.values())) / sum(passes)
    assert 0.15 < share < 0.35
    # its own countdown, when not open, counted by hand: 4 quarters of 12 steps fill one 48-step bar, so at the
    # start token 48 steps are left, all within the last bar: the input is the steps left, 48
    first = [int(x["bars_left"][r, 0]) for x, _, w, rs in batches.take(8).as_numpy_iterator()
             for r in np.flatnonzero((rs == 1) & (w[:, 0] > 0)) if int(x["bars_left"][r, 0]) != OPEN_COUNTDOWN]
    assert first and set(first) == {48}
    evaluation = make_dataset(sequences, Batching(8, 2, carry_state=True, shuffle=False, repeat=False), meter)
    opened = set()
    for inputs, _, weights, reset in evaluation.as_numpy_iterator():
        for row in np.flatnonzero((reset == 1) & (weights[:, 0] > 0)):
            if int(inputs["bars_left"][row, 0]) == OPEN_COUNTDOWN:
                opened.add(int(inputs["ids"][row, 1]) - 10)
    assert opened == {i for i in range(melodies) if is_open(i, 0.25)}


# --- tiny models trained once for this module

BAR_PITCHES = (60, 62, 64, 65, 67, 69, 71, 72)


def repeat_corpus(folder, tunes: int = 48, seed: int = 0):
    """4/4 tunes of 4 random bars of quarter notes played twice (bar 5 repeats bar 1...), each ending on C4 held
    a half note: the copy gate can learn that bar k comes back 4 bars later, the countdown where the tune ends."""
    return conftest.bar_tunes(folder, tunes, seed, [BAR_PITCHES])


SHAPE_HPARAMS = (",meter_features=true,end_token=true,countdown=true,copy_bars=[1,2,4,8],carry_state=true,"
                 "window_size=16,batch_size=8,open_countdown_share=0.25,key_head=true,key_tonic=true,gate_countdown=6")


@pytest.fixture(scope="module")
def shape_run_dir(tmp_path_factory):
    corpus = repeat_corpus(tmp_path_factory.mktemp("repeat") / "tunes")
    return conftest.train_tiny_run(tmp_path_factory, corpus, "shape_run", SHAPE_HPARAMS)


@pytest.fixture(scope="module")
def shape_generator(shape_run_dir):
    from melody_plugin.generate.generator import MelodyGenerator

    return MelodyGenerator.from_run_dir(shape_run_dir)


def unseen_primer(gen, seed=99):
    """4 bars the model never saw (another seed), made by the corpus's recipe: the first half of a tune."""
    rng = np.random.default_rng(seed)
    notes = [Note(int(p), 12) for p in rng.choice(BAR_PITCHES, 14)] + [Note(60, 24)]
    return Melody(tuple(notes), 12, (4, 4), 120.0)


def test_a_tiny_model_repeats_the_bar_it_was_taught_and_ends_where_told(shape_generator):
    from melody_plugin.evaluate import continuation
    from melody_plugin.generate.sampler import SamplingOptions

    gen = shape_generator
    primer = unseen_primer(gen)
    out = gen.generate(primer, num_bars=4, sampling=SamplingOptions(temperature=0.0, ending="tune"))[0]
    assert out.ending == "tune" and out.melody.total_steps == 8 * 48
    # bars 5-8 replay bars 1-4 (counted here: same pitch and length 4 bars back), though no tune had these bars
    new = out.melody.notes[len(primer.notes):]
    again = sum(a == b for a, b in zip(new, primer.notes))
    assert again >= 0.75 * len(primer.notes), (new, primer.notes)
    assert continuation.repeated_share(out.melody, 4 * 48, 4) >= 0.75
    # it ends where it was told to, on the corpus's cadence, and ending there is likely
    assert out.melody.notes[-1].pitch == 60
    assert out.end_log_likelihood > math.log(0.5)


def test_ending_open_masks_the_end_and_feeds_the_open_countdown(shape_generator):
    from melody_plugin.generate.sampler import SamplingOptions

    gen = shape_generator
    primer = unseen_primer(gen)
    tune, open_ = (gen.generate(primer, num_bars=2, sampling=SamplingOptions(seed=1, ending=e))[0]
                   for e in ("tune", "open"))
    assert open_.ending == "open" and open_.end_log_likelihood is None
    assert tune.melody.total_steps == open_.melody.total_steps == 6 * 48
    assert gen.vocab.end_id not in open_.continuation_ids + tune.continuation_ids
    # no primer: a whole tune that ends; a primer: a continuation, unless asked
    assert gen.generate(None, num_bars=8)[0].ending == "tune"
    assert gen.generate(primer, num_bars=2)[0].ending == "open"


def test_numpy_and_keras_agree_on_a_shaped_model_and_the_gate_is_read(shape_generator):
    from melody_plugin.model import numpy_model
    from melody_plugin.tokens.batches import MeterInputs, sequence_features

    gen = shape_generator
    half = unseen_primer(gen)
    melody = half.with_notes(half.notes * 2)  # a whole tune by the corpus's recipe
    ids = [START] + gen.vocab.with_end(gen.vocab.encode(melody))
    meter = MeterInputs([48], gen.vocab.durations(), False, True, gen.config.copy_bars, pitches=gen.vocab.pitches())
    for open_ending in (False, True):
        features = sequence_features(np.array(ids), 48, meter, open_ending)
        batch = {"ids": np.array([ids]), **{k: v[None] for k, v in features.items()}}
        keras_logits = np.asarray(numpy_model.weights_to_keras_model(gen.config, gen.weights)(batch, training=False))
        numpy_logits, state = gen.model.run(batch["ids"], positions=batch["bar_position"],
                                            bar_steps=batch["bar_steps"], bars_left=batch["bars_left"])
        np.testing.assert_allclose(numpy_logits, keras_logits, atol=1e-4)
        assert state[-2].shape == (1, ONSET_RING_WIDTH)
        # the key head's state: the steps each pitch class sounded, counted here from the melody's notes
        held = np.zeros(12)
        for note in melody.notes:
            held[note.pitch % 12] += 0 if note.is_rest else note.duration_steps
        np.testing.assert_array_equal(state[-1][0], held)
    # the second half is copied: from bar 5 on (input 15) every token has its source 4 bars back, and the model
    # gives the true next tokens more than half of its mass there; without the sources it is lost
    assert (features["copy_4"][15:-1] != PAD).all()
    probs = np.exp(numpy_logits[0, 15:-1][np.arange(len(ids) - 16), ids[16:]])
    assert probs.mean() > 0.5
    batch["copy_4"] = np.zeros_like(batch["copy_4"])
    blind = np.asarray(numpy_model.weights_to_keras_model(gen.config, gen.weights)(batch, training=False))
    assert np.exp(blind[0, 15:-1][np.arange(len(ids) - 16), ids[16:]]).mean() < probs.mean() - 0.1


@pytest.mark.parametrize("ending", ["tune", "open"])
def test_tf_and_numpy_samplers_agree_greedily_on_a_shaped_model(shape_generator, ending):
    from melody_plugin.generate.sampler import SamplingOptions

    gen = shape_generator
    primer = gen.primer_from_text("C4:1 E4:1 G4:1 C5:1 D4:1", time_signature=(4, 4))
    greedy = [gen.generate(primer, num_bars=3, sampling=SamplingOptions(temperature=0.0, backend=b, ending=ending))[0]
              for b in ("numpy", "tf")]
    assert greedy[0].continuation_ids == greedy[1].continuation_ids
    assert greedy[1].log_likelihoods == pytest.approx(greedy[0].log_likelihoods, abs=1e-3)
    if ending == "tune":  # both report the likelihood of ending where the melody ends
        assert greedy[1].end_log_likelihood == pytest.approx(greedy[0].end_log_likelihood, abs=1e-3)
    else:
        assert greedy[0].end_log_likelihood is None and greedy[1].end_log_likelihood is None


@pytest.mark.parametrize("meter, primer_text", conftest.BAR_EXACT_PRIMERS)
def test_a_shaped_model_stays_bar_exact_in_any_meter(shape_generator, meter, primer_text):
    conftest.assert_bar_exact_generation(shape_generator, "numpy", meter, primer_text)


def test_beam_search_ranks_with_the_ending(shape_generator):
    from melody_plugin.generate.sampler import SamplingOptions

    outs = shape_generator.generate(None, num_bars=8, num_outputs=2,
                                    sampling=SamplingOptions(seed=2, beam_size=3, branch_factor=2, ending="tune"))
    assert all(o.melody.total_steps == 8 * 48 and o.end_log_likelihood is not None for o in outs)


def test_scoring_reports_bits_with_and_without_the_end(shape_generator, tmp_path):
    from melody_plugin.evaluate import scoring

    folder = repeat_corpus(tmp_path / "held", tunes=3, seed=5)
    scores = scoring.evaluate_input(shape_generator, folder)
    assert scores["endings"] == 3 and scores["notes"] == 3 * 2 * 15  # 15 notes a half, by the corpus's recipe
    per_end = scores["end_bits"] * scores["endings"] / scores["notes"]
    assert scores["bits_per_note_with_end"] == pytest.approx(scores["bits_per_note"] + per_end, rel=1e-6)


def test_bundle_and_saved_model_of_a_shaped_model(shape_generator, tmp_path):
    from melody_plugin.generate.export import export_saved_model
    from melody_plugin.generate.generator import MelodyGenerator
    from melody_plugin.generate.sampler import SamplingOptions
    from melody_plugin.runtime.quiet import import_tensorflow
    from melody_plugin.tokens.batches import MeterInputs, sequence_features

    gen = shape_generator
    primer = unseen_primer(gen)
    gen.save_bundle(tmp_path / "m.mag")
    loaded = MelodyGenerator.from_bundle(tmp_path / "m.mag")
    a, b = (g.generate(primer, num_bars=2, sampling=SamplingOptions(seed=5, ending="tune"))[0] for g in (gen, loaded))
    assert a.continuation_ids == b.continuation_ids and loaded.vocab.end_token

    tf = import_tensorflow()
    saved = tf.saved_model.load(str(export_saved_model(gen, tmp_path / "saved")))
    ids = [START] + gen.vocab.encode(primer)
    logits = saved.signatures["logits"](ids=tf.constant([ids], tf.int32),
                                        steps_per_bar=tf.constant([48], tf.int32))["logits"].numpy()
    features = sequence_features(np.array(ids), 48, MeterInputs([48], gen.vocab.durations(), False, True,
                                                               gen.config.copy_bars), open_ending=True)
    expected, _ = gen.model.run(np.array([ids]), positions=features["bar_position"][None],
                                bar_steps=features["bar_steps"][None], bars_left=features["bars_left"][None])
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    for ending in ("tune", "open"):  # serving_default ends as the numpy sampler does, greedily
        out = saved.signatures["serving_default"](
            ids=tf.constant([ids], tf.int32), steps=tf.constant([2 * 48], tf.int32), temperature=tf.constant(0.0),
            top_k=tf.constant(0), top_p=tf.constant(1.0), seed=tf.constant(2, tf.int64),
            steps_per_bar=tf.constant([48], tf.int32), tune_ending=tf.constant(ending == "tune"))
        served = [int(i) for i in out["ids"].numpy()[0] if i >= 0]
        local = gen.generate(primer, num_bars=2, sampling=SamplingOptions(temperature=0.0, ending=ending))[0]
        assert served == local.continuation_ids
        end_ll = float(out["end_log_likelihood"].numpy()[0])
        if ending == "tune":
            assert end_ll == pytest.approx(local.end_log_likelihood, abs=1e-3)
        else:
            assert math.isnan(end_ll)


def test_old_models_refuse_a_tune_ending_and_keep_their_default(tiny_generator):
    from melody_plugin.generate.sampler import SamplingError, SamplingOptions

    with pytest.raises(SamplingError, match="--ending=tune needs a model trained with an end token"):
        tiny_generator.generate(None, num_bars=2, sampling=SamplingOptions(ending="tune"))
    out = tiny_generator.generate(None, num_bars=2, sampling=SamplingOptions(seed=3))[0]
    assert out.ending == "open" and out.end_log_likelihood is None


def test_a_dataset_without_an_end_token_is_refused_for_a_config_with_one(tiny_corpus, tmp_path):
    proc = conftest.run_cli("melody_create_dataset", f"--input={tiny_corpus}", f"--output_dir={tmp_path / 'data'}",
                            "--config=char_lstm", "--progress=false")
    assert proc.returncode == 0, proc.stderr
    proc = conftest.run_cli("melody_train", "--config=folk_lookback", f"--input={tmp_path / 'data'}",
                            f"--run_dir={tmp_path / 'run'}", "--num_training_steps=1", "--progress=false")
    assert proc.returncode != 0
    assert "prepared without an end token" in proc.stderr and str(tmp_path / "data") in proc.stderr


def test_training_reports_bits_per_note_as_melody_evaluate_does(tmp_path):
    """The eval bits/note training writes leave out the end token, as melody_evaluate's do: the same figure for
    the same weights on the same held-out files (and bits_per_note_with_end keeps it, as melody_evaluate's)."""
    from melody_plugin.evaluate import scoring
    from melody_plugin.generate.generator import MelodyGenerator
    from melody_plugin.model import registry
    from melody_plugin.tokens.corpus import is_eval
    from melody_plugin.train.loop import train_and_evaluate
    from melody_plugin.train.options import TrainOptions

    corpus = repeat_corpus(tmp_path / "tunes", tunes=24, seed=3)
    config = registry.with_hparams(registry.get_config("char_lstm"), conftest.TINY_HPARAMS + SHAPE_HPARAMS)
    train_and_evaluate(config, tmp_path / "run", corpus, TrainOptions(
        num_training_steps=60, eval_ratio=0.25, summary_frequency=60, save_checkpoint_steps=60, progress=False,
        log=lambda *a: None, write_curve=False))
    trained = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])["eval"]
    held = tmp_path / "held"
    held.mkdir()
    for path in sorted(corpus.iterdir()):
        if is_eval(path.name, 0.25):
            (held / path.name).symlink_to(path)
    scores = scoring.evaluate_input(MelodyGenerator.from_run_dir(tmp_path / "run", checkpoint="latest"), held)
    assert scores["endings"] == len(list(held.iterdir())) > 0
    assert trained["bits_per_note"] == pytest.approx(scores["bits_per_note"], rel=1e-4)
    assert trained["bits_per_note_with_end"] == pytest.approx(scores["bits_per_note_with_end"], rel=1e-4)
