"""Which track of a NoteSequence is the melody, and how its polyphony is resolved."""

from __future__ import annotations

import collections
import dataclasses
import math
import re

from melody_plugin.music.melody import MelodyError

MELODY_TRACK_WORDS = ("melody", "melodie", "soprano", "sopran", "vocal", "voice", "vox", "lead", "tune", "solo",
                      "canto", "singer", "sing")


BASS_TRACK_WORDS = ("bass", "basso", "bajo")


BASS_RANGE_MEDIAN = 55  # a track whose median pitch is below G3 is taken for a bass line


@dataclasses.dataclass(frozen=True)
class TrackSummary:
    """One pitched instrument of a NoteSequence, as the track choice sees it."""

    instrument: int
    name: str
    program: int
    num_notes: int
    median_pitch: float
    overlap_fraction: float  # onsets that start while another note of the track still sounds

    def describe(self) -> str:
        name = f' "{self.name}"' if self.name else ""
        return f"{self.instrument}{name} ({self.num_notes} notes, program {self.program})"


def summarize_tracks(notes, names: dict[int, str] | None = None) -> list[TrackSummary]:
    """A `TrackSummary` per pitched instrument, in instrument order."""
    names = names or {}
    by_instrument = collections.defaultdict(list)
    for n in notes:
        if not n.is_drum:
            by_instrument[n.instrument].append(n)
    out = []
    for instrument in sorted(by_instrument):
        group = sorted(by_instrument[instrument], key=lambda n: (n.start_time, n.end_time))
        overlaps, latest_end = 0, -math.inf
        for n in group:
            if n.start_time < latest_end - 1e-6:
                overlaps += 1
            latest_end = max(latest_end, n.end_time)
        pitches = sorted(n.pitch for n in group)
        median = (pitches[(len(pitches) - 1) // 2] + pitches[len(pitches) // 2]) / 2
        out.append(TrackSummary(instrument, names.get(instrument, ""), group[0].program, len(group), median,
                                overlaps / len(group)))
    return out


def choose_melody_track(tracks: list[TrackSummary]) -> tuple[TrackSummary, str]:
    """The track most likely to carry the melody, and why. The score, in order:
    1. a track named like a melody (soprano, melody, vocal, voice, lead, tune, solo...) wins; among several, the
       higher one;
    2. otherwise bass-range tracks (median pitch below G3, or named bass) are set aside, and so are polyphonic ones
       (more than 10% of onsets inside another note), unless that leaves nothing;
    3. the highest-sounding of the rest (median pitch); ties go to more notes, then the lower instrument index.
    """
    def word_in(name, words):
        return any(w in re.split(r"[^a-z]+", name.lower()) or name.lower().startswith(w) for w in words)

    def highest(candidates):
        return max(candidates, key=lambda t: (t.median_pitch, t.num_notes, -t.instrument))

    if len(tracks) == 1:
        return tracks[0], "the only pitched track"
    named = [t for t in tracks if word_in(t.name, MELODY_TRACK_WORDS)]
    if named:
        return highest(named), "named like a melody track"
    pool = [t for t in tracks if t.median_pitch >= BASS_RANGE_MEDIAN and not word_in(t.name, BASS_TRACK_WORDS)]
    pool = pool or tracks
    mono = [t for t in pool if t.overlap_fraction <= 0.1]
    if mono:
        return highest(mono), "the highest monophonic line"
    return highest(pool), "the highest line"


def _choose_track(ns, notes, track, program, stats, path, report):
    pitched = [n for n in notes if not n.is_drum]
    if not notes:
        raise MelodyError("no_notes", path=path)
    if not pitched:
        raise MelodyError("drums_only", "only drum notes", path=path)
    if program is not None:
        pitched = [n for n in pitched if n.program == program]
        if not pitched:
            raise MelodyError("track_not_found", f"no notes with program {program}", path=path)
    names = {info.instrument: info.name for info in getattr(ns, "instrument_infos", ())}
    tracks = summarize_tracks(pitched, names)
    if track is not None:
        chosen = [t for t in tracks if t.instrument == track]
        if not chosen:
            raise MelodyError("track_not_found", f"no notes on instrument {track} (instruments with notes: "
                              f"{[t.instrument for t in tracks]})", path=path)
        chosen, why = chosen[0], "asked for with --track"
    elif program is not None and len(tracks) == 1:
        chosen, why = tracks[0], "asked for with --program"
    else:
        chosen, why = choose_melody_track(tracks)
    if len(tracks) > 1:
        stats["other_tracks_ignored"] += len(tracks) - 1
    if report is not None and len(tracks) > 1:
        others = [t.describe() for t in tracks if t is not chosen]
        text = f"melody from track {chosen.describe()}: {why}"
        if others:
            text += f"; other tracks: {', '.join(others)}; pick one with --track=N"
        if text not in report:
            report.append(text)
    return [n for n in pitched if n.instrument == chosen.instrument]


def _resolve_polyphony(qnotes, policy: str, stats, path, seconds_per_step: float):
    """Monophonic (start, end, pitch) list: at each onset the highest (or lowest) note; a later onset cuts it.

    This is the skyline algorithm of Uitdenbogerd and Zobel; `reject` raises on the first overlap instead.
    """
    sign = -1 if policy in ("highest", "reject") else 1
    ordered = sorted(qnotes, key=lambda n: (n[0], sign * n[2]))
    out: list[list[int]] = []
    for start, end, pitch in ordered:
        if out and start < out[-1][1]:
            if policy == "reject":
                raise MelodyError("polyphony_rejected",
                                  f"{'notes start together' if start == out[-1][0] else '2 notes overlap'} at "
                                  f"{start * seconds_per_step:.2f} s (policy=reject)", path=path)
            stats["polyphony_resolved"] += 1
            prev = out[-1]
            if start == prev[0]:
                continue  # same onset: the first in `ordered` is already the highest (or lowest)
            prev[1] = start  # skyline: every new onset is heard; it cuts the note still held
        out.append([start, end, pitch])
    return out
