"""melody_generate: continue a primer (MIDI file or inline melody) and write MIDI that ends on a bar line."""

from __future__ import annotations

import os
import secrets
import sys
import time
from pathlib import Path

from absl import flags

from melody_plugin.cli import flags as common

FLAGS = flags.FLAGS
common.define_run_dir()
common.define_checkpoint()
common.define_extraction()
common.define("string", "bundle_file", None, "Generator bundle (.mag) to generate from, instead of --run_dir; with "
              "--save_generator_bundle, the file to write.")
common.define("boolean", "save_generator_bundle", False,
              "Write --run_dir's model as a bundle to --bundle_file and exit.")
common.define("string", "bundle_description", "", "Description stored in a saved bundle.")
common.define("string", "primer_midi", None, "MIDI (or MusicXML/ABC) file whose melody to continue.")
common.define("string", "primer_melody", None, "Inline primer, e.g. 'C4:1 D4:0.5 E4:0.5 R:1' (pitch or R : quarters).")
common.define("integer", "num_outputs", 1, "Melodies to generate (sampled together as one batch).")
common.define("integer", "num_bars", 8, "Bars to generate after the primer's last complete bar.")
common.define("float", "temperature", 1.0, "Sampling temperature; 0 = greedy.")
common.define("integer", "top_k", 0, "Sample among the k likeliest tokens (0 = off).")
common.define("float", "top_p", 1.0, "Nucleus sampling: the smallest set of tokens with this much probability.")
common.define("integer", "beam_size", 1, "Beams kept per output (beam search scored by log-likelihood).")
common.define("integer", "branch_factor", 1, "Samples drawn from each beam per iteration.")
common.define("integer", "steps_per_iteration", 1, "Tokens sampled per beam-search iteration.")
common.define("float", "repetition", 0.0, "Repetition prior: added to the log-probability of the note (or rest) "
              "that began at the same point --repetition_bars bars earlier, primer included. > 0: more repetition "
              "(about 2-4 repeats often; 20 copies the bars), < 0: more variation, 0: the model alone.")
common.define("integer", "repetition_bars", 2, "How many bars back --repetition looks (2: a folk tune's two-bar "
              "phrase).")
common.define("enum", "ending", None, ["tune", "open"], "tune: end as a tune on the last bar line (the model is "
              "told the bars left and ends there; needs a model with an end token, such as the shipped one); open: "
              "the melody goes on past the last bar (a continuation). Default: tune without a primer when the model "
              "has an end token, else open.")
common.define("integer", "seed", None, "Random seed; the same seed and inputs give the same MIDI bytes. "
              "Default: a fresh one, recorded in the sidecar JSON.")
common.define("float", "qpm", None, "Tempo of the output (default: the primer's, or 120).")
common.define("string", "time_signature", "4/4", "Meter when there is no primer, e.g. 6/8.")
common.define("string", "output_dir", "generated", "Folder for the MIDI files and their JSON sidecars.")
common.define("boolean", "continuation_only", False, "Write only the new notes, not the primer.")
common.define("boolean", "overwrite", False, "Reuse output names from 001 even if files exist; with "
              "--save_generator_bundle, replace an existing --bundle_file.")
common.define("string", "key", None, "Only notes of this scale: TONIC:MODE, e.g. D:dorian, A:minor, G:major. "
              "Without a primer, a model trained in one key (transpose_to_key, as folk_lookback) writes in this key "
              "and mode: tunes in the relative major / minor are drawn again.")
common.define("string", "scale", None, "Only these pitch classes, e.g. '0,2,4,7,9' or 'D,E,F#,A,B'.")
common.define("string", "pitch_range", None, "Only pitches in LOW:HIGH (MIDI numbers), e.g. 55:84.")
common.define("enum", "sampler", "numpy", ["numpy", "tf"], "numpy: the sampling loop in numpy (no TensorFlow "
              "import, starts in a second, beam search); tf: one compiled TensorFlow loop for the whole batch.")
common.define("string", "render", "", "Also write png (piano roll), wav (synthesized audio) and/or score (sheet "
              "music as .score.svg, and .score.png with cairosvg; needs the [notation] extra), e.g. png,wav,score.")
common.define("string", "format", "mid", "Files of each melody: mid, abc and/or musicxml, e.g. mid,abc,musicxml.")


_ENDINGS = {"tune": "each ends as a tune", "open": "open ending"}


def _save_bundle():
    if not FLAGS.bundle_file:
        common.fail("melody_generate", "--save_generator_bundle needs --bundle_file")
    if not FLAGS.run_dir:  # never bundle the shipped model by accident
        common.fail("melody_generate", "--save_generator_bundle needs --run_dir (the model to bundle)")
    from melody_plugin.generate.generator import MelodyGenerator

    gen = MelodyGenerator.load(FLAGS.run_dir)
    problem = common.file_problem("bundle_file", FLAGS.bundle_file)
    if problem:
        common.fail("melody_generate", problem)
    if os.path.lexists(FLAGS.bundle_file) and not FLAGS.overwrite:  # a file the user has: replaced only if asked
        common.fail("melody_generate", f"--bundle_file={FLAGS.bundle_file}: already exists; pass --overwrite to "
                    "replace it, or name another file")
    gen.save_bundle(FLAGS.bundle_file, FLAGS.bundle_description)
    print(f"wrote bundle {FLAGS.bundle_file} ({gen.config.name}, {len(gen.vocab)} tokens)")


def _primer(gen, meter, policy, key):
    """The primer the flags name (a file, a text melody, or none: an empty bar line in `key`, --key's) and the output
    names' prefix."""
    if FLAGS.primer_midi:
        primer, warnings = gen.load_primer(FLAGS.primer_midi, policy, FLAGS.track, FLAGS.program)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return (primer.with_tempo(FLAGS.qpm) if FLAGS.qpm else primer), f"{Path(FLAGS.primer_midi).stem}_cont"
    if FLAGS.primer_melody:
        return gen.primer_from_text(FLAGS.primer_melody, meter, FLAGS.qpm), "melody"
    return gen.empty_primer(meter, FLAGS.qpm, key), "melody"


def _in_mode(gen, primer, sampling, constraints):
    """`generate_in_mode`'s outputs; a warning when too few of them came out in the mode asked for."""
    generations, in_mode = gen.generate_in_mode(primer, FLAGS.num_bars, FLAGS.num_outputs, sampling, constraints)
    if in_mode < len(generations):
        asked = FLAGS.key or FLAGS.scale
        print(f"warning: {len(generations) - in_mode} of {len(generations)} outputs are in "
              f"{generations[-1].melody.key_name}, not in the {'minor' if primer.minor else 'major'} mode of {asked}: "
              "the model chose that mode in every draw", file=sys.stderr)
    return generations


def _read_scale(sampler_lib):
    """(key, pitch classes) of --key or --scale: (None, None) without either, key None for a list of pitch
    classes; a bad one stops here with its flag named."""
    if FLAGS.key is not None and ":" not in FLAGS.key:
        common.fail("melody_generate", f"--key={FLAGS.key!r}: give TONIC:MODE, e.g. D:major or E:dorian "
                    "(--scale takes a list of pitch classes)")
    flag, text = ("--key", FLAGS.key) if FLAGS.key is not None else ("--scale", FLAGS.scale)
    try:
        return sampler_lib.scale_key(text), (sampler_lib.scale_pitch_classes(text) if text else None)
    except sampler_lib.SamplingError as e:
        common.fail("melody_generate", f"{flag}={text!r}: {e}")


def _warn_primer_outside(primer, share: float) -> None:
    """A warning when more than a fifth (`share`) of the primer's note time is outside the scale the continuation
    keeps to."""
    if share > 0.2:
        scale_flag = "--key" if FLAGS.key else "--scale"
        print(f"warning: {share:.0%} of the primer's note time is outside {scale_flag}={FLAGS.key or FLAGS.scale}; "
              f"the continuation keeps to that scale, the key signature stays the primer's ({primer.key_name})",
              file=sys.stderr)


def _sidecar(gen, generations, policy) -> dict:
    """What the sidecar JSON records: what was used, not what was typed (a primer's meter wins over
    --time_signature)."""
    num, den = generations[0].melody.time_signature
    sidecar = {
        "model": gen.source, "model_step": gen.step, "config": gen.config.to_json(),
        "primer_midi": FLAGS.primer_midi, "primer_melody": FLAGS.primer_melody, "command": " ".join(sys.argv),
        "flags": {name: FLAGS[name].value for name in (
            "num_outputs", "num_bars", "temperature", "top_k", "top_p", "beam_size", "branch_factor",
            "steps_per_iteration", "repetition", "repetition_bars", "qpm", "time_signature", "continuation_only",
            "key", "scale", "pitch_range", "polyphony_policy", "track", "program", "sampler", "ending")},
    }
    sidecar["flags"]["ending"] = generations[0].ending  # as resolved: tune or open
    sidecar["flags"].update(time_signature=f"{num}/{den}", polyphony_policy=policy)
    return sidecar


def main(argv):
    from melody_plugin.generate import outputs
    from melody_plugin.generate.generator import MelodyGenerator
    from melody_plugin.generate import sampler as sampler_lib
    from melody_plugin.generate.sampler import Constraints, SamplingOptions
    from melody_plugin.music import melody as melody_lib
    from melody_plugin.music.key import outside_share

    start = time.perf_counter()
    if FLAGS.save_generator_bundle:
        return _save_bundle()
    if FLAGS.primer_midi and FLAGS.primer_melody:
        common.fail("melody_generate", "give --primer_midi or --primer_melody, not both")
    if FLAGS.key and FLAGS.scale:
        common.fail("melody_generate", "give --key or --scale, not both")
    key, pitch_classes = _read_scale(sampler_lib)
    constraints = Constraints.parse(scale=pitch_classes, pitch_range=FLAGS.pitch_range)
    # --- flags -> values
    render, formats = outputs.parse_render(FLAGS.render), outputs.parse_formats(FLAGS.format)
    gen = MelodyGenerator.load(FLAGS.run_dir, FLAGS.bundle_file, FLAGS.checkpoint)
    policy = FLAGS.polyphony_policy or gen.config.polyphony_policy
    meter = melody_lib.parse_time_signature(FLAGS.time_signature)
    seed = FLAGS.seed if FLAGS.seed is not None else secrets.randbelow(2**31)
    sampling = SamplingOptions(temperature=FLAGS.temperature, top_k=FLAGS.top_k, top_p=FLAGS.top_p,
                               beam_size=FLAGS.beam_size, branch_factor=FLAGS.branch_factor,
                               steps_per_iteration=FLAGS.steps_per_iteration, repetition=FLAGS.repetition,
                               repetition_bars=FLAGS.repetition_bars, seed=seed, backend=FLAGS.sampler,
                               ending=FLAGS.ending)
    primer, prefix = _primer(gen, meter, policy, key)
    _warn_primer_outside(primer, outside_share(primer.notes, pitch_classes or range(12)))
    # --- generate
    if key and not primer.notes:  # a tune from nothing in the mode asked for
        generations = _in_mode(gen, primer, sampling, constraints)
    else:
        generations = gen.generate(primer, FLAGS.num_bars, FLAGS.num_outputs, sampling, constraints,
                                   continuation_only=FLAGS.continuation_only)
    for change in generations[0].oov_changes:
        print(f"primer note changed to fit the vocabulary: {change.describe()}", file=sys.stderr)
    whole_bars = primer.total_steps // primer.steps_per_bar + FLAGS.num_bars  # primer included, as generate ends
    if FLAGS.repetition and FLAGS.repetition_bars >= whole_bars:
        print(f"warning: --repetition does nothing here: --repetition_bars={FLAGS.repetition_bars} looks back past "
              f"the primer's start from every new note ({whole_bars} bars in all)", file=sys.stderr)
    # --- write
    paths = outputs.write_generations(generations, FLAGS.output_dir, prefix, FLAGS.overwrite, render,
                                      _sidecar(gen, generations, policy), formats)
    num, den = generations[0].melody.time_signature
    melodies = "melody" if len(paths) == 1 else "melodies"
    print(f"wrote {len(paths)} {melodies} of {generations[0].total_bars} bars ({num}/{den}) to {FLAGS.output_dir}/ "
          f"in {time.perf_counter() - start:.2f} s (seed {seed}, {_ENDINGS[generations[0].ending]}"
          f"{'' if gen.step is None else f', model at step {gen.step}'}):")
    beside = [f".{k}" for k in formats[1:]] + [".json"] + [f".{k}" for k in render if k != "score"]
    if "score" in render:  # the PNG only where cairosvg is installed
        beside += [".score.svg"] + ([".score.png"] if any(p.with_suffix(".score.png").exists() for p in paths) else [])
    for p in paths:
        print(f"  {p}")
    print(f"  each with {', '.join(beside)} beside it")


def console_entry_point():
    common.run("melody_generate", main, __name__)


if __name__ == "__main__":
    console_entry_point()
