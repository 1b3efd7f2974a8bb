"""melody_train: train a config into a run directory (resumes), or follow one as an eval-only job (--eval)."""

from __future__ import annotations

from absl import flags

from melody_plugin.cli import flags as common

FLAGS = flags.FLAGS
common.define_input()
common.define_run_dir(required=True)
common.define_progress()
common.define("string", "config", "char_lstm",
              "Name of a registered config (char_lstm, folk_lstm, folk_lookback, or a plugin's).")
common.define("string", "hparams", "", "Overrides, e.g. 'batch_size=64,rnn_layer_sizes=[128,128],dropout_rate=0.2'. "
              "batch_size is the GLOBAL batch size: a distributed run splits it over all replicas.")
common.define("integer", "num_training_steps", 2000, "Train until this global step (counted across resumes).")
common.define("float", "max_minutes", None, "Time budget: stop with a checkpoint (and an eval) once this many minutes "
              "have passed since the command started; run it again to resume with a new budget.")
common.define("float", "max_cpu_minutes", None, "CPU-time budget: the same, counting the CPU time this command has "
              "used (all threads, and its file-reading workers) instead of the clock; fair comparisons on a shared "
              "or busy machine.")
common.define("float", "eval_ratio", 0.1, "Share of input files held out for evaluation.")
common.define("integer", "summary_frequency", 100,
              "Steps between TensorBoard summaries, evaluations and progress lines.")
common.define("integer", "save_checkpoint_steps", 500, "Steps between checkpoints.")
common.define("integer", "num_checkpoints", 5, "Checkpoints to keep.")
common.define("integer", "seed", 0, "Random seed (weights, shuffling, dropout).")
common.define("boolean", "eval", False, "Eval-only job: follow the checkpoints of a training job on --run_dir.")
common.define("float", "eval_timeout", 600, "Eval job: stop after this many seconds without a new checkpoint.")
common.define("enum", "strategy", "auto", ["auto", "default", "one_device", "mirrored", "multi_worker", "tpu"],
              "tf.distribute strategy. auto: MirroredStrategy over several GPUs, else default. multi_worker "
              "reads TF_CONFIG.")
common.define("integer", "num_cpu_devices", 0, "Split the CPU into N logical devices (to run --strategy=mirrored "
              "with N replicas on a CPU-only machine). Also read from MELODY_PLUGIN_CPU_DEVICES.")
common.define("integer", "intra_op_threads", 0, "Threads one TensorFlow op may use (0 = auto: 1 on a CPU-only "
              "machine, where these small LSTMs train faster that way).")
common.define("integer", "inter_op_threads", 0, "TensorFlow ops run at once (0 = auto: 2 on a CPU-only machine).")


def main(argv):
    import os

    from melody_plugin.model import registry
    from melody_plugin.train.distribute import configure_cpu_devices
    from melody_plugin.train.eval_job import evaluate_checkpoints
    from melody_plugin.train.loop import train_and_evaluate

    num_cpu = FLAGS.num_cpu_devices or int(os.environ.get("MELODY_PLUGIN_CPU_DEVICES", "0") or 0)
    if num_cpu > 1:
        configure_cpu_devices(num_cpu)
    def log(*args):
        print(*args, flush=True)  # progress lines must reach a log file as they happen

    if FLAGS.eval:
        evaluate_checkpoints(FLAGS.run_dir, FLAGS.input, FLAGS.num_training_steps, FLAGS.eval_timeout, log)
        return
    config = registry.with_hparams(registry.get_config(FLAGS.config), FLAGS.hparams)
    result = train_and_evaluate(config, FLAGS.run_dir, FLAGS.input, train_options(log))
    evals = (result.metrics or {}).get("eval") or {}
    if not result.tokens_per_second and not result.budget_reached:  # at or past --num_training_steps already
        print(f"done: the run is already at step {result.step} (--num_training_steps={FLAGS.num_training_steps}); "
              f"raise --num_training_steps to train on; run dir {result.run_dir}")
        return
    print(f"done: step {result.step}, {result.tokens_per_second:.0f} tokens/s on average (with start-up, evaluation)"
          + (f", eval bits/note {evals['bits_per_note']:.3f}" if evals else "") + f"; run dir {result.run_dir}")


def train_options(log):
    """The flags' one `TrainOptions` value."""
    from melody_plugin.train.options import TrainOptions

    return TrainOptions(
        num_training_steps=FLAGS.num_training_steps, eval_ratio=FLAGS.eval_ratio,
        summary_frequency=FLAGS.summary_frequency, save_checkpoint_steps=FLAGS.save_checkpoint_steps,
        num_checkpoints=FLAGS.num_checkpoints, seed=FLAGS.seed, strategy=FLAGS.strategy,
        threads=(FLAGS.intra_op_threads, FLAGS.inter_op_threads), progress=FLAGS.progress,
        max_minutes=FLAGS.max_minutes, max_cpu_minutes=FLAGS.max_cpu_minutes, log=log)


def console_entry_point():
    common.run("melody_train", main, __name__)


if __name__ == "__main__":
    console_entry_point()
