"""dataset.py's two batch layouts: windows of the joined stream, and lanes of whole melodies (state carried)."""

import numpy as np
import pytest

from melody_plugin.tokens.batches import Batching, make_dataset, melody_lanes
from melody_plugin.tokens.records import DatasetError
from melody_plugin.tokens.vocab import START


def test_windows_are_shifted_by_one():
    seqs = [np.array([START] + list(range(10, 30)))]
    ds = make_dataset(seqs, Batching(window_size=4, batch_size=3, shuffle=False, repeat=False))
    batches = list(ds.as_numpy_iterator())
    x, y = batches[0]
    assert x.shape == (3, 4) and y.shape == (3, 4)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    np.testing.assert_array_equal(x[0], [START, 10, 11, 12])
    # 21 tokens: windows of 5 tokens start at offsets 0..16, 17 of them, batched by 3 with the remainder dropped
    assert sum(len(b[0]) for b in batches) == 15
    with pytest.raises(DatasetError, match="fewer than one window"):
        make_dataset([np.array([START, 5])], Batching(window_size=4, batch_size=2))


# Three melodies (start token first) in two lanes of 3-token windows, laid out by hand:
# A = S 5 6 7 8 9 -> pairs (S,5)(5,6)(6,7) | (7,8)(8,9) + pad: 2 windows, lane 0
# B = S 3 4       -> (S,3)(3,4) + pad: 1 window, lane 1 (fewest windows)
# C = S 10..17    -> 8 pairs, 3 windows, lane 1 (1 window < 2)
MELODIES = [[START, 5, 6, 7, 8, 9], [START, 3, 4], [START, 10, 11, 12, 13, 14, 15, 16, 17]]


def test_lanes_hold_whole_melodies_one_after_another():
    lanes = melody_lanes([np.array(m) for m in MELODIES], window_size=3, lanes=2)
    assert lanes["ids"].shape == (4, 2, 3) and lanes["reset"].shape == (4, 2)
    assert lanes["ids"][:, 0].tolist() == [[START, 5, 6], [7, 8, 0], [0, 0, 0], [0, 0, 0]]
    assert lanes["targets"][:, 0].tolist() == [[5, 6, 7], [8, 9, 0], [0, 0, 0], [0, 0, 0]]
    assert lanes["ids"][:, 1].tolist() == [[START, 3, 0], [START, 10, 11], [12, 13, 14], [15, 16, 0]]
    assert lanes["targets"][:, 1].tolist() == [[3, 4, 0], [10, 11, 12], [13, 14, 15], [16, 17, 0]]
    assert lanes["weights"][:, 1].tolist() == [[1, 1, 0], [1, 1, 1], [1, 1, 1], [1, 1, 0]]
    # the state is zeroed where a melody starts and on padding-only windows, carried elsewhere
    assert lanes["reset"].tolist() == [[1, 1], [0, 1], [1, 0], [1, 0]]
    # every target of every melody is there exactly once
    assert lanes["weights"].sum() == sum(len(m) - 1 for m in MELODIES)


def lane_melodies(batches, finished=False):
    """The melodies in lane batches, in the order they were started (step, then lane): rebuilt from each lane's
    windows, a new one at each reset, the targets where the weight is 1. Unless the batches are `finished` (a
    whole finite dataset), each lane's last melody may be cut short and is left out."""
    found = []
    for lane in range(len(batches[0][3])):
        for step, (_, ys, ws, reset) in enumerate(batches):
            if reset[lane]:
                found.append((step, lane, []))
            found[-1][2].extend(int(t) for t, w in zip(ys[lane], ws[lane]) if w)
        found.append((len(batches), lane, None))  # marks the lane's end
    whole = [(step, lane, m) for (step, lane, m), after in zip(found, found[1:])
             if m and (finished or after[2] is not None)]
    return [m for _, _, m in sorted(whole)]


def test_lane_batches_hold_each_melody_whole_and_reshuffle_each_pass():
    seqs = [np.array([START] + list(range(10 + n, 20 + 2 * n))) for n in (5, 9, 3, 12, 7, 4)]  # distinct tokens
    melodies = sorted(s[1:].tolist() for s in seqs)
    one_pass = list(make_dataset(seqs, Batching(4, 2, carry_state=True, shuffle=False, repeat=False))
                    .as_numpy_iterator())
    x, y, w, reset = one_pass[0]
    assert x.shape == (2, 4) and y.shape == (2, 4) and w.shape == (2, 4) and reset.shape == (2,)
    # every melody once, whole, its windows in a row within one lane, started in the listed order
    assert lane_melodies(one_pass, finished=True) == [s[1:].tolist() for s in seqs]

    training = list(make_dataset(seqs, Batching(4, 2, carry_state=True, seed=3)).take(60)
                    .as_numpy_iterator())
    seen = lane_melodies(training)
    assert all(m in melodies for m in seen) and len(seen) >= 2 * len(seqs)
    # lanes never idle in training: a lane that ends a melody starts the next one at the next step
    assert all(w.any(axis=1).all() for _, _, w, _ in training)
    first, second = seen[:6], seen[6:12]  # two passes, each every melody once, in different orders
    assert sorted(first) == sorted(second) == melodies and first != second


def test_lanes_take_melodies_shorter_than_a_window():
    seqs = [np.array([START, 5, 6]), np.array([START, 7])]
    (x, y, w, reset), = make_dataset(seqs, Batching(8, 2, carry_state=True, shuffle=False, repeat=False)
                                             ).as_numpy_iterator()
    assert x.tolist() == [[START, 5, 0, 0, 0, 0, 0, 0], [START, 0, 0, 0, 0, 0, 0, 0]]
    assert y[:, :2].tolist() == [[5, 6], [7, 0]] and w.sum() == 3 and reset.tolist() == [1, 1]
    with pytest.raises(DatasetError, match="no melody has a token after its start token"):
        make_dataset([np.array([START])], Batching(8, 2, carry_state=True))


def test_lanes_carry_meter_features_alongside_the_ids():
    seqs = [np.array(m) for m in MELODIES]
    durations = np.zeros(20, dtype=np.int64)
    durations[3:] = 12  # every note a quarter (ids 0-2 are the special tokens)
    ds = make_dataset(seqs, Batching(3, 2, carry_state=True, shuffle=False, repeat=False),
                      meter=([48, 36, 48], durations))
    x, _, _, _ = next(ds.as_numpy_iterator())
    assert x["ids"][1].tolist() == [START, 3, 0]
    # melody B in 3/4 (36 steps): after the start token the next token begins at 0, after `3` at 12
    assert x["bar_position"][1].tolist()[:2] == [0, 12] and x["bar_steps"][1].tolist()[:2] == [36, 36]
    assert x["bar_position"][0].tolist() == [0, 12, 24]
