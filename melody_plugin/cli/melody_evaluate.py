"""melody_evaluate: score whole melodies with a trained model, or generated melodies against references; prints
one JSON line.

    melody_evaluate --run_dir=runs/mine --input=held_out/             # bits/note of a model on held-out tunes
    melody_evaluate --generated=generated/ --references=refs/        # continuations against what the tunes do

With --generated and --references no model is loaded: each generated file is paired by name with a reference
(`tune.mid`, `tune_cont_001.mid`, `tune_cont_002.mid`... all score against refs/tune.mid), and the pitch-class,
interval and note-duration histogram overlaps (0..1) and notes per bar are averaged per reference, then over
references. Files on one side only, or unreadable, are listed and counted, not fatal.
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
              "--generated.")
common.define("integer", "skip_bars", 0, "With --generated: bars dropped from the start of each generated melody "
              "first, e.g. the primer's when melody_generate ran without --continuation_only.")


def main(argv):
    import json

    from melody_plugin.evaluate import scoring

    if FLAGS.generated or FLAGS.references:
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
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in scores.items()}))


def console_entry_point():
    common.run("melody_evaluate", main, __name__)


if __name__ == "__main__":
    console_entry_point()
