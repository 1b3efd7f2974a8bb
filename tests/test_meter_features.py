"""Meter-aware inputs: the bar position and bar length fed with each token, in training, scoring and generation."""

import pytest

from melody_plugin import registry
from melody_plugin.melody import REST, Melody, Note
from melody_plugin.vocab import METER_FEATURE_SIZE, START, UNK, Vocabulary, meter_features, token_durations

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
