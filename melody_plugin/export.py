"""Trained weights -> a TensorFlow SavedModel for TF Serving / TFLite: `export_saved_model(run_dir, out_dir)`.

Signatures: `serving_default` continues token sequences (ids (batch, time) int32, num_tokens, temperature, seed
-> tokens (batch, num_tokens)), the whole loop compiled in one tf.function over the LSTM cells; `logits` returns
the model's logits for a batch of sequences. `vocab.json` and `config.json` are stored beside it in
`assets.extra/` so tokens can be decoded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from melody_plugin.errors import MelodyPluginError
from melody_plugin.quiet import import_tensorflow


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


def _serving_module(tf, model):
    embedding = model.get_layer("embedding")
    lstms = [layer for layer in model.layers if layer.name.startswith("lstm_")]
    dense = model.get_layer("logits")

    class MelodyModule(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def _step(self, ids, states):
            x = embedding(ids)
            new_states = []
            for layer, (h, c) in zip(lstms, states):
                x, (h, c) = layer.cell(x, [h, c], training=False)
                new_states.append((h, c))
            return dense(x), new_states

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="ids")])
        def logits(self, ids):
            return {"logits": self.model(ids, training=False)}

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="ids"),
                                      tf.TensorSpec([], tf.int32, name="num_tokens"),
                                      tf.TensorSpec([], tf.float32, name="temperature"),
                                      tf.TensorSpec([], tf.int64, name="seed")])
        def continue_tokens(self, ids, num_tokens, temperature, seed):
            batch, length = tf.shape(ids)[0], tf.shape(ids)[1]
            states = [(tf.zeros([batch, layer.units]), tf.zeros([batch, layer.units])) for layer in lstms]
            logits = tf.zeros([batch, dense.units])
            for t in tf.range(length):  # autograph: one compiled loop over the primer
                logits, states = self._step(ids[:, t], states)
            out = tf.TensorArray(tf.int32, size=num_tokens)
            for i in tf.range(num_tokens):
                special = tf.one_hot(tf.range(3), dense.units, on_value=-1e9)  # never emit pad/start/unk
                scaled = (logits + tf.reduce_sum(special, 0)) / tf.maximum(temperature, 1e-6)
                token = tf.cast(tf.random.stateless_categorical(scaled, 1, seed=tf.stack([seed, tf.cast(i, tf.int64)]))[:, 0],
                                tf.int32)
                out = out.write(i, token)
                logits, states = self._step(token, states)
            return {"tokens": tf.transpose(out.stack())}

    return MelodyModule()


def export_saved_model(gen, saved_model_dir, overwrite: bool = False) -> Path:
    """Writes a SavedModel of `gen` (a MelodyGenerator) to `saved_model_dir`, atomically (temp dir + rename)."""
    tf = import_tensorflow()
    target = Path(saved_model_dir)
    if target.exists() and not overwrite:
        raise MelodyPluginError(f"{target}: already exists; pass --overwrite to replace it")
    model = keras_model_from_generator(gen)
    module = _serving_module(tf, model)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": module.continue_tokens,
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
