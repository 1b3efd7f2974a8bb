"""The LSTM layers' training path on CPU: the same function and weights as Keras' `LSTM`, at fewer small ops.

Keras' LSTM on a CPU runs its cell once per time step: two matrix products forward (x.W and h.U) and four backward
(the gradients of x, h, W and U), each of a few rows. `lstm_sequence` hoists everything that does not depend on the
previous step out of the loops: x.W in one large product before the recurrence; after it, the gradients of x, W, U
and the bias in one large product each. Inside the loops only h.U (forward) and dz.U^T (backward) remain, and the
backward loop's gate derivatives are computed for all steps at once before it.

The window's steps run in a few parts, so that with two threads for ops one part's large products run beside
another part's recurrence.

`training_lstm(units, name)` makes a `keras.layers.LSTM` (same class, weights, checkpoints) whose training call
takes this path where it applies (`fast_path_applies`): TensorFlow without a GPU (cuDNN stays the GPU's path),
float32, no mask, no dropout inside the layer, and where it is the faster. Inference, evaluation and exported
models keep Keras' own loop.
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


WIDEST_OVERLAPPED = 128  # units: a wider layer trains faster in Keras' loop when two ops run at a time


def fast_path_applies(layer) -> bool:
    """Whether `lstm_sequence` computes exactly what the layer's own loop would, and faster.

    Faster: always when TensorFlow runs one op at a time (one core); with two at a time (2 cores or more), for layers
    of up to `WIDEST_OVERLAPPED` units. Keras' loop then runs each step's x.W and weight gradients beside the
    recurrence, which pays for a 2x256 stack (folk_lstm: 18.0k against 16.6k tokens/s on 2 cores), not for
    2x128 (folk_lookback: 33.2k against 36.1k; docs/benchmarks.md).
    """
    keras = import_keras()
    tf = import_tensorflow()
    if keras.backend.backend() != "tensorflow" or tf.config.list_physical_devices("GPU"):
        return False
    cell = layer.cell
    one_at_a_time = tf.config.threading.get_inter_op_parallelism_threads() == 1
    return (layer.return_sequences and not layer.go_backwards and not layer.stateful and not layer.unroll
            and not cell.dropout and not cell.recurrent_dropout and cell.use_bias
            and layer.compute_dtype == "float32" and cell.activation is keras.activations.tanh
            and cell.recurrent_activation is keras.activations.sigmoid
            and (cell.units <= WIDEST_OVERLAPPED or one_at_a_time))


CHUNKS = 4  # the window's steps run in this many loops, so the products of one overlap another's recurrence


def lstm_sequence(tf, xs, kernel, recurrent, bias, h0, c0):
    """One LSTM layer (Keras' gate order i, f, c, o; tanh and sigmoid) over a time-major window.

    The window's steps go in `CHUNKS` parts (one when the number of steps is not known when tracing): each part's
    input projection is computed before its loop, and after each part's backward loop its gradients of x, W and U;
    with two threads for ops (the default on 2 cores or more) the next part's products run beside this part's loop,
    as Keras' own loop runs each step's x.W beside the recurrence.

    Args:
      xs: (time, batch, inputs) float32.
      kernel, recurrent, bias: the layer's weights, (inputs, 4H), (H, 4H), (4H,).
      h0, c0: (batch, H) the states entering the window.

    Returns:
      (hs (time, batch, H), h, c): every step's output and the final states, with a hand-written gradient.
    """

    @tf.custom_gradient
    def run(xs, kernel, recurrent, bias, h0, c0):
        sizes = _chunk_sizes(xs)
        parts = _in_chunks(tf, xs, sizes)
        xws = [tf.einsum("tbi,ig->tbg", x, kernel) + bias for x in parts]
        h, c, saved = h0, c0, []
        for xw in xws:
            h, c, part = _forward(tf, xw, recurrent, h, c)
            saved.append(part)
        hs, cs, sigmoids, g = (tf.concat(list(column), 0) for column in zip(*saved))

        def grad(d_hs, d_h, d_c):
            i, f, _, o = tf.split(sigmoids, 4, axis=2)
            recurrent_t = tf.transpose(recurrent)  # once: a transposed operand inside the loop costs a copy each step
            kernel_t = tf.transpose(kernel)
            tanh_c = tf.tanh(cs)
            c_prev = tf.concat([c0[None], cs[:-1]], 0)
            h_prev = tf.concat([h0[None], hs[:-1]], 0)
            # dh_t = d_hs_t + dz_{t+1} U^T; dc_t = dc_{t+1} f_{t+1} + dh_t o_t (1 - tanh(c_t)^2);
            # dz_t = [dc, dc, dc, dh]_t * slopes_t. The final states' own gradients enter at the last step.
            to_c = o * (1.0 - tanh_c * tanh_c)
            slopes = tf.concat([g * i * (1.0 - i), c_prev * f * (1.0 - f), i * (1.0 - g * g),
                                tanh_c * o * (1.0 - o)], 2)
            d_hs = _zero_if_none(tf, d_hs, hs)
            dh, dc = _zero_if_none(tf, d_h, h), _zero_if_none(tf, d_c, c)
            d_xs, d_kernel, d_recurrent, d_bias = [], [], [], []
            chunked = zip(parts, *(_in_chunks(tf, t, sizes) for t in (h_prev, d_hs, to_c, slopes, f)))
            for x, h_before, *part in reversed(list(chunked)):
                dh, dc, dz = _backward(tf, recurrent_t, dh, dc, part)
                d_xs.append(tf.einsum("tbg,gi->tbi", dz, kernel_t))
                d_kernel.append(tf.einsum("tbi,tbg->ig", x, dz))
                d_recurrent.append(tf.einsum("tbh,tbg->hg", h_before, dz))
                d_bias.append(tf.reduce_sum(dz, (0, 1)))
            return (tf.concat(d_xs[::-1], 0), tf.add_n(d_kernel), tf.add_n(d_recurrent), tf.add_n(d_bias), dh, dc)

        return (hs, h, c), grad

    return run(xs, kernel, recurrent, bias, h0, c0)


def _chunk_sizes(xs) -> list[int] | None:
    """The steps of each of `CHUNKS` near-equal parts of xs' time; None (one part) when time is not static or short."""
    steps = xs.shape[0]
    if steps is None or steps < 2 * CHUNKS:
        return None
    return [steps // CHUNKS + (k < steps % CHUNKS) for k in range(CHUNKS)]


def _in_chunks(tf, tensor, sizes) -> list:
    """`tensor` split along time (its first axis) by `_chunk_sizes`' sizes, or whole."""
    return [tensor] if sizes is None else tf.split(tensor, sizes, axis=0)


def _forward(tf, xw, recurrent, h, c):
    """The recurrence over one part's projected inputs xw (time, batch, 4H): (h, c, (hs, cs, sigmoids, tanh g))."""
    steps = tf.shape(xw)[0]

    def step(t, h, c, hs, cs, sigmoids, cells):
        z = xw[t] + tf.matmul(h, recurrent)
        sigmoid = tf.sigmoid(z)  # i, f and o are three quarters of it; tanh(g) is the fourth gate
        i, f, _, o = tf.split(sigmoid, 4, axis=1)
        g = tf.tanh(tf.split(z, 4, axis=1)[2])
        c = f * c + i * g
        h = o * tf.tanh(c)
        return t + 1, h, c, hs.write(t, h), cs.write(t, c), sigmoids.write(t, sigmoid), cells.write(t, g)

    arrays = [tf.TensorArray(xw.dtype, size=steps) for _ in range(4)]
    _, h, c, *arrays = tf.while_loop(lambda t, *_: t < steps, step, (0, h, c, *arrays))
    return h, c, tuple(array.stack() for array in arrays)


def _backward(tf, recurrent_t, dh, dc, part):
    """The backward recurrence over one part, from the gradients (dh, dc) leaving its last step: (dh, dc) entering
    its first step and dz (time, batch, 4H). `part`: its (d_hs, to_c, slopes, f), each (time, batch, ...)."""
    d_hs, to_c, slopes, f = part
    steps = tf.shape(d_hs)[0]

    def step(t, dh_next, dc_next, dzs):
        dh = d_hs[t] + dh_next
        dc = dc_next + dh * to_c[t]
        dz = tf.concat([dc, dc, dc, dh], 1) * slopes[t]
        return t - 1, tf.matmul(dz, recurrent_t), dc * f[t], dzs.write(t, dz)

    _, dh, dc, dzs = tf.while_loop(lambda t, *_: t >= 0, step,
                                   (steps - 1, dh, dc, tf.TensorArray(dh.dtype, size=steps)))
    return dh, dc, dzs.stack()


def _zero_if_none(tf, gradient, like):
    return tf.zeros_like(like) if gradient is None else gradient
