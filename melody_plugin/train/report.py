"""What training says: progress lines, TensorBoard summaries, metrics.jsonl and the training curve."""

from __future__ import annotations

import json
import time

from tqdm import tqdm

from melody_plugin.runtime.quiet import import_keras
from melody_plugin.generate import render
from melody_plugin.model.rundir import RunDir
from melody_plugin.train.options import TrainOptions
from melody_plugin.train.step import _inner, _Trainer, summarize


def _write_summaries(tf, writer, step: int, metrics: dict) -> None:
    if writer is None:
        return
    with writer.as_default(step=step):
        for name, value in metrics.items():
            tf.summary.scalar(name, value)
    writer.flush()


class _Report:
    """TensorBoard summaries, metrics.jsonl (chief only), the progress bar and the progress line."""

    def __init__(self, trainer: _Trainer, run: RunDir, chief: bool, opts: TrainOptions):
        tf = trainer.tf
        self.trainer, self.run, self.chief, self.opts = trainer, run, chief, opts
        self.writers = {k: tf.summary.create_file_writer(str(run.logs_dir / k)) for k in ("train", "eval")} \
            if chief else {}
        self.bar = None
        self.tokens_seen = 0.0  # targets trained on in this process (lanes: padding not counted)
        self._reset()

    def _reset(self) -> None:
        self.sums, self.tokens, self.interval_start = {}, 0.0, time.perf_counter()

    def start(self, step: int) -> None:
        """Opens the progress bar at `step` and starts the first interval."""
        self.bar = _progress_bar(self.opts.progress, step, self.opts.num_training_steps)
        self._reset()

    def add(self, batch: dict, num_steps: int) -> None:
        for k, v in batch.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.tokens += batch["tokens"]
        self.tokens_seen += batch["tokens"]
        self.bar.update(num_steps)

    def summary(self, step: int, eval_ds) -> dict:
        """Writes the interval's metrics, evaluates, writes the progress line; returns {"train": ..., "eval": ...}."""
        keras = import_keras()

        tf = self.trainer.tf
        metrics = summarize(self.sums)
        metrics["tokens_per_second"] = self.tokens / max(time.perf_counter() - self.interval_start, 1e-9)
        metrics["learning_rate"] = float(keras.ops.convert_to_numpy(_inner(self.trainer.optimizer).learning_rate))
        _write_summaries(tf, self.writers.get("train"), step, metrics)
        eval_metrics = self.trainer.evaluate(eval_ds)
        if eval_metrics:
            _write_summaries(tf, self.writers.get("eval"), step, eval_metrics)
        if self.chief:
            _append_metrics(self.run, step, metrics, eval_metrics)
        self.bar.set_postfix_str(f"loss {metrics['loss']:.3f}, {metrics['tokens_per_second']:.0f} tok/s")
        if self.bar.disable:
            self.opts.log(_progress_line(step, self.opts.num_training_steps, metrics, eval_metrics))
        self._reset()
        return {"train": metrics, "eval": eval_metrics}

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        for w in self.writers.values():
            w.close()


def _progress_line(step: int, total: int, metrics: dict, eval_metrics: dict | None) -> str:
    return (f"step {step}/{total} loss {metrics['loss']:.3f} "
            f"bits/note {metrics['bits_per_note']:.2f} acc {metrics['accuracy']:.3f}"
            + (f" | eval loss {eval_metrics['loss']:.3f} bits/note {eval_metrics['bits_per_note']:.2f}"
               if eval_metrics else "")
            + f" | {metrics['tokens_per_second']:.0f} tokens/s")


def _write_curve(run: RunDir, log) -> None:
    try:
        render.training_curve(run.metrics_file, run.curve_file)
    except Exception as e:  # a missing plot must never fail a finished training
        log(f"warning: no training curve ({type(e).__name__}: {e})")


def _progress_bar(progress, initial: int, total: int):
    return tqdm(total=total, initial=initial, desc="training", unit="step",
                disable=None if progress is None else not progress, dynamic_ncols=True)


def _append_metrics(run: RunDir, step: int, train: dict, eval_: dict | None) -> None:
    # Appending one line is atomic enough for a log: a torn last line is skipped by the reader.
    with open(run.metrics_file, "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": step, "train": train, "eval": eval_}) + "\n")
