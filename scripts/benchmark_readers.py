"""How many tunes and scores of music21's bundled corpus are read: note-seq alone against note-seq + music21.

    python scripts/benchmark_readers.py                # about 4 minutes on 2 cores
    python scripts/benchmark_readers.py --no-musicxml  # the ABC half only

Needs the music21 extra (its corpus is the data). The files, chosen by rule so the figures can be reproduced:
30 ABC tunebooks (Aird's Airs books 1-6, Nottingham `reelsa-c.abc`, the first 23 of Ryan's Mammoth by name) and
the 140 `.xml`/`.mxl` scores outside the `bach` and `trecento` folders. Prints, per reader, the tunes read (of the
`X:` tunes in the files), the tunes that yield a melody, the files refused whole and why tunes were lost.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from melody_plugin.errors import InputFileError, MelodyPluginError  # noqa: E402
from melody_plugin.io.abc import abc_bytes_to_text, split_abc_tunebook
from melody_plugin.io.files import read_music_file
from melody_plugin.music.extract import note_sequence_to_melodies


def corpus_files() -> tuple[list[Path], list[Path]]:
    import music21

    corpus = Path(music21.corpus.__file__).parent
    abc = (sorted((corpus / "airdsAirs").glob("*.abc")) + sorted((corpus / "nottingham-dataset").glob("*.abc"))
           + sorted((corpus / "ryansMammoth").glob("*.abc"))[:23])
    xml = sorted(p for p in corpus.rglob("*") if p.suffix in (".xml", ".mxl")
                 and p.relative_to(corpus).parts[0] not in ("bach", "trecento"))
    return abc, xml


def reason_kind(text: str) -> str:
    return text.split(": ", 1)[-1][:70]


def measure(files, reader: str) -> dict:
    start = time.perf_counter()
    read = with_melody = refused = 0
    lost = collections.Counter()
    for path in files:
        try:
            music = read_music_file(path, reader=reader)
        except InputFileError as e:
            refused += 1
            lost[reason_kind(e.reason)] += 1
            continue
        read += len(music.sequences)
        for warning in music.warnings:
            if " skipped: " in warning:
                lost[reason_kind(warning.split(" skipped: ", 1)[1])] += 1
        for ns in music.sequences:
            try:
                with_melody += bool(note_sequence_to_melodies(ns, 12).melodies)
            except MelodyPluginError:
                pass
    return {"read": read, "with_melody": with_melody, "refused_files": refused, "lost": lost,
            "seconds": time.perf_counter() - start}


def report(title: str, files, total: int, unit: str) -> None:
    print(f"{title}: {len(files)} files, {total} {unit}")
    for reader in ("note_seq", "auto"):
        r = measure(files, reader)
        name = "note-seq only" if reader == "note_seq" else "note-seq + music21"
        print(f"  {name:19s} {r['read']:5d} of {total} {unit} read, {r['with_melody']} with a melody; "
              f"{r['refused_files']} files refused whole; {r['seconds']:.0f} s")
        for reason, n in r["lost"].most_common(8):
            print(f"      {n:4d} x {reason}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-musicxml", action="store_true", help="measure the ABC tunebooks only")
    args = parser.parse_args()
    abc, xml = corpus_files()
    tunes = sum(len(split_abc_tunebook(abc_bytes_to_text(p, p.read_bytes())[0])) for p in abc)
    report("ABC tunebooks", abc, tunes, "tunes")
    if not args.no_musicxml:
        report("MusicXML scores", xml, len(xml), "scores")


if __name__ == "__main__":
    main()
