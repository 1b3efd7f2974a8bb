"""Melody -> form figures: does it have the shape of a tune (a key, an ending on its tonic, bars that come back)?

`find_key` (Krumhansl-Schmuckler on the notes alone), `ends_on_tonic`, `long_ending`, `repeat_shares` (how much of
the melody replays the notes 2, 4, 8 bars back), `form_figures` for one melody (and its relation to a primer),
`average_figures`, and `evaluate_form` for a folder of music files, beside a folder of references if given.
Pure numpy: nothing here loads a model.
"""

from __future__ import annotations

import math
from pathlib import Path


from melody_plugin.errors import InputFileError, MelodyPluginError
from melody_plugin.evaluate.continuation import (
    duration_histogram,
    interval_histogram,
    joined,
    overlap,
    pitch_class_histogram,
    repeated_share,
)
from melody_plugin.io.files import read_music_file
from melody_plugin.io.inputs import list_music_files
from melody_plugin.music.extract import note_sequence_to_melodies
from melody_plugin.music.key import Key
from melody_plugin.music.key import find_key as find_notes_key
from melody_plugin.music.melody import DEFAULT_STEPS_PER_QUARTER, POLICIES, Melody, Note

REPEAT_BARS = (2, 4, 8)

MAX_LISTED_FILES = 20  # skipped files listed by name, each with its reason; all are counted


class FormError(MelodyPluginError):
    """Nothing to measure (every file of a folder skipped), or a bad argument (bars back < 1, another grid)."""


def find_key(melody: Melody) -> Key | None:
    """The Krumhansl-Schmuckler key of a melody from its notes alone (`music.key.find_key`: the one key finder the
    package uses; the melody's key signature is never read), or None for a melody without a sounding note."""
    return find_notes_key(melody.notes)


def last_note(melody: Melody) -> Note | None:
    """The last sounding (pitched) note of the melody, trailing rests skipped; None when nothing sounds."""
    return next((n for n in reversed(melody.notes) if not n.is_rest), None)


def beat_steps(melody: Melody) -> int:
    """Grid steps in one beat of the melody's meter.

    The beat is the note value of the denominator (a quarter in x/4, a half in 2/2 and x/2, an eighth in 3/8,
    5/8, 7/8), except in compound meters, an x/8 (or x/16...) with 6, 9 or 12 on top, where it is three of them
    (a dotted quarter in 6/8, 9/8, 12/8).
    """
    num, den = melody.time_signature
    unit = melody.steps_per_quarter * 4 // den
    return 3 * unit if den >= 8 and num in (6, 9, 12) else unit


def ends_on_tonic(melody: Melody) -> bool | None:
    """Whether the last sounding note is on the tonic (pitch class) of `find_key`; None when nothing sounds."""
    note, key = last_note(melody), find_key(melody)
    if note is None or key is None:
        return None
    return note.pitch % 12 == key.tonic


def long_ending(melody: Melody) -> bool | None:
    """Whether the last sounding note lasts at least one beat (`beat_steps`); None when nothing sounds."""
    note = last_note(melody)
    return None if note is None else note.duration_steps >= beat_steps(melody)


def _onset_steps(melody: Melody) -> list[int]:
    """Grid step of each sounding note's onset."""
    onsets, step = [], 0
    for n in melody.notes:
        if not n.is_rest:
            onsets.append(step)
        step += n.duration_steps
    return onsets


def repeat_shares(melody: Melody, bars=REPEAT_BARS, start_step: int = 0) -> dict[int, float | None]:
    """For each k of `bars`, the share of notes that replay the note begun exactly k bars earlier.

    A note repeats when a note of the same pitch and the same length began exactly k bars (k * steps_per_bar
    steps) before it: `continuation.repeated_share`'s definition. Counted are the sounding notes beginning at step
    max(start_step, k bars), the first that can have a note k bars back.

    Returns:
      {k: share in 0..1}, or {k: None} where no note qualifies (the melody ends within k bars of the start).

    Raises:
      FormError: a k below 1.
    """
    onsets = _onset_steps(melody)
    shares = {}
    for k in bars:
        if k < 1:
            raise FormError(f"bars back must be >= 1, got {k}")
        start = max(start_step, k * melody.steps_per_bar)
        shares[k] = repeated_share(melody, start, k) if any(t >= start for t in onsets) else None
    return shares


def _as_share(flag: bool | None) -> int | None:
    return None if flag is None else int(flag)


def form_figures(melody: Melody, primer: Melody | None = None) -> dict:
    """The form figures of one melody, and with `primer` its relation to the primer it continues.

    Args:
      melody: the melody (with a primer: the continuation alone, which comes right after the primer).
      primer: the primer the melody continues, or None.

    Returns:
      tonic_ending and long_ending (1 or 0; None without a sounding note), repeat_2, repeat_4, repeat_8 (shares
      of the notes replaying those k bars back, over the whole melody; None when it is not longer than k bars),
      bars (its length in bars). With a primer also primer_pitch_class_overlap, primer_interval_overlap,
      primer_duration_overlap (histogram overlaps of the continuation with the primer, 0..1) and primer_repeat_2
      (the share of the continuation's notes replaying the note 2 bars back, over primer + continuation).

    Raises:
      FormError: the primer is on another grid (lengths in steps would not compare).
    """
    figures = {"tonic_ending": _as_share(ends_on_tonic(melody)), "long_ending": _as_share(long_ending(melody))}
    figures.update({f"repeat_{k}": share for k, share in repeat_shares(melody).items()})
    figures["bars"] = melody.total_steps / melody.steps_per_bar
    if primer is None:
        return figures
    if primer.steps_per_quarter != melody.steps_per_quarter:
        raise FormError(f"the primer has {primer.steps_per_quarter} steps per quarter, the continuation "
                        f"{melody.steps_per_quarter}")
    figures["primer_pitch_class_overlap"] = overlap(pitch_class_histogram(melody), pitch_class_histogram(primer))
    figures["primer_interval_overlap"] = overlap(interval_histogram(melody), interval_histogram(primer))
    figures["primer_duration_overlap"] = overlap(duration_histogram(melody), duration_histogram(primer))
    # in the primer's meter: the generator continues in it
    whole = joined(primer, melody)
    figures["primer_repeat_2"] = repeat_shares(whole, (2,), start_step=primer.total_steps)[2]
    return figures


def average_figures(figures) -> dict:
    """The mean of each figure over a list of `form_figures` dicts, each mean over the melodies where it is defined.

    Returns:
      {figure: mean, or None where no melody defines it}, in the order the figures first appear, then count (the
      number of dicts) and defined ({figure: how many dicts define it}).
    """
    figures = list(figures)
    names = list(dict.fromkeys(name for f in figures for name in f))
    means, defined = {}, {}
    for name in names:
        values = [f[name] for f in figures if f.get(name) is not None]
        means[name] = math.fsum(values) / len(values) if values else None
        defined[name] = len(values)
    return {**means, "count": len(figures), "defined": defined}


def files_by_name(folder) -> dict[str, Path]:
    """A folder's music files by their path inside it, without the extension ("sub/tune"); first in name order
    (tune.mid and tune.abc are one tune)."""
    root = Path(folder)
    if not root.is_dir():
        raise InputFileError(root, "not a folder")
    named = {}
    for path in list_music_files(root):
        named.setdefault(path.relative_to(root).with_suffix("").as_posix(), path)
    return named


def melody_of_file(path, steps_per_quarter: int, policy: str) -> Melody:
    """The first melody of a music file (the melody track, the first constant-meter part)."""
    music = read_music_file(path)
    return note_sequence_to_melodies(music.sequences[0], steps_per_quarter, policy).melodies[0]


def reason(error: Exception, path) -> str:
    """An error's message without the file name in front (the caller lists the file)."""
    text = str(error)
    return text.split(": ", 1)[1] if text.startswith(f"{path}: ") else text


def folder_form(folder, steps_per_quarter: int = DEFAULT_STEPS_PER_QUARTER, policy: str = "highest") -> dict:
    """`average_figures` of the first melody of each music file of `folder`, with what was skipped and why.

    Returns:
      The averages, and folder, files (files measured), skipped (files that could not be read) and
      skipped_files (the first 20 of those, each as {file, reason}).

    Raises:
      FormError: no file could be read, or an unknown policy.
      InputFileError: a folder that is not there, or holds no music file.
    """
    if policy not in POLICIES:
        raise FormError(f"polyphony policy must be one of {POLICIES}, got {policy!r}")
    paths = list(files_by_name(folder).values())
    figures, skipped = [], []
    for path in paths:
        try:
            melody = melody_of_file(path, steps_per_quarter, policy)
        except MelodyPluginError as e:
            skipped.append({"file": str(path), "reason": reason(e, path)})
            continue
        figures.append(form_figures(melody))
    if not figures:
        raise FormError(f"{folder}: no melody could be read ({len(paths)} files, all skipped: "
                        + "; ".join(f"{Path(s['file']).name}: {s['reason']}" for s in skipped[:3])
                        + ("; ..." if len(skipped) > 3 else "") + ")")
    result = average_figures(figures)
    result.update({"folder": str(folder), "files": len(figures), "skipped": len(skipped),
                   "skipped_files": skipped[:MAX_LISTED_FILES]})
    return result


def evaluate_form(folder, references=None, steps_per_quarter: int = DEFAULT_STEPS_PER_QUARTER,
                  policy: str = "highest") -> dict:
    """The form figures of a folder of melodies (e.g. generated ones), beside those of a folder of references.

    Each music file gives its first melody (the melody track, the first constant-meter part), as
    `evaluate_continuations` reads them; files that cannot be read are listed with the reason and counted.

    Args:
      folder: the melodies to measure.
      references: a folder of real tunes to measure the same way, for comparison; or None.
      steps_per_quarter: the grid the files are read on.
      policy: how overlapping notes become one line: "highest", "lowest" or "reject".

    Returns:
      {"generated": `folder_form(folder)`}, and "references": `folder_form(references)` when given.

    Raises:
      FormError: a folder none of whose files could be read.
      InputFileError: a folder that is not there, or holds no music file.
    """
    result = {"generated": folder_form(folder, steps_per_quarter, policy)}
    if references is not None:
        result["references"] = folder_form(references, steps_per_quarter, policy)
    return result

