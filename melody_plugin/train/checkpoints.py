"""Checkpoints of a run: the latest kept, the best by eval bits/note, the numpy weights for generation."""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

from melody_plugin.model.numpy_model import keras_to_weights, save_weights
from melody_plugin.model.registry import ModelConfig
from melody_plugin.model.rundir import RunDir
from melody_plugin.runtime.atomic import write_json
from melody_plugin.train.step import _inner, _Trainer


def export_weights(model, run: RunDir, step: int, config: ModelConfig) -> None:
    save_weights(keras_to_weights(model), run.weights_file,
                 {"step": step, "config": config.name})


class _Checkpoints:
    """A run's checkpoints: restore the latest, save one (the chief also exports the numpy weights), keep the best.

    The best (lowest eval bits/note) goes to run_dir/best/, outside the CheckpointManager's folder, so that
    `max_to_keep` never deletes it: `ckpt-N.*` (model and step), `weights.npz`, then `best.json` naming step N.
    """

    def __init__(self, trainer: _Trainer, run: RunDir, max_to_keep: int, chief: bool):
        tf = trainer.tf
        self.trainer, self.run, self.chief = trainer, run, chief
        # Non-chief workers of a multi-worker job save to a temporary place that is removed afterwards.
        self.ckpt_dir = run.checkpoint_dir if chief else Path(tempfile.mkdtemp(prefix="melody_worker_ckpt_"))
        self.checkpoint = tf.train.Checkpoint(model=trainer.model, optimizer=trainer.optimizer, step=trainer.step_var)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.ckpt_dir), max_to_keep=max_to_keep)
        self.best_checkpoint = tf.train.Checkpoint(model=trainer.model, step=trainer.step_var)
        self.best_dir = run.best_dir if chief else self.ckpt_dir / "best"
        best = run.best()  # a resumed run must beat the best of its earlier runs
        self.best_bits = best.get("eval_bits_per_note") if best else None

    def restore_latest(self, learning_rate: float, log) -> str | None:
        """Restores the run's latest checkpoint, if any, and returns its path."""
        latest = self.trainer.tf.train.latest_checkpoint(str(self.run.checkpoint_dir))
        if latest:
            step = _restore(self.checkpoint, latest, self.trainer)
            # the optimizer state comes back, but a learning rate given with --hparams on this run wins
            _inner(self.trainer.optimizer).learning_rate.assign(learning_rate)
            log(f"resumed from {Path(latest).name} at step {step}")
        return latest

    def save(self) -> None:
        step = self.trainer.step
        self.manager.save(checkpoint_number=step)
        if self.chief:
            export_weights(self.trainer.model, self.run, step, self.trainer.config)

    def keep_if_best(self, step: int, eval_metrics: dict | None) -> bool:
        """After an eval: when its bits/note is the lowest so far, keeps this step's weights as the best."""
        bits = (eval_metrics or {}).get("bits_per_note")
        if bits is None or not math.isfinite(bits) or (self.best_bits is not None and not bits < self.best_bits):
            return False
        self.best_bits = bits
        name = f"ckpt-{step}"
        # every worker writes (saving may need them all); only the chief's copy is the run dir's
        self.best_checkpoint.write(str(self.best_dir / name))
        if self.chief:
            save_weights(keras_to_weights(self.trainer.model), self.run.best_weights_file,
                         {"step": step, "config": self.trainer.config.name})
            write_json(self.run.best_file, {"step": step, "eval_bits_per_note": bits, "checkpoint": name})
        for old in self.best_dir.glob("ckpt-*"):  # only after best.json names the new one
            if old.name.split(".")[0] != name:
                old.unlink(missing_ok=True)
        return True

    def close(self) -> None:
        if not self.chief:
            shutil.rmtree(self.ckpt_dir, ignore_errors=True)


def _restore(checkpoint, path, trainer: _Trainer) -> int:
    """Loads checkpoint `path` (extra objects in it are fine) and returns its step."""
    checkpoint.restore(path).expect_partial()
    return trainer.step
