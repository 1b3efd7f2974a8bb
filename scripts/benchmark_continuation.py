"""Does a model continue and end melodies as real tunes do? Models, the copy baseline and the real tunes, one run.

    python scripts/benchmark_continuation.py --max_tunes=60                       # the shipped model vs the copy
    python scripts/benchmark_continuation.py --run_dir=folk=runs/folk --output_json=cont.json --output_dir=out/

On the folk set's held-out tunes (the file-name split training uses: split_key / is_eval at --eval_ratio, sorted
by name, the first melody of each file), the primer is a tune's first --primer_bars bars and the reference is what
the tune really does in the next --reference_bars bars (continuation.py cuts them at the tune's own bar lines).
Three tables, each with the real tunes as the target (matching them is the goal, not maximising a figure):

1. Continuations (--ending=open, as a tune goes on): every model continues each primer --num_outputs times for
   exactly --reference_bars bars (seeded: --seed plus the tune's index); the copy baseline plays the primer again.
   `continuation bits/note` is the model's NLL of the real bars given the primer (copying cannot game it); the
   overlaps of the pitch-class, interval and duration histograms with the reference (as before) and with the
   primer, and the share of notes repeating the note begun 2 bars earlier, for the continuations and the real ones.
2. Endings: the same continuations with --ending=tune (models without an end token: open, as they end today):
   the share whose last note is the tonic of the whole melody's key (Krumhansl-Schmuckler on duration-weighted
   pitch classes: evaluate/form.py, the same finder for real and generated melodies) and lasts at least a beat;
   the target is the real tunes' last notes.
3. Whole tunes: --tune_bars bars from nothing per model (its default ending), against the held-out tunes
   themselves: tonic and long endings, notes repeated from 2, 4 and 8 bars back over the whole tune.

`--repetition` and `--top_p` (comma-separated) score each model again at every pair of a repetition prior and a
nucleus threshold: a row each.

Tables 2 and 3 are computed from melodies read back from MIDI files written to --output_dir (a temporary folder by
default), as `melody_evaluate --form DIR` reads any folder. Prints Markdown tables; --output_json writes the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from melody_plugin.errors import MelodyPluginError  # noqa: E402
from melody_plugin.evaluate import continuation, form, scoring
from melody_plugin.generate.generator import MelodyGenerator
from melody_plugin.generate.sampler import SamplingOptions
from melody_plugin.io.inputs import input_files
from melody_plugin.io.midi import note_sequence_to_midi_file
from melody_plugin.music.extract import melody_to_note_sequence
from melody_plugin.model import registry
from melody_plugin.runtime import atomic
from melody_plugin.runtime.quiet import quiet_third_party
from melody_plugin.tokens.corpus import Reading, collect_melodies, is_eval, split_key
from melody_plugin.tokens.vocab import START, key_shift

COLUMNS = (("continuation_bits_per_note", "continuation bits/note"),
           ("pitch_class_overlap", "pitch-class overlap"), ("interval_overlap", "interval overlap"),
           ("duration_overlap", "duration overlap"), ("notes_per_bar", "notes/bar"),
           ("primer_pitch_class_overlap", "pitch-class overlap with primer"),
           ("primer_interval_overlap", "interval overlap with primer"),
           ("primer_duration_overlap", "duration overlap with primer"),
           ("primer_repeat_2", "notes repeated from 2 bars back"), ("seconds_per_melody", "s/melody"))
ENDING_COLUMNS = (("tonic_ending", "last note on the tonic"), ("long_ending", "last note >= a beat"),
                  ("count", "melodies"))
TUNE_COLUMNS = (("tonic_ending", "last note on the tonic"), ("long_ending", "last note >= a beat"),
                ("repeat_2", "repeated from 2 bars back"), ("repeat_4", "from 4 bars back"),
                ("repeat_8", "from 8 bars back"), ("bars", "bars"), ("count", "melodies"))
READ_CONFIG = "char_lstm"  # tunes are read with its extraction settings (grid, polyphony policy, min_notes)


def held_out_files(input_path, eval_ratio: float) -> list[Path]:
    """The files training holds out, in name order: the split is keyed on the file's name (split_key)."""
    quiet_third_party()
    from note_seq.protobuf import music_pb2

    return [path for path in input_files(input_path)
            if is_eval(split_key(music_pb2.NoteSequence(filename=str(path))), eval_ratio)]


def held_out_tunes(input_path, config, eval_ratio: float, primer_bars: int, reference_bars: int,
                   max_tunes: int | None) -> tuple[list[dict], dict]:
    """[{name, primer, reference}] of the held-out tunes long enough, and why the others were skipped."""
    tunes, skipped, read = [], {}, 0
    files = held_out_files(input_path, eval_ratio)
    for path in files:
        if max_tunes and len(tunes) >= max_tunes:
            break
        read += 1
        # read as training reads (same converters, config and split); the split is checked, not assumed
        found = collect_melodies(path, config, Reading(eval_ratio, workers=1, progress=False))
        result = found.results[0]
        if result.error or not found.eval:
            reason = result.error or "not held out"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        try:
            primer, reference = continuation.split_primer_reference(found.eval[0], primer_bars, reference_bars)
        except continuation.ContinuationError:
            skipped["too short"] = skipped.get("too short", 0) + 1
            continue
        tunes.append({"name": path.name, "primer": primer, "reference": reference, "whole": found.eval[0]})
    return tunes, {"held_out_files": len(files), "files_read": read, "skipped": skipped}


def relation(tune: dict, melody) -> dict:
    """A continuation of the tune's primer against the reference (`continuation.compare`) and against the primer
    (`form.form_figures`' primer figures)."""
    figures = continuation.compare(melody, tune["reference"])
    related = form.form_figures(melody, tune["primer"])
    figures.update({k: related[k] for k in ("primer_pitch_class_overlap", "primer_interval_overlap",
                                            "primer_duration_overlap", "primer_repeat_2")})
    return figures


def score_tune(tune: dict, continuations: list) -> dict:
    """The mean of `relation` over the continuations of one tune."""
    return continuation.average([relation(tune, c) for c in continuations])


def score_reference(tunes) -> dict:
    """The real continuations themselves: the target of every column."""
    result = continuation.average([score_tune(t, [t["reference"]]) for t in tunes])
    result["continuation_bits_per_note"] = None
    return result


def score_copy_baseline(tunes, reference_bars: int) -> dict:
    start = time.perf_counter()
    scores = [score_tune(t, [continuation.copy_primer(t["primer"], reference_bars)]) for t in tunes]
    result = continuation.average(scores)
    result["seconds_per_melody"] = (time.perf_counter() - start) / len(tunes)
    result["continuation_bits_per_note"] = None
    return result


def continuation_bits(generator: MelodyGenerator, tunes) -> float:
    """The model's NLL of each tune's real reference bars given its primer, in bits per reference note: the NLL of
    primer + reference less that of the primer (both from the start token, the length unknown: open countdown)."""

    def nll(melodies):
        if generator.vocab.transpose_to_key:  # the model's key, C major or A minor: each tune by its own key
            melodies = [m.transpose(key_shift(t["whole"])) for m, t in zip(melodies, tunes)]
        sequences = [[START] + generator.vocab.encode(m, map_oov=False) for m in melodies]
        features = None
        if generator.model.meter_features:
            features = [scoring.melody_features(generator.model, np.array([0] + [n.duration_steps for n in m.notes]),
                                                m.steps_per_bar) for m in melodies]
        scores = scoring.score_ids(generator.model, sequences, generator.vocab, features=features,
                                   target_pitches=[[n.pitch for n in m.notes] for m in melodies])
        return scores["bits_per_note"] * scores["notes"]

    joined = [continuation.joined(t["primer"], t["reference"]) for t in tunes]
    notes = sum(t["reference"].num_pitched for t in tunes)
    return (nll(joined) - nll([t["primer"] for t in tunes])) / max(notes, 1)


def write_midi(melodies: dict, folder: Path) -> Path:
    """Each {name: Melody} as folder/name.mid, through the package's MIDI writer; the folder is made afresh."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, melody in melodies.items():
        note_sequence_to_midi_file(melody_to_note_sequence(melody), folder / f"{name}.mid")
    return folder


def read_form(folder: Path, whole: bool = True) -> dict:
    """The form figures of a folder of MIDI files read back (`form.folder_form`), or only the ending figures."""
    figures = form.folder_form(folder)
    return figures if whole else {k: figures[k] for k in ("tonic_ending", "long_ending", "count")}


def score_model(generator: MelodyGenerator, tunes, args, sampling: SamplingOptions, out: Path) -> dict:
    """The model's open continuations of every tune's primer scored against reference and primer (tune i: seed +
    i), the same continuations ended as tunes (`ending`), and whole tunes from nothing (`tunes`)."""
    tune_scores, seconds, ended = [], 0.0, {}
    ending = "tune" if generator.vocab.end_token else "open"
    for i, tune in enumerate(tunes):
        seeded = dataclasses.replace(sampling, seed=sampling.seed + i)
        start = time.perf_counter()
        generations = generator.generate(tune["primer"], num_bars=args.reference_bars, num_outputs=args.num_outputs,
                                         sampling=dataclasses.replace(seeded, ending="open"), continuation_only=True)
        seconds += time.perf_counter() - start
        spb = tune["primer"].steps_per_bar
        for g in generations:  # the primer is whole bars: no leading rest, exactly reference_bars bars
            assert g.primer_steps == 0 and g.melody.total_steps == args.reference_bars * spb, tune["name"]
        tune_scores.append(score_tune(tune, [g.melody for g in generations]))
        for j, g in enumerate(generator.generate(tune["primer"], num_bars=args.reference_bars,
                                                 num_outputs=args.num_outputs,
                                                 sampling=dataclasses.replace(seeded, ending=ending))):
            ended[f"{i:04d}_{j}"] = g.melody
    result = continuation.average(tune_scores)
    result["seconds_per_melody"] = seconds / (len(tunes) * args.num_outputs)
    result["continuation_bits_per_note"] = continuation_bits(generator, tunes)
    whole = {}
    for i in range(len(tunes)):
        for j, g in enumerate(generator.generate(None, num_bars=args.tune_bars, num_outputs=args.num_outputs,
                                                 sampling=dataclasses.replace(sampling, seed=sampling.seed + i,
                                                                              ending=None))):
            whole[f"{i:04d}_{j}"] = g.melody
    return {"continuations": result, "ending": ending,
            "endings": read_form(write_midi(ended, out / "endings"), whole=False),
            "tunes": read_form(write_midi(whole, out / "tunes"))}


def _cell(value, key: str) -> str:
    if value is None:
        return "-"
    if key in ("count",):
        return str(value)
    return f"{value:.4f}" if key == "seconds_per_melody" else f"{value:.3f}"


def markdown_table(rows: dict[str, dict], columns) -> str:
    lines = ["| | " + " | ".join(name for _, name in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, figures in rows.items():
        lines.append(f"| {label} | " + " | ".join(_cell(figures.get(key), key) for key, _ in columns) + " |")
    return "\n".join(lines)


def parse_run_dirs(values) -> list[tuple[str, str]]:
    """NAME=PATH pairs; a bare PATH is named after its folder.

    Raises:
      ValueError: an empty name or path, or a name given twice (the table and the JSON key rows by name).
    """
    runs = []
    for value in values or ():
        name, _, path = value.partition("=") if "=" in value else (Path(value).name, "", value)
        if not name.strip() or not path:
            raise ValueError(f"--run_dir={value}: give NAME=PATH, both non-empty")
        if name in (n for n, _ in runs):
            raise ValueError(f"--run_dir: the name {name!r} is given twice; each model needs its own")
        runs.append((name, path))
    return runs


def check_arguments(parser: argparse.ArgumentParser, args) -> tuple[list[tuple[float, float]], list]:
    """Every argument checked before the tunes are read (parser.error: one line, exit 2).

    Returns ([(repetition strength, top-p)] each model is scored at, [(name, run dir or None for the shipped
    model)] to score).
    """
    values = {}
    for flag in ("repetition", "top_p"):
        try:
            values[flag] = [float(r) for r in getattr(args, flag).split(",")]
        except ValueError:
            parser.error(f"--{flag} must be numbers separated by commas, got {getattr(args, flag)!r}")
    repetitions, top_ps = values["repetition"], values["top_p"]
    problems = [f"--{name} must be >= 1, got {value}" for name, value in (
        ("primer_bars", args.primer_bars), ("reference_bars", args.reference_bars),
        ("num_outputs", args.num_outputs), ("repetition_bars", args.repetition_bars), ("tune_bars", args.tune_bars),
        ("max_tunes", 1 if args.max_tunes is None else args.max_tunes)) if value < 1]
    if not 0.0 < args.eval_ratio < 1.0:
        problems.append(f"--eval_ratio must be between 0 and 1, got {args.eval_ratio}")
    for repetition, top_p in itertools.product(repetitions, top_ps):  # the sampler's own checks
        try:
            SamplingOptions(temperature=args.temperature, repetition=repetition, repetition_bars=1, top_p=top_p)
        except MelodyPluginError as e:
            problems.append(f"--{e}".replace("--repetition must", "--repetition values must").replace(
                "--top_p must", "--top_p values must"))
            break
    if args.output_json and Path(args.output_json).is_dir():
        problems.append(f"--output_json={args.output_json} is a folder; name the JSON file to write")
    try:
        models = ([] if args.no_default_model else [("shipped model", None)]) + parse_run_dirs(args.run_dir)
    except ValueError as e:
        problems.append(str(e))
        models = []
    if not models and not problems:
        problems.append("no model to score: --no_default_model needs at least one --run_dir")
    if problems:
        parser.error("; ".join(problems))
    return list(itertools.product(repetitions, top_ps)), models


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", default=str(ROOT.parent / "shared" / "data" / "folk"))
    parser.add_argument("--eval_ratio", type=float, default=0.1, help="the split training used (default 0.1)")
    parser.add_argument("--primer_bars", type=int, default=2)
    parser.add_argument("--reference_bars", type=int, default=4)
    parser.add_argument("--num_outputs", type=int, default=4, help="continuations per tune and model")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repetition", default="0", help="repetition prior strengths to score each model at, "
                        "comma-separated (melody_generate's --repetition; default 0: the model alone)")
    parser.add_argument("--repetition_bars", type=int, default=2, help="bars the prior looks back (default 2)")
    parser.add_argument("--top_p", default="1", help="nucleus sampling thresholds to score each model at, "
                        "comma-separated (melody_generate's --top_p; default 1: off)")
    parser.add_argument("--max_tunes", type=int, default=None, help="score the first N usable held-out tunes")
    parser.add_argument("--tune_bars", type=int, default=16, help="bars of each whole tune from nothing")
    parser.add_argument("--output_dir", default=None, help="keep the MIDI files tables 2 and 3 are read from here")
    parser.add_argument("--run_dir", action="append", metavar="NAME=PATH", help="a model to score (repeatable)")
    parser.add_argument("--no_default_model", action="store_true", help="leave out the model shipped in the package")
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args()
    settings, models = check_arguments(parser, args)
    try:
        generators = [(name, MelodyGenerator.from_run_dir(path) if path else MelodyGenerator.default())
                      for name, path in models]
        config = registry.get_config(READ_CONFIG)  # the same tunes whichever models are scored
        for name, g in generators:
            if g.vocab.steps_per_quarter != config.steps_per_quarter:
                raise MelodyPluginError(f"{name}: {g.vocab.steps_per_quarter} steps per quarter; the tunes are read "
                                        f"on {READ_CONFIG}'s grid of {config.steps_per_quarter}")
        start = time.perf_counter()
        tunes, reading = held_out_tunes(args.input, config, args.eval_ratio, args.primer_bars, args.reference_bars,
                                        args.max_tunes)
        if not tunes:
            raise MelodyPluginError(f"{args.input}: no held-out tune of {args.primer_bars + args.reference_bars} "
                                    f"bars or more ({reading})")
        print(f"{len(tunes)} held-out tunes of {args.input} ({reading['files_read']} of "
              f"{reading['held_out_files']} held-out files read at eval_ratio={args.eval_ratio}; skipped: "
              f"{reading['skipped'] or 'none'}), read in "
              f"{time.perf_counter() - start:.0f} s; primer {args.primer_bars} bars, reference "
              f"{args.reference_bars} bars, {args.num_outputs} continuations per tune, temperature "
              f"{args.temperature}, top-p {args.top_p}, seed {args.seed}, repetition {args.repetition} "
              f"({args.repetition_bars} bars back)", flush=True)
        out = Path(args.output_dir or tempfile.mkdtemp(prefix="benchmark_continuation."))
        rows = {"real continuations (target)": score_reference(tunes),
                "copy the primer (baseline)": score_copy_baseline(tunes, args.reference_bars)}
        real = read_form(write_midi({f"{i:04d}": t["whole"] for i, t in enumerate(tunes)}, out / "real"))
        endings, whole = {"real tunes' endings (target)": real}, {"held-out tunes (target)": real}
        for name, generator in generators:
            for repetition, top_p in settings:
                label = (f"{name} ({generator.config.name}, step {generator.step}"
                         + (f", repetition {repetition:g}" if repetition else "")
                         + (f", top-p {top_p:g}" if top_p < 1 else "") + ")")
                sampling = SamplingOptions(temperature=args.temperature, seed=args.seed, repetition=repetition,
                                           repetition_bars=args.repetition_bars, top_p=top_p)
                folder = out / re.sub(r"[^A-Za-z0-9_.-]+", "_", label)
                result = score_model(generator, tunes, args, sampling, folder)
                rows[label] = result["continuations"]
                endings[f"{label}, ending {result['ending']}"] = result["endings"]
                whole[label] = result["tunes"]
    except MelodyPluginError as e:
        parser.exit(2, f"benchmark_continuation: error: {e}\n")
    print(f"\n### Continuations of {args.reference_bars} bars after a {args.primer_bars}-bar primer (open)\n")
    print(markdown_table(rows, COLUMNS))
    print("\n### Endings: the same continuations ended as tunes (--ending=tune where the model can)\n")
    print(markdown_table(endings, ENDING_COLUMNS))
    print(f"\n### Whole tunes: {args.tune_bars} bars from nothing\n")
    print(markdown_table(whole, TUNE_COLUMNS))
    print(f"\nMIDI files of tables 2 and 3: {out}")
    if args.output_json:
        atomic.write_json(args.output_json, {"endings": endings, "whole_tunes": whole, "tune_bars": args.tune_bars,
            "input": args.input, "eval_ratio": args.eval_ratio, "primer_bars": args.primer_bars,
            "reference_bars": args.reference_bars, "num_outputs": args.num_outputs,
            "temperature": args.temperature, "seed": args.seed, "repetition_top_p": settings,
            "repetition_bars": args.repetition_bars, "tunes": [t["name"] for t in tunes],
            "reading": reading, "models": {name: path for name, path in models}, "results": rows})
        print(f"wrote {args.output_json}")


if __name__ == "__main__":
    main()
