"""The LSTM's CPU training path (model/fast_lstm.py) against Keras' own `LSTM` on the same weights: the same outputs,
final states and gradients (of the input, the states entering and every weight), and where the path applies."""

import numpy as np
import pytest

from melody_plugin.model import registry
from melody_plugin.model.fast_lstm import fast_path_applies, training_lstm
from melody_plugin.model.keras_model import build_model

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

BATCH, TIME, INPUTS, UNITS = 3, 11, 5, 4  # 11 steps run in 4 parts (fast_lstm.CHUNKS) of 3, 3, 3 and 2


def _pair():
    """Keras' LSTM and the training LSTM, built, with the same random weights (forget bias included)."""
    reference = keras.layers.LSTM(UNITS, return_sequences=True, return_state=True)
    fast = training_lstm(UNITS, "fast")
    x = tf.zeros((BATCH, TIME, INPUTS))
    reference(x)
    fast(x)
    rng = np.random.default_rng(0)
    weights = [rng.normal(0.0, 0.5, w.shape).astype(np.float32) for w in reference.get_weights()]
    reference.set_weights(weights)
    fast.set_weights(weights)
    return reference, fast


def _loss_and_gradients(layer, x, h0, c0, training: bool):
    """A loss reading every output (each step's, the final h and c, nonlinearly) and its gradients."""
    rng = np.random.default_rng(1)
    w_out, w_h, w_c = (tf.constant(rng.normal(size=shape).astype(np.float32))
                       for shape in ((x.shape[1], UNITS), (UNITS,), (UNITS,)))
    with tf.GradientTape() as tape:
        tape.watch([x, h0, c0])
        outputs, h, c = layer(x, initial_state=[h0, c0], training=training)
        loss = tf.reduce_sum(tf.tanh(outputs) * w_out) + tf.reduce_sum(h * h * w_h) + tf.reduce_sum(c * w_c)
    return (outputs, h, c), tape.gradient(loss, [x, h0, c0] + layer.trainable_variables)


@pytest.mark.parametrize("steps", [TIME, 5])  # in parts, and in one loop (fewer than 2 steps a part)
def test_training_path_matches_keras_lstm_outputs_and_gradients(steps):
    reference, fast = _pair()
    rng = np.random.default_rng(2)
    x, h0, c0 = (tf.constant(rng.normal(size=shape).astype(np.float32))
                 for shape in ((BATCH, steps, INPUTS), (BATCH, UNITS), (BATCH, UNITS)))
    assert fast_path_applies(fast)
    want_outputs, want_grads = _loss_and_gradients(reference, x, h0, c0, training=True)
    got_outputs, got_grads = _loss_and_gradients(fast, x, h0, c0, training=True)
    for want, got in zip(want_outputs, got_outputs):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    names = ["x", "h0", "c0", "kernel", "recurrent_kernel", "bias"]
    for name, want, got in zip(names, want_grads, got_grads):
        assert float(tf.reduce_max(tf.abs(want))) > 0, name  # every gradient is exercised
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


def test_training_path_inside_a_compiled_step_with_zero_states():
    """In a tf.function, from zero states (what a plain model starts from): the same gradients as Keras'."""
    reference, fast = _pair()
    x = tf.constant(np.random.default_rng(3).normal(size=(BATCH, TIME, INPUTS)).astype(np.float32))

    def gradients(layer):
        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                outputs = layer(x, training=True)[0]
                loss = tf.reduce_sum(outputs[:, -2:] ** 2)
            return tape.gradient(loss, layer.trainable_variables)
        return step(x)

    for want, got in zip(gradients(reference), gradients(fast)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-6)


def test_where_the_training_path_applies():
    _, fast = _pair()
    assert fast_path_applies(fast)
    with_dropout = training_lstm(UNITS, "inner_dropout")
    with_dropout.cell.dropout = 0.5  # dropout inside the layer is Keras' to draw: its own loop runs
    assert not fast_path_applies(with_dropout)
    wide = training_lstm(256, "wide")
    wide(tf.zeros((1, 2, INPUTS)))
    # a layer wider than 128 units trains faster in Keras' loop when two ops run at a time
    assert fast_path_applies(wide) == (tf.config.threading.get_inter_op_parallelism_threads() == 1)
    model = build_model(registry.get_config("folk_lookback"), 40)
    lstms = [layer for layer in model.layers if layer.name.startswith("lstm_")]
    assert len(lstms) == 2 and all(isinstance(layer, keras.layers.LSTM) and fast_path_applies(layer)
                                   for layer in lstms)
