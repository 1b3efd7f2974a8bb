"""Trained weights -> a TensorFlow SavedModel for TF Serving / TFLite: `export_saved_model(run_dir, out_dir)`.

Signatures: `serving_default` continues token sequences by an exact number of grid steps (ids (batch, time) int32
with the start token first, steps (batch,), temperature, top_k, top_p, seed -> ids (batch, n) padded with -1 and
their log_likelihoods), with sampler_tf.py's bar-bounded loop compiled in the graph; `logits` returns the model's
logits for a batch of sequences. `vocab.json` and `config.json` are stored beside it in
`assets.extra/` so tokens can be decoded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from melody_plugin.errors import MelodyPluginError
from melody_plugin.quiet import filtered_stderr, import_tensorflow


def keras_model_from_generator(gen):
    """A Keras model with a MelodyGenerator's weights (numpy -> Keras, the inverse of weights_from_keras)."""
    from melody_plugin.model import build_model

    model = build_model(gen.config, len(gen.vocab))
    w, i = gen.weights, 0
    for layer in model.layers:
        if layer.name == "embedding":
            layer.set_weights([w["embedding"]])
        elif layer.name.startswith("lstm_"):
            layer.set_weights([w[f"lstm_{i}/kernel"], w[f"lstm_{i}/recurrent_kernel"], w[f"lstm_{i}/bias"]])
            i += 1
        elif layer.name == "logits":
            layer.set_weights([w["logits/kernel"], w["logits/bias"]])
    return model


def _serving_module(tf, model, vocab):
    from melody_plugin import sampler, sampler_tf

    step_fn = sampler_tf.keras_step_fn(model)
    sample = sampler_tf.compiled_sampler(tf, step_fn)
    durations_np = vocab.durations()
    base_np, fillable_np, _, _ = sampler.plan(durations_np, [4096])  # remainders up to 4096 steps (100+ bars)

    class MelodyModule(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.durations = tf.constant(durations_np, tf.int32)
            self.allowed = tf.constant(base_np)
            self.fillable = tf.constant(fillable_np)

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="ids")])
        def logits(self, ids):
            return {"logits": self.model(ids, training=False)}

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="ids"),
                                      tf.TensorSpec([None], tf.int32, name="steps"),
                                      tf.TensorSpec([], tf.float32, name="temperature"),
                                      tf.TensorSpec([], tf.int32, name="top_k"),
                                      tf.TensorSpec([], tf.float32, name="top_p"),
                                      tf.TensorSpec([], tf.int64, name="seed")])
        def continue_melody(self, ids, steps, temperature, top_k, top_p, seed):
            """Continues token sequences (start token first) by exactly `steps` grid steps each (<= 4096)."""
            batch = tf.shape(ids)[0]
            states = [(tf.zeros([batch, u]), tf.zeros([batch, u])) for u in step_fn.units]
            for t in tf.range(tf.shape(ids)[1] - 1):  # the whole primer builds the state
                _, states = step_fn(ids[:, t], states)
            return sample(states, ids[:, -1], tf.minimum(steps, 4096), self.durations, self.allowed, self.fillable,
                          temperature, top_k, top_p, seed)

    return MelodyModule()


def export_saved_model(gen, saved_model_dir, overwrite: bool = False) -> Path:
    """Writes a SavedModel of `gen` (a MelodyGenerator) to `saved_model_dir`, atomically (temp dir + rename)."""
    tf = import_tensorflow()
    target = Path(saved_model_dir)
    if target.exists() and not overwrite:
        raise MelodyPluginError(f"{target}: already exists; pass --overwrite to replace it")
    model = keras_model_from_generator(gen)
    module = _serving_module(tf, model, gen.vocab)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with filtered_stderr():
            tf.saved_model.save(module, str(tmp), signatures={"serving_default": module.continue_melody,
                                                              "logits": module.logits})
        extra = tmp / "assets.extra"
        extra.mkdir(exist_ok=True)
        gen.vocab.save(extra / "vocab.json")
        from melody_plugin import atomic

        atomic.write_json(extra / "config.json", gen.config.to_json())
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
