"""Melody <-> token ids: the (pitch, duration) vocabulary, out-of-vocabulary mapping, meter and lookback features."""

from __future__ import annotations

import collections
import dataclasses
import json
from pathlib import Path

import numpy as np

from melody_plugin.errors import MelodyPluginError
from melody_plugin.music.melody import REST, Melody, Note, pitch_name
from melody_plugin.runtime.atomic import write_json

PAD, START, UNK = 0, 1, 2


SPECIAL_TOKENS = ("<pad>", "<start>", "<unk>")


NUM_SPECIAL = len(SPECIAL_TOKENS)


FORMAT_VERSION = 1


# meter features (ModelConfig.meter_features): bar positions 0..96 and bar lengths 1..96 steps, larger values clamped
# (96 steps = a bar of 8/4 at 12 steps per quarter); both embeddings have this many rows
METER_FEATURE_SIZE = 97


# bar lookback (ModelConfig.bar_lookback): two of the longest bar the model is fed
LOOKBACK_STEPS = 2 * (METER_FEATURE_SIZE - 1)


class VocabularyError(MelodyPluginError):
    """A vocabulary file that is missing or malformed, or ids that cannot be decoded."""


def _fewest_tokens(lengths, max_steps: int) -> list[list[int] | None]:
    """fill[s]: the fewest of `lengths` (longest first) adding up to exactly s steps, or None; s in 0..max_steps."""
    lengths = sorted(set(lengths), reverse=True)
    fill: list = [[]] + [None] * max_steps
    for s in range(1, max_steps + 1):
        options = [fill[s - d] + [d] for d in lengths if d <= s and fill[s - d] is not None]
        fill[s] = sorted(min(options, key=len), reverse=True) if options else None
    return fill


def meter_features(durations_steps, steps_per_bar: int) -> tuple[np.ndarray, np.ndarray]:
    """The meter features of each input token: where the *next* token begins in its bar, and the bar length.

    The input at t is token x_t and predicts x_(t+1), so its position is the sum of the durations of x_0..x_t
    modulo the bar length: 0 after the start token (melodies start on a bar line; a pickup is a leading rest).

    Args:
      durations_steps: (time,) duration in grid steps of each token, the start token (0) first. Special tokens
        last 0 steps; `<unk>` lasts its note's true duration where the melody is known (scoring, primers) and 0
        where only ids are (`token_durations`: training data, SavedModel requests).
      steps_per_bar: the melody's bar length in grid steps.

    Returns:
      (positions, bar_steps), each (time,) int32, clamped to METER_FEATURE_SIZE - 1.
    """
    if steps_per_bar < 1:
        raise VocabularyError(f"steps_per_bar must be >= 1, got {steps_per_bar}")
    onsets = np.cumsum(np.asarray(durations_steps, dtype=np.int64)) % steps_per_bar
    positions = np.minimum(onsets, METER_FEATURE_SIZE - 1).astype(np.int32)
    return positions, np.full(len(positions), min(steps_per_bar, METER_FEATURE_SIZE - 1), dtype=np.int32)


def lookback_features(durations_steps, ids, steps_per_bar: int) -> tuple[np.ndarray, np.ndarray]:
    """The bar lookback of each input token: the ids sounding one and two bars before where the next token begins.

    Args:
      durations_steps: (time,) duration in grid steps of each token of `ids`, as `meter_features` takes them.
      ids: (time,) the token ids, the start token first.
      steps_per_bar: the melody's bar length in grid steps (clamped to METER_FEATURE_SIZE - 1, as the model sees it).

    Returns:
      (lookback_1, lookback_2), each (time,) int32: the id sounding at step o - k*B (see the module docstring), or
      PAD before the melody's start.
    """
    if steps_per_bar < 1:
        raise VocabularyError(f"steps_per_bar must be >= 1, got {steps_per_bar}")
    ids = np.asarray(ids, dtype=np.int32)
    ends = np.cumsum(np.asarray(durations_steps, dtype=np.int64))  # (time,) o of each input: where token t ends
    bar = min(steps_per_bar, METER_FEATURE_SIZE - 1)
    out = []
    for k in (1, 2):
        step = ends - k * bar
        # the first token ending after `step` is the one sounding there (zero-length tokens never are)
        sounding = np.searchsorted(ends, step, side="right")
        out.append(np.where(step < 0, PAD, ids[np.minimum(sounding, len(ids) - 1)]).astype(np.int32))
    return out[0], out[1]


def roll_lookback(roll: np.ndarray, ids, durations_steps, bar_steps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of the lookback roll buffer: (new roll, lookback_1, lookback_2), each row fed one token.

    `roll` (rows, LOOKBACK_STEPS) holds the id sounding at each of the last LOOKBACK_STEPS grid steps (PAD before
    the start); it moves on by the fed token's duration and that token fills the newest steps.
    """
    ids = np.asarray(ids)
    width = roll.shape[1]
    source = np.arange(width)[None, :] + np.asarray(durations_steps, dtype=np.int64)[:, None]  # (rows, width)
    rows = np.arange(len(ids))[:, None]
    shifted = roll[rows, np.minimum(source, width - 1)]  # not take_along_axis: slow on small arrays
    roll = np.where(source < width, shifted, ids[:, None]).astype(roll.dtype)
    bar = np.minimum(np.maximum(np.asarray(bar_steps, dtype=np.int64), 1), METER_FEATURE_SIZE - 1)  # not clip: slow
    rows = rows[:, 0]
    return roll, roll[rows, width - bar], roll[rows, width - 2 * bar]


def token_durations(ids, durations: np.ndarray) -> np.ndarray:
    """(time,) duration in steps of each id from the vocabulary's `durations()`: special tokens and `<unk>` 0."""
    return np.asarray(durations)[np.asarray(ids, dtype=np.int64)]


def key_shift(melody: Melody) -> int:
    """Semitones that move the melody's key to C major / A minor, in [-6, 5]."""
    target = 9 if melody.minor else 0
    return (target - melody.key + 6) % 12 - 6


@dataclasses.dataclass(frozen=True)
class OovChange:
    """One change made to fit a melody into the vocabulary."""

    index: int  # position of the note in the melody
    original: tuple[int, int]
    replacement: tuple[tuple[int, int], ...]  # empty = unknown token
    how: str

    def transpose(self, semitones: int) -> "OovChange":
        """The same change with every pitch moved by `semitones` (rests stay rests)."""
        def move(t):
            return t if t[0] == REST else (t[0] + semitones, t[1])
        return dataclasses.replace(self, original=move(self.original),
                                   replacement=tuple(move(t) for t in self.replacement))

    def describe(self) -> str:
        """One line for people: notes (and rests) counted from 1, an octave shift with its direction and size."""
        def fmt(t):
            return f"{pitch_name(t[0])}/{t[1]}"
        new = " + ".join(fmt(t) for t in self.replacement) or "<unk>"
        how = self.how
        if how == "octave shift" and self.replacement:
            octaves = (self.replacement[0][0] - self.original[0]) // 12
            how = f"moved {'up' if octaves > 0 else 'down'} {abs(octaves)} octave{'s' if abs(octaves) > 1 else ''}"
        return f"note {self.index + 1} ({fmt(self.original)} steps) -> {new} ({how})"


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """The token table and the data settings generation needs to undo (key normalisation, transpositions)."""

    tokens: tuple[tuple[int, int], ...]  # (pitch or REST, duration_steps) for ids NUM_SPECIAL..
    steps_per_quarter: int
    counts: tuple[int, ...] = ()
    min_token_count: int = 1
    transpose_to_key: bool = False
    augment_transpositions: tuple[int, int] = (0, 0)
    end_token: bool = False  # the last id ends a melody (`end_id`); vocabularies made before it have none
    # how many training melodies end on each pitch class (their last sounding note), then how many on none, the major
    # tunes' 13 counts then the minor ones': the final-pitch model's prior (ModelConfig.final_pitch;
    # `form.final_counts`, set by training); empty otherwise
    final_counts: tuple[int, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "_index", {t: i + NUM_SPECIAL for i, t in enumerate(self.tokens)})

    # --- building and saving

    @classmethod
    def build(cls, melodies, min_token_count: int = 1, transpose_to_key: bool = False,
              augment_transpositions: tuple[int, int] = (0, 0), end_token: bool = False) -> "Vocabulary":
        """Learns the tokens of `melodies` (already key-normalised/augmented), keeping those seen >= min_token_count."""
        melodies = list(melodies)
        if not melodies:
            raise VocabularyError("cannot build a vocabulary from no melodies")
        counter = collections.Counter((n.pitch, n.duration_steps) for m in melodies for n in m.notes)
        kept = sorted(t for t, c in counter.items() if c >= min_token_count)
        if not kept:
            raise VocabularyError(f"no token occurs {min_token_count} times; lower min_token_count")
        return cls(tuple(kept), melodies[0].steps_per_quarter, tuple(counter[t] for t in kept), min_token_count,
                   transpose_to_key, tuple(augment_transpositions), end_token)

    def to_json(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "special_tokens": list(SPECIAL_TOKENS),
            "steps_per_quarter": self.steps_per_quarter,
            "min_token_count": self.min_token_count,
            "transpose_to_key": self.transpose_to_key,
            "augment_transpositions": list(self.augment_transpositions),
            "tokens": [[p, d] for p, d in self.tokens],  # pitch -1 = rest
            "counts": list(self.counts),
            **({"end_token": True} if self.end_token else {}),  # files without it read as before
            **({"final_counts": list(self.final_counts)} if self.final_counts else {}),
        }

    @classmethod
    def from_json(cls, obj: dict, source: str = "vocabulary") -> "Vocabulary":
        try:
            if obj.get("format_version") != FORMAT_VERSION:
                raise VocabularyError(f"{source}: unsupported format_version {obj.get('format_version')!r}")
            tokens = tuple((int(p), int(d)) for p, d in obj["tokens"])
            return cls(tokens, int(obj["steps_per_quarter"]), tuple(int(c) for c in obj.get("counts", ())),
                       int(obj.get("min_token_count", 1)), bool(obj.get("transpose_to_key", False)),
                       tuple(obj.get("augment_transpositions", (0, 0))), bool(obj.get("end_token", False)),
                       tuple(int(c) for c in obj.get("final_counts", ())))
        except (KeyError, TypeError, ValueError) as e:
            raise VocabularyError(f"{source}: malformed vocabulary ({type(e).__name__}: {e})") from None

    def save(self, path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path) -> "Vocabulary":
        path = Path(path)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise VocabularyError(f"{path}: no vocabulary file") from None
        except (OSError, ValueError) as e:
            raise VocabularyError(f"{path}: unreadable vocabulary ({e})") from None
        return cls.from_json(obj, str(path))

    # --- lookups

    def __len__(self) -> int:
        return NUM_SPECIAL + len(self.tokens) + int(self.end_token)

    @property
    def end_id(self) -> int | None:
        """The end-of-melody id (after every (pitch, duration) token), or None in a vocabulary without one."""
        return NUM_SPECIAL + len(self.tokens) if self.end_token else None

    def with_end(self, ids) -> list[int]:
        """`ids` followed by the end id when the vocabulary has one (a training or scored melody's sequence)."""
        return list(ids) + ([self.end_id] if self.end_token else [])

    def token_to_id(self, token: tuple[int, int]) -> int:
        return self._index.get(token, UNK)

    def id_to_token(self, token_id: int) -> tuple[int, int]:
        if token_id < NUM_SPECIAL or token_id >= NUM_SPECIAL + len(self.tokens):
            raise VocabularyError(f"id {token_id} is not a (pitch, duration) token")
        return self.tokens[token_id - NUM_SPECIAL]

    def durations(self) -> np.ndarray:
        """(vocab,) duration in steps of every id; 0 for the special tokens."""
        return np.array([0] * NUM_SPECIAL + [d for _, d in self.tokens] + [0] * self.end_token, dtype=np.int64)

    def pitches(self) -> np.ndarray:
        """(vocab,) pitch of every id; REST for rests, -2 for the special tokens and the end token."""
        return np.array([-2] * NUM_SPECIAL + [p for p, _ in self.tokens] + [-2] * self.end_token, dtype=np.int64)

    # --- melody <-> ids

    def encode(self, melody: Melody, map_oov: bool = True) -> list[int]:
        """Token ids of a melody (no start token). Exact on in-vocabulary melodies.

        With map_oov=False every note the vocabulary lacks becomes `<unk>` (for honest scoring); otherwise it is
        mapped as `encode_with_report` describes.
        """
        if not map_oov:
            return [self._index.get((n.pitch, n.duration_steps), UNK) for n in melody.notes]
        return self.encode_with_report(melody)[0]

    def encode_with_report(self, melody: Melody) -> tuple[list[int], list[OovChange]]:
        """Token ids of a melody, mapping notes the vocabulary lacks, and the list of changes made.

        Policy, in order, exact decompositions first (pitch, onset and length kept): a rest is split into rests
        the vocabulary has; a note becomes its longest shorter duration plus rests ("shortened, rest added"), or
        else tied notes of its pitch, re-struck, sounding as long as possible, plus rests if needed ("tied
        notes"). Then approximations: the same duration an octave (or more) up or down; the nearest duration of
        the same pitch; otherwise `<unk>`.
        """
        if melody.steps_per_quarter != self.steps_per_quarter:
            raise VocabularyError(f"melody has {melody.steps_per_quarter} steps per quarter, the vocabulary "
                                  f"{self.steps_per_quarter}")
        ids, changes = [], []
        for index, note in enumerate(melody.notes):
            token = (note.pitch, note.duration_steps)
            if token in self._index:
                ids.append(self._index[token])
                continue
            replacement, how = self._map_oov(note)
            changes.append(OovChange(index, token, tuple(replacement), how))
            ids.extend(self._index[t] for t in replacement) if replacement else ids.append(UNK)
        return ids, changes

    def _rest_fill(self, steps: int) -> list[tuple[int, int]] | None:
        """Rest tokens that add up to exactly `steps` (fewest tokens), or None."""
        fill = _fewest_tokens([d for p, d in self.tokens if p == REST], steps)[steps]
        return None if fill is None else [(REST, d) for d in fill]

    def _map_oov(self, note: Note):
        if note.is_rest:
            fill = self._rest_fill(note.duration_steps)
            if fill is not None:
                return fill, "rest split"
        same_pitch = sorted(d for p, d in self.tokens if p == note.pitch)
        if not note.is_rest:
            # exact decompositions keep pitch, onset and every bar line; only then approximate
            exact = self._exact_split(note.pitch, same_pitch, note.duration_steps)
            if exact is not None:
                return exact
            for octaves in (1, -1, 2, -2, 3, -3, 4, -4):
                candidate = (note.pitch + 12 * octaves, note.duration_steps)
                if candidate in self._index:
                    return [candidate], "octave shift"
        if same_pitch:
            d = min(same_pitch, key=lambda d: (abs(d - note.duration_steps), d))
            return [(note.pitch, d)], "nearest duration"
        return [], "unknown"

    def _exact_split(self, pitch: int, same_pitch: list[int], steps: int):
        """Tokens of `pitch`, then rests, lasting exactly `steps`, with how; None if none fit."""
        rests = _fewest_tokens([d for p, d in self.tokens if p == REST], steps)
        # one shorter note plus rests: a single attack, as long as possible
        for d in reversed(same_pitch):
            if d < steps and rests[steps - d] is not None:
                return [(pitch, d)] + [(REST, r) for r in rests[steps - d]], "shortened, rest added"
        # tied notes of the pitch (the token stream re-strikes them), sounding as long as possible, then rests
        notes = _fewest_tokens(same_pitch, steps)
        for sounding in range(steps, 0, -1):
            if notes[sounding] is not None and rests[steps - sounding] is not None:
                how = "tied notes" if sounding == steps else "tied notes, rest added"
                return [(pitch, d) for d in notes[sounding]] + [(REST, r) for r in rests[steps - sounding]], how
        return None

    def decode(self, ids, time_signature=(4, 4), qpm: float = 120.0, key: int = 0, minor: bool = False,
               strict: bool = True) -> Melody:
        """A Melody from token ids; `<start>`/`<pad>` are skipped, `<unk>` raises unless strict=False (then dropped);
        the melody ends at the end token."""
        notes = []
        for token_id in ids:
            token_id = int(token_id)
            if token_id in (PAD, START):
                continue
            if token_id == self.end_id:
                break
            if token_id == UNK or not 0 <= token_id < len(self):
                if strict:
                    raise VocabularyError(f"cannot decode id {token_id}: not a (pitch, duration) token")
                continue
            pitch, duration = self.tokens[token_id - NUM_SPECIAL]
            notes.append(Note(pitch, duration))
        return Melody(tuple(notes), self.steps_per_quarter, tuple(time_signature), qpm, key, minor)
