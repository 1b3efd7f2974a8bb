"""`train_and_evaluate(config, run_dir, input_path, options)`: the training loop, top to bottom."""

from __future__ import annotations

import contextlib
import math
import time

from melody_plugin.model.registry import ModelConfig
from melody_plugin.model.rundir import RunDir
from melody_plugin.runtime.quiet import import_tensorflow
from melody_plugin.runtime.signals import _STOP, _stops_on_signals
from melody_plugin.train.budget import _Budget
from melody_plugin.train.checkpoints import _Checkpoints
from melody_plugin.train.data import _distribute_datasets, _meter_inputs, _prepare_data, with_phrase_endings
from melody_plugin.train.distribute import _is_chief, _start_strategy
from melody_plugin.train.options import TrainingError, TrainingInterrupted, TrainOptions, TrainResult
from melody_plugin.train.report import _Report, _write_curve
from melody_plugin.train.step import _build_trainer, _Trainer


@_stops_on_signals
def train_and_evaluate(config: ModelConfig, run_dir, input_path=None,
                       options: TrainOptions | None = None) -> TrainResult:
    """Trains `config` into `run_dir` until `options.num_training_steps` (total, across resumes), evaluating as it goes.

    Re-running on the same run dir resumes from its latest checkpoint (step and optimizer state).

    Args:
      config: the model and its optimizer settings.
      run_dir: where config, vocabulary, data, checkpoints, logs and weights go.
      input_path: a dataset folder, MIDI folder/glob or TFRecord; None on a resume reuses the run dir's data.
      options: how to train (steps, frequencies, seed, strategy, ...); `TrainOptions()` when None.

    Raises:
      RunDirError: run dir in use, or made with an incompatible config or vocabulary.
      TrainingError: NaN/inf loss (the last good checkpoint is kept), no data.
      TrainingInterrupted: Ctrl-C or SIGTERM; a checkpoint was saved first.
    """
    opts = options or TrainOptions()
    tf = import_tensorflow()
    _STOP.check()  # a Ctrl-C during the import may have been swallowed there
    dist = _start_strategy(config, opts)  # threads and strategy come before any other TensorFlow op
    chief = _is_chief(dist)
    run = RunDir(run_dir)
    run.check_compatible(config)
    # Only the chief locks and writes the run dir; the other workers of a multi-worker job read it.
    with run.lock() if chief else contextlib.nullcontext():
        # --- data
        train_seqs, eval_seqs, vocab, bars = _prepare_data(run, config, input_path, opts, chief)
        train_seqs, train_bars = with_phrase_endings(config, vocab, train_seqs, bars[0], opts.log)
        bars = (train_bars, bars[1])
        resume_step = run.latest_checkpoint_step() or 0  # reseeds the shuffle: a resumed run sees new batches
        with _STOP.deferred():  # tf.data imports its parts lazily: a KeyboardInterrupt inside an import crashes it
            train_ds, eval_ds = _distribute_datasets(dist, config, train_seqs, eval_seqs, opts.seed + resume_step,
                                                     _meter_inputs(config, vocab, bars, opts.log), opts.log)
            # --- model
            trainer = _build_trainer(tf, dist, config, vocab, config.mixed_precision)
            # --- restore
            ckpts = _Checkpoints(trainer, run, opts.num_checkpoints, chief)
            resumed = ckpts.restore_latest(config.learning_rate, opts.log)
            # --- fit
            report = _Report(trainer, run, chief, opts)
            iterator = iter(train_ds)
            start_step, run_start = trainer.step, time.perf_counter()
            report.start(start_step)
            try:
                step, last_metrics, budget_reached = _fit(trainer, iterator, eval_ds, ckpts, report, opts)
                if step > start_step or not resumed:
                    ckpts.save()
            except KeyboardInterrupt:
                report.bar.close()
                step = trainer.step  # the stop lands between compiled calls: the graph's counter is the truth
                ckpts.save()
                raise TrainingInterrupted(f"interrupted at step {step}; checkpoint saved in {run.checkpoint_dir}, "
                                          "run the same command to resume") from None
            finally:
                report.close()
                ckpts.close()
        total_s = time.perf_counter() - run_start
        tokens_per_second = report.tokens_seen / max(total_s, 1e-9)
        if chief and opts.write_curve:
            _write_curve(run, opts.log)
        return TrainResult(step, last_metrics, str(run.path), tokens_per_second, dist.num_replicas_in_sync,
                           budget_reached)


def _fit(trainer: _Trainer, iterator, eval_ds, ckpts: _Checkpoints, report: _Report, opts: TrainOptions):
    """Compiled calls up to `opts.num_training_steps` or the time budget.

    Returns (the step reached, the last summary's metrics, whether the time budget stopped it).
    """
    tf = trainer.tf
    total, every_summary, every_save = opts.num_training_steps, opts.summary_frequency, opts.save_checkpoint_steps
    budget = _Budget(opts)
    step, last_metrics = trainer.step, {}
    while step < total:
        _STOP.check()
        # Run up to the next summary/checkpoint boundary in one call (at most 50 steps): fewer Python
        # round trips; a NaN is still caught before any checkpoint is written.
        n = min(total - step, every_summary - step % every_summary, every_save - step % every_save, 50)
        budget.call_starts()
        out = trainer.train_step(iterator, tf.constant(n), trainer.step_var, tf.constant(total, tf.int64),
                                 tf.constant(budget.fraction(), tf.float32)).numpy()
        step += n
        out_of_time = step < total and budget.next_call_overruns()
        batch = dict(zip(_Trainer.SUM_KEYS, (float(v) for v in out)))
        if not math.isfinite(batch["nll"]):
            kept = (f"The last good checkpoint is kept in {ckpts.run.checkpoint_dir}"
                    if ckpts.run.latest_checkpoint_step() is not None else "No checkpoint had been saved yet")
            raise TrainingError(f"loss became {batch['nll']} at step {step}; stopped. {kept}; try a lower "
                                "learning_rate (or check the --hparams that scale the loss, e.g. ending_weight)")
        report.add(batch, n)
        if step % every_summary == 0 or step == total or out_of_time:
            last_metrics = report.summary(step, eval_ds)
            ckpts.keep_if_best(step, last_metrics["eval"])
        if out_of_time:  # the caller saves the checkpoint
            report.bar.close()
            opts.log(f"{budget.describe()} reached at step {step}; run the same command to resume (without --input "
                     "it resumes on the run's own data, without reading the files again)")
            return step, last_metrics, True
        if step % every_save == 0 and step < total:
            ckpts.save()
    return step, last_metrics, False
