"""melody_export: write a run dir's model as a TensorFlow SavedModel (TF Serving / TFLite)."""

from __future__ import annotations

from absl import flags

from melody_plugin.cli import flags as common

FLAGS = flags.FLAGS
common.define_run_dir()
common.define("string", "bundle_file", None, "Export a generator bundle instead of a run dir.")
common.define("string", "saved_model_dir", None, "Folder to write the SavedModel to.")
flags.mark_flag_as_required("saved_model_dir")
common.define("boolean", "overwrite", False, "Replace an existing --saved_model_dir.")


def main(argv):
    from melody_plugin.generate.export import export_saved_model
    from melody_plugin.generate.generator import MelodyGenerator

    gen = MelodyGenerator.load(FLAGS.run_dir, FLAGS.bundle_file)
    path = export_saved_model(gen, FLAGS.saved_model_dir, FLAGS.overwrite)
    print(f"wrote SavedModel {path} (signatures: serving_default = continue a melody by N grid steps, logits)")


def console_entry_point():
    common.run("melody_export", main, __name__)


if __name__ == "__main__":
    console_entry_point()
