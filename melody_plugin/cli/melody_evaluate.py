"""melody_evaluate: score whole melodies with a trained model and print one JSON line."""

from __future__ import annotations

from absl import flags

from melody_plugin.cli import flags as common

FLAGS = flags.FLAGS
common.define_input()
common.define_run_dir()
common.define_progress()
common.define_checkpoint()
common.define("string", "bundle_file", None, "Score with a generator bundle instead of a run dir.")


def main(argv):
    import json

    from melody_plugin import evaluate
    from melody_plugin.generator import MelodyGenerator

    if FLAGS.run_dir and not FLAGS.bundle_file:
        generator = MelodyGenerator.from_run_dir(FLAGS.run_dir, FLAGS.checkpoint)
    else:
        generator = MelodyGenerator.load(FLAGS.run_dir, FLAGS.bundle_file)
    scores = evaluate.evaluate_input(generator, FLAGS.input, FLAGS.progress)
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in scores.items()}))


def console_entry_point():
    common.run("melody_evaluate", main, __name__)


if __name__ == "__main__":
    console_entry_point()
