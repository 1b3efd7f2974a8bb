"""The folk set with each tune's bar lines where its ABC source has them, for benchmarks that ask what bar alignment
changes.

    python scripts/align_folk_pickups.py --output_dir=runs/aligned/folk

The folk MIDI files were written by music21 from O'Neill's ABC (music21's corpus `oneills1850`); a tune that opens
with a pickup (an anacrusis) starts its first note at time 0, so a MIDI reader puts a bar line there and every bar
line after it is off by the pickup. MIDI has no bar lines to say otherwise. This script reads each tune's first
measure from its ABC source (music21's corpus, needs the `music21` extra) and, where it is shorter than the meter's
bar, writes the file again with every note moved later by the rest of that bar (a leading rest: the pickup then ends
on the first bar line). Other files are copied unchanged; file names stay, so the held-out split is the same.
"""
from __future__ import annotations

import argparse
import json
import re
import warnings
from pathlib import Path

import mido

NAME = re.compile(r"oneills1850_(.+)_(\d+)\.mid")


def pickup_padding(opus_cache: dict, name: str) -> float:
    """Quarter notes of rest that put the tune's first bar line where its ABC source has it (0.0: no pickup)."""
    from music21 import corpus

    match = NAME.fullmatch(name)
    if not match:
        return 0.0
    book, number = match.group(1), int(match.group(2))
    if book not in opus_cache:
        opus_cache[book] = corpus.parse(f"oneills1850/{book}")
    score = opus_cache[book].getScoreByNumber(number)
    part = score.parts[0] if score.parts else score
    first = part.getElementsByClass("Measure")[0]
    bar, length = first.barDuration.quarterLength, first.duration.quarterLength
    return float(bar - length) if 0 < length < bar else 0.0


def padded(midi: mido.MidiFile, quarters: float) -> mido.MidiFile:
    """`midi` with every event but the meta events at their own times (tempo, meter, key) moved `quarters` later."""
    shift = int(round(quarters * midi.ticks_per_beat))
    for track in midi.tracks:
        now, events = 0, []
        for msg in track:
            now += msg.time
            moves = not msg.is_meta or msg.type == "end_of_track"
            events.append((now + shift if moves else now, msg))
        track.clear()
        last = 0
        for when, msg in sorted(events, key=lambda e: e[0]):
            track.append(msg.copy(time=when - last))
            last = when
    return midi


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "folk"))
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # music21's ABC parser warns on many tunes
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts, opus_cache = {"padded": 0, "unchanged": 0, "source_unreadable": 0}, {}
    for path in sorted(Path(args.input).glob("*.mid")):
        try:
            quarters = pickup_padding(opus_cache, path.name)
        except Exception:  # music21 cannot parse every tune of its own corpus: the file is copied as it is
            quarters = 0.0
            counts["source_unreadable"] += 1
        midi = mido.MidiFile(path)
        if quarters:
            midi = padded(midi, quarters)
            counts["padded"] += 1
        else:
            counts["unchanged"] += 1
        midi.save(out / path.name)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
