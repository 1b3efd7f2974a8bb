"""Does a continuation sound like the rest of the tune? Models against the copy-the-primer baseline, in one run.

    python scripts/benchmark_continuation.py --max_tunes=60                       # the shipped model vs the copy
    python scripts/benchmark_continuation.py --run_dir=folk=runs/folk --output_json=cont.json

On the folk set's held-out tunes (the file-name split training uses: split_key / is_eval at
--eval_ratio, sorted by name, the first melody of each file), the primer is a tune's first --primer_bars bars
and the reference is what the tune really does in the next --reference_bars bars (continuation.py cuts them at
the tune's own bar lines). Every model continues each primer --num_outputs times for exactly --reference_bars
bars (seeded: --seed plus the tune's index); the copy baseline plays the primer's bars again. Each continuation
is compared with the reference: overlap (0..1) of the pitch-class, melodic-interval and note-duration
histograms, notes per bar against the reference's, and how much of it replays the primer: the share of its notes
that repeat the note begun --primer_bars bars earlier (1 for the copy; the reference's own share says how much the
real tunes repeat). Figures are averaged per tune, then over tunes. Prints a Markdown table; --output_json writes
the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from melody_plugin.errors import MelodyPluginError  # noqa: E402
from melody_plugin.evaluate import continuation
from melody_plugin.generate.generator import MelodyGenerator
from melody_plugin.generate.sampler import SamplingOptions
from melody_plugin.io.inputs import input_files
from melody_plugin.model import registry
from melody_plugin.runtime import atomic
from melody_plugin.runtime.quiet import quiet_third_party
from melody_plugin.tokens.corpus import Reading, collect_melodies, is_eval, split_key

COLUMNS = (("pitch_class_overlap", "pitch-class overlap"), ("interval_overlap", "interval overlap"),
           ("duration_overlap", "duration overlap"), ("notes_per_bar", "notes/bar"),
           ("notes_per_bar_error", "abs notes/bar error"), ("repeated_share", "notes repeated"),
           ("seconds_per_melody", "s/melody"))
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
        tunes.append({"name": path.name, "primer": primer, "reference": reference})
    return tunes, {"held_out_files": len(files), "files_read": read, "skipped": skipped}


def score_tune(tune: dict, continuations: list) -> dict:
    """The continuations of one tune against its reference (`continuation.score_tune`), and the share of their
    notes (and of the reference's) that repeat the note begun a primer's length earlier."""
    primer = tune["primer"]
    bars_back = primer.total_steps // primer.steps_per_bar

    def repeated(melody):
        return continuation.repeated_share(continuation.joined(primer, melody), primer.total_steps, bars_back)

    scores = continuation.score_tune(continuations, tune["reference"])
    scores["repeated_share"] = sum(repeated(c) for c in continuations) / len(continuations)
    scores["reference_repeated_share"] = repeated(tune["reference"])
    return scores


def score_copy_baseline(tunes, reference_bars: int) -> dict:
    start = time.perf_counter()
    scores = [score_tune(t, [continuation.copy_primer(t["primer"], reference_bars)]) for t in tunes]
    result = continuation.average(scores)
    result["seconds_per_melody"] = (time.perf_counter() - start) / len(tunes)
    return result


def score_model(generator: MelodyGenerator, tunes, reference_bars: int, num_outputs: int,
                sampling: SamplingOptions) -> dict:
    """The model's continuations of every tune's primer, scored against its reference (tune i: seed + i)."""
    tune_scores, seconds = [], 0.0
    for i, tune in enumerate(tunes):
        start = time.perf_counter()
        generations = generator.generate(tune["primer"], num_bars=reference_bars, num_outputs=num_outputs,
                                         sampling=dataclasses.replace(sampling, seed=sampling.seed + i),
                                         continuation_only=True)
        seconds += time.perf_counter() - start
        spb = tune["primer"].steps_per_bar
        for g in generations:  # the primer is whole bars: no leading rest, exactly reference_bars bars
            assert g.primer_steps == 0 and g.melody.total_steps == reference_bars * spb, tune["name"]
        tune_scores.append(score_tune(tune, [g.melody for g in generations]))
    result = continuation.average(tune_scores)
    result["seconds_per_melody"] = seconds / (len(tunes) * num_outputs)
    return result


def markdown_table(rows: dict[str, dict]) -> str:
    first = next(iter(rows.values()))
    references = {"notes_per_bar": f"reference {first['reference_notes_per_bar']:.2f}",
                  "repeated_share": f"reference {first['reference_repeated_share']:.3f}"}
    header = [f"{name} ({references[key]})" if key in references else name for key, name in COLUMNS]
    lines = ["| | " + " | ".join(header) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for label, figures in rows.items():
        cells = [f"{figures[key]:.4f}" if key == "seconds_per_melody" else f"{figures[key]:.3f}"
                 for key, _ in COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
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


def check_arguments(parser: argparse.ArgumentParser, args) -> tuple[list[float], list[tuple[str, str | None]]]:
    """Every argument checked before the tunes are read (parser.error: one line, exit 2).

    Returns (the repetition strengths, the [(name, run dir or None for the shipped model)] to score).
    """
    try:
        repetitions = [float(r) for r in args.repetition.split(",")]
    except ValueError:
        parser.error(f"--repetition must be numbers separated by commas, got {args.repetition!r}")
    problems = [f"--{name} must be >= 1, got {value}" for name, value in (
        ("primer_bars", args.primer_bars), ("reference_bars", args.reference_bars),
        ("num_outputs", args.num_outputs), ("repetition_bars", args.repetition_bars),
        ("max_tunes", 1 if args.max_tunes is None else args.max_tunes)) if value < 1]
    if not 0.0 < args.eval_ratio < 1.0:
        problems.append(f"--eval_ratio must be between 0 and 1, got {args.eval_ratio}")
    for repetition in repetitions:  # the sampler's own checks (temperature >= 0, repetition in range)
        try:
            SamplingOptions(temperature=args.temperature, repetition=repetition, repetition_bars=1)
        except MelodyPluginError as e:
            problems.append(f"--{e}".replace("--repetition must", "--repetition values must"))
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
    return repetitions, models


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
    parser.add_argument("--max_tunes", type=int, default=None, help="score the first N usable held-out tunes")
    parser.add_argument("--run_dir", action="append", metavar="NAME=PATH", help="a model to score (repeatable)")
    parser.add_argument("--no_default_model", action="store_true", help="leave out the model shipped in the package")
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args()
    repetitions, models = check_arguments(parser, args)
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
              f"{args.temperature}, seed {args.seed}, repetition {args.repetition} "
              f"({args.repetition_bars} bars back)", flush=True)
        rows = {"copy the primer (baseline)": score_copy_baseline(tunes, args.reference_bars)}
        for name, generator in generators:
            for repetition in repetitions:
                label = f"{name} ({generator.config.name}, step {generator.step}" + (
                    f", repetition {repetition:g})" if repetition else ")")
                sampling = SamplingOptions(temperature=args.temperature, seed=args.seed, repetition=repetition,
                                           repetition_bars=args.repetition_bars)
                rows[label] = score_model(generator, tunes, args.reference_bars, args.num_outputs, sampling)
    except MelodyPluginError as e:
        parser.exit(2, f"benchmark_continuation: error: {e}\n")
    print(markdown_table(rows))
    if args.output_json:
        atomic.write_json(args.output_json, {
            "input": args.input, "eval_ratio": args.eval_ratio, "primer_bars": args.primer_bars,
            "reference_bars": args.reference_bars, "num_outputs": args.num_outputs,
            "temperature": args.temperature, "seed": args.seed, "repetition": repetitions,
            "repetition_bars": args.repetition_bars, "tunes": [t["name"] for t in tunes],
            "reading": reading, "models": {name: path for name, path in models}, "results": rows})
        print(f"wrote {args.output_json}")


if __name__ == "__main__":
    main()
