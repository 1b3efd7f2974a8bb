"""The eval-only job: follows a training run's checkpoints and scores each on the eval data."""

from __future__ import annotations

import time

from melody_plugin.model.registry import ModelConfig
from melody_plugin.model.rundir import RunDir
from melody_plugin.runtime.quiet import import_tensorflow
from melody_plugin.tokens.batches import make_dataset
from melody_plugin.tokens.corpus import encode_all, scoring_melodies
from melody_plugin.tokens.records import EVAL_FILE, is_dataset_dir, read_split
from melody_plugin.tokens.vocab import Vocabulary
from melody_plugin.train.checkpoints import _restore
from melody_plugin.train.data import _eval_batching, _meter_inputs
from melody_plugin.train.options import TrainingError
from melody_plugin.train.report import _write_summaries
from melody_plugin.train.step import _build_trainer


def evaluate_checkpoints(run_dir, input_path=None, num_training_steps: int | None = None, timeout_s: float = 600,
                         log=print) -> dict | None:
    """The eval-only job: follows a training job's checkpoints and writes eval summaries for each new one.

    Stops when a checkpoint reaches `num_training_steps` or none arrives for `timeout_s` seconds.
    """
    tf = import_tensorflow()
    run = RunDir(run_dir)
    _wait_for_run(run, timeout_s)  # the training job may not have written its config yet
    config, vocab = run.load_config(), run.load_vocab()
    eval_seqs, eval_bars = _eval_data(run, config, vocab, input_path)
    # float32, as ever: the eval job does not take the training's mixed precision
    trainer = _build_trainer(tf, tf.distribute.get_strategy(), config, vocab, mixed_precision=False)
    eval_ds = make_dataset(eval_seqs, _eval_batching(config, drop_remainder=False),
                           _meter_inputs(config, vocab, ([], eval_bars), log)[1])
    writer = tf.summary.create_file_writer(str(run.logs_dir / "eval"))
    checkpoint = tf.train.Checkpoint(model=trainer.model, step=trainer.step_var)  # the optimizer state is not needed
    metrics = None
    for path in tf.train.checkpoints_iterator(str(run.checkpoint_dir), timeout=timeout_s):
        step = _restore(checkpoint, path, trainer)
        metrics = trainer.evaluate(eval_ds, max_batches=10_000)
        _write_summaries(tf, writer, step, metrics)
        log(f"eval step {step}: loss {metrics['loss']:.3f} bits/note {metrics['bits_per_note']:.2f} "
            f"acc {metrics['accuracy']:.3f}")
        if num_training_steps and step >= num_training_steps:
            break
    writer.close()
    return metrics


def _wait_for_run(run: RunDir, timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    while not run.exists():
        if time.time() > deadline:
            raise TrainingError(f"{run.path}: no training job appeared within {timeout_s:.0f} s")
        time.sleep(1)


def _eval_data(run: RunDir, config: ModelConfig, vocab: Vocabulary, input_path) -> tuple[list, list]:
    """The eval job's (sequences, steps_per_bar): a dataset folder's eval split, every melody of other input, or
    the run's own."""
    if input_path and is_dataset_dir(input_path):
        _, _, eval_seqs, bars = read_split(input_path, with_train=False)
    elif input_path:  # every melody of the input is evaluation data
        _, melodies = scoring_melodies(input_path, config, progress=False)
        eval_seqs, _ = encode_all(melodies, vocab)
        bars = [m.steps_per_bar for m in melodies]
    elif (run.data_dir / EVAL_FILE).is_file():
        _, _, eval_seqs, bars = read_split(run.data_dir, with_train=False)
    else:
        eval_seqs, bars = [], []
    if not eval_seqs:
        raise TrainingError(f"{run.path}: no evaluation data; pass --input or train with --eval_ratio > 0")
    return eval_seqs, bars
