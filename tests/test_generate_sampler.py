"""Bar-bounded decoding with a stub next_logits (no Keras): exact fill, masks, beams, determinism."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from melody_plugin.generate import sampler
from melody_plugin.generate.sampler import DecodeStart, SamplingError, SamplingOptions, TokenTable, sample
from melody_plugin.tokens.vocab import NUM_SPECIAL

# vocabulary: 3 specials, then (pitch, duration) tokens
TOKENS = [(60, 3), (60, 6), (62, 6), (64, 12), (65, 9), (67, 24), (-1, 6), (-1, 12), (71, 4), (72, 8)]
DURATIONS = np.array([0] * NUM_SPECIAL + [d for _, d in TOKENS])
PITCHES = np.array([-2] * NUM_SPECIAL + [p for p, _ in TOKENS])
V = len(DURATIONS)


def stub_table(preferred=None, seed=0):
    """The fake model's logits: row = previous token, column = next token."""
    table = np.random.default_rng(seed).normal(size=(V, V)) * 2
    if preferred is not None:
        table[:, preferred] += 50.0
    return table


def stub_logits(preferred=None, seed=0, table=None):
    """A fake model: fixed logits per previous token (`stub_table`); the state counts steps."""
    table = stub_table(preferred, seed) if table is None else table

    def next_logits(ids, state):
        return table[ids], [state[0] + 1]

    return next_logits


def run(remaining, options=None, seed=0, allowed=None, preferred=None):
    remaining = np.asarray(remaining)
    n = len(remaining)
    options = dataclasses.replace(options or SamplingOptions(), seed=seed)
    return sample(stub_logits(preferred), DecodeStart([np.zeros((n, 1))], np.full(n, 1), remaining),
                  TokenTable(DURATIONS, allowed), options)


@settings(max_examples=60, deadline=None)
@given(remaining=st.lists(st.integers(1, 200), min_size=1, max_size=6), seed=st.integers(0, 1000),
       temperature=st.sampled_from([0.0, 0.5, 1.0, 2.0]))
def test_every_output_fills_exactly_its_steps(remaining, seed, temperature):
    result = run(remaining, SamplingOptions(temperature=temperature), seed)
    fillable = sampler.fillable_steps(DURATIONS, np.arange(V) >= NUM_SPECIAL, 200)
    for ids, target, unfilled in zip(result.ids, remaining, result.unfilled_steps):
        assert sum(DURATIONS[i] for i in ids) + unfilled == target
        assert (unfilled == 0) == fillable[target]  # silence only where no token sequence can fill the gap
        assert unfilled < 3  # ... and only the few steps that cannot be filled
        assert all(i >= NUM_SPECIAL for i in ids)


def test_overshooting_tokens_are_masked_before_sampling():
    # the model wants the 24-step note every time; with 30 steps left it can have it once, then must fit 6 steps
    result = run([30], SamplingOptions(temperature=0.0), preferred=NUM_SPECIAL + 5)
    durations = [DURATIONS[i] for i in result.ids[0]]
    assert durations[0] == 24 and sum(durations) == 30


def test_remainder_that_no_token_can_fill_is_never_left():
    # durations available: 3,4,6,8,9,12,24 -> 1, 2 and 5 steps cannot be filled; a 7-step gap must not be
    # entered with a 6 (leaving 1); the sampler must choose 3+4
    result = run([7], SamplingOptions(temperature=0.0), preferred=NUM_SPECIAL + 1)  # wants 6 steps
    assert sorted(DURATIONS[i] for i in result.ids[0]) == [3, 4]


def test_unfillable_target_ends_with_silence_and_says_so():
    result = run([2])
    assert result.ids == [[]] and result.unfilled_steps == [2]


def test_same_seed_same_output_and_different_seed_differs():
    a, b, c = run([96, 96], seed=5), run([96, 96], seed=5), run([96, 96], seed=6)
    assert a.ids == b.ids
    assert a.ids != c.ids


def test_constraint_mask_limits_pitches_and_keeps_rests():
    allowed = sampler.constraint_mask(PITCHES, sampler.scale_pitch_classes("C:major"), (60, 67))
    result = run([240] * 4, allowed=allowed, seed=3)
    used = {int(PITCHES[i]) for ids in result.ids for i in ids}
    assert used <= {60, 62, 64, 65, 67, -1}
    assert 71 not in used and 72 not in used


# Indices into TOKENS of the allowed tokens, worked out by hand. Model-space pitches by index:
# 0:60 1:60 2:62 3:64 4:65 5:67 6:R 7:R 8:71 9:72; sounding = model + shift; rests are always allowed.
@pytest.mark.parametrize("scale,pitch_range,shift,expected", [
    ("C:major", None, 0, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}),  # every model pitch is in C major
    ("C:major", None, 1, {3, 6, 7, 8}),  # sounding 61 61 63 65 66 68 72 73: only 65 (from 64) and 72 (from 71)
    ("C:major", None, -1, {0, 1, 4, 6, 7, 9}),  # sounding 59 59 61 63 64 66 70 71: 59, 64 and 71
    ("D:major", None, 0, {2, 3, 5, 6, 7, 8}),  # D major has neither C nor F: 60, 65 and 72 go
    ("D:major", None, 2, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}),  # sounding 62 62 64 66 67 69 73 74: all in D major
    (None, (62, 70), 2, {0, 1, 2, 3, 4, 5, 6, 7}),  # sounding 73 and 74 are above the range
    (None, (62, 70), 0, {2, 3, 4, 5, 6, 7}),  # 60 is below, 71 and 72 above
    ("C:major", (64, 72), 1, {3, 6, 7, 8}),  # 65 and 72 are inside the range too
])
def test_constraint_mask_with_shift_judges_sounding_pitches(scale, pitch_range, shift, expected):
    pitch_classes = sampler.scale_pitch_classes(scale) if scale else None
    allowed = sampler.constraint_mask(PITCHES, pitch_classes, pitch_range, shift=shift)
    assert not allowed[:NUM_SPECIAL].any()
    assert set(np.flatnonzero(allowed[NUM_SPECIAL:]).tolist()) == expected


def test_sampled_sounding_pitches_respect_the_scale_under_a_key_shift():
    # the model thinks in C (transposed to key); the output sounds a semitone higher. The C major constraint
    # must hold for the sounding notes: model 64 -> 65 (F) and 71 -> 72 (C) only; unshifted, every token is in C
    shift = 1
    allowed = sampler.constraint_mask(PITCHES, sampler.scale_pitch_classes("C:major"), shift=shift)
    result = run([240] * 4, allowed=allowed, seed=3)
    sounding = [int(PITCHES[i]) + shift for ids in result.ids for i in ids if PITCHES[i] >= 0]
    assert sounding and set(sounding) <= {65, 72}


def test_constraints_that_leave_nothing_are_refused():
    with pytest.raises(SamplingError, match="no note"):
        sampler.constraint_mask(PITCHES, pitch_range=(20, 30))


@pytest.mark.parametrize("text,expected", [
    ("D:dorian", {2, 4, 5, 7, 9, 11, 0}), ("A:minor", {9, 11, 0, 2, 4, 5, 7}), ("0,2,4", {0, 2, 4}),
    ("D,E,F#", {2, 4, 6}), ("Bb:major", {10, 0, 2, 3, 5, 7, 9})])
def test_scale_parsing(text, expected):
    assert sampler.scale_pitch_classes(text) == expected


def test_bad_scale_and_range_are_clear_errors():
    with pytest.raises(SamplingError, match="unknown mode"):
        sampler.scale_pitch_classes("D:weird")
    with pytest.raises(SamplingError, match="LOW:HIGH"):
        sampler.parse_pitch_range("90:10")


def test_top_k_one_is_greedy():
    greedy = run([96], SamplingOptions(temperature=0.0))
    top1 = run([96], SamplingOptions(temperature=1.0, top_k=1), seed=9)
    assert greedy.ids == top1.ids


def test_tiny_top_p_is_greedy():
    greedy = run([96], SamplingOptions(temperature=0.0))
    nucleus = run([96], SamplingOptions(temperature=1.0, top_p=1e-6), seed=9)
    assert greedy.ids == nucleus.ids


def _log_softmax_over(row: np.ndarray, columns) -> dict[int, float]:
    """log p(column) for the given columns of one logits row, renormalised over those columns (written out)."""
    columns = list(columns)
    top = max(row[c] for c in columns)
    log_total = top + np.log(sum(np.exp(row[c] - top) for c in columns))
    return {c: float(row[c] - log_total) for c in columns}


def test_beam_search_finds_what_greedy_misses():
    # Two 6-step notes fill 12 steps. From the start token A (id 3) is likelier than B (id 4), but after A
    # every note is equally likely, while after B one note (id 5) is almost certain: greedy takes A and pays
    # log(1/6) for the second note; the best sequence is B, 5.
    durations = np.array([0] * NUM_SPECIAL + [6] * 6)
    table = np.zeros((len(durations), len(durations)))
    table[1, 3:] = [0.5, 0.0, -10, -10, -10, -10]  # after the start token (id 1)
    table[4, 5] = 10.0  # after B
    start = _log_softmax_over(table[1], range(NUM_SPECIAL, 9))
    after_b = _log_softmax_over(table[4], range(NUM_SPECIAL, 9))
    greedy_expected = start[3] + np.log(1 / 6)
    best_expected = start[4] + after_b[5]
    assert best_expected > greedy_expected + 0.5

    def go(options, seed):
        return sample(stub_logits(table=table), DecodeStart([np.zeros((1, 1))], np.array([1]), np.array([12])),
                      TokenTable(durations), dataclasses.replace(options, seed=seed))

    greedy = go(SamplingOptions(temperature=0.0), 0)
    assert greedy.ids[0][0] == 3
    assert greedy.total_log_likelihood[0] == pytest.approx(greedy_expected)
    for seed in range(3):
        beam = go(SamplingOptions(beam_size=2, branch_factor=8, steps_per_iteration=2), seed)
        assert beam.ids[0] == [4, 5]
        assert beam.total_log_likelihood[0] == pytest.approx(best_expected)


def _fillable(steps: int, durations) -> bool:
    """Can some sequence of these durations last exactly `steps`? (plain recursion, independent of the sampler)"""
    if steps == 0:
        return True
    return any(d <= steps and _fillable(steps - d, durations) for d in durations)


def test_log_likelihoods_are_the_models_log_softmax_over_the_tokens_that_fit():
    table = stub_table(seed=0)
    remaining = [96, 48]
    result = run(remaining, seed=2)
    note_durations = sorted({int(d) for d in DURATIONS[NUM_SPECIAL:]})
    for ids, lls, steps in zip(result.ids, result.log_likelihoods, remaining):
        previous = 1  # `run` feeds the start token first
        assert len(lls) == len(ids)
        for token, ll in zip(ids, lls):
            fits = [t for t in range(NUM_SPECIAL, V)
                    if DURATIONS[t] <= steps and _fillable(steps - int(DURATIONS[t]), note_durations)]
            assert ll == pytest.approx(_log_softmax_over(table[previous], fits)[token], abs=1e-9)
            steps -= int(DURATIONS[token])
            previous = token
        assert steps == 0


def test_bad_options_are_refused():
    with pytest.raises(SamplingError, match="temperature"):
        SamplingOptions(temperature=-1)
    with pytest.raises(SamplingError, match="top_p"):
        SamplingOptions(top_p=0)
    with pytest.raises(SamplingError, match="beam_size"):
        SamplingOptions(beam_size=0)
    with pytest.raises(SamplingError, match="numpy or tf"):
        SamplingOptions(backend="jax")


@pytest.mark.parametrize("scale, pitch_range", [("C:major", "60:67"), ((0, 14, 4, 5, 7, 9, 11), (60, 67))])
def test_constraints_parse_text_or_values_to_the_same_mask(scale, pitch_range):
    constraints = sampler.Constraints.parse(scale=scale, pitch_range=pitch_range)
    assert constraints == sampler.Constraints(frozenset({0, 2, 4, 5, 7, 9, 11}), (60, 67))
    expected = sampler.constraint_mask(PITCHES, sampler.scale_pitch_classes("C:major"), (60, 67))
    np.testing.assert_array_equal(constraints.mask(PITCHES), expected)
    assert sampler.Constraints().mask(PITCHES).sum() == sampler.constraint_mask(PITCHES).sum()


# --- the repetition prior, with a stub model that has no preference (equal logits for every token)

def _uniform_logits(ids, state):
    return np.zeros((len(ids), V)), state


def _quarters_table():
    """Four pitched quarter notes (12 steps) and nothing else: every token fits everywhere in 4/4 (48 steps)."""
    durations = np.zeros(V, dtype=np.int64)
    quarters = [NUM_SPECIAL + i for i in range(4)]
    durations[quarters] = 12
    return TokenTable(durations), quarters


def _start(outputs, history, remaining):
    return DecodeStart([np.zeros((outputs, 1))], np.full(outputs, 1), np.full(outputs, remaining), history=history)


def test_a_strong_repetition_prior_copies_the_bars_it_looks_back_at():
    tokens, (a, b, c, d) = _quarters_table()
    primer = [a, b, c, d, b, b, a, c]  # two 4/4 bars of quarters, written by hand
    history = sampler.History.from_tokens(primer, [12] * 8, steps_per_bar=48)
    assert history.next_step == 96 and history.onsets[48] == b
    two_back = sample(_uniform_logits, _start(3, history, 4 * 48), tokens, SamplingOptions(repetition=40.0))
    assert two_back.ids == [primer * 2] * 3  # bars 3-6 repeat bars 1-2 twice, for any seed
    one_back = sample(_uniform_logits, _start(1, history, 2 * 48), tokens,
                      SamplingOptions(repetition=40.0, repetition_bars=1))
    assert one_back.ids == [primer[4:] * 2]  # the last bar, again and again
    # the reported log-likelihoods stay the model's: uniform over the 4 tokens that fit
    np.testing.assert_allclose(two_back.log_likelihoods[0], np.log(1 / 4))


def test_a_negative_prior_never_repeats_and_zero_is_the_model_alone():
    tokens, quarters = _quarters_table()
    primer = [quarters[0]] * 4 + [quarters[1]] * 4
    history = sampler.History.from_tokens(primer, [12] * 8, steps_per_bar=48)
    result = sample(_uniform_logits, _start(8, history, 8 * 48), tokens, SamplingOptions(repetition=-40.0, seed=3))
    for ids in result.ids:
        whole = primer + ids
        assert all(whole[i] != whole[i - 8] for i in range(8, len(whole)))  # never what began 2 bars (8 beats) back
    off = sample(_uniform_logits, _start(8, history, 8 * 48), tokens, SamplingOptions(seed=3))
    plain = sample(_uniform_logits, _start(8, None, 8 * 48), tokens, SamplingOptions(seed=3))
    assert off.ids == plain.ids  # repetition=0 ignores the history: the same draws as without it


def test_a_moderate_prior_repeats_as_often_as_its_odds_say():
    # with 4 equally likely tokens and a bonus of log(3), the looked-back token has odds 3 : 1 + 1 + 1 = p 1/2
    tokens, quarters = _quarters_table()
    primer = [quarters[i % 4] for i in range(8)]
    history = sampler.History.from_tokens(primer, [12] * 8, steps_per_bar=48)
    result = sample(_uniform_logits, _start(200, history, 16 * 48), tokens, SamplingOptions(repetition=np.log(3.0)))
    repeats = [(primer + ids)[i] == (primer + ids)[i - 8] for ids in result.ids for i in range(8, 8 + len(ids))]
    assert len(repeats) == 200 * 64
    assert abs(np.mean(repeats) - 0.5) < 0.02  # 12,800 draws: the standard error is 0.0044


def test_the_prior_looks_back_by_grid_step_not_by_token_count():
    # one 4/4 bar (48 steps) of the primer, by hand: `a` held for a half note (24 steps), then quarters `b`, `c`;
    # the start token lasts nothing and begins nowhere
    tokens, (a, b, c, _) = _quarters_table()
    history = sampler.History.from_tokens([sampler.NUM_SPECIAL - 1, a, b, c], [0, 24, 12, 12], steps_per_bar=48)
    assert history.onsets == {0: a, 24: b, 36: c} and history.next_step == 48
    # one bar back from the onsets 48, 60, 72, 84: steps 0 (a), 12 (inside a: no token begins there), 24 (b), 36 (c)
    result = sample(_uniform_logits, _start(16, history, 48), tokens,
                    SamplingOptions(repetition=40.0, repetition_bars=1))
    assert all(ids[0] == a and ids[2:] == [b, c] for ids in result.ids)
    assert len({ids[1] for ids in result.ids}) > 1  # the second beat is the model's (uniform) choice


def test_the_prior_needs_a_history_and_sane_options():
    tokens, _ = _quarters_table()
    with pytest.raises(SamplingError, match="history"):
        sample(_uniform_logits, _start(1, None, 48), tokens, SamplingOptions(repetition=1.0))
    with pytest.raises(SamplingError, match="repetition_bars"):
        SamplingOptions(repetition_bars=0)
    for bad in (float("inf"), float("nan"), 1000.0, -100.5):  # the CLI's range, for every caller
        with pytest.raises(SamplingError, match=r"repetition must be in \[-100, 100\]"):
            SamplingOptions(repetition=bad)


def test_beams_are_ranked_with_the_prior():
    tokens, quarters = _quarters_table()
    primer = [quarters[i % 4] for i in range(8)]
    history = sampler.History.from_tokens(primer, [12] * 8, steps_per_bar=48)
    options = SamplingOptions(repetition=5.0, beam_size=4, branch_factor=3, temperature=1.0, seed=1)
    result = sample(_uniform_logits, _start(2, history, 2 * 48), tokens, options)
    assert result.ids == [primer] * 2  # every step's best continuation under the prior is the copy
