"""Writes melody_plugin/data/examples/seed.mid: the first 4 bars of a 6/8 jig from the folk data.

Reproducible: python scripts/make_example_primer.py [--folk ../shared/data/folk]
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from melody_plugin.io.files import read_music_file
from melody_plugin.io.midi import note_sequence_to_midi_file
from melody_plugin.music import extract as melody_lib


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folk", default=str(ROOT.parent / "shared" / "data" / "folk"))
    parser.add_argument("--bars", type=int, default=4)
    args = parser.parse_args()
    for path in sorted(Path(args.folk).glob("*.mid")):
        m = melody_lib.note_sequence_to_melody(read_music_file(path).sequences[0])
        if m.time_signature != (6, 8) or m.num_bars < 16:
            continue
        notes, steps = [], 0
        for n in m.notes:
            if steps + n.duration_steps > args.bars * m.steps_per_bar:
                break
            notes.append(n)
            steps += n.duration_steps
        primer = m.with_notes(notes)
        out = ROOT / "melody_plugin" / "data" / "examples" / "seed.mid"
        note_sequence_to_midi_file(melody_lib.melody_to_note_sequence(primer), out)
        print(f"wrote {out} from {path.name}: {primer.num_bars:g} bars of {m.time_signature}, {m.key_name}")
        return


if __name__ == "__main__":
    main()
