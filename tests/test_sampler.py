"""Bar-bounded decoding with a stub next_logits (no Keras): exact fill, masks, beams, determinism."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from melody_plugin import sampler
from melody_plugin.sampler import SamplingError, SamplingOptions, sample
from melody_plugin.vocab import NUM_SPECIAL

# vocabulary: 3 specials, then (pitch, duration) tokens
TOKENS = [(60, 3), (60, 6), (62, 6), (64, 12), (65, 9), (67, 24), (-1, 6), (-1, 12), (71, 4), (72, 8)]
DURATIONS = np.array([0] * NUM_SPECIAL + [d for _, d in TOKENS])
PITCHES = np.array([-2] * NUM_SPECIAL + [p for p, _ in TOKENS])
V = len(DURATIONS)


def stub_logits(preferred=None, seed=0):
    """A fake model: fixed random logits per previous token; the state counts steps."""
    table = np.random.default_rng(seed).normal(size=(V, V)) * 2
    if preferred is not None:
        table[:, preferred] += 50.0

    def next_logits(ids, state):
        return table[ids], [state[0] + 1]

    return next_logits


def run(remaining, options=None, seed=0, allowed=None, preferred=None):
    remaining = np.asarray(remaining)
    n = len(remaining)
    return sample(stub_logits(preferred), [np.zeros((n, 1))], np.full(n, 1), DURATIONS, remaining, allowed,
                  options, seed)


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


def test_constraint_with_shift_applies_to_sounding_pitches():
    # model space is C; sounding = model + 2 (D). D major contains F#(66)=64+2 but not F(65+2=67 is G: in)
    allowed = sampler.constraint_mask(PITCHES, sampler.scale_pitch_classes("D:major"), shift=2)
    sounding = {int(PITCHES[i]) + 2 for i in np.flatnonzero(allowed) if PITCHES[i] >= 0}
    assert all(p % 12 in {2, 4, 6, 7, 9, 11, 1} for p in sounding)


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


def test_beam_search_scores_at_least_as_well_as_greedy():
    greedy = run([48], SamplingOptions(temperature=0.0))
    beam = run([48], SamplingOptions(temperature=1.0, beam_size=4, branch_factor=4, steps_per_iteration=2), seed=1)
    assert sum(DURATIONS[i] for i in beam.ids[0]) == 48
    assert len(beam.log_likelihoods[0]) == len(beam.ids[0])
    sampled = run([48], SamplingOptions(temperature=1.0), seed=1)
    assert beam.total_log_likelihood[0] >= sampled.total_log_likelihood[0]
    assert greedy.ids[0]


def test_log_likelihoods_are_log_probabilities():
    result = run([96, 48], seed=2)
    for lls in result.log_likelihoods:
        assert all(ll <= 1e-9 for ll in lls)


def test_bad_options_are_refused():
    with pytest.raises(SamplingError, match="temperature"):
        SamplingOptions(temperature=-1)
    with pytest.raises(SamplingError, match="top_p"):
        SamplingOptions(top_p=0)
    with pytest.raises(SamplingError, match="beam_size"):
        SamplingOptions(beam_size=0)
