"""The key of a melody: Krumhansl-Schmuckler on its duration-weighted pitch classes (the one key finder: key
signatures of melodies without one, and the tonic endings of evaluate/form.py)."""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

# Krumhansl-Kessler probe-tone profiles, from the tonic up by semitones
MAJOR_PROFILE = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
MINOR_PROFILE = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)

# Correlations this close count as a tie: rotations of one histogram differ in the last bits of a float
TIE_TOLERANCE = 1e-9

KEY_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)

# A key signature is doubted when more than this share of the notes' time is outside its scale
SIGNATURE_DOUBT = 0.2


@dataclasses.dataclass(frozen=True)
class Key:
    """A key found from the notes: tonic pitch class (C = 0), major or minor, and how well the notes fit it."""

    tonic: int
    minor: bool
    correlation: float  # Pearson's r of the notes' pitch classes with the key's profile, -1..1

    @property
    def name(self) -> str:
        return f"{KEY_NAMES[self.tonic]} {'minor' if self.minor else 'major'}"


@functools.cache
def _key_profiles() -> np.ndarray:
    """The 24 key profiles, rows in tie-break order (C major, C minor, C# major ...), columns pitch classes
    (made once; read-only)."""
    rows = [np.roll(profile, tonic) for tonic in range(12) for profile in (MAJOR_PROFILE, MINOR_PROFILE)]
    profiles = np.array(rows, dtype=np.float64)  # (24, 12)
    profiles.flags.writeable = False
    return profiles


def find_key(notes, keys=None) -> Key | None:
    """The Krumhansl-Schmuckler key of `notes` (melody `Note`s), or None without a sounding note.

    `keys`: the (tonic, minor) keys to choose from (e.g. a key signature's major and relative minor); default all 24.

    The duration-weighted pitch-class distribution of every sounding note (rests left out, weight = length in
    steps) is correlated (Pearson) with the 24 rotated Krumhansl-Kessler profiles; the best correlation wins,
    ties going to the lowest tonic, major before minor. A flat distribution (all twelve pitch classes equally
    long) correlates with no key: every correlation is 0.0 and C major wins the tie.
    """
    weights = np.zeros(12, dtype=np.float64)
    for n in notes:
        if not n.is_rest:
            weights[n.pitch % 12] += n.duration_steps
    if not weights.any():
        return None
    profiles = _key_profiles()
    centred_weights = weights - weights.mean()
    centred_profiles = profiles - profiles.mean(axis=1, keepdims=True)
    spread = math.sqrt(float(centred_weights @ centred_weights))
    if spread == 0.0:
        correlations = np.zeros(len(profiles))
    else:
        correlations = centred_profiles @ centred_weights / (np.linalg.norm(centred_profiles, axis=1) * spread)
    if keys:  # the others out of the race
        allowed = np.zeros(len(profiles), dtype=bool)
        for tonic, minor in keys:
            allowed[2 * (int(tonic) % 12) + bool(minor)] = True
        correlations = np.where(allowed, correlations, -np.inf)
    best = int(np.flatnonzero(correlations >= correlations.max() - TIE_TOLERANCE)[0])
    return Key(tonic=best // 2, minor=bool(best % 2), correlation=float(correlations[best]))


def relative_keys(tonic: int, minor: bool) -> tuple[tuple[int, bool], tuple[int, bool]]:
    """The major and the relative minor key sharing the key signature of (tonic, minor)."""
    major = (tonic + 3) % 12 if minor else tonic % 12
    return (major, False), ((major + 9) % 12, True)


def estimate_key(notes, default=(0, False), keys=None) -> tuple[int, bool]:
    """(tonic, minor) of `find_key` (among `keys` when given), or `default` without a sounding note."""
    key = find_key(notes, keys)
    return default if key is None else (key.tonic, key.minor)


def key_scale(tonic: int, minor: bool) -> frozenset[int]:
    """The pitch classes of the key's diatonic scale (the natural minor for a minor key)."""
    major = relative_keys(tonic, minor)[0][0]
    return frozenset((major + i) % 12 for i in MAJOR_SCALE)


def outside_share(notes, scale) -> float:
    """The share of the sounding notes' time (in steps) on pitch classes outside `scale` (pitch classes 0-11);
    0.0 without a sounding note."""
    total = sum(n.duration_steps for n in notes if not n.is_rest)
    outside = sum(n.duration_steps for n in notes if not n.is_rest and n.pitch % 12 not in scale)
    return outside / total if total else 0.0


def doubted_signature(notes, tonic: int, minor: bool) -> Key | None:
    """The key finder's key of `notes` when they contradict a key signature's key: more than SIGNATURE_DOUBT of
    their time outside its scale, and less outside the found key's; None when the signature fits."""
    signed = outside_share(notes, key_scale(tonic, minor))
    if signed <= SIGNATURE_DOUBT:
        return None
    found = find_key(notes)
    if found is None or outside_share(notes, key_scale(found.tonic, found.minor)) >= signed:
        return None
    return found
