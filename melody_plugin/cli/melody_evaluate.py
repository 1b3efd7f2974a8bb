"""melody_evaluate: score whole melodies with a trained model, or generated melodies against references; prints
one JSON line.

    melody_evaluate --run_dir=runs/mine --input=held_out/             # bits/note of a model on held-out tunes
    melody_evaluate --generated=generated/ --references=refs/        # continuations against what the tunes do
    melody_evaluate --form=generated/ [--references=refs/]           # the shape of a tune: key, ending, repeats

With --generated and --references no model is loaded: each generated file is paired by name with a reference
(`tune.mid`, `tune_cont_001.mid`, `tune_cont_002.mid`... all score against refs/tune.mid), and the pitch-class,
interval and note-duration histogram overlaps (0..1) and notes per bar are averaged per reference, then over
references. Files on one side only, or unreadable, are listed and counted, not fatal.

With --form no model is loaded either: each file's melody is measured on its own (does it end on the tonic of
its Krumhansl-Schmuckler key, on a note of a beat or longer; what share of its notes replay those 2, 4 and 8 bars
back; its length in bars), averaged over the folder, and beside the same figures of --references when given.
"""

from __future__ import annotations

from absl import flags

from melody_plugin.cli import flags as common

FLAGS = flags.FLAGS
common.define_input()
common.define_run_dir()
common.define_progress()
common.define_checkpoint()
common.define("string", "bundle_file", None, "Score with a generator bundle instead of a run dir.")
common.define("string", "generated", None, "Folder of generated melodies to score against --references (no model "
              "is used). Files pair by name: tune.mid or tune_cont_NNN.mid with the reference tune.mid.")
common.define("string", "references", None, "Folder of reference melodies (what each tune really does) for "
              "--generated, or to measure beside --form.")
common.define("string", "form", None, "Folder of melodies to measure for the shape of a tune (tonic and long "
              "endings, bars repeated 2, 4 and 8 bars later), beside --references when given (no model is used).")
common.define("integer", "skip_bars", 0, "With --generated: bars dropped from the start of each generated melody "
              "first, e.g. the primer's when melody_generate ran without --continuation_only.")


def main(argv):
    import json

    from melody_plugin.evaluate import scoring

    if FLAGS.form:
        if FLAGS.generated or FLAGS.input or FLAGS.run_dir or FLAGS.bundle_file or FLAGS.skip_bars:
            common.fail("melody_evaluate", "--form measures files on their own (beside --references if given); "
                        "drop --generated, --input, --run_dir, --bundle_file and --skip_bars")
        from melody_plugin.evaluate import form

        scores = form.evaluate_form(FLAGS.form, FLAGS.references)
    elif FLAGS.generated or FLAGS.references:
        if not (FLAGS.generated and FLAGS.references):
            common.fail("melody_evaluate", "--generated and --references go together")
        if FLAGS.input or FLAGS.run_dir or FLAGS.bundle_file:
            common.fail("melody_evaluate", "--generated/--references score files against files; drop --input, "
                        "--run_dir and --bundle_file")
        scores = scoring.evaluate_continuations(FLAGS.generated, FLAGS.references, FLAGS.skip_bars)
    else:
        from melody_plugin.generate.generator import MelodyGenerator

        if FLAGS.run_dir and not FLAGS.bundle_file:
            generator = MelodyGenerator.from_run_dir(FLAGS.run_dir, FLAGS.checkpoint)
        else:
            generator = MelodyGenerator.load(FLAGS.run_dir, FLAGS.bundle_file)
        scores = scoring.evaluate_input(generator, FLAGS.input, FLAGS.progress)
    print(json.dumps(_rounded(scores)))


def _rounded(value):
    """Floats to 4 places, inside dicts and lists too: one short JSON line."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def console_entry_point():
    common.run("melody_evaluate", main, __name__)


if __name__ == "__main__":
    console_entry_point()
