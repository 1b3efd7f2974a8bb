"""The LSTM layers' training path on CPU: the same function and weights as Keras' `LSTM`, at fewer small ops.

Keras' LSTM on a CPU runs its cell once per time step: two matrix products forward (x.W and h.U) and four backward
(the gradients of x, h, W and U), each of a few rows. `lstm_sequence` hoists everything that does not depend on the
previous step out of the loops: x.W for the whole window in one large product before the recurrence; after it, the
gradients of x, W, U and the bias in one large product each. Inside the loops only h.U (forward) and dz.U^T
(backward) remain, and the backward loop's gate derivatives are computed for all steps at once before it.

`training_lstm(units, name)` makes a `keras.layers.LSTM` (same class, weights, checkpoints) whose training call
takes this path where it applies (`fast_path_applies`): TensorFlow without a GPU (cuDNN stays the GPU's path), float32,
no mask, no dropout inside the layer. Inference, evaluation and exported models keep Keras' own loop.
"""

from __future__ import annotations

import functools

from melody_plugin.runtime.quiet import import_keras, import_tensorflow


def training_lstm(units: int, name: str):
    """An LSTM layer returning its sequences and final states, with the fast training path."""
    return _training_lstm_class()(units, return_sequences=True, return_state=True, name=name)


@functools.cache
def _training_lstm_class():
    keras = import_keras()

    class TrainingLSTM(keras.layers.LSTM):
        """keras.layers.LSTM whose training loop is `lstm_sequence` where `fast_path_applies`."""

        def inner_loop(self, sequences, initial_state, mask, training=False):
            if not (training and mask is None and fast_path_applies(self)):
                return super().inner_loop(sequences, initial_state, mask, training=training)
            tf = import_tensorflow()
            h0, c0 = initial_state
            cell = self.cell
            weights = [tf.convert_to_tensor(w) for w in (cell.kernel, cell.recurrent_kernel, cell.bias)]
            hs, h, c = lstm_sequence(tf, tf.transpose(sequences, (1, 0, 2)), *weights, h0, c0)
            return h, tf.transpose(hs, (1, 0, 2)), [h, c]

    return TrainingLSTM


def fast_path_applies(layer) -> bool:
    """Whether `lstm_sequence` computes exactly what the layer's own loop would."""
    keras = import_keras()
    if keras.backend.backend() != "tensorflow" or import_tensorflow().config.list_physical_devices("GPU"):
        return False
    cell = layer.cell
    return (layer.return_sequences and not layer.go_backwards and not layer.stateful and not layer.unroll
            and not cell.dropout and not cell.recurrent_dropout and cell.use_bias
            and layer.compute_dtype == "float32" and cell.activation is keras.activations.tanh
            and cell.recurrent_activation is keras.activations.sigmoid)


def lstm_sequence(tf, xs, kernel, recurrent, bias, h0, c0):
    """One LSTM layer (Keras' gate order i, f, c, o; tanh and sigmoid) over a time-major window.

    Args:
      xs: (time, batch, inputs) float32.
      kernel, recurrent, bias: the layer's weights, (inputs, 4H), (H, 4H), (4H,).
      h0, c0: (batch, H) the states entering the window.

    Returns:
      (hs (time, batch, H), h, c): every step's output and the final states, with a hand-written gradient.
    """

    @tf.custom_gradient
    def run(xs, kernel, recurrent, bias, h0, c0):
        steps, rows, width = tf.shape(xs)[0], tf.shape(xs)[1], tf.shape(xs)[2]
        units = tf.shape(recurrent)[0]
        flat_x = tf.reshape(xs, (-1, width))
        xw = tf.reshape(tf.matmul(flat_x, kernel) + bias, (steps, rows, 4 * units))

        def forward(t, h, c, hs, cs, sigmoids, cells):
            z = xw[t] + tf.matmul(h, recurrent)
            sigmoid = tf.sigmoid(z)  # i, f and o are three quarters of it; tanh(g) is the fourth gate
            i, f, _, o = tf.split(sigmoid, 4, axis=1)
            g = tf.tanh(tf.split(z, 4, axis=1)[2])
            c = f * c + i * g
            h = o * tf.tanh(c)
            return t + 1, h, c, hs.write(t, h), cs.write(t, c), sigmoids.write(t, sigmoid), cells.write(t, g)

        arrays = [tf.TensorArray(xs.dtype, size=steps) for _ in range(4)]
        _, h, c, hs, cs, sigmoids, cells = tf.while_loop(lambda t, *_: t < steps, forward, (0, h0, c0, *arrays))
        hs, cs, sigmoids, g = hs.stack(), cs.stack(), sigmoids.stack(), cells.stack()

        def grad(d_hs, d_h, d_c):
            i, f, _, o = tf.split(sigmoids, 4, axis=2)
            recurrent_t = tf.transpose(recurrent)  # once: a transposed operand inside the loop costs a copy each step
            tanh_c = tf.tanh(cs)
            c_prev = tf.concat([c0[None], cs[:-1]], 0)
            # dh_t = d_hs_t + dz_{t+1} U^T; dc_t = dc_{t+1} f_{t+1} + dh_t o_t (1 - tanh(c_t)^2);
            # dz_t = [dc, dc, dc, dh]_t * slopes_t. The final states' own gradients enter at the last step.
            to_c = o * (1.0 - tanh_c * tanh_c)
            slopes = tf.concat([g * i * (1.0 - i), c_prev * f * (1.0 - f), i * (1.0 - g * g),
                                tanh_c * o * (1.0 - o)], 2)
            d_hs = _zero_if_none(tf, d_hs, hs)

            def backward(t, dh_next, dc_next, dzs):
                dh = d_hs[t] + dh_next
                dc = dc_next + dh * to_c[t]
                dz = tf.concat([dc, dc, dc, dh], 1) * slopes[t]
                return t - 1, tf.matmul(dz, recurrent_t), dc * f[t], dzs.write(t, dz)

            _, dh0, dc0, dzs = tf.while_loop(
                lambda t, *_: t >= 0, backward,
                (steps - 1, _zero_if_none(tf, d_h, h), _zero_if_none(tf, d_c, c), tf.TensorArray(xs.dtype, size=steps)))
            dz = tf.reshape(dzs.stack(), (-1, 4 * units))
            h_prev = tf.reshape(tf.concat([h0[None], hs[:-1]], 0), (-1, units))
            return (tf.reshape(tf.matmul(dz, kernel, transpose_b=True), tf.shape(xs)),
                    tf.matmul(flat_x, dz, transpose_a=True), tf.matmul(h_prev, dz, transpose_a=True),
                    tf.reduce_sum(dz, 0), dh0, dc0)

        return (hs, h, c), grad

    return run(xs, kernel, recurrent, bias, h0, c0)


def _zero_if_none(tf, gradient, like):
    return tf.zeros_like(like) if gradient is None else gradient
