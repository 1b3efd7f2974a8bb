"""Generations -> files: one MIDI (or ABC, MusicXML) per output, a JSON sidecar, and PNG/WAV/score renders.

Entry point: `write_generations(generations, output_dir, prefix, ...) -> list[Path]`. File names never overwrite
an existing file unless `overwrite` is set; every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import re
from pathlib import Path

from melody_plugin.errors import MelodyPluginError
from melody_plugin.generate import render as render_lib
from melody_plugin.io.midi import note_sequence_to_midi_file
from melody_plugin.runtime import atomic


class OutputError(MelodyPluginError):
    """A bad output request: unknown render kinds, an output that would overwrite a user's file."""

RENDER_KINDS = ("png", "wav", "score")
FORMATS = {"mid": ".mid", "abc": ".abc", "musicxml": ".musicxml"}  # --format: the files of each melody


def parse_formats(text: str) -> tuple[str, ...]:
    """--format: "mid,abc,musicxml" -> ("mid", "abc", "musicxml"); at least one."""
    kinds = tuple(dict.fromkeys(k.strip().lower() for k in (text or "").split(",") if k.strip()))
    bad = [k for k in kinds if k not in FORMATS]
    if bad or not kinds:
        raise OutputError(f"--format: {'unknown format(s) ' + ', '.join(bad) if bad else 'no format given'}; "
                          f"choose from {', '.join(FORMATS)}")
    return kinds


def parse_render(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip().lower() for k in (text or "").split(",") if k.strip())
    bad = [k for k in kinds if k not in RENDER_KINDS]
    if bad:
        raise OutputError(f"--render: unknown kind(s) {', '.join(bad)}; choose from {', '.join(RENDER_KINDS)}")
    if "score" in kinds:  # before any work: verovio is an extra
        _notation().score.require()
    return kinds


def _notation():
    """notation/ (the ABC, MusicXML and verovio score writers), imported only when --format or --render asks."""
    from melody_plugin import notation
    from melody_plugin.notation import abc_out, musicxml_out, score  # noqa: F401 (loads them as attributes)

    return notation


def _free_index(output_dir: Path, prefix: str, count: int) -> int:
    """First index from which `count` consecutive names are all unused (so no output overwrites another)."""
    used = set()
    pattern = re.compile(re.escape(prefix) + r"_(\d+)\.")
    for p in output_dir.glob(f"{prefix}_*"):
        m = pattern.match(p.name)
        if m:
            used.add(int(m.group(1)))
    return max(used, default=0) + 1


def write_generations(generations, output_dir, prefix: str = "melody", overwrite: bool = False,
                      render=(), sidecar: dict | None = None, formats=("mid",)) -> list[Path]:
    """Writes each generation as PREFIX_NNN.mid (+ .json, and renders when asked). Returns each first-format path.

    `formats` picks the files: "mid", "abc", "musicxml" (the paths returned are of the first); `render` adds
    "png" (piano roll), "wav" and "score" (sheet music: .score.svg, and .score.png where cairosvg is installed).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", prefix) or "melody"
    first = 1 if overwrite else _free_index(output_dir, prefix, len(generations))
    paths = []
    for i, gen in enumerate(generations):
        # every other file is this name with_suffix: a real suffix to replace (a prefix may hold dots)
        midi_path = output_dir / f"{prefix}_{first + i:03d}.mid"
        m = gen.melody
        if "mid" in formats:
            note_sequence_to_midi_file(gen.note_sequence, midi_path)
        if "abc" in formats or "musicxml" in formats or "score" in render:
            _write_notation(gen, midi_path, formats, render)
        record = dict(sidecar or {})
        record.update({
            "midi_file": midi_path.name if "mid" in formats else None,
            "files": [midi_path.with_suffix(FORMATS[f]).name for f in formats],
            "output_index": i,
            "seed": gen.seed,
            "time_signature": list(m.time_signature),
            "qpm": m.qpm,  # at the start; the continuation plays at final_qpm
            "final_qpm": m.final_qpm,
            "tempo_changes": [[step, qpm] for step, qpm in m.tempo_changes],  # [grid step, qpm] after the start
            "key": m.key_name,
            "steps_per_quarter": m.steps_per_quarter,
            "steps_per_bar": m.steps_per_bar,
            "primer_steps": gen.primer_steps,
            "total_steps": m.total_steps,
            "total_bars": gen.total_bars,
            "bars_generated": gen.num_bars,
            "log_likelihood": round(sum(gen.log_likelihoods), 4),
            "ending": gen.ending,  # tune: ended as a tune on the last bar line; open: goes on
            # natural log of the end token after the last note (tune endings of the numpy sampler)
            "end_log_likelihood": None if gen.end_log_likelihood is None else round(gen.end_log_likelihood, 4),
            # 0-11 (C = 0): the pitch class a final-pitch model drew and was told to end on (tune endings), else None
            "final_pitch_class": gen.final_pitch_class,
            "notes": gen.continuation_notes,
            "unfilled_steps": gen.unfilled_steps,
            "primer_changes": [c.describe() for c in gen.oov_changes],
        })
        atomic.write_json(midi_path.with_suffix(".json"), record)
        if "png" in render:
            render_lib.piano_roll_png(m, midi_path.with_suffix(".png"), gen.primer_steps, title=midi_path.name)
        if "wav" in render:
            render_lib.wav_file(gen.note_sequence, midi_path.with_suffix(".wav"))
        paths.append(midi_path.with_suffix(FORMATS[formats[0]]))
    return paths


def _write_notation(gen, midi_path: Path, formats, render) -> None:
    """ABC, MusicXML and the engraved score of one generation (notation/ is imported only when asked for)."""
    notation = _notation()
    title = midi_path.stem  # the name without .mid, dots of the prefix kept
    if "abc" in formats:
        notation.abc_out.write_abc(gen.melody, midi_path.with_suffix(".abc"), title)
    if "musicxml" in formats:
        notation.musicxml_out.write_musicxml(gen.melody, midi_path.with_suffix(".musicxml"), title)
    if "score" in render:
        notation.score.write_score(gen.melody, midi_path.with_suffix(".score"), gen.primer_steps, title)
