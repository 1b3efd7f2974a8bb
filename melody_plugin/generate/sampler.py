"""Bar-bounded decoding over a `next_logits` callable: sampling, beam search, constraints, the repetition prior."""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from melody_plugin.errors import MelodyPluginError
from melody_plugin.model.numpy_model import log_softmax
from melody_plugin.tokens.vocab import NUM_SPECIAL

NEG_INF = -1e30


class SamplingError(MelodyPluginError):
    """Bad sampling options or constraints that leave nothing to sample."""


BACKENDS = ("numpy", "tf")


ENDINGS = ("tune", "open")


@dataclasses.dataclass(frozen=True)
class SamplingOptions:
    """How to sample: temperature, top-k/top-p, Magenta's beam search, the seed, and which loop runs it."""

    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    beam_size: int = 1
    branch_factor: int = 1
    steps_per_iteration: int = 1
    seed: int = 0  # the same seed, inputs and options give the same ids
    # logit bonus (natural log units) of the token that began at the same step `repetition_bars` bars earlier;
    # > 0: more repetition, < 0: more variation, 0: off. Needs `DecodeStart.history`.
    repetition: float = 0.0
    repetition_bars: int = 2
    # "numpy": this module's loop (no TensorFlow import, beam search); "tf": sampler_tf.py's compiled loop
    backend: str = "numpy"
    # how the melody ends: "tune" (it ends on its last bar line: a model with an end token is told the bars left
    # and ends there), "open" (it goes on: the continuation must not sound finished), None: "tune" without a
    # primer when the model has an end token, else "open"
    ending: str | None = None

    def __post_init__(self):
        if self.temperature < 0:
            raise SamplingError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise SamplingError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise SamplingError(f"top_p must be in (0, 1], got {self.top_p}")
        if not -100 <= self.repetition <= 100:  # NaN fails this too
            raise SamplingError(f"repetition must be in [-100, 100] (0 = off), got {self.repetition}")
        for name in ("beam_size", "branch_factor", "steps_per_iteration", "repetition_bars"):
            if getattr(self, name) < 1:
                raise SamplingError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.ending not in ENDINGS + (None,):
            raise SamplingError(f"ending must be tune or open, got {self.ending!r}")
        if self.backend not in BACKENDS:
            raise SamplingError(f"sampler must be numpy or tf, got {self.backend!r}")


@dataclasses.dataclass(frozen=True)
class History:
    """What the repetition prior looks back at: the ids of the primer (as the model sees them) by the grid step
    each begins at, counted from the primer's first bar line; the first sampled token begins at `next_step`."""

    onsets: dict  # {grid step: id}
    next_step: int
    steps_per_bar: int

    @classmethod
    def from_tokens(cls, ids, durations, steps_per_bar: int, first_step: int = 0) -> History:
        """The history of `ids` lasting `durations` steps each, the first beginning at `first_step`."""
        onsets, step = {}, int(first_step)
        for token_id, steps in zip(ids, durations):
            if steps > 0:
                onsets[step] = int(token_id)
            step += int(steps)
        return cls(onsets, step, int(steps_per_bar))


# numpy arrays inside: eq=False keeps the generated __eq__/__hash__ from comparing them element-wise
@dataclasses.dataclass(frozen=True, eq=False)
class DecodeStart:
    """Where each output's decoding begins: the model state, the token to feed first and the steps to fill.

    For a model with meter features also where the token after `last_ids` begins within its bar and the bar
    length; then `next_logits` is called as `next_logits(ids, state, positions)`.
    """

    state: list  # model state after the primer (all but its last token): arrays (outputs, ...)
    last_ids: np.ndarray  # (outputs,) the primer's last token, or the start token
    remaining_steps: np.ndarray  # (outputs,) steps to fill
    bar_positions: np.ndarray | None = None  # (outputs,) meter features only
    steps_per_bar: int | np.ndarray | None = None  # an int or (outputs,); None: a model without meter features
    history: History | None = None  # the primer's tokens, for the repetition prior (the same for every output)
    # a model with a countdown: `next_logits(ids, state, positions, remaining)`, remaining (rows,) being the steps
    # left after the token each fed id predicts begins (the caller turns them into its countdown input)
    countdown: bool = False
    # the end token's id where the output must end on its last bar line (ending "tune"): its log-likelihood there
    # is reported and counts in the beams' ranking; None: the output just stops (ending "open", older models)
    end_id: int | None = None

    @property
    def metered(self) -> bool:
        return self.steps_per_bar is not None


@dataclasses.dataclass(frozen=True, eq=False)
class TokenTable:
    """What the sampler knows of the vocabulary: each id's duration in steps and which ids may be produced."""

    durations: np.ndarray  # (vocab,) 0 for special tokens
    allowed: np.ndarray | None = None  # (vocab,) bool (key/scale/range); None = all; specials are always excluded


@dataclasses.dataclass
class SampleResult:
    """Per output: the sampled ids, each id's log-likelihood (natural log), and steps left unfilled (normally 0)."""

    ids: list[list[int]]
    log_likelihoods: list[list[float]]
    unfilled_steps: list[int]
    end_log_likelihoods: list[float | None] = dataclasses.field(default_factory=list)  # of ending there (end_id)

    @property
    def total_log_likelihood(self) -> list[float]:
        return [float(sum(x)) for x in self.log_likelihoods]


MODES = {
    "major": (0, 2, 4, 5, 7, 9, 11), "ionian": (0, 2, 4, 5, 7, 9, 11), "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10), "lydian": (0, 2, 4, 6, 7, 9, 11), "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "minor": (0, 2, 3, 5, 7, 8, 10), "aeolian": (0, 2, 3, 5, 7, 8, 10), "locrian": (0, 1, 3, 5, 6, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11), "melodic_minor": (0, 2, 3, 5, 7, 9, 11),
    "pentatonic": (0, 2, 4, 7, 9), "major_pentatonic": (0, 2, 4, 7, 9), "minor_pentatonic": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10), "chromatic": tuple(range(12)),
}


_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def _pitch_class(name: str) -> int:
    m = re.fullmatch(r"([A-Ga-g])([#b]*)", name.strip())
    if not m:
        raise SamplingError(f"not a note name: {name!r}")
    return (_PC[m.group(1).upper()] + m.group(2).count("#") - m.group(2).count("b")) % 12


def scale_pitch_classes(text: str) -> frozenset[int]:
    """Pitch classes of "D:dorian", "A:minor", "0,2,4,5,7,9,11" or "D,E,F#,G,A,B,C"."""
    text = text.strip()
    if ":" in text:
        root, mode = _tonic_and_mode(text)
        return frozenset((root + i) % 12 for i in MODES[mode])
    items = [t for t in re.split(r"[,\s]+", text) if t]
    if not items:
        raise SamplingError("empty scale")
    try:
        return frozenset(int(t) % 12 if t.lstrip("-").isdigit() else _pitch_class(t) for t in items)
    except SamplingError:
        raise SamplingError(f"cannot read scale {text!r}: use TONIC:MODE (e.g. D:dorian) or pitch classes") from None


def scale_key(text: str | None) -> tuple[int, bool] | None:
    """(tonic pitch class, minor) of a "TONIC:MODE" scale, minor where the mode has a minor third (as a MIDI key
    signature's modes are read); None for pitch-class lists and no scale; SamplingError for a bad TONIC:MODE."""
    if not text or ":" not in text:
        return None
    root, mode = _tonic_and_mode(text)
    return root, 3 in MODES[mode]


def _tonic_and_mode(text: str) -> tuple[int, str]:
    """(tonic pitch class, a MODES name) of "TONIC:MODE"; SamplingError for an unknown mode or note name."""
    tonic, mode = text.split(":", 1)
    mode = mode.strip().lower()
    if mode not in MODES:
        raise SamplingError(f"unknown mode {mode!r}; known: {', '.join(sorted(MODES))}")
    return _pitch_class(tonic), mode


def parse_pitch_range(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", text)
    if not m or not 0 <= int(m.group(1)) <= int(m.group(2)) <= 127:
        raise SamplingError(f"pitch range must be LOW:HIGH within 0-127, got {text!r}")
    return int(m.group(1)), int(m.group(2))


@dataclasses.dataclass(frozen=True)
class Constraints:
    """What may be sampled: sounding pitch classes and an inclusive (low, high) MIDI range; None = no limit.

    Rests are always allowed. Build it from text with `Constraints.parse(scale="D:dorian", pitch_range="55:84")`.
    """

    pitch_classes: frozenset[int] | None = None
    pitch_range: tuple[int, int] | None = None

    def __post_init__(self):
        if self.pitch_classes is not None:  # any iterable of pitches in, pitch classes 0-11 out
            object.__setattr__(self, "pitch_classes", frozenset(int(p) % 12 for p in self.pitch_classes))
        if self.pitch_range is not None:
            object.__setattr__(self, "pitch_range", tuple(self.pitch_range))

    @classmethod
    def parse(cls, scale=None, pitch_range=None) -> Constraints:
        """From what users type ("D:dorian", "0,2,4,7,9", "55:84") or from parsed values (pitches, (low, high)).

        Raises:
          SamplingError: an unreadable scale or range.
        """
        pitch_classes = scale_pitch_classes(scale) if isinstance(scale, str) else scale
        if isinstance(pitch_range, str):
            pitch_range = parse_pitch_range(pitch_range)
        return cls(pitch_classes, pitch_range)

    def mask(self, pitches: np.ndarray, shift: int = 0) -> np.ndarray:
        """(vocab,) bool: see `constraint_mask`."""
        return constraint_mask(pitches, self.pitch_classes, self.pitch_range, shift)


def constraint_mask(pitches: np.ndarray, pitch_classes=None, pitch_range=None, shift: int = 0) -> np.ndarray:
    """(vocab,) bool: tokens allowed by a scale and a pitch range. Rests are always allowed; specials never.

    `pitches` are the vocabulary's (model space); `shift` is added to get sounding pitches (undoes key
    normalisation).
    """
    allowed = np.ones(len(pitches), dtype=bool)
    allowed[:NUM_SPECIAL] = False
    pitched = pitches >= 0
    sounding = pitches + shift
    if pitch_classes is not None:
        allowed &= ~pitched | np.isin(sounding % 12, sorted(pitch_classes))
    if pitch_range is not None:
        lo, hi = pitch_range
        allowed &= ~pitched | ((sounding >= lo) & (sounding <= hi))
    if not (allowed & pitched).any():
        raise SamplingError("the key/scale and pitch range leave no note of the vocabulary to play")
    return allowed


def fillable_steps(durations: np.ndarray, allowed: np.ndarray, max_steps: int) -> np.ndarray:
    """fillable[r] is True if some sequence of allowed tokens lasts exactly r steps."""
    lengths = sorted({int(d) for d in durations[allowed] if d > 0})
    fillable = np.zeros(max_steps + 1, dtype=bool)
    fillable[0] = True
    for r in range(1, max_steps + 1):
        fillable[r] = any(d <= r and fillable[r - d] for d in lengths)
    return fillable


def _choose(logits: np.ndarray, valid: np.ndarray, options: SamplingOptions, rng, log_probs=None) -> np.ndarray:
    """One token per row from masked logits with temperature, top-k and top-p. `log_probs`: the log-softmax of the
    masked logits where the caller has it already (it is the distribution at temperature 1 without top-k)."""
    if log_probs is not None and options.temperature == 1 and not options.top_k:
        probs = np.exp(log_probs)
    else:
        masked = np.where(valid, logits, NEG_INF)
        if options.temperature == 0:
            return masked.argmax(axis=-1)
        scaled = masked / options.temperature
        if options.top_k:
            kth = -np.sort(-scaled, axis=-1)[:, min(options.top_k, scaled.shape[1]) - 1:][:, :1]
            scaled = np.where(scaled >= kth, scaled, NEG_INF)
        probs = np.exp(log_softmax(scaled))
    probs = np.where(valid, probs, 0.0)
    if options.top_p < 1:
        order = np.argsort(-probs, axis=-1)
        sorted_p = np.take_along_axis(probs, order, axis=-1)
        before = np.cumsum(sorted_p, axis=-1) - sorted_p
        keep_sorted = before < options.top_p  # the smallest set whose mass reaches top_p
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)
        probs = np.where(keep, probs, 0.0)
    probs = probs / probs.sum(axis=-1, keepdims=True)
    u = rng.random((probs.shape[0], 1))
    choice = (np.cumsum(probs, axis=-1) < u).sum(axis=-1)
    return np.minimum(choice, probs.shape[1] - 1)


class _RepetitionPrior:
    """Per row: the grid step its next token begins at and the ids it sampled, by onset; the bonus they earn."""

    def __init__(self, history: History, options: SamplingOptions, rows: int):
        self.history, self.bonus = history, float(options.repetition)
        self.back = options.repetition_bars * history.steps_per_bar
        self.step = np.full(rows, history.next_step, dtype=np.int64)
        self.sampled: list[dict] = [{} for _ in range(rows)]

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """`logits` with the bonus added to each row's token that began `back` steps before its next onset."""
        out = np.array(logits, dtype=np.float64)
        for r, step in enumerate(self.step - self.back):
            token = self.sampled[r].get(int(step), self.history.onsets.get(int(step)))
            if token is not None and token >= NUM_SPECIAL:
                out[r, token] += self.bonus
        return out

    def advance(self, choice: np.ndarray, active: np.ndarray, durations: np.ndarray) -> None:
        for r in np.flatnonzero(active):
            self.sampled[r][int(self.step[r])] = int(choice[r])
        self.step = self.step + np.where(active, durations[choice], 0)

    def take(self, index: np.ndarray) -> None:
        """Rows in the order of `index` (beam expansion and pruning); repeated rows get their own copies."""
        self.step = self.step[index]
        self.sampled = [dict(self.sampled[i]) for i in index]


def plan(durations, remaining_steps, allowed=None):
    """What both samplers need before the loop: the allowed mask (no specials, no zero durations), the table of
    fillable remainders, and each output's target: its steps, or, where no token sequence can fill them exactly
    (tiny vocabularies), the most that can be filled; the rest is reported as unfilled silence."""
    durations = np.asarray(durations, dtype=np.int64)
    base = np.ones(durations.shape[0], dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool).copy()
    base[:NUM_SPECIAL] = False
    base &= durations > 0
    remaining = np.asarray(remaining_steps, dtype=np.int64)
    fillable = fillable_steps(durations, base, int(remaining.max(initial=0)))
    reachable = np.maximum.accumulate(np.where(fillable, np.arange(len(fillable)), 0))
    target = reachable[remaining]
    return base, fillable, target, remaining - target


def sample(next_logits, start: DecodeStart, tokens: TokenTable,
           options: SamplingOptions | None = None) -> SampleResult:
    """Samples continuations that last exactly `start.remaining_steps` grid steps each.

    Args:
      next_logits: `(ids (rows,), state) -> (logits (rows, vocab), new_state)`; state is a list of arrays whose
        first axis is the row. For a metered `start`: `(ids, state, positions) -> ...`, positions (rows,) being
        where the token after each fed id begins, in [0, steps_per_bar).
      start: each output's model state, first token, steps to fill and (meter features) bar position.
      tokens: the vocabulary's durations and the mask of tokens that may be produced.
      options: temperature, top-k, top-p, beam search settings, the repetition prior and the seed (`backend` is
        the caller's business); the same seed, inputs and options give the same ids. Another seed:
        `dataclasses.replace(options, seed=s)`.

    Returns:
      SampleResult with the best beam of each output.

    Raises:
      SamplingError: a repetition prior without `start.history`.
    """
    options = options or SamplingOptions()
    if options.repetition and start.history is None:
        raise SamplingError("the repetition prior needs the primer's tokens (DecodeStart.history)")
    rng = np.random.default_rng(options.seed)
    durations = np.asarray(tokens.durations, dtype=np.int64)
    base, fillable, target, unfilled_steps = plan(durations, start.remaining_steps, tokens.allowed)
    outputs = target.shape[0]
    beam, branch = options.beam_size, options.branch_factor

    # rows = outputs x beam; row r belongs to output r // beam
    rows = np.repeat(np.arange(outputs), beam)
    state = [np.repeat(np.asarray(s), beam, axis=0) for s in start.state]
    feed = np.repeat(np.asarray(start.last_ids, dtype=np.int64), beam)
    rem = np.repeat(target, beam)
    ids: list[list[int]] = [[] for _ in rows]
    lls: list[list[float]] = [[] for _ in rows]
    score = np.zeros(len(rows))
    unfilled = np.repeat(unfilled_steps, beam)
    metered = start.metered
    if metered:
        bar = np.repeat(np.broadcast_to(np.asarray(start.steps_per_bar, dtype=np.int64), (outputs,)), beam)
        pos = np.repeat(np.asarray(start.bar_positions, dtype=np.int64), beam) % bar
    else:
        bar = pos = np.zeros(len(rows), dtype=np.int64)
    prior = _RepetitionPrior(start.history, options, len(rows)) if options.repetition else None

    while (rem > 0).any():
        if branch > 1:  # every beam is extended by `branch` independent samples
            expand = np.repeat(np.arange(len(rows)), branch)
            rows, feed, rem, score, unfilled = rows[expand], feed[expand], rem[expand], score[expand], unfilled[expand]
            pos, bar = pos[expand], bar[expand]
            state = [s[expand] for s in state]
            ids = [list(ids[i]) for i in expand]
            lls = [list(lls[i]) for i in expand]
            if prior is not None:
                prior.take(expand)
        for _ in range(options.steps_per_iteration):
            active = rem > 0
            if not active.any():
                break
            logits, new_state = _call(next_logits, start, feed, state, pos, rem)
            left = rem[:, None] - durations[None, :]  # (rows, vocab)
            valid = base[None, :] & (left >= 0) & fillable[np.minimum(np.maximum(left, 0), len(fillable) - 1)]
            assert valid[active].any(axis=1).all(), "fillable targets always leave a valid token"
            valid[~active] = True  # finished rows draw a dummy token that is thrown away
            log_probs = log_softmax(np.where(valid, logits, NEG_INF))
            if prior is not None:
                biased = prior.apply(logits)
                choice = _choose(biased, valid, options, rng)
            else:
                biased, choice = logits, _choose(logits, valid, options, rng, log_probs)
            token_ll = log_probs[np.arange(len(choice)), choice]
            for r in np.flatnonzero(active):
                ids[r].append(int(choice[r]))
                lls[r].append(float(token_ll[r]))
            if prior is not None:  # beams are ranked with the prior; the reported log-likelihoods stay the model's
                ranked = np.take_along_axis(log_softmax(np.where(valid, biased, NEG_INF)), choice[:, None], 1)[:, 0]
                prior.advance(choice, active, durations)
            else:
                ranked = token_ll
            score = score + np.where(active, ranked, 0.0)
            rem = rem - np.where(active, durations[choice], 0)
            # finished rows keep their old state and feed; nothing they compute is used
            if active.all():
                state, feed, pos = new_state, choice, (pos + durations[choice]) % np.maximum(bar, 1)
            else:
                state = [np.where(active[:, None], ns, s) if ns.ndim == 2 else ns for ns, s in zip(new_state, state)]
                feed = np.where(active, choice, feed)
                pos = np.where(active, (pos + durations[choice]) % np.maximum(bar, 1), pos)
        if len(rows) > outputs * beam or beam > 1:  # prune each output back to its `beam` best rows
            keep = []
            for o in range(outputs):
                members = np.flatnonzero(rows == o)
                keep += list(members[np.argsort(-score[members], kind="stable")[:beam]])
            keep = np.array(keep)
            rows, feed, rem, score, unfilled = rows[keep], feed[keep], rem[keep], score[keep], unfilled[keep]
            pos, bar = pos[keep], bar[keep]
            state = [s[keep] for s in state]
            ids = [ids[i] for i in keep]
            lls = [lls[i] for i in keep]
            if prior is not None:
                prior.take(keep)

    end_ll = np.full(len(rows), np.nan)
    if start.end_id is not None:  # the end token where the melody must end: part of each beam's likelihood
        logits, _ = _call(next_logits, start, feed, state, pos, rem)
        end_ll = log_softmax(np.asarray(logits, dtype=np.float64))[:, start.end_id]
        score = score + end_ll
    best = [int(np.flatnonzero(rows == o)[np.argmax(score[rows == o])]) for o in range(outputs)]
    return SampleResult([ids[b] for b in best], [lls[b] for b in best], [int(unfilled[b]) for b in best],
                        [None if np.isnan(end_ll[b]) else float(end_ll[b]) for b in best])


def _call(next_logits, start: DecodeStart, feed, state, pos, rem):
    """next_logits with what the start's model takes: positions for meter features, the steps left for a
    countdown."""
    if start.countdown:
        return next_logits(feed, state, pos, rem)
    return next_logits(feed, state, pos) if start.metered else next_logits(feed, state)
