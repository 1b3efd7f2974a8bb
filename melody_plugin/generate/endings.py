"""A final-pitch model's tune ending (ModelConfig.final_pitch): the pitch class the melody will end on, drawn first.

The model is p(f) p(melody | f): f, the pitch class of the melody's last note, rides along with every token of a tune
whose end is known, so the model writes the whole tune towards it. Before generating a tune, each output draws f
from the model's own posterior given the primer, p(f | primer) ∝ p(f) p(primer | f): the primer is scored once per
class, and the prior is how often the training tunes ended on each (`Vocabulary.final_counts`). From nothing, the
posterior is the prior. Nothing here picks a note: the model, told f, writes the tune and its last note itself.
"""

from __future__ import annotations

import numpy as np

from melody_plugin.model.numpy_model import NumpyLSTM, log_softmax
from melody_plugin.tokens.form import FINAL_CLASSES, FINAL_NONE

# added to each pitch class's count of training endings: a class no training tune ended on stays possible
PRIOR_PSEUDOCOUNT = 0.5


def final_prior(final_counts, minor: bool | None = None) -> np.ndarray:
    """(FINAL_CLASSES,) log-probabilities of the final-pitch classes from the training tunes' counts
    (`Vocabulary.final_counts`: the major tunes' C..B and none, then the minor tunes'), of all tunes or, with `minor`,
    of the tunes in that mode only; the twelve pitch classes each get PRIOR_PSEUDOCOUNT more, "no pitch" only its
    count. Without counts (a vocabulary made before them) the twelve pitch classes alike."""
    counts = np.zeros((2, FINAL_CLASSES))
    if len(final_counts) == 2 * FINAL_CLASSES:
        counts = np.asarray(final_counts, np.float64).reshape(2, FINAL_CLASSES)
    weights = counts.sum(axis=0) if minor is None else counts[int(minor)].copy()
    weights[:FINAL_NONE] += PRIOR_PSEUDOCOUNT
    with np.errstate(divide="ignore"):
        return np.log(weights / weights.sum())


def final_posterior(model: NumpyLSTM, sequence, features, prior: np.ndarray) -> tuple[np.ndarray, list]:
    """(log p(f | primer) (FINAL_CLASSES,), the model state after the primer told each f (a row per class)): `prior`
    plus the log-likelihood of the primer's ids after the start token (`sequence`: [START] + ids), normalised; the
    state is after all but the primer's last id, as generation begins.

    `features`: (positions, bar_steps, durations_steps, bars_left) of every id of `sequence`, as the generator feeds
    them (the countdown to the tune's end).
    """
    rows = len(prior)
    state = model.initial_state(rows)
    state[-1][:, 0] = np.arange(rows)
    log_post = np.asarray(prior, np.float64).copy()
    if len(sequence) > 1:
        ids = np.repeat(np.asarray([sequence[:-1]]), rows, axis=0)
        positions, bar_steps, steps, countdown = (np.repeat(np.asarray(f)[None, :-1], rows, axis=0)
                                                  for f in features)
        logits, state = model.run(ids, state, positions, bar_steps, steps, countdown)
        targets = np.asarray(sequence[1:])
        log_post += log_softmax(logits)[:, np.arange(len(targets)), targets].sum(axis=1)
    log_post -= log_post.max()
    return log_post - np.log(np.exp(log_post).sum()), state


def told_state(model: NumpyLSTM, sequence, features, final_counts, minor, count: int, seed: int) -> list:
    """The model state after the primer (`final_posterior`'s) for `count` outputs, each told a final drawn from the
    posterior given the primer, with the prior of `final_counts` (in the mode `minor`, `final_prior`'s)."""
    posterior, by_class = final_posterior(model, sequence, features, final_prior(final_counts, minor))
    return [s[draw_finals(posterior, count, seed)[:, 0]] for s in by_class]


def draw_finals(log_posterior: np.ndarray, count: int, seed: int) -> np.ndarray:
    """(count, 1) int32 final-pitch classes drawn from `log_posterior`, the same for the same seed."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xF1])
    probabilities = np.exp(log_posterior - log_posterior.max())
    return rng.choice(len(probabilities), size=(count, 1), p=probabilities / probabilities.sum()).astype(np.int32)
