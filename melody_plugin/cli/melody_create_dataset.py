"""melody_create_dataset: music files -> train/eval TFRecords of token sequences, vocab.json and a report."""

from __future__ import annotations

from absl import flags

from melody_plugin.cli import flags as common

FLAGS = flags.FLAGS
common.define_input()
common.define_extraction()
common.define_progress()
common.define("string", "output_dir", None, "Folder for train.tfrecord, eval.tfrecord, vocab.json and stats.json.")
flags.mark_flag_as_required("output_dir")
common.define("boolean", "overwrite", False, "Replace the dataset files already in --output_dir.")
common.define("string", "config", "char_lstm", "Config whose data settings (grid, vocabulary) to use.")
common.define("string", "hparams", "", "Overrides of the config, e.g. 'min_token_count=3'.")
common.define("float", "eval_ratio", 0.1, "Share of files held out for evaluation (deterministic, by file name).")
common.define("integer", "steps_per_quarter", None, "Grid steps per quarter note (default 12: 16ths and triplets).")
common.define("integer", "min_token_count", None, "Tokens seen fewer times are left out of the vocabulary.")
common.define("boolean", "transpose_to_key", None, "Transpose every melody to C major / A minor.")
common.define("string", "augment_transpositions", None, "Semitone range of transposed copies, e.g. '-3:3'.")
common.define("integer", "workers", None, "Worker processes (default: one per core).")
common.define("enum", "sequence_format", "plugin", ["plugin", "magenta"],
              "Record format: plugin (int64 ids) or magenta (float one-hot inputs, int64 labels, as Magenta's "
              "get_padded_batch reads them); melody_train reads both.")


def main(argv):
    from melody_plugin.model import registry
    from melody_plugin.tokens import corpus

    corpus.check_dataset_dir(FLAGS.output_dir, FLAGS.overwrite)  # before any file is read
    config = registry.with_hparams(registry.get_config(FLAGS.config), FLAGS.hparams)
    overrides = {}
    for name in ("steps_per_quarter", "min_token_count", "transpose_to_key"):
        if FLAGS[name].value is not None:
            overrides[name] = FLAGS[name].value
    if FLAGS.polyphony_policy:
        overrides["polyphony_policy"] = FLAGS.polyphony_policy
    if FLAGS.augment_transpositions:
        lo, _, hi = FLAGS.augment_transpositions.partition(":")
        overrides["augment_transpositions"] = f"[{lo},{hi or lo}]"
    if overrides:
        config = registry.with_hparams(config, ",".join(f"{k}={v}" for k, v in overrides.items()))
    reading = corpus.Reading(FLAGS.eval_ratio, FLAGS.workers, FLAGS.track, FLAGS.program, FLAGS.progress)
    report = corpus.create_dataset(FLAGS.input, FLAGS.output_dir, config, reading, FLAGS.sequence_format)
    print(corpus.format_report(report))
    print(f"wrote {FLAGS.output_dir}/{{train,eval}}.tfrecord, vocab.json, stats.json")


def console_entry_point():
    common.run("melody_create_dataset", main, __name__)


if __name__ == "__main__":
    console_entry_point()
