"""A run dir's trained weights as numpy arrays: its best checkpoint, its latest or one named by path."""

from __future__ import annotations

from pathlib import Path

from melody_plugin.errors import ModelLoadError
from melody_plugin.model.keras_model import build_model
from melody_plugin.model.numpy_model import keras_to_weights, load_weights
from melody_plugin.model.registry import ModelConfig
from melody_plugin.model.rundir import RunDir
from melody_plugin.runtime.quiet import import_tensorflow
from melody_plugin.tokens.vocab import Vocabulary


def load_run_weights(run: RunDir, config: ModelConfig, vocab: Vocabulary, checkpoint: str = "best"):
    """(weights, step) of the run's best checkpoint (best/, kept when training evaluated) or its latest.

    "best" falls back to the latest in a run dir without best/ (no eval data, or trained before it was kept).
    Each is read from its weights.npz when that matches the checkpoint's step, else through TensorFlow.
    """
    best = run.best() if checkpoint == "best" else None
    if checkpoint not in ("best", "latest"):  # one checkpoint by its path prefix, e.g. RUN/checkpoints/ckpt-300
        prefix = Path(checkpoint)
        step_text = prefix.name.rsplit("-", 1)[-1]
        if not Path(f"{prefix}.index").is_file() or not step_text.isdigit():
            raise ModelLoadError(f"{checkpoint}: checkpoint path does not exist (give best, latest or a "
                                 f"checkpoint such as {run.checkpoint_dir}/ckpt-N)")
        want, weights_file = int(step_text), run.weights_file
        if run.best_weights_file.is_file() and (run.best() or {}).get("step") == want:
            weights_file = run.best_weights_file
    elif best is not None:
        want, weights_file, prefix = best["step"], run.best_weights_file, run.best_dir / f"ckpt-{best['step']}"
    else:
        want, weights_file, prefix = run.latest_checkpoint_step(), run.weights_file, None
    if weights_file.is_file():
        weights, meta = load_weights(weights_file)
        if want is None or meta.get("step") == want:
            return weights, meta.get("step")
    if want is None:
        raise ModelLoadError(f"{run.path}: no checkpoint yet; train first with melody_train --run_dir={run.path}")

    tf = import_tensorflow()
    model = build_model(config, len(vocab))
    step = tf.Variable(0, dtype=tf.int64)
    path = str(prefix) if prefix is not None else tf.train.latest_checkpoint(str(run.checkpoint_dir))
    tf.train.Checkpoint(model=model, step=step).restore(path).expect_partial()
    return keras_to_weights(model), int(step.numpy())
