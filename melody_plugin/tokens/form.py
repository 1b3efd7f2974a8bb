"""Token features for a tune's shape: the bars left to its end (countdown) and the tokens to copy from earlier bars.

Both are read where the *next* token begins, as `vocab.meter_features` are: the input at t is token x_t, its onset
o_t is the sum of the durations of x_0..x_t, and it predicts x_(t+1), which begins at o_t.
"""

from __future__ import annotations

import numpy as np

from melody_plugin.tokens.vocab import METER_FEATURE_SIZE, PAD

# countdown values: 0 at the end; in the last bar the steps left (1..FINAL_STEPS), so the model knows which token
# can be the last even where a melody stops mid-bar; then the bars left, 2..MAX_COUNTDOWN at FINAL_STEPS + 1..;
# then OPEN_COUNTDOWN = "no end in sight" (longer melodies, open continuations, scoring without a known length)
FINAL_STEPS = METER_FEATURE_SIZE - 1
MAX_COUNTDOWN = 32
OPEN_COUNTDOWN = FINAL_STEPS + MAX_COUNTDOWN
COUNTDOWN_SIZE = OPEN_COUNTDOWN + 1

# the furthest copy source, in bars; the onset roll holds that many of the longest bars the model is fed
MAX_COPY_BARS = 8
COPY_STEPS = MAX_COPY_BARS * (METER_FEATURE_SIZE - 1)


def _bar(steps_per_bar: int) -> int:
    if steps_per_bar < 1:
        raise ValueError(f"steps_per_bar must be >= 1, got {steps_per_bar}")
    return min(int(steps_per_bar), METER_FEATURE_SIZE - 1)


def bars_left(remaining_steps, steps_per_bar) -> np.ndarray:
    """The countdown value of `remaining_steps` (any shape) to the end: 0 at the end, the steps left within the
    last bar (a bar already begun counts as the last while no more than a bar is left), else FINAL_STEPS plus the
    bars left less one (ceil(steps / bar), 2 and up), capped at OPEN_COUNTDOWN - 1."""
    remaining = np.maximum(np.asarray(remaining_steps, dtype=np.int64), 0)
    bar = np.maximum(np.minimum(np.asarray(steps_per_bar, dtype=np.int64), METER_FEATURE_SIZE - 1), 1)
    bars = np.minimum(-(-remaining // bar), MAX_COUNTDOWN)
    return np.where(remaining <= bar, remaining, FINAL_STEPS + bars - 1).astype(np.int32)


def countdown_bars(values) -> np.ndarray:
    """The bars left of countdown values: 0 at the end, 1 in the last bar, 2.. before; OPEN_COUNTDOWN stays."""
    values = np.asarray(values, dtype=np.int64)
    return np.where(values <= FINAL_STEPS, np.minimum(values, 1), values - FINAL_STEPS + 1).astype(np.int32)


def countdown_features(durations_steps, steps_per_bar: int, open_ending: bool = False) -> np.ndarray:
    """(time,) int32: the bars left from where each input's next token begins to the melody's end.

    The melody ends where its last token ends (a melody that stops mid-bar ends there, not on a bar line).
    `open_ending`: every input gets OPEN_COUNTDOWN instead (the model is not told where the melody ends).
    """
    durations = np.asarray(durations_steps, dtype=np.int64)
    if open_ending:
        return np.full(len(durations), OPEN_COUNTDOWN, np.int32)
    ends = np.cumsum(durations)
    total = ends[-1] if len(ends) else 0
    return bars_left(total - ends, _bar(steps_per_bar))


def copy_features(durations_steps, ids, steps_per_bar: int, bars) -> np.ndarray:
    """(len(bars), time) int32: for each k of `bars`, the id that began exactly k bars before where each input's next
    token begins, or PAD where no token began there (mid-note, before the start, or a zero-length token).

    Args:
      durations_steps: (time,) steps of each id, the start token (0) first, as `vocab.meter_features` takes them.
      ids: (time,) the ids.
      steps_per_bar: the bar length (clamped to METER_FEATURE_SIZE - 1 steps, as the model sees it).
      bars: the copy distances in bars (`ModelConfig.copy_bars`).
    """
    durations = np.asarray(durations_steps, dtype=np.int64)
    ids = np.asarray(ids, dtype=np.int32)
    ends = np.cumsum(durations)
    starts = ends - durations
    sounding = durations > 0
    onset_steps, onset_ids = starts[sounding], ids[sounding]  # increasing: one token begins per step at most
    bar = _bar(steps_per_bar)
    out = np.full((len(bars), len(ids)), PAD, np.int32)
    if not len(onset_steps):
        return out
    for row, k in enumerate(bars):
        step = ends - int(k) * bar
        at = np.minimum(np.searchsorted(onset_steps, step), len(onset_steps) - 1)
        out[row] = np.where((step >= 0) & (onset_steps[at] == step), onset_ids[at], PAD)
    return out


def roll_onsets(roll: np.ndarray, ids, durations_steps) -> np.ndarray:
    """One step of the onset roll: `roll` (rows, COPY_STEPS) holds, for each of the last COPY_STEPS grid steps, the
    id that began there or PAD. It moves on by each row's fed token's duration: the token's onset gets its id, the
    steps it holds get PAD (a zero-length token changes nothing)."""
    ids = np.asarray(ids)
    durations = np.asarray(durations_steps, dtype=np.int64)
    width = roll.shape[1]
    out = roll.copy()
    for d in np.unique(durations[durations > 0]):  # rows fed tokens of one length move alike: slices, no gather
        rows = np.flatnonzero(durations == d)
        d = int(min(d, width))
        out[rows, :width - d] = roll[rows, d:]
        out[rows, width - d:] = PAD
        out[rows, width - d] = ids[rows]  # the first new step: where the fed token began
    return out


def copy_candidates(roll: np.ndarray, bar_steps, bars) -> np.ndarray:
    """(rows, len(bars)) the ids that began k bars before the next onset, from an onset roll (`roll_onsets`)."""
    bar = np.clip(np.asarray(bar_steps, dtype=np.int64), 1, METER_FEATURE_SIZE - 1)
    back = roll.shape[1] - np.asarray(bars, dtype=np.int64)[None, :] * np.reshape(bar, (-1, 1))
    return roll[np.arange(roll.shape[0])[:, None], back]
